"""``rewardlab demo --overopt``: reward overoptimization, and whether an ensemble's uncertainty penalty bends it.
Offline, CPU, minutes.

1. **Gold reward**: the ``word_count`` rule on prompts "Write exactly N words about TOPIC:" — what we really want.
2. **Proxy reward models**: pairs of random-length answers, labelled by the gold rule with label noise (each label
   flipped with probability ``label_noise``), ``n_pairs`` of them — a thin, noisy sample, as real preference data
   is. A single RM and an ensemble of ``members`` bootstrapped heads (``model.ensemble``; with ``ensemble_kind:
   lora``, LoRA members on the frozen policy) are trained on them with ``rewardlab train``, on the warmed-up policy
   as the backbone (an RM initialised from the SFT model).
3. **RL**, the same GRPO run (``rewardlab rl``'s code path) three times, against (a) the single proxy, (b) the
   ensemble's mean, (c) the ensemble with ``uncertainty_penalty: λ`` (``mean − λ·std``). The gold rule rides along
   with weight 0: it is logged at every step (``rewards/gold/mean``) but never trained on.
4. **Curves**: gold and proxy reward against steps, and gold against the KL to the start policy
   (``overoptimization.png``); the held-out gold reward and exact-count rate of each final policy
   (``demo_summary.json``, ``report.md``). Whatever the curves show is reported as it is.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from rewardlab.config.schema import EnsembleKind, RLConfig, StrictModel, TrainConfig

logger = logging.getLogger(__name__)

ARMS = ("single", "ensemble", "penalized")
ARM_TITLES = {"single": "single proxy RM", "ensemble": "ensemble mean", "penalized": "ensemble − λ·std"}


class OveroptDemoConfig(StrictModel):
    """Settings of ``rewardlab demo --overopt``."""

    output_dir: str = Field("runs/overopt-demo", description="Run directory.")
    seed: int = Field(0, description="Seed for prompts, labels, models and sampling.")
    min_words: int = Field(2, ge=1, description="Smallest N asked for.")
    max_words: int = Field(8, ge=1, description="Largest N asked for.")
    n_pairs: int = Field(300, ge=8, description="Gold-labelled pairs the proxy RMs learn from.")
    label_noise: float = Field(0.2, ge=0, lt=0.5, description="Probability that a pair's gold label is flipped.")
    members: int = Field(5, ge=2, le=16, description="Members of the ensemble proxy.")
    ensemble_kind: EnsembleKind = Field(
        "heads",
        description=(
            "The ensemble proxy's kind (`model.ensemble.kind`): bootstrapped heads on one fine-tuned backbone, or "
            "bootstrapped LoRA members (rank 8, every linear layer) on the frozen warmed-up policy, which differ in "
            "the backbone too. The single proxy is fully fine-tuned either way."
        ),
    )
    penalty: float = Field(1.0, ge=0, description="λ of the penalized arm: the reward is mean − λ·std.")
    rm_epochs: float = Field(3.0, gt=0, description="Epochs of proxy RM training.")
    rm_learning_rate: float = Field(5e-4, gt=0, description="Proxy RM learning rate.")
    warmup_steps: int = Field(300, ge=1, description="Supervised warm-up steps of the policy (random-length answers).")
    rl_steps: int = Field(300, ge=1, description="GRPO steps of each arm.")
    learning_rate: float = Field(3e-4, gt=0, description="GRPO learning rate (constant).")
    beta: float = Field(0.01, ge=0, description="GRPO's KL coefficient (> 0 also logs the KL to the start policy).")
    num_generations: int = Field(8, ge=2, description="Answers sampled per prompt (GRPO's group).")
    prompts_per_step: int = Field(8, ge=1, description="Prompts per GRPO step.")
    n_prompts: int = Field(2000, ge=16, description="Generated training prompts.")
    n_eval: int = Field(128, ge=16, description="Held-out prompts scored with the gold rule after RL.")


@dataclass
class OveroptResult:
    run_dir: Path
    start: dict[str, float]  # the warmed-up policy on the held-out prompts
    arms: dict[str, dict[str, Any]]  # per arm: final held-out gold numbers and the logged curves
    seconds: float


def rl_settings(cfg: OveroptDemoConfig) -> Any:
    """The RL demo's settings object for the parts shared with it (prompts, policy, warm-up, evaluation)."""
    from rewardlab.recipes.demos.rl import RLDemoConfig

    return RLDemoConfig(seed=cfg.seed, min_words=cfg.min_words, max_words=cfg.max_words, n_prompts=cfg.n_prompts,
                        n_eval=cfg.n_eval, warmup_steps=cfg.warmup_steps, rl_steps=cfg.rl_steps,
                        learning_rate=cfg.learning_rate, num_generations=cfg.num_generations,
                        prompts_per_step=cfg.prompts_per_step)  # fmt: skip


