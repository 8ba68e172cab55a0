"""A memory plan as people read it (a table of GB per GPU, terms by stage) and as programs do (one JSON object)."""

from __future__ import annotations

from deepscaler.planner.memory import GIB
from deepscaler.planner.plan import StagePlan


def _gb(value: float) -> str:
    return f"{value / GIB:.1f}"


def table(stages: list[StagePlan], gpus: int, gpu_memory_gb: float, suggestions: list[str]) -> str:
    """Rows: each term of the update, each phase's total, the peak and the verdict; a column per stage."""
    names = [stage.name for stage in stages]
    width = max(12, *(len(n) for n in names))
    label = 22
    lines = [f"memory plan per GPU, in GiB ({gpus} GPU{'s' if gpus > 1 else ''} of {gpu_memory_gb:g} GiB)",
             " " * label + "".join(n.rjust(width) for n in names)]

    def row(title: str, values: list[str]) -> None:
        lines.append(title.ljust(label) + "".join(v.rjust(width) for v in values))

    row("micro-batch tokens", [str(stage.tokens) for stage in stages])
    for term in stages[0].breakdown.terms:
        row(f"  {term}", [_gb(stage.breakdown.terms[term]) for stage in stages])
    for phase in stages[0].breakdown.phases:
        row(f"{phase} total", [_gb(stage.breakdown.phases[phase]) for stage in stages])
    row("peak", [_gb(stage.breakdown.peak) for stage in stages])
    row("fits", ["yes" if stage.fits else "NO" for stage in stages])
    if all(stage.fits for stage in stages):
        return "\n".join(lines)
    if suggestions:
        lines.append("would fit with any one of:" if len(suggestions) > 1 else "would fit with:")
        lines.extend(f"  {s}" for s in suggestions)
    else:
        lines.append("no setting tried here makes it fit (a smaller model, or bigger GPUs)")
    return "\n".join(lines)


def as_json(stages: list[StagePlan], suggestions: list[str]) -> dict:
    return {
        "stages": [{"name": stage.name, "peak_gb_per_gpu": round(stage.breakdown.peak / GIB, 2), "fits": stage.fits,
                    "micro_batch_tokens": stage.tokens,
                    "terms_gb": {k: round(v / GIB, 3) for k, v in stage.breakdown.terms.items()},
                    "phases_gb": {k: round(v / GIB, 3) for k, v in stage.breakdown.phases.items()}}
                   for stage in stages],
        "suggestions": suggestions,
    }
