"""Metrics as pure functions over score arrays (numpy or lists). Hand-tested in tests/test_metrics.py."""

from __future__ import annotations

from collections.abc import Sequence

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
