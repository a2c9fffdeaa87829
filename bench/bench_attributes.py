"""Attribute heads on SQuALITY's human evaluation: do the heads predict held-out ratings better than length does?

Run from the repository root (needs ``pip install -e .[minilm]``)::

    python bench/bench_attributes.py --seeds 0 --out results.json   # 5 folds of passages, MiniLM (about an hour)
    python bench/bench_attributes.py --folds 0 1                    # two of the five folds
    python bench/bench_attributes.py --quick                        # tiny model, generated groups (smoke test)

Data (``../shared/data/squality-human-eval``, Wang et al. 2022, arXiv:2205.11465): 20 passages x 5 questions, each
question with 3 summaries (``bart``, ``bart-dpr``, ``human``) rated by 3 reviewers on correctness, selection and
overall (0-100). One ranked group per question: the prompt is the question text only (the stories run 20-38k
characters, far beyond a small encoder's 512 tokens, so the model judges a summary without its source); the
responses are the 3 summaries, ranked by the aggregate overall ranking; each summary's ratings are the mean of the
3 reviewers, attribute range [0, 100].

Protocol: the 20 passages are shuffled with ``--split-seed`` and cut into ``--k`` folds (5 folds of 4 passages, 20
questions and 60 summaries each); a model trains on the other folds (``model.attributes``, the groups read as
pairs: the pairs train the preference head, each summary's ratings the attribute heads) and is scored on the held-out
fold. Per attribute: Pearson and Spearman of the head (0-1) with the rating (scaled to 0-1), beside the same
correlations of the rating with the summary's length in characters (a length-only predictor reaches their absolute
values, with the sign read off the held-out data: a generous baseline), the MSE beside a constant's (the held-out
mean rating: generous too), and how much the head follows length. A third baseline knows who wrote each summary:
every summary gets its system's mean rating over the training folds (``human`` summaries are rated far above the
two BART systems'). Preference accuracy on the held-out pairs beside "longer wins", "shorter wins" and "the system
with the higher training mean wins". The table has each fold's value (the seeds' mean), the mean over folds and its
standard error.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SQUALITY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squality-human-eval"
SYSTEMS = ("bart", "bart-dpr", "human")
ATTRIBUTES = ("correctness", "selection", "overall")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(SQUALITY), help="The squality-human-eval folder (README.md describes it).")
    p.add_argument("--model", default="minilm", help="Backbone: `minilm` (packaged), a directory or hub name.")
    p.add_argument("--k", type=int, default=5, help="Folds of passages.")
    p.add_argument("--folds", nargs="+", type=int, default=None, help="Folds to score (0..k-1; all by default).")
    p.add_argument("--split-seed", type=int, default=0, help="Seed of the passages' shuffle into folds.")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="Training seeds.")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument(
        "--max-length",
        type=int,
        default=256,
        help="Tokens of question + summary (longer: the question, then the summary's start are cut).",
    )
    p.add_argument("--warmup", type=float, default=0.05, help="Warm-up as a fraction of the steps.")
    p.add_argument("--attribute-weight", type=float, default=1.0, help="loss.attribute_weight.")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (off by default: fp32 on CPU).")
    p.add_argument("--quick", action="store_true", help="A tiny generated model and data set: a smoke test.")
    p.add_argument("--out", default=None, help="Write all results as JSON here.")
    p.add_argument("--work", default=None, help="Working directory (fold files, runs; removed runs keep scores).")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- data


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def squality_groups(folder: Path) -> list[dict[str, Any]]:
    """One ranked group per (passage, question): ``passage``, ``prompt`` (the question text), ``responses`` (the 3
    summaries), ``ranks`` (the aggregate overall ranking) and ``ratings`` (each summary's 3 reviewers' mean)."""
    if not (folder / "all-responses.jsonl").is_file():
        raise SystemExit(f"{folder}: no all-responses.jsonl (the SQuALITY human evaluation; see --data)")
    questions = {r["metadata"]["passage_id"]: r["questions"] for r in read_jsonl(folder / "test.jsonl")}
    groups = []
    for row in read_jsonl(folder / "all-responses.jsonl"):
        passage = row["passage-id"]
        for key, systems in sorted(row["questions"].items(), key=lambda kv: int(kv[0])):
            entries = [systems[s] for s in SYSTEMS]
            ratings = [{a: statistics.mean(r[f"{a}-rating"] for r in e["reviews"]) for a in ATTRIBUTES}
                       for e in entries]  # fmt: skip
            prompt = questions[passage][int(key)]["question_text"]
            ranks = [e["overall"]["overall-ranking"] for e in entries]
            groups.append({"passage": passage, "prompt": prompt, "responses": [e["response"] for e in entries],
                           "ranks": ranks, "ratings": ratings, "systems": list(SYSTEMS)})  # fmt: skip
    return groups


def quick_groups(work: Path) -> tuple[str, list[dict[str, Any]]]:
    """A tiny model and 40 generated groups over 10 "passages": ratings 0-100, higher for the chosen response."""
    from rewardlab.data.synthetic import corpus, make_pairs
    from rewardlab.models.tiny import build_tiny_model

    pairs = make_pairs(40, seed=3)
    model = build_tiny_model(work / "tiny", corpus(pairs), family="qwen2", vocab_size=400, hidden=32, layers=2)
    groups = []
    for i, p in enumerate(pairs):
        ratings = [{a: 80.0 - 10 * j for j, a in enumerate(ATTRIBUTES)}, {a: 20.0 + 5 * j for j, a in
                   enumerate(ATTRIBUTES)}]  # fmt: skip
        groups.append({"passage": str(i % 10), "prompt": p.prompt, "responses": [p.chosen, p.rejected],
                       "ranks": [1, 2], "ratings": ratings, "systems": ["chosen", "rejected"]})  # fmt: skip
    return str(model), groups


def passage_folds(groups: list[dict[str, Any]], k: int, seed: int) -> list[list[str]]:
    """The passages shuffled with ``seed`` and cut into ``k`` folds of (nearly) equal size."""
    passages = sorted({g["passage"] for g in groups})
    random.Random(seed).shuffle(passages)
    return [passages[i::k] for i in range(k)]


# ---------------------------------------------------------------------------------------------- one run


def train_and_score(spec: dict[str, Any], train: list[dict[str, Any]], held_out: list[dict[str, Any]]) -> dict:
    """Train on ``train`` groups; the held-out summaries' scores and attribute values (0-1), in group order."""
    from rewardlab.config import TrainConfig, build_config
    from rewardlab.models.scorer import Scorer
    from rewardlab.recipes.train import run_train

    run_dir = Path(spec["run_dir"])
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    train_path = run_dir.parent / f"{run_dir.name}-train.jsonl"
    keep = ("prompt", "responses", "ranks", "ratings")
    train_path.write_text("".join(json.dumps({k: g[k] for k in keep}) + "\n" for g in train), encoding="utf-8")
    cfg = {
        "output_dir": str(run_dir), "seed": spec["seed"],
        "data": {"train": str(train_path), "max_length": spec["max_length"], "ranked_as": "pairs"},
        "model": {"name_or_path": spec["model"], "attributes": {a: [0, 100] for a in ATTRIBUTES}},
        "loss": {"attribute_weight": spec["attribute_weight"]},
        "training": {"num_train_epochs": spec["epochs"], "per_device_train_batch_size": spec["batch_size"],
                     "learning_rate": spec["learning_rate"], "warmup_steps": spec["warmup"], "bf16": spec["bf16"],
                     "use_cpu": True, "save_strategy": "no", "eval_strategy": "no", "report_to": "none",
                     "logging_steps": 20, "disable_tqdm": True},
    }  # fmt: skip
    result = run_train(build_config(TrainConfig, cfg))
    scorer = Scorer.from_pretrained(str(result.model_dir), device="cpu", batch_size=16)
    prompts = [g["prompt"] for g in held_out for _ in g["responses"]]
    scores, attributes = scorer.score_with_attributes(prompts, [r for g in held_out for r in g["responses"]])
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)  # the scores are kept; a model per run would fill the disk
    return {"scores": scores, "attributes": attributes}


