"""Training throughput: rewardlab vs TRL's ``RewardTrainer`` on the same model, pairs and settings.

Run from the repository root (needs ``pip install -e .[bench]``, i.e. trl)::

    python bench/bench_train.py                          # fp32, ~2.5 min on 2 idle CPU cores
    python bench/bench_train.py --gradient-checkpointing
    python bench/bench_train.py --bf16 --repeats 3 --out results.json
    python bench/bench_train.py --data hh-rlhf           # real pairs from ../shared/data (when present)
    python bench/bench_train.py --quick                  # tiny model, a few steps (the smoke test)

A tiny decoder reward model (``rewardlab.models.tiny``, ~11M parameters by default) is written once to a
temporary directory, and the pairs once to a JSONL file. Each side then trains in its own subprocess (clean
peak RSS, no shared caches): ``rewardlab`` through ``rewardlab.recipes.train.run_train`` with its defaults
(length-grouped batches, a pair's prompt computed once), ``rewardlab_plain`` the same with
``data.share_prompts: false`` (one row per response, as before), and TRL through ``trl.RewardTrainer`` in its
fastest configuration (length-grouped, no activation checkpointing), its defaults except the settings in
``FORCED``, which every side gets with the same value. The first ``--warmup`` steps are not timed. Per side:
pairs/s, the pairs' real tokens per second, the tokens actually computed per pair (fewer than the pair holds
when the prompt is shared), the padding share of the computed slots, peak memory, and MFU: ``6 · weights ·
tokens computed/s`` over the peak FLOP/s of a matrix product measured in the same run and precision.

By default there are exactly ``batch size × timed steps`` pairs, so the timed steps are one epoch's worth of
batches on both sides and the comparison is not skewed by batch order (length grouping puts the longest
batch first). Caveat: ``LengthGroupedSampler`` sorts within mega-batches of ``min(50, N // 4B) · B`` pairs,
so with few pairs it groups less well than on a real data set (≥ 1,600 pairs at B = 8): the padding measured
here is an upper bound for rewardlab. Timings on a shared machine are noisy: each side reports the share of
CPU its threads got while timed, and ``--repeats`` alternates the sides and keeps the median.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# rewardlab as shipped (prompts shared where exact), rewardlab with `data.share_prompts=false`, and TRL.
SIDES = ("rewardlab", "rewardlab_plain", "trl")
HH_RLHF = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
)
# Settings given the same value on both sides (the rest stays each library's default).
FORCED = (
    "max_steps",
    "per_device_train_batch_size",
    "max_length",
    "activation_checkpointing",
    "bf16",
    "learning_rate",
    "optim",
    "seed",
    "save_strategy",
    "logging_steps",
    "report_to",
    "disable_tqdm",
    "use_cpu",
)


# ---------------------------------------------------------------------------------------------- options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=None, help="Optimizer steps per side (default 18; quick: 5).")
    p.add_argument("--warmup", type=int, default=None, help="Untimed first steps (default 2; quick: 1).")
    p.add_argument("--batch-size", type=int, default=8, help="Pairs per step (per_device_train_batch_size).")
    p.add_argument("--max-length", type=int, default=512, help="Longest prompt+response in tokens, both sides.")
    p.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="Training pairs. Default: batch size × timed steps, so the timed steps are one epoch on both sides "
        "(the warm-up steps run into the next epoch) and both time the same pairs, whatever their batch order.",
    )
    p.add_argument("--data", choices=["generated", "hh-rlhf"], default="generated", help="Where pairs come from.")
    p.add_argument("--hidden", type=int, default=None, help="Hidden size (default 384; quick: 64).")
    p.add_argument("--layers", type=int, default=None, help="Decoder layers (default 8; quick: 2).")
    p.add_argument("--vocab-size", type=int, default=None, help="Tokenizer vocabulary (default 512; hh-rlhf 2048).")
    p.add_argument("--lr", type=float, default=1e-4, help="Learning rate, both sides.")
    p.add_argument("--seed", type=int, default=0, help="Seed for data, weights and shuffling.")
    p.add_argument("--gradient-checkpointing", action="store_true", help="Recompute activations (both sides).")
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (both sides; default fp32).")
    p.add_argument(
        "--trl-sampling",
        choices=["random", "group_by_length"],
        default="group_by_length",
        help="TRL's train_sampling_strategy (default group_by_length, its fastest; its own default is random).",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads per side (default: torch's; quick: 1)."
    )
    p.add_argument("--repeats", type=int, default=1, help="Runs per side, alternating; the median is reported.")
    p.add_argument("--quick", action="store_true", help="Tiny model and few steps: a smoke test in seconds.")
    p.add_argument("--out", type=Path, default=None, help="Also write the results as JSON here.")
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)  # internal: run one side
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    # One thread for the tiny model: it gains nothing from more, and on a busy machine an OpenMP barrier waiting
    # for a descheduled thread can make each step seconds long.
    quick = {"steps": 5, "warmup": 1, "hidden": 64, "layers": 2, "threads": 1}
    full = {"steps": 18, "warmup": 2, "hidden": 384, "layers": 8}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.vocab_size is None:
        args.vocab_size = 2048 if args.data == "hh-rlhf" else 512
    if not 1 <= args.warmup < args.steps:
        p.error(f"--warmup ({args.warmup}) must be at least 1 and smaller than --steps ({args.steps})")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.pairs is None:
        args.pairs = args.batch_size * (args.steps - args.warmup)
    return args


# ---------------------------------------------------------------------------------------------- data and model


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def _extend(rng: random.Random, text: str, sentences: list[str], count, target: int) -> str:
    """Append random sentences to ``text`` until it is about ``target`` tokens long (``count`` measures)."""
    n = count(text)
    while n < target:
        sentence = " " + rng.choice(sentences)
        text += sentence
        n += count(sentence)
    return text


def generated_pairs(
    n: int,
    seed: int,
    tokenizer: Any,
    prompt_tokens: tuple[int, int] = (20, 200),
    response_tokens: tuple[int, int] = (10, 200),
) -> list[dict[str, str]]:
    """``n`` pairs from ``rewardlab.data.synthetic``, extended with its sentences to log-uniform lengths:
    prompts ``prompt_tokens`` (default ~20–200 tokens), responses ``response_tokens`` (default ~10–200), drawn
    independently (hh-rlhf's ``Human:/Assistant:``)."""
    from rewardlab.data import synthetic

    rng = random.Random(seed)
    sentences = [s for facts in synthetic.TOPICS.values() for s in facts] + synthetic.CLOSERS + synthetic.ASKS
    sentences = [s.format(t=rng.choice(list(synthetic.TOPICS))) for s in sentences]
    cache: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in cache:
            cache[text] = len(tokenizer(text, add_special_tokens=False).input_ids)
        return cache[text]

    rows = []
    for pair in synthetic.make_pairs(n, seed):
        head, tail = "\n\nHuman: " + str(pair.prompt), "\n\nAssistant:"
        prompt = _extend(rng, head, sentences, count, _log_uniform(rng, *prompt_tokens) - count(tail)) + tail
        chosen = _extend(rng, " " + str(pair.chosen), sentences, count, _log_uniform(rng, *response_tokens))
        rejected = _extend(rng, " " + str(pair.rejected), sentences, count, _log_uniform(rng, *response_tokens))
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def hh_rlhf_pairs(n: int) -> list[dict[str, str]]:
    """The first ``n`` plain-text pairs of hh-rlhf harmless-base test (prompt extracted by rewardlab's reader)."""
    from rewardlab.config.schema import DataSource
    from rewardlab.data.readers import read_records

    if not HH_RLHF.is_file():
        sys.exit(f"--data hh-rlhf: {HH_RLHF} not found (only in the project's checkout); use --data generated")
    records, _ = read_records(DataSource(path=str(HH_RLHF)))
    rows = [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected} for r in records]
    return [r for r in rows if all(isinstance(v, str) for v in r.values())][:n]


