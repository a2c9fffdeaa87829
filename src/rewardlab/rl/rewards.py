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
        attribute: a model with attribute heads: the reward is this head's value (0–1) instead of the score.

    Prompts and completions are plain strings or chat messages, as TRL passes them. Encoder RMs (a text pair) and
    vision RMs score chat prompts as their last user turn's text and completions as their text. Vision RMs read each
    completion's images from the ``images`` (or ``image``) column of the dataset, which TRL hands to reward
    functions; the text of a multimodal message is its text parts. TRL also feeds an ``images`` column to the
    *policy* (as a multimodal prompt): with a text-only policy, put the RM's images in another column and name it
    with ``image_column``.
    """

    def __init__(self, scorer: Scorer, *, normalize: bool = False, name: str = "rewardlab",
                 image_column: str | None = None, attribute: str | None = None):  # fmt: skip
        self.scorer = scorer
        self.normalize = normalize
        self.attribute = attribute
        # The last call's answer (a one-entry dict, so sources made by :meth:`reading` share it): the model's
        # score, uncertainty penalty and attribute sources of one step score the completions once.
        self._last: dict[str, Any] = {}
        self.image_columns = (image_column,) if image_column else IMAGE_COLUMNS
        if normalize:
            scorer.normalize([0.0])  # fail now, not at the first training step, if there are no statistics
        if attribute is not None and attribute not in scorer.attribute_names:
            heads = ", ".join(scorer.attribute_names) or "none"
            raise ValueError(f"attribute {attribute!r}: the reward model has no such head (its attribute heads: "
                             f"{heads})")  # fmt: skip
        self.__name__ = name

    def reading(self, *, name: str, attribute: str | None = None, normalize: bool | None = None) -> ModelReward:
        """Another reward from the same loaded model (its score, or another attribute), sharing its weights and
        each step's forward pass."""
        other = ModelReward(self.scorer, normalize=self.normalize if normalize is None else normalize, name=name,
                            attribute=attribute)  # fmt: skip
        other.image_columns, other._last = self.image_columns, self._last
        return other

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
        if self.attribute is not None:
            return [a[self.attribute] for a in self._scored(prompts, completions, columns)["attributes"]]
        return self.score_with_uncertainty(prompts, completions, **columns)[0]

    def score_with_uncertainty(self, prompts: Sequence[Any], completions: Sequence[Any],
                               **columns: Any) -> tuple[list[float], list[float | None]]:  # fmt: skip
        """The scores and (an ensemble) their uncertainties; the last call's answer is kept, so the
        :class:`UncertaintyPenalty` of the same step reads it instead of scoring again."""
        scored = self._scored(prompts, completions, columns)
        return scored["scores"], scored["uncertainties"]

    def _scored(self, prompts: Sequence[Any], completions: Sequence[Any], columns: dict[str, Any]) -> dict[str, Any]:
        """``{"scores", "uncertainties", "attributes"}`` of the completions (uncertainties None but for an ensemble,
        attributes empty dicts without attribute heads), from the last call's answer where it scored the same."""
        key = json.dumps([list(prompts), list(completions), self.normalize], sort_keys=True, default=str)
        if self._last.get("key") == key:
            return self._last["result"]
        images = _images(columns, self.image_columns) if self.scorer.is_vision else None
        texts, answers = list(prompts), list(completions)
        # A vision RM scores plain text against its image; an encoder RM a (prompt, response) text pair, which no
        # chat template renders: both get a conversation's last user turn as the prompt, the completion's text.
        if self.scorer.is_vision or self.scorer.model.pooling == "cls":
            texts = [_text(p, last_user=True) for p in texts]
            answers = [_text(c) for c in answers]
        if self.scorer.attribute_names:
            scores, attributes = self.scorer.score_with_attributes(texts, answers, normalize=self.normalize,
                                                                   images=images)  # fmt: skip
            result = {"scores": scores, "uncertainties": [None] * len(scores), "attributes": attributes}
        else:
            scores, spread = self.scorer.score_with_uncertainty(texts, answers, normalize=self.normalize,
                                                                images=images)  # fmt: skip
            result = {"scores": scores, "uncertainties": spread, "attributes": [{} for _ in scores]}
        self._last.update(key=key, result=result)
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
                 image_column: str | None = None, attribute: str | None = None, **client_options: Any):  # fmt: skip
        from rewardlab.serving.client import RewardClient

        self.client = RewardClient(urls, normalize=normalize, **client_options)
        self.image_columns = (image_column,) if image_column else IMAGE_COLUMNS
        self.attribute = attribute
        self._last: tuple[str, Scored] | None = None
        self.__name__ = name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        if self.attribute is not None:
            return self.attribute_values(prompts, completions, **columns)
        return self.score_with_uncertainty(prompts, completions, **columns)[0]

    def attribute_values(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        """The server's value of ``attribute`` for each completion (/v1/score's ``attributes``)."""
        prompts, completions, images = self._inputs(prompts, completions, columns)
        _, attributes = self.client.score_with_attributes(list(prompts), list(completions), images=images)
        missing = [a for a in attributes if self.attribute not in a]
        if missing:
            raise RuntimeError(f"{self.__name__}: the reward server sent no attribute {self.attribute!r} (it sent: "
                               f"{', '.join(missing[0]) or 'none'})")  # fmt: skip
        return [a[self.attribute] for a in attributes]

    def score_with_uncertainty(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> Scored:
        """The rewards and (an ensemble server) their uncertainties; the last call's answer is kept, so the
        :class:`UncertaintyPenalty` of the same step reads it instead of asking the servers again."""
        prompts, completions, images = self._inputs(prompts, completions, columns)
        key = json.dumps([list(prompts), list(completions), images], sort_keys=True, default=str)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        result = self.client.score_with_uncertainty(list(prompts), list(completions), images=images)
        self._last = (key, result)
        return result

    def _inputs(self, prompts: Sequence[Any], completions: Sequence[Any],
                columns: dict[str, Any]) -> tuple[Sequence[Any], Sequence[Any], list[Any] | None]:  # fmt: skip
        """What is sent: with an image column, each completion's images and the texts as a vision RM reads them."""
        if not any(columns.get(name) is not None for name in self.image_columns):
            return prompts, completions, None
        images = _images(columns, self.image_columns)
        return [_text(p, last_user=True) for p in prompts], [_text(c) for c in completions], images

    def close(self) -> None:
        self.client.close()


class JudgeReward:
    """An LLM judge as a TRL reward function. Pairwise: the completions of one prompt (GRPO/RLOO pass each prompt's
    ``num_generations`` completions one after another) are judged on the schedule's pairs, both orders, and the
    verdicts fitted into one reward per completion (Bradley–Terry strengths or win rates); a prompt with a single
    completion gets 0. Pointwise: each completion's expected score. ``calls`` counts the judge's model calls."""

    def __init__(self, judge: Any, settings: Any, name: str = "judge"):
        self.judge, self.settings = judge, settings
        self.__name__ = name

    @classmethod
    def from_source(cls, src: Any) -> JudgeReward:
        from rewardlab.judges.spec import build_judge
        from rewardlab.models.scorer import resolve_device

        judge = build_judge(src.judge, path=src.path, url=str(src.url) if src.url else None,
                            api_key_env=src.api_key_env, device=resolve_device(src.device), dtype=src.dtype,
                            batch_size=src.batch_size)  # fmt: skip
        return cls(judge, src.judge, name=src.name or "judge")

    @property
    def calls(self) -> int:
        return self.judge.backend.calls

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        from rewardlab.judges.judge import judge_rewards
        from rewardlab.judges.scoring import prompt_text

        return judge_rewards(self.judge, self.settings, [prompt_text(p) for p in prompts],
                             [_text(c) for c in completions])  # fmt: skip


def _images(columns: dict[str, Any], names: Sequence[str] = IMAGE_COLUMNS) -> list[tuple[Any, ...]]:
    for name in names:
        if columns.get(name) is not None:
            return [tuple(v) if isinstance(v, (list, tuple)) else (v,) for v in columns[name]]
    names = " or ".join(names)
    raise ValueError(f"a vision reward model needs the images: give the dataset an {names} column")


def _text(value: Any, *, last_user: bool = False) -> str:
    """Plain text of a string, or of chat messages (the last user turn's, or all turns', text parts)."""
    return plain_text(value, turns="last_user" if last_user else "all")
