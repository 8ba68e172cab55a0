"""Checkpoints that survive a kill: written to a temporary folder, renamed into place, then pointed to.

A folder holds the policy in Hugging Face format (loadable by transformers, by deepscaler's LLM and by
vLLM), the reference policy when it differs from the start, the optimizer, RNG states, the data position
and the stage. `latest` names the newest complete checkpoint; a kill at any moment leaves it valid.

Everything is read onto the CPU and moved from there (the optimizer state to its parameters' devices): rank 0
writes tensors tagged cuda:0, which, loaded as saved, would all land on each node's first GPU.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from deepscaler.trainer import distributed as dist

LATEST = "latest"


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(
    run_dir: Path, step: int, policy: torch.nn.Module, tokenizer: Any, optimizer: torch.optim.Optimizer,
    state: dict[str, Any], reference: torch.nn.Module | None = None, keep_last: int = 2, *,
    weights: dict[str, torch.Tensor] | None = None, optimizer_state: dict[str, Any] | None = None,
    cuda_rng_states: list[torch.Tensor] | None = None, reference_weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write step `step`'s checkpoint. `weights` and `optimizer_state`, when given, replace the policy's
    state_dict() and optimizer.state_dict() (a sharded model's, gathered whole beforehand by every rank);
    `cuda_rng_states` holds every rank's CUDA generator (see cuda_rng_states()); `reference_weights` likewise
    replaces a sharded reference's state_dict()."""
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    partial = root / f".step_{step:06d}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    policy.save_pretrained(partial / "model", safe_serialization=True, state_dict=weights)
    tokenizer.save_pretrained(partial / "model")
    if reference is not None:
        from safetensors.torch import save_model  # handles tied embeddings

        if reference_weights is None:
            save_model(reference, str(partial / "reference.safetensors"))
        else:
            _save_untied(reference_weights, partial / "reference.safetensors")
    torch.save(optimizer.state_dict() if optimizer_state is None else optimizer_state, partial / "optimizer.pt")
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if cuda_rng_states is not None:
        rng["cuda"] = cuda_rng_states
    torch.save(rng, partial / "rng.pt")
    (partial / "trainer_state.json").write_text(json.dumps({**state, "step": step}, indent=2))
    _fsync_tree(partial)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    _write_atomic(root / LATEST, final.name)
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = checkpoint_root(run_dir)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    folder = root / pointer.read_text().strip()
    return folder if (folder / "trainer_state.json").is_file() else None


def load_checkpoint(
    folder: Path, policy: torch.nn.Module, optimizer: torch.optim.Optimizer, reference: torch.nn.Module | None,
) -> dict[str, Any]:
    """Restore weights, optimizer and RNG states in place; returns the saved trainer state.

    Every rank calls it: an FSDP-sharded policy (and its optimizer) takes its own shards of the saved state."""
    from safetensors.torch import load_file

    weights = {}
    for path in sorted((folder / "model").glob("*.safetensors")):
        weights.update(load_file(str(path)))
    missing, unexpected = dist.load_full_state_dict(policy, weights)
    tied = {"lm_head.weight"} if getattr(policy.config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"{folder}: checkpoint does not match the model ({list(missing)[:3]}, {unexpected[:3]})")
    if reference is not None and (folder / "reference.safetensors").is_file():
        dist.load_full_state_dict(reference, load_file(str(folder / "reference.safetensors")))
    optimizer_state = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    dist.load_optimizer_state_dict(policy, optimizer, optimizer_state)
    rng = torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    _restore_cuda_rng(rng.get("cuda"))
    return json.loads((folder / "trainer_state.json").read_text())


def cuda_rng_states() -> list[torch.Tensor] | None:
    """Every rank's CUDA generator state, in rank order (a collective: every rank calls it); None without CUDA.

    (Only rank 0's CPU generators are saved, and restored on every rank.)"""
    if not torch.cuda.is_available():
        return None
    return dist.all_gather_objects(torch.cuda.get_rng_state())


def _restore_cuda_rng(states: list[torch.Tensor] | None) -> None:
    """This rank's saved CUDA generator, when the run was saved with CUDA on as many ranks (on another
    number, ranks keep their freshly seeded generators: the resume is no longer exact anyway)."""
    if states is not None and torch.cuda.is_available() and len(states) == dist.world_size():
        torch.cuda.set_rng_state(states[dist.rank()])


def _save_untied(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Save whole weights, a tensor shared by several names (tied embeddings) under its first name only, as
    save_model does; load_full_state_dict restores the tie."""
    from safetensors.torch import save_file

    seen: set[int] = set()
    kept = {}
    for name, tensor in weights.items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            kept[name] = tensor.contiguous()
    save_file(kept, str(path))


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
