"""rewardlab: reward models for text and images.

Importing this package is cheap (no torch). Import the layer you need::

    from rewardlab.data import read_records
    from rewardlab.models import Scorer
    from rewardlab.training import RewardTrainer
"""

__version__ = "0.1.0"
