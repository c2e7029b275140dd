"""Every test under tests/integration is marked `integration` (a module-level `pytestmark` in a
conftest.py would mark nothing: pytest reads it only from test modules)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
