"""Benchmark the math answer verifier (`deepscaler.reward`) against Math-Verify 0.9, side by side.

    python bench/bench_reward.py                  # everything, a few minutes on 2 cores
    python bench/bench_reward.py --no-math-verify # only our verifier

Three parts:
  (a) accuracy, false positives and time-outs on tests/reward/data/labelled_cases.jsonl;
  (b) per-call grading time (median, p90) on the ordinary positive cases, and the speed ratio;
  (c) a batch of 2,048 ordinary responses through `RewardScorer(workers=2)`: wall seconds and items/s.

Math-Verify is graded the usual way, `verify(parse(gold), parse(response))` with its default timeouts
(signal.alarm, so it runs in the main thread of a child process). Each acceptable gold string is given to
`parse` wrapped in `$...$`, as its README does: a bare LaTeX gold such as `\\frac{1}{2}` is otherwise not
extracted at all. A hang that its alarms cannot interrupt (a huge integer power in C) is cut off by killing
the child after --mv-hard-limit seconds; such cases count as hard time-outs and score 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES_PATH = ROOT / "tests" / "reward" / "data" / "labelled_cases.jsonl"

# categories whose positive cases are "ordinary" answers: integers, fractions, decimals, simple LaTeX
ORDINARY = {
    "separator", "leading_zero", "fraction", "decimal", "sign", "gold_type", "numeric", "latex_noise",
    "radical", "pi_e", "degree", "units", "percent", "real",
}  # fmt: skip

TARGET_MEDIAN_MS = 1.0
TARGET_SPEEDUP = 10.0
TARGET_BATCH_SECONDS = 5.0


# ----------------------------------------------------------------------------------------------- helpers
def load_cases(path: Path = CASES_PATH) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def ordinary_cases(cases: list[dict]) -> list[dict]:
    return [c for c in cases if c["expected"] == 1 and c["category"] in ORDINARY and len(c["response"]) < 4000]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def print_table(title: str, headers: list[str], rows: list[list[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "+".join("-" * (w + 2) for w in widths)
    print(f"\n{title}")
    print(line)
    for n, row in enumerate(cells):
        print(" " + " | ".join(v.rjust(w) if n else v.ljust(w) for v, w in zip(row, widths, strict=True)))
        if n == 0:
            print(line)
    print(line)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def stat(stats: object, name: str) -> int:
    if isinstance(stats, dict):
        return int(stats.get(name, 0))
    return int(getattr(stats, name, 0))


# ----------------------------------------------------------------------------------------- Math-Verify
def _mv_grade(parse, verify, response: str, gold) -> bool:
    golds = gold if isinstance(gold, list) else [gold]
    gold_parsed = []
    for g in golds:
        text = str(g).strip()
        gold_parsed.extend(parse(text if "$" in text else f"${text}$"))
    return bool(verify(gold_parsed, parse(response)))


def _mv_child(conn) -> None:
    """Runs in the main thread of a child process, so Math-Verify's signal.alarm timeouts work."""
    import logging

    from math_verify import parse, verify

    class TimeoutCounter(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.count = 0

        def emit(self, record: logging.LogRecord) -> None:
            if "timeout" in record.getMessage().lower():
                self.count += 1

    counter = TimeoutCounter()
    mv_logger = logging.getLogger("math_verify")
    mv_logger.addHandler(counter)
    mv_logger.propagate = False  # keep its warnings off the bench's output
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        response, gold = job
        counter.count = 0
        t0 = time.perf_counter()
        try:
            ok = _mv_grade(parse, verify, response, gold)
        except Exception:
            ok = False
        conn.send((ok, time.perf_counter() - t0, counter.count))


class MathVerifyRunner:
    """Math-Verify in a child process that is killed and replaced when a call overruns `hard_limit`."""

    def __init__(self, hard_limit: float) -> None:
        self.hard_limit = hard_limit
        self.hard_timeouts = 0
        self._ctx = mp.get_context("spawn")
        self._start()

    def _start(self) -> None:
        self._conn, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_mv_child, args=(child,), daemon=True)
        self._proc.start()
        child.close()
        if not self._conn.poll(120) or self._conn.recv() != "ready":
            raise RuntimeError("Math-Verify child did not start")

    def restart(self) -> None:
        self.close()
        self._start()

    def grade(self, response: str, gold) -> tuple[bool, float, int, bool]:
        """(correct, seconds inside Math-Verify, soft time-outs logged, killed on the hard limit)."""
        self._conn.send((response, gold))
        if self._conn.poll(self.hard_limit):
            ok, seconds, soft = self._conn.recv()
            return ok, seconds, soft, False
        self.hard_timeouts += 1
        self._proc.kill()
        self._proc.join()
        self._start()
        return False, self.hard_limit, 0, True

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._proc.join(2)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        self._conn.close()


