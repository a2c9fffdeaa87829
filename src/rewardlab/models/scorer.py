"""Scorer: the one scoring path (DESIGN.md §6) used by evaluation, the CLI, the server and RL rewards.

It scores with a :class:`~rewardlab.models.bundle.RewardBundle` — the same transform as training, with the
settings and input format its export records — and runs batched, no-grad forwards. Inputs are sorted by length
inside a call so batches carry little padding; results come back in the caller's order. Over-long inputs are
always truncated when scoring (never dropped), by the training-time rule.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rewardlab.config.schema import ScoringSettings
from rewardlab.data.collator import RowCollator
from rewardlab.data.records import PreferencePair, Text
from rewardlab.errors import DataError, ModelError
from rewardlab.models.bundle import RewardBundle

# Longest shared-prefix row in tokens (before sharing): its attention mask is (row x row), so rows stay moderate.
MAX_SHARED_ROW = 4096
MASK_BUDGET = 2**25  # attention-mask elements per forward over all shared-prefix rows (128 MB in fp32)


def image_key(images: tuple[Any, ...]) -> tuple[Any, ...]:
    """Identifies a record's images for sharing: paths and URLs by value, ``{"bytes": ...}`` dicts by a hash of
    their bytes (the server decodes request images into such dicts: equal images sent twice are encoded once),
    other objects (PIL images) by identity."""
    return tuple(_one_image_key(im) for im in images)


def _one_image_key(image: Any) -> Any:
    if isinstance(image, str):
        return image
    if isinstance(image, dict) and isinstance(image.get("bytes"), (bytes, bytearray)):
        return ("sha256", hashlib.sha256(image["bytes"]).hexdigest())
    return id(image)


@dataclass(frozen=True)
class ScoringItem:
    """One encoded (prompt, response[, images]) ready for a forward pass; ``key`` names its images (rows with
    equal keys share them in a batch), ``None`` for text; ``prompt_key`` names its prompt (items with equal keys
    share the prompt's tokens in one row, where that is exact: see :meth:`Scorer.score_items`)."""

    encoded: Any
    key: Any = None
    prompt_key: str | None = None

    @property
    def tokens(self) -> int:
        return len(self.encoded.input_ids)


@dataclass(frozen=True)
class Comparison:
    """Which of two responses the model prefers, and how sure: ``p_a = σ(score_a − score_b)``. An ensemble adds
    each score's uncertainty (the members' standard deviation) and ``agreement``: the share of members that prefer
    the same response as the mean."""

    better: str  # "a" or "b" ("a" on an exact tie)
    p_a: float
    score_a: float
    score_b: float
    uncertainty_a: float | None = None
    uncertainty_b: float | None = None
    agreement: float | None = None
    attributes_a: dict[str, float] | None = None  # a model with attribute heads: each answer's attributes
    attributes_b: dict[str, float] | None = None
    combined_a: float | None = None  # with weights: the weighted rewards that ``better`` and ``p_a`` compare
    combined_b: float | None = None


def compare_scores(score_a: float, score_b: float, members_a: Sequence[float] = (),
                   members_b: Sequence[float] = ()) -> Comparison:  # fmt: skip
    """The comparison two scores make (Bradley–Terry): ``p_a = σ(score_a − score_b)``, "a" on an exact tie; with an
    ensemble's member scores (``members_a``, ``members_b``), their spreads and the members' agreement."""
    p_a = 1.0 / (1.0 + math.exp(-(score_a - score_b)))
    better = "a" if score_a >= score_b else "b"
    if len(members_a) < 2:
        return Comparison(better, p_a, score_a, score_b)
    agree = sum((a >= b) == (better == "a") for a, b in zip(members_a, members_b)) / len(members_a)
    return Comparison(better, p_a, score_a, score_b, statistics.pstdev(members_a), statistics.pstdev(members_b),
                      agree)  # fmt: skip


def combine_attributes(score: float, attributes: dict[str, float], weights: dict[str, float]) -> float:
    """A reward from attribute heads: ``Σ weights[k] · value_k``, where ``reward`` names the preference score and
    every other key an attribute (0–1 scale); e.g. ``{"reward": 1, "verbosity": -0.5}``. An unknown key is a
    ``ValueError`` naming the known ones."""
    known = {"reward": score, **attributes}
    unknown = [k for k in weights if k not in known]
    if unknown:
        raise ValueError(f"unknown weight {', '.join(map(repr, unknown))}: the model scores {', '.join(known)} "
                         "('reward' is the preference score)")  # fmt: skip
    return sum(w * known[k] for k, w in weights.items())


def check_weights(attribute_names: Sequence[str], weights: dict[str, float]) -> None:
    """Refuse weights that :func:`combine_attributes` cannot apply to a model with these attribute heads, before any
    scoring: a model without heads has nothing to weigh (a silent ``reward``-only sum would hide a wrong model), an
    unknown name or a non-finite weight is a typo. ``ValueError`` with one message; callers add their own context."""
    if not attribute_names:
        raise ValueError("this model has no attribute heads (train it with model.attributes), so there is nothing "
                         "to weigh; drop the weights")  # fmt: skip
    if not weights:
        raise ValueError(f"no weights given; name some of: reward, {', '.join(attribute_names)}")
    combine_attributes(0.0, dict.fromkeys(attribute_names, 0.0), weights)  # unknown names
    for name, w in weights.items():
        if not math.isfinite(w):
            raise ValueError(f"weight {name!r} is {w}; weights are finite numbers")


def compare_rows(row_a: Sequence[float], row_b: Sequence[float], attribute_names: Sequence[str] = (),
                 weights: dict[str, float] | None = None) -> Comparison:  # fmt: skip
    """The comparison of two rows of :meth:`Scorer.score_items` (``members=True``): with attribute heads,
    ``[score, *attributes]``, and with ``weights`` the comparison is of the combined rewards (``score_a``/``score_b``
    stay the preference scores); otherwise ``[score]`` or an ensemble's ``[mean, *members]``."""
    if not attribute_names:
        return compare_scores(row_a[0], row_b[0], row_a[1:], row_b[1:])
    attrs_a, attrs_b = dict(zip(attribute_names, row_a[1:])), dict(zip(attribute_names, row_b[1:]))
    if weights is None:
        c = compare_scores(row_a[0], row_b[0])
        return replace(c, attributes_a=attrs_a, attributes_b=attrs_b)
    combined_a, combined_b = (
        combine_attributes(row_a[0], attrs_a, weights),
        combine_attributes(row_b[0], attrs_b, weights),
    )
    c = compare_scores(combined_a, combined_b)
    return replace(c, score_a=row_a[0], score_b=row_b[0], attributes_a=attrs_a, attributes_b=attrs_b,
                   combined_a=combined_a, combined_b=combined_b)  # fmt: skip


def best_first(scores: Sequence[float]) -> list[int]:
    """Indices of ``scores`` from the highest score down (best-of-N); equal scores keep their order."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


@dataclass(frozen=True)
class RankedResponse:
    index: int
    response: Text
    score: float
    uncertainty: float | None = None  # an ensemble's member spread


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when there is a GPU, else ``cpu``; anything else must name a device that exists here."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ModelError(f"device {device!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(kind, True):
        raise ModelError(f"device {device!r}: this machine has no {kind.upper()} device; use --device cpu or auto")
    index = torch.device(device).index
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        raise ModelError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


class Scorer:
    """Batched scoring of (prompt, response) with a :class:`RewardBundle`.

    ``settings`` (:class:`~rewardlab.config.schema.ScoringSettings`): ``batch_size`` responses a forward pass,
    ``share_prompts`` (responses to one prompt: its tokens computed once, where exact); its load-time fields
    (device, dtype, max_length) are :meth:`from_pretrained`'s, and ``normalize`` is the commands' to apply.
    ``max_batch_tokens``: padded tokens a forward pass (rows x longest row) at most; None: no limit.
    """

    def __init__(self, bundle: RewardBundle, settings: ScoringSettings | None = None, *,
                 max_batch_tokens: int | None = None):  # fmt: skip
        self.bundle = bundle
        self.settings = settings or ScoringSettings()
        self.model = bundle.model.eval()
        self.collator = RowCollator(bundle.tokenizer.pad_token_id, bundle.padding_side)
        self.max_batch_tokens = max_batch_tokens

    @classmethod
    def from_pretrained(cls, path: str, settings: ScoringSettings | None = None, **overrides: Any) -> Scorer:
        """Load a model directory (:meth:`RewardBundle.load`): ``settings`` or keyword overrides of its fields
        (``batch_size=8, device="cpu", dtype="bfloat16", max_length=512, share_prompts=False``)."""
        settings = (settings or ScoringSettings()).scoring(**overrides)
        bundle = RewardBundle.load(path, device=resolve_device(settings.device), dtype=settings.dtype,
                                   max_length=settings.max_length)  # fmt: skip
        return cls(bundle, settings)

    @property
    def tokenizer(self) -> Any:
        return self.bundle.tokenizer

    @property
    def transform(self) -> Any:
        return self.bundle.transform

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    @property
    def share_prompts(self) -> bool:
        return self.settings.share_prompts

    @share_prompts.setter
    def share_prompts(self, on: bool) -> None:
        self.settings = self.settings.model_copy(update={"share_prompts": on})

    @property
    def normalization(self) -> Any:
        """The export's eval-score statistics (:class:`~rewardlab.models.export_meta.Normalization`), or None."""
        return self.bundle.meta.normalization

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def score(
        self,
        prompts: Sequence[Text] | Text,
        responses: Sequence[Text],
        *,
        normalize: bool = False,
        on_batch: Callable[[int], None] | None = None,
        images: Sequence[tuple[Any, ...]] | None = None,
    ) -> list[float]:
        """Scores of ``responses``; ``prompts`` is one prompt for all, or one per response; ``images`` (vision
        models) one tuple of images per response.

        ``on_batch(n)`` is called after each forward pass with the number of responses it scored (progress bars).
        """
        items = self.encode(prompts, responses, images=images)
        scores = self.score_items(items, on_batch)
        return self.normalize(scores) if normalize else scores

    @property
    def members(self) -> int:
        """Heads of an ensemble reward model (1: a single head, whose uncertainty is not known)."""
        return self.model.members

    def score_with_uncertainty(
        self,
        prompts: Sequence[Text] | Text,
        responses: Sequence[Text],
        *,
        normalize: bool = False,
        images: Sequence[tuple[Any, ...]] | None = None,
    ) -> tuple[list[float], list[float | None]]:
        """Scores (the ensemble's mean) and their uncertainties: the members' standard deviation (population, over
        the K heads; divided by the export's score std with ``normalize``), ``None`` for a single-head model."""
        rows = self.score_items(self.encode(prompts, responses, images=images), members=True)
        scores = [r[0] for r in rows]
        if self.members == 1:
            return (self.normalize(scores) if normalize else scores), [None] * len(scores)
        spread = [statistics.pstdev(r[1:]) for r in rows]
        if normalize:
            scores = self.normalize(scores)
            std = self.normalization.std or 1.0
            spread = [s / std for s in spread]
        return scores, spread

    @property
    def attribute_names(self) -> list[str]:
        """The attribute heads' names (``model.attributes``), in logit order; empty for a model without them."""
        return self.bundle.meta.attribute_names

    def score_with_attributes(
        self,
        prompts: Sequence[Text] | Text,
        responses: Sequence[Text],
        *,
        normalize: bool = False,
        images: Sequence[tuple[Any, ...]] | None = None,
    ) -> tuple[list[float], list[dict[str, float]]]:
        """Preference scores and, per response, ``{attribute: value}`` (0–1, the scale of the attribute's range;
        empty dicts for a model without attribute heads). ``normalize`` applies to the preference score only."""
        rows = self.score_items(self.encode(prompts, responses, images=images), members=True)
        names = self.attribute_names
        scores = [r[0] for r in rows]
        attributes = [dict(zip(names, r[1:])) if names else {} for r in rows]
        return (self.normalize(scores) if normalize else scores), attributes

    def _can_share(self, items: Sequence[ScoringItem]) -> bool:
        """Prompt sharing is exact for causal text models read at the last token, on plain token rows, with an
        attention implementation that takes a 4-D mask (SDPA, eager; not flash-attention's varlen kernels)."""
        # Vision: LLaVA-style rows (image placeholders in the shared prompt); Qwen-VL's rows carry mm_token_type_ids.
        return self.bundle.share_prompts and all(
            it.encoded.token_type_ids is None
            and (not it.encoded.extras or (self.is_vision and "mm_token_type_ids" not in it.encoded.extras))
            for it in items
        )

    def encode(
        self,
        prompts: Sequence[Text] | Text,
        responses: Sequence[Text],
        images: Sequence[tuple[Any, ...]] | None = None,
    ) -> list[ScoringItem]:
        """The model inputs of each response (the first half of :meth:`score`; the server encodes each request
        apart, then scores many requests' items in one :meth:`score_items` call). A bad input raises a
        :class:`DataError` whose ``index`` attribute is its position."""
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], dict)):
            prompts = [prompts] * len(responses)  # type: ignore[list-item]
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        images = images if images is not None else [()] * len(responses)
        if len(images) != len(responses):
            raise ValueError(f"{len(images)} image tuples but {len(responses)} responses")
        items, pixels = [], {}
        for i, (p, r, imgs) in enumerate(zip(prompts, responses, images)):
            # Responses about the same images (a pair, best-of-N) load and process them once, and share them
            # in a batch, so the vision tower encodes them once, as in training.
            key = image_key(imgs) if imgs and self.is_vision else None
            try:
                if key is not None and key not in pixels:
                    pixels[key] = self.transform.pixel_inputs(imgs)
                encoded = (self.transform.encode(p, r, imgs, pixels=pixels[key]) if key else
                           self.transform.encode(p, r, imgs))  # fmt: skip
            except DataError as exc:
                error = DataError(f"response {i + 1} of {len(responses)}: {exc}")
                error.index = i  # type: ignore[attr-defined]  # callers map it back to their row
                raise error from None
            items.append(ScoringItem(encoded, key, p if isinstance(p, str) else json.dumps(p, sort_keys=True)))
        return items

    def score_items(self, items: Sequence[ScoringItem], on_batch: Callable[[int], None] | None = None,
                    groups: Sequence[Sequence[int]] | None = None, *, batch_size: int | None = None,
                    max_batch_tokens: int | None = None, members: bool = False) -> list[Any]:  # fmt: skip
        """Scores in the caller's order. Rows are batched by length (at most ``batch_size`` rows and
        ``max_batch_tokens`` padded tokens a forward: the settings' unless given, as the server gives its own);
        rows sharing an image key are kept together (records ordered by their longest row), so a batch sends each
        image once.

        Items that answer one prompt (``groups``; by default, items with equal ``prompt_key`` when
        ``share_prompts`` is on and sharing is exact: a causal text model read at the last token) are scored in
        shared-prefix rows (:func:`~rewardlab.data.collator.shared_prefix_batch`: the prompt's tokens computed
        once), the rest one row each. ``members``: each item's ``[mean, member 1, ..., member K]`` of an ensemble
        (``[score]`` for a single head) instead of its score."""
        batch_size = batch_size or self.batch_size
        max_batch_tokens = self.max_batch_tokens if max_batch_tokens is None else max_batch_tokens
        if groups is None and self.share_prompts and len(items) > 1 and self._can_share(items):
            by_prompt: dict[Any, list[int]] = {}
            for i, it in enumerate(items):
                # Same prompt and same images (vision): the rows start with the same tokens showing the same pixels.
                key = (it.prompt_key, it.key) if it.prompt_key is not None else ("item", i)
                by_prompt.setdefault(key, []).append(i)
            groups = list(by_prompt.values())
        if groups and any(len(g) > 1 for g in groups):
            shared = [list(g) for g in groups if len(g) > 1]
            alone = [i for g in groups if len(g) == 1 for i in g]
            out = [0.0] * len(items)
            scored = self.score_items([items[i] for i in alone], on_batch, batch_size=batch_size,
                                      max_batch_tokens=max_batch_tokens, members=members) if alone else []  # fmt: skip
            for i, s in zip(alone, scored):
                out[i] = s
            for idx, s in zip([i for g in shared for i in g], self._score_shared(items, shared, on_batch, members)):
                out[idx] = s
            return out
        import torch

        keys = [it.key for it in items]
        length = [it.tokens for it in items]
        longest: dict[Any, int] = {}
        for k, n in zip(keys, length):
            longest[k] = max(longest.get(k, 0), n)
        rank = {k: r for r, k in enumerate(dict.fromkeys(keys))}
        group = [(longest[k], rank[k]) if k is not None else (length[i], -1) for i, k in enumerate(keys)]
        order = sorted(range(len(items)), key=lambda i: (*group[i], length[i]))
        out = [0.0] * len(items)
        with torch.inference_mode():
            for idx in self._batches(order, length, batch_size, max_batch_tokens):
                rows = [{"input_ids": items[i].encoded.input_ids, "token_type_ids": items[i].encoded.token_type_ids,
                         **items[i].encoded.extras, "image_key": keys[i]} for i in idx]  # fmt: skip
                batch = {k: v.to(self.device) for k, v in self.collator(rows).items()}
                scores = self.model(**batch, return_members=members)
                for i, s in zip(idx, scores.float().tolist()):
                    out[i] = s
                if on_batch is not None:
                    on_batch(len(idx))
        return out

    def _score_shared(self, items: Sequence[ScoringItem], groups: list[list[int]],
                      on_batch: Callable[[int], None] | None, members: bool = False) -> list[Any]:  # fmt: skip
        """Scores of the groups' items (groups in order, items in order), a group's prompt computed once. A group
        whose row would pass :data:`MAX_SHARED_ROW` tokens is cut into several rows."""
        import torch

        from rewardlab.data.collator import shared_prefix_batch, stack_images

        chunks: list[list[int]] = []
        for group in groups:
            chunk: list[int] = []
            for i in group:
                if chunk and sum(items[j].tokens for j in [*chunk, i]) > MAX_SHARED_ROW:
                    chunks.append(chunk)
                    chunk = []
                chunk.append(i)
            chunks.append(chunk)
        dtype = self.bundle.mask_dtype
        scores: list[float] = []
        with torch.inference_mode():
            start = 0
            while start < len(chunks):
                end, total = start, 0
                while end < len(chunks) and (
                    end == start or total + self._mask_size(items, chunks[end]) <= MASK_BUDGET
                ):
                    total += self._mask_size(items, chunks[end])
                    end += 1
                batch = shared_prefix_batch([[items[i].encoded.input_ids for i in c] for c in chunks[start:end]],
                                            self.tokenizer.pad_token_id, dtype,
                                            block_mask=self.bundle.block_mask)  # fmt: skip
                if self.is_vision:  # one row per chunk, showing its items' (common) images once
                    stack_images([items[c[0]].encoded.extras for c in chunks[start:end]], batch,
                                 list(range(end - start)))  # fmt: skip
                batch = {k: v.to(self.device) for k, v in batch.items()}
                scores += self.model(**batch, return_members=members).float().tolist()
                if on_batch is not None:
                    on_batch(sum(len(c) for c in chunks[start:end]))
                start = end
        return scores

    @staticmethod
    def _mask_size(items: Sequence[ScoringItem], chunk: list[int]) -> int:
        """An upper bound of the row's attention-mask elements (its length before sharing, squared)."""
        return sum(items[i].tokens for i in chunk) ** 2

    @staticmethod
    def _batches(
        order: list[int], length: list[int], batch_size: int, max_batch_tokens: int | None
    ) -> list[list[int]]:
        """``order`` cut into forward batches: at most ``batch_size`` rows, and at most ``max_batch_tokens``
        padded tokens (rows x longest row) unless one row alone is longer."""
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in order:
            grown = max(longest, length[i])
            full = len(current) >= batch_size
            if max_batch_tokens is not None:
                full = full or grown * (len(current) + 1) > max_batch_tokens
            if current and full:
                batches.append(current)
                current, grown = [], length[i]
            current.append(i)
            longest = grown
        if current:
            batches.append(current)
        return batches

    def normalize(self, scores: list[float]) -> list[float]:
        if not self.normalization:
            raise ModelError(
                "this model has no saved normalization statistics (mean/std of eval scores); train it with an eval set"
            )
        mean, std = self.normalization.mean, self.normalization.std or 1.0
        return [(s - mean) / std for s in scores]

    def score_pairs(self, pairs: Sequence[PreferencePair]) -> tuple[list[float], list[float]]:
        """(chosen scores, rejected scores), one forward batch stream for both."""
        n = len(pairs)
        images = [p.images for p in pairs] * 2
        scores = self.score(
            [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs], images=images
        )
        return scores[:n], scores[n:]

    @property
    def is_vision(self) -> bool:
        """Whether the model scores a text against an image (every response then needs its image)."""
        return self.bundle.vision

    def compare(self, prompt: Text, a: Text, b: Text, *, images: tuple[Any, ...] = (),
                weights: dict[str, float] | None = None) -> Comparison:  # fmt: skip
        """``images``: the image both answers are about (vision models). A model with attribute heads adds each
        answer's attributes; ``weights`` (:func:`combine_attributes`) compares the combined rewards instead."""
        if weights is not None:
            check_weights(self.attribute_names, weights)
        rows = self.score_items(self.encode([prompt, prompt], [a, b], images=[images, images]), members=True)
        return compare_rows(rows[0], rows[1], self.attribute_names, weights)

    def rank(self, prompt: Text, responses: Sequence[Text], *, images: tuple[Any, ...] = ()) -> list[RankedResponse]:
        """Responses sorted best first (best-of-N); ``images``: the image they are all about (vision models)."""
        scores, spread = self.score_with_uncertainty(prompt, responses, images=[images] * len(responses))
        return [RankedResponse(i, responses[i], scores[i], spread[i]) for i in best_first(scores)]
