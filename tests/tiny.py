"""Tiny models for tests: built from configs with a tokenizer trained on generated text; nothing downloaded."""

from __future__ import annotations

from pathlib import Path

from rewardlab.data.synthetic import corpus, make_pairs
from rewardlab.models.tiny import build_tiny_model

PAIRS = make_pairs(200, seed=123)


def make_tiny(directory: Path, family: str = "qwen2", *, pad_is_eos: bool = False, seed: int = 0) -> Path:
    return build_tiny_model(
        directory,
        corpus(PAIRS),
        family=family,
        vocab_size=400,
        hidden=32,
        layers=2,
        heads=2,
        pad_is_eos=pad_is_eos,
        seed=seed,
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pair_rows(pairs) -> list[dict]:
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


def make_workspace(root: Path, *, n_train: int = 160, n_eval: int = 40) -> Path:
    """A folder with a tiny Qwen2 base model (``base/``) and generated ``train.jsonl`` / ``eval.jsonl`` pairs, as
    the CLI tests' configs (``tests.test_cli.write_config``) expect."""
    make_tiny(root / "base", "qwen2")
    write_jsonl(root / "train.jsonl", pair_rows(make_pairs(n_train, seed=1)))
    write_jsonl(root / "eval.jsonl", pair_rows(make_pairs(n_eval, seed=2)))
    return root