def gold_pairs(cfg: OveroptDemoConfig, rng: random.Random) -> tuple[list[dict[str, Any]], float]:
    """``n_pairs`` pairs of random answers to random prompts, the better by the gold rule as ``chosen`` — flipped
    with probability ``label_noise``; pairs the rule scores equal are not drawn. Returns the rows and the share
    whose label was flipped."""
    from rewardlab.recipes.demos.rl import TOPICS, make_prompt, random_answer
    from rewardlab.rl.rules import count_words, word_count_reward

    rows, flipped = [], 0
    while len(rows) < cfg.n_pairs:
        n = rng.randint(cfg.min_words, cfg.max_words)
        prompt = make_prompt(n, rng.choice(TOPICS))
        a, b = (random_answer(rng, cfg.max_words + 4) for _ in range(2))
        ga, gb = word_count_reward(n, count_words(a)), word_count_reward(n, count_words(b))
        if ga == gb:
            continue
        chosen, rejected = (a, b) if ga > gb else (b, a)
        if rng.random() < cfg.label_noise:
            chosen, rejected = rejected, chosen
            flipped += 1
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "target_words": n})
    return rows, flipped / len(rows)


def proxy_config(cfg: OveroptDemoConfig, out: Path, pairs: Path, backbone: Path, members: int) -> TrainConfig:
    model: dict[str, Any] = {"name_or_path": str(backbone)}
    if members > 1:
        model["ensemble"] = {"members": members, "kind": cfg.ensemble_kind}
        if cfg.ensemble_kind == "lora":
            model["lora"] = {"r": 8, "alpha": 16}
    return TrainConfig.model_validate({
        "output_dir": str(out), "seed": cfg.seed, "data": {"train": str(pairs), "max_length": 64}, "model": model,
        "training": {"num_train_epochs": cfg.rm_epochs, "learning_rate": cfg.rm_learning_rate,
                     "per_device_train_batch_size": 16, "logging_steps": 10, "save_strategy": "no"},
    })  # fmt: skip


