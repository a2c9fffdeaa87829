"""Typed configs: one per command. Each knob is documented once, beside its field.

This module knows nothing of torch. The ``training:`` section is a free mapping handed to
``transformers.TrainingArguments``; the training layer checks its keys.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ColumnMap(StrictModel):
    """Names of the columns a reader looks for; map your own names here (e.g. ``prompt: question``)."""

    prompt: str = Field("prompt", description="Prompt column (optional for implicit-prompt pairs).")
    chosen: str = Field("chosen", description="Preferred response column (pairs).")
    rejected: str = Field("rejected", description="Dispreferred response column (pairs).")
    margin: str = Field("margin", description="Optional preference strength column (pairs).")
    response: str = Field("answer", description="One response per row (ranked CSV: prompt,answer,rank).")
    rank: str = Field("rank", description="Rank of the row's response, 1 = best (ranked CSV).")
    responses: str = Field("responses", description="List of responses (ranked JSONL groups).")
    ranks: str = Field("ranks", description="List of ranks, 1 = best (ranked JSONL groups).")
    responses_best_to_worst: str = Field(
        "responses_best_to_worst", description="List of responses already sorted best first (no ties)."
    )
    images: str = Field("images", description="Image paths/URLs (vision records).")
    id: str = Field("id", description="Optional record id column.")
    subset: str = Field("subset", description="Optional subset column (per-subset metrics); also tried: 'source'.")
    ratings: str | list[str] = Field(
        "ratings",
        description="Rated data: a column of `{attribute: value}` objects (one per response of a ranked group), or "
        "a list of columns holding one attribute each (HelpSteer2's layout: `[helpfulness, correctness, ...]`).",
    )


class DataSource(StrictModel):
    """One data source: a file (JSONL/JSON/CSV/Parquet, optionally .gz), a `datasets` directory or a hub name."""

    path: str = Field(description="File path, `datasets.save_to_disk` directory, or hub dataset name.")
    format: Literal["auto", "jsonl", "json", "csv", "parquet", "datasets_dir", "hub"] = Field(
        "auto", description="File format; `auto` detects it from the suffix or the directory contents."
    )
    kind: Literal["auto", "pairs", "ranked", "rated"] = Field(
        "auto",
        description="Pairs (chosen/rejected), ranked responses, or rated responses (`prompt, response, ratings`, "
        "for `model.attributes`); `auto` decides from the columns.",
    )
    split: str = Field("train", description="Split to read from a `datasets` directory or hub dataset.")
    name: str | None = Field(None, description="Hub dataset configuration name.")
    columns: ColumnMap = Field(default_factory=ColumnMap, description="Column names to read.")
    max_samples: int | None = Field(None, ge=1, description="Keep only the first N records.")
    prefix_mismatch: Literal["common_prefix", "drop", "error"] = Field(
        "common_prefix",
        description=(
            "Implicit-prompt pairs whose chosen and rejected transcripts differ before their last assistant "
            "turn: `common_prefix` uses the shared turns as the prompt (counted and logged), `drop` skips "
            "them (counted), `error` stops."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


class DataConfig(StrictModel):
    train: DataSource = Field(description="Training data.")
    eval: DataSource | None = Field(None, description="Held-out evaluation data.")
    rated: DataSource | None = Field(
        None,
        description="Rated responses (`prompt, response, ratings`) trained beside `train`'s pairs or groups: the "
        "attribute heads learn from them, the preference head from `train` (needs model.attributes).",
    )
    eval_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="Without `eval`: hold out this fraction of `train` (seeded) for eval."
    )
    ranked_as: Literal["pairs", "groups"] = Field(
        "pairs", description="Ranked data: expand to all ordered pairs, or keep groups for a listwise loss."
    )
    max_length: int = Field(512, ge=8, description="Longest tokenized prompt+response (tokens).")
    overlong: Literal["truncate", "drop"] = Field(
        "truncate",
        description=(
            "Pairs longer than `max_length`: `truncate` cuts the prompt from the left, then the response's "
            "start, keeping the end of the response, where the score is read; `drop` skips the pair. Counted "
            "and logged."
        ),
    )
    chat_template: Literal["auto", "always", "never"] = Field(
        "auto",
        description=(
            "Use the tokenizer's chat template. Text models, `auto`: for conversational records only. Vision "
            "models, `auto`: when the template handles images (else the family's built-in layout); `never`: "
            "always the built-in layout."
        ),
    )
    text_pair: bool = Field(
        True,
        description=(
            "Encoders (`cls` pooling): the prompt and the response as a text pair, `[CLS] prompt [SEP] response "
            "[SEP]` with segment ids 0/1 (`tokenizer(prompt, response)`); `false`: one segment, `[CLS] "
            "prompt+response [SEP]` (`tokenizer(prompt + response)`, as TRL's reward trainer builds it). The "
            "export records which. Decoders: no effect."
        ),
    )
    max_tokens_per_batch: int | None = Field(
        None,
        ge=1,
        description=(
            "Training batches hold whole pairs (or groups) up to this many tokens (a pair's prompt counted once where "
            "prompts are shared) instead of `training.per_device_train_batch_size` pairs: many short pairs or few "
            "long ones per step, evenly filling the device. One process only for now."
        ),
    )
    share_prompts: bool = Field(
        True,
        description=(
            "Decoders: a pair's chosen and rejected rows (or a ranked group's responses) become one sequence with "
            "the prompt's tokens (and a LLaVA-family image) computed once and the responses masked from each other, "
            "short ones packed into one row. Exact (same scores and loss); used where it is: last-token pooling with "
            "SDPA or eager attention. Encoders, Qwen-VL and flash-attention keep one row per response. `false`: off."
        ),
    )
    append_eos: bool = Field(
        False,
        description=(
            "Text decoders: append the EOS token to each plain-string response and read the score there (the "
            "exported tokenizer then appends it too). Off by default: the score is read at the response's last "
            "token, so `tokenizer(prompt + response)`, TRL's GRPO reward path (which strips the EOS) and OpenRLHF's "
            "reward server give the trained score; with it on, TRL needs rewardlab.rl.ModelReward."
        ),
    )
    num_irrelevant_pairs: int = Field(
        0,
        ge=0,
        description=(
            "Vision: per pair, extra pairs where the chosen text with its own image is preferred over a "
            "mismatched row (see irrelevant_swap); robustness to irrelevant queries, logged separately."
        ),
    )
    irrelevant_swap: Literal["image", "text", "both"] = Field(
        "image",
        description=(
            "The mismatched row of an irrelevant-query pair: the same text with another record's image (`image`), "
            "another record's chosen text with this image (`text`), or one of each (`both`: two rows per count)."
        ),
    )


EnsembleKind = Literal["heads", "lora"]  # how an ensemble's members are built and stored


class EnsembleSettings(StrictModel):
    members: int = Field(5, ge=1, le=64, description="Members of the ensemble (K).")
    kind: EnsembleKind = Field(
        "heads",
        description=(
            "`heads`: K scalar heads on one backbone, one forward pass for all of them; the export is one plain "
            "classifier whose `logits[:, 0]` is the mean. `lora`: K LoRA adapters, each with its own head, on one "
            "frozen base (needs `model.lora`; no `training.gradient_checkpointing`): more diverse members at K "
            "times the forward cost; the export is the base plus K adapters (`base/`, `members/member_k/`), which "
            "outside rewardlab needs peft to score."
        ),
    )
    bootstrap: bool = Field(
        True,
        description=(
            "Each member weighs every training pair (or group) by its own Poisson(1) draw each time the pair is "
            "seen (online bagging), so members disagree where the data is thin; `false`: members differ by their "
            "random initialisation only."
        ),
    )


class LoraSettings(StrictModel):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: str | list[str] = Field("all-linear", description="Modules to adapt (peft syntax).")
    projector: Literal["frozen", "lora", "full"] = Field(
        "frozen",
        description=(
            "Vision-language models: the vision→language projector keeps its weights (`frozen`), gets LoRA "
            "adapters on its linear layers (`lora`) or is trained fully (`full`); the vision tower stays frozen. "
            "Any value but `frozen` is an error for a text model."
        ),
    )
    merge_on_export: bool | None = Field(
        None,
        description=(
            "Merge the adapter into the weights of the final export (else save adapter + head). Default: merge, "
            "except for quantized backbones, whose adapter + head load onto the full-precision base. A LoRA "
            "ensemble (`model.ensemble.kind: lora`) cannot merge: its export holds the base and the K adapters, "
            "or with `false` the adapters only, naming the base as an adapter export does."
        ),
    )


class QuantizationSettings(StrictModel):
    """Load the backbone's linear layers quantized with bitsandbytes (QLoRA: needs `model.lora`). The head,
    and for vision-language models the vision tower and projector, stay in full precision."""

    bits: Literal[4, 8] = Field(4, description="4-bit (QLoRA) or 8-bit weights.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field("bfloat16", description="Matmul dtype.")
    double_quant: bool = Field(True, description="Also quantize the quantization constants (saves ~0.4 bit/param).")


class ModelConfig(StrictModel):
    name_or_path: str = Field(description="Hub name or local directory of the backbone.")
    pooling: Literal["auto", "last", "cls"] = Field(
        "auto",
        description=(
            "Where the score is read: `last` non-pad token (decoders), `cls` first token via the model's own "
            "head (encoders); `auto` picks by architecture."
        ),
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype.")
    attn_implementation: str | None = Field(None, description="`sdpa`, `eager`, `flash_attention_2`, ...")
    trust_remote_code: bool = Field(False, description="Allow custom model code from the hub.")
    padding_side: Literal["auto", "left", "right"] = Field(
        "auto", description="Padding side for batches; scores do not depend on it for decoders."
    )
    pad_token: str | None = Field(
        None,
        description=(
            "Pad token. Default: the tokenizer's own unless it is the EOS, else a pad-like special token already in "
            "the vocabulary (`<|fim_pad|>`, `<|finetune_right_pad_id|>`, `<unk>`), else the EOS. A pad distinct "
            "from the EOS lets Hugging Face's pooling in outside tools read the last token."
        ),
    )
    disable_dropout: bool = Field(
        True,
        description=(
            "Set every dropout probability of the backbone to 0 (TRL's reward trainer does too): the training "
            "forward then scores like the eval forward. On hh-rlhf with MiniLM it gained 1.8 and 2.9 points of "
            "held-out accuracy on the two folds (bench/bench_quality.py); `false` keeps the backbone's dropout."
        ),
    )
    lora: LoraSettings | None = Field(None, description="Train LoRA adapters (the head is trained fully).")
    ensemble: EnsembleSettings | None = Field(
        None,
        description=(
            "An ensemble of reward models (heads, or LoRA adapters and heads: `kind`): the reward is the members' "
            "mean, and rewardlab reports their spread as the score's uncertainty."
        ),
    )
    attributes: dict[str, tuple[float, float]] | None = Field(
        None,
        description=(
            "Attribute heads: `{name: [min, max]}` adds one regression head per attribute, trained on rated rows "
            "(MSE on the rating scaled to 0–1 by its range) beside the preference head on pairs. The export has "
            "`1 + K` logits: the preference score first, then each attribute on the 0–1 scale (`id2label` names "
            "them)."
        ),
    )
    quantization: QuantizationSettings | None = Field(None, description="bitsandbytes 4/8-bit loading (QLoRA).")
    freeze_vision_tower: bool = Field(
        False, description="Vision-language models: keep the vision tower's weights fixed."
    )
    min_pixels: int | None = Field(None, ge=1, description="Qwen-VL: smallest image area after resizing (pixels).")
    max_pixels: int | None = Field(None, ge=1, description="Qwen-VL: largest image area after resizing (pixels).")

    @model_validator(mode="after")
    def _check_attributes(self) -> ModelConfig:
        if self.attributes is not None:
            problems = attribute_problems(self.attributes)
            if problems:
                raise ValueError("; ".join(problems))
        return self


def attribute_problems(attributes: dict[str, tuple[float, float]]) -> list[str]:
    """What is wrong with a ``model.attributes`` mapping (empty when nothing is)."""
    import math

    if not attributes:
        return ["model.attributes is empty: name at least one attribute, e.g. {helpfulness: [0, 4]}"]
    problems = []
    for name, (low, high) in attributes.items():
        if not name or name == "reward" or name.startswith("member_"):
            problems.append(f"model.attributes: {name!r} is not a usable name ('reward' and 'member_*' name other "
                            "scores); rename it")  # fmt: skip
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            problems.append(f"model.attributes.{name}: the range [{low}, {high}] needs finite min < max, e.g. [0, 4]")
    return problems


class LossConfig(StrictModel):
    name: Literal["bradley_terry", "plackett_luce"] = Field(
        "bradley_terry", description="Pairwise Bradley–Terry, or listwise Plackett–Luce for ranked groups."
    )
    use_margin: bool = Field(True, description="Subtract a pair's `margin` inside the Bradley–Terry loss.")
    center_coefficient: float | None = Field(
        None, ge=0.0, description="Reward centering: add coef·mean(score²) to keep scores near zero."
    )
    length_decorrelation: float = Field(
        0.0,
        ge=0.0,
        description="Add coef·|cov(score margin, length gap)|/std(length gap) over each batch's pairs (the margin "
        "spread that response length explains): a reward that does not explain preferences by length (ODIN-style "
        "length debiasing; 0 = off).",
    )
    irrelevant_loss_weight: float = Field(
        1.0, ge=0.0, description="Weight of the irrelevant-query loss (with data.num_irrelevant_pairs > 0)."
    )
    attribute_weight: float = Field(
        1.0, ge=0.0, description="Weight of the attribute heads' mean squared error (with model.attributes)."
    )

    @model_validator(mode="after")
    def _pairwise_only(self) -> LossConfig:
        if self.length_decorrelation and self.name != "bradley_terry":
            raise ValueError("loss.length_decorrelation works on pairs: use it with loss.name=bradley_terry")
        return self


# rewardlab's defaults for `training:` (TrainingArguments fields), under the user's keys. They are written into
# every run's config.yaml, so a run records what it used even where the user set nothing.
TRAINING_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 16,
    "num_train_epochs": 1,
    "learning_rate": 1e-5,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0.03,
    "logging_steps": 10,
    "save_strategy": "epoch",
    "report_to": "none",
    "remove_unused_columns": False,
    # Pairs of similar length share a batch: less padding, same loss (see bench/).
    "train_sampling_strategy": "group_by_length",
}


class SearchRange(StrictModel):
    """One hyperparameter's range for `rewardlab tune`: `low`/`high` (optionally `log`), or a list of `choices`."""

    low: int | float | None = Field(None, description="Smallest value (with `high`).")
    high: int | float | None = Field(None, description="Largest value (with `low`).")
    log: bool = Field(False, description="Sample on a log scale (learning rates).")
    choices: list[Any] | None = Field(None, description="Try these values instead of a range.")

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchRange:
        if self.choices is not None:
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("give a non-empty `choices` list, or `low` and `high` (not both)")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError("give `low` < `high`, or a `choices` list")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


