"""Rewards for policy fine-tuning (TRL's trainers call them). ``ModelReward``: a rewardlab RM as a TRL reward
function, scored through the one :class:`~rewardlab.models.scorer.Scorer` path."""

from rewardlab.rl.rewards import ModelReward

__all__ = ["ModelReward"]
