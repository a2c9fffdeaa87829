"""``rewardlab demo --rl``: offline, CPU, about a minute. A tiny policy learns to write exactly N words.

Measured on 2 CPU cores with the defaults (seed 0, 128 held-out prompts): mean reward −0.54 → 0.75, exact-count
rate 0.09 → 0.80, mean |error| 3.55 → 0.30 words, 64 s in all.

1. **Data**: generated prompts "Write exactly N words about TOPIC:" (N from 2 to 10) and a word list; a BPE tokenizer
   trained on them keeps every word one token.
2. **Policy**: a tiny Qwen2-style causal LM built from a config, warmed up with TRL's ``SFTTrainer`` on answers of
   1 to N_max + 2 random words *whatever N says* — so it writes words and stops, but does not count (about one
   answer in eleven has the right length by chance).
3. **RL**: :func:`~rewardlab.recipes.rl.run_rl` with the ``word_count`` rule on TRL's GRPO — the same code path as
   ``rewardlab rl`` — leaving a full run directory (metrics, reward curve, report, policy).
4. **Held-out prompts**, before and after RL: mean reward, exact-count rate and mean |error| of sampled answers
   (temperature 1, seeded: how the policy behaves, not its single most likely answer).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from rewardlab.config.schema import RLConfig, StrictModel

logger = logging.getLogger(__name__)

WORD_LIST = (
    "tea rain cats music river bread snow light stone wind garden ocean book night fire green warm quiet old small "
    "bright soft deep blue cold sweet wild clear dark fresh"
)
WORDS = tuple(WORD_LIST.split())  # the tokenizer keeps each one a single token
TOPICS = WORDS[:16]
REWARD_GAIN_TARGET = 0.5
EXACT_RATE_TARGET = 0.5


class RLDemoConfig(StrictModel):
    """Settings of ``rewardlab demo --rl``; the defaults meet the targets in about a minute on 2 CPU cores."""

    output_dir: str = Field("runs/rl-demo", description="Run directory.")
    seed: int = Field(0, description="Seed for prompts, model initialisation, sampling.")
    min_words: int = Field(2, ge=1, description="Smallest N asked for.")
    max_words: int = Field(10, ge=1, description="Largest N asked for.")
    n_prompts: int = Field(2000, ge=16, description="Generated training prompts.")
    n_eval: int = Field(128, ge=16, description="Held-out prompts scored before and after RL.")
    warmup_steps: int = Field(300, ge=1, description="Supervised warm-up steps (random-length answers).")
    rl_steps: int = Field(600, ge=1, description="GRPO steps.")
    learning_rate: float = Field(3e-4, gt=0, description="GRPO learning rate (constant).")
    num_generations: int = Field(8, ge=2, description="Answers sampled per prompt (GRPO's group).")
    prompts_per_step: int = Field(8, ge=1, description="Prompts per GRPO step.")


@dataclass
class RLDemoResult:
    run_dir: Path
    before: dict[str, float]
    after: dict[str, float]
    seconds: float

    @property
    def reward_gain(self) -> float:
        return self.after["mean_reward"] - self.before["mean_reward"]

    @property
    def ok(self) -> bool:
        return self.reward_gain >= REWARD_GAIN_TARGET and self.after["exact_rate"] >= EXACT_RATE_TARGET


def make_prompt(n: int, topic: str) -> str:
    return f"Write exactly {n} words about {topic}:"


def make_prompts(cfg: RLDemoConfig, count: int, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for _ in range(count):
        n = rng.randint(cfg.min_words, cfg.max_words)
        out.append({"prompt": make_prompt(n, rng.choice(TOPICS)), "target_words": n})
    return out


def random_answer(rng: random.Random, longest: int) -> str:
    return " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, longest)))


def build_policy(cfg: RLDemoConfig, directory: Path, rng: random.Random) -> Path:
    """A random tiny causal LM and a tokenizer trained on prompts and words (every word one token)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rewardlab.models.tiny import tiny_config, train_tokenizer

    longest = cfg.max_words + 2
    texts = [make_prompt(n, t) + random_answer(rng, longest) for n in range(cfg.min_words, cfg.max_words + 1)
             for t in TOPICS for _ in range(5)]  # fmt: skip
    # A base model: it sees plain prompts in training, so its tokenizer carries no chat template (tools that use
    # one when present, such as `rewardlab generate`, then prompt it plainly too).
    tokenizer = train_tokenizer(texts, 600, pad_is_eos=False, encoder=False, chat_template=False)
    config = tiny_config("qwen2", len(tokenizer), tokenizer, hidden=64, layers=2, heads=4)
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def warm_up(cfg: RLDemoConfig, base: Path, out: Path, rng: random.Random) -> Path:
    """Supervised warm-up with TRL's SFTTrainer: prompt → 1..(max_words + 2) random words, loss on the answer
    only (EOS included), length unrelated to N."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = [{"prompt": r["prompt"], "completion": random_answer(rng, cfg.max_words + 2)}
            for r in make_prompts(cfg, 32 * cfg.warmup_steps, rng)]  # fmt: skip
    args = SFTConfig(output_dir=str(out.parent / "warmup"), max_steps=cfg.warmup_steps, per_device_train_batch_size=32,
                     learning_rate=3e-3, lr_scheduler_type="constant", report_to=[], save_strategy="no",
                     logging_steps=50, use_cpu=True, bf16=False, seed=cfg.seed, completion_only_loss=True)  # fmt: skip
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(base), args=args,
                         train_dataset=Dataset.from_list(rows),
                         processing_class=AutoTokenizer.from_pretrained(base))  # fmt: skip
    trainer.train()
    trainer.model.save_pretrained(out)
    trainer.processing_class.save_pretrained(out)
    shutil.rmtree(args.output_dir, ignore_errors=True)  # nothing saved there (save_strategy "no")
    return out


def evaluate_policy(policy_dir: Path, prompts: list[dict[str, Any]], seed: int, max_new_tokens: int) -> dict[str, Any]:
    """Sampled answers (temperature 1, seeded) to ``prompts``: mean reward, exact-count rate, mean |error|."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardlab.rl.rules import count_words, word_count_reward

    tokenizer = AutoTokenizer.from_pretrained(policy_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
    enc = tokenizer([p["prompt"] for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_k=0,
                             top_p=1.0, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    answers = tokenizer.batch_decode(out[:, enc.input_ids.shape[1] :], skip_special_tokens=True)
    counts = [count_words(a) for a in answers]
    targets = [p["target_words"] for p in prompts]
    n = len(prompts)
    return {
        "mean_reward": sum(word_count_reward(t, c) for t, c in zip(targets, counts)) / n,
        "exact_rate": sum(t == c for t, c in zip(targets, counts)) / n,
        "mean_abs_error": sum(abs(t - c) for t, c in zip(targets, counts)) / n,
        "examples": [
            {"prompt": p["prompt"], "answer": a, "words": c} for p, a, c in zip(prompts[:5], answers, counts)
        ],
    }


def rl_demo_config(cfg: RLDemoConfig, run_dir: Path, policy: Path, prompts_file: Path) -> RLConfig:
    return RLConfig.model_validate({
        "output_dir": str(run_dir / "rl"),
        "seed": cfg.seed,
        "policy": {"name_or_path": str(policy)},
        "data": {"train": str(prompts_file)},
        "rewards": [{"type": "rule", "rule": "word_count"}],
        "algorithm": "grpo",
        "generation": {"num_generations": cfg.num_generations, "max_completion_length": cfg.max_words * 2 + 4},
        "training": {"max_steps": cfg.rl_steps, "learning_rate": cfg.learning_rate, "lr_scheduler_type": "constant",
                     "per_device_train_batch_size": cfg.num_generations * cfg.prompts_per_step,
                     "save_strategy": "no", "logging_steps": 10},
    })  # fmt: skip


def start_word_demo(cfg: RLDemoConfig, run_dir: Path) -> tuple[list[dict[str, Any]], Path, Path]:
    """What the word-count demos (this one and ``--overopt``) start from, in ``run_dir``: the held-out prompts, the
    training prompts' file and the warmed-up policy (steps 1–2 of the module docstring)."""
    from rewardlab.data.files import atomic_write_text
    from rewardlab.errors import ConfigError
    from rewardlab.recipes.run_dir import check_output_dir

    if cfg.min_words > cfg.max_words:
        raise ConfigError(f"min_words={cfg.min_words} is above max_words={cfg.max_words}")
    check_output_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    held_out = make_prompts(cfg, cfg.n_eval, random.Random(cfg.seed + 1))
    prompts_file = run_dir / "prompts.jsonl"
    atomic_write_text(prompts_file, "".join(json.dumps(r) + "\n" for r in make_prompts(cfg, cfg.n_prompts, rng)))
    base = build_policy(cfg, run_dir / "policy_init", rng)
    return held_out, prompts_file, warm_up(cfg, base, run_dir / "policy_warmup", rng)


def run_rl_demo(cfg: RLDemoConfig) -> RLDemoResult:
    from rewardlab.recipes.rl import run_rl

    start = time.time()
    run_dir = Path(cfg.output_dir)
    held_out, prompts_file, warm = start_word_demo(cfg, run_dir)
    max_new = cfg.max_words * 2 + 4
    before = evaluate_policy(warm, held_out, cfg.seed, max_new)
    logger.info("before RL: mean reward %.3f, exact %.3f", before["mean_reward"], before["exact_rate"])
    result = run_rl(rl_demo_config(cfg, run_dir, warm, prompts_file))
    after = evaluate_policy(result.policy_dir, held_out, cfg.seed, max_new)
    demo = RLDemoResult(run_dir, before, after, time.time() - start)
    write_rl_demo_record(cfg, demo, result.run_dir)
    return demo


def write_rl_demo_record(cfg: RLDemoConfig, demo: RLDemoResult, rl_dir: Path) -> None:
    from rewardlab.data.files import atomic_write_text

    b, a = demo.before, demo.after
    summary = {
        "mean_reward_before": b["mean_reward"], "mean_reward_after": a["mean_reward"],
        "exact_rate_before": b["exact_rate"], "exact_rate_after": a["exact_rate"],
        "mean_abs_error_before": b["mean_abs_error"], "mean_abs_error_after": a["mean_abs_error"],
        "n_eval": cfg.n_eval, "targets": {"reward_gain": REWARD_GAIN_TARGET, "exact_rate_after": EXACT_RATE_TARGET},
        "ok": demo.ok, "seconds": demo.seconds, "rl_run": str(rl_dir), "config": cfg.model_dump(),
        "examples_before": b["examples"], "examples_after": a["examples"],
    }  # fmt: skip
    atomic_write_text(demo.run_dir / "demo_summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    lines = ["# RL demo: write exactly N words", "",
             f"{cfg.n_eval} held-out prompts, N from {cfg.min_words} to {cfg.max_words}, answers sampled at "
             "temperature 1.", "",
             "| | before RL | after RL |", "|---|---:|---:|",
             f"| mean reward | {b['mean_reward']:.3f} | {a['mean_reward']:.3f} |",
             f"| exact-count rate | {b['exact_rate']:.3f} | {a['exact_rate']:.3f} |",
             f"| mean abs(error) in words | {b['mean_abs_error']:.2f} | {a['mean_abs_error']:.2f} |", "",
             f"Targets: mean reward up by ≥ {REWARD_GAIN_TARGET}, exact-count rate ≥ {EXACT_RATE_TARGET} after RL: "
             f"{'met' if demo.ok else 'NOT met'}. Time: {demo.seconds:.0f} s.", "",
             "![reward curve](rl/reward_curve.png)", "", "Examples after RL:", ""]  # fmt: skip
    lines += [f"- {e['prompt']} →{e['answer']} ({e['words']} words)" for e in a["examples"]]
    atomic_write_text(demo.run_dir / "report.md", "\n".join(lines) + "\n")


def format_rl_summary(demo: RLDemoResult) -> str:
    b, a = demo.before, demo.after
    return "\n".join([
        f"mean reward {b['mean_reward']:.3f} → {a['mean_reward']:.3f} (gain {demo.reward_gain:+.3f}, target "
        f"≥ {REWARD_GAIN_TARGET}); exact-count rate {b['exact_rate']:.3f} → {a['exact_rate']:.3f} (target ≥ "
        f"{EXACT_RATE_TARGET}); mean |error| {b['mean_abs_error']:.2f} → {a['mean_abs_error']:.2f} words: "
        f"{'OK' if demo.ok else 'BELOW TARGET'}",
        f"time {demo.seconds:.0f} s; run directory: {demo.run_dir}",
        f"  report: {demo.run_dir / 'report.md'}\n  curve:  {demo.run_dir / 'rl' / 'reward_curve.png'}",
        f"  policy: {demo.run_dir / 'rl' / 'policy'}",
    ])  # fmt: skip
