"""Training features end to end on tiny models: pad == eos, listwise groups, LoRA + checkpointing, encoders,
TensorBoard, the real hh-rlhf file. Each asserts learning or exact reload, not just "it ran"."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from rewardlab.config import TrainConfig, build_config
from rewardlab.data.records import PreferencePair
from rewardlab.data.synthetic import make_pairs
from rewardlab.evaluation.metrics import preference_accuracy
from rewardlab.models.scorer import Scorer
from rewardlab.recipes.train import run_train
from tests.tiny import make_tiny, pair_rows, write_jsonl

EVAL_PAIRS = make_pairs(120, seed=99)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    write_jsonl(root / "train.jsonl", pair_rows(make_pairs(400, seed=5)))
    write_jsonl(root / "eval.jsonl", pair_rows(EVAL_PAIRS))
    return root


def train(tmp: Path, base: Path, data_dir: Path, **sections) -> tuple[TrainConfig, object]:
    cfg = {
        "output_dir": str(tmp / "run"),
        "data": {"train": str(data_dir / "train.jsonl"), "eval": str(data_dir / "eval.jsonl"), "max_length": 96},
        "model": {"name_or_path": str(base)},
        "training": {
            "num_train_epochs": 3,
            "per_device_train_batch_size": 16,
            "learning_rate": 2e-3,
            "logging_steps": 5,
            "save_strategy": "no",
            "eval_strategy": "no",
        },
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    config = build_config(TrainConfig, cfg)
    return config, run_train(config)


def held_out_accuracy(model_dir: Path) -> float:
    chosen, rejected = Scorer.from_pretrained(str(model_dir), device="cpu").score_pairs(EVAL_PAIRS)
    return preference_accuracy(chosen, rejected)["accuracy"]


def test_pad_equals_eos_still_learns(tmp_path, data):
    """Padding with the EOS (asked for here: by default a distinct pad-like token of the vocabulary is taken)
    trains as well, since rewardlab pools from the attention mask; the model card warns outside tools."""
    base = make_tiny(tmp_path / "base", pad_is_eos=True)
    _, result = train(tmp_path, base, data, model={"pad_token": "<|endoftext|>"})
    meta = json.loads((result.model_dir / "rewardlab.json").read_text())
    assert meta["pad_equals_eos"] is True
    assert "The pad token is the EOS token" in (result.model_dir / "README.md").read_text()
    assert result.metrics["eval_accuracy"] >= 0.8
    assert held_out_accuracy(result.model_dir) == pytest.approx(result.metrics["eval_accuracy"], abs=1e-9)


def test_listwise_plackett_luce_on_ranked_groups(tmp_path, data):
    groups = []
    for p in make_pairs(300, seed=6):
        worse = f"Stop bothering me. {p.rejected}"  # another flawed answer, tied with the first
        groups.append({"prompt": p.prompt, "responses": [p.chosen, p.rejected, worse], "ranks": [1, 2, 2]})
    write_jsonl(tmp_path / "groups.jsonl", groups)
    base = make_tiny(tmp_path / "base")
    _, result = train(
        tmp_path,
        base,
        data,
        data={"train": str(tmp_path / "groups.jsonl"), "ranked_as": "groups"},
        loss={"name": "plackett_luce"},
    )
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in rows if "loss" in r]
    assert train_losses[-1] < train_losses[0]
    assert result.metrics["eval_accuracy"] >= 0.8
    assert result.counts["records"][str(tmp_path / "groups.jsonl")]["ties"] == 300


def test_lora_with_activation_checkpointing_trains_and_exports_merged(tmp_path, data):
    base = make_tiny(tmp_path / "base")
    _, result = train(
        tmp_path,
        base,
        data,
        model={"lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        training={"activation_checkpointing": True, "learning_rate": 5e-3},
    )
    assert not (result.model_dir / "adapter_config.json").exists()
    assert result.metrics["eval_accuracy"] >= 0.75
    # The merged export is a plain sequence-classification model with the trained head.
    native = AutoModelForSequenceClassification.from_pretrained(result.model_dir)
    assert type(native).__name__ == "Qwen2ForSequenceClassification"
    assert held_out_accuracy(result.model_dir) == pytest.approx(result.metrics["eval_accuracy"], abs=1e-9)


def test_lora_adapter_export_and_margin_centering(tmp_path, data):
    rows = [{**r, "margin": 0.5} for r in pair_rows(make_pairs(200, seed=8))]
    write_jsonl(tmp_path / "margins.jsonl", rows)
    base = make_tiny(tmp_path / "base")
    _, result = train(
        tmp_path,
        base,
        data,
        data={"train": str(tmp_path / "margins.jsonl")},
        model={"lora": {"r": 4, "merge_on_export": False}},
        loss={"center_coefficient": 0.01},
        training={"num_train_epochs": 1},
    )
    assert (result.model_dir / "adapter_config.json").is_file()
    assert held_out_accuracy(result.model_dir) == pytest.approx(result.metrics["eval_accuracy"], abs=1e-9)


def test_encoder_with_segment_ids_learns(tmp_path, data):
    base = make_tiny(tmp_path / "base", "bert")
    _, result = train(tmp_path, base, data, training={"learning_rate": 1e-3})
    meta = json.loads((result.model_dir / "rewardlab.json").read_text())
    assert meta["pooling"] == "cls" and meta["padding_side"] == "right"
    assert result.metrics["eval_accuracy"] >= 0.8


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_logs_offline(tmp_path, data):
    base = make_tiny(tmp_path / "base")
    _, result = train(
        tmp_path,
        base,
        data,
        training={"report_to": ["tensorboard"], "max_steps": 10},
    )
    # transformers writes them under output_dir/runs/<date>_<host> (or $TENSORBOARD_LOGGING_DIR).
    assert list((result.run_dir / "runs").rglob("events.out.tfevents.*"))


def test_hh_rlhf_real_file_with_truncation(tmp_path, shared_data_dir):
    base = make_tiny(tmp_path / "base")
    hh = shared_data_dir / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    _, result = train(
        tmp_path,
        base,
        shared_data_dir,
        data={"train": {"path": str(hh), "max_samples": 64}, "eval": None, "max_length": 48},
        training={"max_steps": 4, "num_train_epochs": 1},
    )
    counts = result.counts
    assert counts["train"]["seen"] == 64
    assert 0 < counts["train"]["truncated"] <= 64 and counts["train"]["dropped"] == 0
    assert "truncated" in (result.run_dir / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("all_minilm_l6_v2") is None, reason="rewardlab[minilm] not installed")
def test_packaged_minilm_trains(tmp_path, data):
    """`model.name_or_path: minilm` is the packaged MiniLM, offline; the config keeps the name."""
    cfg, result = train(
        tmp_path,
        "minilm",
        data,
        training={"max_steps": 12, "learning_rate": 5e-5, "per_device_train_batch_size": 8},
    )
    meta = json.loads((result.model_dir / "rewardlab.json").read_text())
    assert meta["pooling"] == "cls" and meta["config"]["model"]["name_or_path"] == "minilm"
    assert "name_or_path: minilm" in (result.run_dir / "config.yaml").read_text()
    assert result.metrics["eval_n"] == 120


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("all_minilm_l6_v2") is None, reason="rewardlab[minilm] not installed")
def test_the_shipped_minilm_hh_rlhf_config_trains(tmp_path, shared_data_dir, monkeypatch):
    """configs/minilm-hh-rlhf.yaml as the README gives it (run from the repository root), three steps."""
    from rewardlab.cli import main
    from rewardlab.config import load_config

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    config = repo / "configs" / "minilm-hh-rlhf.yaml"
    cfg = load_config(TrainConfig, config)
    assert Path(cfg.data.train.path).resolve() == (shared_data_dir / "hh-rlhf/harmless-base/test.jsonl.gz").resolve()
    out = tmp_path / "run"
    overrides = [f"output_dir={out}", "training.max_steps=3", "data.train.max_samples=200"]
    assert main(["train", "--config", str(config), *overrides]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["global_step"] == 3 and 0 < results["metrics"]["eval_n"] < 60  # about 10 % of 200 held out
    assert json.loads((out / "model" / "rewardlab.json").read_text())["pooling"] == "cls"


def test_swap_invariant_after_training(tmp_path, data):
    base = make_tiny(tmp_path / "base")
    _, result = train(tmp_path, base, data, training={"max_steps": 10})
    scorer = Scorer.from_pretrained(str(result.model_dir), device="cpu")
    c, r = scorer.score_pairs(EVAL_PAIRS[:10])
    c2, r2 = scorer.score_pairs([PreferencePair(p.prompt, p.rejected, p.chosen) for p in EVAL_PAIRS[:10]])
    assert torch.allclose(torch.tensor(c) - torch.tensor(r), -(torch.tensor(c2) - torch.tensor(r2)), atol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")
def test_qlora_4bit_trains_and_exports_adapter_and_head(tmp_path, data):
    base = make_tiny(tmp_path / "base")
    _, result = train(
        tmp_path,
        base,
        data,
        model={"lora": {"r": 4}, "quantization": {"bits": 4, "compute_dtype": "float32"}},
        training={"max_steps": 4, "num_train_epochs": 1, "use_cpu": True},
    )
    # Adapter + head, loaded onto the full-precision base: the standard QLoRA deployment.
    assert (result.model_dir / "adapter_config.json").is_file()
    assert held_out_accuracy(result.model_dir) == pytest.approx(result.metrics["eval_accuracy"], abs=0.05)


def test_quantization_without_lora_is_a_config_error():
    from rewardlab.errors import ConfigError

    with pytest.raises(ConfigError, match="model.quantization needs model.lora"):
        build_config(
            TrainConfig,
            {"output_dir": "o", "data": {"train": "t"}, "model": {"name_or_path": "m", "quantization": {"bits": 4}}},
        )
