"""The real-model recipe: a short SFT warm start on GSM8K solutions, GRPO stages on GSM8K problems, and held-out
pass@1 before and after RL with a paired 95% interval (as `deepscaler compare` reports it).

A YAML config with a top-level `recipe:` section selects it (configs/smollm2-gsm8k.yaml); everything else in the
file is an ordinary TrainConfig for the GRPO part, so `model.path=...`, `stages.0.max_steps=...` and
`recipe.sft.lr=...` all work as overrides. GSM8K's test set is the only GSM8K here: gsm8k_data.py splits it by a
hash of each problem into a held-out part (evaluation only) and a disjoint part whose first problems are the SFT
examples and whose rest are the RL problems.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepscaler.recipes.sft import SFTConfig
from deepscaler.trainer.config import TrainConfig


@dataclass
class GSM8KRecipeConfig:
    source: str = "gsm8k"  # a benchmark name or a JSON/JSONL file with `problem` and `solution` (GSM8K's '####')
    heldout_share: float = 0.23  # about 300 of the 1319 test problems
    max_solution_steps: int | None = None  # keep only problems GSM8K solves in at most this many lines (all sides)
    sft_examples: int = 200  # training-side problems whose solutions the warm start learns; RL gets the rest
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=1.0, batch_size=8, lr=2e-5, warmup_steps=3,
                                                             progress=False))
    eval_samples: int = 4  # samples per held-out problem (pass@1 is their mean)
    eval_problems: int | None = None  # first N held-out problems (None: all)
    eval_base: bool = False  # also evaluate the model before the warm start


@dataclass
class GSM8KRunConfig(TrainConfig):
    recipe: GSM8KRecipeConfig = field(default_factory=GSM8KRecipeConfig)


def is_recipe_config(path: Path) -> bool:
    """Whether a YAML config selects this recipe (a top-level `recipe:` section)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # load_config reports what is wrong with it
    return isinstance(data, dict) and "recipe" in data


def split_configs(run: GSM8KRunConfig) -> tuple[GSM8KRecipeConfig, TrainConfig]:
    from deepscaler.config import from_dict, to_dict

    data = to_dict(run)
    recipe = data.pop("recipe")
    return from_dict(GSM8KRecipeConfig, recipe, path="recipe"), from_dict(TrainConfig, data)