# What a small preference set is most sensitive to: the learning rate, the warm-up share, and how many epochs.
DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"low": 5e-6, "high": 2e-4, "log": True},
    "warmup_steps": {"low": 0.0, "high": 0.2},
    "num_train_epochs": {"choices": [1, 2, 3]},
}


class TuneSettings(StrictModel):
    """`rewardlab tune`: hyperparameter search over `training:` fields (optuna's TPE sampler, seeded)."""

    trials: int = Field(10, ge=1, description="How many trainings to run.")
    metric: Literal["accuracy", "loss"] = Field(
        "accuracy", description="What the search optimizes on the held-out pairs (accuracy up, loss down)."
    )
    space: dict[str, SearchRange] = Field(
        default_factory=lambda: {k: SearchRange(**v) for k, v in DEFAULT_SEARCH_SPACE.items()},
        description="`training:` field → range or choices. Default: learning_rate, warmup_steps, num_train_epochs.",
    )
    eval_fraction: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="Held out of `data.train` (seeded) when the config has no `data.eval` or `data.eval_fraction`.",
    )
    random_trials: int | None = Field(
        None,
        ge=1,
        description="Trials drawn at random before TPE models the results (default: a third of `trials`, 1 to 10; "
        "optuna's own default of 10 would leave a search of 10 or fewer trials purely random).",
    )
    timeout_minutes: float | None = Field(None, gt=0, description="Stop starting new trials after this long.")

    def startup_trials(self) -> int:
        return self.random_trials if self.random_trials is not None else max(1, min(10, self.trials // 3))


class TrainConfig(StrictModel):
    output_dir: str = Field(description="Run directory: config, metrics, checkpoints and the final model.")
    seed: int = Field(42, description="Seed for data splits, initialisation and shuffling.")
    data: DataConfig
    model: ModelConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    training: dict[str, Any] = Field(
        default_factory=dict, description="Passed to `transformers.TrainingArguments` (any of its fields)."
    )
    resume: bool | str = Field(
        False, description="`true`: resume from the last checkpoint in output_dir; or a checkpoint path."
    )
    tune: TuneSettings = Field(default_factory=TuneSettings, description="`rewardlab tune` only: the search.")

    def recorded(self) -> TrainConfig:
        """This config with rewardlab's training defaults written out: what ``config.yaml`` of a run holds."""
        return self.model_copy(update={"training": {**TRAINING_DEFAULTS, **self.training}})

    @model_validator(mode="after")
    def _check_combinations(self) -> TrainConfig:
        problems = []
        if self.loss.name == "plackett_luce" and self.data.ranked_as != "groups":
            problems.append("loss.name=plackett_luce needs data.ranked_as=groups")
        if self.loss.name != "plackett_luce" and self.data.ranked_as == "groups":
            problems.append(
                f"data.ranked_as=groups trains listwise: set loss.name=plackett_luce (not {self.loss.name})"
            )
        if "output_dir" in self.training:
            problems.append("set output_dir at the top level, not in training")
        if self.model.quantization is not None and self.model.lora is None:
            problems.append(
                "model.quantization needs model.lora (quantized weights are not trained; LoRA adapters are)"
            )
        if self.model.ensemble is not None and self.model.ensemble.kind == "lora":
            problems += lora_ensemble_problems(self.model, self.training)
        if self.model.attributes is not None and self.model.ensemble is not None:
            problems.append("model.attributes and model.ensemble do not combine yet; drop one of them")
        if self.model.attributes is not None and self.data.num_irrelevant_pairs:
            problems.append("model.attributes works on text models; drop data.num_irrelevant_pairs")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def lora_ensemble_problems(model: ModelConfig, training: dict[str, Any]) -> list[str]:
    """What a LoRA ensemble (``model.ensemble.kind: lora``) cannot be combined with."""
    problems = []
    if model.lora is None:
        problems.append(
            "model.ensemble.kind=lora trains one LoRA adapter and head per member on a frozen base: add model.lora "
            "(e.g. model.lora.r=16), or use model.ensemble.kind=heads (K heads on one fully trained backbone)"
        )
    elif model.lora.merge_on_export:
        problems.append(
            "model.lora.merge_on_export=true: a LoRA ensemble's K adapters cannot merge into one model; leave it "
            "unset (the export holds the base and the adapters) or set it to false (the adapters only)"
        )
    if model.quantization is not None:
        problems.append("model.quantization does not work with model.ensemble.kind=lora yet; use kind=heads")
    if training.get("gradient_checkpointing"):
        # The members run one after another with peft's active adapter switched in between; checkpointed blocks
        # recompute their forward in the backward pass with whichever adapter is active then (the last member's).
        problems.append(
            "training.gradient_checkpointing cannot train model.ensemble.kind=lora: the members run one after "
            "another with peft's active adapter switched between them, and the backward pass would recompute "
            "every member with the last member's adapter (wrong gradients); turn it off, or use kind=heads"
        )
    return problems


class ScoringSettings(StrictModel):
    """How a reward model is loaded and run to score: one section, shared by `score`/`compare`/`rank`, `eval`,
    `serve` and RL's `model` rewards (and :class:`rewardlab.models.scorer.Scorer`)."""

    batch_size: int = Field(16, ge=1, description="Most responses scored in one forward pass.")
    share_prompts: bool = Field(
        True, description="Decoders: responses to one prompt share its tokens in one row (exact; false: a row each)."
    )
    max_length: int | None = Field(
        None, ge=8, description="Token limit (default: the one the model was trained with)."
    )
    device: str = Field("auto", description="`cpu`, `cuda`, `cuda:1`, or `auto`.")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="Weights' dtype (default: as saved)."
    )
    normalize: bool = Field(
        False, description="Return (score − mean) / std with the eval statistics saved with the model."
    )

    def scoring(self, **overrides: Any) -> ScoringSettings:
        """These settings alone (what the Scorer takes), from a command's config that extends them, with
        ``overrides`` applied and validated (an unknown name or a bad value raises a ``ValidationError``)."""
        return ScoringSettings.model_validate({name: getattr(self, name) for name in ScoringSettings.model_fields}
                                              | overrides)  # fmt: skip


class ScoreConfig(ScoringSettings):
    model: str = Field(
        description="Model directory written by `rewardlab train` (or any RM), or `judge:SPEC`: an LLM judge (a local "
        "chat model, `http://HOST/v1#MODEL` or a judge file; docs/rl.md)."
    )


class ServeConfig(ScoringSettings):
    """`rewardlab serve`: an HTTP scoring server for one model (routes: docs/serving.md). ``normalize`` is the
    default of requests' `normalize` flag, and what /get_reward returns as `rewards`."""

    model: str = Field(
        description="Model directory written by `rewardlab train` (a run directory works too), or `judge:SPEC`: an "
        "LLM judge (a local chat model, `http://HOST/v1#MODEL` or a judge file; docs/serving.md)."
    )
    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 exposes the server to the network.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port, printed at start).")
    name: str | None = Field(None, description="Model name reported by /v1/model (default: the directory name).")
    batch_size: int = Field(
        32, ge=1, description="Most responses the batcher coalesces into one forward pass (`max_batch_size` before)."
    )
    max_batch_tokens: int = Field(
        32768, ge=64, description="Most padded tokens (rows x longest row) in one forward pass."
    )
    max_wait_ms: float = Field(
        5.0, ge=0, description="How long the first queued request waits for others to join its batch."
    )
    max_queue_items: int = Field(
        4096, ge=1, description="Most responses waiting to be scored; beyond it requests get 503 with Retry-After."
    )
    max_items_per_request: int = Field(1024, ge=1, description="Most responses in one request (413 beyond).")
    max_text_chars: int = Field(100_000, ge=1, description="Longest prompt or response, in characters (422 beyond).")
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest request body in bytes, images included (413 beyond)."
    )
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key; requests then need `Authorization: Bearer KEY`."
    )
    allow_urls: bool = Field(False, description="Accept http(s) image URLs in requests (the server fetches them).")
    image_root: str | None = Field(
        None, description="Folder under which requests may name local image files (off by default)."
    )
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest image, decoded or fetched, in bytes.")
    url_timeout_s: float = Field(10.0, gt=0, description="Timeout for fetching one image URL.")
    strip_special_tokens: bool = Field(
        True,
        description="/get_reward: remove the model tokenizer's special tokens (e.g. a trailing EOS) that the "
        "policy's decoded text ends with, as the model was trained without them.",
    )
    strip_texts: list[str] = Field(
        default_factory=list,
        description="/get_reward: more strings removed from the end of responses, e.g. the policy's EOS when its "
        "tokenizer differs from the model's (`--strip-texts '<|im_end|>'`, repeatable; `strip_texts=A,B`; or a "
        "YAML list).",
    )
    graceful_shutdown_s: float = Field(
        30.0, ge=0, description="On SIGTERM/Ctrl-C, how long in-flight requests may take to finish."
    )
    access_log: bool = Field(
        False, description="Log a line per request (method, path, status; never the body). Costs throughput."
    )

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, value: Any) -> Any:
        """``max_batch_size`` is the old name of ``batch_size`` (configs written for earlier versions still load);
        ``strip_texts`` given as one string is a comma-separated list."""
        if isinstance(value, dict) and "max_batch_size" in value:
            value = dict(value)
            old = value.pop("max_batch_size")
            value.setdefault("batch_size", old)
        if isinstance(value, dict) and isinstance(value.get("strip_texts"), str):  # key=value: a comma list
            value = {**value, "strip_texts": [t for t in value["strip_texts"].split(",") if t]}
        return value


