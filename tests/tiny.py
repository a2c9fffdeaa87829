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
