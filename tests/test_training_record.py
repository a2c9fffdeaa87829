"""Learning-quality defects: evaluation and normalization without autocast rounding, a run's config.yaml that
records the training defaults it used, and a switch that turns dropout off."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from rewardlab.cli import main
from rewardlab.config.schema import TRAINING_DEFAULTS, ModelConfig
from rewardlab.data.synthetic import make_pairs
from rewardlab.evaluation.metrics import preference_accuracy, score_statistics
from rewardlab.models.backbones import load_backbone, load_tokenizer
from rewardlab.models.scorer import Scorer
from tests.test_cli import write_config
from tests.tiny import make_tiny, make_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("record"), n_train=64, n_eval=40)


def test_bf16_training_evaluates_and_normalizes_in_full_precision(workspace):
    """Under bf16 mixed precision the end-of-training eval used to run through autocast: tied, rounded scores, and
    a saved mean/std that `rewardlab eval` on the export could not reproduce."""
    cfg = write_config(workspace, "bf16", max_steps=6, save_strategy="no", eval_strategy="no", bf16=True, use_cpu=True)
    assert main(["train", "--config", str(cfg)]) == 0
    run = workspace / "bf16"
    meta = json.loads((run / "model" / "rewardlab.json").read_text())
    pairs = make_pairs(40, seed=2)  # the eval file of make_workspace
    chosen, rejected = Scorer.from_pretrained(str(run / "model"), device="cpu").score_pairs(pairs)
    stats = score_statistics(torch.tensor(chosen + rejected).numpy())
    assert meta["normalization"]["mean"] == pytest.approx(stats["mean"], abs=1e-5)
    assert meta["normalization"]["std"] == pytest.approx(stats["std"], abs=1e-5)
    accuracy = preference_accuracy(chosen, rejected)
    results = json.loads((run / "results.json").read_text())["metrics"]
    assert results["eval_accuracy"] == pytest.approx(accuracy["accuracy"], abs=1e-12)
    assert results["eval_ties"] == accuracy["ties"] == 0


def test_config_yaml_records_the_training_defaults_and_all_arguments(workspace):
    cfg = write_config(workspace, "recorded", max_steps=2, save_strategy="no", eval_strategy="no")
    assert main(["train", "--config", str(cfg)]) == 0
    run = workspace / "recorded"
    training = yaml.safe_load((run / "config.yaml").read_text())["training"]
    assert training["train_sampling_strategy"] == TRAINING_DEFAULTS["train_sampling_strategy"]
    assert training["warmup_steps"] == TRAINING_DEFAULTS["warmup_steps"]
    assert training["learning_rate"] == 1e-3  # the user's value wins
    args = json.loads((run / "training_args.json").read_text())
    assert args["max_steps"] == 2 and args["learning_rate"] == 1e-3 and "adam_beta2" in args
    # The recorded config is the run's config: resuming the finished run with it changes nothing.
    assert main(["train", "--config", str(cfg), "resume=true"]) == 0


@pytest.mark.parametrize("family", ["bert", "qwen2"])
def test_disable_dropout_makes_train_mode_forwards_identical(tmp_path, family):
    base = make_tiny(tmp_path / family, family)
    config_path = base / "config.json"
    config = json.loads(config_path.read_text())
    config.update({k: 0.3 for k in ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout")})
    config_path.write_text(json.dumps(config))
    ids = torch.tensor([[3, 17, 25, 40, 41, 9]])
    mask = torch.ones_like(ids)
    for disable in (False, True):
        cfg = ModelConfig(name_or_path=str(base), disable_dropout=disable)
        model = load_backbone(cfg, load_tokenizer(cfg), None).train()
        torch.manual_seed(0)
        first = model(input_ids=ids, attention_mask=mask).logits
        second = model(input_ids=ids, attention_mask=mask).logits
        assert torch.equal(first, second) is disable