class PolicyConfig(StrictModel):
    """The language model fine-tuned with rewards."""

    name_or_path: str = Field(description="Hub name or local directory of a causal language model.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype.")
    lora: LoraSettings | None = Field(None, description="Train LoRA adapters instead of all weights.")
    trust_remote_code: bool = Field(False, description="Allow custom modeling code from the hub.")


class PromptData(StrictModel):
    """Prompts (plain text or chat messages); every other column reaches the reward functions by its name."""

    train: DataSource = Field(description="Prompt file (JSONL/CSV/Parquet), `datasets` directory or hub name.")
    eval: DataSource | None = Field(None, description="Held-out prompts, evaluated every `training.eval_steps`.")
    eval_count: int = Field(0, ge=0, description="Without `eval`: hold out this many training prompts (seeded).")
    prompt_column: str = Field("prompt", description="Column with the prompt (unless `template` builds it).")
    target_words: tuple[int, int] | None = Field(
        None,
        description="Give each row a `target_words` column drawn uniformly from [low, high] (seeded), when the "
        "data has none: the word count the `word_count` rule asks for, usable in `template` as {target_words}.",
    )
    template: str | None = Field(
        None,
        description="Build each prompt from the row's columns with Python format syntax, e.g. 'Summarize the text "
        "using exactly {target_words} words:\n\n{info[post]}' (nested fields with [key]).",
    )

    as_chat: bool = Field(
        False, description="Send a text prompt as one user message, so the policy's chat template renders it."
    )

    @model_validator(mode="after")
    def _ordered_range(self) -> PromptData:
        if self.target_words is not None and not 1 <= self.target_words[0] <= self.target_words[1]:
            raise ValueError(
                f"target_words: expected [low, high] with 1 <= low <= high, got {list(self.target_words)}"
            )
        return self


