"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a hub: everything they load is built from configs, generated or read from ../shared.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data_dir() -> Path:
    """The project's shared real data sets (``../shared/data`` next to the repo); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found (only in the project's CI checkout)")
    return SHARED_DATA
