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


VISION_FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl")


@pytest.fixture(scope="session")
def shots(tmp_path_factory):
    """8 rendered screenshot pairs: ``(folder, pairs)``, with ``folder/train.jsonl`` and the PNGs under it."""
    from rewardlab.data.screenshots import make_screenshot_pairs, write_jsonl

    root = tmp_path_factory.mktemp("shots")
    pairs = make_screenshot_pairs(8, seed=0, out_dir=root / "train")
    write_jsonl(pairs, root / "train.jsonl")
    return root, pairs


@pytest.fixture(scope="session")
def tiny_vlms(tmp_path_factory, shots):
    """A tiny random VLM directory per family (width 32), tokenizer trained on the screenshot texts. Shared by
    the session: tests copy a directory before changing it."""
    from rewardlab.data.synthetic import corpus
    from rewardlab.models.tiny import build_tiny_vlm

    root = tmp_path_factory.mktemp("vlm")
    texts = corpus(shots[1]) * 4
    return {fam: build_tiny_vlm(root / fam, texts, family=fam, hidden=32) for fam in VISION_FAMILIES}
