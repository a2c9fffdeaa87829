"""The four parts of the GPU benchmark. Each runs in its own process (gpu_bench.py starts it with a time limit) and
records its cells one by one: a cell that fails or does not fit the time left is recorded with its reason, and the
part's file is rewritten after every cell, so a part killed at its limit still leaves what it measured."""

from __future__ import annotations

import gc
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapes


@dataclass
class Part:
    """One part's run: where it writes, until when it may start cells, and what it has recorded."""

    name: str
    out: Path  # this part's JSON
    work: Path  # models and data, shared by the parts of one run
    deadline: float  # time.monotonic() after which no cell starts
    device: str
    dry: bool
    info: dict[str, Any] = field(default_factory=dict)
    cells: list[dict[str, Any]] = field(default_factory=list)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"info": self.info, "cells": self.cells}, indent=1), encoding="utf-8")
        tmp.replace(self.out)

    def cell(self, name: str, needs_s: float, fn, **labels: Any) -> dict[str, Any] | None:
        """Runs ``fn() -> dict`` as one cell when ``needs_s`` seconds are left; records it, with its status."""
        row: dict[str, Any] = {"cell": name, **labels}
        if self.left() < needs_s:
            row.update(status="skipped", reason=f"time: {self.left():.0f} s left, needs ~{needs_s:.0f} s")
            return self.record(row)
        self.cells.append({**row, "status": "running"})  # what a part killed at its time limit was doing
        self.save()
        self.cells.pop()
        reset_peak(self.device)
        start = time.perf_counter()
        try:
            row.update(fn())
            row["status"] = "ok"
        except Exception as exc:  # one cell's failure must not lose the others
            trace = traceback.format_exception(exc)
            print("".join(trace[-6:]), flush=True)  # the part's log keeps the end of the traceback
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:400])
        finally:
            free(self.device)
        row["wall_s"] = round(time.perf_counter() - start, 1)
        return self.record(row)

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        self.cells.append(row)
        self.save()
        shown = {k: v for k, v in row.items() if k in SHOWN}
        print(f"[{self.name}] " + " ".join(f"{k}={_short(v)}" for k, v in shown.items()), flush=True)
        return row


SHOWN = ("cell", "status", "pairs_per_s", "tokens_per_s", "mfu", "cuda_peak_mib", "max_abs_diff", "within",
         "items_per_s", "ratio", "speedup", "reason", "error", "wall_s")  # fmt: skip


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) < 90 else text[:87] + "..."


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def free(device: str) -> None:
    """Drops what a cell left (models, optimizer states) before the next one measures its peak memory."""
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def peak_mib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.startswith("cuda") else None


# ---------------------------------------------------------------------------------------------- models and data


def model_dir(part: Part, name: str) -> Path:
    """The model ``name`` (a config in configs/), built once per run and shared by the parts."""
    directory = part.work / "models" / name
    if not (directory / "info.json").is_file():
        info = shapes.build_text_model(directory, name, device=part.device, dry=part.dry)
        (directory / "info.json").write_text(json.dumps(info), encoding="utf-8")
    return directory


def model_info(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "info.json").read_text(encoding="utf-8"))


def pairs_file(part: Part, model: Path, seq: int, n: int) -> tuple[Path, dict[str, Any]]:
    """``n`` generated pairs with rows up to ~``seq`` tokens (for the tokenizer every model shares)."""
    path = part.work / "data" / f"pairs-{seq}-{n}.jsonl"
    stats_path = path.with_suffix(".stats.json")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        stats_path.write_text(json.dumps(shapes.write_pairs(path, model, n, seq)), encoding="utf-8")
    return path, json.loads(stats_path.read_text(encoding="utf-8"))


def sequence(part: Part, seq: int) -> int:
    """A cell's row length: the real one, or an eighth of it for --dry."""
    return seq // 8 if part.dry else seq


def steps(part: Part) -> tuple[int, int]:
    """(untimed warm-up steps, timed steps): few, so the grid fits its minutes."""
    return (1, 2) if part.dry else (3, 8)


# ---------------------------------------------------------------------------------------------- 1. training


