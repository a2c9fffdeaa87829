"""A map-style dataset of encoded features, with the lengths a length-grouped sampler needs."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset


class EncodedDataset(Dataset):
    """Holds the features a transform produced. ``lengths[i]`` is the longest sequence of item ``i``
    (the padded width it forces on its batch)."""

    def __init__(self, features: list[dict[str, Any]]):
        self.features = features
        self.lengths = [_longest(f) for f in features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.features[i]


def _longest(feature: dict[str, Any]) -> int:
    if "chosen_input_ids" in feature:
        return max(len(feature["chosen_input_ids"]), len(feature["rejected_input_ids"]))
    return max(len(ids) for ids in feature["input_ids"])
