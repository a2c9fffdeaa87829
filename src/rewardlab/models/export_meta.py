"""``rewardlab.json``, typed: what an export says about itself, written once by the export and read once by the
loader (:class:`~rewardlab.models.bundle.RewardBundle`). Nothing else reads the file or its keys.

::

    {"format_version": 2, "pooling": "last", "max_length": 512, "overlong": "truncate",
     "input_format": {"version": 2, "layout": "concat", "append_eos": false, "chat_template": "concat",
                      "recipe": "tokenizer(prompt + response)", ...},
     "chat_template": "auto", "padding_side": "right", "pad_equals_eos": false,
     "normalization": {"mean": 0.12, "std": 1.9, "n": 600} | null, "metrics": {...}, "adapter": null,
     "labels": ["reward", "member_1", ...] | null, "ensemble_kind": "heads" | "lora" | null,
     "attributes": {"helpfulness": [0, 4], ...} | null,
     "export_id": "3f2a...", "config": {...resolved run config...}}

Versions: 2 records the input format (:mod:`rewardlab.data.input_format`); 1 (older exports) tokenized prompt and
response apart; a directory without the file (any Hugging Face RM) reads as version 0, "not a rewardlab export",
and is scored the way its own tokenizer builds inputs. Keys a newer rewardlab writes are kept on a round trip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from rewardlab.config.schema import EnsembleKind
from rewardlab.data.input_format import InputFormat
from rewardlab.errors import ModelError

META_NAME = "rewardlab.json"
FORMAT_VERSION = 2  # 2: input_format recorded; 1: prompt/response tokenized apart; 0: no rewardlab.json


class Normalization(BaseModel):
    """Mean and standard deviation of the eval scores (``(score − mean) / std`` normalizes a reward)."""

    model_config = ConfigDict(extra="allow")
    mean: float
    std: float
    n: int | None = None


class ExportMeta(BaseModel):
    """The self-description of a reward-model directory (see the module docstring)."""

    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    pooling: Literal["last", "cls"] | None = None
    input_format: dict[str, Any] | None = None  # InputFormat.as_json(): the format plus its recipe, for people
    max_length: int | None = None
    overlong: Literal["truncate", "drop"] = "truncate"
    chat_template: Literal["auto", "always", "never"] = "auto"
    padding_side: Literal["left", "right"] = "right"
    pad_equals_eos: bool | None = None
    normalization: Normalization | None = None
    metrics: dict[str, int | float] | None = None
    adapter: dict[str, Any] | None = None  # {"base_model": ...} for a LoRA adapter directory
    labels: list[str] | None = None  # the scores' names when there are several (reward, member_k... or attributes)
    # Attribute heads: {name: [min, max]} in logit order after the score; logits hold (rating - min) / (max - min)
    attributes: dict[str, list[float]] | None = None
    # An ensemble's kind: "heads" (or None) is one classifier with len(labels) logits; "lora" is a peft base
    # (base/, or the one `adapter` names) with one adapter and one-logit head per member in members/member_k/.
    ensemble_kind: EnsembleKind | None = None
    # A fresh id per export of a training run, recorded in the run's results.json too: results describe the model
    # beside them only when the ids match (a crash between the export and results.json leaves them apart).
    export_id: str | None = None
    config: dict[str, Any] | None = None  # the resolved run config

    @property
    def is_rewardlab(self) -> bool:
        """False for a directory without ``rewardlab.json`` (any Hugging Face sequence-classification RM)."""
        return self.format_version > 0

    def text_format(self, pooling: str) -> InputFormat:
        """How this model's text rows are built: the recorded format; format 1 for a rewardlab export that
        predates it; for a foreign RM, the tokenizer's own ``tokenizer(prompt + response)``."""
        layout = "pair" if pooling == "cls" else "concat"
        if self.input_format is not None:
            known = ("version", "layout", "append_eos", "add_special_tokens")
            return InputFormat(
                **{"layout": layout, **{k: self.input_format[k] for k in known if k in self.input_format}}
            )
        if self.format_version >= 2:
            return InputFormat(layout=layout)
        if self.is_rewardlab:
            return InputFormat(version=1, layout=layout, append_eos=True)
        return InputFormat(layout=layout, add_special_tokens=True)

    @property
    def members(self) -> int:
        """Heads of an ensemble export (1: a single scalar head)."""
        return sum(label.startswith("member_") for label in self.labels or []) or 1

    @property
    def attribute_names(self) -> list[str]:
        """The attribute heads' names, in logit order (``logits[:, 1:]``); empty without attribute heads."""
        return list(self.attributes or {})

    @property
    def kind(self) -> EnsembleKind:
        """How the members are stored (see ``ensemble_kind``); ``heads`` for a single model too."""
        return self.ensemble_kind or "heads"

    @property
    def num_labels(self) -> int:
        """Logits of the saved classifier (of each member's, for a LoRA ensemble)."""
        return len(self.labels) if self.labels and self.kind == "heads" else 1

    @classmethod
    def foreign(cls) -> ExportMeta:
        return cls(format_version=0)

    @classmethod
    def read(cls, directory: str | os.PathLike[str]) -> ExportMeta:
        """The directory's ``rewardlab.json``; :meth:`foreign` when there is none. A corrupt file is a
        :class:`ModelError` naming it."""
        path = Path(directory) / META_NAME
        if not path.is_file():
            return cls.foreign()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            data.setdefault("format_version", 1)  # the first exports wrote no version
            return cls.model_validate(data)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, ValidationError) as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()) if isinstance(
                exc, ValidationError) else str(exc)  # fmt: skip
            raise ModelError(f"{path}: corrupt ({reason}); re-export the model") from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def write(self, directory: Path) -> None:
        (directory / META_NAME).write_text(json.dumps(self.to_json(), indent=2, default=str), encoding="utf-8")