class JudgeSettings(StrictModel):
    """How an LLM judge (`type: judge`) turns a group's completions into rewards (docs/rl.md, LLM judges)."""

    mode: Literal["pairwise", "pointwise"] = Field(
        "pairwise",
        description="`pairwise`: the judge compares completions of one prompt (both orders) and a fit turns the "
        "verdicts into one reward each; `pointwise`: it rates each completion alone (the expected score).",
    )
    schedule: Literal["all", "round_robin", "reference", "swiss"] = Field(
        "all", description="Pairwise: which pairs of a group are judged (cost per group: docs/rl.md)."
    )
    aggregation: Literal["bradley_terry", "win_rate"] = Field(
        "bradley_terry", description="Pairwise: Bradley–Terry strengths (centred on 0) or win rates."
    )
    rounds: int = Field(2, ge=1, description="`round_robin`: neighbours each side; `swiss`: rounds played.")
    template: str | dict[Literal["pointwise", "pairwise"], str] | None = Field(
        None,
        description="Jinja2 template (text or file) for `mode`'s kind, or `{pointwise: ..., pairwise: ...}` for both "
        "(a served judge rates and compares); default: the shipped ones.",
    )
    scale: tuple[int, int] = Field((1, 9), description="Pointwise: the score scale (each score one token).")
    cache: str | None = Field(None, description="SQLite file caching the judge's verdicts (a rerun makes no calls).")
    model: str | None = Field(None, description="With `url` (an OpenAI-compatible endpoint): the served model's name.")
    concurrency: int = Field(8, ge=1, description="With `url`: requests in flight at once.")
    rate: float | None = Field(None, gt=0, description="With `url`: at most this many requests a second.")


