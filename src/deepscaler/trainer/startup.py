"""Start-up checks: what would otherwise fail hours into a run, or quietly train something else, found before
any heavy work. Each raises a ConfigError naming the key, which the CLI prints as one line (exit code 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

from deepscaler.config import ConfigError
from deepscaler.trainer import distributed as dist
from deepscaler.trainer.config import TrainConfig

MARKERS = ".rank_markers"  # the folder, inside the run folder, where each rank leaves a file for rank 0 to find


def check_prompts_split(config: TrainConfig, ranks: int) -> None:
    """Each rank takes an equal block of a step's prompts; a remainder would be dropped without a word
    (128 prompts on 24 ranks would train on 120)."""
    for index, stage in enumerate(config.stages):
        if stage.prompts_per_step % ranks:
            raise ConfigError(f"stages.{index}.prompts_per_step={stage.prompts_per_step} is not divisible by the "
                              f"world size {ranks} (each rank takes an equal block of a step's prompts)")


def check_run_folder(folder: Path, key: str = "out_dir") -> None:
    """Every rank can write into `folder`, and they all see the same folder: rank 0 writes the checkpoints that
    every rank reads back on resume, so across nodes it must be on shared storage.

    A collective: every rank calls it, and every rank raises the same error."""
    folder = Path(folder)
    markers = folder / MARKERS
    _agree(_prepare(markers, f"{key}={folder}") if dist.is_main() else None)
    _agree(_touch(markers / f"rank_{dist.rank()}", f"{key}={folder}"))
    _agree(_unseen(markers, dist.world_size(), f"{key}={folder}") if dist.is_main() else None)
    if dist.is_main():
        shutil.rmtree(markers, ignore_errors=True)


def _prepare(markers: Path, where: str) -> str | None:
    """Create the run folder and an empty markers folder in it (none left over from an earlier launch)."""
    try:
        shutil.rmtree(markers, ignore_errors=True)
        markers.mkdir(parents=True)
    except OSError as error:
        return f"{where}: cannot create a folder in it ({error.strerror or error})"
    return None


def _touch(marker: Path, where: str) -> str | None:
    try:
        marker.write_text("written at start-up to check that every rank shares this folder\n")
    except OSError as error:
        return (f"{where}: rank {dist.rank()} cannot write into it ({error.strerror or error}); every rank must see "
                "the folder rank 0 created (on several nodes, shared storage)")
    return None


def _unseen(markers: Path, ranks: int, where: str) -> str | None:
    missing = [rank for rank in range(ranks) if not (markers / f"rank_{rank}").is_file()]
    if not missing:
        return None
    return (f"{where}: rank 0 does not see the files that ranks {missing} wrote there; every rank must see the "
            "same folder (on several nodes, shared storage)")


def _agree(problem: str | None) -> None:
    """Raise, on every rank, the first problem any rank found: all stop at the same point, where a rank
    stopping alone would leave the others waiting in their next collective until the timeout."""
    found = [problem for problem in dist.all_gather_objects(problem) if problem]
    if found:
        raise ConfigError(found[0])
