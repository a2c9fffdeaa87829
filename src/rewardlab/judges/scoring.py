"""A judge where a reward model is expected (``rewardlab bench --model judge:PATH``): each item's responses are
compared pairwise, every pair in both orders, and the Bradley–Terry strengths of the group are its scores, so the
suites' metrics apply unchanged: for a pair, the chosen response wins when the judge prefers it over both orders
(JudgeBench's order-swap protocol), and ties when the two orders cancel exactly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewardlab.data.records import Text, plain_text
from rewardlab.judges.aggregate import bradley_terry, schedule
from rewardlab.judges.judge import Judge

PREFIX = "judge:"


def is_judge(model: str) -> bool:
    return model.startswith(PREFIX)


class JudgeScorer:
    """What ``rewardlab bench`` needs of a model, from a local chat judge: ``score_groups`` and a tokenizer (for the
    token-length baselines)."""

    is_vision = False

    def __init__(self, spec: str, *, device: str = "cpu", dtype: str | None = None, batch_size: int = 8):
        from rewardlab.judges.backends import LocalBackend

        self.path = spec[len(PREFIX) :]
        self.judge = Judge(LocalBackend(self.path, device=device, dtype=dtype, batch_size=batch_size))
        self.tokenizer = self.judge.backend.tokenizer

    def describe(self) -> str:
        return f"judge: pairwise (both orders) with the default template, {self.path}'s chat template"

    def score_groups(self, groups: Sequence[tuple[Text, Sequence[Text]]]) -> list[list[float]]:
        """Per group (prompt, responses): the responses' Bradley–Terry strengths from every pair, both orders (all
        groups' pairs judged in one batched call)."""
        triples, where = [], []
        for g, (prompt, responses) in enumerate(groups):
            text = prompt if isinstance(prompt, str) else plain_text(prompt, turn_sep="\n\n", roles=True)
            for i, j in schedule(len(responses), "all"):
                triples.append((text, plain_text(responses[i]), plain_text(responses[j])))
                where.append((g, i, j))
        verdicts: list[dict[tuple[int, int], float]] = [{} for _ in groups]
        for (g, i, j), verdict in zip(where, self.judge.prefer_many(triples)):
            verdicts[g][(i, j)] = verdict.p_a
        return [bradley_terry(len(r), v) for (_, r), v in zip(groups, verdicts)]


def load_judge_scorer(spec: str, cfg: Any) -> JudgeScorer:
    from rewardlab.models.scorer import resolve_device

    return JudgeScorer(spec, device=resolve_device(cfg.device), dtype=cfg.dtype, batch_size=cfg.batch_size)