def prepare_data(recipe: GSM8KRecipeConfig, data_dir: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(SFT rows, RL rows, held-out rows); the RL and held-out files are written to data_dir."""
    from deepscaler.data.problems import resolve
    from deepscaler.data.sources import open_rows
    from deepscaler.recipes.gsm8k_data import split_rows

    rows = [row for _, row in open_rows(str(resolve(recipe.source)))]
    train, heldout = split_rows(rows, recipe.heldout_share)
    if recipe.max_solution_steps is not None:
        train = [r for r in train if r["steps"] <= recipe.max_solution_steps]
        heldout = [r for r in heldout if r["steps"] <= recipe.max_solution_steps]
    heldout = heldout[: recipe.eval_problems]
    sft_rows, rl_rows = train[: recipe.sft_examples], train[recipe.sft_examples :]
    if not rl_rows or not heldout:
        raise ValueError(f"{recipe.source}: {len(rl_rows)} RL and {len(heldout)} held-out problems left after the "
                         "split; lower recipe.sft_examples or raise recipe.max_solution_steps")
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, chosen in (("train", rl_rows), ("heldout", heldout)):
        with (data_dir / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in chosen:
                handle.write(json.dumps({"id": row["id"], "problem": row["problem"], "answer": row["answer"]}) + "\n")
    return sft_rows, rl_rows, heldout


class PhaseClock:
    """Wall and CPU seconds per phase; CPU includes finished child processes (the rollout engine's workers), so on
    a shared machine CPU time says what the work cost where wall time says how long it waited too."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}
        self._name, self._wall, self._cpu = "", 0.0, 0.0

    @staticmethod
    def _now() -> tuple[float, float]:
        import os

        times = os.times()
        return time.perf_counter(), times.user + times.system + times.children_user + times.children_system

    def start(self, name: str) -> None:
        self._name, (self._wall, self._cpu) = name, self._now()

    def stop(self) -> None:
        wall, cpu = self._now()
        self.phases[self._name] = {"wall": round(wall - self._wall, 1), "cpu": round(cpu - self._cpu, 1)}


def run_gsm8k(run: GSM8KRunConfig, log: Any = print) -> dict[str, Any]:
    """Warm start, evaluate, GRPO (evaluating after each stage), compare; returns summary.json's content."""
    from dataclasses import replace

    from deepscaler.config import save_config
    from deepscaler.eval.compare import compare_runs
    from deepscaler.files import write_json_atomic
    from deepscaler.inference.hub import resolve_model
    from deepscaler.prompting import user_turn
    from deepscaler.recipes.embedded import evaluate_llm, evaluate_model
    from deepscaler.recipes.gsm8k_data import boxed_solution
    from deepscaler.recipes.sft import run_sft
    from deepscaler.trainer.loop import Trainer
    from deepscaler.trainer.rollout import engine_options

    started = time.perf_counter()
    recipe, train = split_configs(run)
    out = Path(train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(run, out / "recipe_config.yaml")
    sft_rows, rl_rows, heldout = prepare_data(recipe, out / "data")
    log(f"GSM8K split: {len(sft_rows)} SFT, {len(rl_rows)} RL, {len(heldout)} held-out problems")
    base = resolve_model(train.model.path, train.model.revision)
    clock = PhaseClock()
    evaluations: dict[str, dict[str, float]] = {}
    train = replace(train, data=replace(train.data, train_files=[str(out / "data" / "train.jsonl")],
                                        val_files=[str(out / "data" / "heldout.jsonl")]))
    samples = recipe.eval_samples
    # Continuous batching keeps every KV slot busy only while a call has work queued: chunks of ~192 sequences
    # evaluated the SFT model 1.65x faster than the default 8 problems (bench/bench_eval_chunks.py).
    chunk = max(8, -(-192 // samples))
    # The evaluations before RL run on the rollout engine's settings (--threads among them), as those after it do.
    options = engine_options(train, world_size=1) if train.rollout.engine == "builtin" else {}
    if recipe.eval_base:
        clock.start("eval_base")
        evaluations["base"] = evaluate_model(base, train, out / "eval" / "base", log, samples, options, chunk)
        clock.stop()
    clock.start("sft")
    examples = [(user_turn(r["problem"], train.data.prompt_template), boxed_solution(r["solution"]))
                for r in sft_rows]
    sft_dir = out / "sft"
    sft = run_sft(base, sft_dir, examples, recipe.sft)
    clock.stop()
    log(f"SFT: {sft['steps']} steps on {sft['examples']} examples, loss {sft['first_loss']:.3f} -> "
        f"{sft['final_loss']:.3f} ({clock.phases['sft']['wall']:.0f}s)")
    clock.start("eval_sft")
    evaluations["sft"] = evaluate_model(sft_dir, train, out / "eval" / "sft", log, samples, options, chunk)
    clock.stop()

    train = replace(train, model=replace(train.model, path=str(sft_dir)), out_dir=str(out / "rl"))
    Path(train.out_dir).mkdir(parents=True, exist_ok=True)
    save_config(train, out / "train_config.yaml")

    def on_stage_end(trainer: Any, stage: Any) -> None:
        clock.stop()
        clock.start(f"eval_{stage.name}")
        evaluations[stage.name] = evaluate_llm(trainer.llm, Path(train.data.val_files[0]), train,
                                               out / "eval" / stage.name, log, samples, chunk)
        clock.stop()
        following = train.stages[train.stages.index(stage) + 1 :]
        clock.start(f"rl_{following[0].name}" if following else "close")

    from deepscaler.recipes.embedded import progress_printer

    clock.start(f"rl_{train.stages[0].name}")
    trainer = Trainer(train, progress=progress_printer(log), on_stage_end=on_stage_end)
    try:
        trainer.train()
    finally:
        trainer.close()
    last = train.stages[-1].name
    clock.stop()
    evaluations["final"] = evaluations[last]
    [gain] = compare_runs(out / "eval" / "sft", out / "eval" / last)
    summary = {"eval": evaluations, "gain": gain, "split": {"sft": len(sft_rows), "rl": len(rl_rows),
                                                            "heldout": len(heldout)},
               "sft": {k: sft[k] for k in ("steps", "examples", "first_loss", "final_loss")},
               "phases": clock.phases, "wall_seconds": time.perf_counter() - started,
               "cpu_seconds": sum(phase["cpu"] for phase in clock.phases.values()), "run_dir": str(out)}
    write_json_atomic(out / "summary.json", summary)
    log(f"held-out pass@1 {gain['a']:.3f} (SFT) -> {gain['b']:.3f} (RL): {gain['delta']:+.3f}, 95% CI "
        f"[{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}] over {gain['problems']} problems, "
        f"{summary['wall_seconds'] / 60:.1f} minutes")
    return summary