# ------------------------------------------------------------------------------------------------ parts
def warmup_items(n: int = 24) -> list[tuple[str, str]]:
    """Items not in the labelled set, so the timed calls below are each a first call on their input."""
    items = []
    for k in range(n):
        items.append((f"<think>\nwarm-up {k}\n</think>\n\nThe answer is $\\boxed{{{97 + k}}}$.", str(97 + k)))
        items.append((f"</think> So $\\boxed{{\\frac{{{k + 1}}}{{{k + 7}}}}}$", f"{k + 1}/{k + 7}"))
    # answers that may need the symbolic path, so any worker start-up happens here, not in a timed call
    items += [
        ("</think> $\\boxed{\\sqrt{12}}$", "2\\sqrt{3}"),
        ("</think> $\\boxed{\\frac{3\\pi}{4}}$", "3\\pi/4"),
        ("</think> $\\boxed{x^2-4}$", "(x-2)(x+2)"),
        ("</think> $\\boxed{\\sqrt[3]{54}}$", "3\\sqrt[3]{2}"),
    ]
    return items


def time_ours(cases: list[dict]) -> list[float]:
    from deepscaler.reward import math_reward

    for response, gold in warmup_items():
        math_reward(response, gold)
    times = []
    for c in cases:
        t0 = time.perf_counter()
        math_reward(c["response"], c["gold"])
        times.append(time.perf_counter() - t0)
    return times


def time_math_verify(runner: MathVerifyRunner, cases: list[dict]) -> list[float]:
    runner.restart()  # empty caches
    for response, gold in warmup_items():
        runner.grade(response, gold)
    return [runner.grade(c["response"], c["gold"])[1] for c in cases]


def accuracy_ours(cases: list[dict]) -> dict:
    from deepscaler.reward import RewardScorer

    t0 = time.perf_counter()
    with RewardScorer(workers=2, timeout=1.0) as scorer:
        scores = scorer.score([c["response"] for c in cases], [c["gold"] for c in cases])
        stats = scorer.stats
    seconds = time.perf_counter() - t0
    return summarise(cases, [int(s == 1.0) for s in scores], seconds, stat(stats, "timeouts"), 0)


def accuracy_math_verify(runner: MathVerifyRunner, cases: list[dict]) -> dict:
    t0 = time.perf_counter()
    got, soft_cases = [], 0
    hard_before = runner.hard_timeouts
    for c in cases:
        ok, _, soft, _ = runner.grade(c["response"], c["gold"])
        got.append(int(ok))
        soft_cases += soft > 0
    seconds = time.perf_counter() - t0
    return summarise(cases, got, seconds, soft_cases, runner.hard_timeouts - hard_before)


def accuracy_row(name: str, res: dict, hard: object) -> list[object]:
    cells = [name, f"{res['accuracy']:.4f}", res["fp"], res["fn"], res["timeouts"], hard]
    return cells + [f"{res['seconds']:.1f}"]


def summarise(cases: list[dict], got: list[int], seconds: float, timeouts: int, hard: int) -> dict:
    fp = sum(1 for c, g in zip(cases, got, strict=True) if g == 1 and c["expected"] == 0)
    fn = sum(1 for c, g in zip(cases, got, strict=True) if g == 0 and c["expected"] == 1)
    per_cat: Counter = Counter()
    errors: Counter = Counter()
    for c, g in zip(cases, got, strict=True):
        per_cat[c["category"]] += 1
        errors[c["category"]] += g != c["expected"]
    return {
        "accuracy": 1 - (fp + fn) / len(cases), "fp": fp, "fn": fn, "timeouts": timeouts, "hard": hard,
        "seconds": seconds, "per_cat": per_cat, "errors": errors, "got": got,
    }  # fmt: skip


