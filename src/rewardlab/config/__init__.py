"""Typed configs and their resolution (defaults < YAML < overrides). Knows nothing of torch."""

from rewardlab.config.loading import build_config, dump_config, load_config, parse_overrides
from rewardlab.config.schema import (
    ColumnMap,
    DataConfig,
    DataSource,
    DemoConfig,
    LoraSettings,
    LossConfig,
    ModelConfig,
    ScoreConfig,
    ServeConfig,
    TrainConfig,
)

__all__ = [
    "ColumnMap",
    "DataConfig",
    "DataSource",
    "DemoConfig",
    "LoraSettings",
    "LossConfig",
    "ModelConfig",
    "ScoreConfig",
    "ServeConfig",
    "TrainConfig",
    "build_config",
    "dump_config",
    "load_config",
    "parse_overrides",
]
