"""The config's ``rewards:`` list → TRL reward functions and their weights."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from rewardlab.config.schema import RewardSource
from rewardlab.errors import ConfigError
from rewardlab.rl.rewards import ModelReward, RemoteReward
from rewardlab.rl.rules import make_rule


def build_rewards(sources: Sequence[RewardSource]) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """One reward function per source (each logged under its own name; duplicates get ``_2``, ``_3``...), and
    the weights of the summed reward."""
    funcs: list[Any] = []
    seen: dict[str, int] = {}
    for src in sources:
        if src.type == "rule":
            func: Any = make_rule(str(src.rule), src.options, src.name)
        elif src.type == "model":
            func = ModelReward.from_pretrained(str(src.path), src.scoring(), image_column=src.image_column)
            func.__name__ = src.name or "model"
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
    return funcs, [src.weight for src in sources]
