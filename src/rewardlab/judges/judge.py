"""A judge: pointwise scores, pairwise preferences (both orders) and one reward per completion of a group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rewardlab.errors import ConfigError
from rewardlab.judges.aggregate import Schedule, aggregate, schedule, swiss_pairs
from rewardlab.judges.backends import normalized
from rewardlab.judges.templates import Template

PAIR_ANSWERS = ("A", "B")


@dataclass(frozen=True)
class PairVerdict:
    """``p_a``: P(a ≻ b), the mean of the two orders' verdicts (a shown first, then b shown first), so a judge's
    preference for a position cancels; ``first`` / ``second``: P(a ≻ b) in each order; ``disagree``: the two
    orders pick different responses (the judge followed the position, not the content)."""

    p_a: float
    first: float
    second: float

    @property
    def disagree(self) -> bool:
        return (self.first > 0.5) != (self.second > 0.5)


@dataclass
class GroupRewards:
    """One reward per completion, the verdicts behind them (``{(i, j): P(i ≻ j)}``), the judge calls they cost and
    how often the two orders of a pair disagreed."""

    rewards: list[float]
    verdicts: dict[tuple[int, int], float]
    calls: int
    disagreements: int = 0
    pairs: list[PairVerdict] = field(default_factory=list)


class Judge:
    """An LLM judge over a :mod:`backend <rewardlab.judges.backends>`.

    Args:
        backend: a ``Backend`` (e.g. ``LocalBackend``, optionally behind ``CachedBackend``).
        pointwise, pairwise: template text or file (``None``: the shipped defaults in
            :mod:`~rewardlab.judges.templates`).
        scale: the pointwise scale ``(low, high)``; each score must be one token for the judge's tokenizer (single
            digits are: the default 1–9).
    """

    def __init__(self, backend: Any, *, pointwise: str | None = None, pairwise: str | None = None,
                 scale: tuple[int, int] = (1, 9)):  # fmt: skip
        low, high = scale
        if not low < high:
            raise ConfigError(f"judge scale [{low}, {high}]: needs low < high, e.g. [1, 9]")
        self.backend, self.scale = backend, (low, high)
        self.pointwise_template = Template(pointwise, "pointwise")
        self.pairwise_template = Template(pairwise, "pairwise")
        self.score_answers = [str(k) for k in range(low, high + 1)]

    # -- pointwise ---------------------------------------------------------------------------------------------
    def score(self, prompt: str | Sequence[str], responses: Sequence[str]) -> list[float]:
        """Each response's expected score: Σ k · P(k) over the scale's answer tokens (G-Eval), a real number in
        ``[low, high]`` rather than the one parsed digit, so close responses still differ."""
        prompts = [prompt] * len(responses) if isinstance(prompt, str) else list(prompt)
        low, high = self.scale
        messages = [self.pointwise_template.render(prompt=p, response=r, low=low, high=high)
                    for p, r in zip(prompts, responses)]  # fmt: skip
        values = range(low, high + 1)
        return [expected_value(lp, values) for lp in self.backend.answer_logprobs(messages, self.score_answers)]

    # -- pairwise ----------------------------------------------------------------------------------------------
    def prefer(self, prompt: str, a: str, b: str) -> PairVerdict:
        return self.prefer_many([(prompt, a, b)])[0]

    def prefer_many(self, triples: Sequence[tuple[str, str, str]]) -> list[PairVerdict]:
        """P(a ≻ b) for each ``(prompt, a, b)``, each judged in both orders (two calls a pair, batched)."""
        messages = []
        for prompt, a, b in triples:
            messages.append(self.pairwise_template.render(prompt=prompt, response_a=a, response_b=b))
            messages.append(self.pairwise_template.render(prompt=prompt, response_a=b, response_b=a))
        logprobs = self.backend.answer_logprobs(messages, PAIR_ANSWERS)
        out = []
        for k in range(len(triples)):
            first = normalized(logprobs[2 * k])[0]  # a shown as A
            second = normalized(logprobs[2 * k + 1])[1]  # a shown as B
            out.append(PairVerdict((first + second) / 2, first, second))
        return out

    # -- one reward per completion -----------------------------------------------------------------------------
    def group_rewards(self, prompt: str, completions: Sequence[str], *, schedule_kind: Schedule = "all",
                      how: Literal["bradley_terry", "win_rate"] = "bradley_terry", rounds: int = 2,
                      seed: int = 0) -> GroupRewards:  # fmt: skip
        """Judge the schedule's pairs of ``completions`` (both orders each) and aggregate: Bradley–Terry strengths
        (centred on 0) or win rates (see :mod:`rewardlab.judges.aggregate`)."""
        g = len(completions)
        before = self.backend.calls
        pairs: list[PairVerdict] = []
        if schedule_kind == "swiss":

            def judge(i: int, j: int) -> float:
                verdict = self.prefer(prompt, completions[i], completions[j])
                pairs.append(verdict)
                return verdict.p_a

            verdicts = swiss_pairs(g, judge, rounds=rounds, seed=seed)
        else:
            order = schedule(g, schedule_kind, rounds=rounds, seed=seed)
            pairs = self.prefer_many([(prompt, completions[i], completions[j]) for i, j in order])
            verdicts = {pair: v.p_a for pair, v in zip(order, pairs)}
        rewards = aggregate(g, verdicts, how)
        return GroupRewards(rewards, verdicts, self.backend.calls - before, sum(v.disagree for v in pairs), pairs)


def judge_rewards(judge: Judge, settings: Any, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    """One reward per completion of a batch, as ``settings`` (a :class:`~rewardlab.config.schema.JudgeSettings`)
    says: pointwise, each completion's expected score; pairwise, the completions of one prompt (wherever they sit in
    the batch) judged on the schedule's pairs and aggregated — a prompt with a single completion gets 0."""
    if settings.mode == "pointwise":
        return judge.score(list(prompts), list(completions))
    rewards = [0.0] * len(completions)
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(prompt, []).append(i)
    for prompt, members in groups.items():
        if len(members) > 1:
            group = judge.group_rewards(prompt, [completions[i] for i in members], schedule_kind=settings.schedule,
                                        how=settings.aggregation, rounds=settings.rounds)  # fmt: skip
            for i, reward in zip(members, group.rewards):
                rewards[i] = reward
    return rewards


def expected_value(logprobs: Sequence[float], values: Sequence[float]) -> float:
    """Σ value · P(value), the answers' probabilities renormalized among themselves."""
    return sum(v * p for v, p in zip(values, normalized(logprobs)))
