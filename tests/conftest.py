import sys
from pathlib import Path

# tests/layouts.py holds the fixture-tree writers; make it importable as `layouts`.
sys.path.insert(0, str(Path(__file__).parent))

import time  # noqa: E402

import pytest  # noqa: E402

SESSION_START = time.time()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "after_notebooks: reads what the notebooks of this session wrote; runs last"
    )


def pytest_collection_modifyitems(session: pytest.Session, config, items) -> None:
    # The smoke-results check compares the tables that nbval's execution of the notebooks just
    # wrote, so it runs after every notebook cell.
    late = [item for item in items if item.get_closest_marker("after_notebooks")]
    items[:] = [item for item in items if item not in late] + late
