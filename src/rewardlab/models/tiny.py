"""Tiny models built from configs, with a tokenizer trained in memory: for the demo, tests and benchmarks.

Nothing is downloaded. The result is a normal model directory (``config.json``, weights, tokenizer) that
``AutoModelForSequenceClassification`` / ``AutoTokenizer`` load like any hub model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

# A ChatML-style template so conversational records work with tiny tokenizers too.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>", "[CLS]", "[SEP]", "[UNK]"]
Family = Literal["qwen2", "qwen3", "llama", "bert"]


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 512,
    *,
    pad_is_eos: bool = False,
    encoder: bool = False,
    extra_specials: list[str] | None = None,
    chat_template: bool = True,
):
    """Byte-level BPE trained on ``texts`` in about a second, wrapped as a ``PreTrainedTokenizerFast``; with
    ``chat_template``, it carries :data:`CHAT_TEMPLATE` (leave it out for a base model trained on plain text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS + (extra_specials or []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(texts, trainer=trainer)
    if encoder:
        # BERT's pair layout, so `tokenizer(prompt, response)` gives what rewardlab's transform builds.
        from tokenizers import processors

        cls_id, sep_id = core.token_to_id("[CLS]"), core.token_to_id("[SEP]")
        core.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    special = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>" if pad_is_eos else "<|pad|>"}
    if encoder:
        special.update(cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"]
        if encoder
        else ["input_ids", "attention_mask"],
        **special,
    )
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_config(family: Family, vocab_size: int, tokenizer, *, hidden: int = 64, layers: int = 2, heads: int = 4):
    from transformers import BertConfig, LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    if family == "bert":
        return BertConfig(**common, type_vocab_size=2)
    decoder = dict(
        common,
        num_key_value_heads=max(1, heads // 2),
        head_dim=hidden // heads,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    cls = {"qwen2": Qwen2Config, "qwen3": Qwen3Config, "llama": LlamaConfig}[family]
    return cls(**decoder)


def build_tiny_model(
    directory: str | Path,
    texts: Iterable[str],
    *,
    family: Family = "qwen2",
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    pad_is_eos: bool = False,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised ``*ForSequenceClassification`` (``num_labels=1``) and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification

    tokenizer = train_tokenizer(texts, vocab_size, pad_is_eos=pad_is_eos, encoder=family == "bert")
    config = tiny_config(family, len(tokenizer), tokenizer, hidden=hidden, layers=layers, heads=heads)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


VisionFamilyName = Literal["llava", "llava_next", "qwen2_vl", "qwen2_5_vl"]
VISION_SPECIALS = ["<image>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>"]


def tiny_vlm_config(
    family: VisionFamilyName,
    tokenizer,
    *,
    hidden: int = 64,
    layers: int = 2,
    image_size: int = 64,
    patch_size: int | None = None,
    vision_layers: int | None = None,
    initializer_range: float = 0.02,
):
    """A small LLaVA-1.5 or LLaVA-NeXT (CLIP vision tower + Llama) or Qwen2(.5)-VL config, ids from ``tokenizer``.

    LLaVA-NeXT tiles an image into ``image_size`` crops on a grid of 1×1, 1×2, 2×1 or 2×2 (whichever fits its
    aspect ratio best) plus one resized overview, so its number of image tokens depends on the image size.

    ``patch_size`` (default 16 for LLaVA; Qwen-VL's patches are 14 pixels, merged 2×2, and nothing else) and
    ``vision_layers`` (default ``layers``) size the vision tower. ``initializer_range`` is the language model's
    init std (transformers' default 0.02 leaves attention almost uniform in a model this narrow).
    """
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaNextConfig,
        Qwen2_5_VLConfig,
        Qwen2VLConfig,
    )

    if family.startswith("qwen") and patch_size not in (None, 14):
        raise ValueError(f"{family}: patch_size must be 14 (or None), got {patch_size}")
    patch = patch_size or 16
    vision_layers = vision_layers or layers

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VISION_SPECIALS}
    text = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        initializer_range=initializer_range,
    )  # fmt: skip
    if family.startswith("llava"):
        vision = CLIPVisionConfig(
            hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=vision_layers, num_attention_heads=4,
            image_size=image_size, patch_size=patch, projection_dim=hidden,
        )  # fmt: skip
    if family == "llava_next":
        return LlavaNextConfig(
            vision_config=vision, text_config=LlamaConfig(**text), image_token_id=ids["<image>"],
            image_grid_pinpoints=llava_next_grid(image_size), vision_feature_layer=-1,
            vision_feature_select_strategy="default", projector_hidden_act="gelu",
        )  # fmt: skip
    if family == "llava":
        return LlavaConfig(
            vision_config=vision, text_config=LlamaConfig(**text), image_token_id=ids["<image>"],
            image_seq_length=(image_size // patch) ** 2, vision_feature_layer=-1,
            vision_feature_select_strategy="default", projector_hidden_act="gelu",
        )  # fmt: skip
    head_dim = hidden // 4
    text["rope_scaling"] = {"type": "mrope", "mrope_section": [head_dim // 8, head_dim // 8, head_dim // 4]}
    common = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    if family == "qwen2_vl":
        vision = dict(
            depth=vision_layers, embed_dim=hidden, hidden_size=hidden, num_heads=4, mlp_ratio=2, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
        )  # fmt: skip
        return Qwen2VLConfig(text_config=text, vision_config=vision, **common)
    vision = dict(
        depth=vision_layers, hidden_size=hidden, intermediate_size=2 * hidden, num_heads=4, out_hidden_size=hidden,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
        fullatt_block_indexes=[vision_layers - 1], in_chans=3,
    )  # fmt: skip
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)


def llava_next_grid(side: int) -> list[list[int]]:
    """LLaVA-NeXT's candidate tilings for crops of ``side`` pixels: 1×1, 1×2, 2×1 and 2×2."""
    return [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]


def build_tiny_vlm(
    directory: str | Path,
    texts: Iterable[str],
    *,
    family: VisionFamilyName = "llava",
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    image_size: int = 64,
    seed: int = 0,
    patch_size: int | None = None,
    vision_layers: int | None = None,
    initializer_range: float = 0.02,
) -> Path:
    """Write a randomly initialised VLM (``AutoModelForImageTextToText`` loads it), its tokenizer and its PIL
    image processor. The reward head is added when rewardlab loads it. ``patch_size``, ``vision_layers`` and
    ``initializer_range``: see :func:`tiny_vlm_config`."""
    import torch
    from transformers import AutoModelForImageTextToText

    tokenizer = train_tokenizer(texts, vocab_size, extra_specials=VISION_SPECIALS)
    config = tiny_vlm_config(family, tokenizer, hidden=hidden, layers=layers, image_size=image_size,
                             patch_size=patch_size, vision_layers=vision_layers,
                             initializer_range=initializer_range)  # fmt: skip
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if family == "llava":
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        side = {"height": image_size, "width": image_size}
        processor = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size=side)
    elif family == "llava_next":
        from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

        side = {"height": image_size, "width": image_size}
        processor = LlavaNextImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size=side, image_grid_pinpoints=llava_next_grid(image_size)
        )
    else:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        area = (image_size // 28 * 28) ** 2
        processor = Qwen2VLImageProcessorPil(min_pixels=area, max_pixels=area, patch_size=14, merge_size=2)
    processor.save_pretrained(directory)
    return directory