def build_batch(cases: list[dict], size: int) -> tuple[list[str], list, list[int]]:
    """Half labelled ordinary cases (text varied), half fresh integer/fraction items (half of them wrong)."""
    ordinary = [c for c in cases if c["category"] in ORDINARY and len(c["response"]) < 4000]
    responses, golds, expected = [], [], []
    for i in range(size):
        if i % 2 == 0:
            c = ordinary[(i // 2) % len(ordinary)]
            responses.append(f"Attempt {i}. " + c["response"])
            golds.append(c["gold"])
            expected.append(c["expected"])
        else:
            n = 1000 + 37 * i
            wrong = (i // 2) % 2
            kind = (i // 4) % 3
            if kind == 0:
                box, gold = f"{n:,}", str(n + wrong)
            elif kind == 1:
                box, gold = f"\\frac{{{2 * n}}}{{{6}}}", f"\\dfrac{{{n + wrong}}}{{3}}"
            else:
                box, gold = f"{n}.5", f"\\frac{{{2 * n + 1 + 2 * wrong}}}{{2}}"
            think = f"<think>\nItem {i}: computing carefully.\n</think>\n\n"
            responses.append(think + f"The answer is $\\boxed{{{box}}}$.")
            golds.append(gold)
            expected.append(1 - wrong)
    return responses, golds, expected


def run_batch(responses: list[str], golds: list, expected: list[int]) -> dict:
    from deepscaler.reward import RewardScorer

    with RewardScorer(workers=2) as scorer:
        t0 = time.perf_counter()
        scores = scorer.score(responses, golds)
        wall = time.perf_counter() - t0
        stats = scorer.stats
    agree = sum(int(s == 1.0) == e for s, e in zip(scores, expected, strict=True)) / len(expected)
    return {"wall": wall, "stats": stats, "agree": agree}


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-math-verify", action="store_true", help="skip Math-Verify (our figures only)")
    ap.add_argument("--mv-hard-limit", type=float, default=20.0, help="kill a Math-Verify call after this")
    ap.add_argument("--batch-size", type=int, default=2048)
    args = ap.parse_args(argv)

    cases = load_cases()
    ordinary = ordinary_cases(cases)
    print(f"labelled cases: {len(cases)} ({sum(c['expected'] for c in cases)} positive) from {CASES_PATH}")
    print(f"ordinary positive cases for per-call timing: {len(ordinary)} from {', '.join(sorted(ORDINARY))}")
    use_mv = not args.no_math_verify
    runner = MathVerifyRunner(args.mv_hard_limit) if use_mv else None
    try:
        # (b) first, so that neither side has seen these inputs (both cache parsed answers)
        ours_t = time_ours(ordinary)
        mv_t = time_math_verify(runner, ordinary) if runner else []
        # (a)
        ours = accuracy_ours(cases)
        mv = accuracy_math_verify(runner, cases) if runner else None
    finally:
        if runner:
            runner.close()

    rows = [accuracy_row("deepscaler.reward", ours, "-")]
    if mv:
        rows.append(accuracy_row("Math-Verify 0.9", mv, mv["hard"]))
    print_table(
        f"(a) labelled set: {len(cases)} cases",
        ["verifier", "accuracy", "false pos", "false neg", "time-outs", "hard kills", "wall s"],
        rows,
    )
    cat_rows = []
    for cat in sorted(ours["per_cat"]):
        n = ours["per_cat"][cat]
        row = [cat, n, f"{1 - ours['errors'][cat] / n:.3f}"]
        if mv:
            row.append(f"{1 - mv['errors'][cat] / n:.3f}")
        cat_rows.append(row)
    headers = ["category", "cases", "ours"] + (["Math-Verify"] if mv else [])
    print_table("    per category accuracy", headers, cat_rows)

    med_o, p90_o = statistics.median(ours_t) * 1e3, percentile(ours_t, 0.9) * 1e3
    rows = [["deepscaler.reward", f"{med_o:.3f}", f"{p90_o:.3f}", f"{max(ours_t) * 1e3:.1f}"]]
    if mv_t:
        med_m, p90_m = statistics.median(mv_t) * 1e3, percentile(mv_t, 0.9) * 1e3
        rows.append(["Math-Verify 0.9", f"{med_m:.3f}", f"{p90_m:.3f}", f"{max(mv_t) * 1e3:.1f}"])
        rows.append(["ratio (MV / ours)", f"{med_m / med_o:.1f}x", f"{p90_m / p90_o:.1f}x", ""])
    print_table(
        f"(b) per-call grading time, {len(ordinary)} ordinary positive cases (first call on each input)",
        ["verifier", "median ms", "p90 ms", "max ms"],
        rows,
    )
    print(f"    target: ours median < {TARGET_MEDIAN_MS} ms: {verdict(med_o < TARGET_MEDIAN_MS)}", end="")
    if mv_t:
        speedup = med_m / med_o
        print(f"; >= {TARGET_SPEEDUP:.0f}x faster than Math-Verify: {verdict(speedup >= TARGET_SPEEDUP)}")
    else:
        print()

    # (c)
    responses, golds, expected = build_batch(cases, args.batch_size)
    batch = run_batch(responses, golds, expected)
    st = batch["stats"]
    row = [f"{batch['wall']:.2f}", f"{len(responses) / batch['wall']:.0f}", stat(st, "decided_fast")]
    row += [stat(st, "sent_to_workers"), stat(st, "timeouts"), f"{batch['agree']:.4f}"]
    print_table(
        f"(c) batch of {len(responses)} ordinary responses, a new RewardScorer(workers=2) "
        "(wall time includes starting its worker processes)",
        ["wall s", "items/s", "fast path", "to workers", "time-outs", "agreement"],
        [row],
    )
    print(f"    target: < {TARGET_BATCH_SECONDS:.0f} s: {verdict(batch['wall'] < TARGET_BATCH_SECONDS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
