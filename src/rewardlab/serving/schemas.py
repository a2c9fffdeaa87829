"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI schema at ``/docs``).

A prompt or a response is plain text or a list of chat messages, as everywhere in rewardlab. An image is a string
(a ``data:image/...;base64,`` URI, an ``http(s)://`` URL, or bare base64) or an object naming one explicitly:
``{"base64": ...}``, ``{"url": ...}`` or ``{"path": ...}`` (a file under the server's ``image_root``).
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(BaseModel):
    """A chat message; ``content`` is text or a list of parts (``{"type": "text", "text": ...}``, ...)."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: Union[str, list[dict[str, Any]]]


Text = Union[str, list[Message]]


class ImageRef(Strict):
    base64: str | None = None
    url: str | None = None
    path: str | None = None


Image = Union[str, ImageRef]


class ScoreItem(Strict):
    prompt: Text = Field(description="The prompt (text or chat messages); may be empty.")
    response: Text = Field(description="The response to score (text or chat messages).")
    images: list[Image] = Field(default_factory=list, description="Vision models: the image(s) the text is about.")


WEIGHTS_DESCRIPTION = (
    "A model with attribute heads: `{name: weight}` over its attributes (0–1 scale) and `reward` (the preference "
    'score, normalized when the scores are), e.g. `{"reward": 1, "verbosity": -0.5}`; the answer adds the '
    "weighted sums as `combined` (422 for a name the model lacks, or for a model without attribute heads)."
)
ATTRIBUTES_DESCRIPTION = (
    "A model with attribute heads: each response's `{attribute: value}` on the 0–1 scale of the attribute's range "
    "(0 = its min, 1 = its max; ranges at /v1/model); absent for other models."
)


class ScoreRequest(Strict):
    items: list[ScoreItem] = Field(min_length=1, description="What to score; scores come back in this order.")
    normalize: StrictBool | None = Field(
        None, description="(score − mean) / std with the statistics saved with the model (default: the server's)."
    )
    weights: dict[str, float] | None = Field(None, description=WEIGHTS_DESCRIPTION)


class ScoreResponse(BaseModel):
    scores: list[float] = Field(description="The preference scores (never weighted: see `combined`).")
    uncertainties: list[float] | None = Field(
        None, description="An ensemble model's uncertainty per score: its members' standard deviation (scaled as "
        "the scores are); absent for a single-head model.")  # fmt: skip
    attributes: list[dict[str, float]] | None = Field(None, description=ATTRIBUTES_DESCRIPTION)
    combined: list[float] | None = Field(
        None, description="With the request's `weights`: Σ weight · value per item (`reward` = its score); absent "
        "without weights.")  # fmt: skip
    normalized: bool = Field(description="Whether the scores are (score − mean) / std (the request's `normalize`, "
                             "else the server's default).")  # fmt: skip


class CompareRequest(Strict):
    prompt: Text
    a: Text
    b: Text
    images: list[Image] = Field(default_factory=list, description="Vision models: the image both answers are about.")
    weights: dict[str, float] | None = Field(
        None, description=WEIGHTS_DESCRIPTION + " `better` and `p_a` then compare the combined rewards."
    )


class CompareResponse(BaseModel):
    better: Literal["a", "b"] = Field(description='"a" on an exact tie.')
    p_a: float = Field(
        description="P(a is better) = σ(score_a − score_b), or σ(combined_a − combined_b) with weights."
    )
    score_a: float
    score_b: float
    uncertainty_a: float | None = Field(None, description="An ensemble's members' standard deviation of score_a.")
    uncertainty_b: float | None = Field(None, description="An ensemble's members' standard deviation of score_b.")
    agreement: float | None = Field(None, description="An ensemble's share of members preferring `better`.")
    attributes_a: dict[str, float] | None = Field(None, description="A model with attribute heads: a's attributes.")
    attributes_b: dict[str, float] | None = Field(None, description="A model with attribute heads: b's attributes.")
    combined_a: float | None = Field(None, description="With `weights`: a's combined reward.")
    combined_b: float | None = Field(None, description="With `weights`: b's combined reward.")
    p_a_a_first: float | None = Field(None, description="A pairwise judge: P(a ≻ b) with a shown first.")
    p_a_b_first: float | None = Field(None, description="A pairwise judge: P(a ≻ b) with b shown first.")
    orders_disagree: bool | None = Field(
        None, description="A pairwise judge: the two orders picked different responses (it followed the position)."
    )


class RankRequest(Strict):
    prompt: Text
    responses: list[Text] = Field(min_length=1)
    images: list[Image] = Field(default_factory=list, description="Vision models: the image the answers are about.")
    normalize: StrictBool | None = Field(
        None, description="As for /v1/score: normalized scores (the order is the same)."
    )
    weights: dict[str, float] | None = Field(
        None, description=WEIGHTS_DESCRIPTION + " The ranking is then by `combined`."
    )


class RankedItem(BaseModel):
    index: int = Field(description="Position in the request's `responses`.")
    score: float
    uncertainty: float | None = Field(None, description="An ensemble's members' standard deviation of the score.")
    attributes: dict[str, float] | None = Field(None, description="A model with attribute heads: its attributes.")
    combined: float | None = Field(None, description="With `weights`: the combined reward the ranking is by.")


class RankResponse(BaseModel):
    ranking: list[RankedItem] = Field(description="Best first.")
    normalized: bool = Field(description="Whether the scores are (score − mean) / std (the request's `normalize`, "
                             "else the server's default).")  # fmt: skip


class GetRewardRequest(BaseModel):
    """OpenRLHF's remote reward request. Other keys OpenRLHF may add are ignored."""

    model_config = ConfigDict(extra="ignore")
    query: list[str] = Field(min_length=1, description="The policy's decoded prompt + response, one per sample.")
    prompts: list[str] | None = Field(None, description="The prompt each query starts with (split off as the prompt).")
    labels: list[Any] | None = Field(None, description="Accepted for compatibility; not used by a reward model.")
    normalize: StrictBool | None = Field(None, description="Normalize `rewards` (default: the server's `normalize`).")


class GetRewardResponse(BaseModel):
    rewards: list[float] = Field(description="What the policy optimises: normalized when normalization is on.")
    scores: list[float] = Field(description="The model's raw scores.")
    extra_logs: dict[str, list[float]] = Field(
        description="`rewardlab_score` (raw scores), `rewardlab_unsplit` (1 where the query did not start with its "
        "prompt), for an ensemble `rewardlab_uncertainty` (the members' standard deviation, raw) and, for a model "
        "with attribute heads, `rewardlab_attribute_<name>` per attribute (0–1 scale)."
    )


class Normalization(BaseModel):
    mean: float
    std: float


class ModelInfo(BaseModel):
    name: str
    modality: Literal["text", "vision"]
    model_type: str
    pooling: str
    max_length: int
    input_format: dict[str, Any]
    normalization: Normalization | None
    device: str
    dtype: str
    rewardlab_version: str
    limits: dict[str, Any]
    members: int = Field(1, description="Heads of an ensemble model (its scores come with uncertainties); 1: one.")
    attributes: dict[str, list[float]] | None = Field(
        None, description="Attribute heads, in order: `{name: [min, max]}`, the rating range a value's 0–1 scale "
        "spans; null for a model without them.")  # fmt: skip


class JudgeInfo(BaseModel):
    """``/v1/model`` of a served LLM judge (``rewardlab serve --model judge:SPEC``)."""

    name: str
    kind: Literal["judge"] = "judge"
    judge: str = Field(description="How it judges, in words (backend, mode, schedule, template).")
    backend: Literal["local", "endpoint"]
    mode: Literal["pairwise", "pointwise"]
    schedule: str
    aggregation: str
    scale: tuple[int, int]
    cached: bool
    rewardlab_version: str
    limits: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok", "draining"]
    model: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
