"""The reward-model object: one assembly for training and loading, a typed rewardlab.json, one family entry per VLM,
the loss registry and one scoring-settings section."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest

from rewardlab.config import TrainConfig, build_config
from rewardlab.config.schema import LossConfig, ScoreConfig, ScoringSettings, ServeConfig
from rewardlab.errors import ConfigError, ModelError
from rewardlab.models.bundle import RewardBundle
from rewardlab.models.export_meta import META_NAME, ExportMeta, Normalization
from rewardlab.models.scorer import Scorer
from rewardlab.models.vision import FAMILIES
from rewardlab.training.losses import LOSSES
from tests.tiny import PAIRS, make_tiny, pair_rows, write_jsonl

SRC = Path(__file__).resolve().parents[1] / "src" / "rewardlab"


# -- ExportMeta ------------------------------------------------------------------------------------------------
def test_export_meta_round_trips_and_keeps_keys_it_does_not_know(tmp_path):
    meta = ExportMeta(pooling="last", max_length=96, normalization=Normalization(mean=0.5, std=2.0, n=10),
                      metrics={"eval_accuracy": 0.75}, config={"seed": 3})  # fmt: skip
    meta.write(tmp_path)
    assert ExportMeta.read(tmp_path) == meta
    data = json.loads((tmp_path / META_NAME).read_text())
    assert data["format_version"] == 2 and data["normalization"] == {"mean": 0.5, "std": 2.0, "n": 10}
    (tmp_path / META_NAME).write_text(json.dumps({**data, "heads": ["reward", "helpful"]}))
    newer = ExportMeta.read(tmp_path)
    again = tmp_path / "again"
    again.mkdir()
    newer.write(again)
    assert json.loads((again / META_NAME).read_text())["heads"] == ["reward", "helpful"]


def test_export_meta_versions(tmp_path):
    assert not ExportMeta.read(tmp_path).is_rewardlab  # no rewardlab.json: any Hugging Face RM
    assert ExportMeta.read(tmp_path).text_format("last").add_special_tokens is True
    (tmp_path / META_NAME).write_text(json.dumps({"pooling": "last", "max_length": 96}))  # the first exports
    old = ExportMeta.read(tmp_path)
    assert old.format_version == 1 and old.text_format("last").version == 1 and old.text_format("last").append_eos
    assert ExportMeta(pooling="cls").text_format("cls").layout == "pair"


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "corrupt"), ("[1, 2]", "expected a JSON object"), ('{"max_length": "long"}', "max_length")],
)
def test_a_bad_rewardlab_json_is_a_model_error_naming_the_file(tmp_path, content, message):
    (tmp_path / META_NAME).write_text(content)
    with pytest.raises(ModelError, match=re.escape(str(tmp_path / META_NAME)) + ".*" + message):
        ExportMeta.read(tmp_path)


# -- one assembly for training and loading -----------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2", "bert"])
def test_training_and_loading_assemble_the_same_reward_model(tmp_path, family):
    """The bundle a run trains, exported and loaded back, decides everything the same way and scores the same."""
    data = write_jsonl(tmp_path / "train.jsonl", pair_rows(PAIRS[:8]))
    base = make_tiny(tmp_path / "base", family)
    settings = {"output_dir": str(tmp_path / "run"), "data": {"train": str(data), "max_length": 80},
                "model": {"name_or_path": str(base)}}  # fmt: skip
    cfg = build_config(TrainConfig, settings)
    trained = RewardBundle.for_training(cfg)
    for pair in PAIRS[:4]:
        trained.transform.encode_pair(pair)
    trained.save(tmp_path / "export", trained.training_meta())
    loaded = RewardBundle.load(tmp_path / "export")
    for name in ("padding_side", "share_prompts", "mask_dtype", "vision"):
        assert getattr(loaded, name) == getattr(trained, name), name
    assert loaded.transform.input_format == trained.transform.input_format
    assert loaded.transform.max_length == trained.transform.max_length == 80
    assert loaded.meta.pooling == trained.model.pooling == ("cls" if family == "bert" else "last")
    assert trained.share_prompts is (family == "qwen2")
    prompts, responses = [p.prompt for p in PAIRS[:6]], [p.chosen for p in PAIRS[:6]]
    expected = Scorer(trained).score(prompts, responses)
    assert Scorer(loaded).score(prompts, responses) == pytest.approx(expected, abs=1e-6)
    assert Scorer.from_pretrained(str(tmp_path / "export"), device="cpu", batch_size=2).score(
        prompts, responses
    ) == pytest.approx(expected, abs=1e-6)


def test_settings_a_model_cannot_honour_fail_before_its_weights_load(tmp_path, monkeypatch):
    import rewardlab.models.backbones as backbones

    def no_weights(*_args, **_kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(backbones, "load_backbone", no_weights)
    data = write_jsonl(tmp_path / "train.jsonl", pair_rows(PAIRS[:8]))
    cfg = build_config(TrainConfig, {"output_dir": str(tmp_path / "run"), "data": {"train": str(data)},
                                     "model": {"name_or_path": str(make_tiny(tmp_path / "base"))}})  # fmt: skip
    cfg.data.num_irrelevant_pairs = 1
    with pytest.raises(ConfigError, match="num_irrelevant_pairs needs a vision-language model"):
        RewardBundle.for_training(cfg)


# -- families, losses, settings ---------------------------------------------------------------------------------
def test_a_vision_family_is_one_entry_and_nothing_else_tests_family_names():
    for name, family in FAMILIES.items():
        assert family.layout.family == name
    assert FAMILIES["llava"].layout.bos and not FAMILIES["qwen2_vl"].layout.bos
    assert FAMILIES["qwen2_5_vl"].layout.mm_token_types and FAMILIES["qwen2_5_vl"].pixel_knobs
    family_tests = re.compile(r"""startswith\(\s*["'](llava|qwen)|VISION_LAYOUTS""")
    hits = [
        f"{path.relative_to(SRC)}:{i}"
        for path in SRC.rglob("*.py")
        if path.name != "tiny.py"  # the tiny test builders: one per family
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if family_tests.search(line)
    ]
    assert hits == []


def test_every_loss_name_has_a_registered_loss_and_groups_need_a_listwise_one(tmp_path):
    assert set(typing.get_args(LossConfig.model_fields["name"].annotation)) == set(LOSSES)
    with pytest.raises(ConfigError, match="data.ranked_as=groups trains listwise: set loss.name=plackett_luce"):
        build_config(TrainConfig, {"output_dir": str(tmp_path), "data": {"train": "x.jsonl", "ranked_as": "groups"},
                                   "model": {"name_or_path": "m"}})  # fmt: skip


def test_scoring_settings_are_declared_once_and_serve_reads_its_old_name():
    shared = set(ScoringSettings.model_fields)
    assert shared == {"batch_size", "share_prompts", "max_length", "device", "dtype", "normalize"}
    assert ScoreConfig(model="m", batch_size=4).scoring() == ScoringSettings(batch_size=4)
    assert ServeConfig(model="m", max_batch_size=7).batch_size == 7
    assert ServeConfig(model="m").batch_size == 32


def test_scorer_keyword_settings_are_validated(tmp_path):
    with pytest.raises(ValueError, match="batchsize"):
        Scorer.from_pretrained(str(tmp_path), batchsize=8)  # a typo is an error, not ignored
    with pytest.raises(ValueError, match="batch_size"):
        ScoringSettings().scoring(batch_size=0)