class JudgeFile(JudgeSettings):
    """A judge named by a file (``--model judge:judge.yaml``): where its verdicts come from — a local chat model
    (`path`) or an OpenAI-compatible endpoint (`url` + `model`) — and how it judges. Relative paths (`path`,
    `cache`, template files) are read from the file's folder."""

    path: str | None = Field(None, description="A local chat model (causal LM directory or hub name).")
    url: str | None = Field(None, description="An OpenAI-compatible endpoint's /v1 base (with `model`).")
    api_key_env: str | None = Field(None, description="With `url`: environment variable holding the endpoint's key.")

    @model_validator(mode="after")
    def _one_backend(self) -> JudgeFile:
        if bool(self.path) == bool(self.url):
            raise ValueError("a judge needs `path` (a local chat model) or `url` (an OpenAI-compatible endpoint, its "
                             "/v1 base, with `model`), not both")  # fmt: skip
        if self.url and not self.model:
            raise ValueError("a judge on an endpoint (`url`) needs `model`, the served model's name")
        return self


class RewardSource(ScoringSettings):
    """One reward: a rule, a rewardlab reward model, a remote server or an LLM judge; ``weight`` scales it in the
    sum. The scoring settings apply to `model` rewards (`normalize` to `remote` ones too; `device`, `dtype` and
    `batch_size` to a judge)."""

    type: Literal["rule", "model", "remote", "judge"] = Field(description="Where the reward comes from.")
    name: str | None = Field(None, description="Name in the logs (`rewards/<name>/mean`); default from the source.")
    weight: float = Field(1.0, description="Weight in the summed reward.")
    rule: str | None = Field(
        None,
        description="`rule`: `word_count`, `length`, `regex`, or `module:function` (TRL's reward function signature).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="`rule`: the rule's settings (see docs/rl.md, 'Rule rewards')."
    )
    path: str | None = Field(
        None, description="`model`: a rewardlab model directory (or run directory); `judge`: a chat model (causal LM)."
    )
    judge: JudgeSettings = Field(default_factory=JudgeSettings, description="`judge`: how it judges.")
    url: str | list[str] | None = Field(None, description="`remote`: `rewardlab serve` URL(s) or `.../get_reward`.")
    batch_size: int = Field(32, ge=1, description="`model`: most responses scored in one forward pass.")
    api_key_env: str | None = Field(None, description="`remote`: environment variable with the server's API key.")
    uncertainty_penalty: float | None = Field(
        None,
        ge=0,
        description="An ensemble RM (`model.ensemble`), loaded in the run (`model`) or served (`remote`, the "
        "server's base URL): the reward is `mean − λ·std` over the members, per sample; the std is logged as its own "
        "source (`rewards/<name>_uncertainty/mean`).",
    )
    image_column: str | None = Field(
        None,
        description="`model`/`remote` vision RMs: the column with each prompt's images (default `images`; TRL also "
        "shows an `images` column to the policy, so a text-only policy needs another name).",
    )
    attribute: str | None = Field(
        None,
        description="`model`/`remote` RMs with attribute heads (`model.attributes`): the reward is this head's value "
        "(0–1 over its rating range) instead of the preference score; one source per attribute gives each its own "
        "weight and log (`rewards/<name>/mean`, the name defaulting to the attribute). Sources reading one `model` "
        "share its weights and forward pass.",
    )

    @model_validator(mode="after")
    def _fields_for_type(self) -> RewardSource:
        if self.type == "judge":
            if bool(self.path) == bool(self.url) or isinstance(self.url, list):
                raise ValueError("a `judge` reward needs `path` (a local chat model) or `url` (one OpenAI-compatible "
                                 "endpoint, its /v1 base, with judge.model), not both")  # fmt: skip
            if self.url and not self.judge.model:
                raise ValueError("a `judge` reward on an endpoint (`url`) needs judge.model, the served model's name")
        else:
            need = {"rule": "rule", "model": "path", "remote": "url"}[self.type]
            if getattr(self, need) in (None, "", []):
                raise ValueError(f"a `{self.type}` reward needs `{need}`")
        if self.type == "judge" and (self.attribute or self.uncertainty_penalty is not None or self.normalize):
            raise ValueError("a judge reward takes none of attribute, uncertainty_penalty, normalize (they read a "
                             "reward model's heads)")  # fmt: skip
        if self.uncertainty_penalty is not None and self.type == "rule":
            raise ValueError("uncertainty_penalty needs an ensemble reward model (`model` or `remote`); a rule has "
                             "no uncertainty")  # fmt: skip
        urls = [self.url] if isinstance(self.url, str) else self.url or []
        if self.attribute is not None:
            if self.type == "rule":
                raise ValueError(
                    "attribute names a reward model's attribute head (`model` or `remote`); a rule has none"
                )
            if self.uncertainty_penalty is not None:
                raise ValueError(
                    "attribute and uncertainty_penalty do not combine: attribute heads are not an ensemble"
                )
            if self.normalize:
                raise ValueError("normalize applies to the preference score; an attribute is already on its 0–1 scale")
            if any(u.rstrip("/").endswith("/get_reward") for u in urls):
                raise ValueError("attribute reads the attributes of `rewardlab serve`'s /v1/score: give the server's "
                                 "base URL (http://host:port), not .../get_reward")  # fmt: skip
        if self.uncertainty_penalty is not None and any(u.rstrip("/").endswith("/get_reward") for u in urls):
            raise ValueError("uncertainty_penalty reads the uncertainties of `rewardlab serve`'s /v1/score: give the "
                             "server's base URL (http://host:port), not .../get_reward")  # fmt: skip
        for url in urls:
            parsed = urllib.parse.urlsplit(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"url {url!r} is not an http(s) URL; give `rewardlab serve`'s, e.g. http://host:8000")
        return self


