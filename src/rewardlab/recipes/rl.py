"""``rewardlab rl``: fine-tune a policy with rewards (TRL's GRPO or RLOO), leaving a run directory like ``train``'s:
``config.yaml``, ``env.json``, ``training_args.json``, ``metrics.jsonl``, checkpoints, the final ``policy/``,
``results.json``, ``reward_curve.png`` and ``report.md``."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.config.schema import DataSource, PromptData, RLConfig
from rewardlab.errors import ConfigError, DataError
from rewardlab.recipes.run_dir import (
    align_metrics,
    check_output_dir,
    resolve_resume,
    run_lock,
    tidy_run_dir,
)

logger = logging.getLogger(__name__)


@dataclass
class RLResult:
    run_dir: Path
    policy_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)


def read_prompts(source: DataSource, data: PromptData, seed: int) -> list[dict[str, Any]]:
    """Rows with a usable prompt (text or chat messages) under ``prompt``, built by ``data.template`` when set;
    every other column kept as it is, plus ``target_words`` when ``data.target_words`` asks for it."""
    from rewardlab.data.readers import iter_rows
    from rewardlab.data.validation import prompt_of

    rng = random.Random(seed)
    column = data.prompt_column
    rows = []
    for rowno, row in iter_rows(source):
        if data.target_words is not None and "target_words" not in row:
            row = {**row, "target_words": rng.randint(*data.target_words)}
        if data.template is not None:
            try:
                value: Any = data.template.format(**row)
            except (KeyError, IndexError, AttributeError) as exc:
                raise DataError(f"data.template names {exc} which this row does not have (columns: "
                                f"{', '.join(row)})", source=source.path, row=rowno) from None  # fmt: skip
            value = prompt_of({column: value}, column, source.path, rowno, "")  # it may render an empty prompt
        else:
            value = prompt_of(row, column, source.path, rowno,
                              "name yours with data.prompt_column, or build prompts with data.template")  # fmt: skip
        out = {k: v for k, v in row.items() if k != column}
        out["prompt"] = [{"role": "user", "content": value}] if data.as_chat and isinstance(value, str) else value
        rows.append(out)
        if source.max_samples and len(rows) >= source.max_samples:
            break
    if not rows:
        raise DataError("no prompts", source=source.path)
    return rows


def split_prompts(cfg: RLConfig) -> tuple[list[dict], list[dict]]:
    train = read_prompts(cfg.data.train, cfg.data, cfg.seed)
    if cfg.data.eval is not None:
        return train, read_prompts(cfg.data.eval, cfg.data, cfg.seed + 1)
    if cfg.data.eval_count:
        if cfg.data.eval_count >= len(train):
            raise DataError(f"data.eval_count={cfg.data.eval_count} leaves no training prompt ({len(train)} in all)",
                            source=cfg.data.train.path)  # fmt: skip
        order = list(range(len(train)))
        random.Random(cfg.seed).shuffle(order)
        held = set(order[: cfg.data.eval_count])
        return [r for i, r in enumerate(train) if i not in held], [r for i, r in enumerate(train) if i in held]
    return train, []


def to_dataset(rows: list[dict], where: str) -> Any:
    from datasets import Dataset

    try:
        return Dataset.from_list(rows)
    except Exception as exc:  # pyarrow refuses columns whose rows disagree in type
        raise DataError(f"the columns do not have one type per column ({type(exc).__name__}: {exc})",
                        source=where) from None  # fmt: skip


def check_rl_dependencies(cfg: RLConfig) -> None:
    try:
        import trl  # noqa: F401
    except ImportError:
        raise ConfigError("rewardlab rl needs TRL: pip install 'rewardlab[rl]'") from None
    if any(r.type == "remote" for r in cfg.rewards):
        try:
            import httpx  # noqa: F401
        except ImportError:
            raise ConfigError("a remote reward needs httpx: pip install 'rewardlab[rl]'") from None


# Seconds a remote reward server may take to answer the check before the run: a hang guard, not a benchmark.
REACH_TIMEOUT_S = 30.0


def check_remote_rewards(cfg: RLConfig) -> None:
    """Every remote reward server answers (any HTTP status will do: OpenRLHF-style servers have no /health), so an
    unreachable URL fails before anything is written, not at the first training step."""
    import httpx

    from rewardlab.serving.client import parse_endpoint

    for source in (r for r in cfg.rewards if r.type == "remote"):
        for url in [source.url] if isinstance(source.url, str) else source.url or []:
            base = parse_endpoint(url, "auto", 1.0).base
            try:
                httpx.get(f"{base}/health", timeout=REACH_TIMEOUT_S)
                if source.uncertainty_penalty is not None:
                    check_served_ensemble(url, httpx.get(f"{base}/v1/model", timeout=REACH_TIMEOUT_S))
                if source.attribute is not None:
                    info = served_model(url, httpx.get(f"{base}/v1/model", timeout=REACH_TIMEOUT_S), "attribute")
                    check_attribute(source.attribute, url, list(info.get("attributes") or {}))
            except httpx.HTTPError as exc:
                raise ConfigError(
                    f"rewards: {url} cannot be reached ({type(exc).__name__}: {exc}); start the reward server first, "
                    "or fix the URL"
                ) from None


def check_judge_rewards(cfg: RLConfig) -> None:
    """Every judge reward can judge before anything is written: its template has the fields its mode needs, a local
    judge's tokenizer has a chat template, an endpoint's key variable is set and the endpoint answers (any HTTP
    status will do)."""
    import os

    import httpx

    from rewardlab.judges.spec import templates
    from rewardlab.judges.templates import Template

    for source in (r for r in cfg.rewards if r.type == "judge"):
        for kind, template in templates(source.judge).items():
            Template(template, kind)  # type: ignore[arg-type]
        if source.path:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(str(source.path))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"rewards: judge {source.path}: cannot load its tokenizer ({exc})") from None
            if not getattr(tokenizer, "chat_template", None):
                raise ConfigError(f"rewards: judge {source.path}: its tokenizer has no chat template, so it is not a "
                                  "chat model; a judge needs an instruction-tuned (chat) model")  # fmt: skip
            continue
        if source.api_key_env is not None and not os.environ.get(source.api_key_env):
            raise ConfigError(f"rewards: judge endpoint: the environment variable {source.api_key_env} is empty or "
                              "unset")  # fmt: skip
        try:
            httpx.get(str(source.url).rstrip("/") + "/models", timeout=REACH_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise ConfigError(f"rewards: judge endpoint {source.url} cannot be reached ({type(exc).__name__}: {exc});"
                              " start the server first, or fix the URL (its /v1 base)") from None  # fmt: skip


def served_model(url: str, response: Any, option: str) -> dict[str, Any]:
    """``/v1/model``'s description of a `rewardlab serve` model, which ``option`` of a remote reward needs."""
    try:
        info = response.json() if response.status_code == 200 else None
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise ConfigError(f"rewards: {option} on {url}: no rewardlab model description at /v1/model "
                          f"(HTTP {response.status_code}); it needs `rewardlab serve`")  # fmt: skip
    return info


