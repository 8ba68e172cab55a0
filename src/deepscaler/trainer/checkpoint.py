"""Checkpoints for clusters: sharded, checksummed, written so that a kill at any moment leaves a usable one.

A checkpoint folder `checkpoints/step_NNNNNN/` holds:

- `policy/`, `optimizer/`, `reference/`: torch.distributed.checkpoint (DCP) folders. Every rank writes its own
  shards (FSDP) or, for tensors every rank holds whole (DDP, one process), one rank writes each; no rank
  gathers the optimizer. DCP reshards on load, so a checkpoint resumes on any number of ranks. `reference/`
  only when the caller gives one (the trainer does once a stage has reset its reference: before that it
  equals the starting model, rebuilt from model.path on resume).
- `model/`: the policy in Hugging Face format, for transformers, vLLM and deepscaler's LLM (not read on resume).
- `rng.pt` (rank 0's CPU and Python generators, every rank's CUDA generator) and `trainer_state.json`.
- `manifest.json`, written last: every other file's size and SHA-256 (trainer/manifest.py).

It is written as `.step_NNNNNN.partial` and renamed when complete; then `latest` names it. On resume the
checkpoint `latest` names and those before it are verified against their manifests, newest first: a damaged
or incomplete one is reported and passed over. The folder must be shared by all ranks (all nodes).

Every function here that takes a model is a collective: every rank calls it at the same point.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from deepscaler.config import ConfigError
from deepscaler.files import write_text_atomic
from deepscaler.trainer import distributed as dist
from deepscaler.trainer.manifest import (
    MANIFEST,
    ManifestError,
    check,
    checked_files,
    describe,
    read_manifest,
    write_manifest,
)

LATEST = "latest"
# What every checkpoint has; a manifest without one of them is not the trainer's.
REQUIRED = ("policy/.metadata", "rng.pt", "trainer_state.json")


class CheckpointError(ConfigError):
    """No checkpoint to resume from: a one-line error for the CLI (exit code 2)."""


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(
    run_dir: Path, step: int, policy: torch.nn.Module, tokenizer: Any, optimizer: torch.optim.Optimizer,
    state: dict[str, Any], reference: torch.nn.Module | None = None, keep_last: int = 2,
) -> Path:
    """Write step `step`'s checkpoint (policy as the trainer holds it: plain, DDP or FSDP2); returns its folder."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    root = checkpoint_root(run_dir)
    final, partial = root / f"step_{step:06d}", root / f".step_{step:06d}.partial"
    if dist.is_main():
        shutil.rmtree(partial, ignore_errors=True)  # left by a run killed while writing
        partial.mkdir(parents=True)
    dist.barrier()
    _save_sharded(get_model_state_dict(policy), partial / "policy")
    if optimizer.state:  # a fresh optimizer has none; asking for it would take a zero step and change it
        _save_sharded(get_optimizer_state_dict(policy, optimizer), partial / "optimizer")
    if reference is not None:
        _save_sharded(get_model_state_dict(reference), partial / "reference")
    weights = dist.full_state_dict(policy, everywhere=False) if dist.is_sharded(policy) else None
    cuda_rng = cuda_rng_states()
    if dist.is_main():
        _write_main_files(partial, step, dist.unwrap(policy), tokenizer, state, weights, cuda_rng)
    dist.barrier()
    entries = _describe_everything(partial)
    if dist.is_main():
        write_manifest(partial, entries)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        write_text_atomic(root / LATEST, final.name)
        _prune(root, step, keep_last)
    dist.barrier()
    return final


def find_checkpoint(run_dir: Path) -> tuple[Path, list[str]]:
    """The newest intact checkpoint (the one `latest` names, else an earlier one) and one line for each that
    was passed over; CheckpointError when there is none."""
    root = checkpoint_root(run_dir)
    # Rank 0 looks, and every rank goes through the same list: they must verify the same folders together.
    candidates, problems = dist.all_gather_objects(_candidates(root) if dist.is_main() else None)[0]
    for folder in candidates:
        problem = _verify(folder)
        if problem is None:
            return folder, problems
        problems.append(f"checkpoint {folder} is damaged or incomplete: {problem}")
    if not problems:
        raise CheckpointError(f"{run_dir}: no checkpoint to resume from (nothing in {root})")
    raise CheckpointError(f"{run_dir}: no intact checkpoint to resume from ({'; '.join(problems)})")


