"""Peak resident memory of `deepscaler train` on a real model on the CPU, phase by phase.

Workload (issue #20's case): SmolLM2-135M-Instruct as a Hugging Face folder (Llama, 30 layers, hidden 576,
vocabulary 49,152, tied embeddings; float32), the built-in rollout engine, 4 prompts x 4 samples x 256 response
tokens of GSM8K test problems, the trainer's defaults otherwise (2 mini-batches, so an old-policy log-prob pass;
the KL term, so a reference pass; an entropy bonus), `--steps` steps and the checkpoint at the end.

The trainer runs in this process, one phase after another, each phase wrapped so that its own peak is known:
/proc/self/clear_refs (5) resets the process's high-water mark at every phase boundary and VmHWM is read at the
next, so each figure is the true peak of that phase (not a sample), including memory freed before it ends. A
phase nested in another (the update's forward inside the update) is its own row; its parent's row is the rest.
The run's peak is the largest of them. After the last step the long-lived terms are listed by size (policy,
gradients, optimizer moments, reference, rollout engine's weights and KV cache).

The figure before this bench's fixes is `--before-gb` (measured on commit 609e883, the same case and command, with
/usr/bin/time -v: maximum resident set size); the ratio before / now is printed.

Measured (2 shared CPU cores, 1 step): 7.95 GB before (bench: 7.97, in the update); with the built-in engine asleep
during the update (KV cache and weights freed) 7.07 GB; adding model.gradient_checkpointing=true 4.55 GB (1.75x).
The floor of this case is ~3.4 GB before any activation: float32 AdamW's 16 bytes per parameter (weights, gradients,
two moments: 2.15 GB), the float32 reference (0.54 GB) and ~0.66 GB of interpreter, torch and tokenizer.

    .venv/bin/python bench/bench_train_memory.py [--model /tmp/smollm2-hf] [--steps 1] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

GB = 1e9
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks" / "gsm8k.json"
BEFORE_GB = 7.95  # /usr/bin/time -v on 609e883: maximum resident set size 7,765,684 kB


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


class PhaseMeter:
    """Peak RSS per phase. Phases nest: entering one closes the current segment of its parent, leaving it resumes
    the parent (which keeps the largest peak of its segments)."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.peaks: dict[str, int] = {}
        self.order: list[str] = []

    def _close_segment(self) -> None:
        if self.stack:
            name = self.stack[-1]
            self.peaks[name] = max(self.peaks.get(name, 0), _status_kb("VmHWM") * 1024)
        _reset_peak()

    def enter(self, name: str) -> None:
        self._close_segment()
        if name not in self.order:
            self.order.append(name)
        self.stack.append(name)

    def leave(self) -> None:
        self._close_segment()
        self.stack.pop()

    def wrap(self, owner: object, attribute: str, name: str | None = None, name_of=None) -> None:
        """Replace owner.attribute by the same callable, measured as phase `name` (or name_of(*args, **kwargs))."""
        inner = getattr(owner, attribute)

        @functools.wraps(inner)
        def measured(*args, **kwargs):
            self.enter(name or name_of(*args, **kwargs))
            try:
                return inner(*args, **kwargs)
            finally:
                self.leave()

        setattr(owner, attribute, measured)


def instrument(meter: PhaseMeter) -> None:
    from deepscaler.trainer import loop, update

    meter.wrap(loop, "generate_groups", "rollout (generate)")
    meter.wrap(loop, "score", "reward scoring")
    meter.wrap(loop, "fill_logprobs", name_of=lambda model, samples, attribute, *a, **k: {
        "old_logp": "old-policy log-probs", "ref_logp": "reference log-probs"}[attribute])
    meter.wrap(loop, "update_policy", "update (rest: backward, loss)")
    meter.wrap(update, "response_logprobs", "update: forward")
    meter.wrap(update, "_clip_gradients", "update: grad clip")
    meter.wrap(loop.Trainer, "_sync_weights", "weight sync to engine")
    meter.wrap(loop.Trainer, "checkpoint", "checkpoint save")


def long_lived(trainer) -> list[tuple[str, int]]:
    """The terms that live across the step, in bytes."""
    import torch

    def size(tensors) -> int:
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    policy = list(trainer.policy.parameters())
    moments = [v for state in trainer.optimizer.state.values() for v in state.values()]
    engine = getattr(trainer.llm.engine, "model", None)
    rows = [("policy parameters", size(policy)), ("optimizer moments", size(moments)),
            ("gradients (between backward and step)", size(policy))]
    if trainer.reference is not None:
        rows.append(("reference policy", size(trainer.reference.parameters())))
    if engine is not None and hasattr(engine, "tensors"):
        rows.append(("rollout engine weights", size(engine.tensors().values())))
        rows.append(("rollout engine KV cache (after the step)", size(engine.k_cache + engine.v_cache)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="/tmp/smollm2-hf")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--before-gb", type=float, default=BEFORE_GB,
                        help="the peak before the fixes (default: measured on 609e883)")
    parser.add_argument("overrides", nargs="*", help="trainer config KEY=VALUE overrides")
    args = parser.parse_args()

    from deepscaler.config import load_config
    from deepscaler.trainer.config import TrainConfig
    from deepscaler.trainer.loop import Trainer

    out = tempfile.mkdtemp(prefix="memory-bench-")
    settings = [f"model.path={args.model}", "rollout.engine=builtin", f"data.train_files=[{args.data}]",
                "stages.0.max_response_tokens=256", "stages.0.samples_per_prompt=4", "stages.0.prompts_per_step=4",
                f"stages.0.max_steps={args.steps}", "tensorboard=false", f"out_dir={out}", *args.overrides]
    config = load_config(TrainConfig, None, settings)
    meter = PhaseMeter()
    instrument(meter)
    start = time.perf_counter()
    meter.enter("start-up (models, engine)")
    trainer = Trainer(config)
    meter.leave()
    try:
        trainer.train()
        inventory = long_lived(trainer)
    finally:
        trainer.close()
    peak = max(meter.peaks.values())
    print(f"deepscaler train, {Path(args.model).name}, 4 prompts x 4 samples x 256 tokens, {args.steps} step(s), "
          f"{time.perf_counter() - start:.0f} s; overrides: {' '.join(args.overrides) or 'none'}")
    print(f"{'phase':<34} {'peak RSS GB':>11}")
    for name in meter.order:
        print(f"{name:<34} {meter.peaks[name] / GB:>11.2f}{'  <- peak' if meter.peaks[name] == peak else ''}")
    print("long-lived terms:")
    for name, bytes_ in inventory:
        print(f"  {name:<42} {bytes_ / GB:>6.2f} GB")
    print(f"peak RSS: {peak / GB:.2f} GB")
    if args.before_gb:
        print(f"ratio before ({args.before_gb:.2f} GB, 609e883) / now: {args.before_gb * GB / peak:.2f}x")


if __name__ == "__main__":
    main()