class GenerationSettings(StrictModel):
    num_generations: int = Field(8, ge=2, description="Completions per prompt (the group GRPO/RLOO compare).")
    max_completion_length: int = Field(64, ge=1, description="Longest completion, in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")


class RLConfig(StrictModel):
    """`rewardlab rl`: fine-tune a policy with rewards on TRL's GRPO or RLOO trainer."""

    output_dir: str = Field(description="Run directory.")
    policy: PolicyConfig
    data: PromptData
    rewards: list[RewardSource] = Field(min_length=1, description="Reward sources; the reward is their weighted sum.")
    algorithm: Literal["grpo", "rloo"] = Field("grpo", description="TRL trainer: GRPOTrainer or RLOOTrainer.")
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    training: dict[str, Any] = Field(
        default_factory=dict, description="Handed to TRL's GRPOConfig / RLOOConfig (learning_rate, beta, max_steps…)."
    )
    seed: int = Field(0, description="Seed for data order, sampling and initialisation.")
    resume: bool | str = Field(False, description="`true`: continue from the last checkpoint; or a checkpoint path.")


class GenerateConfig(StrictModel):
    """`rewardlab generate`: K candidate answers per prompt from a causal LM, for labeling."""

    model: str = Field(description="Causal LM: local directory or hub name.")
    prompts: str = Field(description="Prompt file (JSONL/CSV/Parquet) or `datasets` directory.")
    prompt_column: str = Field("prompt", description="Column with the prompt (text or chat messages).")
    out: str = Field("candidates.jsonl", description="Output JSONL: one ranked group (without ranks) per prompt.")
    k: int = Field(4, ge=2, description="Candidates per prompt.")
    max_new_tokens: int = Field(256, ge=1, description="Longest answer, in tokens.")
    temperature: float = Field(0.8, gt=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    seed: int = Field(0, description="Seed of the sampling (each batch of prompts is seeded from it).")
    batch_size: int = Field(8, ge=1, description="Prompts per generate call (x k sequences).")
    max_tries: int = Field(3, ge=0, description="Rounds of resampling prompts whose candidates repeat.")
    chat_template: Literal["auto", "always", "never"] = Field(
        "auto", description="Render prompts with the tokenizer's chat template: `auto` when it has one."
    )
    device: str = Field("auto", description="`cpu`, `cuda`, `cuda:1`, or `auto`.")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="Weights dtype (default: saved)."
    )


