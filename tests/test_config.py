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
        (["stages.x.max_tokens=1"], "stages.x.max_tokens: 'x' must be a list index"),
        (["stages.2.max_tokens=1"], r"stages.2.max_tokens: index 2 is past the end of the list \(indices 0-0\); add "
                                    "entries in order, starting at 1"),
        (["optim.lr=nan"], "optim.lr: expected a finite number, got nan"),
        (["optim.lr=-.inf"], "optim.lr: expected a finite number, got -inf"),
        (["seed"], "is not key=value"),
        (["seed=true"], "seed: expected int"),
    ],
)
def test_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Root, None, overrides)


def test_a_list_index_counts_the_entries_the_run_would_have(tmp_path):
    # No file: the default's one stage is stage 0, so stage 1 is a second one.
    assert [s.max_tokens for s in load_config(Root, None, ["stages.1.max_tokens=4"]).stages] == [8, 4]
    path = tmp_path / "c.yaml"
    path.write_text("stages:\n  - {max_tokens: 1}\n  - {max_tokens: 2}\n  - {max_tokens: 3}\n")
    with pytest.raises(ConfigError, match=r"^stages.5.max_tokens: index 5 is past the end of the list \(indices 0-2\)"):
        load_config(Root, path, ["stages.5.max_tokens=9"])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(Root, tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b'{"id": 1}\n{"id": 2}\n', "not valid YAML (line 2, column 1: expected '<document start>', but found '{')"),
     (b"seed: 1\noptim: {lr: [1\n", "not valid YAML (line 3, column 1: expected ',' or ']', but got '<stream end>')"),
     (b"seed: \xff\n", "not UTF-8 text (byte 7)"), (b"- 1\n- 2\n", "the top level must be a mapping")],
)
def test_a_bad_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        load_config(Root, path)
    assert str(raised.value) == f"{path}: {message}"