def check_attribute(attribute: str, where: str, heads: list[str]) -> None:
    if attribute not in heads:
        raise ConfigError(f"rewards: attribute {attribute!r}: {where} has no such head (its attribute heads: "
                          f"{', '.join(heads) or 'none'}; train them with model.attributes)")  # fmt: skip


def check_model_attributes(cfg: RLConfig) -> None:
    """Every `model` reward's ``attribute`` is one of its model's heads, read from ``rewardlab.json`` before
    anything is loaded or written."""
    from rewardlab.models.checkpoint import resolve_model_dir
    from rewardlab.models.export_meta import ExportMeta

    for source in (r for r in cfg.rewards if r.type == "model" and r.attribute is not None):
        path = resolve_model_dir(Path(str(source.path)))
        if path.is_dir():  # a missing directory is the loader's to report, with its reason
            check_attribute(str(source.attribute), str(source.path), ExportMeta.read(path).attribute_names)


def check_served_ensemble(url: str, response: Any) -> None:
    """A remote reward with an uncertainty penalty needs a `rewardlab serve` of an ensemble (``/v1/model``'s
    ``members`` > 1): a single head has no spread to penalize."""
    try:
        members = int(response.json().get("members", 1)) if response.status_code == 200 else None
    except (ValueError, AttributeError, TypeError):
        members = None
    if members is None:
        raise ConfigError(
            f"rewards: uncertainty_penalty on {url}: no rewardlab model description at /v1/model "
            f"(HTTP {response.status_code}); the penalty needs `rewardlab serve` of an ensemble model"
        )
    if members < 2:
        raise ConfigError(
            f"rewards: uncertainty_penalty on {url}: the server's model has one head, so no "
            "uncertainty; serve an ensemble (trained with model.ensemble) or drop the penalty"
        )


