"""The embedded default: the whole DeepScaleR recipe in miniature, on a laptop CPU, in minutes.

`deepscaler train` with no arguments runs it: Stage 0 (a tiny Qwen2 model distilled on an imperfect
teacher's traces, see tiny.py), then GRPO stages with growing response budgets switched by the same
rule a real run uses, with held-out pass@1 and pass@k measured before RL and after every stage through
the evaluation code real benchmarks use. The run directory gets checkpoints, metrics, plots, a
Markdown report and summary.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from deepscaler.config import save_config
from deepscaler.files import write_json_atomic, write_text_atomic
from deepscaler.trainer.config import (
    AlgorithmConfig,
    CheckpointConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RolloutConfig,
    StageConfig,
    TrainConfig,
    ValidationConfig,
)


def default_train_config(out_dir: Path) -> TrainConfig:
    """GRPO settings of the embedded default; model and data paths are filled in by Stage 0.

    Sampling at temperature 0.6 in rollouts and evaluation, as DeepScaleR did. Worked solutions take
    about 70 tokens at difficulty 1 and up to about 235 at 5: the first budget (160 tokens) cuts off
    the two hardest levels, the second (208) the hardest, the third (256) none, so length and
    truncation answer each switch as RL makes the model work more problems out."""
    from deepscaler.cpu import cpu_has_native_bf16

    return TrainConfig(
        # Autocast to bfloat16 where Stage 0's SFT does: only on a CPU that has it natively. Emulated, it made each
        # GRPO update about 25 times slower (64 s against 2.6 on an AVX2-only EPYC).
        model=ModelConfig(path="", dtype="bfloat16" if cpu_has_native_bf16() else "float32"),
        data=DataConfig(max_prompt_tokens=256),
        rollout=RolloutConfig(engine="builtin", temperature=0.6, top_p=1.0, kv_cache_gb=1.0),
        algorithm=AlgorithmConfig(kl_coef=0.0, entropy_coef=0.0, clip_high=0.28, loss_agg="token-mean"),
        optim=OptimConfig(lr=5e-5, mini_batches=1, micro_batch_tokens=8192, warmup_steps=0),
        stages=[
            StageConfig(name="short", max_response_tokens=160, samples_per_prompt=8, prompts_per_step=16,
                        max_steps=10, truncation_trigger=0.3, window=3),
            StageConfig(name="medium", max_response_tokens=208, samples_per_prompt=8, prompts_per_step=16,
                        max_steps=10, truncation_trigger=0.3, window=3),
            StageConfig(name="long", max_response_tokens=256, samples_per_prompt=8, prompts_per_step=16,
                        max_steps=10),
        ],
        # No validation inside the trainer: on_stage_end evaluates the held-out set at each stage end.
        validation=ValidationConfig(every_steps=0, at_stage_end=False, samples_per_problem=2, max_problems=48,
                                    temperature=0.6, top_p=1.0),
        checkpoint=CheckpointConfig(every_steps=10, keep_last=1),
        out_dir=str(out_dir / "rl"), tensorboard=False,
    )


def run_embedded(out_dir: str | Path = "runs/embedded", overrides: list[str] | None = None,
                 log: Any = print, recipe: Any = None) -> dict[str, Any]:
    """Run the embedded default into out_dir and return summary.json's content.

    overrides: `key=value` settings of the GRPO part (TrainConfig), or of Stage 0 (TinyRecipeConfig) when
    the key starts with `stage0.`; recipe: the TinyRecipeConfig those start from."""
    from deepscaler.config import apply_override, from_dict, to_dict
    from deepscaler.recipes.tiny import TinyRecipeConfig, prepare_stage0

    started = time.perf_counter()
    overrides = list(overrides or [])
    recipe_data = to_dict(replace(recipe or TinyRecipeConfig(), evaluate=False))
    for override in overrides:
        if override.startswith("stage0."):
            apply_override(recipe_data, override.removeprefix("stage0."))
    recipe = from_dict(TinyRecipeConfig, recipe_data, path="stage0")
    overrides = [o for o in overrides if not o.startswith("stage0.")]
    out = Path(out_dir)
    _train_config(out, overrides, model="", train="", heldout="")  # a bad key fails now, not after Stage 0
    out.mkdir(parents=True, exist_ok=True)
    log("Stage 0: building a tiny Qwen2 model and distilling it on teacher traces (some deliberately wrong)")
    sft_dir, rl_problems, heldout, stage0 = prepare_stage0(out / "stage0", recipe)
    data_dir = out / "data"
    data_dir.mkdir(exist_ok=True)
    _write_jsonl(data_dir / "train.jsonl", rl_problems)
    _write_jsonl(data_dir / "heldout.jsonl", heldout)

    config = _train_config(out, overrides, model=str(sft_dir), train=str(data_dir / "train.jsonl"),
                           heldout=str(data_dir / "heldout.jsonl"))
    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    save_config(config, out / "train_config.yaml")

    evaluations: dict[str, dict[str, float]] = {}
    evaluations["sft"] = evaluate_model(sft_dir, config, out / "eval" / "sft", log)
    from deepscaler.trainer.loop import Trainer

    def on_stage_end(trainer: Any, stage: StageConfig) -> None:
        evaluations[stage.name] = evaluate_llm(trainer.llm, data_dir / "heldout.jsonl", config,
                                               out / "eval" / stage.name, log)

    trainer = Trainer(config, progress=progress_printer(log), on_stage_end=on_stage_end)
    try:
        trainer.train()
    finally:
        trainer.close()
    evaluations["final"] = evaluations[config.stages[-1].name]
    from deepscaler.plot import plot_run

    plot = plot_run(config.out_dir, out / "plots" / "training.png")
    summary = {"eval": evaluations, "wall_seconds": time.perf_counter() - started,
               "stage0": {"teacher_correct": stage0["teacher_correct"], "teacher_worked": stage0["teacher_worked"],
                          "sft_seconds": stage0["sft"].get("seconds")},
               "plots": [str(plot)], "run_dir": str(out)}
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "report.md", _report(summary, config))
    return summary


def _train_config(out: Path, overrides: list[str], model: str, train: str, heldout: str) -> TrainConfig:
    from deepscaler.config import apply_override, from_dict, to_dict

    data = to_dict(default_train_config(out))
    data["model"]["path"] = model
    data["data"]["train_files"] = [train]
    data["data"]["val_files"] = [heldout]
    for override in overrides:
        apply_override(data, override)
    return from_dict(TrainConfig, data)


def _write_jsonl(path: Path, problems: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for problem in problems:
            row = {"id": problem["id"], "problem": problem["problem"], "answer": problem["answer"],
                   "family": problem["family"], "difficulty": problem["difficulty"]}
            handle.write(json.dumps(row) + "\n")


def _eval_settings(config: TrainConfig, stage: StageConfig, samples: int = 8):
    from deepscaler.eval.runner import EvalSettings

    return EvalSettings(benchmarks=[], n=samples, temperature=config.validation.temperature,
                        top_p=config.validation.top_p, max_tokens=stage.max_response_tokens, seed=config.seed,
                        prompt_template=config.data.prompt_template)


def evaluate_model(model_dir: Path, config: TrainConfig, out: Path, log: Any, samples: int = 8,
                   engine_options: dict[str, Any] | None = None, problems_per_chunk: int | None = None
                   ) -> dict[str, float]:
    from deepscaler.inference import LLM

    with LLM(model=str(model_dir), engine="builtin", seed=config.seed, **(engine_options or {})) as llm:
        return evaluate_llm(llm, Path(config.data.val_files[0]), config, out, log, samples, problems_per_chunk)


def evaluate_llm(llm: Any, heldout_file: Path, config: TrainConfig, out: Path, log: Any,
                 samples: int = 8, problems_per_chunk: int | None = None) -> dict[str, float]:
    """Held-out pass@1 / pass@k through deepscaler.eval (the code real benchmarks use), at the longest
    budget of the run so that every model is measured alike. problems_per_chunk: problems per generate call
    (None: the eval default)."""
    from deepscaler.eval.generate import run_eval

    longest = max(config.stages, key=lambda s: s.max_response_tokens)
    settings = replace(_eval_settings(config, longest, samples), benchmarks=[str(heldout_file)])
    if problems_per_chunk is not None:
        settings = replace(settings, problems_per_chunk=problems_per_chunk)
    summary = run_eval(llm, settings, out, model={"name": out.name}, workers=2, show=False)
    keys = ("pass@1", "pass@2", "pass@4", "pass@8", "maj@8", f"maj@{samples}", "mean_length", "truncation_rate")
    result = {key: float(summary[key]) for key in keys if summary.get(key) is not None}
    result["worked_rate"] = worked_rate(out / "samples.jsonl")
    log(f"held-out after {out.name}: pass@1 {result['pass@1']:.3f}, "
        f"pass@{samples} {result.get(f'pass@{samples}', float('nan')):.3f}, "
        f"worked {result['worked_rate']:.0%}")
    return result


def worked_rate(samples_file: Path) -> float:
    """The share of an evaluation's responses that work the problem out (see curriculum.is_worked)."""
    from deepscaler.eval.results import read_records
    from deepscaler.recipes.curriculum import is_worked

    records = read_records(samples_file)
    return sum(is_worked(record.response) for record in records) / max(1, len(records))