@dataclass(frozen=True)
class TrainCell:
    model: str  # a config in configs/
    seq: int  # longest row, in tokens (the pairs are generated to fit it)
    batch: int  # pairs per step
    side: str = "rewardlab"  # or "trl"
    share: bool = True  # data.share_prompts (rewardlab only)
    ckpt: bool = False  # activation checkpointing
    lora: bool = False  # LoRA r=16 on every linear layer; the head trains fully
    warmup: bool = False  # the process's first training, measured but not to be compared (CUDA and kernel start-up)

    @property
    def name(self) -> str:
        side = self.side if self.side == "trl" else "share" if self.share else "plain"
        extras = "-ckpt" * self.ckpt + "-lora" * self.lora + "-warmup" * self.warmup
        return f"{self.model}-{self.seq // 1024}k-{side}{extras}"


# A warm-up cell first: the process's first training step ran 3x slower per step than the same work a minute later
# in the first H200 run (CUDA context, cuBLAS and attention kernels starting), so the first compared cell must not
# be the first training. Then the most informative first (later cells are skipped when time runs out): the small
# model at 1k tokens, prompt sharing on/off and TRL; a bigger model; an 8B with LoRA; then 4k tokens and activation
# checkpointing. Batches keep ~16-32k tokens a step.
GRID = (
    TrainCell("qwen3-0.6b", 1024, 8, warmup=True),
    TrainCell("qwen3-0.6b", 1024, 8),
    TrainCell("qwen3-0.6b", 1024, 8, share=False),
    TrainCell("qwen3-0.6b", 1024, 8, side="trl"),
    TrainCell("qwen3-1.7b", 1024, 8),
    TrainCell("qwen3-1.7b", 1024, 8, share=False),
    TrainCell("llama3-8b", 1024, 4, ckpt=True, lora=True),
    TrainCell("llama3-8b", 1024, 4, share=False, ckpt=True, lora=True),
    TrainCell("qwen3-0.6b", 4096, 4),
    TrainCell("qwen3-0.6b", 4096, 4, share=False),
    TrainCell("qwen3-0.6b", 4096, 4, side="trl"),
    TrainCell("qwen3-0.6b", 1024, 8, ckpt=True),
    TrainCell("qwen3-1.7b", 4096, 4, ckpt=True),
)
# Seconds a cell needs on an H200 (setup, 11 steps), and building the model once (random init, save, page cache).
CELL_S = {"qwen3-0.6b": 15, "qwen3-1.7b": 25, "llama3-8b": 50}
BUILD_S = {"qwen3-0.6b": 10, "qwen3-1.7b": 20, "llama3-8b": 70}
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}


def part_train(part: Part) -> None:
    from bench_train import gemm_peak_flops

    peak = gemm_peak_flops(bf16=True, threads=None, device=part.device, n=1024 if part.dry else None)
    part.info.update(gemm_peak_tflops=round(peak / 1e12, 2), precision="bf16 weights, bf16 autocast, SDPA")
    part.info["steps"] = dict(zip(("warmup", "timed"), steps(part)))
    for cell in GRID:
        built = (part.work / "models" / cell.model / "info.json").is_file()
        needs = 3 if part.dry else CELL_S[cell.model] + (0 if built else BUILD_S[cell.model])
        labels = {"model": cell.model, "seq": sequence(part, cell.seq), "batch": cell.batch, "side": cell.side,
                  "share": cell.share, "ckpt": cell.ckpt, "lora": cell.lora, "warmup": cell.warmup}  # fmt: skip
        if cell.side == "trl" and not _installed("trl", "datasets"):
            part.record(
                {"cell": cell.name, **labels, "status": "skipped", "reason": NOT_CARRIED.format("trl, datasets")}
            )
            continue
        part.cell(cell.name, needs, lambda cell=cell: train_cell(part, cell, peak), **labels)


def train_spec(part: Part, cell: TrainCell, directory: Path, pairs: Path, n: int) -> dict[str, Any]:
    """bench_train's side spec for one cell (bf16 weights on both sides, no export)."""
    warmup, timed = steps(part)
    settings: dict[str, Any] = {"dtype": "bfloat16", "attn_implementation": "sdpa"}
    if cell.lora:
        settings["lora"] = LORA
    work = part.work / "runs" / cell.name
    work.mkdir(parents=True, exist_ok=True)
    return {"work": str(work), "model_dir": str(directory), "pairs_path": str(pairs), "pairs": n, "seed": 0,
            "max_length": sequence(part, cell.seq), "steps": warmup + timed, "warmup": warmup,
            "batch_size": cell.batch, "gradient_checkpointing": cell.ckpt, "bf16": True, "lr": 1e-5,
            "trl_sampling": "group_by_length", "device": part.device, "model_dtype": "bfloat16",
            "attn_implementation": "sdpa", "model_settings": settings, "export": False}  # fmt: skip


