"""Vision RMs: what encoding each pair's image once saves, versus once per row (chosen and rejected).

    python bench/bench_vision.py [--family F] [--pairs 8] [--image-size 224] [--steps 5]
    python bench/bench_vision.py --scoring [--family F] [--pairs 32]     # inference: Scorer.score_pairs

F is llava, llava_next, qwen2_vl or qwen2_5_vl. Both variants train the same tiny VLM reward model on the same
batch: "once" sends each pair's image a single time and reuses the vision features for both rows (rewardlab's
collator, ``image_rows``); "per row" sends the image with every row, which is what a pipeline that treats
chosen and rejected as two independent samples does. Prints forward+backward time per step for both, and the
ratio. ``--scoring`` does the same for ``Scorer.score_pairs``, where sharing also saves loading and
preprocessing the image twice.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build(tmp: Path, family: str, image_size: int, pairs: int):
    from rewardlab.data.screenshots import make_screenshot_pairs
    from rewardlab.data.synthetic import corpus
    from rewardlab.models.tiny import build_tiny_vlm

    records = make_screenshot_pairs(pairs, seed=0, out_dir=tmp / "shots", size=(256, 192))
    path = build_tiny_vlm(tmp / "vlm", corpus(records) * 4, family=family, hidden=128, layers=4,
                          image_size=image_size)  # fmt: skip
    return load_batch(path, records)


def load_batch(path: Path, records: list, device: str = "cpu", dtype: str | None = None):
    """The reward model at ``path`` (on ``device``, weights in ``dtype``, in training mode) and one training batch
    of ``records``, each pair's image sent once (rewardlab's collator), on the same device."""
    from rewardlab.data.collator import PairCollator
    from rewardlab.models.bundle import RewardBundle

    bundle = RewardBundle.load(path, device=device, dtype=dtype, max_length=2048)
    batch = PairCollator(bundle.tokenizer.pad_token_id)([bundle.transform.encode_pair(r) for r in records])
    return bundle.model.train(), batch


def build_scoring(tmp: Path, family: str, image_size: int, pairs: int):
    from rewardlab.data.screenshots import make_screenshot_pairs
    from rewardlab.data.synthetic import corpus
    from rewardlab.models.tiny import build_tiny_vlm

    records = make_screenshot_pairs(pairs, seed=0, out_dir=tmp / "shots", size=(256, 192))
    path = build_tiny_vlm(tmp / "vlm", corpus(records) * 4, family=family, hidden=128, layers=4,
                          image_size=image_size)  # fmt: skip
    return path, records


def per_row(batch: dict) -> dict:
    """The same batch with every row carrying its own copy of the image."""
    rows = batch["image_rows"]
    out = {**batch, "image_rows": torch.arange(len(rows))}
    if "image_grid_thw" in batch:  # Qwen-VL: patches are concatenated per image
        grids = batch["image_grid_thw"]
        sizes = grids.prod(-1).tolist()
        chunks = torch.split(batch["pixel_values"], sizes)
        out["pixel_values"] = torch.cat([chunks[i] for i in rows.tolist()])
        out["image_grid_thw"] = grids[rows]
    else:  # LLaVA: one image per entry; LLaVA-NeXT: (tiles, C, H, W) per entry, with its image_sizes
        out["pixel_values"] = batch["pixel_values"][rows]
        if "image_sizes" in batch:
            out["image_sizes"] = batch["image_sizes"][rows]
    return out


def _sync(model) -> None:
    """Waits for the model's device: CUDA kernels run asynchronously, so a timer must not stop before they end."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_time(model, batch: dict) -> float:
    _sync(model)
    start = time.perf_counter()
    model(**{k: v for k, v in batch.items() if k != "margin"}).sum().backward()
    model.zero_grad(set_to_none=True)
    _sync(model)
    return time.perf_counter() - start


def time_both(model, once: dict, twice: dict, steps: int) -> tuple[float, float]:
    """Median step times, the two variants interleaved so that machine noise hits both alike."""
    step_time(model, once), step_time(model, twice)  # warm-up
    a, b = zip(*[(step_time(model, once), step_time(model, twice)) for _ in range(steps)])
    return statistics.median(a), statistics.median(b)


def time_scoring(path: Path, records: list, repeats: int) -> tuple[float, float, float]:
    """``Scorer.score_pairs`` (each pair's image loaded, processed and encoded once) against the same rows with
    every row's image as its own object (so nothing is shared, as when rows are scored independently).
    Returns the two median times and the largest score difference."""
    from rewardlab.models.scorer import Scorer

    scorer = Scorer.from_pretrained(str(path), batch_size=16, device="cpu")
    n = len(records)
    prompts = [r.prompt for r in records] * 2
    responses = [r.chosen for r in records] + [r.rejected for r in records]

    def shared() -> list[float]:
        chosen, rejected = scorer.score_pairs(records)
        return chosen + rejected

    def per_row() -> list[float]:  # a fresh {"path"} dict per row: equal images, but nothing tells the Scorer
        images = [({"path": r.images[0], "bytes": None},) for r in records * 2]
        return scorer.score(prompts, responses, images=images)

    shared(), per_row()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        x = shared()
        a.append(time.perf_counter() - start)
        start = time.perf_counter()
        y = per_row()
        b.append(time.perf_counter() - start)
    assert len(x) == 2 * n
    return statistics.median(a), statistics.median(b), max(abs(u - v) for u, v in zip(x, y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="llava", choices=["llava", "llava_next", "qwen2_vl", "qwen2_5_vl"])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--scoring", action="store_true", help="Time Scorer.score_pairs (inference) instead.")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.scoring:
        with tempfile.TemporaryDirectory() as tmp:
            path, records = build_scoring(Path(tmp), args.family, args.image_size, args.pairs)
            t_shared, t_rows, diff = time_scoring(path, records, args.steps)
        print(f"{args.family}, Scorer.score_pairs on {args.pairs} pairs, {args.image_size}px images "
              f"(median of {args.steps}):")  # fmt: skip
        print("| images | s | pairs/s |\n|---|---|---|")
        print(f"| once per pair (rewardlab) | {t_shared:.3f} | {args.pairs / t_shared:.1f} |")
        print(f"| once per row | {t_rows:.3f} | {args.pairs / t_rows:.1f} |")
        print(f"speed-up: {t_rows / t_shared:.2f}x; largest score difference: {diff:.1e}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        model, batch = build(Path(tmp), args.family, args.image_size, args.pairs)
        duplicated = per_row(batch)
        inputs = [{k: v for k, v in b.items() if k != "margin"} for b in (batch, duplicated)]
        with torch.no_grad():
            same = torch.allclose(model(**inputs[0]), model(**inputs[1]), atol=1e-5)
        once, twice = time_both(model, batch, duplicated, args.steps)
    print(f"{args.family}, {args.pairs} pairs, {args.image_size}px images, fwd+bwd per step (median of {args.steps}):")
    print("| images encoded | s/step | pairs/s |\n|---|---|---|")
    print(f"| once per pair (rewardlab) | {once:.3f} | {args.pairs / once:.1f} |")
    print(f"| once per row | {twice:.3f} | {args.pairs / twice:.1f} |")
    print(f"speed-up: {twice / once:.2f}x; identical scores: {same}")


if __name__ == "__main__":
    main()