def build_inputs(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Writes the tiny model and ``pairs.jsonl`` into ``work``; returns model size and data statistics."""
    from transformers import AutoConfig, AutoTokenizer

    from rewardlab.data.synthetic import corpus, make_pairs
    from rewardlab.models.tiny import build_tiny_model

    rows = hh_rlhf_pairs(args.pairs) if args.data == "hh-rlhf" else None
    texts = [t for r in rows for t in r.values()] if rows else corpus(make_pairs(2000, args.seed)) + ["Human:"]
    heads = max(1, args.hidden // 64)
    model_dir = build_tiny_model(
        work / "model", texts, vocab_size=args.vocab_size, hidden=args.hidden, layers=args.layers, heads=heads
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = rows or generated_pairs(args.pairs, args.seed, tokenizer)
    with (work / "pairs.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return {
        "model": _model_info(AutoConfig.from_pretrained(model_dir), model_dir),
        "data": _data_stats(rows, tokenizer),
    }


def _model_info(config: Any, model_dir: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    return {
        "architecture": config.architectures[0],
        "params_m": round(params / 1e6, 2),
        "hidden": config.hidden_size,
        "layers": config.num_hidden_layers,
        "heads": config.num_attention_heads,
        "vocab": config.vocab_size,
    }


def _data_stats(rows: list[dict[str, str]], tokenizer: Any) -> dict[str, Any]:
    def lengths(key: str) -> list[int]:
        return [len(ids) for ids in tokenizer([r[key] for r in rows], add_special_tokens=False).input_ids]

    prompt, chosen, rejected = lengths("prompt"), lengths("chosen"), lengths("rejected")
    longest = [p + max(c, r) + 1 for p, c, r in zip(prompt, chosen, rejected)]  # + EOS
    return {
        "pairs": len(rows),
        "prompt_tokens": _spread(prompt),
        "response_tokens": _spread(chosen + rejected),
        "longest_sequence_of_pair": _spread(longest),
    }


def _spread(values: list[int]) -> dict[str, float]:
    ordered = sorted(values)
    return {"min": ordered[0], "mean": round(sum(values) / len(values), 1), "max": ordered[-1]}


# ---------------------------------------------------------------------------------------------- one side (subprocess)


class Meter:
    """What one side did: ``(sequences, tokens computed, token slots, sequence tokens)`` of every batch its collator
    produced (in the order the steps consume them), and the time at the end of every optimizer step. Plain batches
    compute every real token of every sequence; shared-prefix batches compute a pair's prompt once, so they compute
    fewer tokens than their sequences hold."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, int, int]] = []
        self.step_ends: list[float] = []
        self.step_cpu: list[float] = []  # CPU seconds of this process (all threads) at each step end
        self.peak_rss_mib = 0.0
        self.cuda_peak_mib: float | None = None

    def wrap(self, collator: Any) -> Any:
        def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
            batch = collator(features)
            if "score_positions" in batch:  # shared-prefix rows: blocks packed from each row's start
                import torch

                where = batch["score_positions"]  # (2b, 2): (row, column) of each sequence's last token
                ends = torch.zeros(batch["input_ids"].shape[0], dtype=torch.long)
                ends = ends.scatter_reduce(0, where[:, 0], where[:, 1] + 1, reduce="amax")
                counts = (where.shape[0], int(ends.sum()), batch["input_ids"].numel(), int(batch["row_lengths"].sum()))
            else:
                mask = batch["attention_mask"]  # (2b, T): chosen rows, then rejected rows
                counts = (mask.shape[0], int(mask.sum()), mask.numel(), int(mask.sum()))
            self.batches.append(counts)
            return batch

        return collate

    def callback(self) -> Any:
        import torch
        from transformers import TrainerCallback

        meter, cuda = self, torch.cuda.is_available()

        class StepTimer(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if cuda:
                    torch.cuda.synchronize()
                meter.step_ends.append(time.perf_counter())
                meter.step_cpu.append(time.process_time())

            def on_train_end(self, args, state, control, **kwargs):
                meter.peak_rss_mib = _peak_rss_mib()  # the high-water mark up to here, before any export
                if cuda:
                    meter.cuda_peak_mib = torch.cuda.max_memory_allocated() / 2**20

        return StepTimer()

    def summary(self, warmup: int) -> dict[str, Any]:
        """Throughput over steps ``warmup+1 .. last``; step ``i`` consumed the ``i``-th collated batch (the data
        loader may have collated one batch ahead, which is left out)."""
        timed = self.batches[warmup : len(self.step_ends)]
        seconds = self.step_ends[-1] - self.step_ends[warmup - 1]
        rows, computed, slots, real = (sum(b[i] for b in timed) for i in range(4))
        cpu_seconds = self.step_cpu[-1] - self.step_cpu[warmup - 1]
        return {
            "timed_steps": len(timed),
            "timed_seconds": round(seconds, 3),
            "pairs_per_s": rows / 2 / seconds,
            "tokens_per_s": real / seconds,
            "padding_fraction": 1 - computed / slots,
            "real_tokens_per_pair": real / (rows / 2),
            "computed_tokens_per_pair": computed / (rows / 2),
            "computed_tokens_per_s": computed / seconds,
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "cuda_peak_mib": None if self.cuda_peak_mib is None else round(self.cuda_peak_mib, 1),
            # ≈ 1 when the process had its threads' cores to itself; well below 1: another process competed.
            "cpu_share": round(cpu_seconds / seconds / _threads(), 2),
            "step_seconds": [round(b - a, 3) for a, b in zip(self.step_ends, self.step_ends[1:])][warmup - 1 :],
            "step_slots": [b[2] for b in timed],
        }


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _peak_rss_mib() -> float:
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux (bytes on macOS)
    return kib / 2**20 if sys.platform == "darwin" else kib / 2**10


def checkpointing_key() -> str:
    """``TrainingArguments``' name for activation checkpointing: ``activation_checkpointing`` in recent
    transformers, ``gradient_checkpointing`` (its old name, still an alias) before it was renamed."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def forced_training(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``TrainingArguments`` both sides get, whatever their own defaults are; ``spec["training_overrides"]``
    (optional) replaces or adds settings, ``spec["device"] == "cpu"`` keeps a GPU machine's run on the CPU."""
    import dataclasses

    import torch
    from transformers import TrainingArguments

    optim = next(f.default for f in dataclasses.fields(TrainingArguments) if f.name == "optim")
    return {
        "max_steps": spec["steps"],
        "per_device_train_batch_size": spec["batch_size"],
        checkpointing_key(): spec["gradient_checkpointing"],
        "bf16": spec["bf16"],
        "learning_rate": spec["lr"],
        "optim": str(getattr(optim, "value", optim)),  # transformers' default, set explicitly on both sides
        "seed": spec["seed"],
        "save_strategy": "no",
        "logging_steps": 10**6,  # no log line inside the timed steps
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": spec.get("device") == "cpu" or not torch.cuda.is_available(),  # bf16 on CPU needs it
        **spec.get("training_overrides", {}),
    }


def _args_report(args: Any) -> dict[str, Any]:
    """The settings a side trained with: the forced ones, and defaults that differ between the libraries."""
    keys = [k for k in FORCED if hasattr(args, k)] + ["train_sampling_strategy", "lr_scheduler_type", "warmup_steps"]
    keys += ["weight_decay", "max_grad_norm", "dataloader_num_workers", "dataloader_pin_memory", "fp16"]
    return {k: _plain(getattr(args, k)) for k in keys}


class TrainingDone(Exception):
    """Ends ``run_train`` after its last step, before the export (for big models, writing gigabytes of random
    weights would only time the disk)."""


def run_rewardlab(spec: dict[str, Any], share_prompts: bool = True) -> dict[str, Any]:
    """rewardlab's real path (``run_train``: reader → TextTransform → length-grouped RewardTrainer), metered;
    ``share_prompts=False`` is the same with ``data.share_prompts: false`` (one row per response).
    Optional spec keys: ``model_settings`` (more of the config's ``model:`` section, e.g. dtype, lora) and
    ``export: false`` (stop after training: then the truncation count is unknown, reported as None)."""
    from transformers import TrainerCallback

    import rewardlab.training.trainer as trainer_module
    from rewardlab.config.schema import TrainConfig
    from rewardlab.recipes.train import run_train

    meter, seen = Meter(), {}

    class StopBeforeExport(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            raise TrainingDone

    class MeteredTrainer(trainer_module.RewardTrainer):
        def __init__(self, *args: Any, **kwargs: Any):
            stop = [] if spec.get("export", True) else [StopBeforeExport()]
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), meter.callback(), *stop]
            super().__init__(*args, **kwargs)
            self.data_collator = meter.wrap(self.data_collator)
            seen["trainer"], seen["setup_s"] = self, time.perf_counter() - start

    # run_train imports RewardTrainer from its module when it runs: hand it the metered subclass (this process only).
    trainer_module.RewardTrainer = MeteredTrainer
    cfg = TrainConfig(
        output_dir=str(Path(spec["work"]) / f"rewardlab-run-{share_prompts}"),
        seed=spec["seed"],
        data={"train": {"path": spec["pairs_path"]}, "max_length": spec["max_length"], "share_prompts": share_prompts},
        model={"name_or_path": spec["model_dir"], **spec.get("model_settings", {})},
        training=forced_training(spec),
    )
    start = time.perf_counter()
    try:
        counts = run_train(cfg).counts["train"]
    except TrainingDone:
        counts = {"dropped": None, "truncated": None}
    trainer = seen["trainer"]
    dropped = counts["dropped"] if counts["dropped"] is not None else spec["pairs"] - len(trainer.train_dataset)
    return {
        **meter.summary(spec["warmup"]),
        "setup_s": round(seen["setup_s"], 2),
        "pairs_trained_on": len(trainer.train_dataset),
        "pairs_dropped": dropped,
        "pairs_truncated": counts["truncated"],
        "args": _args_report(trainer.args),
    }


def run_trl(spec: dict[str, Any]) -> dict[str, Any]:
    """TRL's ``RewardTrainer`` on the same JSONL (explicit prompt/chosen/rejected), its defaults except ``FORCED``;
    ``spec["model_dtype"]`` and ``spec["attn_implementation"]`` (optional): as rewardlab's ``model:`` settings."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    rows = [json.loads(line) for line in Path(spec["pairs_path"]).read_text(encoding="utf-8").splitlines()]
    out_dir = str(Path(spec["work"]) / "trl-run")
    config = RewardConfig(
        output_dir=out_dir,
        max_length=spec["max_length"],
        train_sampling_strategy=spec["trl_sampling"],
        model_init_kwargs=_trl_model_kwargs(spec),
        **forced_training(spec),
    )
    meter, start = Meter(), time.perf_counter()
    trainer = RewardTrainer(
        model=spec["model_dir"], args=config, train_dataset=Dataset.from_list(rows), callbacks=[meter.callback()]
    )
    if spec["trl_sampling"] == "group_by_length":
        # Trainer's LengthGroupedSampler reads a "length" column; TRL's dataset has none, so add it and keep it.
        longest = [
            max(len(c), len(r))
            for c, r in zip(trainer.train_dataset["chosen_ids"], trainer.train_dataset["rejected_ids"])
        ]
        trainer.train_dataset = trainer.train_dataset.add_column("length", longest)
        trainer._signature_columns = ["chosen_ids", "rejected_ids", "margin", "length"]
    setup_s = time.perf_counter() - start
    trainer.data_collator = meter.wrap(trainer.data_collator)
    trainer.train()
    defaults = _trl_defaults()
    used = {k: getattr(config, checkpointing_key() if k == "activation_checkpointing" else k) for k in FORCED}
    forced = {k: {"trl_default": _plain(defaults[k]), "used": _plain(used[k])} for k in FORCED}
    return {
        **meter.summary(spec["warmup"]),
        "setup_s": round(setup_s, 2),
        "pairs_trained_on": len(trainer.train_dataset),
        "pairs_dropped": len(rows) - len(trainer.train_dataset),
        "pairs_truncated": 0,
        "args": _args_report(trainer.args),
        "forced": forced,
    }


def _trl_model_kwargs(spec: dict[str, Any]) -> dict[str, Any] | None:
    """``from_pretrained`` settings for TRL's model: the weights' dtype and attention, as rewardlab's ``model:``."""
    import torch

    kwargs = {"dtype": getattr(torch, spec["model_dtype"])} if spec.get("model_dtype") else {}
    if spec.get("attn_implementation"):
        kwargs["attn_implementation"] = spec["attn_implementation"]
    return kwargs or None


def _trl_defaults() -> dict[str, Any]:
    """``RewardConfig``'s field defaults, resolved as its ``__post_init__`` does (instantiating it with bf16 on
    fails on a CPU-only machine)."""
    import dataclasses

    from trl import RewardConfig

    defaults = {f.name: f.default for f in dataclasses.fields(RewardConfig) if f.default is not dataclasses.MISSING}
    defaults["bf16"] = not defaults["fp16"] if defaults["bf16"] is None else defaults["bf16"]
    defaults["activation_checkpointing"] = defaults["gradient_checkpointing"]  # the deprecated alias TRL overrides
    return defaults


def _plain(value: Any) -> Any:
    """A JSON-friendly setting: numbers, strings and None as they are, enums by value, the rest as text."""
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(getattr(value, "value", value))


def worker_main(args: argparse.Namespace) -> None:
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    if spec["threads"]:
        import torch

        torch.set_num_threads(spec["threads"])
    share = args.worker == "rewardlab"
    result = run_trl(spec) if args.worker == "trl" else run_rewardlab(spec, share_prompts=share)
    Path(spec["work"], f"{args.worker}.json").write_text(json.dumps(result), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- both sides


def run_side(side: str, spec_path: Path, work: Path) -> dict[str, Any]:
    """One side in a fresh interpreter, so its peak RSS is its own and it warms no cache for the other."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--spec", str(spec_path)]
    print(f"training with {side} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        sys.exit(f"the {side} side failed (exit {proc.returncode}); its output is above")
    result = json.loads((work / f"{side}.json").read_text(encoding="utf-8"))
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def run_sides(repeats: int, spec_path: Path, work: Path) -> dict[str, dict[str, Any]]:
    """Each side ``repeats`` times, alternating which goes first; per side the run with the median pairs/s
    (the upper one of two), with every run's pairs/s beside it."""
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for i in range(repeats):
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            runs[side].append(run_side(side, spec_path, work))
    sides = {}
    for side, results in runs.items():
        ordered = sorted(results, key=lambda r: r["pairs_per_s"])
        runs_summary = {"pairs_per_s_runs": [round(r["pairs_per_s"], 3) for r in results]}
        runs_summary["cpu_share_runs"] = [r["cpu_share"] for r in results]
        sides[side] = {**ordered[len(ordered) // 2], **runs_summary}
    return sides


RATIO_KEYS = ("pairs_per_s", "tokens_per_s", "padding_fraction", "peak_rss_mib", "cuda_peak_mib",
              "real_tokens_per_pair", "computed_tokens_per_pair")  # fmt: skip


def ratios(sides: dict[str, dict[str, Any]], side: str = "rewardlab") -> dict[str, float | None]:
    """``side`` / TRL for every measured quantity (> 1 is better for throughput, worse for padding and memory)."""
    out: dict[str, float | None] = {}
    for key in RATIO_KEYS:
        ours, theirs = sides[side][key], sides["trl"][key]
        out[key] = round(ours / theirs, 3) if ours is not None and theirs else None
    return out


def gemm_peak_flops(
    bf16: bool, threads: int | None, n: int | None = None, repeats: int = 5, device: str | None = None
) -> float:
    """The best FLOP/s of an ``n × n × n`` matrix product on ``device`` (default: the GPU if there is one), in the
    training precision: the peak the kernels of a step can at most reach there (an MFU's denominator measured in
    the same run). ``n`` defaults to 1024 on a CPU and 8192 on a GPU, whose peak small products do not reach."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    n = n or (1024 if device == "cpu" else 8192)
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first product warms up
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        if device != "cpu":
            torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * n**3 / best


def add_mfu(sides: dict[str, dict[str, Any]], model: dict[str, Any], peak: float) -> None:
    """Model FLOPs utilization: ``6 · weights · tokens computed per second / peak`` (forward + backward of the
    weight matrices; attention scores and the embedding lookup are not counted), per side."""
    weights = model["params_m"] * 1e6 - model["vocab"] * model["hidden"]
    for r in sides.values():
        r["mfu"] = float(f"{6 * weights * r['computed_tokens_per_s'] / peak:.3g}")  # 3 significant digits, never 0


def settings(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "steps",
        "warmup",
        "batch_size",
        "max_length",
        "pairs",
        "data",
        "lr",
        "seed",
        "trl_sampling",
        "repeats",
        "threads",
    )
    return {k: getattr(args, k) for k in keys} | {
        "gradient_checkpointing": args.gradient_checkpointing,
        "precision": "bf16" if args.bf16 else "fp32",
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-") as tmp:
        work = Path(tmp)
        inputs = build_inputs(args, work)
        spec = {
            **vars(args),
            "work": str(work),
            "model_dir": str(work / "model"),
            "pairs_path": str(work / "pairs.jsonl"),
            "out": None,
            "spec": None,
        }
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        peak = gemm_peak_flops(args.bf16, args.threads)
        sides = run_sides(args.repeats, spec_path, work)
    add_mfu(sides, inputs["model"], peak)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {
        "settings": settings(args),
        "device": device,
        "torch_threads": args.threads or torch.get_num_threads(),
        "cores": os.cpu_count(),
        **inputs,
        "gemm_peak_gflops": round(peak / 1e9, 1),
        "sides": sides,
        "ratios": ratios(sides),
        "ratios_plain": ratios(sides, "rewardlab_plain"),
        "trl_forced_equal": sides["trl"].pop("forced"),
    }


# ---------------------------------------------------------------------------------------------- report


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def markdown(res: dict[str, Any]) -> str:
    """The results as Markdown: throughput with the ratio row, what each side trained on, the settings."""
    return "\n".join([*_throughput_table(res), "", *_processed_table(res), "", *_notes(res)])


def _throughput_table(res: dict[str, Any]) -> list[str]:
    cuda = any(s["cuda_peak_mib"] is not None for s in res["sides"].values())
    head = ["side", "pairs/s", "pair tokens/s", "tokens computed/pair", "padding %", "MFU", "peak RSS MiB"]
    head += ["CUDA peak MiB"] if cuda else []
    lines = [_row(head), _row(["---"] * len(head))]
    for side, r in res["sides"].items():
        cells = [side, _fmt(r["pairs_per_s"]), _fmt(r["tokens_per_s"], 0), _fmt(r["computed_tokens_per_pair"], 1)]
        cells += [_fmt(100 * r["padding_fraction"], 1), _fmt(r.get("mfu"), 3), _fmt(r["peak_rss_mib"], 0)]
        lines.append(_row(cells + ([_fmt(r["cuda_peak_mib"], 0)] if cuda else [])))
    for label, q in (("rewardlab/TRL", res["ratios"]), ("rewardlab_plain/TRL", res["ratios_plain"])):
        cells = [label, _fmt(q["pairs_per_s"]), _fmt(q["tokens_per_s"]), _fmt(q["computed_tokens_per_pair"])]
        cells += [_fmt(q["padding_fraction"]), "", _fmt(q["peak_rss_mib"])]
        lines.append(_row(cells + ([_fmt(q["cuda_peak_mib"])] if cuda else [])))
    return lines


def _processed_table(res: dict[str, Any]) -> list[str]:
    head = ["side", "pairs trained on", "dropped", "truncated", "real tokens/pair", "timed steps", "timed s"]
    head += ["setup s", "each run: pairs/s (CPU share)"]
    lines = [_row(head), _row(["---"] * len(head))]
    for side, r in res["sides"].items():
        cells = [side, r["pairs_trained_on"], r["pairs_dropped"], r["pairs_truncated"]]
        cells += [_fmt(r["real_tokens_per_pair"], 1), r["timed_steps"], _fmt(r["timed_seconds"]), _fmt(r["setup_s"])]
        runs = zip(r["pairs_per_s_runs"], r["cpu_share_runs"])
        cells.append(", ".join(f"{_fmt(x)} ({_fmt(share)})" for x, share in runs))
        lines.append(_row(cells))
    return lines


def _notes(res: dict[str, Any]) -> list[str]:
    forced = ", ".join(f"{k}={v['used']} (TRL default {v['trl_default']})" for k, v in res["trl_forced_equal"].items())
    trl, ours = res["sides"]["trl"]["args"], res["sides"]["rewardlab"]["args"]
    own = ", ".join(f"{k}: {ours[k]} vs {trl.get(k)}" for k in ours if k not in FORCED and ours[k] != trl.get(k))
    lines = [
        f"Model: {res['model']}. Data: {res['data']}. Device: {res['device']}, {res['torch_threads']} torch threads; "
        f"GEMM peak {res['gemm_peak_gflops']} GFLOP/s in the training precision.",
        f"Settings: {res['settings']}.",
        f"Forced equal on TRL: {forced}.",
        f"Left at each library's default (rewardlab vs TRL): {own or 'none differ'}.",
    ]
    shares = {side: r["cpu_share"] for side, r in res["sides"].items()}
    if res["device"].startswith("cpu") and min(shares.values()) < 0.85:
        lines.append(
            f"WARNING: CPU share while timed {shares} (1 = its threads always ran): another process competed "
            "for the CPU, so these timings are unreliable; rerun on an idle machine (or with --repeats 3)."
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    res = run_benchmark(args)
    print(markdown(res))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2), encoding="utf-8")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
