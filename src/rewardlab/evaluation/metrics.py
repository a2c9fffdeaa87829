"""Metrics as pure functions over score arrays (numpy or lists). Hand-tested in tests/test_metrics.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def preference_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> dict[str, float]:
    """Share of pairs where the chosen response scores higher; an exact tie counts as half.

    Returns ``accuracy``, ``ties`` (count), ``margin_mean``, ``margin_std`` (population std) and ``n``.
    """
    c = np.asarray(chosen, dtype=np.float64)
    r = np.asarray(rejected, dtype=np.float64)
    if c.shape != r.shape:
        raise ValueError(f"chosen {c.shape} and rejected {r.shape} scores differ in shape")
    n = int(c.size)
    if n == 0:
        return {"accuracy": float("nan"), "ties": 0, "margin_mean": float("nan"), "margin_std": float("nan"), "n": 0}
    margin = c - r
    ties = int((margin == 0).sum())
    wins = int((margin > 0).sum())
    return {
        "accuracy": (wins + 0.5 * ties) / n,
        "ties": ties,
        "margin_mean": float(margin.mean()),
        "margin_std": float(margin.std()),
        "n": n,
    }


def score_statistics(scores: Sequence[float]) -> dict[str, float]:
    """Mean, std and count of scores: the normalization saved with a model."""
    s = np.asarray(scores, dtype=np.float64)
    return {"mean": float(s.mean()), "std": float(s.std()), "n": int(s.size)}


# ---------------------------------------------------------------------------------------------------------------------
# Shared validation and small numeric helpers
# ---------------------------------------------------------------------------------------------------------------------


def _vectors(**named: Sequence[float]) -> list[np.ndarray]:
    """Each argument as a 1-D float64 array; ValueError naming the culprits if one is not 1-D, holds NaN or the
    lengths differ. Returned in argument order."""
    arrays = []
    for name, values in named.items():
        a = np.asarray(values, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
        if np.isnan(a).any():
            raise ValueError(f"{name} contains NaN")
        arrays.append(a)
    lengths = {name: a.size for name, a in zip(named, arrays)}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"inputs must have the same length: {listed}")
    return arrays


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two equal-length 1-D arrays; nan when fewer than 2 values or either is constant."""
    if x.size < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denom = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denom) if denom > 0 else float("nan")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ascending ranks 1..n of ``x`` (n,); ties share the mean of the ranks they span: [5, 1, 5] -> [2.5, 1, 2.5]."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.arange(1, x.size + 1, dtype=np.float64)
    _, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return sums[inverse] / counts[inverse]


# ---------------------------------------------------------------------------------------------------------------------
# Pairs: accuracy by subset
# ---------------------------------------------------------------------------------------------------------------------

NO_SUBSET = "(none)"


def subset_accuracy(chosen: Sequence[float], rejected: Sequence[float], subsets: Sequence[str | None]) -> dict:
    """Preference accuracy per subset plus a count-weighted aggregate (reward-bench style).

    ``chosen``, ``rejected``: scores (n,); ``subsets``: the subset name of each pair (n,). A pair whose subset is
    ``None`` is reported under ``"(none)"`` (``NO_SUBSET``) — not ``"all"``, which would read as the total.

    Returns ``{"subsets": {name: preference_accuracy(...)}, "weighted_accuracy", "macro_accuracy", "n"}``, subsets
    in order of first appearance. ``weighted_accuracy`` = Σ_s n_s·acc_s / Σ_s n_s (equal to the pooled accuracy);
    ``macro_accuracy`` is the unweighted mean over subsets. Both are nan when n == 0.
    """
    c, r = _vectors(chosen=chosen, rejected=rejected)
    names = [NO_SUBSET if s is None else str(s) for s in subsets]
    if len(names) != c.size:
        raise ValueError(f"inputs must have the same length: chosen has {c.size}, subsets has {len(names)}")
    labels = np.asarray(names, dtype=object)
    per_subset = {}
    for name in dict.fromkeys(names):
        mask = labels == name
        per_subset[name] = preference_accuracy(c[mask], r[mask])
    n = int(c.size)
    if n == 0:
        return {"subsets": {}, "weighted_accuracy": float("nan"), "macro_accuracy": float("nan"), "n": 0}
    weighted = sum(m["n"] * m["accuracy"] for m in per_subset.values()) / n
    macro = sum(m["accuracy"] for m in per_subset.values()) / len(per_subset)
    return {"subsets": per_subset, "weighted_accuracy": float(weighted), "macro_accuracy": float(macro), "n": n}


# ---------------------------------------------------------------------------------------------------------------------
# Ranked groups. Human rank 1 = best; every metric is oriented so that +1 / 1.0 means "the model agrees with the
# human order" (higher score <-> lower rank number).
# ---------------------------------------------------------------------------------------------------------------------


