"""The embedded default recipe's Stage 0: a tiny Qwen2 model, distilled on an imperfect teacher's traces.

`prepare_stage0` builds a random tiny model, fine-tunes it on the teacher's responses to curriculum
problems and measures it on held-out problems. The teacher is imperfect on purpose (curriculum.py):
30% of its responses state an answer without working (right a quarter of the time) and 10% of the
worked ones slip. The distilled model copies both habits, and sampling at temperature 0.6 sharpens the
first: measured on a 2-core CPU after about two and a half minutes of SFT, it answers without working
about 90% of the time, works about 70% of the problems it does work out correctly, and scores about
0.25 pass@1: a mediocre reasoner whose own samples show GRPO that working pays. A learning rate of
5e-4 and many small steps (batches of 8) trained this model best.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepscaler.files import write_json_atomic
from deepscaler.prompting import PROMPT_TEMPLATE, user_turn
from deepscaler.recipes.curriculum import (
    FAMILIES,
    MAX_DIFFICULTY,
    Problem,
    generate_problems,
    is_worked,
    teacher_trace,
)
from deepscaler.recipes.sft import SFTConfig, run_sft


def user_prompt(problem: Problem, template: str = PROMPT_TEMPLATE) -> str:
    """The user turn for a curriculum problem: the prompt RL and eval use, so SFT, RL and eval all see the same."""
    return user_turn(problem["problem"], template)


# A family in which each step reads only the line above (see curriculum.py), which a model trained for
# minutes learns to work out well, so working clearly beats answering without working. With linear
# recurrences mixed in (half the traces each, or 12,000 traces in all) the SFT model worked its
# solutions out right only 32-40% of the time, against about 70% on modular powers alone.
EMBEDDED_FAMILIES = ("modular",)


@dataclass
class TinyRecipeConfig:
    """Every choice of Stage 0 of the embedded default recipe.

    families: curriculum families to draw problems from. sft_problems: training problems the teacher
    solves (one trace each); hasty_rate: the share of traces that state an answer without working;
    error_rate: the share of the worked ones with a slip. rl_problems / heldout_problems: sizes of the
    RL training set and the held-out evaluation set. eval_*: how Stage 0's own evaluation samples.
    """

    preset: str = "tiny"
    model_seed: int = 0
    seed: int = 0
    families: tuple[str, ...] = EMBEDDED_FAMILIES
    difficulties: tuple[int, ...] = tuple(range(1, MAX_DIFFICULTY + 1))
    sft_problems: int = 6000
    error_rate: float = 0.1
    hasty_rate: float = 0.3
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl_problems: int = 2000
    heldout_problems: int = 100
    eval_samples: int = 8
    eval_temperature: float = 0.6
    eval_top_p: float = 1.0
    eval_max_tokens: int = 320
    evaluate: bool = True

    def __post_init__(self) -> None:
        from deepscaler.config import ConfigError

        unknown = [family for family in self.families if family not in FAMILIES]
        if unknown or not self.families:
            raise ConfigError(f"stage0.families: choose from {', '.join(FAMILIES)} (got {list(self.families)})")
        if not set(self.difficulties) <= set(range(1, MAX_DIFFICULTY + 1)) or not self.difficulties:
            raise ConfigError(f"stage0.difficulties: each must be in 1..{MAX_DIFFICULTY}")
        for name in ("error_rate", "hasty_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"stage0.{name} must be between 0 and 1")


def sft_examples(problems: Sequence[Problem], error_rate: float, seed: int, hasty_rate: float = 0.0
                 ) -> tuple[list[tuple[str, str]], dict[str, float]]:
    """(prompt, teacher trace) pairs for the problems, and the shares of traces that are correct and
    that work the problem (`{"correct": x, "worked": y}`)."""
    rng = random.Random(f"deepscaler-teacher/{seed}")
    traces = [teacher_trace(problem, rng, error_rate, hasty_rate) for problem in problems]
    pairs = [(user_prompt(problem), trace.text) for problem, trace in zip(problems, traces)]
    count = max(1, len(traces))
    return pairs, {"correct": sum(t.correct for t in traces) / count, "worked": sum(t.worked for t in traces) / count}


def evaluate(llm: Any, problems: Sequence[Problem], samples: int = 8, temperature: float = 1.0,
             top_p: float = 1.0, max_tokens: int = 320, seed: int = 0) -> dict[str, Any]:
    """Held-out pass@1 and pass@k, format rate and response lengths, overall and per difficulty.

    A response is well formatted when it stopped by itself and has a boxed answer after `</think>`.
    """
    from deepscaler.eval.metrics import pass_at_k
    from deepscaler.inference import SamplingParams
    from deepscaler.prompting import conversation
    from deepscaler.reward import extract_answer, math_reward

    params = [SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens, n=samples,
                             seed=seed * 1_000_003 + index) for index in range(len(problems))]
    started = time.perf_counter()
    outputs = llm.chat([conversation(p["problem"]) for p in problems], params, use_tqdm=False)
    generate_time = time.perf_counter() - started
    rows = []
    for problem, output in zip(problems, outputs):
        completions = output.outputs
        rewards = [math_reward(c.text, problem["answer"], think="required") for c in completions]
        formatted = [c.finish_reason == "stop" and extract_answer(c.text, think="required") is not None
                     for c in completions]
        rows.append({"difficulty": problem["difficulty"], "family": problem["family"],
                     "correct": int(sum(rewards)), "formatted": sum(formatted),
                     "worked": sum(is_worked(c.text) for c in completions),
                     "lengths": [len(c.token_ids) for c in completions]})

    def summary(selected: list[dict]) -> dict[str, Any]:
        result: dict[str, Any] = {"problems": len(selected)}
        for k in sorted({1, 2, 4, samples} & set(range(1, samples + 1))):
            result[f"pass@{k}"] = statistics.mean(pass_at_k(samples, r["correct"], k) for r in selected)
        lengths = [n for r in selected for n in r["lengths"]]
        result["format_rate"] = sum(r["formatted"] for r in selected) / (samples * len(selected))
        result["worked_rate"] = sum(r["worked"] for r in selected) / (samples * len(selected))
        result["mean_length"] = statistics.mean(lengths)
        result["max_length"] = max(lengths)
        return result

    by: dict[str, dict[Any, list[dict]]] = {"difficulty": defaultdict(list), "family": defaultdict(list)}
    for row in rows:
        by["difficulty"][row["difficulty"]].append(row)
        by["family"][row["family"]].append(row)
    return {**summary(rows), "generate_time": generate_time,
            "by_difficulty": {key: summary(value) for key, value in sorted(by["difficulty"].items())},
            "by_family": {key: summary(value) for key, value in sorted(by["family"].items())}}


def prepare_stage0(out_dir: str | Path, config: TinyRecipeConfig | None = None
                   ) -> tuple[Path, list[Problem], list[Problem], dict[str, Any]]:
    """Build the tiny model, distil it on teacher traces, and measure it on held-out problems.

    Writes out_dir/base (the random model), out_dir/sft (the Stage 0 model) and out_dir/stage0.json
    (the metrics). Returns (SFT model folder, RL training problems, held-out problems, metrics).
    """
    from deepscaler.inference import LLM, make_tiny_model

    config = config or TinyRecipeConfig()
    out = Path(out_dir)
    started = time.perf_counter()
    base = make_tiny_model(out / "base", preset=config.preset, seed=config.model_seed)
    mix = {"families": config.families, "difficulties": config.difficulties}
    sft_set = generate_problems(config.sft_problems, config.seed, "train", unique=False, **mix)
    # Some (family, difficulty) pairs have fewer distinct problems than their share: keep each once.
    rl_set = list({p["id"]: p for p in generate_problems(config.rl_problems, config.seed + 1, "train",
                                                         unique=False, **mix)}.values())
    heldout = generate_problems(config.heldout_problems, config.seed, "heldout", **mix)
    examples, shares = sft_examples(sft_set, config.error_rate, config.seed, config.hasty_rate)
    sft_dir = out / "sft"
    sft_metrics = run_sft(base, sft_dir, examples, config.sft)
    metrics: dict[str, Any] = {"config": asdict(config), "teacher_correct": shares["correct"],
                               "teacher_worked": shares["worked"],
                               "sft": {k: v for k, v in sft_metrics.items() if k != "config"}}
    if config.evaluate:
        with LLM(model=sft_dir, engine="builtin", seed=config.seed) as llm:
            metrics["heldout"] = evaluate(llm, heldout, config.eval_samples, config.eval_temperature,
                                          config.eval_top_p, config.eval_max_tokens, config.seed)
    metrics["wall_time"] = time.perf_counter() - started
    write_json_atomic(out / "stage0.json", metrics)
    return sft_dir, rl_set, heldout, metrics
