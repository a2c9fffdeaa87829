"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data_dir() -> Path:
    """The project's shared real data sets (``../shared/data`` next to the repo); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found (only in the project's CI checkout)")
    return SHARED_DATA