# ---------------------------------------------------------------------------------------------- metrics


def pairs_of(groups: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(better, worse) indices into the groups' flattened responses; tied ranks give no pair."""
    out, offset = [], 0
    for g in groups:
        k = len(g["responses"])
        out += [(offset + i, offset + j) for i in range(k) for j in range(k) if g["ranks"][i] < g["ranks"][j]]
        offset += k
    return out


def system_means(train: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each system's mean rating per attribute over the training groups: the "which system wrote it" predictor."""
    by_system: dict[str, list[dict[str, float]]] = {}
    for g in train:
        for system, rating in zip(g["systems"], g["ratings"]):
            by_system.setdefault(system, []).append(rating)
    return {s: {a: statistics.mean(r[a] for r in rs) for a in ATTRIBUTES} for s, rs in by_system.items()}


def fold_metrics(held_out: list[dict[str, Any]], result: dict[str, Any], systems: dict[str, dict[str, float]]) -> dict:
    """Flat metrics of one run on its held-out groups (keys ``<attribute>/<metric>``, ``accuracy`` ...); ``systems``:
    the training folds' mean rating of each system (``system_means``), a baseline that knows who wrote a summary."""
    import numpy as np

    from rewardlab.evaluation.metrics import attribute_metrics, pearson, preference_accuracy

    lengths = [len(r) for g in held_out for r in g["responses"]]
    writers = [s for g in held_out for s in g["systems"]]
    ratings = [rating for g in held_out for rating in g["ratings"]]
    pairs = pairs_of(held_out)
    scores = result["scores"]
    out: dict[str, float] = {
        "accuracy": preference_accuracy([scores[i] for i, _ in pairs], [scores[j] for _, j in pairs])["accuracy"],
        "longer_wins": preference_accuracy([lengths[i] for i, _ in pairs], [lengths[j] for _, j in pairs])["accuracy"],
    }
    out["shorter_wins"] = 1.0 - out["longer_wins"]
    by_writer = [systems[s]["overall"] for s in writers]  # who wrote it, ranked by its training mean overall rating
    out["system_wins"] = preference_accuracy([by_writer[i] for i, _ in pairs], [by_writer[j] for _, j in pairs])[
        "accuracy"
    ]
    for a in ATTRIBUTES:
        predicted = [values[a] for values in result["attributes"]]
        m = attribute_metrics(predicted, [r[a] / 100 for r in ratings], lengths)
        out.update({f"{a}/{key}": value for key, value in m.items() if key != "n"})
        head = preference_accuracy([predicted[i] for i, _ in pairs], [predicted[j] for _, j in pairs])
        out[f"{a}/pair_accuracy"] = head["accuracy"]
        by_system = np.asarray([systems[s][a] / 100 for s in writers])
        truth = np.asarray([r[a] / 100 for r in ratings])
        out[f"{a}/system_pearson"] = pearson(by_system, truth)
        out[f"{a}/system_mse"] = float(((by_system - truth) ** 2).mean())
    out["n_responses"], out["n_pairs"] = len(lengths), len(pairs)
    return out


def mean_se(values: list[float]) -> tuple[float, float | None]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return float("nan"), None
    mean = statistics.mean(finite)
    return mean, (statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else None)


ROWS = [("accuracy", "preference accuracy (score head)"), ("longer_wins", "baseline: longer wins"),
        ("shorter_wins", "baseline: shorter wins"),
        ("system_wins", "baseline: the system with the higher training mean wins")]  # fmt: skip
ATTRIBUTE_ROWS = [
    ("pearson", "Pearson r, head"), ("length_pearson", "Pearson r, length only (signed)"),
    ("spearman", "Spearman ρ, head"), ("length_spearman", "Spearman ρ, length only (signed)"),
    ("system_pearson", "Pearson r, system only (train mean per system)"),
    ("mse", "MSE (0-1 scale), head"), ("constant_mse", "MSE, constant (held-out mean)"),
    ("system_mse", "MSE, system only"),
    ("prediction_length_pearson", "Pearson r of the head with length"),
    ("pair_accuracy", "preference accuracy of the head"),
]  # fmt: skip


def markdown(per_fold: dict[int, dict[str, float]]) -> str:
    folds = sorted(per_fold)
    head = "| | " + " | ".join(f"fold {f}" for f in folds) + " | mean ± s.e. |"
    lines = [head, "|---|" + "---:|" * (len(folds) + 1)]
    rows = ROWS + [(f"{a}/{key}", f"{a}: {label}") for a in ATTRIBUTES for key, label in ATTRIBUTE_ROWS]
    for key, label in rows:
        values = [per_fold[f][key] for f in folds]
        mean, se = mean_se(values)
        spread = "" if se is None else f" ± {se:.3f}"
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {mean:.3f}{spread} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- driver


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_attributes_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        model, groups = quick_groups(work)
        args.folds, args.max_length, args.learning_rate, args.epochs = args.folds or [0], 96, 2e-3, 2.0
        args.seeds = args.seeds[:1]
    else:
        model, groups = args.model, squality_groups(Path(args.data))
    folds = passage_folds(groups, args.k, args.split_seed)
    args.folds = args.folds if args.folds is not None else list(range(args.k))
    runs = []
    for seed in args.seeds:
        for fold in args.folds:
            held = set(folds[fold])
            train = [g for g in groups if g["passage"] not in held]
            held_out = [g for g in groups if g["passage"] in held]
            spec = {"model": model, "seed": seed, "epochs": args.epochs, "batch_size": args.batch_size,
                    "learning_rate": args.learning_rate, "warmup": args.warmup, "max_length": args.max_length,
                    "attribute_weight": args.attribute_weight, "bf16": args.bf16,
                    "run_dir": str(work / f"run-{fold}-{seed}")}  # fmt: skip
            start = time.perf_counter()
            metrics = fold_metrics(held_out, train_and_score(spec, train, held_out), system_means(train))
            seconds = round(time.perf_counter() - start, 1)
            runs.append({"fold": fold, "seed": seed, "passages": sorted(held), "metrics": metrics, "seconds": seconds})
            summary = ", ".join(f"{a} r {metrics[f'{a}/pearson']:.3f} (length {metrics[f'{a}/length_pearson']:.3f})"
                                for a in ATTRIBUTES)  # fmt: skip
            print(f"fold {fold} seed {seed}: accuracy {metrics['accuracy']:.3f} (longer wins "
                  f"{metrics['longer_wins']:.3f}); {summary} ({seconds} s)", flush=True)  # fmt: skip
    per_fold = {}
    for fold in args.folds:
        mine = [r["metrics"] for r in runs if r["fold"] == fold]
        per_fold[fold] = {key: statistics.mean(m[key] for m in mine) for key in mine[0]}
    settings = {k: v for k, v in vars(args).items()}
    return {"settings": settings, "runs": runs, "per_fold": per_fold, "table": markdown(per_fold)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run_benchmark(args)
    print(res["table"])
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