class CaptureConfig(StrictModel):
    """`rewardlab capture`: screenshots of web pages with the system's Chromium (Playwright)."""

    source: str = Field(description="A file of URLs (one per line) or a folder of .html files.")
    out: str = Field(description="Output folder: images/ and manifest.jsonl.")
    viewports: list[str] = Field(["1280x800"], min_length=1, description="WIDTHxHEIGHT, one screenshot each.")
    full_page: bool = Field(False, description="The whole scrollable page, not just the viewport.")
    wait: Literal["load", "domcontentloaded", "networkidle", "commit"] = Field(
        "load", description="When a page counts as loaded."
    )
    timeout_s: float = Field(30.0, gt=0, description="Per page and try.")
    retries: int = Field(1, ge=0, description="More tries for a page that fails.")
    parallel: int = Field(4, ge=1, description="Pages loading at once.")
    block_external: bool = Field(False, description="Abort every request to another origin than the page's.")
    browser: str | None = Field(None, description="Chromium executable (default: $REWARDLAB_CHROMIUM or chromium).")
    describe: bool = Field(
        False,
        description="Read facts from each page's DOM and write descriptions.jsonl: the page's description against "
        "descriptions with one fact changed (pairs with the screenshot, ready for train or review).",
    )
    rejected_per_page: int = Field(3, ge=1, description="--describe: rejected descriptions (pairs) per page.")


class DemoConfig(StrictModel):
    output_dir: str = Field("runs/demo", description="Run directory.")
    seed: int = Field(0, description="Seed for data and model.")
    n_train: int = Field(1600, ge=10, description="Generated training pairs.")
    n_eval: int = Field(300, ge=10, description="Generated held-out pairs.")
    epochs: float = Field(5.0, gt=0, description="Training epochs.")
    batch_size: int = Field(16, ge=1, description="Pairs per step.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    model: Literal["tiny", "minilm"] = Field(
        "tiny", description="`tiny`: a small Qwen2 decoder built from a config; `minilm`: the packaged MiniLM."
    )
    vision: bool = Field(
        False,
        description="Vision demo instead: rendered web-page screenshots, a tiny VLM RM "
        "(other options: see rewardlab.recipes.demos.vision.VisionDemoConfig).",
    )
    rl: bool = Field(
        False,
        description="RL demo instead: a tiny policy learns to write exactly N words with GRPO "
        "(other options: see rewardlab.recipes.demos.rl.RLDemoConfig).",
    )
    overopt: bool = Field(
        False,
        description="Overoptimization demo instead: RL against a single proxy RM, an ensemble and an ensemble with "
        "an uncertainty penalty, a word-count rule as the gold reward "
        "(other options: see rewardlab.recipes.demos.overopt.OveroptDemoConfig).",
    )


def _name_values(text: str, what: str) -> dict[str, Any]:
    """``"reward=1,verbosity=-0.5"`` → ``{"reward": "1", "verbosity": "-0.5"}`` (pydantic checks the values)."""
    out: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, number = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{what}: {item!r} is not NAME=NUMBER (e.g. reward=1,verbosity=-0.5)")
        out[name.strip()] = number.strip()
    return out


class EvalSetConfig(DataSource):
    """One evaluation set: a data source (pairs or ranked groups) with a display name."""

    label: str | None = Field(None, description="Name in the results (default: the file name).")

    @property
    def display_name(self) -> str:
        if self.label:
            return self.label
        base = self.path.rstrip("/").split("/")[-1]
        for suffix in (".gz", ".jsonl", ".json", ".csv", ".parquet"):
            base = base.removesuffix(suffix)
        return base


