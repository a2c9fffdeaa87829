"""LLM judges as reward models: a causal chat model asked to rate one response (pointwise) or to pick the better of
two (pairwise, both orders), turned into one score per completion.

- :mod:`~rewardlab.judges.templates`: the Jinja2 prompts (shipped defaults, user-overridable) and their checks.
- :mod:`~rewardlab.judges.backends`: where verdicts come from — a local transformers chat model, read through the
  log-probabilities of the answer tokens.
- :mod:`~rewardlab.judges.judge`: :class:`~rewardlab.judges.judge.Judge` — pointwise expected scores (G-Eval
  style), pairwise P(A ≻ B) averaged over both orders, per-group rewards; cached in SQLite.
- :mod:`~rewardlab.judges.aggregate`: pair schedules for G completions and the Bradley–Terry fit that turns their
  verdicts into one strength per completion (or their win rates).
"""
