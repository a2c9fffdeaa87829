"""Reward models: backbones, the reward-model object (:class:`RewardBundle`), checkpoint IO and the one scoring path
(:class:`Scorer`). Names load on first use, so importing this package does not import torch."""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ExportMeta": "rewardlab.models.export_meta",
    "RewardBundle": "rewardlab.models.bundle",
    "RewardModel": "rewardlab.models.reward_model",
    "Scorer": "rewardlab.models.scorer",
    "VisionFamily": "rewardlab.models.vision",
    "FAMILIES": "rewardlab.models.vision",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'rewardlab.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