def run_rl(cfg: RLConfig) -> RLResult:
    """Fine-tune ``cfg.policy`` with ``cfg.rewards``. Data and config problems raise before anything is written."""
    check_rl_dependencies(cfg)
    run_dir = Path(cfg.output_dir)
    check_output_dir(run_dir)
    check_model_attributes(cfg)
    check_remote_rewards(cfg)
    check_judge_rewards(cfg)
    train_rows, eval_rows = split_prompts(cfg)  # before torch is imported: a wrong path fails at once
    with run_lock(run_dir):
        tidy_run_dir(run_dir)
        return _rl(cfg, run_dir, train_rows, eval_rows)


def _rl(cfg: RLConfig, run_dir: Path, train_rows: list[dict], eval_rows: list[dict]) -> RLResult:
    from transformers import set_seed

    from rewardlab.recipes.run_record import write_run_record
    from rewardlab.rl.sources import build_rewards
    from rewardlab.rl.trainer import build_trainer
    from rewardlab.training.callbacks import MetricsFileCallback

    set_seed(cfg.seed)
    reward_funcs, weights = build_rewards(cfg.rewards)
    train_set = to_dataset(train_rows, cfg.data.train.path)
    eval_set = to_dataset(eval_rows, (cfg.data.eval or cfg.data.train).path) if eval_rows else None
    resume = resolve_resume(cfg)
    trainer = build_trainer(cfg, train_set, eval_set, reward_funcs, weights,
                            [MetricsFileCallback(run_dir / "metrics.jsonl")])  # fmt: skip
    align_metrics(run_dir, resume)
    write_run_record(run_dir, cfg, training_args=trainer.args)
    trainer.train(resume_from_checkpoint=resume)
    for func in reward_funcs:
        if hasattr(func, "close"):
            func.close()
    return finish_rl(cfg, trainer, run_dir, [f.__name__ for f in reward_funcs])


def export_policy(trainer: Any, target: Path) -> None:
    """The trained policy (LoRA merged) and its tokenizer, written atomically."""
    from rewardlab.data.files import atomic_directory

    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)
        trainer.processing_class.save_pretrained(staging)


def summarize(metrics_path: Path, names: list[str]) -> dict[str, Any]:
    """First and last logged values of the reward, each source's mean, eval reward and KL."""
    from rewardlab.evaluation.plots import read_jsonl

    rows = read_jsonl(metrics_path) if metrics_path.is_file() else []
    keys = ["reward", "eval_reward", "kl", *[f"rewards/{n}/mean" for n in names],
            *[f"eval_rewards/{n}/mean" for n in names]]  # fmt: skip
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if values:
            out[key] = {"first": values[0], "last": values[-1], "logged": len(values)}
    return out


def finish_rl(cfg: RLConfig, trainer: Any, run_dir: Path, names: list[str]) -> RLResult:
    from rewardlab.data.files import atomic_write_text
    from rewardlab.evaluation.plots import plot_reward_curve

    policy_dir = run_dir / "policy"
    summary = {"global_step": trainer.state.global_step, "algorithm": cfg.algorithm,
               "metrics": summarize(run_dir / "metrics.jsonl", names)}  # fmt: skip
    if trainer.args.should_save:
        export_policy(trainer, policy_dir)
        atomic_write_text(run_dir / "results.json", json.dumps(summary, indent=2))
        plot_reward_curve(run_dir / "metrics.jsonl", run_dir / "reward_curve.png")
        atomic_write_text(run_dir / "report.md", rl_report(cfg, summary))
    trainer.accelerator.wait_for_everyone()
    return RLResult(run_dir, policy_dir, summary)


def rl_report(cfg: RLConfig, summary: dict[str, Any]) -> str:
    lines = [f"# RL run: {cfg.algorithm.upper()}, policy {cfg.policy.name_or_path}", "",
             f"{summary['global_step']} steps; rewards: "
             + ", ".join(f"{r.name or r.rule or r.type} (weight {r.weight:g})" for r in cfg.rewards), "",
             "| metric | first logged | last logged |", "|---|---:|---:|"]  # fmt: skip
    for key, v in summary["metrics"].items():
        lines.append(f"| {key} | {v['first']:.4f} | {v['last']:.4f} |")
    lines += ["", "![reward curve](reward_curve.png)", ""]
    return "\n".join(lines)
