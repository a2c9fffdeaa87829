"""Rewards for policy fine-tuning (TRL's trainers call them). ``ModelReward``: a rewardlab RM as a TRL reward
function, scored through the one :class:`~rewardlab.models.scorer.Scorer` path; ``RemoteReward``: a served RM
(``rewardlab serve`` or OpenRLHF's ``/get_reward``) through the batching client."""

from rewardlab.rl.rewards import ModelReward, RemoteReward

__all__ = ["ModelReward", "RemoteReward"]
