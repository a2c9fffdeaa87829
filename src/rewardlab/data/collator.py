"""Collators: encoded features → padded batches. Modality-agnostic: they pad whatever id lists they get.

Pairs go into ONE forward pass: rows ``[0, b)`` are the chosen responses and rows ``[b, 2b)`` the rejected
ones, padded together to the longest of the ``2b`` rows (DESIGN.md §4). For causal models the collators can instead
emit shared-prefix blocks (``share_prompts``; :func:`shared_prefix_batch`): a pair's prompt once, then each
response, scored at ``score_positions`` in the same order. Example with ``b = 2``::

    features = [{"chosen_input_ids": [5, 6, 2], "rejected_input_ids": [5, 2], "margin": 0.0},
                {"chosen_input_ids": [7, 2],    "rejected_input_ids": [7, 8, 9, 2], "margin": 1.0}]
    PairCollator(pad_token_id=0, padding_side="right")(features)
    # input_ids      = [[5, 6, 2, 0], [7, 2, 0, 0], [5, 2, 0, 0], [7, 8, 9, 2]]   (2b, T)
    # attention_mask = [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]   (2b, T)
    # margin         = [0.0, 1.0]                                                  (b,)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch


def pad_rows(
    rows: list[list[int]], pad_value: int, padding_side: Literal["left", "right"], multiple_of: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists to one length. Returns ``(ids, mask)``, both ``(n, T)`` int64."""
    longest = max(len(r) for r in rows)
    if multiple_of:
        longest = -(-longest // multiple_of) * multiple_of
    ids = torch.full((len(rows), longest), pad_value, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        sl = slice(0, n) if padding_side == "right" else slice(longest - n, longest)
        ids[i, sl] = torch.tensor(row, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


# Per-row id sequences padded like input_ids (with 0), and per-image tensors concatenated along dim 0.
ROW_SEQUENCES = ("token_type_ids", "mm_token_type_ids")
IMAGE_TENSORS = ("pixel_values", "image_grid_thw", "image_sizes")


def image_count(item: dict[str, Any]) -> int:
    """How many images an item's tensors hold (Qwen-VL: one ``image_grid_thw`` row each; else the first dim)."""
    if "image_grid_thw" in item:
        return len(item["image_grid_thw"])
    return len(item["pixel_values"])


def stack_images(items: list[dict[str, Any]], batch: dict[str, torch.Tensor], row_items: list[int]) -> None:
    """Concatenate each item's image tensors once, and set ``image_rows``: the images every row shows, in row
    order — row ``r`` shows all images of item ``row_items[r]`` (one for most records), so the language model
    fills the rows' placeholder blocks from ``image_rows`` one after another.

    Tiled pixel values (LLaVA-NeXT: ``(images, tiles, C, H, W)``, the tile count depending on the image's shape)
    are zero-padded to the most tiles; the model reads each image's real count from its ``image_sizes``."""
    if "pixel_values" not in items[0]:
        return
    for key in IMAGE_TENSORS:
        if key in items[0]:
            tensors = [torch.as_tensor(it[key]) for it in items]
            if tensors[0].dim() == 5:
                most = max(t.shape[1] for t in tensors)
                tensors = [torch.nn.functional.pad(t, (0, 0, 0, 0, 0, 0, 0, most - t.shape[1])) for t in tensors]
            batch[key] = torch.cat(tensors, dim=0)
    counts = [image_count(it) for it in items]
    offsets = [sum(counts[:i]) for i in range(len(items))]
    order = [offsets[i] + k for i in row_items for k in range(counts[i])]
    batch["image_rows"] = torch.tensor(order, dtype=torch.long)


def irrelevant_rows(features: list[dict[str, Any]], per_pair: int, swap: str = "image") -> list[tuple[int, int, int]]:
    """``(pair, text, image)`` for each irrelevant-query row: the row shows pair ``text``'s chosen text with pair
    ``image``'s image, and is the rejected side against pair ``pair``'s chosen row (its text with its own image).

    For pair ``i`` and another pair ``j``: ``swap="image"`` adds ``(i, i, j)`` (the same text, another image),
    ``"text"`` adds ``(i, j, i)`` (another text, the same image), ``"both"`` adds both. ``j`` runs through the
    other pairs of the batch in order (i+1, i+2, ...), skipping images that need a different number of
    placeholder tokens and, for text swaps, texts identical to pair i's; deterministic, so a resumed run sees
    the same rows.
    """
    b, out = len(features), []
    for i in range(b):
        others = [(i + s) % b for s in range(1, b)]
        same = [j for j in others if features[j].get("image_tokens") == features[i].get("image_tokens")]
        if swap in ("image", "both"):
            out.extend((i, i, j) for j in same[:per_pair])
        if swap in ("text", "both"):
            texts = [j for j in same if features[j]["chosen_input_ids"] != features[i]["chosen_input_ids"]]
            out.extend((i, j, i) for j in texts[:per_pair])
    return out


def plain_rows(feature: dict[str, Any], images: bool = False) -> bool:
    """Token ids (no segment ids) and, when ``images``, image tensors: rows a causal model can score with shared
    prompts (an image's placeholder tokens are part of the prompt, so they are computed once too)."""
    return not any(key.endswith(("token_type_ids", "mm_token_type_ids")) for key in feature) and (
        images or "pixel_values" not in feature
    )


def shared_rows(features: list[dict[str, Any]], groups: list[list[list[int]]], pad_token_id: int,
                dtype: torch.dtype, block_mask: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
    """Training batches in shared-prefix form: each group (a pair's chosen and rejected rows, or a ranked group's
    responses) is one block with its prompt computed once, and short blocks are packed into rows no longer than the
    batch's longest block (so packing never makes a row longer than sharing alone does). With images, each block
    has a row of its own, in feature order, and ``image_rows`` lists each feature's images once: the placeholder
    blocks of the rows, in order."""
    if "pixel_values" not in features[0]:
        return shared_prefix_batch(groups, pad_token_id, dtype, pack_to=0, block_mask=block_mask)
    batch = shared_prefix_batch(groups, pad_token_id, dtype, block_mask=block_mask)
    stack_images(features, batch, list(range(len(features))))
    return batch


@dataclass
class PairCollator:
    """Batches pair features (see module docstring). Output keys: ``input_ids`` (2b, T), ``attention_mask``
    (2b, T), optional ``token_type_ids`` / ``mm_token_type_ids`` (2b, T), ``margin`` (b,); with images,
    ``pixel_values`` etc. hold each pair's image ONCE and ``image_rows`` (2b,) = ``[0..b) + [0..b)`` maps both
    rows of pair ``i`` to image ``i``, so the vision tower runs once per pair (a record with several images
    lists them all for each of its rows; see :func:`stack_images`).

    ``num_irrelevant_pairs`` (vision): per pair, that many extra rows ``[2b, ...)`` with the pair's chosen
    text and another pair's image (``irrelevant_swap="image"``), another pair's chosen text and this pair's
    image (``"text"``), or one of each (``"both"``; see :func:`irrelevant_rows`), and ``irrelevant_pairs``
    (m, 2) = (preferred row, rejected row) indices.

    ``share_prompts`` (causal text models; see :func:`shared_rows`): each pair is one block, its prompt computed
    once, and the batch is ``input_ids`` (rows, L), a 4-D ``attention_mask``, ``position_ids``, ``score_positions``
    (2b, 2) in the same order as the rows above (chosen ones first), ``row_lengths`` (2b,) and ``margin``. Rows with
    segment ids or images ignore it.
    """

    pad_token_id: int
    padding_side: Literal["left", "right"] = "right"
    pad_to_multiple_of: int | None = None
    num_irrelevant_pairs: int = 0
    irrelevant_swap: Literal["image", "text", "both"] = "image"
    share_prompts: bool = False
    share_images: bool = False
    mask_dtype: torch.dtype = torch.float32
    block_mask: bool = False

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if any("input_ids" in f for f in features):
            return self._with_rated(features)
        rows = [f["chosen_input_ids"] for f in features] + [f["rejected_input_ids"] for f in features]
        b = len(features)
        if self.share_prompts and not self.num_irrelevant_pairs and plain_rows(features[0], self.share_images):
            batch = shared_rows(features, [[f["chosen_input_ids"], f["rejected_input_ids"]] for f in features],
                                self.pad_token_id, self.mask_dtype, self.block_mask)  # fmt: skip
            # Sequences come pair by pair (c0, r0, c1, r1, ...); the loss reads chosen rows first, then rejected.
            order = [2 * i for i in range(b)] + [2 * i + 1 for i in range(b)]
            batch["score_positions"] = batch["score_positions"][order]
            batch["row_lengths"] = torch.tensor([len(r) for r in rows], dtype=torch.long)
            batch["margin"] = torch.tensor([f.get("margin", 0.0) for f in features], dtype=torch.float32)
            return batch
        row_items = list(range(b)) * 2
        extra = []
        if self.num_irrelevant_pairs and "pixel_values" in features[0]:
            extra = irrelevant_rows(features, self.num_irrelevant_pairs, self.irrelevant_swap)
        rows += [features[text]["chosen_input_ids"] for _, text, _ in extra]
        row_items += [image for _, _, image in extra]
        ids, mask = pad_rows(rows, self.pad_token_id, self.padding_side, self.pad_to_multiple_of)
        batch = {
            "input_ids": ids,
            "attention_mask": mask,
            "margin": torch.tensor([f.get("margin", 0.0) for f in features], dtype=torch.float32),
        }
        for key in ROW_SEQUENCES:
            if f"chosen_{key}" in features[0]:
                seqs = [f[f"chosen_{key}"] for f in features] + [f[f"rejected_{key}"] for f in features]
                seqs += [features[text][f"chosen_{key}"] for _, text, _ in extra]
                batch[key], _ = pad_rows(seqs, 0, self.padding_side, self.pad_to_multiple_of)
        stack_images(features, batch, row_items)
        if extra:
            # (preferred row, rejected row): pair i's chosen text with its own image beats the mismatched row.
            batch["irrelevant_pairs"] = torch.tensor([[i, 2 * b + k] for k, (i, _, _) in enumerate(extra)])
        return batch

    def _with_rated(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pairs and rated responses (attribute heads; a rated response is a group of one with ``targets``): the
        pairs' rows as usual (chosen ``[0, b)``, rejected ``[b, 2b)``; ``b`` may be 0), the rated responses after
        them, and ``attribute_targets`` (rows, K): their 0–1 ratings, NaN for the pairs' rows and unknown ones."""
        pairs = [f for f in features if "chosen_input_ids" in f]
        rated = [f for f in features if "input_ids" in f]
        b = len(pairs)
        rows = [f["chosen_input_ids"] for f in pairs] + [f["rejected_input_ids"] for f in pairs]
        rows += [f["input_ids"][0] for f in rated]
        margin = torch.tensor([f.get("margin", 0.0) for f in pairs], dtype=torch.float32)
        if self.share_prompts and plain_rows(features[0], self.share_images):
            groups = [[f["chosen_input_ids"], f["rejected_input_ids"]] for f in pairs] + [
                f["input_ids"] for f in rated
            ]
            batch = shared_rows(features, groups, self.pad_token_id, self.mask_dtype, self.block_mask)
            order = [2 * i for i in range(b)] + [2 * i + 1 for i in range(b)] + [2 * b + j for j in range(len(rated))]
            batch["score_positions"] = batch["score_positions"][order]
            batch["row_lengths"] = torch.tensor([len(r) for r in rows], dtype=torch.long)
        else:
            ids, mask = pad_rows(rows, self.pad_token_id, self.padding_side, self.pad_to_multiple_of)
            batch = {"input_ids": ids, "attention_mask": mask}
            for key in ROW_SEQUENCES:
                if any(f"chosen_{key}" in f or key in f for f in features):
                    seqs = [f[f"chosen_{key}"] for f in pairs] + [f[f"rejected_{key}"] for f in pairs]
                    seqs += [f[key][0] for f in rated]
                    batch[key], _ = pad_rows(seqs, 0, self.padding_side, self.pad_to_multiple_of)
        targets = [t for f in rated for t in f["targets"]]
        unknown = torch.full((2 * b, len(targets[0])), float("nan"))
        batch["attribute_targets"] = torch.cat([unknown, torch.tensor(targets, dtype=torch.float32)])
        batch["margin"] = margin
        return batch


@dataclass
class RowCollator:
    """Batches single encoded rows (scoring): keys ``input_ids``, ``attention_mask``, optional row sequences,
    and image tensors with ``image_rows``. Rows are dicts with ``input_ids`` and optional ``token_type_ids`` /
    ``mm_token_type_ids`` / image tensors, and an optional ``image_key``: rows with equal (non-None) keys show
    the same images, which are then sent once."""

    pad_token_id: int
    padding_side: Literal["left", "right"] = "right"

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, mask = pad_rows([r["input_ids"] for r in rows], self.pad_token_id, self.padding_side)
        batch = {"input_ids": ids, "attention_mask": mask}
        for key in ROW_SEQUENCES:
            if rows[0].get(key) is not None:
                batch[key], _ = pad_rows([r[key] for r in rows], 0, self.padding_side)
        first: dict[Any, int] = {}
        items, row_items = [], []
        for i, row in enumerate(rows):
            key = row.get("image_key")
            key = ("row", i) if key is None else key
            if key not in first:
                first[key] = len(items)
                items.append(row)
            row_items.append(first[key])
        stack_images(items, batch, row_items)
        return batch


@dataclass
class GroupCollator:
    """Batches ranked-group features for a listwise loss. Output keys: ``input_ids`` (N, T) with the
    responses of all groups one after another, ``attention_mask`` (N, T), optional ``token_type_ids`` /
    ``mm_token_type_ids``, ``ranks`` (N,) and ``group_sizes`` (g,) with ``N = group_sizes.sum()``; with images,
    each group's image ONCE and ``image_rows`` (N,) mapping every response row to its group's image.

    ``share_prompts``: one block per group, its prompt computed once (see :func:`shared_rows`); ``score_positions``
    (N, 2) then lists the responses in the order above."""

    pad_token_id: int
    padding_side: Literal["left", "right"] = "right"
    pad_to_multiple_of: int | None = None
    share_prompts: bool = False
    share_images: bool = False
    mask_dtype: torch.dtype = torch.float32
    block_mask: bool = False

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "chosen_input_ids" in features[0]:  # eval sets are pairs even when training on groups
            return PairCollator(self.pad_token_id, self.padding_side, self.pad_to_multiple_of,
                                share_prompts=self.share_prompts, share_images=self.share_images,
                                mask_dtype=self.mask_dtype, block_mask=self.block_mask)(features)  # fmt: skip
        rows = [ids for f in features for ids in f["input_ids"]]
        ranks = torch.tensor([r for f in features for r in f["ranks"]], dtype=torch.long)
        sizes = torch.tensor([len(f["input_ids"]) for f in features], dtype=torch.long)
        rated = {} if not any("targets" in f for f in features) else {"attribute_targets": group_targets(features)}
        if self.share_prompts and plain_rows(features[0], self.share_images):
            batch = shared_rows(features, [f["input_ids"] for f in features], self.pad_token_id, self.mask_dtype,
                                self.block_mask)  # fmt: skip
            lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
            return {**batch, "ranks": ranks, "group_sizes": sizes, "row_lengths": lengths, **rated}
        ids, mask = pad_rows(rows, self.pad_token_id, self.padding_side, self.pad_to_multiple_of)
        batch = {"input_ids": ids, "attention_mask": mask, "ranks": ranks, "group_sizes": sizes, **rated}
        for key in ROW_SEQUENCES:
            if key in features[0]:
                seqs = [t for f in features for t in f[key]]
                batch[key], _ = pad_rows(seqs, 0, self.padding_side, self.pad_to_multiple_of)
        stack_images(features, batch, [g for g, f in enumerate(features) for _ in f["input_ids"]])
        return batch


def group_targets(features: list[dict[str, Any]]) -> torch.Tensor:
    """``(N, K)`` attribute targets of a group batch's rows (NaN for the responses of groups without ratings)."""
    k = len(next(f["targets"] for f in features if "targets" in f)[0])
    rows = [t for f in features for t in f.get("targets", [[float("nan")] * k] * len(f["input_ids"]))]
    return torch.tensor(rows, dtype=torch.float32)


def shared_prefix_length(seqs: list[list[int]]) -> int:
    """How many leading tokens ``seqs`` have in common, kept one short of the shortest sequence so every sequence
    keeps a token of its own (where its score is read): the prefix a shared-prefix block computes once."""
    shared, shortest = 0, min(len(s) for s in seqs)
    while shared < shortest - 1 and all(s[shared] == seqs[0][shared] for s in seqs):
        shared += 1
    return shared


def shared_prefix_batch(groups: list[list[list[int]]], pad_token_id: int, dtype: torch.dtype = torch.float32,
                        pack_to: int | None = None, block_mask: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
    """Score several sequences that start alike with the tokens they share computed once.

    ``groups``: each a list of full token-id sequences (e.g. one prompt's responses, or a pair's chosen and rejected
    rows, tokenized as usual). A group becomes a *block*: its longest common prefix ``S`` (kept one token short of the
    shortest sequence, so every sequence keeps a token of its own) followed by each sequence's remaining tokens
    ``T_1, T_2, ...``. The additive 4-D attention mask lets a token of ``S`` see the earlier tokens of ``S``, and a
    token of ``T_i`` see all of ``S`` and the earlier tokens of ``T_i``, never another ``T_j`` nor another block;
    position ids start at 0 in each block and restart after ``S`` for each ``T_i``. So each sequence's last token
    sees exactly what it sees alone, and a causal model gives it the same hidden state.

    ``pack_to``: blocks are packed into rows of at most ``max(pack_to, longest block)`` tokens (first fit, longest
    block first), so short blocks share a row instead of being padded; ``None`` puts each block in its own row.

    Returns ``input_ids`` (rows, L), ``attention_mask`` (rows, 1, L, L) (0 where attended, the dtype's minimum
    elsewhere; padding attends to itself only; see :func:`shared_attention`), ``position_ids`` (rows, L) and
    ``score_positions`` (n, 2): the (row, column) of each sequence's last token, groups in order, sequences in order.

    ``block_mask``: instead of the dense mask, ``block_ids`` and ``segment_ids`` (rows, L), from which the model
    builds a FlexAttention block mask that skips the masked tiles (O(L) memory instead of O(L^2); see
    :func:`rewardlab.models.reward_model.flex_shared_mask`). Every block then goes into one row, back to back
    (``pack_to`` is ignored): the kernel never computes a tile between two blocks, so one row wastes nothing, needs
    no padding, and keeps the batch dimension at 1 (the compiled kernel sees one changing length, not two).
    """
    if block_mask:
        pack_to = sum(len(s) for seqs in groups for s in seqs)
    blocks, ends = [], []
    for seqs in groups:
        shared = shared_prefix_length(seqs)
        ids, seg, pos, last = list(seqs[0][:shared]), [0] * shared, list(range(shared)), []
        for i, s in enumerate(seqs, start=1):
            tail = s[shared:]
            ids += tail
            seg += [i] * len(tail)
            pos += range(shared, shared + len(tail))
            last.append(len(ids) - 1)
        blocks.append((ids, seg, pos))
        ends.append(last)
    # Rows: block indices. First fit over blocks longest first; without pack_to, one block per row.
    placed: list[list[int]] = []
    if pack_to is None:
        placed = [[g] for g in range(len(blocks))]
    else:
        cap = max(pack_to, max(len(b[0]) for b in blocks))
        used: list[int] = []
        for g in sorted(range(len(blocks)), key=lambda g: -len(blocks[g][0])):
            row = next((r for r, n in enumerate(used) if n + len(blocks[g][0]) <= cap), None)
            if row is None:
                placed.append([])
                used.append(0)
                row = len(placed) - 1
            placed[row].append(g)
            used[row] += len(blocks[g][0])
    longest = max(sum(len(blocks[g][0]) for g in row) for row in placed)
    n = len(placed)
    input_ids = torch.full((n, longest), pad_token_id, dtype=torch.long)
    block_t = torch.full((n, longest), -1, dtype=torch.long)
    seg_t = torch.full((n, longest), -1, dtype=torch.long)
    pos_t = torch.zeros((n, longest), dtype=torch.long)
    where: dict[int, tuple[int, int]] = {}  # block -> (row, offset)
    for r, row in enumerate(placed):
        offset = 0
        for g in row:
            ids, seg, pos = blocks[g]
            sl = slice(offset, offset + len(ids))
            input_ids[r, sl] = torch.tensor(ids)
            block_t[r, sl] = g
            seg_t[r, sl] = torch.tensor(seg)
            pos_t[r, sl] = torch.tensor(pos)
            where[g] = (r, offset)
            offset += len(ids)
    score_positions = [(where[g][0], where[g][1] + e) for g in range(len(blocks)) for e in ends[g]]
    batch = {"input_ids": input_ids, "position_ids": pos_t,
             "score_positions": torch.tensor(score_positions, dtype=torch.long)}  # fmt: skip
    if block_mask:
        return {**batch, "block_ids": block_t, "segment_ids": seg_t}
    index = torch.arange(longest)
    allowed = shared_attention(block_t[:, :, None], block_t[:, None, :], seg_t[:, :, None], seg_t[:, None, :],
                               index[:, None], index[None, :])  # fmt: skip
    mask = torch.zeros((n, 1, longest, longest), dtype=dtype)
    mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    return {**batch, "attention_mask": mask}


def shared_attention(q_block: Any, kv_block: Any, q_seg: Any, kv_seg: Any, q: Any, kv: Any) -> Any:
    """Whether query token ``q`` may see key token ``kv`` in shared-prefix rows (elementwise, broadcasting): the same
    block (padding is block -1), causal, and the key in the shared prefix (segment 0) or the query's own segment;
    every token sees itself, so a padding row is never fully masked. The one rule behind the dense mask and the
    FlexAttention ``mask_mod``."""
    same = (q_block == kv_block) & (q_block >= 0) & ((kv_seg == 0) | (kv_seg == q_seg))
    return (same & (q >= kv)) | (q == kv)
