"""Typed configs: defaults < YAML < key=value overrides, and errors that say what to fix."""

from __future__ import annotations

import pytest

from rewardlab.config import DataSource, TrainConfig, build_config, load_config, parse_overrides
from rewardlab.errors import ConfigError

MINIMAL = {"output_dir": "out", "data": {"train": "t.jsonl"}, "model": {"name_or_path": "m"}}


def test_overrides_parse_nested_typed_values():
    got = parse_overrides(
        [
            "training.learning_rate=1e-4",
            "model.lora.r=8",
            "resume=true",
            "data.eval=null",
            "training.eval_strategy=no",
            "training.report_to=[tensorboard]",
            "name=a=b",
        ]
    )
    assert got == {
        "training": {"learning_rate": 1e-4, "eval_strategy": "no", "report_to": ["tensorboard"]},
        "model": {"lora": {"r": 8}},
        "resume": True,
        "data": {"eval": None},
        "name": "a=b",
    }


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_overrides(["training.learning_rate"])


def test_yaml_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: a\ndata: {train: t.jsonl, max_length: 64}\nmodel: {name_or_path: m}\n")
    cfg = load_config(TrainConfig, path, ["data.max_length=32", "output_dir=b"])
    assert (cfg.output_dir, cfg.data.max_length, cfg.data.train.path) == ("b", 32, "t.jsonl")
    assert cfg.data.overlong == "truncate" and cfg.loss.name == "bradley_terry"  # defaults
    assert isinstance(cfg.data.train, DataSource)


def test_unknown_keys_get_did_you_mean_hints_and_all_problems_are_listed():
    with pytest.raises(ConfigError) as err:
        build_config(
            TrainConfig,
            {**MINIMAL, "data": {"train": "t.jsonl", "max_lenght": 3}, "sed": 1, "loss": {"name": "hinge"}},
            source="c.yaml",
        )
    msg = str(err.value)
    assert msg.startswith("c.yaml: invalid config (3 problems):")
    assert "data.max_lenght: unknown key; did you mean 'max_length'?" in msg
    assert "sed: unknown key; did you mean 'seed'?" in msg
    assert "loss.name: Input should be 'bradley_terry' or 'plackett_luce' (got 'hinge')" in msg


def test_missing_required_and_bad_types():
    with pytest.raises(ConfigError) as err:
        build_config(
            TrainConfig,
            {"data": {"train": "t"}, "model": {"name_or_path": "m"}, "output_dir": "o", "seed": "x", "resume": 3.5},
        )
    msg = str(err.value)
    assert "seed: Input should be a valid integer" in msg
    with pytest.raises(ConfigError, match="output_dir: required, but not set"):
        build_config(TrainConfig, {"data": {"train": "t"}, "model": {"name_or_path": "m"}})


def test_invalid_combination_fails_at_load_time():
    with pytest.raises(ConfigError, match="loss.name=plackett_luce needs data.ranked_as=groups"):
        build_config(TrainConfig, {**MINIMAL, "loss": {"name": "plackett_luce"}})
    with pytest.raises(ConfigError, match="set output_dir at the top level"):
        build_config(TrainConfig, {**MINIMAL, "training": {"output_dir": "x"}})


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "the top level must be a mapping"), ("a: [\n", "not valid YAML")],
)
def test_bad_yaml_files(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(TrainConfig, tmp_path / "nope.yaml")


def test_training_keys_checked_against_training_arguments():
    from rewardlab.training.arguments import build_training_args

    with pytest.raises(ConfigError, match="training.per_device_batch_size: unknown TrainingArguments field; did you"):
        build_training_args("o", {"per_device_batch_size": 4}, has_eval=False, seed=0)
    args = build_training_args("o", {"save_strategy": False, "save_steps": 5}, has_eval=True, seed=3)
    assert args.save_strategy == "no" and args.eval_strategy == "no" and args.seed == 3
    assert args.train_sampling_strategy == "group_by_length" and args.remove_unused_columns is False
