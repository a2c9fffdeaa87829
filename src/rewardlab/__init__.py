"""rewardlab: reward models for text and images.

Importing this package is cheap (no torch). Import the layer you need::

    from rewardlab.data import read_records
    from rewardlab.models import RewardBundle, Scorer
    from rewardlab.training import RewardTrainer

The layers, and where a new model family, loss, route or reward source goes: ``docs/architecture.md``.
"""

__version__ = "0.1.0"
