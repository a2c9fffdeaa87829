"""Learning quality: rewardlab vs TRL's ``RewardTrainer``, same pairs, folds, backbone and hyperparameters.

Run from the repository root (needs ``pip install -e .[bench,minilm]``)::

    python bench/bench_quality.py --work runs/q --lock /tmp/heavy.lock   # hh-rlhf harmless-base, 5 folds, seeds 0-2
    python bench/bench_quality.py --protocol halves                # the first and second halves, seeds 0-2
    python bench/bench_quality.py --seeds 0 --folds 0 1            # one seed, two of the five folds
    python bench/bench_quality.py --sides rewardlab --variants default keep_dropout shuffle whole_text
    python bench/bench_quality.py --data my_prefs.jsonl            # any preference file, halves by line order
    python bench/bench_quality.py --quick                          # tiny model, generated pairs (smoke test)
    python bench/bench_quality.py --tiny-decoder 800               # the decoder check: tiny Qwen2, 800 pairs

Protocol (``--protocol``): ``kfold`` (the default) gives each row a fold by a hash of its content (``--k``, 5 by
default), so the folds depend on nothing but the data: no one can pick a split that flatters a side. Each fold is
scored by the model trained on the other k-1 folds. ``halves`` splits by line order into the first and second half
(one trains, the other is scored), the protocol of the first quality table. Every run (side x variant x fold x
seed) trains in its own subprocess; with ``--work DIR`` a finished run's scores are kept and a rerun skips it, so a
long protocol can be stopped and continued. ``--lock FILE`` holds an exclusive lock on FILE while a run trains (one
heavy job at a time on a shared machine).

Reported per row: held-out preference accuracy (ties count half) pooled over every scored pair, with its standard
error over pairs; the paired difference to TRL (the same fold and seed trained both ways), its mean and standard
error over the pairs of runs; how often the model prefers the shorter response; HHH zero-shot accuracy; beside them
the "shorter wins" / "longer wins" baselines on the same pairs.

Sides and variants:
- ``rewardlab``: ``rewardlab train`` (the real path), then the export scored by ``Scorer``. Variants switch one
  default each: ``keep_dropout`` (``model.disable_dropout=false``, the default before this bench), ``shuffle``
  (random batches instead of length-grouped ones), ``whole_text`` (the transcript as one response with an empty
  prompt, as TRL encodes it), ``drop_long`` (``data.overlong=drop``, as TRL drops over-long pairs). Beyond TRL:
  ``length_debias_1`` / ``length_debias_0.1`` (``loss.length_decorrelation`` at 1.0 / 0.1); ``no_warmup``;
  ``ensemble_5`` (5 bootstrapped heads); ``lora`` (one LoRA adapter, rank 16 on every linear layer, learning rate
  2e-4) and ``lora_ensemble_5`` (5 bootstrapped LoRA members on one frozen base, the same settings). An ensemble's
  run also reports selective accuracy and the AUROC of its spread, beside the same with the mean's margin.
- ``trl``: ``trl.RewardTrainer`` with its defaults except the shared settings (learning rate, batch size,
  epochs, max length, warm-up, precision, seed); its model is scored on the whole transcripts as TRL encodes them
  (``tokenizer(text + eos_token)``, cut from the left at ``max_length`` so the end of the response is kept, as
  rewardlab's). An encoder has no EOS token; TRL needs one, so it gets its ``[SEP]`` (what a user has to do).
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HH_HARMLESS = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
)
UNCERTAINTY_KEYS = ("selective_accuracy_50", "selective_accuracy_80", "uncertainty_auroc",
                    "margin_selective_accuracy_50", "margin_selective_accuracy_80", "margin_auroc")  # fmt: skip
VARIANTS = {
    "default": {},
    "keep_dropout": {"model": {"disable_dropout": False}},
    "shuffle": {"training": {"train_sampling_strategy": "random"}},
    "whole_text": {},  # the data file is rewritten, see write_fold: [CLS] [SEP] prompt+response [SEP], segment ids 0/1
    "one_segment": {"data": {"text_pair": False}},  # [CLS] prompt+response [SEP], segment ids 0, as TRL builds it
    "drop_long": {"data": {"overlong": "drop"}},
    "length_debias_1": {"loss": {"length_decorrelation": 1.0}},
    "length_debias_0.1": {"loss": {"length_decorrelation": 0.1}},
    "no_warmup": {"training": {"warmup_steps": 0.0}},
    "ensemble_5": {"model": {"ensemble": {"members": 5}}},  # 5 bootstrapped heads; the reward is their mean
    # LoRA (rank 16 on every linear layer, the head trained fully) at a LoRA learning rate, alone and as 5
    # bootstrapped members on one frozen base: the single adapter is the ensemble's baseline.
    "lora": {"model": {"lora": {}}, "training": {"learning_rate": 2e-4}},
    "lora_ensemble_5": {
        "model": {"lora": {}, "ensemble": {"members": 5, "kind": "lora"}},
        "training": {"learning_rate": 2e-4},
    },
}
# Zero-shot: the HHH-alignment pairs (221, human-written; there the longer answer is usually the better one), put in
# the hh-rlhf transcript form the models were trained on.
HHH_PAIRS = HH_HARMLESS.parents[2] / "hhh-alignment" / "hhh_alignment_pairs.jsonl"


def hhh_rows() -> list[dict[str, Any]]:
    if not HHH_PAIRS.is_file():
        return []
    return [{"prompt": f"\n\nHuman: {r['prompt']}\n\nAssistant:", "chosen": " " + r["chosen"],
             "rejected": " " + r["rejected"]} for r in read_rows(str(HHH_PAIRS))]  # fmt: skip


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The training settings every run of a quality bench shares (this one's and bench_active.py's), and --quick."""
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--warmup", type=float, default=0.05, help="Warm-up as a fraction of the steps.")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="fp32 instead of bf16 autocast.")
    p.add_argument("--quick", action="store_true", help="A tiny generated model and data set: a smoke test.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(HH_HARMLESS), help="Preference file (JSONL, optionally .gz).")
    p.add_argument("--model", default="minilm", help="Backbone: `minilm` (packaged), a directory or hub name.")
    p.add_argument("--sides", nargs="+", default=["rewardlab", "trl"], choices=["rewardlab", "trl"])
    p.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS), help="rewardlab only.")
    p.add_argument("--protocol", default="kfold", choices=["kfold", "halves"])
    p.add_argument("--k", type=int, default=5, help="Folds of the kfold protocol.")
    p.add_argument("--folds", nargs="+", default=None,
                   help="Folds to score (kfold: 0..k-1; halves: `first` / `second`, the half trained on). All "
                   "by default.")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    add_training_args(p)
    p.add_argument("--tiny-decoder", type=int, default=None, metavar="N",
                   help="The decoder check: a tiny Qwen2 built from a config, N generated pairs, the given seeds "
                   "and folds (max length 96, learning rate 2e-3: it starts from random weights).")  # fmt: skip
    p.add_argument("--out", default=None, help="Write all results as JSON here.")
    p.add_argument("--work", default=None, help="Working directory; finished runs in it are reused.")
    p.add_argument("--lock", default=None, help="Hold an exclusive lock on this file while each run trains.")
    p.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                   help="Train nothing: summarize the runs of earlier --out files together (paired to TRL where "
                   "it ran the same fold and seed; a run in two files: the later file's), e.g. seeds measured in "
                   "separate sessions. Baselines come from --data.")  # fmt: skip
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- data


