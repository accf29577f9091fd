"""Shared test fixtures, one plugin module per area of the engine."""

pytest_plugins = [
    "tests.conftest_backbones",
    "tests.conftest_data",
    "tests.conftest_store",
    "tests.conftest_engine",
    "tests.conftest_dashboard",
]
