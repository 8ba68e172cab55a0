from dataclasses import dataclass, field
from typing import Literal

import pytest

from deepscaler.config import ConfigError, load_config, save_config


@dataclass
class Stage:
    max_tokens: int = 8
    name: str = "s"


@dataclass
class Optim:
    lr: float = 1e-6
    kind: Literal["adamw", "sgd"] = "adamw"


@dataclass
class Root:
    seed: int = 0
    optim: Optim = field(default_factory=Optim)
    stages: list[Stage] = field(default_factory=lambda: [Stage()])
    note: str | None = None


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\noptim:\n  lr: 2\nstages:\n  - {max_tokens: 16}\n")
    config = load_config(Root, path, ["optim.kind=sgd", "stages.1.max_tokens=32", "note=hello"])
    assert config.seed == 3 and config.optim.lr == 2.0 and isinstance(config.optim.lr, float)
    assert config.optim.kind == "sgd"
    assert [s.max_tokens for s in config.stages] == [16, 32] and config.stages[1].name == "s"
    assert config.note == "hello"
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(Root, tmp_path / "saved.yaml") == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=1"], "unknown key optim.lrr"),
        (["seed=abc"], "seed: expected int"),
        (["optim.kind=adam"], "optim.kind: 'adam' is not one of"),
        (["stages.x.max_tokens=1"], "stages: expected a list"),
        (["seed"], "is not key=value"),
        (["seed=true"], "seed: expected int"),
    ],
)
def test_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Root, None, overrides)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(Root, tmp_path / "nope.yaml")
