"""Reward functions in TRL's calling convention: ``f(prompts, completions, **columns) -> list[float]``.

TRL's ``GRPOTrainer`` / ``RLOOTrainer`` accept a model directory in ``reward_funcs`` and score it with their own
tokenization (``prompt + completion``, no special tokens added). A format 2 rewardlab export is built for exactly
that call, but other exports are not: an encoder (TRL drops ``[CLS]``/``[SEP]`` and the text pair), a model trained
with ``data.append_eos`` (TRL strips the EOS), a vision RM (TRL never passes it the images), or a model whose
tokenizer differs from the policy's. :class:`ModelReward` scores any of them through rewardlab's
:class:`~rewardlab.models.scorer.Scorer`, so the reward is the number ``rewardlab score`` gives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardlab.config.schema import ScoringSettings
from rewardlab.data.records import plain_text
from rewardlab.models.scorer import Scorer

if TYPE_CHECKING:
    from rewardlab.serving.client import Scored

IMAGE_COLUMNS = ("images", "image")


class ModelReward:
    """A reward model as a TRL reward function.

    Args:
        scorer: the loaded model (:meth:`from_pretrained` builds one from a directory).
        normalize: subtract the eval-score mean and divide by the std saved in ``rewardlab.json``.
        name: the name TRL logs the reward under (``rewards/<name>/mean``).

    Prompts and completions are plain strings or chat messages, as TRL passes them. Encoder RMs (a text pair) and
    vision RMs score chat prompts as their last user turn's text and completions as their text. Vision RMs read each
    completion's images from the ``images`` (or ``image``) column of the dataset, which TRL hands to reward
    functions; the text of a multimodal message is its text parts. TRL also feeds an ``images`` column to the
    *policy* (as a multimodal prompt): with a text-only policy, put the RM's images in another column and name it
    with ``image_column``.
    """

    def __init__(self, scorer: Scorer, *, normalize: bool = False, name: str = "rewardlab",
                 image_column: str | None = None):  # fmt: skip
        self.scorer = scorer
        self.normalize = normalize
        self._last: tuple[Any, tuple[list[float], list[float | None]]] | None = None
        self.image_columns = (image_column,) if image_column else IMAGE_COLUMNS
        if normalize:
            scorer.normalize([0.0])  # fail now, not at the first training step, if there are no statistics
        self.__name__ = name

    @classmethod
    def from_pretrained(cls, path: str, settings: ScoringSettings | None = None, *, image_column: str | None = None,
                        **overrides: Any) -> ModelReward:  # fmt: skip
        """``settings`` (:class:`~rewardlab.config.schema.ScoringSettings`) or keyword overrides of its fields
        (``device="cpu", normalize=True, batch_size=32``)."""
        settings = (settings or ScoringSettings()).scoring(**overrides)
        scorer = Scorer.from_pretrained(str(path), settings)
        return cls(
            scorer, normalize=settings.normalize, name=Path(path).name or "rewardlab", image_column=image_column
        )

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        return self.score_with_uncertainty(prompts, completions, **columns)[0]

    def score_with_uncertainty(self, prompts: Sequence[Any], completions: Sequence[Any],
                               **columns: Any) -> tuple[list[float], list[float | None]]:  # fmt: skip
        """The rewards and (an ensemble) their uncertainties; the last call's answer is kept, so the
        :class:`UncertaintyPenalty` of the same step reads it instead of scoring again."""
        key = json.dumps([list(prompts), list(completions)], sort_keys=True, default=str)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        images = _images(columns, self.image_columns) if self.scorer.is_vision else None
        texts, answers = list(prompts), list(completions)
        # A vision RM scores plain text against its image; an encoder RM a (prompt, response) text pair, which no
        # chat template renders: both get a conversation's last user turn as the prompt, the completion's text.
        if self.scorer.is_vision or self.scorer.model.pooling == "cls":
            texts = [_text(p, last_user=True) for p in texts]
            answers = [_text(c) for c in answers]
        result = self.scorer.score_with_uncertainty(texts, answers, normalize=self.normalize, images=images)
        self._last = (key, result)
        return result


class UncertaintyPenalty:
    """An ensemble reward model's uncertainty (its members' standard deviation) as a TRL reward function, to be
    weighted by ``−λ`` beside the model's own reward: the sum is ``mean − λ·std`` per sample, and TRL logs the
    spread apart (``rewards/<name>/mean``). It reads the scores ``reward`` (a :class:`ModelReward` or a
    :class:`RemoteReward`) computed for the same completions."""

    def __init__(self, reward: ModelReward | RemoteReward, name: str):
        if isinstance(reward, ModelReward) and reward.scorer.members < 2:
            raise ValueError("an uncertainty penalty needs an ensemble reward model (trained with model.ensemble)")
        self.reward = reward
        self.__name__ = name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        spread = self.reward.score_with_uncertainty(prompts, completions, **columns)[1]
        if spread is None or any(u is None for u in spread):
            raise RuntimeError(f"{self.__name__}: the reward server sent no uncertainties (its model has one head); "
                               "serve an ensemble (model.ensemble) or drop uncertainty_penalty")  # fmt: skip
        return [float(u) for u in spread]


class RemoteReward:
    """A reward model behind ``rewardlab serve`` (or any OpenRLHF ``/get_reward`` server) as a TRL reward function:
    ``GRPOTrainer(reward_funcs=[RemoteReward("http://127.0.0.1:8000")], ...)``.

    All completions of a step go out in few requests (the client batches and spreads them over ``urls``, retrying
    a failed server's share on the others). Options are :class:`~rewardlab.serving.client.RewardClient`'s
    (``api_key``, ``weights``, ``timeout_s``, ``retries``, ...); ``normalize`` asks the server for
    (score − mean) / std with the model's saved statistics — the normalization OpenRLHF's remote path ignores.
    An ``images`` (or ``image``) column is sent with each completion, for vision RMs.
    """

    def __init__(self, urls: str | Sequence[str], *, normalize: bool | None = None, name: str = "remote_rm",
                 image_column: str | None = None, **client_options: Any):  # fmt: skip
        from rewardlab.serving.client import RewardClient

        self.client = RewardClient(urls, normalize=normalize, **client_options)
        self.image_columns = (image_column,) if image_column else IMAGE_COLUMNS
        self._last: tuple[str, Scored] | None = None
        self.__name__ = name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        return self.score_with_uncertainty(prompts, completions, **columns)[0]

    def score_with_uncertainty(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> Scored:
        """The rewards and (an ensemble server) their uncertainties; the last call's answer is kept, so the
        :class:`UncertaintyPenalty` of the same step reads it instead of asking the servers again."""
        images = None
        if any(columns.get(name) is not None for name in self.image_columns):
            images = _images(columns, self.image_columns)
            prompts = [_text(p, last_user=True) for p in prompts]
            completions = [_text(c) for c in completions]
        key = json.dumps([list(prompts), list(completions), images], sort_keys=True, default=str)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        result = self.client.score_with_uncertainty(list(prompts), list(completions), images=images)
        self._last = (key, result)
        return result

    def close(self) -> None:
        self.client.close()


def _images(columns: dict[str, Any], names: Sequence[str] = IMAGE_COLUMNS) -> list[tuple[Any, ...]]:
    for name in names:
        if columns.get(name) is not None:
            return [tuple(v) if isinstance(v, (list, tuple)) else (v,) for v in columns[name]]
    names = " or ".join(names)
    raise ValueError(f"a vision reward model needs the images: give the dataset an {names} column")


def _text(value: Any, *, last_user: bool = False) -> str:
    """Plain text of a string, or of chat messages (the last user turn's, or all turns', text parts)."""
    return plain_text(value, turns="last_user" if last_user else "all")
