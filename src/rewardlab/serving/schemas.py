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


class ScoreRequest(Strict):
    items: list[ScoreItem] = Field(min_length=1, description="What to score; scores come back in this order.")
    normalize: StrictBool | None = Field(
        None, description="(score − mean) / std with the statistics saved with the model (default: the server's)."
    )


class ScoreResponse(BaseModel):
    scores: list[float]
    uncertainties: list[float] | None = Field(
        None, description="An ensemble model's uncertainty per score: its members' standard deviation (scaled as "
        "the scores are); absent for a single-head model.")  # fmt: skip
    normalized: bool = Field(description="Whether the scores are (score − mean) / std (the request's `normalize`, "
                             "else the server's default).")  # fmt: skip


class CompareRequest(Strict):
    prompt: Text
    a: Text
    b: Text
    images: list[Image] = Field(default_factory=list, description="Vision models: the image both answers are about.")


class CompareResponse(BaseModel):
    better: Literal["a", "b"] = Field(description='"a" on an exact tie.')
    p_a: float = Field(description="P(a is better) = σ(score_a − score_b).")
    score_a: float
    score_b: float
    uncertainty_a: float | None = Field(None, description="An ensemble's members' standard deviation of score_a.")
    uncertainty_b: float | None = Field(None, description="An ensemble's members' standard deviation of score_b.")
    agreement: float | None = Field(None, description="An ensemble's share of members preferring `better`.")


class RankRequest(Strict):
    prompt: Text
    responses: list[Text] = Field(min_length=1)
    images: list[Image] = Field(default_factory=list, description="Vision models: the image the answers are about.")
    normalize: StrictBool | None = Field(
        None, description="As for /v1/score: normalized scores (the order is the same)."
    )


class RankedItem(BaseModel):
    index: int = Field(description="Position in the request's `responses`.")
    score: float
    uncertainty: float | None = Field(None, description="An ensemble's members' standard deviation of the score.")


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
        "prompt) and, for an ensemble, `rewardlab_uncertainty` (the members' standard deviation, raw)."
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


class Health(BaseModel):
    status: Literal["ok", "draining"]
    model: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
