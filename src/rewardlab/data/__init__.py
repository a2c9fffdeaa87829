"""Records, readers, validation, transforms and collators. Importing this package does not import torch."""

from rewardlab.data.readers import iter_rows, read_records
from rewardlab.data.records import PreferencePair, RankedGroup, ReadReport

__all__ = ["PreferencePair", "RankedGroup", "ReadReport", "iter_rows", "read_records"]
