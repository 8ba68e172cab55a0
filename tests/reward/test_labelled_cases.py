"""The verifier against an independent, hand-labelled set of model responses.

`data/labelled_cases.jsonl` holds one case per line: a full response, its gold (string, number or list of
acceptable answers), the label a careful mathematician would give (1 equal, 0 not) and a short reason.
The labels come from the mathematics, not from any implementation; see the `why` field of each case.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data" / "labelled_cases.jsonl"
FIELDS = {"id", "category", "response", "gold", "expected", "why"}
ADVERSARIAL_SECONDS = 2.0
# files the code payloads in the adversarial cases would create if anything executed them
PAYLOAD_FILES = [Path("/tmp/pwned")]


def load_cases(path: Path = DATA) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


CASES = load_cases()
ADVERSARIAL = [case for case in CASES if case["category"] == "adversarial"]


def _short(value: object, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...<{len(text)} chars>"


def test_cases_file_is_well_formed() -> None:
    assert 400 <= len(CASES) <= 600
    ids = [case["id"] for case in CASES]
    assert len(set(ids)) == len(ids), "duplicate ids"
    per_label: Counter = Counter()
    for case in CASES:
        assert set(case) == FIELDS, case["id"]
        assert case["id"].startswith(case["category"] + "-"), case["id"]
        assert isinstance(case["response"], str)
        assert case["expected"] in (0, 1)
        gold = case["gold"]
        assert isinstance(gold, (str, int, float)) or (
            isinstance(gold, list) and gold and all(isinstance(g, str) for g in gold)
        ), case["id"]
        per_label[case["category"], case["expected"]] += 1
    categories = {case["category"] for case in CASES}
    for category in categories - {"adversarial"}:
        assert per_label[category, 1] and per_label[category, 0], f"{category} needs both labels"
    assert all(case["expected"] == 0 for case in ADVERSARIAL)
    positive = sum(case["expected"] for case in CASES) / len(CASES)
    assert 0.45 <= positive <= 0.65


@pytest.fixture(scope="module")
def bulk_scores() -> tuple[list[float], object, float]:
    from deepscaler.reward import RewardScorer

    start = time.monotonic()
    with RewardScorer(workers=2, timeout=1.0) as scorer:
        scores = scorer.score([c["response"] for c in CASES], [c["gold"] for c in CASES])
        stats = scorer.stats
    return scores, stats, time.monotonic() - start


def test_labelled_accuracy(bulk_scores) -> None:
    from deepscaler.reward import extract_answer

    scores, stats, seconds = bulk_scores
    assert len(scores) == len(CASES)
    wrong = [(case, score) for case, score in zip(CASES, scores, strict=True) if score != case["expected"]]
    false_positives = [case for case, score in wrong if score == 1.0]
    accuracy = 1 - len(wrong) / len(CASES)
    lines = []
    for case, score in wrong:
        try:
            extracted = extract_answer(case["response"])
        except Exception as exc:  # show it, do not hide the other failures
            extracted = f"<extract_answer raised {type(exc).__name__}>"
        lines.append(
            f"{case['id']} [{case['category']}] expected={case['expected']} got={score:g} "
            f"extracted={_short(extracted)} gold={_short(case['gold'])} ({case['why']})"
        )
    report = (
        f"accuracy {accuracy:.4f} ({len(CASES) - len(wrong)}/{len(CASES)}), "
        f"{len(false_positives)} false positives, {seconds:.1f}s, stats={stats}\n" + "\n".join(lines)
    )
    # What README claims: every case right (accuracy 1.000, so 0 false positives); one regression fails here.
    assert not wrong, report


def test_adversarial_cases_score_zero_in_bulk(bulk_scores) -> None:
    scores, _, _ = bulk_scores
    bad = [
        case["id"]
        for case, score in zip(CASES, scores, strict=True)
        if case["category"] == "adversarial" and score != 0.0
    ]
    assert not bad, f"adversarial cases scored 1: {bad}"


# Runs math_reward on each adversarial case in a fresh interpreter, one JSON line per case, so that a hang
# is seen (and attributed to its case) instead of stalling the test session.
_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from deepscaler.reward import math_reward
    cases = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
    wanted = set(sys.argv[2:])
    math_reward("</think> $\\\\boxed{\\\\frac{1}{2}}$", "0.5")  # warm-up, not timed
    print(json.dumps({"ready": True}), flush=True)
    for case in cases:
        if case["id"] not in wanted:
            continue
        print(json.dumps({"start": case["id"]}), flush=True)
        t0 = time.perf_counter()
        try:
            score = math_reward(case["response"], case["gold"])
        except BaseException as exc:
            score = "raised " + type(exc).__name__
        print(json.dumps({"id": case["id"], "score": score, "seconds": time.perf_counter() - t0}), flush=True)
    """
)


def _run_adversarial_child(ids: list[str]) -> tuple[dict[str, dict], str | None, str]:
    """Results by id, the id that hung (if any) and the child's stderr tail."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(DATA), *ids],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    results: dict[str, dict] = {}
    current: str | None = None
    hung: str | None = None
    limit = 60.0  # start-up (imports) may be slow on a loaded machine
    buffer = b""
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    try:
        eof = False
        while not eof:
            # read the pipe directly: a buffered reader could hold lines that select() does not see
            if not sel.select(timeout=limit):
                hung = current or "<start-up>"
                break
            chunk = os.read(fd, 1 << 16)
            eof = not chunk
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                msg = json.loads(line)
                if "ready" in msg:
                    limit = ADVERSARIAL_SECONDS + 3.0  # generous: the child times each case itself
                elif "start" in msg:
                    current = msg["start"]
                else:
                    results[msg["id"]] = msg
                    current = None
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    return results, hung, err.decode(errors="replace")[-2000:]


def test_adversarial_cases_are_rejected_quickly() -> None:
    existed = {path: path.exists() for path in PAYLOAD_FILES}
    by_id = {case["id"]: case for case in ADVERSARIAL}
    remaining = list(by_id)
    results: dict[str, dict] = {}
    problems = []
    while remaining:
        got, hung, stderr = _run_adversarial_child(remaining)
        results.update(got)
        if hung is None:
            break
        problems.append(f"{hung}: no result within {ADVERSARIAL_SECONDS + 3:.0f}s (hung); stderr: {stderr}")
        if hung not in by_id:  # the child could not even start
            break
        remaining = [case_id for case_id in remaining if case_id not in got and case_id != hung]
    for case_id, case in by_id.items():
        res = results.get(case_id)
        if res is None:
            continue
        if res["score"] != 0.0:
            problems.append(f"{case_id}: scored {res['score']!r} ({case['why']})")
        if res["seconds"] > ADVERSARIAL_SECONDS:
            problems.append(f"{case_id}: took {res['seconds']:.2f}s ({case['why']})")
    missing = [case_id for case_id in by_id if case_id not in results]
    if missing and not problems:
        problems.append(f"no result for {missing}")
    for path, before in existed.items():
        if not before and path.exists():
            problems.append(f"a code payload ran: {path} was created")
    assert not problems, "\n".join(problems)
