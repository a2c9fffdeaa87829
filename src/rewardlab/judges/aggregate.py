"""From pairwise verdicts to one score per completion.

A group of G completions to one prompt is judged on a *schedule* of pairs (:func:`schedule`):

- ``all``: every pair, G·(G−1)/2 of them — the full picture, quadratic cost;
- ``round_robin``: each completion against the next ``rounds`` ones around a circle, G·rounds pairs (each completion
  in 2·rounds of them);
- ``reference``: each completion against completion 0 (a reference answer or the policy's first sample), G−1 pairs;
- ``swiss``: ``rounds`` rounds in which completions with similar running scores meet, G/2 pairs a round.

A judged pair gives P(i ≻ j) (a probability, or 1 / ½ / 0 for a win, tie, loss). :func:`bradley_terry` fits the
strengths θ that make P(i ≻ j) = σ(θ_i − θ_j) most likely (ties count half a win each way), with a weak prior
(``prior`` virtual ties against an average opponent) so a completion that won or lost everything gets a finite
strength; the strengths, centred on 0, are the rewards. :func:`win_rate` is the simpler alternative: each
completion's mean P(win) over the pairs it was in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Literal

Schedule = Literal["all", "round_robin", "reference", "swiss"]


def schedule(g: int, kind: Schedule = "all", *, rounds: int = 2, seed: int = 0) -> list[tuple[int, int]]:
    """The pairs ``(i, j)`` (``i < j``) a static schedule judges for G completions; ``swiss`` is played by
    :func:`swiss_pairs` (its pairs depend on earlier verdicts), and this gives its first round."""
    if g < 2:
        return []
    if kind == "all":
        return [(i, j) for i in range(g) for j in range(i + 1, g)]
    if kind == "reference":
        return [(0, j) for j in range(1, g)]
    if kind == "round_robin":
        pairs = {
            tuple(sorted((i, (i + k) % g))) for k in range(1, min(rounds, (g - 1) // 2 + 1) + 1) for i in range(g)
        }
        return sorted(p for p in pairs if p[0] != p[1])  # type: ignore[misc]
    if kind == "swiss":
        order = list(range(g))
        random.Random(seed).shuffle(order)
        return [tuple(sorted((order[k], order[k + 1]))) for k in range(0, g - 1, 2)]  # type: ignore[misc]
    raise ValueError(f"unknown schedule {kind!r}; choose all, round_robin, reference or swiss")


def swiss_pairs(g: int, judge: Callable[[int, int], float], *, rounds: int = 3, seed: int = 0
                ) -> dict[tuple[int, int], float]:  # fmt: skip
    """Play ``rounds`` Swiss rounds: after a random first round, completions are sorted by their running win total
    and neighbours meet, never the same pair twice (a pair already met is skipped). ``judge(i, j)`` → P(i ≻ j).
    Returns every judged pair's P."""
    verdicts: dict[tuple[int, int], float] = {}
    points = [0.0] * g
    for r in range(rounds):
        if r == 0:
            pairs = schedule(g, "swiss", seed=seed)
        else:
            ranked = sorted(range(g), key=lambda i: (-points[i], i))
            pairs, used = [], set()
            for a in ranked:
                if a in used:
                    continue
                b = next(
                    (b for b in ranked if b != a and b not in used and tuple(sorted((a, b))) not in verdicts), None
                )
                if b is not None:
                    used |= {a, b}
                    pairs.append(tuple(sorted((a, b))))
        for i, j in pairs:
            p = judge(i, j)
            verdicts[(i, j)] = p
            points[i] += p
            points[j] += 1 - p
    return verdicts


def calls_per_group(g: int, kind: Schedule, *, rounds: int = 2, both_orders: bool = True) -> int:
    """Judge calls one group costs: pairs of the schedule × 2 when both orders are judged."""
    pairs = rounds * (g // 2) if kind == "swiss" else len(schedule(g, kind, rounds=rounds))
    return pairs * (2 if both_orders else 1)


def bradley_terry(g: int, verdicts: dict[tuple[int, int], float], *, prior: float = 0.5,
                  iterations: int = 500, tol: float = 1e-10) -> list[float]:  # fmt: skip
    """Strengths θ (centred: mean 0) of G completions from ``verdicts`` ``{(i, j): P(i ≻ j)}`` by the MM algorithm
    (Hunter 2004), each verdict counting ``P`` wins for i and ``1 − P`` for j, plus ``prior`` virtual ties of each
    completion with a phantom of strength 1 (so an unbeaten completion stays finite). A completion in no pair gets
    0."""
    wins = [prior / 2] * g  # half of each prior tie is a win
    meetings: dict[tuple[int, int], float] = {}
    for (i, j), p in verdicts.items():
        wins[i] += p
        wins[j] += 1 - p
        key = (min(i, j), max(i, j))
        meetings[key] = meetings.get(key, 0.0) + 1
    gamma = [1.0] * g
    for _ in range(iterations):
        new = []
        for i in range(g):
            denominator = prior / (gamma[i] + 1.0)  # the phantom opponent (strength 1)
            for (a, b), n in meetings.items():
                if i in (a, b):
                    other = b if i == a else a
                    denominator += n / (gamma[i] + gamma[other])
            new.append(wins[i] / denominator if denominator > 0 else gamma[i])
        change = max(abs(math.log(n) - math.log(o)) for n, o in zip(new, gamma))
        gamma = new
        if change < tol:
            break
    theta = [math.log(x) for x in gamma]
    mean = sum(theta) / g
    return [t - mean for t in theta]


def win_rate(g: int, verdicts: dict[tuple[int, int], float]) -> list[float]:
    """Each completion's mean P(win) over the pairs it was in (0.5 for a completion in none)."""
    total, count = [0.0] * g, [0] * g
    for (i, j), p in verdicts.items():
        total[i] += p
        total[j] += 1 - p
        count[i] += 1
        count[j] += 1
    return [t / c if c else 0.5 for t, c in zip(total, count)]


def aggregate(
    g: int, verdicts: dict[tuple[int, int], float], how: Literal["bradley_terry", "win_rate"]
) -> list[float]:
    return bradley_terry(g, verdicts) if how == "bradley_terry" else win_rate(g, verdicts)
