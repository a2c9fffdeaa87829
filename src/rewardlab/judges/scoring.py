"""A judge where a reward model is expected (``--model judge:SPEC``, see :mod:`~rewardlab.judges.spec`).

A pairwise judge (the default) compares each item's responses two by two, every pair in both orders (JudgeBench's
order-swap protocol), and the Bradley–Terry strengths of the group are its scores, so the metrics written for
reward models apply unchanged: for a pair, the chosen response wins when the judge prefers it over both orders, and
ties when the two orders cancel exactly; ``σ(s_a − s_b)`` of a pair's strengths is the judge's P(a ≻ b). A pointwise
judge (``mode: pointwise`` in a judge file) scores each response alone: its expected rating.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rewardlab.data.records import Text, plain_text
from rewardlab.judges.aggregate import bradley_terry, schedule
from rewardlab.judges.judge import PairVerdict
from rewardlab.judges.spec import describe, is_judge, load_judge

__all__ = ["JudgeScorer", "is_judge", "load_judge_scorer", "logit", "prompt_text"]

P_FLOOR = 1e-6  # a certain verdict's log-odds are capped at ±log((1 − 1e-6) / 1e-6) ≈ ±13.8


class JudgeScorer:
    """What ``bench``, ``eval`` and ``serve`` need of a model, from a judge: ``score_groups``, ``prefer_pairs`` and
    a tokenizer for the token-length baselines (a local judge's; ``None`` for an endpoint, whose baselines are in
    characters only)."""

    is_vision = False
    members = 1
    attribute_names: list[str] = []

    def __init__(self, spec: str, *, device: str = "cpu", dtype: str | None = None, batch_size: int = 8):
        self.spec = spec
        self.pairs = self.disagreements = 0  # pairs judged in both orders, and how many of them the orders split
        self.judge, self.settings = load_judge(spec, device=device, dtype=dtype, batch_size=batch_size)
        self.tokenizer = getattr(self.judge.backend, "tokenizer", None)
        inner = getattr(self.judge.backend, "backend", None)  # behind the cache
        if self.tokenizer is None and inner is not None:
            self.tokenizer = getattr(inner, "tokenizer", None)

    @property
    def pointwise(self) -> bool:
        return self.settings.mode == "pointwise"

    def describe(self) -> str:
        return describe(self.settings)

    @property
    def calls(self) -> int:
        return self.judge.backend.calls

    def prefer_pairs(self, triples: Sequence[tuple[Text, Text, Text]]) -> list[PairVerdict]:
        """P(a ≻ b) for each ``(prompt, a, b)``, both orders; a pointwise judge's is σ of the two ratings' difference
        (one order: a rating sees one response)."""
        plain = [(prompt_text(p), plain_text(a), plain_text(b)) for p, a, b in triples]
        if not self.pointwise:
            verdicts = self.judge.prefer_many(plain)
            self.pairs += len(verdicts)
            self.disagreements += sum(v.disagree for v in verdicts)
            return verdicts
        ratings = self.judge.score([p for p, _, _ in plain for _ in (0, 1)], [r for _, a, b in plain for r in (a, b)])
        out = []
        for k in range(len(plain)):
            p = 1.0 / (1.0 + math.exp(ratings[2 * k + 1] - ratings[2 * k]))
            out.append(PairVerdict(p, p, p))
        return out

    def score_groups(self, groups: Sequence[tuple[Text, Sequence[Text]]]) -> list[list[float]]:
        """Per group (prompt, responses): pointwise, each response's expected rating; pairwise, the responses'
        Bradley–Terry strengths from every pair in both orders (all groups' pairs judged in one batched call), or —
        with another ``schedule`` / ``aggregation`` in the judge file — the judge's :meth:`group_rewards`."""
        if self.pointwise:
            prompts = [prompt_text(p) for p, responses in groups for _ in responses]
            flat = self.judge.score(prompts, [plain_text(r) for _, responses in groups for r in responses])
            out, offset = [], 0
            for _, responses in groups:
                out.append(flat[offset : offset + len(responses)])
                offset += len(responses)
            return out
        s = self.settings
        if s.schedule != "all" or s.aggregation != "bradley_terry":
            out = []
            for p, responses in groups:
                texts = [plain_text(r) for r in responses]
                group = self.judge.group_rewards(
                    prompt_text(p), texts, schedule_kind=s.schedule, how=s.aggregation, rounds=s.rounds
                )
                self.pairs += len(group.pairs)
                self.disagreements += group.disagreements
                out.append(group.rewards)
            return out
        triples, where = [], []
        for g, (prompt, responses) in enumerate(groups):
            for i, j in schedule(len(responses), "all"):
                triples.append((prompt, responses[i], responses[j]))
                where.append((g, i, j))
        verdicts: list[dict[tuple[int, int], float]] = [{} for _ in groups]
        for (g, i, j), verdict in zip(where, self.prefer_pairs(triples)):
            verdicts[g][(i, j)] = verdict.p_a
        return [bradley_terry(len(r), v) for (_, r), v in zip(groups, verdicts)]

    def usage(self) -> dict[str, Any]:
        """What the judge has cost so far: model calls, answers from the cache, unparseable replies and (an endpoint)
        requests with their latency (median and 95th percentile, seconds) and failed tries."""
        backend = self.judge.backend
        inner = getattr(backend, "backend", backend)
        out: dict[str, Any] = {"calls": backend.calls, "cache_hits": getattr(backend, "hits", 0),
                               "unparseable": getattr(inner, "unparseable", 0)}  # fmt: skip
        log = getattr(inner, "log", None)
        if log:
            ok = sorted(seconds for seconds, fine in log if fine)
            out |= {"requests": len(log), "failed_requests": sum(not fine for _, fine in log)}
            if ok:
                out |= {"latency_p50_s": ok[len(ok) // 2], "latency_p95_s": ok[min(len(ok) - 1, int(0.95 * len(ok)))]}
        return out

    def counts(self) -> dict[str, int]:
        """Running counts: pairs judged in both orders, those whose two orders split, model calls, cache hits and
        unparseable replies (subtract two snapshots for what one piece of work cost)."""
        used = self.usage()
        return {"pairs": self.pairs, "orders_disagree": self.disagreements,
                **{k: used[k] for k in ("calls", "cache_hits", "unparseable")}}  # fmt: skip

    def close(self) -> None:
        backend = getattr(self.judge.backend, "backend", self.judge.backend)
        if hasattr(backend, "close"):
            backend.close()


def prompt_text(prompt: Text) -> str:
    """A prompt as the judge reads it: a string as is; chat messages as ``role: text`` turns."""
    return prompt if isinstance(prompt, str) else plain_text(prompt, turn_sep="\n\n", part_sep="\n", roles=True)


def logit(p: float) -> float:
    """log(p / (1 − p)), with p kept within [1e-6, 1 − 1e-6] so a certain verdict stays finite."""
    p = min(max(p, P_FLOOR), 1.0 - P_FLOOR)
    return math.log(p / (1.0 - p))


def load_judge_scorer(spec: str, cfg: Any) -> JudgeScorer:
    """The judge of ``spec`` on ``cfg``'s device, dtype and batch size (a command's scoring settings)."""
    from rewardlab.models.scorer import resolve_device

    return JudgeScorer(spec, device=resolve_device(cfg.device), dtype=cfg.dtype, batch_size=cfg.batch_size)
