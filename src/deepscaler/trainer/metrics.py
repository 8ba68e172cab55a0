"""Run metrics: one JSON line per step in metrics.jsonl, TensorBoard scalars when it is installed, and
Weights & Biases when a project is given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepscaler.config import ConfigError


class MetricsLog:
    """wandb_project: also log to this W&B project, as one W&B run per run directory (a resumed run continues
    it; steps redone after a resume are not logged twice, as W&B keeps the first value of a step)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, wandb_project: str | None = None,
                 run_config: dict[str, Any] | None = None) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.wandb_run = None
        if wandb_project is not None:
            self.wandb_run = _start_wandb(Path(run_dir), wandb_project, run_config or {})
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:  # tensorboard is optional: metrics.jsonl holds everything
                self.writer = None

    def truncate_after(self, step: int) -> None:
        """Forget steps after `step` (they were redone after resuming from a checkpoint), and a line torn by a
        kill mid-write (it is after the checkpoint, whose step is logged before it is written)."""
        if not self.path.exists():
            return
        kept = []
        for raw in self.path.read_bytes().splitlines():
            try:
                record = json.loads(raw)
            except ValueError:  # JSONDecodeError or UnicodeDecodeError: cut inside a value or a character
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(raw + b"\n")
        self.path.write_bytes(b"".join(kept))

    def log(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            step = int(record["step"])
            for key, value in _scalars(record).items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(_scalars(record), step=int(record["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {key: value for key, value in record.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step"}


def _start_wandb(run_dir: Path, project: str, run_config: dict[str, Any]):
    import uuid

    import wandb

    id_file = run_dir / "wandb_id"  # the same W&B run across resumes of this run directory
    if not id_file.exists():
        id_file.write_text(uuid.uuid4().hex[:16])
    try:
        return wandb.init(project=project, name=run_dir.name, id=id_file.read_text().strip(), resume="allow",
                          dir=str(run_dir), config=run_config)
    except Exception as error:  # no API key, no network, a bad project name: say so in one line
        raise ConfigError(f"wandb_project={project}: W&B did not start ({error}); log in with `wandb login`, "
                          "or set WANDB_MODE=offline to keep the run on disk") from None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
