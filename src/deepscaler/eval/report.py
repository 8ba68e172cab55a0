"""Summaries as tables: Markdown for files, rich for the terminal."""

from __future__ import annotations


def metric_columns(metrics: dict) -> list[str]:
    """pass@1 first, then the largest pass@k and maj@k, then lengths and truncation."""
    ks = sorted(int(key.split("@")[1]) for key in metrics if key.startswith("pass@"))
    top = ks[-1] if ks else 1
    columns = ["problems", "samples_per_problem", "pass@1"]
    if top > 1:
        columns += [f"pass@{top}", f"maj@{top}"]
    return columns + ["mean_length", "truncation_rate"]


def _cell(value: object, key: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and ("@" in key or key.endswith("rate")):
        return f"{100 * value:.1f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    columns = metric_columns(summary)  # overall ks are those every benchmark has
    table = [[name] + [_cell(metrics.get(c), c) for c in columns] for name, metrics in summary["benchmarks"].items()]
    if len(summary["benchmarks"]) > 1:
        table.append(["overall"] + [_cell(summary.get(c), c) for c in columns])
    return ["benchmark"] + columns, table


def markdown(summary: dict) -> str:
    header, table = rows(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    note = "pass@k and maj@k in percent; pass@k is the unbiased estimator over the samples of each problem."
    return "\n".join(lines) + f"\n\n{note}\n"


def print_table(summary: dict, title: str = "evaluation") -> None:
    from rich.console import Console
    from rich.table import Table

    header, table = rows(summary)
    view = Table(title=title)
    for column in header:
        view.add_column(column, justify="left" if column == "benchmark" else "right")
    for row in table:
        view.add_row(*row)
    Console(stderr=True).print(view)