def arm_config(cfg: OveroptDemoConfig, arm: str, run_dir: Path, policy: Path, prompts: Path, rm: Path) -> RLConfig:
    proxy: dict[str, Any] = {"type": "model", "path": str(rm), "name": "proxy"}
    if arm == "penalized":
        proxy["uncertainty_penalty"] = cfg.penalty
    return RLConfig.model_validate({
        "output_dir": str(run_dir / "rl" / arm), "seed": cfg.seed, "policy": {"name_or_path": str(policy)},
        "data": {"train": str(prompts)},
        # The gold rule is logged at every step (rewards/gold/mean) and weighs nothing in what is trained on.
        "rewards": [proxy, {"type": "rule", "rule": "word_count", "name": "gold", "weight": 0.0}],
        "algorithm": "grpo",
        "generation": {"num_generations": cfg.num_generations, "max_completion_length": cfg.max_words * 2 + 4},
        "training": {"max_steps": cfg.rl_steps, "learning_rate": cfg.learning_rate, "lr_scheduler_type": "constant",
                     "per_device_train_batch_size": cfg.num_generations * cfg.prompts_per_step, "beta": cfg.beta,
                     "save_strategy": "no", "logging_steps": max(1, min(10, cfg.rl_steps // 10))},
    })  # fmt: skip


def curves(metrics_path: Path) -> dict[str, list[float]]:
    """Per logged training step: step, gold, proxy (the RM's mean, unpenalized), uncertainty (penalized arm), KL."""
    keys = {"gold": "rewards/gold/mean", "proxy": "rewards/proxy/mean",
            "uncertainty": "rewards/proxy_uncertainty/mean", "kl": "kl"}  # fmt: skip
    out: dict[str, list[float]] = {"step": [], **{k: [] for k in keys}}
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if keys["gold"] not in row or "step" not in row:
            continue
        out["step"].append(row["step"])
        for name, key in keys.items():
            out[name].append(row.get(key, float("nan")))
    return out


def run_overopt_demo(cfg: OveroptDemoConfig) -> OveroptResult:
    from rewardlab.data.files import atomic_write_text
    from rewardlab.recipes.demos.rl import evaluate_policy, start_word_demo
    from rewardlab.recipes.rl import run_rl
    from rewardlab.recipes.train import run_train

    start = time.time()
    run_dir = Path(cfg.output_dir)
    held_out, prompts, policy = start_word_demo(rl_settings(cfg), run_dir)

    pairs, flipped = gold_pairs(cfg, random.Random(cfg.seed + 2))
    pairs_file = run_dir / "gold_pairs.jsonl"
    atomic_write_text(pairs_file, "".join(json.dumps(r) + "\n" for r in pairs))
    rms = {}
    for name, members in (("single", 1), ("ensemble", cfg.members)):
        rms[name] = run_train(proxy_config(cfg, run_dir / f"rm-{name}", pairs_file, policy, members)).model_dir
    max_new = cfg.max_words * 2 + 4
    start_policy = evaluate_policy(policy, held_out, cfg.seed, max_new)
    arms: dict[str, dict[str, Any]] = {}
    for arm in ARMS:
        rm = rms["single" if arm == "single" else "ensemble"]
        result = run_rl(arm_config(cfg, arm, run_dir, policy, prompts, rm))
        final = evaluate_policy(result.policy_dir, held_out, cfg.seed, max_new)
        arms[arm] = {**final, "curves": curves(result.run_dir / "metrics.jsonl")}
        logger.info("%s: held-out gold reward %.3f, exact %.3f", arm, final["mean_reward"], final["exact_rate"])
    demo = OveroptResult(run_dir, start_policy, arms, time.time() - start)
    plot_overoptimization(demo, run_dir / "overoptimization.png")
    write_overopt_record(cfg, demo, flipped)
    return demo


def plot_overoptimization(demo: OveroptResult, out: Path) -> Path:
    """Gold and proxy reward against steps, and gold against KL, one line per arm."""
    from rewardlab.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for arm in ARMS:
        c = demo.arms[arm]["curves"]
        axes[0].plot(c["step"], c["gold"], label=ARM_TITLES[arm])
        axes[1].plot(c["step"], c["proxy"], label=ARM_TITLES[arm])
        kl = [(k, g) for k, g in zip(c["kl"], c["gold"]) if k == k]  # NaN: no KL logged (beta 0)
        if kl:
            axes[2].plot(*zip(*sorted(kl)), marker=".", linestyle="", label=ARM_TITLES[arm])
    axes[0].axhline(demo.start["mean_reward"], color="grey", linestyle=":", label="start policy (held out)")
    titles = [("gold reward (word_count rule)", "GRPO step"), ("proxy reward (RM mean)", "GRPO step"),
              ("gold reward vs KL to the start policy", "KL")]  # fmt: skip
    for ax, (title, xlabel) in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Reward overoptimization: RL against a proxy RM trained on noisy gold labels")
    return _save(fig, out)


def write_overopt_record(cfg: OveroptDemoConfig, demo: OveroptResult, flipped: float) -> None:
    from rewardlab.data.files import atomic_write_text

    def peak(values: list[float]) -> float:
        finite = [v for v in values if v == v]
        return max(finite) if finite else float("nan")

    rows = {}
    for arm in ARMS:
        a, c = demo.arms[arm], demo.arms[arm]["curves"]
        rows[arm] = {"gold_heldout": a["mean_reward"], "exact_rate_heldout": a["exact_rate"],
                     "mean_abs_error_heldout": a["mean_abs_error"], "gold_peak_logged": peak(c["gold"]),
                     "gold_last_logged": c["gold"][-1] if c["gold"] else None,
                     "proxy_last_logged": c["proxy"][-1] if c["proxy"] else None,
                     "kl_last_logged": c["kl"][-1] if c["kl"] else None, "examples": a["examples"],
                     "curves": c}  # fmt: skip
    summary = {"start_policy": {k: v for k, v in demo.start.items() if k != "examples"}, "arms": rows,
               "labels_flipped": flipped, "seconds": demo.seconds, "config": cfg.model_dump()}  # fmt: skip
    atomic_write_text(demo.run_dir / "demo_summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    s = demo.start
    members = f"{cfg.members} {'LoRA members' if cfg.ensemble_kind == 'lora' else 'heads'}"
    lines = ["# Overoptimization demo", "",
             f"Proxy RMs trained on {cfg.n_pairs} gold-labelled pairs ({flipped:.0%} of labels flipped); GRPO "
             f"{cfg.rl_steps} steps per arm, beta {cfg.beta}; ensemble of {members}, penalty λ = "
             f"{cfg.penalty}. Held-out: {cfg.n_eval} prompts, answers sampled at temperature 1.", "",
             "| | gold reward (held out) | exact-count rate | peak logged gold | last logged gold | last proxy | "
             "last KL |", "|---|---:|---:|---:|---:|---:|---:|",
             f"| start policy | {s['mean_reward']:.3f} | {s['exact_rate']:.3f} | | | | |"]  # fmt: skip
    for arm in ARMS:
        r = rows[arm]
        lines.append(f"| {ARM_TITLES[arm]} | {r['gold_heldout']:.3f} | {r['exact_rate_heldout']:.3f} | "
                     f"{r['gold_peak_logged']:.3f} | {_num(r['gold_last_logged'])} | {_num(r['proxy_last_logged'])} "
                     f"| {_num(r['kl_last_logged'])} |")  # fmt: skip
    lines += ["", "![overoptimization](overoptimization.png)", "", f"Time: {demo.seconds:.0f} s."]
    atomic_write_text(demo.run_dir / "report.md", "\n".join(lines) + "\n")


def _num(value: Any) -> str:
    return "–" if value is None or value != value else f"{value:.3f}"


def format_overopt_summary(demo: OveroptResult) -> str:
    s = demo.start
    lines = [f"start policy: held-out gold reward {s['mean_reward']:.3f}, exact {s['exact_rate']:.3f}"]
    for arm in ARMS:
        a, c = demo.arms[arm], demo.arms[arm]["curves"]
        lines.append(f"{ARM_TITLES[arm]:>18}: held-out gold {a['mean_reward']:.3f}, exact {a['exact_rate']:.3f}; "
                     f"last logged proxy {_num(c['proxy'][-1] if c['proxy'] else None)}, "
                     f"gold {_num(c['gold'][-1] if c['gold'] else None)}")  # fmt: skip
    run = demo.run_dir
    lines += [f"time {demo.seconds:.0f} s; run directory: {run}",
              f"  report: {run / 'report.md'}\n  plot:   {run / 'overoptimization.png'}"]  # fmt: skip
    return "\n".join(lines)
