"""Evaluation: metrics as pure functions (:mod:`rewardlab.evaluation.metrics`), train and eval reports, plots and the
HTML report. Nothing here loads a model: scores come from the :class:`~rewardlab.models.scorer.Scorer`."""
