"""Losses as pure functions, and the registry the trainer picks from by ``loss.name`` (:data:`LOSSES`). Shapes in
the docstrings; the trainer only orchestrates.

Adding a loss: a function with :data:`LossFn`'s signature, one entry in :data:`LOSSES`, and its name in
:class:`rewardlab.config.schema.LossConfig`'s ``name`` choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rewardlab.config.schema import LossConfig


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``mean(weights · values)`` (over ``n`` items, not over the weights' sum: Poisson(1) bootstrap weights keep the
    loss's scale in expectation); the plain mean without weights."""
    return values.mean() if weights is None else (weights.to(values.dtype) * values).mean()


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Mean of ``−log σ(r⁺ − r⁻ − margin)``. ``chosen``, ``rejected``, ``margin``, ``weights``: ``(b,)`` → scalar.

    With a margin the model must beat the rejected response by at least that much (Llama 2, Touvron et al.
    2023, §3.2.2). ``weights``: per pair (an ensemble member's bootstrap draw; see :func:`weighted_mean`).
    """
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    return weighted_mean(-F.logsigmoid(diff), weights)


def centering_penalty(scores: torch.Tensor, coefficient: float) -> torch.Tensor:
    """``coefficient · mean(score²)`` over all scores ``(n,)``: keeps scores near zero, which makes them
    comparable across prompts (Eisenstein et al. 2023, "Helping or Herding?")."""
    return coefficient * scores.pow(2).mean()


def length_correlation_penalty(margins: torch.Tensor, length_gaps: torch.Tensor, coefficient: float) -> torch.Tensor:
    """``coefficient · |cov(margin, gap)| / std(gap)`` over a batch of pairs: how far the score margins ``r⁺ − r⁻``
    move with the length gap ``len⁺ − len⁻`` (both ``(b,)``), i.e. the spread of the margin that a linear fit on the
    length gap explains (``|slope| · std(gap)``, in score units); zero when either does not vary.

    It keeps the reward from explaining preferences by length alone, the shortcut RL policies exploit (after the
    decorrelation term of ODIN, Chen et al. 2024, on the pairwise margins: the prompt is common to a pair, so the
    row-length gap is the response-length gap and prompt length cannot leak in). Unlike ``|corr|``, whose gradient
    grows as ``1 / std(margin)`` and swamps the ranking loss while margins are small (as at the start of training),
    its gradient is bounded: ``± coefficient · (gap − mean) / sqrt(b · Σ (gap − mean)²)`` per margin.
    """
    m = margins - margins.mean()
    g = length_gaps.to(margins.dtype)
    g = g - g.mean()
    spread = (g * g).sum() * g.numel()
    varies = spread > 0  # no host sync, and a finite gradient (zero) when the gaps do not vary
    explained = (m * g).sum() * torch.rsqrt(torch.where(varies, spread, torch.ones_like(spread)))
    return coefficient * torch.where(varies, explained, torch.zeros_like(explained)).abs()


def plackett_luce_loss(scores: torch.Tensor, ranks: torch.Tensor, group_sizes: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Listwise Plackett–Luce negative log-likelihood with ties (Breslow's rule), mean over groups.

    ``scores``, ``ranks``: ``(N,)`` — the responses of all groups one after another; ``group_sizes``: ``(g,)``
    with ``sum = N``. Rank 1 is best. For each response ``i`` of a group, the term is
    ``s_i − log Σ_{j: rank_j ≥ rank_i} exp(s_j)``: the probability of choosing ``i`` first among those not
    ranked above it. Tied responses share their risk set, which pulls their scores together. A group's loss
    is ``−Σ_i term_i``; the result is the mean over groups (weighted by ``weights`` ``(g,)`` when given).
    """
    g, k = group_sizes.numel(), int(group_sizes.max())
    offsets = torch.cumsum(group_sizes, 0) - group_sizes  # (g,)
    slot = torch.arange(k, device=scores.device)  # (k,)
    valid = slot[None, :] < group_sizes[:, None]  # (g, k)
    flat = (offsets[:, None] + slot[None, :]).clamp(max=scores.numel() - 1)  # (g, k)
    s = scores[flat]  # (g, k)
    r = ranks[flat]  # (g, k)
    # risk[g, i, j]: response j is still "in the urn" when i is picked.
    risk = valid[:, None, :] & (r[:, None, :] >= r[:, :, None])  # (g, k, k)
    # Padding slots get themselves as risk set: a finite log-sum-exp keeps NaN out of the backward pass.
    risk = risk | torch.eye(k, dtype=torch.bool, device=scores.device)
    logits = s[:, None, :].expand(g, k, k).masked_fill(~risk, float("-inf"))
    log_denominator = torch.logsumexp(logits, dim=-1)  # (g, k)
    terms = (s - log_denominator).masked_fill(~valid, 0.0)  # (g, k)
    return weighted_mean(-terms.sum(-1), weights)


# -- the registry ------------------------------------------------------------------------------------------------
@dataclass
class LossTerms:
    """What a loss gives the trainer: the loss, and for pair batches the chosen and rejected scores ``(b,)``
    (pairwise accuracy and margin are logged from them)."""

    loss: torch.Tensor
    chosen: torch.Tensor | None = None
    rejected: torch.Tensor | None = None


# ``(scores (rows,), batch, config, training) -> LossTerms``. ``batch`` is the collator's output: pair batches
# carry ``margin`` (b,) with rows [0, b) chosen and [b, 2b) rejected; group batches ``ranks`` (N,) and
# ``group_sizes`` (g,); ``item_weights`` (b,) or (g,), when present, weighs each pair or group (an ensemble member's
# bootstrap). ``training`` is False in evaluation (penalties that shape training are left out).
LossFn = Callable[[torch.Tensor, dict[str, torch.Tensor], LossConfig, bool], LossTerms]


def row_lengths(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Tokens per scored row ``(rows,)``: ``row_lengths`` when the collator gives them (shared-prefix rows), else
    the 2-D attention mask's count."""
    if "row_lengths" in batch:
        return batch["row_lengths"]
    return batch["attention_mask"].sum(-1)


def bradley_terry(scores: torch.Tensor, batch: dict[str, torch.Tensor], cfg: LossConfig, training: bool) -> LossTerms:
    """Pairwise Bradley–Terry (with the pairs' margins when ``use_margin``), plus the length-decorrelation
    penalty while training."""
    b = batch["margin"].shape[0]
    chosen, rejected = scores[:b], scores[b : 2 * b]
    loss = bradley_terry_loss(chosen, rejected, batch["margin"] if cfg.use_margin else None, batch.get("item_weights"))
    if cfg.length_decorrelation and training:
        lengths = row_lengths(batch)
        loss = loss + length_correlation_penalty(chosen - rejected, lengths[:b] - lengths[b : 2 * b],
                                                 cfg.length_decorrelation)  # fmt: skip
    return LossTerms(loss, chosen, rejected)


def plackett_luce(scores: torch.Tensor, batch: dict[str, torch.Tensor], cfg: LossConfig, training: bool) -> LossTerms:
    """Listwise Plackett–Luce on ranked groups. Pair batches (eval sets are always pairs) are groups of two, where
    Plackett–Luce is Bradley–Terry: they get :func:`bradley_terry`, so eval metrics stay pairwise."""
    if "group_sizes" not in batch:
        return bradley_terry(scores, batch, cfg, training)
    return LossTerms(plackett_luce_loss(scores, batch["ranks"], batch["group_sizes"], batch.get("item_weights")))


LOSSES: dict[str, LossFn] = {"bradley_terry": bradley_terry, "plackett_luce": plackett_luce}
