"""``TrainingArguments`` from the config's ``training:`` mapping, with rewardlab's defaults under it."""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from typing import Any

from transformers import TrainingArguments

from rewardlab.config.schema import TRAINING_DEFAULTS
from rewardlab.errors import ConfigError


def check_training_keys(user: dict[str, Any], args_class: type = TrainingArguments) -> None:
    """Unknown ``training:`` keys fail with a "did you mean" hint (``args_class``: ``TrainingArguments`` or a
    subclass, e.g. TRL's ``GRPOConfig``)."""
    known = {f.name for f in dataclasses.fields(args_class) if f.init}
    unknown = [k for k in user if k not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            hints.append(f"training.{key}: unknown {args_class.__name__} field{hint}")
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(hints))


# Lower bounds TrainingArguments does not check itself (a zero batch size fails mid-run, or after it).
AT_LEAST_ONE = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                "eval_accumulation_steps", "logging_steps", "save_steps", "eval_steps")  # fmt: skip
POSITIVE = ("learning_rate", "num_train_epochs")
FRACTION_OK = ("logging_steps", "save_steps", "eval_steps")  # below 1: a share of the run


def check_training_values(user: dict[str, Any], args_class: type = TrainingArguments) -> dict[str, Any]:
    """Numbers given as strings become numbers (YAML 1.1 reads ``1e-4`` as a string; the same value as a
    ``key=value`` override is a float), then every type and bound problem is listed at once."""
    hints = typing.get_type_hints(args_class)
    values, problems = dict(user), []
    for key, value in user.items():
        kinds = set(typing.get_args(hints.get(key))) or {hints.get(key)}
        number = {int, float} & kinds
        if isinstance(value, str) and number:
            try:
                values[key] = float(value) if float in number else int(value)
            except ValueError:
                problems.append(f"training.{key}: expected a number, got {value!r}")
        elif isinstance(value, bool) and number and bool not in kinds:
            problems.append(f"training.{key}: expected a number, got {value!r}")
    for key in AT_LEAST_ONE:
        v = values.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
            problems.append(f"training.{key}: must be {'positive' if key in FRACTION_OK else 'at least 1'}, got {v}")
    for key in POSITIVE:
        v = values.get(key)
        if isinstance(v, (int, float)) and v <= 0:
            problems.append(f"training.{key}: must be positive, got {v}")
    max_steps = values.get("max_steps")
    if isinstance(max_steps, (int, float)) and max_steps == 0:
        problems.append("training.max_steps: must be positive (or -1: set by num_train_epochs), got 0")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    return values


def build_training_args(output_dir: str, user: dict[str, Any], *, has_eval: bool, seed: int) -> TrainingArguments:
    """Defaults < the user's ``training:`` keys (checked first: names, then types and bounds)."""
    check_training_keys(user)
    user = check_training_values(user)
    import torch

    # Pinned memory only helps host→GPU copies; on CPU it just warns.
    defaults = {**TRAINING_DEFAULTS, "dataloader_pin_memory": torch.cuda.is_available()}
    # A progress bar into a file or a pipe is a line per refresh; the logged metrics say the same there.
    defaults["disable_tqdm"] = not sys.stderr.isatty()
    # YAML 1.1 reads `save_strategy: no` as False; the strategies mean the string.
    user = {k: ("no" if k.endswith("_strategy") and v is False else v) for k, v in user.items()}
    kwargs = {**defaults, "seed": seed, **user, "output_dir": output_dir}
    if has_eval:
        kwargs.setdefault("eval_strategy", kwargs.get("save_strategy", "epoch"))
        if kwargs["eval_strategy"] == "steps":
            kwargs.setdefault("eval_steps", kwargs.get("save_steps"))
    try:
        return TrainingArguments(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid training settings: {exc}") from None
