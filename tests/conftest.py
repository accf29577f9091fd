"""Shared test fixtures, one plugin module per area of the engine."""

pytest_plugins = [
    "tests.conftest_backbones",
    "tests.conftest_data",
    "tests.conftest_store",
    "tests.conftest_engine",
    "tests.conftest_dashboard",
]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_warm_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """No warm worker pool unless a test asks for one: the dashboard starts one by default,
    and a pool worker per served or AppTest dashboard would cost every test its start."""
    monkeypatch.setenv("WARM_WORKERS", "0")
