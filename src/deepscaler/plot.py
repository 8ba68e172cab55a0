"""Training curves from a run directory's metrics.jsonl, as PNG, with stage boundaries marked."""

from __future__ import annotations

from pathlib import Path

PANELS = [
    ("reward and accuracy", ["reward/mean", "accuracy", "val/pass@1"]),
    ("response length (tokens)", ["response_length/mean", "response_length/max", "stage/max_response_tokens"]),
    ("truncated fraction", ["truncation_ratio"]),
    ("policy", ["actor/kl", "actor/entropy", "actor/clip_frac", "actor/grad_norm"]),
]


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the run's curves into `out` (default RUN_DIR/plots/training.png) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepscaler.trainer.metrics import read_metrics

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    if not records:
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl with steps in it")
    out = Path(out) if out else run_dir / "plots" / "training.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    boundaries = [r["step"] - 0.5 for prev, r in zip(records, records[1:]) if r.get("stage") != prev.get("stage")]
    figure, axes = plt.subplots(len(PANELS), 1, figsize=(9, 2.6 * len(PANELS)), sharex=True)
    for axis, (title, keys) in zip(axes, PANELS):
        for key in keys:
            points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            if points:
                steps, values = zip(*points)
                style = "o-" if key.startswith("val/") else "-"
                axis.plot(steps, values, style, label=key, markersize=3)
        for boundary in boundaries:
            axis.axvline(boundary, color="grey", linestyle="--", linewidth=1)
        axis.set_title(title, fontsize=10)
        axis.legend(fontsize=8, loc="best")
        axis.grid(alpha=0.3)
    names = {r.get("stage"): r.get("stage/name") for r in records}
    axes[0].set_title(f"reward and accuracy — stages: {', '.join(str(n) for n in names.values())}", fontsize=10)
    axes[-1].set_xlabel("step")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
