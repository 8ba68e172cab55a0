"""Typed configuration: trees of documented dataclasses, loaded from YAML, overridden with `key=value`.

    config = load_config(TrainConfig, "configs/deepscaler-1.5b.yaml", ["rollout.temperature=0.8",
                                                                       "stages.1.max_steps=20"])

Unknown keys and values of the wrong type fail at load time with the full key path in the message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem; the message names the key."""


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build `cls` from a YAML file (optional) and `key=value` overrides applied on top."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path}: not UTF-8 text (byte {error.start + 1})") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(error)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for override in overrides or []:
        _default_list(cls, data, override)
        apply_override(data, override)
    return from_dict(cls, data)


def _default_list(cls: type, data: dict[str, Any], override: str) -> None:
    """Before `stages.1.x=` sets an entry of a list the file does not give, put the list's default there: the
    entries an index counts are then the ones the run would have (one default stage, so stage 1 is the second)."""
    name = override.partition("=")[0].strip().split(".")[0]
    fields = {field.name: field for field in dataclasses.fields(cls)}
    if name in data or name not in fields or fields[name].default_factory is dataclasses.MISSING:
        return
    default = fields[name].default_factory()
    if isinstance(default, list):
        data[name] = [dataclasses.asdict(item) if dataclasses.is_dataclass(item) else item for item in default]


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's complaint in one line: what, and where (its own message quotes the text over several lines)."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(getattr(error, "problem", None) or error).split())


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set a dotted key (`a.b.0.c=value`) in nested dicts/lists; the value is read as YAML (3 -> int)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        child_is_index = parts[depth + 1].isdigit()
        if isinstance(node, list):
            index = _index(node, part, key)
            node = node[index]
        else:
            node = node.setdefault(part, [] if child_is_index else {})
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    else:
        node[last] = value


def _index(items: list, part: str, key: str) -> int:
    if not part.isdigit():
        raise ConfigError(f"{key}: {part!r} must be a list index")
    index = int(part)
    if index > len(items):  # a gap would fill the list with unasked-for default entries
        have = f"indices 0-{len(items) - 1}" if items else "no entries yet"
        raise ConfigError(f"{key}: index {index} is past the end of the list ({have}); add entries in order, "
                          f"starting at {len(items)}")
    if index == len(items):  # `stages.2.x=` on two stages adds a third; its missing fields take defaults
        items.append({})
    return index


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Recursively build dataclass `cls` from plain data, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {', '.join(fields)})")
    values = {name: _convert(hints[name], value, f"{path}.{name}" if path else name) for name, value in data.items()}
    try:
        return cls(**values)
    except ConfigError:  # from a __post_init__ check, which names its key already
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path or cls.__name__}: {error}") from None


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, value, path)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{path}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{path}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_convert(item, v, f"{path}.{i}") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):  # YAML reads .nan, .inf; "nan" too
        raise ConfigError(f"{path}: expected a finite number, got {value}")
    if hint in (int, float, str, bool) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{path}: expected {hint.__name__}, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """Plain data (for YAML) from a dataclass tree."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
