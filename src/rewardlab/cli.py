"""Command line: argument parsing only. One table of commands (:data:`COMMANDS`: handler, config class, arguments);
the work is in ``rewardlab.recipes``.

Input problems (``RewardlabError``) print one message and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from rewardlab.config import DemoConfig, ScoreConfig, ServeConfig, TrainConfig, build_config, parse_overrides
from rewardlab.config.loading import deep_merge, read_yaml
from rewardlab.config.schema import BenchConfig, CaptureConfig, EvalConfig, GenerateConfig, InspectConfig, RLConfig
from rewardlab.errors import ConfigError, RewardlabError

EXIT_INPUT_ERROR = 2
C = TypeVar("C", bound=BaseModel)


def add_fields(parser: argparse.ArgumentParser, cls: type[BaseModel], skip: tuple[str, ...] = ()) -> None:
    """``--flag`` per config field; the help text is the field's description (documented once). A list field's flag
    repeats (``--strip-texts A --strip-texts B``)."""
    for name, field in cls.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        help_text = f"{field.description} (default: {default})" if default not in (None, []) else field.description
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(field.annotation) is list:
            parser.add_argument(flag, dest=name, action="append", default=None, help=help_text + " (repeatable)")
        else:
            parser.add_argument(flag, dest=name, default=None, required=field.is_required(), help=help_text)


def fields_from(ns: argparse.Namespace, cls: type[BaseModel]) -> dict[str, Any]:
    return {k: getattr(ns, k) for k in cls.model_fields if getattr(ns, k, None) is not None}


def config_from(ns: argparse.Namespace, cls: type[C], **extra: Any) -> C:
    """A command's config, by one rule for every command: defaults < the ``--config`` YAML < ``key=value``
    overrides < ``--flags`` (one per field of ``cls``) < ``extra`` (what the handler itself sets)."""
    path = getattr(ns, "config", None)
    data = read_yaml(path) if path else {}
    for layer in (parse_overrides(getattr(ns, "overrides", None) or []), fields_from(ns, cls), extra):
        data = deep_merge(data, layer)
    return build_config(cls, data, source=str(path) if path else "command line")


def cmd_demo(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.demos.text import ACCURACY_TARGET, run_demo

    if sum(bool(x) for x in (ns.vision, ns.rl, ns.overopt)) > 1:
        raise ConfigError("choose one demo: --vision, --rl or --overopt")
    if ns.vision:
        return cmd_vision_demo(ns)
    if ns.rl:
        return cmd_rl_demo(ns)
    if ns.overopt:
        return cmd_overopt_demo(ns)
    result = run_demo(config_from(ns, DemoConfig))
    ok = result.accuracy >= ACCURACY_TARGET
    flaws = ", ".join(f"{k} {v:.3f}" for k, v in result.by_flaw.items())
    print(f"\nheld-out accuracy {result.accuracy:.3f} (target {ACCURACY_TARGET}): {'OK' if ok else 'BELOW TARGET'}")
    print(f"by flaw: {flaws}")
    print(f"time {result.seconds:.0f} s; run directory: {result.run_dir}")
    print(f"  model:  {result.run_dir / 'model'}\n  report: {result.run_dir / 'report.md'}")
    print(f"  curve:  {result.run_dir / 'learning_curve.png'}")
    return 0 if ok else 1


def cmd_vision_demo(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.demos.vision import ACCURACY_TARGET, VisionDemoConfig, format_summary, run_vision_demo

    flags = {k: v for k, v in fields_from(ns, DemoConfig).items() if k not in ("vision", "rl", "overopt")}
    cfg = build_config(VisionDemoConfig, {**parse_overrides(ns.overrides), **flags}, source="command line")
    result = run_vision_demo(cfg)
    print("\n" + format_summary(result))
    return 0 if result.accuracy >= ACCURACY_TARGET else 1


def cmd_rl_demo(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.demos.rl import RLDemoConfig, format_rl_summary, run_rl_demo

    flags = {k: v for k, v in fields_from(ns, DemoConfig).items() if k not in ("vision", "rl", "overopt")}
    data = {"output_dir": "runs/rl-demo", **parse_overrides(ns.overrides), **flags}  # other flags: "not permitted"
    result = run_rl_demo(build_config(RLDemoConfig, data, source="command line"))
    print("\n" + format_rl_summary(result))
    return 0 if result.ok else 1


def cmd_overopt_demo(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.demos.overopt import OveroptDemoConfig, format_overopt_summary, run_overopt_demo

    flags = {k: v for k, v in fields_from(ns, DemoConfig).items() if k not in ("vision", "rl", "overopt")}
    data = {"output_dir": "runs/overopt-demo", **parse_overrides(ns.overrides), **flags}
    result = run_overopt_demo(build_config(OveroptDemoConfig, data, source="command line"))
    print("\n" + format_overopt_summary(result))
    return 0  # a demonstration: the curves are what they are


def cmd_train(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.train import run_train

    result = run_train(config_from(ns, TrainConfig))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # one report per run, not one per process
    if result.metrics:
        print(json.dumps({k: round(v, 4) for k, v in result.metrics.items()}))
    print(f"model: {result.model_dir}")
    return 0


def cmd_tune(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.tune import run_tune

    result = run_tune(
        config_from(ns, TrainConfig, **({"tune": {"trials": ns.trials}} if ns.trials is not None else {}))
    )
    for row in result.trials:
        print(json.dumps(row))
    print(f"best: trial objective {result.best_objective:.4f} with {json.dumps(result.best_params)}")
    print(f"best config: {result.best_config}  (train it: rewardlab train --config {result.best_config})")
    return 0


def cmd_score(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.score import describe_weights, parse_weights, run_score

    weights = parse_weights(ns.weights)
    cfg = config_from(ns, ScoreConfig)
    n, out = run_score(cfg, ns.input, ns.output, ns.prompt_column, ns.response_column, ns.image_column, weights)
    combined = f"; combined = {describe_weights(weights)}" if weights else ""
    print(f"scored {n} responses → {out}{combined}", file=sys.stderr)
    return 0


def cmd_compare(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.score import parse_weights, run_compare

    weights = parse_weights(ns.weights)
    cfg = config_from(ns, ScoreConfig)
    comparison = run_compare(cfg, ns.prompt, ns.a, ns.b, ns.image, weights)
    print(json.dumps(comparison))
    return 0


def cmd_rank(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.score import parse_weights, run_rank

    weights = parse_weights(ns.weights)
    cfg = config_from(ns, ScoreConfig)
    ranked = run_rank(cfg, ns.prompt, ns.response or [], ns.responses_file, ns.image, weights)
    # One line per response (still a JSON array): attribute vectors stay readable beside the scores.
    lines = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in ranked)
    print(f"[\n{lines}\n]")
    return 0


def cmd_select(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.select import run_select

    result = run_select(config_from(ns, ScoreConfig), ns.data, ns.top, ns.out, ns.criterion)
    print(f"selected {result.selected} of {result.pool} items by {result.criterion} → {result.destination}",
          file=sys.stderr)  # fmt: skip
    return 0


def cmd_label(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.label import run_from_label_studio, run_label, run_label_export, run_to_label_studio

    if ns.from_label_studio:
        if not ns.out or ns.data or ns.db or ns.to_label_studio:
            raise ConfigError("rewardlab label --from-label-studio EXPORT.json --out FILE.jsonl (no DATA, no --db)")
        print(json.dumps(run_from_label_studio(ns.from_label_studio, ns.out), indent=2))
        return 0
    if not ns.db:
        raise ConfigError("rewardlab label needs --db FILE.sqlite (the items and labels; created if missing)")
    if ns.data == "export":
        if not ns.out:
            raise ConfigError("rewardlab label export needs --out FILE.jsonl")
        summary = run_label_export(ns.db, ns.out)
        print(json.dumps(summary, indent=2))
        return 0
    if ns.to_label_studio:
        if not ns.data:
            raise ConfigError(
                "--to-label-studio needs the data to label: rewardlab label DATA --db F --to-label-studio DIR"
            )
        written = run_to_label_studio(ns.data, ns.db, ns.to_label_studio, ns.ls_ranking)
        for path in written.files:
            print(path)
        print(f"rewardlab label: {written.summary()}", file=sys.stderr)
        return 0
    if ns.order == "uncertain" and not ns.model:
        raise ConfigError("--order uncertain needs the reward model: --model DIR (an ensemble ranks by its spread)")
    run_label(ns.data, ns.db, host=ns.host, port=int(ns.port), per_item=int(ns.per_item), token_env=ns.token_env,
              on_listening=lambda url: print(f"rewardlab label: open {url}", flush=True),
              order_model=ns.model if ns.order == "uncertain" else None)  # fmt: skip
    return 0


def cmd_capture(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.capture import run_capture

    result = run_capture(config_from(ns, CaptureConfig, **({"viewports": ns.viewport} if ns.viewport else {})))
    print(f"{result.ok} captured, {result.failed} failed, {result.skipped} already done → {result.manifest}")
    return 0 if result.ok or result.skipped or not result.failed else 1


def cmd_generate(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.generate import run_generate

    out, written, _ = run_generate(config_from(ns, GenerateConfig))
    print(f"{written} prompts → {out} (ranked groups without ranks: label them with your tool of choice)")
    return 0


def cmd_rl(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.rl import run_rl

    result = run_rl(config_from(ns, RLConfig))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    reward = result.summary["metrics"].get("reward")
    if reward:
        print(f"reward: {reward['first']:.4f} (first step) → {reward['last']:.4f} (last)")
    print(f"policy: {result.policy_dir}")
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.serve import run_serve

    run_serve(
        config_from(ns, ServeConfig),
        on_listening=lambda url: print(f"rewardlab serve: listening on {url}", flush=True),
    )
    return 0


def cmd_eval(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.evaluate import run_eval

    result = run_eval(config_from(ns, EvalConfig, **({"weights": ns.weights} if ns.weights else {})))
    if result.rows and all(r["status"] != "ok" for r in result.rows):
        print("error: no model directory could be evaluated (see the error column)", file=sys.stderr)
        return EXIT_INPUT_ERROR
    print(f"results: {result.output_dir / 'evaluation_results.csv'}")
    return 0


def cmd_bench(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.bench import run_bench

    result = run_bench(config_from(ns, BenchConfig))
    print(f"results: {result.out_dir / 'bench.csv'} and bench.json (every item's scores)")
    return 0


def cmd_report(ns: argparse.Namespace) -> int:
    from rewardlab.evaluation.html_report import render_html_report

    print(render_html_report(ns.run_dir))
    return 0


def cmd_inspect(ns: argparse.Namespace) -> int:
    from rewardlab.recipes.inspect import render_inspect, run_inspect

    source = {"path": ns.data, **parse_overrides(ns.overrides)}
    data = {**fields_from(ns, InspectConfig), "data": source}  # the reader options ride on the data source
    report = run_inspect(build_config(InspectConfig, data, source="reader options (key=value)"))
    render_inspect(report)
    if ns.json:
        from rewardlab.data.files import atomic_write_text

        atomic_write_text(ns.json, json.dumps(report, indent=2, ensure_ascii=False, default=str))
    if not report["records"]:
        print(f"error: {ns.data}: no usable record (every row has a problem, listed above)", file=sys.stderr)
        return EXIT_INPUT_ERROR
    return 0


def _config_file(required: bool, help_text: str) -> Callable[[argparse.ArgumentParser], None]:
    return lambda p: p.add_argument("--config", required=required, default=None, help=help_text)


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML file with model_dirs and eval_sets (see configs/eval.yaml).")
    p.add_argument("--weights", default=None, help=EvalConfig.model_fields["weights"].description)


def _tune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="The training YAML; its `tune:` section sets the search.")
    p.add_argument("--trials", type=int, default=None, help="How many trainings (default: tune.trials, 10).")


def _weights_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        action="append",
        default=None,
        metavar="NAME=W,...",
        help="Models with attribute heads: report `combined` = Σ W·value over the named attributes (0–1 scale) and "
        "`reward` (the preference score), e.g. reward=1,verbosity=-0.5; rank and compare then order by it.",
    )


def _score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="JSONL/CSV/Parquet file with prompt and response columns.")
    p.add_argument("--output", default=None, help="Output JSONL (default: stdout).")
    p.add_argument("--prompt-column", default="prompt", help="Prompt column name (default: prompt).")
    p.add_argument("--response-column", default="response", help="Response column name (default: response).")
    p.add_argument(
        "--image-column", default="images", help="Vision models: the column with each row's image (default: images)."
    )

    _weights_arg(p)


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True, help="The prompt.")
    p.add_argument("--a", required=True, help="First response.")
    p.add_argument("--b", required=True, help="Second response.")
    p.add_argument(
        "--image", action="append", help="Vision models: path or URL of the image both answers are about (repeatable)."
    )

    _weights_arg(p)


def _rank_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True, help="The prompt.")
    p.add_argument("--response", action="append", help="A candidate response (repeat the flag for each).")
    p.add_argument("--responses-file", default=None, help="File with one response per line (or a JSONL of strings).")
    p.add_argument(
        "--image",
        action="append",
        help="Vision models: path or URL of the image the responses are about (repeatable).",
    )

    _weights_arg(p)


def _select_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="The pool: pairs, or groups of candidates (`responses`).")
    p.add_argument("--top", required=True, type=int, help="How many items to select.")
    p.add_argument("--out", required=True, help="JSONL to write: the selected items, most uncertain first.")
    p.add_argument("--criterion", default="auto", choices=["auto", "spread", "margin"],
                   help="How unsure: an ensemble's spread (auto's choice for an ensemble) or the mean margin's "
                   "closeness to a coin flip (auto's choice for one head).")  # fmt: skip


def _label_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", default=None, help="Data to label (pairs or groups), or `export`.")
    p.add_argument("--db", default=None, help="SQLite file with the items and labels (created if missing).")
    p.add_argument(
        "--order",
        choices=["file", "uncertain"],
        default="file",
        help="Order of new items: as in the file, or the ones --model is least sure about first.",
    )
    p.add_argument("--model", default=None, help="--order uncertain: the reward model (an ensemble: its spread).")
    p.add_argument(
        "--out",
        default=None,
        help="export, --from-label-studio: the JSONL to write (pairs; ranked groups beside it, OUT.groups.jsonl).",
    )
    p.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1).")
    p.add_argument("--port", default=8080, help="TCP port (0: any free port, printed).")
    p.add_argument("--per-item", default=1, help="Labels wanted per item (2 or more for agreement statistics).")
    p.add_argument("--token-env", default=None, help="Environment variable holding a token every request needs.")
    p.add_argument("--to-label-studio", default=None, metavar="DIR",
                   help="Write the items as Label Studio tasks + labeling configs to DIR instead of serving; its "
                   "JSON export reads back like any data file.")  # fmt: skip
    p.add_argument("--ls-ranking", choices=["order", "buckets"], default="order",
                   help="--to-label-studio, 3+ responses: drag into an order (best first), or into Best/OK/Worst "
                   "buckets (responses in one bucket are tied).")  # fmt: skip
    p.add_argument("--from-label-studio", default=None, metavar="EXPORT",
                   help="Label Studio's JSON export → --out (pairs) and OUT.groups.jsonl, with a summary of what "
                   "was left out (skipped, empty, tied, unplaced, duplicate annotations).")  # fmt: skip


def _capture_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="A file of URLs (one per line) or a folder of .html files.")
    p.add_argument("--viewport", action="append", help="WIDTHxHEIGHT (repeatable; default 1280x800).")


def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", "--k", dest="k", default=None, help="Candidates per prompt (default: 4).")


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="Data file, `datasets` directory or hub name.")
    p.add_argument("--json", default=None, help="Also write the report as JSON to this file.")


@dataclass(frozen=True)
class Command:
    """One row of the command table: its help, handler, config class (each field a ``--flag``, but ``skip``), its
    own arguments, and the help of its ``key=value`` overrides (None: it takes none)."""

    help: str
    run: Callable[[argparse.Namespace], int]
    config: type[BaseModel] | None = None
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    overrides: str | None = None
    skip: tuple[str, ...] = ()
    description: str | None = None


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "Offline CPU demo: generate pairs, train a tiny RM, evaluate, plot (--vision: screenshots, tiny VLM).",
        cmd_demo, DemoConfig, overrides="key=value overrides of the demo config.",
    ),
    "train": Command(
        "Train a reward model from a YAML config.", cmd_train,
        arguments=_config_file(True, "YAML file (see configs/)."),
        overrides="key=value overrides, e.g. training.learning_rate=1e-5 model.lora.r=8",
    ),
    "tune": Command(
        "Search learning rate, warm-up, epochs (tune.space) for a training config on held-out pairs.", cmd_tune,
        arguments=_tune_args, overrides="key=value overrides, e.g. tune.metric=loss training.max_steps=50",
    ),
    "score": Command(
        "Score (prompt, response) rows of a file; writes JSONL with a score column.", cmd_score, ScoreConfig,
        _score_args,
    ),
    "compare": Command(
        "Which of two responses is better, with P(a ≻ b) = σ(score_a − score_b).", cmd_compare, ScoreConfig,
        _compare_args, skip=("batch_size",),
    ),
    "rank": Command(
        "Best-of-N: responses to one prompt sorted by score, best first.", cmd_rank, ScoreConfig, _rank_args,
    ),
    "select": Command(
        "The pool items a reward model is least sure about (an ensemble's spread, else the margin), to label first.",
        cmd_select, ScoreConfig, _select_args,
    ),
    "label": Command(
        "Labeling web app for pairs and rankings (`label DATA --db F`), and `label export --db F --out F`.",
        cmd_label, arguments=_label_args,
    ),
    "capture": Command(
        "Screenshots of URLs or HTML files with the system's Chromium (needs [collect]).", cmd_capture, CaptureConfig,
        _capture_args, overrides="key=value settings, e.g. parallel=8 retries=2", skip=("source", "viewports"),
    ),
    "generate": Command(
        "K candidate answers per prompt from a causal LM, as groups to label.", cmd_generate, GenerateConfig,
        _generate_args, overrides="key=value settings, e.g. temperature=1.0 max_new_tokens=128", skip=("k",),
    ),
    "rl": Command(
        "Fine-tune a policy with rule, model or remote rewards (TRL GRPO/RLOO; needs [rl]).", cmd_rl,
        arguments=_config_file(True, "YAML file (see configs/rl/)."),
        overrides="key=value overrides, e.g. algorithm=rloo training.max_steps=50",
    ),
    "serve": Command(
        "HTTP scoring server: /v1/score, /v1/compare, /v1/rank, OpenRLHF's /get_reward (needs [serve]).", cmd_serve,
        ServeConfig, _config_file(False, "YAML file with server settings (flags and key=value win)."),
        overrides="key=value settings, e.g. batch_size=64 normalize=true",
    ),
    "eval": Command(
        "Evaluate model dirs × checkpoints × eval sets → CSV, JSON, log, plots.", cmd_eval,
        arguments=_eval_args, overrides="key=value overrides, e.g. output_dir=eval_out batch_size=32",
    ),
    "bench": Command(
        "Standard RM benchmarks (RewardBench 1/2, RM-Bench, JudgeBench, PPE, VL-RewardBench, Multimodal RewardBench) "
        "with their official metrics and length (and text-only) baselines.", cmd_bench, BenchConfig,
        description="Each suite is read in its published schema (--data, else its hub dataset), scored with the "
        "Scorer and aggregated by the benchmark's own rule; scores are cached in OUT/cache, so a rerun scores only "
        "new items.",
    ),
    "report": Command(
        "Render RUN_DIR/report.html: tables and plots of an eval or training run.", cmd_report,
        arguments=lambda p: p.add_argument("run_dir", help="An eval output directory or a training run directory."),
    ),
    "inspect": Command(
        "Rows, columns, format, lengths, duplicates, malformed rows, rank stats.", cmd_inspect, InspectConfig,
        _inspect_args, overrides="Reader options, e.g. kind=ranked columns.response=answer_text", skip=("data",),
        description="Exit code 0: the data has usable records (any problems are listed); 2: none is usable, or the "
        "file cannot be read at all.",
    ),
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser, one sub-command per row of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="rewardlab", description="Reward models for text and images.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.description)
        if command.arguments is not None:
            command.arguments(p)
        if command.config is not None:
            add_fields(p, command.config, skip=command.skip)
        if command.overrides is not None:
            p.add_argument("overrides", nargs="*", help=command.overrides)
        p.set_defaults(func=command.run)
    return parser


def setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    from rewardlab.recipes.console import stderr_console

    handler = RichHandler(show_path=False, rich_tracebacks=False, console=stderr_console())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", handlers=[handler])
    for noisy in ("httpx", "urllib3", "filelock", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:
        # Optional packages that speak up on import in a plain run: bitsandbytes (and its kernel hub) about CPU
        # kernels, DeepSpeed about its accelerator (on stdout, through its own handler; a filter outlasts the level
        # it sets). Their errors still show; -v shows everything.
        handler.addFilter(quiet_optional_packages)
        logging.getLogger("DeepSpeed").addFilter(quiet_optional_packages)
    if not sys.stderr.isatty():
        # Progress bars written to a file or a pipe are one line per refresh (Hugging Face's load/save bars here;
        # the trainer's are turned off in training.arguments).
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


QUIET_PACKAGES = ("bitsandbytes", "kernels", "DeepSpeed")


def quiet_optional_packages(record: logging.LogRecord) -> bool:
    """Drop what optional packages (and their sub-loggers) say below ERROR."""
    return record.levelno >= logging.ERROR or record.name.split(".")[0] not in QUIET_PACKAGES


def config_source(ns: argparse.Namespace, exc: RewardlabError) -> str:
    """``"FILE: "`` for a config problem found after the config was read (``training:`` values are checked against
    ``TrainingArguments`` when the run builds them), so that it names the file as a schema problem does."""
    if not isinstance(exc, ConfigError) or not str(exc).startswith("invalid config"):
        return ""
    path = getattr(ns, "config", None)
    return f"{path}: " if path else "command line: "


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    # key=value overrides may come before or after options (`inspect F --examples 1 kind=ranked`).
    if extra and hasattr(ns, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        ns.overrides = [*ns.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setup_logging(ns.verbose)
    func: Callable[[argparse.Namespace], int] = ns.func
    try:
        return func(ns)
    except RewardlabError as exc:
        print(f"error: {config_source(ns, exc)}{exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except OSError as exc:
        # A path the user gave cannot be read or written (permissions, a symlink loop, a directory where a file
        # belongs): their environment, not a bug — say which path and why.
        if exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