def train_cell(part: Part, cell: TrainCell, peak: float) -> dict[str, Any]:
    from bench_train import add_mfu, run_rewardlab, run_trl

    directory = model_dir(part, cell.model)
    info = model_info(directory)
    n = cell.batch * steps(part)[1]
    pairs, stats = pairs_file(part, directory, sequence(part, cell.seq), n)
    spec = train_spec(part, cell, directory, pairs, n)
    result = run_trl(spec) if cell.side == "trl" else run_rewardlab(spec, share_prompts=cell.share)
    add_mfu({cell.name: result}, info, peak)
    if cell.lora:  # frozen weights get no weight gradient: 4 (not 6) FLOPs per weight and token
        result["mfu"] = float(f"{result['mfu'] * 4 / 6:.3g}")
    keep = (
        "pairs_per_s",
        "tokens_per_s",
        "computed_tokens_per_pair",
        "real_tokens_per_pair",
        "padding_fraction",
        "mfu",
        "cuda_peak_mib",
        "timed_steps",
        "timed_seconds",
        "setup_s",
        "pairs_dropped",
        "pairs_truncated",
    )
    out = {k: result[k] for k in keep}
    out["cuda_peak_mib"] = peak_mib(part.device)  # the cell's whole peak (bench_train's is read at train end)
    return {**out, "params_m": info["params_m"], "data": stats}


NOT_CARRIED = "{} not installed here (carry the wheels: bench/gpu/README.md)"


def _installed(*names: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(n) is not None for n in names)


# ---------------------------------------------------------------------------------------------- 2. exactness

# bf16 keeps ~3 significant digits, and the shared-prompt rows run other attention kernels (a 4-D mask): differences
# of a percent of the scores' spread are rounding; fp32 must agree to rounding of a float's 7 digits.
TOLERANCE = {"float32": {"scores_rel": 1e-4, "loss_abs": 1e-4}, "bfloat16": {"scores_rel": 2e-2, "loss_abs": 1e-2}}


def part_exact(part: Part) -> None:
    part.info["tolerance"] = TOLERANCE
    part.info["what"] = ("scores: Scorer share_prompts on vs off, rank of 16 (relative to the scores' spread); "
                         "losses: 4 training steps, data.share_prompts on vs off, same seed (absolute)")  # fmt: skip
    for precision in ("bfloat16", "float32"):
        needs = (3, 3) if part.dry else (10, 20)  # losses: two short trainings
        part.cell(f"scores-{precision}", needs[0], lambda p=precision: exact_scores(part, p), precision=precision)
        part.cell(f"losses-{precision}", needs[1], lambda p=precision: exact_losses(part, p), precision=precision)
    # Shared prompts through a FlexAttention block mask (training needs the GPU: no flex backward on CPU).
    flex = {"cell": "losses-flex-bfloat16", "precision": "bfloat16", "attention": "flex_attention"}
    if part.device == "cpu":  # rewardlab refuses flex training on the CPU with a config error: nothing to measure
        part.record({**flex, "status": "skipped", "reason": "needs CUDA: flex_attention training runs on GPUs only"})
        return
    part.cell(flex["cell"], 3 if part.dry else 20, lambda: exact_losses(part, "bfloat16", "flex_attention"),
              precision="bfloat16", attention="flex_attention")  # fmt: skip


def rank_inputs(part: Part, seq: int, prompts: int) -> tuple[Path, list[str], list[str]]:
    """The Qwen3-0.6B model, ``prompts`` long prompts and 16 responses from the generated pairs."""
    directory = model_dir(part, "qwen3-0.6b")
    pairs, _ = pairs_file(part, directory, seq, 16)
    rows = [json.loads(line) for line in pairs.read_text(encoding="utf-8").splitlines()]
    responses = [r[k] for r in rows[:8] for k in ("chosen", "rejected")]
    return directory, [r["prompt"] for r in rows[:prompts]], responses


def scorers(part: Part, directory: Path, dtype: str, seq: int) -> tuple[Any, Any]:
    from rewardlab.models.scorer import Scorer

    made = [Scorer.from_pretrained(str(directory), batch_size=16, device=part.device, dtype=dtype,
                                   max_length=seq, share_prompts=share) for share in (True, False)]  # fmt: skip
    return made[0], made[1]