def _group(scores: Sequence[float], ranks: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Validated (K,) score and *goodness* arrays of one group; goodness = -rank so that larger means better."""
    s, r = _vectors(scores=scores, ranks=ranks)
    if s.size == 0:
        raise ValueError("a ranked group needs at least one response")
    return s, -r


def kendall_tau(scores: Sequence[float], ranks: Sequence[float]) -> float:
    """Kendall's tau-b between model scores (K,) and human ranks (K,), ties allowed in both.

    tau_b = (n_c - n_d) / sqrt((n0 - n1)(n0 - n2)) with n0 = K(K-1)/2 pairs, n1 pairs tied in score and n2 pairs
    tied in rank; a pair tied on either side is neither concordant nor discordant. +1 when the score order matches
    the human order exactly (highest score has rank 1). nan when undefined: K < 2, or all scores or all ranks tied.
    """
    s, g = _group(scores, ranks)
    iu = np.triu_indices(s.size, k=1)  # every unordered pair (i < j) once
    ds = np.sign(s[:, None] - s[None, :])[iu]
    dg = np.sign(g[:, None] - g[None, :])[iu]
    n0 = ds.size
    n1, n2 = int((ds == 0).sum()), int((dg == 0).sum())
    denom = np.sqrt(float(n0 - n1) * float(n0 - n2))
    return float((ds * dg).sum() / denom) if denom > 0 else float("nan")


def spearman_rho(scores: Sequence[float], ranks: Sequence[float]) -> float:
    """Spearman's rho between model scores (K,) and human ranks (K,): the Pearson correlation of average ranks.

    Ties on either side share the mean of the ranks they span. +1 when the score order matches the human order
    (highest score has rank 1). nan when undefined: K < 2, or all scores or all ranks tied.
    """
    s, g = _group(scores, ranks)
    return pearson(_average_ranks(s), _average_ranks(g))


def top1_accuracy(scores: Sequence[float], ranks: Sequence[float]) -> float:
    """Whether the top-scored response of a group (K,) is a human-best one, in [0, 1].

    "Best" is every response with the smallest rank, so any of several rank-1 responses counts. When several
    responses tie for the top score, the model's pick is uniform among them and the result is the fraction of the
    tied responses that are best (the expected top-1 accuracy of a random tie-break).
    """
    s, g = _group(scores, ranks)
    top = s == s.max()
    best = g == g.max()
    return float((top & best).sum() / top.sum())


def ranking_metrics(groups_scores: Sequence[Sequence[float]], groups_ranks: Sequence[Sequence[float]]) -> dict:
    """Mean agreement over ranked groups; group g has scores (K_g,) and human ranks (K_g,), K_g may vary.

    Returns ``kendall_tau`` and ``spearman_rho`` (means over the groups where they are defined; nan if none),
    ``top1_accuracy`` (mean over all groups), ``n_groups`` and ``n_tau_undefined`` (groups skipped from both
    correlation means: tau-b and rho are undefined under the same condition, see ``kendall_tau``).
    """
    if len(groups_scores) != len(groups_ranks):
        raise ValueError(f"groups_scores has {len(groups_scores)} groups but groups_ranks has {len(groups_ranks)}")
    taus, rhos, top1 = [], [], []
    for i, (scores, ranks) in enumerate(zip(groups_scores, groups_ranks)):
        try:
            taus.append(kendall_tau(scores, ranks))
        except ValueError as err:
            raise ValueError(f"group {i}: {err}") from None
        rhos.append(spearman_rho(scores, ranks))
        top1.append(top1_accuracy(scores, ranks))
    tau, rho = np.asarray(taus, dtype=np.float64), np.asarray(rhos, dtype=np.float64)
    defined = ~np.isnan(tau)
    return {
        "kendall_tau": float(tau[defined].mean()) if defined.any() else float("nan"),
        "spearman_rho": float(rho[defined].mean()) if defined.any() else float("nan"),
        "top1_accuracy": float(np.mean(top1)) if top1 else float("nan"),
        "n_groups": len(taus),
        "n_tau_undefined": int((~defined).sum()),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Calibration of P(chosen > rejected) = sigmoid(margin)
# ---------------------------------------------------------------------------------------------------------------------


def calibration(margins: Sequence[float], n_bins: int = 10) -> dict:
    """Expected calibration error of the Bradley–Terry probability p = σ(margin), margin = chosen − rejected (n,).

    Every pair's true outcome is "chosen wins", so binning p itself would only ever test one side. We use the
    symmetric (top-label) form: the model predicts the side with p ≥ 0.5 with confidence max(p, 1 − p) = σ(|margin|)
    in [0.5, 1]; it is correct (1) if margin > 0, wrong (0) if margin < 0, and half right (0.5) if margin == 0.
    Confidences fall into ``n_bins`` equal-width bins over [0.5, 1], each [lo, hi) and the last one closed.

    Returns ``ece`` = Σ_b (n_b / n)·|accuracy_b − confidence_b| (nan if n == 0), ``n``, and ``reliability``: one
    dict per bin with ``lo``, ``hi``, ``count`` and the bin's mean ``confidence`` and ``accuracy`` (both None when
    the bin is empty).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    (m,) = _vectors(margins=margins)
    confidence = 1.0 / (1.0 + np.exp(-np.abs(m)))  # σ(|m|): no overflow for large |m|
    correct = np.where(m > 0, 1.0, np.where(m < 0, 0.0, 0.5))
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    n = int(m.size)
    table, ece = [], 0.0
    for b in range(n_bins):
        in_bin = index == b
        count = int(in_bin.sum())
        conf = float(confidence[in_bin].mean()) if count else None
        acc = float(correct[in_bin].mean()) if count else None
        if count:
            ece += count / n * abs(acc - conf)
        table.append(
            {"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count, "confidence": conf, "accuracy": acc}
        )
    return {"ece": float(ece) if n else float("nan"), "n": n, "reliability": table}


# ---------------------------------------------------------------------------------------------------------------------
# Length bias
# ---------------------------------------------------------------------------------------------------------------------


def length_bias(
    chosen_scores: Sequence[float],
    rejected_scores: Sequence[float],
    chosen_lengths: Sequence[float],
    rejected_lengths: Sequence[float],
) -> dict:
    """How much scores follow response length; all four inputs are (n,), lengths in any unit (tokens, characters).

    Returns ``score_length_corr`` (Pearson r of score vs length over all 2n responses; nan if undefined),
    ``chosen_longer_fraction`` (share of pairs whose chosen response is strictly longer; nan if n == 0),
    ``accuracy_when_chosen_longer`` / ``n_chosen_longer`` and ``accuracy_when_chosen_shorter`` /
    ``n_chosen_shorter`` (``preference_accuracy`` on the pairs where chosen is strictly longer / shorter; nan when
    there are none), ``n_same_length`` and ``n``. A model that leans on length scores well when chosen is longer
    and badly when it is shorter.
    """
    cs, rs, cl, rl = _vectors(
        chosen_scores=chosen_scores,
        rejected_scores=rejected_scores,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    n = int(cs.size)
    longer, shorter = cl > rl, cl < rl
    return {
        "score_length_corr": pearson(np.concatenate([cs, rs]), np.concatenate([cl, rl])),
        "chosen_longer_fraction": float(longer.mean()) if n else float("nan"),
        "accuracy_when_chosen_longer": float(preference_accuracy(cs[longer], rs[longer])["accuracy"]),
        "n_chosen_longer": int(longer.sum()),
        "accuracy_when_chosen_shorter": float(preference_accuracy(cs[shorter], rs[shorter])["accuracy"]),
        "n_chosen_shorter": int(shorter.sum()),
        "n_same_length": int((~longer & ~shorter).sum()),
        "n": n,
    }


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's κ of two annotators' labels on the same items: (p_o − p_e) / (1 − p_e); nan without items, 1.0 when
    both always give the one same label."""
    if len(a) != len(b):
        raise ValueError("two label lists of the same length")
    n = len(a)
    if n == 0:
        return float("nan")
    observed = sum(x == y for x, y in zip(a, b)) / n
    labels = set(a) | set(b)
    expected = sum((list(a).count(c) / n) * (list(b).count(c) / n) for c in labels)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def krippendorff_alpha(units: Sequence[Sequence[Any]], metric: str = "nominal") -> float:
    """Krippendorff's α over units (items), each the values its annotators gave (any number; units with fewer than
    two values do not count). ``metric``: ``nominal`` (labels) or ``interval`` (numbers, e.g. ranks).
    α = 1 − D_o / D_e from the coincidence of values within units."""

    def delta(x: Any, y: Any) -> float:
        return float(x != y) if metric == "nominal" else (float(x) - float(y)) ** 2

    pairable = [list(u) for u in units if len(u) >= 2]
    n = sum(len(u) for u in pairable)
    if n < 2:
        return float("nan")
    d_o = sum(sum(delta(x, y) for i, x in enumerate(u) for j, y in enumerate(u) if i != j) / (len(u) - 1)
              for u in pairable) / n  # fmt: skip
    values = [v for u in pairable for v in u]
    d_e = sum(delta(x, y) for i, x in enumerate(values) for j, y in enumerate(values) if i != j) / (n * (n - 1))
    return 1.0 if d_e == 0 else 1 - d_o / d_e


def uncertainty_metrics(margins: Sequence[float], spreads: Sequence[float],
                        coverages: Sequence[float] = (0.5, 0.8)) -> dict[str, Any]:  # fmt: skip
    """How well an ensemble's spread tells right pairs from wrong ones, beside the baseline any single model has:
    the size of its own margin. ``margins``: the ensemble's mean margin ``r⁺ − r⁻`` per pair; ``spreads``: the
    members' standard deviation of that margin.

    - ``selective_accuracy_<q>``: accuracy (ties half) on the ``ceil(q·n)`` pairs with the smallest spread;
    - ``uncertainty_auroc``: the probability that a misranked pair (margin < 0) has a larger spread than a correctly
      ranked one (margin > 0; Mann–Whitney, tied spreads count half); 0.5 is no signal, ``None`` without both kinds;
    - ``margin_selective_accuracy_<q>``, ``margin_auroc``: the same with ``−|margin|`` as the uncertainty (the pairs
      the mean is least decided on are the least certain). A spread worth its cost beats these.
    """
    m = np.asarray(margins, dtype=np.float64)
    out = _selective(m, np.asarray(spreads, dtype=np.float64), coverages, "selective_accuracy", "uncertainty_auroc")
    return {**out, **_selective(m, -np.abs(m), coverages, "margin_selective_accuracy", "margin_auroc")}


def _selective(m: np.ndarray, s: np.ndarray, coverages: Sequence[float], name: str, auroc: str) -> dict[str, Any]:
    """Selective accuracy of the least uncertain pairs by ``s``, and the AUROC of ``s`` for misranked pairs."""
    out: dict[str, Any] = {f"{name}_{round(q * 100)}": None for q in coverages}
    if m.size == 0:
        return {**out, auroc: None}
    hit = (m > 0) + 0.5 * (m == 0)  # 1 right, 0 wrong, 0.5 a tie
    order = np.argsort(s, kind="stable")
    for q in coverages:
        k = max(1, int(np.ceil(q * m.size)))
        out[f"{name}_{round(q * 100)}"] = float(hit[order[:k]].mean())
    wrong, decided = m < 0, m != 0  # exact ties (no ranking either way) stay out of the AUROC
    n_wrong, n_right = int(wrong.sum()), int((decided & ~wrong).sum())
    if n_wrong == 0 or n_right == 0:
        return {**out, auroc: None}
    ranks = _average_ranks(s[decided])  # 1-based ranks of the uncertainties, ties sharing their mean rank
    u = ranks[wrong[decided]].sum() - n_wrong * (n_wrong + 1) / 2  # Mann–Whitney U of the misranked pairs
    return {**out, auroc: float(u / (n_wrong * n_right))}


# ---------------------------------------------------------------------------------------------------------------------
# Attribute heads: a predicted rating per response against the held-out rating
# ---------------------------------------------------------------------------------------------------------------------


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of two equal-length series (n,): the Pearson r of their average ranks (ties
    share the mean rank). nan when n < 2 or either series is constant."""
    a, b = _vectors(x=x, y=y)
    return pearson(_average_ranks(a), _average_ranks(b))


def attribute_metrics(predicted: Sequence[float], ratings: Sequence[float], lengths: Sequence[float]) -> dict:
    """How well one attribute head predicts the held-out ratings, beside what length and a constant get.

    ``predicted``: the head's values (n,) on the 0–1 scale; ``ratings``: the human ratings (n,) scaled to 0–1 by
    the same range; ``lengths``: each response's length (n,) in characters.

    Returns ``n``; ``pearson`` and ``spearman`` of prediction vs rating; ``mse`` (mean squared error on the 0–1
    scale); ``constant_mse``: the error of predicting the mean rating *of this eval set* for every response (the
    ratings' population variance; an optimistic constant baseline, since it knows the held-out mean);
    ``length_pearson`` / ``length_spearman``: signed correlations of the rating with length (a length-only
    predictor, fitted with the right sign, reaches their absolute values); ``prediction_length_pearson``: how much
    the prediction follows length (expected for verbosity, a warning sign for correctness). Correlations are nan
    when undefined (n < 2 or a constant series); ``mse`` and ``constant_mse`` are nan when n == 0.
    """
    p, r, n_chars = _vectors(predicted=predicted, ratings=ratings, lengths=lengths)
    n = int(p.size)
    return {
        "n": n,
        "pearson": pearson(p, r),
        "spearman": spearman(p, r),
        "mse": float(((p - r) ** 2).mean()) if n else float("nan"),
        "constant_mse": float(((r - r.mean()) ** 2).mean()) if n else float("nan"),
        "length_pearson": pearson(r, n_chars),
        "length_spearman": spearman(r, n_chars),
        "prediction_length_pearson": pearson(p, n_chars),
    }
