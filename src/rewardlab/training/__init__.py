"""Training: :class:`RewardTrainer` (a ``transformers.Trainer``) and the losses it picks by ``loss.name``
(:data:`LOSSES`). Names load on first use, so importing this package does not import torch."""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {"RewardTrainer": "rewardlab.training.trainer", "LOSSES": "rewardlab.training.losses"}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'rewardlab.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
