"""The active-labeling curve: accuracy after labeling N pairs a reward model is unsure about vs N random pairs.

Run from the repository root (needs ``pip install -e .[minilm]``)::

    python bench/bench_active.py --work runs/active --lock /tmp/heavy.lock --out active.md   # seeds 0 1, N 200 400
    python bench/bench_active.py --seeds 0 --sizes 200                # one seed, one N
    python bench/bench_active.py --strategies random margin           # leave the spread out
    python bench/bench_active.py --quick                              # tiny model, generated pairs (smoke test)

Protocol: the pairs (hh-rlhf harmless-base test, 2,312 pairs, by default) are split in halves by a hash of their
content (``fold_of`` of bench_quality.py, k=2): half 0 is the pool to label from, half 1 the test set. Per seed:

1. S0: a seeded random ``--seed-set`` pairs (200) of the pool, the labels one starts with. A 5-head ensemble
   (``model.ensemble: {members: 5}``) trained on S0 is the model that selects; a single head trained on S0 is the
   "no more labels" point.
2. From the rest of the pool, each strategy picks pairs: ``random`` (a seeded shuffle), ``spread`` and ``margin``
   (``rewardlab select --criterion spread|margin`` with the S0 ensemble: the members' std of the margin, or the
   mean's −|margin|). One ``select --top max(N)`` per criterion; the N most uncertain are its first N (the ranking
   is stable), and random's N are the first N of its shuffle, so every strategy's picks grow by adding pairs.
3. For each N (``--sizes``) and strategy, a fresh single-head model trains on S0 + the N picked pairs and is scored
   on the test half (its accuracy, ties half, from the run's final eval on ``data.eval``).

The seed changes S0, the random order and the training seed. Every training and selection is its own subprocess
through the real CLI (``rewardlab train --config``, ``rewardlab select``); with ``--work DIR`` finished steps are
kept and a rerun skips them, so a stopped run continues. ``--lock FILE`` holds an exclusive lock on FILE while a
step trains or scores (one heavy job at a time on a shared machine). Training settings are bench_quality's MiniLM
ones: 1 epoch, batch 8, learning rate 5e-5, max length 512, 5 % warm-up, bf16 autocast on CPU.

Reported per N: each strategy's accuracy per seed, their mean, and the paired difference to random (same seed: same
S0 and training seed), its mean ± standard error over seeds; beside them what S0 alone gives.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import HH_HARMLESS, add_training_args, fold_of, quick_inputs, read_rows  # noqa: E402

STRATEGIES = ("random", "spread", "margin")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(HH_HARMLESS), help="Preference file (JSONL, optionally .gz).")
    p.add_argument("--model", default="minilm", help="Backbone: `minilm` (packaged), a directory or hub name.")
    p.add_argument("--sizes", nargs="+", type=int, default=[200, 400], help="How many pairs each strategy adds.")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--seed-set", type=int, default=200, help="Pairs of S0, the labeled start.")
    p.add_argument("--members", type=int, default=5, help="Heads of the ensemble that selects.")
    add_training_args(p)
    p.add_argument("--out", default=None, help="Write the report (markdown) here.")
    p.add_argument("--json", default=None, help="Write all results as JSON here.")
    p.add_argument("--work", default=None, help="Working directory; finished steps in it are reused.")
    p.add_argument("--lock", default=None, help="Hold an exclusive lock on this file while each step runs.")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- steps


def write_rows(rows: list[dict[str, Any]], path: Path) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def cli(args: list[str], lock: str | None) -> float:
    """``rewardlab ARGS`` in its own process, holding ``lock`` while it runs: its seconds (the wait not counted)."""
    with open(lock or os.devnull, "a") as handle:
        if lock:
            fcntl.flock(handle, fcntl.LOCK_EX)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "rewardlab.cli", *args], capture_output=True, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})  # fmt: skip
        seconds = round(time.perf_counter() - start, 1)
    if proc.returncode != 0:
        raise SystemExit(f"rewardlab {' '.join(args[:1])} failed:\n{proc.stderr[-4000:]}")
    return seconds


def cached(path: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    if path.is_file():
        done = json.loads(path.read_text(encoding="utf-8"))
        if done.get("spec") == spec:
            return done
    return None


def train_spec(rows: list[dict[str, Any]], test_path: str, seed: int, args: argparse.Namespace, model: str,
               members: int) -> dict[str, Any]:  # fmt: skip
    return {"rows": digest(rows), "n": len(rows), "test": digest(Path(test_path).read_text(encoding="utf-8")),
            "seed": seed, "model": model, "members": members, "epochs": args.epochs, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "max_length": args.max_length, "warmup": args.warmup,
            "bf16": args.bf16}  # fmt: skip


def train(name: str, rows: list[dict[str, Any]], test_path: str, seed: int, args: argparse.Namespace, model: str,
          work: Path, members: int = 1, keep: bool = False) -> dict[str, Any]:  # fmt: skip
    """Train on ``rows`` through ``rewardlab train`` and score the test half (the run's final eval): the accuracy.
    With ``keep`` the model stays in ``work/name/model`` (the ensemble that selects); else the run directory is
    removed once scored."""
    spec = train_spec(rows, test_path, seed, args, model, members)
    result_path, run_dir = work / f"{name}.json", work / name
    done = cached(result_path, spec)
    if done is not None and (not keep or (run_dir / "model").is_dir()):
        return done
    shutil.rmtree(run_dir, ignore_errors=True)
    model_cfg: dict[str, Any] = {"name_or_path": model}
    if members > 1:
        model_cfg["ensemble"] = {"members": members}
    cfg = {
        "output_dir": str(run_dir),
        "seed": seed,
        "data": {
            "train": {"path": write_rows(rows, work / f"{name}-train.jsonl")},
            "eval": {"path": test_path},
            "max_length": args.max_length,
        },  # fmt: skip
        "model": model_cfg,
        "training": {
            "num_train_epochs": args.epochs,
            "per_device_train_batch_size": args.batch_size,
            "per_device_eval_batch_size": 32,
            "learning_rate": args.learning_rate,
            "warmup_steps": args.warmup,
            "bf16": args.bf16,
            "use_cpu": True,
            "save_strategy": "no",
            "eval_strategy": "epoch",
            "report_to": "none",
            "logging_steps": 50,
            "disable_tqdm": True,
        },  # fmt: skip
    }
    config_path = work / f"{name}-config.yaml"
    config_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")  # JSON is YAML
    seconds = cli(["train", "--config", str(config_path)], args.lock)
    metrics = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["metrics"]
    result = {"spec": spec, "accuracy": metrics["eval_accuracy"], "n_test": int(metrics["eval_n"]),
              "seconds": seconds}  # fmt: skip
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)  # the accuracy is kept; a model per run would fill the disk
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return result


def select_spec(spec_of_model: dict[str, Any], rest: list[dict[str, Any]], criterion: str, top: int) -> dict:
    return {"model": spec_of_model, "rest": digest(rest), "criterion": criterion, "top": top}


def select(name: str, ensemble_dir: Path, rest: list[dict[str, Any]], criterion: str, top: int,
           spec_of_model: dict[str, Any], args: argparse.Namespace, work: Path) -> list[int]:  # fmt: skip
    """``rewardlab select --criterion CRITERION --top TOP`` over the rest of the pool: the chosen ``pair_id``s,
    most uncertain first."""
    spec = select_spec(spec_of_model, rest, criterion, top)
    result_path = work / f"{name}.json"
    done = cached(result_path, spec)
    if done is not None:
        return done["pair_ids"]
    pool_path, out_path = work / f"{name}-pool.jsonl", work / f"{name}-picked.jsonl"
    write_rows(rest, pool_path)
    command = ["select", "--model", str(ensemble_dir / "model"), "--data", str(pool_path), "--top", str(top),
               "--out", str(out_path), "--criterion", criterion, "--device", "cpu", "--batch-size", "32"]  # fmt: skip
    seconds = cli(command, args.lock)
    picked = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [int(row["pair_id"]) for row in picked]
    result = {"spec": spec, "pair_ids": ids, "seconds": seconds}
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return ids


# ---------------------------------------------------------------------------------------------- driver


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_active_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        model, rows = quick_inputs(work, 160)
        args.max_length, args.learning_rate, args.seed_set = 96, 2e-3, 16
        args.sizes, args.seeds = [16], args.seeds[:1]
    else:
        model, rows = args.model, read_rows(args.data)
    pool = [r for r in rows if fold_of(r, 2) == 0]
    test_path = write_rows([r for r in rows if fold_of(r, 2) == 1], work / "test.jsonl")
    n_test = len(read_rows(test_path))
    if args.seed_set + max(args.sizes) > len(pool):
        raise SystemExit(f"the pool has {len(pool)} pairs: too few for S0 {args.seed_set} + {max(args.sizes)}")
    runs: list[dict[str, Any]] = []

    def record(seed: int, n: int, strategy: str, result: dict[str, Any]) -> None:
        runs.append({"seed": seed, "n": n, "strategy": strategy, "accuracy": result["accuracy"],
                     "n_test": result["n_test"], "seconds": result["seconds"]})  # fmt: skip
        print(f"seed {seed}, N {n}, {strategy}: accuracy {result['accuracy']:.4f} on {result['n_test']} pairs "
              f"({result['seconds']} s)", flush=True)  # fmt: skip

    for seed in args.seeds:  # seeds outermost: a stopped run has whole seeds
        order = list(range(len(pool)))
        random.Random(seed).shuffle(order)
        s0 = [pool[i] for i in order[: args.seed_set]]
        rest_ids = order[args.seed_set :]
        rest = [{**pool[i], "pair_id": i} for i in sorted(rest_ids)]  # the pool's order, ids to map picks back
        picks = {"random": rest_ids}
        criteria = [s for s in args.strategies if s != "random"]
        if criteria:
            name = f"s0-ensemble-{seed}"
            ens_spec = train_spec(s0, test_path, seed, args, model, args.members)
            top = max(args.sizes)
            todo = [c for c in criteria if cached(work / f"select-{c}-{seed}.json",
                                                  select_spec(ens_spec, rest, c, top)) is None]  # fmt: skip
            ens = train(name, s0, test_path, seed, args, model, work, members=args.members, keep=bool(todo))
            record(seed, 0, f"S0 only, {args.members}-head ensemble (the selector)", ens)
            for criterion in criteria:
                picks[criterion] = select(f"select-{criterion}-{seed}", work / name, rest, criterion, top,
                                          ens_spec, args, work)  # fmt: skip
            shutil.rmtree(work / name, ignore_errors=True)  # the selections are kept
        record(seed, 0, "S0 only", train(f"s0-{seed}", s0, test_path, seed, args, model, work))
        for n in args.sizes:
            for strategy in args.strategies:
                picked = [pool[i] for i in picks[strategy][:n]]
                result = train(f"{strategy}-{n}-{seed}", s0 + picked, test_path, seed, args, model, work)
                record(seed, n, strategy, result)
    return {"settings": vars(args) | {"model": model}, "pool": len(pool), "test": n_test, "runs": runs,
            "summary": summarize(runs, args)}  # fmt: skip


def summarize(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Per N and strategy: accuracy per seed, the mean, and the paired difference to random over seeds."""
    acc = {(r["n"], r["strategy"], r["seed"]): r["accuracy"] for r in runs}
    out: dict[str, Any] = {}
    for n in sorted({r["n"] for r in runs}):
        rows = {}
        for strategy in dict.fromkeys(r["strategy"] for r in runs if r["n"] == n):
            per_seed = {s: acc[(n, strategy, s)] for s in args.seeds if (n, strategy, s) in acc}
            row: dict[str, Any] = {"per_seed": per_seed, "mean": sum(per_seed.values()) / len(per_seed)}
            if n > 0 and strategy != "random":
                diffs = [per_seed[s] - acc[(n, "random", s)] for s in per_seed if (n, "random", s) in acc]
                row["vs_random"] = mean_se(diffs)
            rows[strategy] = row
        out[str(n)] = rows
    return out


def mean_se(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    mean = sum(values) / len(values)
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) if len(values) > 1 else None
    return {"mean": mean, "stderr": se, "n": len(values), "positive": sum(v > 0 for v in values)}


def verdict(d: dict[str, Any], single_run_se: float) -> str:
    """Whether a paired difference stands out of the noise: 2 standard errors over seeds, or with one seed twice
    the sampling standard error of a difference of two runs' accuracies on the test half."""
    if d["stderr"] is not None:
        noise, how = 2 * d["stderr"], "2 s.e. over seeds"
    else:
        noise, how = 2 * math.sqrt(2) * single_run_se, "one seed: 2√2 × one run's sampling s.e."
    return f"{'within' if abs(d['mean']) <= noise else 'beyond'} noise ({how} = {100 * noise:.1f} points)"


def markdown(res: dict[str, Any]) -> str:
    seeds = res["settings"]["seeds"]
    mean_acc = sum(r["accuracy"] for r in res["runs"]) / len(res["runs"])
    single_run_se = math.sqrt(mean_acc * (1 - mean_acc) / res["test"])
    lines = [f"Pool {res['pool']} pairs, test {res['test']} pairs, S0 {res['settings']['seed_set']} pairs; seeds "
             f"{', '.join(map(str, seeds))}. One run's sampling s.e. on the test half ≈ {100 * single_run_se:.1f} "
             "points.", ""]  # fmt: skip
    for n, rows in res["summary"].items():
        lines += [f"**N = {n}**" if n != "0" else "**S0 only (no pairs added)**", "",
                  "| | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | vs random, points (paired, ± s.e.) |",
                  "|---|" + "---:|" * (len(seeds) + 2)]  # fmt: skip
        notes = []
        for strategy, row in rows.items():
            cells = [f"{row['per_seed'][s]:.4f}" if s in row["per_seed"] else "–" for s in seeds]
            d = row.get("vs_random")
            diff = "–"
            if d is not None:
                se = "" if d["stderr"] is None else f" ± {100 * d['stderr']:.2f}"
                diff = f"{100 * d['mean']:+.2f}{se} ({d['positive']}/{d['n']} > 0)"
                notes.append(f"{strategy} vs random: {verdict(d, single_run_se)}.")
            label = f"S0 + {n} {strategy}" if n != "0" else strategy
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {row['mean']:.4f} | {diff} |")
        lines += [""] + notes + ([""] if notes else [])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run_benchmark(args)
    text = markdown(res)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
