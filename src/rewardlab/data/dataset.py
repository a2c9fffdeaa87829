"""A map-style dataset of encoded features, with the lengths a length-grouped sampler needs, and a batch sampler
that fills each batch up to a token budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from rewardlab.data.collator import shared_prefix_length


class EncodedDataset(Dataset):
    """Holds the features a transform produced. ``lengths[i]`` is the longest sequence of item ``i``
    (the padded width it forces on its batch); ``tokens[i]`` the tokens item ``i`` costs in a shared-prefix batch
    (its sequences' tokens, their common prefix counted once)."""

    def __init__(self, features: list[dict[str, Any]]):
        self.features = features
        self.lengths = [_longest(f) for f in features]
        self.tokens = [_block_tokens(f) for f in features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.features[i]


def _longest(feature: dict[str, Any]) -> int:
    if "chosen_input_ids" in feature:
        return max(len(feature["chosen_input_ids"]), len(feature["rejected_input_ids"]))
    return max(len(ids) for ids in feature["input_ids"])


def _block_tokens(feature: dict[str, Any]) -> int:
    seqs = [feature["chosen_input_ids"], feature["rejected_input_ids"]] if "chosen_input_ids" in feature else (
        feature["input_ids"])  # fmt: skip
    return sum(len(s) for s in seqs) - shared_prefix_length(seqs) * (len(seqs) - 1)


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Batches of whole items (pairs or ranked groups) holding at most ``max_tokens`` tokens each (an item longer
    than the budget gets a batch of its own), so a step of short pairs carries many and a step of long ones few.

    The order is drawn from ``seed + epoch``: items are shuffled, sorted by size within windows of ``window`` items
    (similar sizes share a batch, as with length grouping), cut into batches greedily, and the batches shuffled.
    Identical for every process (each then takes its share) and after a resume (``set_epoch`` comes first).
    """

    def __init__(self, tokens: list[int], max_tokens: int, seed: int, window: int = 512):
        self.tokens, self.max_tokens, self.seed, self.window = list(tokens), max_tokens, seed, window
        self.epoch = 0
        self._plan: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        if self._plan is not None and self._plan[0] == self.epoch:
            return self._plan[1]
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.tokens), generator=g).tolist()
        out: list[list[int]] = []
        for start in range(0, len(order), self.window):
            current, used = [], 0
            for i in sorted(order[start : start + self.window], key=lambda i: -self.tokens[i]):
                if current and used + self.tokens[i] > self.max_tokens:
                    out.append(current)
                    current, used = [], 0
                current.append(i)
                used += self.tokens[i]
            if current:
                out.append(current)
        shuffled = [out[j] for j in torch.randperm(len(out), generator=g).tolist()]
        self._plan = (self.epoch, shuffled)
        return shuffled

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())
