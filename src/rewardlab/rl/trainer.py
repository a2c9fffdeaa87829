"""TRL's GRPO / RLOO trainer from an :class:`~rewardlab.config.schema.RLConfig`. The loop is TRL's: rewardlab
brings the rewards, the data, the defaults and the checks.

Only generated tokens carry the learning signal: TRL scores the completion tokens alone (the prompt's logits are
never computed for the loss), and its completion mask is 1 up to and including the first EOS and 0 after it and
on padding (``tests/test_rl.py`` checks the gradient is exactly zero there).
"""

from __future__ import annotations

import logging
from typing import Any

from rewardlab.config.schema import RLConfig
from rewardlab.errors import ConfigError
from rewardlab.training.arguments import check_training_keys, check_training_values

logger = logging.getLogger(__name__)

# Under the user's `training:` keys; everything else is TRL's default (learning rate, epochs, beta...). A step's
# batch is one prompt's group unless per_device_train_batch_size says otherwise.
RL_DEFAULTS: dict[str, Any] = {
    "report_to": [],
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 100,
    "save_total_limit": 2,
}


def trl_config_class(algorithm: str) -> type:
    from trl import GRPOConfig, RLOOConfig

    return GRPOConfig if algorithm == "grpo" else RLOOConfig


def build_trl_args(cfg: RLConfig, *, has_eval: bool, reward_weights: list[float]) -> Any:
    import torch

    cls = trl_config_class(cfg.algorithm)
    check_training_keys(cfg.training, cls)
    user = check_training_values(cfg.training, cls)
    user = {k: ("no" if k.endswith("_strategy") and v is False else v) for k, v in user.items()}
    gen = cfg.generation
    kwargs = {
        **RL_DEFAULTS,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "use_cpu": not torch.cuda.is_available(),
        "per_device_train_batch_size": gen.num_generations,
        "per_device_eval_batch_size": gen.num_generations,
        **user,
        "output_dir": cfg.output_dir,
        "seed": cfg.seed,
        "num_generations": gen.num_generations,
        "max_completion_length": gen.max_completion_length,
        "temperature": gen.temperature,
        "top_p": gen.top_p,
        "reward_weights": reward_weights,
    }
    if has_eval:
        kwargs.setdefault("eval_strategy", "steps")
        if kwargs["eval_strategy"] == "steps":
            kwargs.setdefault("eval_steps", kwargs.get("save_steps"))
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid training settings for {cfg.algorithm}: {exc}") from None


def load_policy(cfg: RLConfig) -> tuple[Any, Any]:
    """The policy model and its tokenizer (left padding for generation; the EOS pads when there is no pad)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = cfg.policy
    try:
        tokenizer = AutoTokenizer.from_pretrained(p.name_or_path, trust_remote_code=p.trust_remote_code)
        dtype = "auto" if p.dtype == "auto" else getattr(torch, p.dtype)
        model = AutoModelForCausalLM.from_pretrained(p.name_or_path, dtype=dtype,
                                                     trust_remote_code=p.trust_remote_code)  # fmt: skip
    except (OSError, ValueError) as exc:
        raise ConfigError(f"policy.name_or_path={p.name_or_path}: cannot load a causal LM and its tokenizer ({exc})"
                          ) from None  # fmt: skip
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def peft_config(cfg: RLConfig) -> Any:
    lora = cfg.policy.lora
    if lora is None:
        return None
    if lora.projector != "frozen":
        raise ConfigError("policy.lora.projector applies to vision reward models, not to a policy")
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
                      task_type="CAUSAL_LM")  # fmt: skip


def build_trainer(cfg: RLConfig, train_set: Any, eval_set: Any, reward_funcs: list, reward_weights: list[float],
                  callbacks: list) -> Any:  # fmt: skip
    from trl import GRPOTrainer, RLOOTrainer

    args = build_trl_args(cfg, has_eval=eval_set is not None, reward_weights=reward_weights)
    model, tokenizer = load_policy(cfg)
    cls = GRPOTrainer if cfg.algorithm == "grpo" else RLOOTrainer
    return cls(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config(cfg),
        callbacks=callbacks,
    )