class EvalConfig(ScoringSettings):
    """`rewardlab eval`: many model directories × their checkpoints × one or more eval sets (``max_length``: each
    model's own by default; ``normalize`` does not change any metric)."""

    model_dirs: list[str] = Field(
        description="Model or run directories; glob patterns allowed (e.g. `runs/*`). A run directory's "
        "`model/` export and each checkpoint are evaluated. `judge:SPEC` evaluates an LLM judge (a local chat model, "
        "`http://HOST/v1#MODEL` or a judge file; pairs judged in both orders)."
    )
    checkpoint_pattern: str = Field("checkpoint-*", description="Glob for checkpoint subdirectories.")
    include_final: bool = Field(True, description="Also evaluate the final export (the directory itself or `model/`).")
    eval_sets: list[EvalSetConfig] = Field(min_length=1, description="Evaluation data sets.")
    output_dir: str = Field("eval_results", description="Where results, logs and plots are written.")
    per_sample_scores: bool = Field(False, description="Include every sample's scores in the JSON results.")
    calibration_bins: int = Field(10, ge=2, description="Bins of the reliability table / ECE.")
    plots: bool = Field(True, description="Write PNG plots beside the results.")
    bench: EvalBench | None = Field(
        None, description="Benchmark suites every evaluated model also runs (`suite`, `data`, `split`, `limit`)."
    )
    weights: dict[str, float] | None = Field(
        None,
        description="Attribute heads: also report the pairwise accuracy of `Σ weight · value`, where `reward` is the "
        "preference score (raw; normalized with `normalize: true`) and any other key an attribute (0–1), e.g. "
        "`{reward: 1, verbosity: -0.5}`; on the command line `--weights reward=1,verbosity=-0.5`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_dir(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("model_dirs"), str):
            value = {**value, "model_dirs": [value["model_dirs"]]}
        if isinstance(value, dict) and isinstance(value.get("weights"), str):
            value = {**value, "weights": _name_values(value["weights"], "weights")}
        return value


BenchSuite = Literal[
    "rewardbench", "rewardbench2", "rm-bench", "judgebench", "ppe", "vl-rewardbench", "mm-rewardbench"
]
BENCH_SUITES: tuple[str, ...] = get_args(BenchSuite)


class BenchConfig(ScoringSettings):
    """`rewardlab bench`: reward models on the standard benchmarks, each scored by its official metric beside the
    length baselines (``normalize`` does not change any metric)."""

    model: list[str] = Field(
        min_length=1,
        description="Reward model directory or hub name, or `judge:SPEC`: an LLM judge (a local chat model, "
        "`http://HOST/v1#MODEL` or a judge file; docs/rl.md).",
    )
    suite: list[BenchSuite] = Field(
        min_length=1, description="Benchmark suites, comma-separated or repeated: " + ", ".join(BENCH_SUITES) + "."
    )
    data: list[str] = Field(
        default_factory=list,
        description="A suite's data in its published schema (JSONL/JSON/Parquet file, `save_to_disk` folder or hub "
        "name): PATH with one suite, SUITE=PATH with several. Default: the suite's hub dataset.",
    )
    split: str | None = Field(
        None, description="Split of a hub dataset or `save_to_disk` folder (default: the suite's)."
    )
    limit: int | None = Field(None, ge=1, description="Score only the first N items of each subset (quick runs).")
    subsets: list[str] = Field(
        default_factory=list,
        description="Score only these subsets (RewardBench subsets, RM-Bench domains, JudgeBench sources, vision "
        "categories), comma-separated; a name no suite has is an error that lists them. Default: all.",
    )
    out: str = Field(description="Output folder: bench.json, bench.csv and the score cache (cache/).")

    @model_validator(mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        """``--suite a,b`` (or ``suite: a,b``) is a list; so is a single ``model`` or ``data`` string."""
        if not isinstance(value, dict):
            return value
        value = dict(value)
        for key in ("suite", "model", "data", "subsets"):
            if isinstance(value.get(key), str):
                value[key] = [value[key]]
        for key in ("suite", "subsets"):
            if isinstance(value.get(key), list):
                value[key] = [s.strip() for v in value[key] for s in str(v).split(",") if s.strip()]
        return value

    def data_for(self) -> dict[str, str]:
        """Suite → data path given with ``data`` (suites not named use their hub dataset)."""
        out: dict[str, str] = {}
        for entry in self.data:
            name, sep, path = entry.partition("=")
            if sep and name in BENCH_SUITES:
                out[name] = path
            elif len(self.suite) == 1:
                out[self.suite[0]] = entry
            else:
                raise ValueError(f"data {entry!r}: with several suites, name each one's data as SUITE=PATH")
        return out

    @model_validator(mode="after")
    def _check_data(self) -> BenchConfig:
        if len(set(self.suite)) != len(self.suite):
            raise ValueError(f"suite lists a suite twice: {', '.join(self.suite)}")
        unused = set(self.data_for()) - set(self.suite)
        if unused:
            raise ValueError(f"data given for {', '.join(sorted(unused))}, which is not among the suites run")
        return self


class EvalBench(StrictModel):
    """The ``bench:`` section of an eval config: every evaluated model (final export and checkpoints) also runs
    these benchmark suites (as `rewardlab bench`; results under ``OUTPUT_DIR/bench``)."""

    suite: list[BenchSuite] = Field(min_length=1, description="Benchmark suites (see `rewardlab bench`).")
    data: list[str] = Field(default_factory=list, description="As `rewardlab bench --data`: PATH or SUITE=PATH.")
    split: str | None = Field(None, description="Split of a hub dataset or `save_to_disk` folder.")
    limit: int | None = Field(None, ge=1, description="Score only the first N items of each subset.")

    @model_validator(mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = {**value, **{k: [value[k]] for k in ("suite", "data") if isinstance(value.get(k), str)}}
            if isinstance(value.get("suite"), list):
                value["suite"] = [s.strip() for v in value["suite"] for s in str(v).split(",") if s.strip()]
        return value


EvalConfig.model_rebuild()


class InspectConfig(StrictModel):
    """`rewardlab inspect DATA`: what is in a preference data file before training on it."""

    data: DataSource = Field(description="The data to inspect (path plus reader options).")
    tokenizer: str | None = Field(
        None, description="Tokenizer (directory or hub name) for token lengths; default: whitespace words."
    )
    max_length: int = Field(512, ge=1, description="Count the pairs whose prompt+response exceeds this length.")
    examples: int = Field(3, ge=0, description="How many example records to show.")
    max_errors: int = Field(20, ge=1, description="How many malformed rows to list (all are counted).")