def load_checkpoint(
    folder: Path, policy: torch.nn.Module, optimizer: torch.optim.Optimizer, reference: torch.nn.Module | None,
) -> dict[str, Any]:
    """Restore the policy, optimizer, reference and RNG states in place, each rank reading its own shards (on any
    number of ranks); returns the saved trainer state. `folder` should have passed find_checkpoint."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    weights = _load_sharded(get_model_state_dict(policy), folder / "policy")
    set_model_state_dict(policy, weights)
    if (folder / "optimizer").is_dir():
        # Asked for first, a fresh optimizer takes a zero step: its state then has the tensors to load into.
        saved = _load_sharded(get_optimizer_state_dict(policy, optimizer), folder / "optimizer")
        set_optimizer_state_dict(policy, optimizer, saved)
    if reference is not None and (folder / "reference").is_dir():
        set_model_state_dict(reference, _load_sharded(get_model_state_dict(reference), folder / "reference"))
    # Read onto the CPU: rank 0 wrote them from cuda:0, which as saved would land on each node's first GPU.
    rng = torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    _restore_cuda_rng(rng.get("cuda"))
    return json.loads((folder / "trainer_state.json").read_text())


def cuda_rng_states() -> list[torch.Tensor] | None:
    """Every rank's CUDA generator state, in rank order (a collective); None without CUDA.

    (Only rank 0's CPU generators are saved, and restored on every rank.)"""
    if not torch.cuda.is_available():
        return None
    return dist.all_gather_objects(torch.cuda.get_rng_state())


def _restore_cuda_rng(states: list[torch.Tensor] | None) -> None:
    """This rank's saved CUDA generator, when the run was saved with CUDA on as many ranks (on another
    number, ranks keep their freshly seeded generators: the resume is no longer exact anyway)."""
    if states is not None and torch.cuda.is_available() and len(states) == dist.world_size():
        torch.cuda.set_rng_state(states[dist.rank()])


def _save_sharded(state_dict: dict[str, Any], folder: Path) -> None:
    import torch.distributed.checkpoint as dcp

    with _one_process_quietly():
        dcp.save(state_dict, checkpoint_id=folder, no_dist=dist.world_size() == 1)


def _load_sharded(state_dict: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`state_dict` with the saved values: tensors are filled in place, each rank reading the parts it holds."""
    import torch.distributed.checkpoint as dcp

    with _one_process_quietly():
        dcp.load(state_dict, checkpoint_id=folder, no_dist=dist.world_size() == 1)
    return state_dict


@contextmanager
def _one_process_quietly() -> Iterator[None]:
    """Without a process group DCP warns, at every call, that it assumes one process: it is right."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*distributed is disabled")
        yield


def _write_main_files(folder: Path, step: int, policy: torch.nn.Module, tokenizer: Any, state: dict[str, Any],
                      weights: dict[str, torch.Tensor] | None, cuda_rng: list[torch.Tensor] | None) -> None:
    """Rank 0's part: the Hugging Face export (`weights`: an FSDP policy's, gathered), RNG and trainer state."""
    policy.save_pretrained(folder / "model", safe_serialization=True, state_dict=weights)
    tokenizer.save_pretrained(folder / "model")
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if cuda_rng is not None:
        rng["cuda"] = cuda_rng
    torch.save(rng, folder / "rng.pt")
    (folder / "trainer_state.json").write_text(json.dumps({**state, "step": step}, indent=2))
    for path in [*(folder / "model").iterdir(), folder / "rng.pt", folder / "trainer_state.json"]:
        with path.open("rb") as handle:  # DCP flushes its own files (FileSystemWriter's sync_files)
            os.fsync(handle.fileno())


def _describe_everything(folder: Path) -> dict[str, dict[str, int | str]]:
    """Manifest entries for every file in `folder`, each rank hashing a share of the files."""
    names = dist.all_gather_objects(checked_files(folder) if dist.is_main() else None)[0]
    mine = {name: describe(folder, name) for name in dist.deal(names, dist.world_size())[dist.rank()]}
    return {name: entry for share in dist.all_gather_objects(mine) for name, entry in share.items()}


def _verify(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder (the first problem found), or None when it matches its manifest.
    Rank 0 reads the manifest; each rank checks a share of the files; every rank gets the same answer."""
    found: tuple[dict | None, str | None] = (None, None)
    if dist.is_main():
        try:
            entries = read_manifest(folder)
            unlisted = [name for name in REQUIRED if name not in entries]
            found = (entries, f"{MANIFEST} does not list {unlisted[0]}" if unlisted else None)
        except ManifestError as error:
            found = (None, str(error))
    entries, problem = dist.all_gather_objects(found)[0]
    if problem is not None:
        return problem
    share = dist.deal(sorted(entries), dist.world_size())[dist.rank()]
    mine = [problem for name in share if (problem := check(folder, name, entries[name])) is not None]
    everyone = [problem for problems in dist.all_gather_objects(mine) for problem in problems]
    return everyone[0] if everyone else None


def _candidates(root: Path) -> tuple[list[Path], list[str]]:
    """Checkpoint folders to try, newest first: the one `latest` names and those before it (or, when the pointer
    is missing or names no checkpoint, all of them), and a line about a bad pointer."""
    folders = sorted((p for p in root.glob("step_*") if p.is_dir() and _step(p) is not None), key=_step,
                     reverse=True)
    pointer = root / LATEST
    if not pointer.is_file():
        return folders, [f"{pointer} is missing"] if folders else []
    named = pointer.read_bytes()[:100].decode(errors="replace").strip()
    chosen = next((folder for folder in folders if folder.name == named), None)
    if chosen is None:
        return folders, [f"{pointer} names no checkpoint folder ({named!r})"]
    return [folder for folder in folders if _step(folder) <= _step(chosen)], []


def _step(folder: Path) -> int | None:
    number = folder.name.removeprefix("step_")
    return int(number) if number.isdigit() else None


def _prune(root: Path, step: int, keep_last: int) -> None:
    """Keep the newest `keep_last` checkpoints up to `step` (later ones, left by a run that resumed from an
    earlier checkpoint, are replaced as their steps come round again)."""
    kept = sorted((p for p in root.glob("step_*") if p.is_dir() and (_step(p) or 0) <= step), key=_step)
    for old in kept[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
