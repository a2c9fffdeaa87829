"""The config's ``rewards:`` list → TRL reward functions and their weights."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from rewardlab.config.schema import RewardSource
from rewardlab.errors import ConfigError
from rewardlab.rl.rewards import JudgeReward, ModelReward, RemoteReward, UncertaintyPenalty
from rewardlab.rl.rules import make_rule


def build_rewards(sources: Sequence[RewardSource]) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """One reward function per source (each logged under its own name; duplicates get ``_2``, ``_3``...), and
    the weights of the summed reward. A model or remote source with ``uncertainty_penalty: λ`` is followed by its
    :class:`~rewardlab.rl.rewards.UncertaintyPenalty` (``<name>_uncertainty``, weight ``−λ·weight``). Model sources
    with one path and scoring settings (e.g. one per attribute head) share one loaded model."""
    funcs: list[Any] = []
    weights: list[float] = []
    seen: dict[str, int] = {}
    loaded: dict[tuple[str, str, str | None], ModelReward] = {}
    for src in sources:
        if src.type == "rule":
            func: Any = make_rule(str(src.rule), src.options, src.name)
        elif src.type == "model":
            func = model_reward(src, loaded)
        elif src.type == "judge":
            func = JudgeReward.from_source(src)
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
                name=src.name or src.attribute or "remote",
                image_column=src.image_column,
                attribute=src.attribute,
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


def model_reward(src: RewardSource, loaded: dict[tuple[str, str, str | None], ModelReward]) -> ModelReward:
    """The :class:`ModelReward` of a ``model`` source: a model already loaded for another source with the same path
    and scoring settings is read again (no second copy of its weights), not loaded twice."""
    settings = src.scoring()
    key = (str(src.path), settings.model_copy(update={"normalize": False}).model_dump_json(), src.image_column)
    name = src.name or src.attribute or "model"
    first = loaded.get(key)
    if first is None:
        first = loaded[key] = ModelReward.from_pretrained(str(src.path), settings, image_column=src.image_column)
    heads = first.scorer.attribute_names
    if src.attribute is not None and src.attribute not in heads:
        raise ConfigError(f"rewards: attribute {src.attribute!r}: {src.path} has no such head (its attribute heads: "
                          f"{', '.join(heads) or 'none'})")  # fmt: skip
    if src.uncertainty_penalty is not None and first.scorer.members < 2:
        raise ConfigError(f"rewards: uncertainty_penalty needs an ensemble reward model; {src.path} has "
                          "one head (train it with model.ensemble, or drop the penalty)")  # fmt: skip
    return first.reading(name=name, attribute=src.attribute, normalize=settings.normalize)
