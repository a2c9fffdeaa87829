"""Real architectures at random weights: configs from ``configs/*.json``, a small byte-level BPE tokenizer, and
generated pairs of a chosen length. Nothing is downloaded.

The configs are the architectures' published hyperparameters. The model's vocabulary stays the real one (the
embedding and its memory are real); the tokenizer is small and its ids use the low range only. ``dry`` shrinks
every width and depth (the vocabulary and the code path stay), so the whole benchmark runs on a CPU in a minute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parent / "configs"
TOKENIZER_VOCAB = 2000
# --dry: the decoder's widths and depth (kv heads where the config has them).
DRY_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16}  # fmt: skip
DRY_VISION = {
    "qwen2_5_vl": {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 64,
                   "fullatt_block_indexes": [1], "window_size": 56},
    "llava": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "projection_dim": 64},
}  # fmt: skip
# The vision benchmark keeps real widths but fewer layers (said in its report): a few VLM train steps must fit
# in about a minute, model build included.
VISION_TEXT_LAYERS = 8
VISION_TOWER_LAYERS = {"qwen2_5_vl": 8, "llava": 24}  # CLIP ViT-L/14 is cheap: all 24 layers


def read_config(name: str) -> dict[str, Any]:
    """``configs/<name>.json`` without the fields that describe a checkpoint rather than the architecture."""
    raw = json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in raw.items() if k not in ("architectures", "torch_dtype")}


def token_ids(tokenizer: Any) -> dict[str, Any]:
    """The special-token ids a config must carry, from our tokenizer (the real ids lie beyond its range)."""
    return {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None}


def text_config(name: str, tokenizer: Any, *, dry: bool = False, layers: int | None = None) -> Any:
    """The decoder config ``name`` with ``num_labels=1``; ``layers`` caps the depth."""
    from transformers import AutoConfig

    raw = {**read_config(name), **token_ids(tokenizer), **(DRY_TEXT if dry else {})}
    if layers:
        raw["num_hidden_layers"] = min(layers, raw["num_hidden_layers"])
    raw.pop("max_window_layers", None)  # Qwen3 sizes its layer list from it; irrelevant without sliding windows
    model_type = raw.pop("model_type")
    return AutoConfig.for_model(model_type, num_labels=1, **raw)


def train_tokenizer(seed: int = 0) -> Any:
    """The same small tokenizer for every model, trained in memory on rewardlab's synthetic corpus."""
    from rewardlab.data.synthetic import corpus, make_pairs
    from rewardlab.models.tiny import train_tokenizer as train

    return train(corpus(make_pairs(2000, seed)) + ["Human:"], TOKENIZER_VOCAB)


def build_text_model(directory: Path, name: str, *, device: str, dry: bool = False) -> dict[str, Any]:
    """Writes ``configs/<name>.json``'s architecture with random bf16 weights (initialised on ``device``, which is
    fast for billions of parameters) and the small tokenizer; returns its description (bench_train's keys)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    tokenizer = train_tokenizer()
    config = text_config(name, tokenizer, dry=dry)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(directory, max_shard_size="100GB")  # one file: quicker to write and read
    tokenizer.save_pretrained(directory)
    info = describe(model, name, config)
    del model
    return info


def describe(model: Any, name: str, config: Any) -> dict[str, Any]:
    """The architecture in numbers; ``params_m``, ``vocab`` and ``hidden`` are what bench_train's MFU reads."""
    text = config.get_text_config()
    return {
        "config": name,
        "architecture": type(model).__name__,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "hidden": text.hidden_size,
        "layers": text.num_hidden_layers,
        "heads": text.num_attention_heads,
        "kv_heads": getattr(text, "num_key_value_heads", text.num_attention_heads),
        "intermediate": text.intermediate_size,
        "vocab": text.vocab_size,
    }


def write_pairs(path: Path, model_dir: Path, n: int, seq: int, seed: int = 0) -> dict[str, Any]:
    """``n`` generated pairs whose longer row is up to ~``seq`` tokens (prompt 45–65 %, each response 10–25 % of
    it), as JSONL; returns bench_train's length statistics."""
    from bench_train import _data_stats, generated_pairs
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    spans = {"prompt_tokens": (int(0.45 * seq), int(0.65 * seq)), "response_tokens": (seq // 10, seq // 4)}
    rows = generated_pairs(n, seed, tokenizer, **spans)
    with path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return _data_stats(rows, tokenizer)


def vision_config(name: str, family: str, tokenizer: Any, *, image_size: int, dry: bool = False) -> Any:
    """A LLaVA-1.5 or Qwen2.5-VL config at real widths with :data:`VISION_TEXT_LAYERS` decoder layers and
    :data:`VISION_TOWER_LAYERS` vision layers (``dry``: tiny widths), token ids from our tokenizer."""
    from transformers import AutoConfig

    raw = read_config(name)
    text = {**raw.pop("text_config"), **token_ids(tokenizer), "num_hidden_layers": VISION_TEXT_LAYERS}
    vision = dict(raw.pop("vision_config"))
    if family == "qwen2_5_vl":
        depth = VISION_TOWER_LAYERS[family]
        # Full attention every 8th block, as in the real tower, at the reduced depth.
        vision.update(depth=depth, fullatt_block_indexes=[i for i in range(depth) if i % 8 == 7] or [depth - 1])
        ids = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
        keys = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        raw.update({k: tokenizer.convert_tokens_to_ids(t) for k, t in zip(keys, ids)})
    else:
        vision.update(num_hidden_layers=VISION_TOWER_LAYERS[family], image_size=image_size)
        raw.update(image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
        raw["image_seq_length"] = (image_size // vision["patch_size"]) ** 2
    if dry:
        text.update({k: v for k, v in DRY_TEXT.items() if k != "head_dim"})
        vision.update(DRY_VISION[family])
        if family == "qwen2_5_vl":  # M-RoPE sections cover half the head dimension (64 / 4 heads / 2 = 8)
            text["rope_scaling"] = {"type": "mrope", "mrope_section": [2, 3, 3]}
    return AutoConfig.for_model(raw.pop("model_type"), text_config=text, vision_config=vision, **raw)


def build_vlm(directory: Path, name: str, family: str, *, image_size: int, device: str, dry: bool) -> dict[str, Any]:
    """rewardlab's tiny VLM builder writes the tokenizer and the image processor for ``image_size``; the model
    is then replaced by the real-width one (random bf16 weights)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from rewardlab.data.synthetic import corpus, make_pairs
    from rewardlab.models.tiny import build_tiny_vlm

    patch = 14 if family == "llava" else None  # LLaVA-1.5's CLIP ViT-L/14; Qwen-VL's patches are always 14
    build_tiny_vlm(directory, corpus(make_pairs(500, 0)), family=family, vocab_size=TOKENIZER_VOCAB,
                   image_size=image_size, patch_size=patch)  # fmt: skip
    config = vision_config(name, family, AutoTokenizer.from_pretrained(directory), image_size=image_size, dry=dry)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    for old in directory.glob("model*.safetensors*"):
        old.unlink()
    model.save_pretrained(directory, max_shard_size="100GB")
    info = describe(model, name, config)
    info["vision_layers"] = getattr(config.vision_config, "depth", None) or config.vision_config.num_hidden_layers
    del model
    return info
