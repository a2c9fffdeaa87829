"""LLM judges as reward models: a causal chat model asked to rate one response (pointwise) or to pick the better of
two (pairwise, both orders), turned into one score per completion.

- :mod:`~rewardlab.judges.templates`: the Jinja2 prompts (shipped defaults, user-overridable) and their checks.
- :mod:`~rewardlab.judges.backends`: where verdicts come from — a local transformers chat model or an
  OpenAI-compatible endpoint, read through the log-probabilities of the answer tokens; a SQLite cache in front.
- :mod:`~rewardlab.judges.judge`: :class:`~rewardlab.judges.judge.Judge` — pointwise expected scores (G-Eval
  style), pairwise P(A ≻ B) averaged over both orders, per-group rewards; cached in SQLite.
- :mod:`~rewardlab.judges.aggregate`: pair schedules for G completions and the Bradley–Terry fit that turns their
  verdicts into one strength per completion (or their win rates).
- :mod:`~rewardlab.judges.spec`: ``judge:SPEC`` (a local model, ``URL#MODEL`` or a judge file) → a judge.
- :mod:`~rewardlab.judges.scoring`: :class:`~rewardlab.judges.scoring.JudgeScorer`, a judge where ``eval``,
  ``bench``, ``serve`` and ``score`` expect a reward model.
"""