def progress_printer(log: Any):
    def show(metrics: dict) -> None:
        log(f"step {metrics['step']:>3} [{metrics['stage/name']}, budget {metrics['stage/max_response_tokens']}] "
            f"accuracy {metrics['accuracy']:.3f} length {metrics['response_length/mean']:.0f} "
            f"truncated {metrics['truncation_ratio']:.2f} ({metrics['time/step']:.1f}s)")

    return show


def _report(summary: dict, config: TrainConfig) -> str:
    rows = ["| model | pass@1 | pass@8 | maj@8 | worked | mean length | truncated |",
            "|---|---|---|---|---|---|---|"]
    for name, values in summary["eval"].items():
        if name == "final":
            continue
        rows.append(f"| {name} | {values['pass@1']:.3f} | {values.get('pass@8', float('nan')):.3f} | "
                    f"{values.get('maj@8', float('nan')):.3f} | {values.get('worked_rate', 0):.0%} | "
                    f"{values.get('mean_length', 0):.0f} | {values.get('truncation_rate', 0):.2f} |")
    gain = summary["eval"]["final"]["pass@1"] - summary["eval"]["sft"]["pass@1"]
    stages = ", ".join(f"{s.name} ({s.max_response_tokens} tokens)" for s in config.stages)
    return (f"# The embedded default: DeepScaleR's recipe in miniature\n\n"
            f"Stage 0 distilled a tiny Qwen2 model on a programmatic teacher's traces; GRPO stages {stages} "
            f"followed. Held-out problems (never trained on), {config.validation.temperature:g} temperature, "
            f"8 samples each:\n\n" + "\n".join(rows) +
            f"\n\nHeld-out pass@1 changed by {gain:+.3f} from the SFT model to the final RL model, in "
            f"{summary['wall_seconds'] / 60:.1f} minutes. Curves: `plots/training.png`.\n")
