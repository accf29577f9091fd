"""Shared test fixtures, one plugin module per area of the engine."""

pytest_plugins = ["tests.conftest_backbones", "tests.conftest_data"]