def read_rows(path: str) -> list[dict[str, Any]]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def full_texts(row: dict[str, Any]) -> tuple[str, str]:
    """The whole chosen and rejected texts (prompt + response when the row has an explicit prompt)."""
    prompt = row.get("prompt") or ""
    return prompt + row["chosen"], prompt + row["rejected"]


def fold_of(row: dict[str, Any], k: int) -> int:
    """The row's fold: a hash of its content, so the split depends on the data alone (and duplicates share one)."""
    digest = hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    return int(digest, 16) % k


def splits(rows: list[dict[str, Any]], protocol: str, k: int) -> dict[str, tuple[list, list]]:
    """Fold name -> (rows trained on, rows scored)."""
    if protocol == "halves":
        first, second = rows[: len(rows) // 2], rows[len(rows) // 2 :]
        return {"first": (first, second), "second": (second, first)}
    folds = [fold_of(r, k) for r in rows]
    return {
        str(i): ([r for r, f in zip(rows, folds) if f != i], [r for r, f in zip(rows, folds) if f == i])
        for i in range(k)
    }


def write_fold(rows: list[dict[str, Any]], path: Path, whole_text: bool) -> Path:
    if whole_text:
        rows = [dict(zip(("chosen", "rejected"), full_texts(r)), prompt="") for r in rows]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def quick_inputs(work: Path, n: int = 96) -> tuple[str, list[dict[str, Any]]]:
    from rewardlab.data.synthetic import corpus, make_pairs
    from rewardlab.models.tiny import build_tiny_model

    pairs = make_pairs(n, seed=3)
    model = build_tiny_model(work / "tiny", corpus(pairs), family="qwen2", vocab_size=400, hidden=32, layers=2)
    return str(model), [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


# ---------------------------------------------------------------------------------------------- workers


def train_settings(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "num_train_epochs": spec["epochs"],
        "per_device_train_batch_size": spec["batch_size"],
        "learning_rate": spec["learning_rate"],
        "warmup_steps": spec["warmup"],
        "bf16": spec["bf16"],
        "use_cpu": True,
        "seed": spec["seed"],
        "save_strategy": "no",
        "report_to": "none",
        "logging_steps": 50,
        "disable_tqdm": True,
    }


def run_rewardlab(spec: dict[str, Any]) -> dict[str, Any]:
    from rewardlab.config import TrainConfig, build_config
    from rewardlab.data.prepare import as_pairs
    from rewardlab.data.readers import read_records
    from rewardlab.data.records import PreferencePair
    from rewardlab.models.scorer import Scorer
    from rewardlab.recipes.train import run_train

    training = {k: v for k, v in train_settings(spec).items() if k != "seed"}
    cfg: dict[str, Any] = {
        "output_dir": spec["run_dir"],
        "seed": spec["seed"],
        "data": {"train": spec["train_path"], "max_length": spec["max_length"]},
        "model": {"name_or_path": spec["model"]},
        "training": {**training, "eval_strategy": "no"},
    }
    for section, values in VARIANTS[spec["variant"]].items():
        cfg[section] = {**cfg.get(section, {}), **values}
    result = run_train(build_config(TrainConfig, cfg))
    from rewardlab.config.schema import DataSource

    pairs = as_pairs(read_records(DataSource(path=spec["eval_path"]))[0])
    scorer = Scorer.from_pretrained(str(result.model_dir), device="cpu", batch_size=32)
    chosen, rejected = scorer.score_pairs(pairs)
    result = {"chosen": chosen, "rejected": rejected}
    if scorer.members > 1:  # an ensemble: the members' spread of each pair's margin, for selective accuracy
        rows = scorer.score_items(scorer.encode([p.prompt for p in pairs] * 2, [p.chosen for p in pairs]
                                                + [p.rejected for p in pairs]), members=True)  # fmt: skip
        n = len(pairs)
        result["spread"] = [statistics.pstdev([a - b for a, b in zip(rows[i][1:], rows[n + i][1:])])
                            for i in range(n)]  # fmt: skip
    if spec["hhh"]:
        hhh = [PreferencePair(prompt=r["prompt"], chosen=r["chosen"], rejected=r["rejected"]) for r in hhh_rows()]
        result["hhh_chosen"], result["hhh_rejected"] = scorer.score_pairs(hhh)
    return result


def run_trl(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rewardlab.models.packaged import resolve_packaged

    model_dir = resolve_packaged(spec["model"])
    rows = [dict(zip(("chosen", "rejected"), full_texts(r))) for r in read_rows(spec["train_path"])]
    config = RewardConfig(output_dir=spec["run_dir"], max_length=spec["max_length"], **train_settings(spec))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.eos_token is None:  # TRL appends the EOS text to every non-chat example; encoders have none
        tok.eos_token = tok.sep_token
    trainer = RewardTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok)
    trainer.train()
    model = trainer.model.float().eval()
    tok.truncation_side = "left"  # keep the end of the response, where the answer is
    eval_rows = read_rows(spec["eval_path"])

    def score(texts: list[str]) -> list[float]:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 32):
                batch = tok(texts[i : i + 32], truncation=True, max_length=spec["max_length"], padding=True,
                            return_tensors="pt")  # fmt: skip
                out += model(**batch).logits[:, 0].tolist()
        return out

    # Scored as TRL trains: the EOS text appended, the tokenizer's own special tokens added.
    def score_rows(rows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
        chosen, rejected = ([t + tok.eos_token for t in texts] for texts in zip(*(full_texts(r) for r in rows)))
        return score(list(chosen)), score(list(rejected))

    result: dict[str, Any] = dict(zip(("chosen", "rejected"), score_rows(eval_rows)))
    if spec["hhh"]:
        result["hhh_chosen"], result["hhh_rejected"] = score_rows(hhh_rows())
    return {**result, "trl_pairs_trained_on": len(trainer.train_dataset)}


def worker_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    start = time.perf_counter()
    result = run_trl(spec) if spec["side"] == "trl" else run_rewardlab(spec)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["spec"] = spec
    shutil.rmtree(spec["run_dir"], ignore_errors=True)  # the scores are kept; a model per run would fill the disk
    Path(spec["result_path"]).write_text(json.dumps(result), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- metrics


def pair_metrics(chosen: list[float], rejected: list[float], rows: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy (ties half) and how often the preferred response is the shorter one (pairs of unequal length)."""
    lengths = [tuple(len(t) for t in full_texts(r)) for r in rows]
    wins = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)]
    shorter = [(c > r) == (lc < lr) for c, r, (lc, lr) in zip(chosen, rejected, lengths) if lc != lr and c != r]
    return {"n": len(wins), "correct": sum(wins), "prefers_shorter": sum(shorter), "unequal": len(shorter)}


def baselines(rows: list[dict[str, Any]]) -> dict[str, float]:
    lengths = [tuple(len(t) for t in full_texts(r)) for r in rows]
    n = len(lengths)
    return {
        "shorter_wins": sum(1.0 if c < r else 0.5 if c == r else 0.0 for c, r in lengths) / n,
        "longer_wins": sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in lengths) / n,
    }


def standardized(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) or 1.0
    return [(v - mean) / sd for v in values]


def ensemble_runs(scores: dict[tuple[str, str], list[dict[str, Any]]], held_out: dict[str, list[dict[str, Any]]]
                  ) -> list[dict[str, Any]]:  # fmt: skip
    """An ensemble of the seeds of each side/variant and fold: every run's scores standardized (its own mean and
    sd over the held-out responses), then averaged: one row per fold, labelled "... ensemble of K seeds"."""
    out = []
    for (label, fold), results in scores.items():
        if len(results) < 2:
            continue
        n = len(results[0]["chosen"])
        z = [standardized(r["chosen"] + r["rejected"]) for r in results]
        mean = [sum(col) / len(col) for col in zip(*z)]
        metrics = pair_metrics(mean[:n], mean[n:], held_out[fold])
        if all("hhh_chosen" in r for r in results):
            m = len(results[0]["hhh_chosen"])
            hz = [standardized(r["hhh_chosen"] + r["hhh_rejected"]) for r in results]
            hmean = [sum(col) / len(col) for col in zip(*hz)]
            hhh = pair_metrics(hmean[:m], hmean[m:], hhh_rows())
            metrics.update(hhh_n=hhh["n"], hhh_correct=hhh["correct"])
        out.append({"label": f"{label}, ensemble of {len(results)} seeds", "fold": fold, "seed": None,
                    "metrics": metrics, "seconds": sum(r["seconds"] for r in results)})  # fmt: skip
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per side/variant: accuracy over every scored pair of every fold and seed, its standard error, per-run
    accuracies, the share of preferences that go to the shorter response, and the paired differences to TRL and
    to rewardlab's default (``vs_trl``, ``vs_default`` and their ``shorter_`` twins)."""
    table: dict[str, dict[str, Any]] = {}
    for run in runs:
        empty = {"n": 0, "correct": 0.0, "prefers_shorter": 0, "unequal": 0, "hhh_n": 0, "hhh_correct": 0.0,
                 "runs": {}}  # fmt: skip
        row = table.setdefault(run["label"], empty)
        for key in ("n", "correct", "prefers_shorter", "unequal", "hhh_n", "hhh_correct"):
            row[key] += run["metrics"].get(key, 0)
        m = run["metrics"]
        row["runs"][f"{run['fold']}/{run['seed']}"] = {
            "accuracy": round(m["correct"] / m["n"], 4),
            "shorter": round(m["prefers_shorter"] / m["unequal"], 4) if m["unequal"] else None,
            **{k: m[k] for k in UNCERTAINTY_KEYS if k in m},
        }
    for row in table.values():
        p = row["correct"] / row["n"]
        row.update(
            accuracy=p,
            stderr=math.sqrt(p * (1 - p) / row["n"]),
            shorter=row["prefers_shorter"] / row["unequal"],
            hhh=row["hhh_correct"] / row["hhh_n"] if row["hhh_n"] else None,
        )
    for key, reference_label in (("trl", "TRL RewardTrainer"), ("default", "rewardlab default")):
        reference = table.get(reference_label)
        for label, row in table.items():
            if reference is not None and label != reference_label:
                row[f"vs_{key}"] = paired(row["runs"], reference["runs"], "accuracy")
                row[f"shorter_vs_{key}"] = paired(row["runs"], reference["runs"], "shorter")
    return table


def paired(runs: dict[str, dict], reference: dict[str, dict], key: str) -> dict[str, Any] | None:
    """Mean of the per-run differences (same fold and seed) and its standard error over those pairs of runs."""
    diffs = [runs[k][key] - reference[k][key] for k in runs if k in reference and runs[k][key] is not None
             and reference[k][key] is not None]  # fmt: skip
    if not diffs:
        return None
    mean = sum(diffs) / len(diffs)
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)) if len(diffs) > 1 else None
    return {"mean": mean, "stderr": se, "n": len(diffs), "positive": sum(d > 0 for d in diffs)}


# ---------------------------------------------------------------------------------------------- driver


def run_worker(spec: dict[str, Any], work: Path, lock: str | None) -> dict[str, Any]:
    """One run in its own process; a finished run with the same spec in ``work`` is read back, not retrained."""
    result_path = Path(spec["result_path"])
    if result_path.is_file():
        done = json.loads(result_path.read_text(encoding="utf-8"))
        if done.get("spec") == spec:
            return done
    spec_path = work / f"{result_path.stem}-spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    with open(lock or os.devnull, "a") as handle:
        if lock:
            fcntl.flock(handle, fcntl.LOCK_EX)
        proc = subprocess.run([sys.executable, __file__, "--worker", str(spec_path)], capture_output=True,
                              text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{result_path.stem} failed:\n{proc.stderr[-4000:]}")
    return json.loads(result_path.read_text(encoding="utf-8"))


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_quality_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        model, rows = quick_inputs(work)
        args.protocol, args.folds, args.max_length, args.learning_rate = "halves", ["first"], 96, 2e-3
        args.seeds = args.seeds[:1]
    elif args.tiny_decoder:
        model, rows = quick_inputs(work, args.tiny_decoder)
        args.max_length, args.learning_rate = 96, 2e-3
    else:
        model, rows = args.model, read_rows(args.data)
    folds = splits(rows, args.protocol, args.k)
    args.folds = args.folds or list(folds)
    unknown = sorted(set(args.folds) - set(folds))
    if unknown:
        raise SystemExit(f"--folds {' '.join(unknown)}: the {args.protocol} protocol has folds {', '.join(folds)}")
    zero_shot = not (args.quick or args.tiny_decoder) and bool(hhh_rows())  # HHH is hh-style text
    plan = [("trl", "default")] * ("trl" in args.sides) + [("rewardlab", v) for v in args.variants] * (
        "rewardlab" in args.sides
    )
    tag = args.protocol if args.protocol == "halves" else f"k{args.k}"
    runs, scores = [], {}
    for seed in args.seeds:  # seeds outermost: a stopped protocol has whole seeds of every row
        for fold in args.folds:
            train_rows, eval_rows = folds[fold]
            for side, variant in plan:
                name = f"{side}-{variant}-{tag}-{fold}-{seed}"
                spec = {
                    "side": side, "variant": variant, "seed": seed, "model": model, "epochs": args.epochs,
                    "batch_size": args.batch_size, "learning_rate": args.learning_rate, "warmup": args.warmup,
                    "max_length": args.max_length, "bf16": args.bf16, "run_dir": str(work / name),
                    "train_path": str(write_fold(train_rows, work / f"{name}-train.jsonl", variant == "whole_text")),
                    "eval_path": str(write_fold(eval_rows, work / f"{name}-eval.jsonl", False)),
                    "result_path": str(work / f"{name}.json"), "hhh": zero_shot,
                }  # fmt: skip
                result = run_worker(spec, work, args.lock)
                metrics = pair_metrics(result["chosen"], result["rejected"], eval_rows)
                if "spread" in result:
                    from rewardlab.evaluation.metrics import uncertainty_metrics

                    margins = [c - r for c, r in zip(result["chosen"], result["rejected"])]
                    metrics.update(uncertainty_metrics(margins, result["spread"]))
                if "hhh_chosen" in result:
                    hhh = pair_metrics(result["hhh_chosen"], result["hhh_rejected"], hhh_rows())
                    metrics.update(hhh_n=hhh["n"], hhh_correct=hhh["correct"])
                label = "TRL RewardTrainer" if side == "trl" else f"rewardlab {variant}"
                runs.append({"label": label, "fold": fold, "seed": seed, "metrics": metrics,
                             "seconds": result["seconds"]})  # fmt: skip
                scores.setdefault((label, fold), []).append(result)
                acc = metrics["correct"] / metrics["n"]
                hhh_note = f", HHH {metrics['hhh_correct'] / metrics['hhh_n']:.4f}" if "hhh_n" in metrics else ""
                print(f"{name}: accuracy {acc:.4f} on {metrics['n']} pairs{hhh_note} ({result['seconds']} s)",
                      flush=True)  # fmt: skip
    ensembles = ensemble_runs(scores, {f: folds[f][1] for f in args.folds})
    evaluated = [folds[f][1] for f in args.folds]
    base = {k: sum(baselines(h)[k] * len(h) for h in evaluated) / sum(map(len, evaluated)) for k in baselines(rows)}
    return {"settings": {k: v for k, v in vars(args).items() if k not in ("worker",)}, "runs": runs + ensembles,
            "summary": summarize(runs), "ensembles": summarize(ensembles) if ensembles else {},
            "baselines": base}  # fmt: skip


def combine(paths: list[str], data: str) -> dict[str, Any]:
    """The runs of several result files summarized as one benchmark (seed ensembles are not recomputed: they need
    the scores, which the files do not keep)."""
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    settings = []
    for path in paths:
        try:
            res = json.loads(Path(path).read_text(encoding="utf-8"))
            settings.append((res["settings"]["protocol"], res["settings"]["k"]))
            for run in res["runs"]:
                if run["seed"] is not None:  # a seed ensemble's row
                    runs[(run["label"], str(run["fold"]), run["seed"])] = run
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"--combine {path}: not a result file of this bench ({type(e).__name__}: {e})") from None
    if len(set(settings)) > 1:
        raise SystemExit(f"--combine: the files use different protocols ({sorted(set(settings))}); combine one")
    if not runs:
        raise SystemExit(f"--combine {' '.join(paths)}: no runs of a single seed in these files")
    if not Path(data).is_file():
        raise SystemExit(f"--combine: the data file {data} (for the baselines) does not exist; pass --data FILE")
    protocol, k = settings[0]
    folds = splits(read_rows(data), protocol, k)
    evaluated = [folds[f][1] for f in sorted({fold for _, fold, _ in runs})]
    base = {key: sum(baselines(h)[key] * len(h) for h in evaluated) / sum(map(len, evaluated))
            for key in ("shorter_wins", "longer_wins")}  # fmt: skip
    return {"settings": {"combined": paths, "protocol": protocol, "k": k}, "runs": list(runs.values()),
            "summary": summarize(list(runs.values())), "ensembles": {}, "baselines": base}  # fmt: skip


def signed(d: dict[str, Any] | None, scale: float = 100.0) -> str:
    if d is None:
        return "–"
    se = "" if d["stderr"] is None else f" ± {scale * d['stderr']:.2f}"
    return f"{scale * d['mean']:+.2f}{se} ({d['positive']}/{d['n']} > 0)"


def markdown(res: dict[str, Any]) -> str:
    lines = ["| | accuracy (± s.e.) | vs TRL, points (paired, ± s.e.) | per run | prefers the shorter response "
             "| shorter share vs TRL, points | HHH zero-shot |", "|---|---:|---:|---|---:|---:|---:|"]  # fmt: skip
    for label, row in {**res["summary"], **res.get("ensembles", {})}.items():
        per_run = ", ".join(f"{r['accuracy']:.3f}" for r in row["runs"].values())
        hhh = "–" if row["hhh"] is None else f"{row['hhh']:.4f}"
        lines.append(
            f"| {label} | {row['accuracy']:.4f} ± {row['stderr']:.4f} | {signed(row.get('vs_trl'))} | {per_run} "
            f"| {row['shorter']:.1%} | {signed(row.get('shorter_vs_trl'))} | {hhh} |"
        )
    lines.append(f"| baseline: shorter wins | {res['baselines']['shorter_wins']:.4f} | | | 100% | | |")
    lines.append(f"| baseline: longer wins | {res['baselines']['longer_wins']:.4f} | | | 0% | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    res = combine(args.combine, args.data) if args.combine else run_benchmark(args)
    print(markdown(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