def exact_scores(part: Part, precision: str) -> dict[str, Any]:
    from bench_scoring import time_rank

    seq = sequence(part, 1024)
    directory, prompts, responses = rank_inputs(part, seq, 3)
    shared, plain = scorers(part, directory, precision, seq)
    res = time_rank(shared, plain, prompts, responses)
    rel = res["max_abs_diff"] / max(res["score_spread"], 1e-12)
    tol = TOLERANCE[precision]["scores_rel"]
    return {"max_abs_diff": res["max_abs_diff"], "score_spread": res["score_spread"], "max_rel_diff": rel,
            "tolerance": f"{tol:g} of the spread", "within": rel <= tol}  # fmt: skip


def exact_losses(part: Part, precision: str, shared_attention: str = "sdpa") -> dict[str, Any]:
    """Four training steps' losses, prompts shared (with ``shared_attention``) vs one row per response (sdpa)."""
    from bench_train import run_rewardlab

    directory = model_dir(part, "qwen3-0.6b")
    seq, batch = sequence(part, 1024), 4
    pairs, _ = pairs_file(part, directory, seq, batch * 4)
    work = part.work / "runs" / f"exact-{precision}-{shared_attention}"
    work.mkdir(parents=True, exist_ok=True)
    spec = {"work": str(work), "model_dir": str(directory), "pairs_path": str(pairs), "pairs": batch * 4, "seed": 0,
            "max_length": seq, "steps": 4, "warmup": 1, "batch_size": batch, "gradient_checkpointing": False,
            "bf16": precision == "bfloat16", "lr": 1e-5, "device": part.device, "export": False,
            "model_settings": {"dtype": precision, "attn_implementation": "sdpa"},
            "training_overrides": {"logging_steps": 1}}  # fmt: skip
    losses = {}
    for share in (True, False):
        attention = shared_attention if share else "sdpa"
        run_rewardlab({**spec, "model_settings": {**spec["model_settings"], "attn_implementation": attention}},
                      share_prompts=share)  # fmt: skip
        rows = (work / f"rewardlab-run-{share}" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        losses[share] = [json.loads(r)["loss"] for r in rows if '"loss"' in r]
        free(part.device)
    diff = max(abs(a - b) for a, b in zip(losses[True], losses[False]))
    tol = TOLERANCE[precision]["loss_abs"]
    return {"max_abs_diff": diff, "losses_shared": losses[True], "losses_plain": losses[False],
            "tolerance": f"{tol:g} absolute", "within": diff <= tol}  # fmt: skip


# ---------------------------------------------------------------------------------------------- 3. scoring, serving


def part_serve(part: Part) -> None:
    part.cell("rank16", 3 if part.dry else 15, lambda: scoring_speed(part))
    part.cell("rank16-flex", 3 if part.dry else 15, lambda: scoring_speed(part, "flex_attention"),
              attention="flex_attention")  # fmt: skip
    needs = 5 if part.dry else 40
    if not _installed("fastapi", "uvicorn", "aiohttp"):
        part.record({"cell": "serve", "status": "skipped", "reason": NOT_CARRIED.format("fastapi, uvicorn, aiohttp")})
        return
    part.cell("serve", needs, lambda: serving(part))


def scoring_speed(part: Part, shared_attention: str = "sdpa") -> dict[str, Any]:
    """``Scorer.rank`` of 16 responses to a ~600-token prompt, bf16, the prompt once (with ``shared_attention``:
    sdpa's dense mask, or a FlexAttention block mask) vs once per response (sdpa)."""
    from bench_scoring import time_rank

    seq = sequence(part, 1024)
    directory, prompts, responses = rank_inputs(part, seq, 3 if part.dry else 8)
    shared, plain = scorers(part, directory, "bfloat16", seq)
    shared.model.config._attn_implementation = shared_attention  # read by the attention layers at each call
    res = time_rank(shared, plain, prompts, responses)
    return {"items_per_s": len(responses) / res["shared_s"], "items_per_s_plain": len(responses) / res["plain_s"],
            "ratio": res["plain_s"] / res["shared_s"], "rank_ms": 1000 * res["shared_s"],
            "rank_ms_plain": 1000 * res["plain_s"], "max_abs_diff": res["max_abs_diff"],
            "cuda_peak_mib": peak_mib(part.device)}  # fmt: skip


def serving(part: Part) -> dict[str, Any]:
    """``rewardlab serve`` vs one forward per request (bench_serve.py), both on this device in bf16."""
    import argparse

    import bench_serve

    from rewardlab.data.synthetic import make_pairs

    directory = model_dir(part, "qwen3-0.6b")
    args = argparse.Namespace(clients=8 if part.dry else 64, seconds=2.0 if part.dry else 8.0,
                              threads=1 if part.dry else 4, max_batch_size=64, max_wait_ms=5.0,
                              device=part.device, dtype="bfloat16")  # fmt: skip
    tmp = part.work / "serve"
    tmp.mkdir(parents=True, exist_ok=True)
    res = bench_serve.compare_servers(str(directory), tmp, args, make_pairs(256, seed=7))
    ours, base = res["servers"]["rewardlab"], res["servers"]["one-by-one"]
    pick = ("requests_per_s", "items_per_s", "p50_ms", "p99_ms", "errors")
    return {"items_per_s": ours["items_per_s"], "items_per_s_plain": base["items_per_s"],
            "ratio": res["ratios"]["items_per_s"], "p99_ratio": res["ratios"]["p99"], "clients": args.clients,
            "seconds": args.seconds, "rewardlab": {k: ours[k] for k in pick} | {"server": ours.get("server")},
            "one_by_one": {k: base[k] for k in pick}}  # fmt: skip


# ---------------------------------------------------------------------------------------------- 4. vision

# (config, family, image side in pixels): Qwen2.5-VL at 448 px (256 image tokens), LLaVA-1.5 at 336 px (576).
VISION = (("qwen2.5-vl-3b", "qwen2_5_vl", 448), ("llava-1.5-7b", "llava", 336))


def part_vision(part: Part) -> None:
    part.info["layers"] = (f"real widths; {shapes.VISION_TEXT_LAYERS} decoder layers, vision layers "
                           f"{shapes.VISION_TOWER_LAYERS} (the real models have more: see configs/)")  # fmt: skip
    for name, family, size in VISION:
        size = 112 if part.dry else size
        part.cell(family, 3 if part.dry else 30, lambda a=(name, family, size): vision_cell(part, *a),
                  model=name, image_px=size)  # fmt: skip


def vision_cell(part: Part, name: str, family: str, size: int) -> dict[str, Any]:
    """bench_vision.py's comparison at real widths: train steps with each pair's image encoded once vs twice."""
    import torch
    from bench_vision import load_batch, per_row, step_time, time_both

    from rewardlab.data.screenshots import make_screenshot_pairs

    directory = part.work / "models" / name
    info = shapes.build_vlm(directory, name, family, image_size=size, device=part.device, dry=part.dry)
    pairs = 2 if part.dry else 8
    records = make_screenshot_pairs(pairs, seed=0, out_dir=part.work / "shots", size=(256, 192))
    model, batch = load_batch(directory, records, device=part.device, dtype="bfloat16")
    once, twice = (to_device(b, part.device) for b in (batch, per_row(batch)))
    with torch.no_grad():
        inputs = [{k: v for k, v in b.items() if k != "margin"} for b in (once, twice)]
        diff = (model(**inputs[0]).float() - model(**inputs[1]).float()).abs().max().item()
    peaks = {}
    for label, b in (("once", once), ("twice", twice)):
        free(part.device)
        reset_peak(part.device)
        step_time(model, b)
        peaks[label] = peak_mib(part.device)
    s_once, s_twice = time_both(model, once, twice, 1 if part.dry else 5)
    return {"s_once": s_once, "s_twice": s_twice, "speedup": s_twice / s_once, "pairs_per_s": pairs / s_once,
            "cuda_peak_mib": peaks["once"], "cuda_peak_mib_twice": peaks["twice"], "max_abs_diff": diff,
            "pairs": pairs, "model_info": info}  # fmt: skip


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


PARTS = {"train": part_train, "exact": part_exact, "serve": part_serve, "vision": part_vision}


def run_part(name: str, out: Path, work: Path, budget_s: float, device: str, dry: bool) -> None:
    """Entry point of a part's process: ``budget_s`` seconds from now, no new cell starts."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    part = Part(name, out, work, time.monotonic() + budget_s, device, dry)
    part.save()
    PARTS[name](part)
