"""LoRA on vision-language reward models: adapter checkpoints and exports that load with one call, and the
projector frozen, adapted with LoRA or trained fully — on tiny random LLaVA and Qwen2-VL built from configs."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from rewardlab.config import TrainConfig, build_config
from rewardlab.config.schema import LoraSettings, ModelConfig, QuantizationSettings
from rewardlab.errors import ModelError
from rewardlab.models.bundle import RewardBundle
from rewardlab.models.checkpoint import save_reward_model
from rewardlab.models.export_meta import ExportMeta
from rewardlab.models.scorer import Scorer
from rewardlab.models.vision import FAMILIES
from rewardlab.recipes.train import run_train
from tests.tiny import make_tiny

VISION = ["llava", "qwen2_vl"]
LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def models(tiny_vlms):
    return {fam: tiny_vlms[fam] for fam in VISION}


def train_config(out, base, data, *, max_steps=3, save_steps=3, **lora):
    return build_config(TrainConfig, {
        "output_dir": str(out),
        "data": {"train": str(data), "max_length": 256},
        "model": {"name_or_path": str(base), "lora": {**LORA, **lora}},
        "training": {"max_steps": max_steps, "per_device_train_batch_size": 4, "learning_rate": 5e-3,
                     "logging_steps": 1, "save_strategy": "steps", "save_steps": save_steps, "warmup_steps": 0,
                     "lr_scheduler_type": "constant"},
    })  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shots, models):
    """``runs(family, projector)``: a run directory, trained once per module. 3 steps with a checkpoint at step 3,
    so ``checkpoint-3`` (always a LoRA adapter) holds the same weights as the export in ``model/``; runs with
    ``projector: lora`` export the adapter unmerged, the others merge it."""
    done = {}

    def get(family: str, projector: str):
        if (family, projector) not in done:
            out = tmp_path_factory.mktemp(f"{family}-{projector}") / "run"
            cfg = train_config(out, models[family], shots[0] / "train.jsonl", projector=projector,
                               merge_on_export=projector != "lora")  # fmt: skip
            done[family, projector] = run_train(cfg).run_dir
        return done[family, projector]

    return get


def merged_export(adapter_dir, target):
    """Merge an adapter directory's LoRA into its base weights and export that (the merged export of the same
    weights)."""
    return RewardBundle.load(adapter_dir).save(target, merge_lora=True)


def score(path, pairs):
    chosen, rejected = Scorer.from_pretrained(str(path), device="cpu").score_pairs(pairs)
    return chosen + rejected


@pytest.mark.parametrize("family", VISION)
def test_adapter_checkpoint_scores_match_the_merged_export(runs, models, shots, family):
    run = runs(family, "frozen")
    checkpoint = run / "checkpoint-3"
    adapter = json.loads((checkpoint / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(models[family]) and not (checkpoint / "config.json").exists()
    assert (run / "model" / "model.safetensors").is_file()  # merged at the same step
    pairs = shots[1]
    scorer = Scorer.from_pretrained(str(checkpoint), device="cpu")
    from_checkpoint = scorer.score_pairs(pairs)
    assert from_checkpoint[0] + from_checkpoint[1] == pytest.approx(score(run / "model", pairs), abs=1e-5)
    with scorer.model.backbone.disable_adapter():  # the adapter and trained head are what make these scores
        untrained = scorer.score_pairs(pairs)
    assert max(abs(a - b) for a, b in zip(untrained[0], from_checkpoint[0])) > 1e-3


@pytest.mark.parametrize("family", VISION)
def test_unmerged_export_loads_and_matches_its_merged_export(runs, shots, tmp_path, family):
    run = runs(family, "lora")
    model_dir = run / "model"
    assert (model_dir / "adapter_model.safetensors").is_file() and not (model_dir / "model.safetensors").exists()
    pairs = shots[1]
    unmerged = score(model_dir, pairs)
    assert unmerged == pytest.approx(score(merged_export(model_dir, tmp_path / "merged"), pairs), abs=1e-5)
    assert unmerged == pytest.approx(score(run / "checkpoint-3", pairs), abs=1e-6)


@pytest.mark.parametrize("projector", ["frozen", "lora", "full"])
@pytest.mark.parametrize("family", VISION)
def test_projector_frozen_adapted_or_trained_and_vision_tower_unchanged(runs, models, tmp_path, family, projector):
    run = runs(family, projector)
    merged = run / "model" if projector != "lora" else merged_export(run / "model", tmp_path / "merged")
    before, after = load_file(models[family] / "model.safetensors"), load_file(merged / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    parts = FAMILIES[family]
    in_projector = {k for k in before if f"{parts.projector}." in k}
    tower = {k for k in before if any(f"{m}." in k for m in parts.vision_modules)} - in_projector
    assert in_projector and tower and not changed & tower
    assert any("language_model" in k or k.startswith("model.layers") for k in changed)
    projector_changed = changed & in_projector
    if projector == "frozen":
        assert not projector_changed
    elif projector == "lora":  # merged LoRA moves the linear weights only
        assert projector_changed and all(k.endswith(".weight") for k in projector_changed)
    else:
        assert any(k.endswith(".bias") for k in projector_changed)
    adapter = load_file(run / "checkpoint-3" / "adapter_model.safetensors").keys()
    lora_on_projector = {k for k in adapter if f"{parts.projector}." in k and "lora_" in k}
    full_projector = {k for k in adapter if f"{parts.projector}." in k and "lora_" not in k}
    assert bool(lora_on_projector) == (projector == "lora") and bool(full_projector) == (projector == "full")
    if projector == "lora":  # the unmerged export carries the same adapters
        assert lora_on_projector <= load_file(run / "model" / "adapter_model.safetensors").keys()


def test_resuming_from_a_vision_lora_checkpoint_matches_an_uninterrupted_run(runs, models, shots, tmp_path):
    straight = runs("llava", "lora")
    data = shots[0] / "train.jsonl"
    split = train_config(tmp_path / "split", models["llava"], data, max_steps=2, save_steps=2, projector="lora",
                         merge_on_export=False)  # fmt: skip
    run_train(split)
    split.training["max_steps"] = 3
    split.resume = True
    run_train(split)
    pairs = shots[1]
    assert score(tmp_path / "split" / "model", pairs) == pytest.approx(score(straight / "model", pairs), abs=1e-5)


def test_adapter_whose_base_model_moved_is_a_model_error_naming_it(models, shots, tmp_path):
    from transformers import AutoTokenizer

    from rewardlab.models.backbones import apply_lora
    from rewardlab.models.reward_model import RewardModel
    from rewardlab.models.vision import VisionRewardBackbone

    base = shutil.copytree(models["llava"], tmp_path / "base")
    backbone = apply_lora(VisionRewardBackbone.from_pretrained(base), LoraSettings(**LORA), FAMILIES["llava"])
    tokenizer = AutoTokenizer.from_pretrained(base)
    adapter = save_reward_model(
        RewardModel(backbone, "last"), tokenizer, tmp_path / "adapter", ExportMeta(), merge_lora=False
    )
    assert not (adapter / "preprocessor_config.json").exists()  # the image processor comes from the base
    expected = score(adapter, shots[1][:2])
    moved = base.rename(tmp_path / "moved")
    message = re.escape(f"{adapter}: the LoRA adapter's base model {base} cannot be loaded")
    with pytest.raises(ModelError, match=message):
        Scorer.from_pretrained(str(adapter), device="cpu")
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(moved)}))
    assert score(adapter, shots[1][:2]) == pytest.approx(expected, abs=1e-6)  # the fix the message suggests


def test_projector_setting_on_a_text_model_is_an_error(tmp_path):
    from rewardlab.models.backbones import load_backbone, load_tokenizer, read_vision_family

    cfg = ModelConfig(name_or_path=str(make_tiny(tmp_path / "text")), lora={**LORA, "projector": "lora"})
    with pytest.raises(ModelError, match="model.lora.projector=lora needs a vision-language model"):
        load_backbone(cfg, load_tokenizer(cfg), read_vision_family(cfg.name_or_path))


@pytest.mark.parametrize("family", VISION)
def test_quantized_backbone_keeps_vision_tower_and_projector_in_full_precision(models, family):
    bnb = pytest.importorskip("bitsandbytes")
    from rewardlab.models.backbones import load_backbone, load_tokenizer, read_vision_family

    quantization = {"bits": 4, "compute_dtype": "float32"}
    cfg = ModelConfig(name_or_path=str(models[family]), quantization=quantization, lora={**LORA, "projector": "lora"})
    model = load_backbone(cfg, load_tokenizer(cfg), read_vision_family(cfg.name_or_path))
    parts = FAMILIES[family]
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    vision = [m for n, m in linears.items() if any(f".{p}." in n for p in (*parts.vision_modules, parts.projector))]
    language = [m for n, m in linears.items() if "language_model" in n and n.endswith("q_proj.base_layer")]
    assert vision and not any(isinstance(m, bnb.nn.Linear4bit) for m in vision)
    assert language and all(isinstance(m, bnb.nn.Linear4bit) for m in language)
    projector_lora = [n for n in linears if f".{parts.projector}." in n and ".lora_A." in n]
    assert len(projector_lora) == 2  # both projector linears are adapted, in full precision


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed here")
def test_flash_attention_without_the_package_is_a_clear_model_error(models):
    from rewardlab.models.backbones import load_backbone, load_tokenizer, read_vision_family

    cfg = ModelConfig(name_or_path=str(models["llava"]), attn_implementation="flash_attention_2")
    with pytest.raises(ModelError, match=r"package the model settings need is missing: .*FlashAttention.*sdpa"):
        load_backbone(cfg, load_tokenizer(cfg), read_vision_family(cfg.name_or_path))


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")
def test_qlora_vlm_trains_exports_adapter_and_head_and_scores_like_training(models, shots, tmp_path):
    """The LLaVA QLoRA recipe end to end on CPU: 4-bit language model, LoRA, the export is adapter + head on the
    full-precision base, and eval during training agrees with scoring the export."""
    cfg = train_config(tmp_path / "run", models["llava"], shots[0] / "train.jsonl", max_steps=2, save_steps=2)
    cfg.model.quantization = QuantizationSettings(bits=4, compute_dtype="float32")
    cfg.data.eval = cfg.data.train
    cfg.training.update(use_cpu=True, eval_strategy="steps", eval_steps=2)
    result = run_train(cfg)
    model_dir = result.model_dir
    assert (model_dir / "adapter_config.json").is_file() and not (model_dir / "model.safetensors").exists()
    chosen, rejected = Scorer.from_pretrained(str(model_dir), device="cpu").score_pairs(shots[1])
    accuracy = sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)
    # Scored on the full-precision base instead of the 4-bit one: the same ranking up to quantization noise.
    assert accuracy == pytest.approx(result.metrics["eval_accuracy"], abs=0.25)
    assert all(map(lambda x: x == x, chosen + rejected))
