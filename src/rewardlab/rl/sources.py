"""The config's ``rewards:`` list → TRL reward functions and their weights."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from rewardlab.config.schema import RewardSource
from rewardlab.errors import ConfigError
from rewardlab.rl.rewards import ModelReward, RemoteReward, UncertaintyPenalty
from rewardlab.rl.rules import make_rule


def build_rewards(sources: Sequence[RewardSource]) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """One reward function per source (each logged under its own name; duplicates get ``_2``, ``_3``...), and
    the weights of the summed reward. A model or remote source with ``uncertainty_penalty: λ`` is followed by its
    :class:`~rewardlab.rl.rewards.UncertaintyPenalty` (``<name>_uncertainty``, weight ``−λ·weight``)."""
    funcs: list[Any] = []
    weights: list[float] = []
    seen: dict[str, int] = {}
    for src in sources:
        if src.type == "rule":
            func: Any = make_rule(str(src.rule), src.options, src.name)
        elif src.type == "model":
            func = ModelReward.from_pretrained(str(src.path), src.scoring(), image_column=src.image_column)
            func.__name__ = src.name or "model"
            if src.uncertainty_penalty is not None and func.scorer.members < 2:
                raise ConfigError(f"rewards: uncertainty_penalty needs an ensemble reward model; {src.path} has "
                                  "one head (train it with model.ensemble, or drop the penalty)")  # fmt: skip
        else:
            key = None
            if src.api_key_env is not None:
                key = os.environ.get(src.api_key_env) or None
                if key is None:
                    raise ConfigError(f"rewards: api_key_env={src.api_key_env} is empty or unset")
            func = RemoteReward(
                src.url,
                normalize=src.normalize or None,
                api_key=key,
                name=src.name or "remote",
                image_column=src.image_column,
            )
        name = func.__name__
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            func.__name__ = f"{name}_{seen[name]}"
        funcs.append(func)
        weights.append(src.weight)
        if src.uncertainty_penalty is not None:  # model and remote sources only (the schema refuses it on a rule)
            # Its own source, weighted −λ·weight: the sum is weight · (mean − λ·std) per sample, the spread logged.
            funcs.append(UncertaintyPenalty(func, f"{func.__name__}_uncertainty"))
            weights.append(-src.weight * src.uncertainty_penalty)
    return funcs, weights
