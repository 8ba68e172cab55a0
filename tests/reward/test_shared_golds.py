"""Every gold in ../shared/data is gradable and equal to natural rewritings of itself."""

import json
import re
from pathlib import Path

import pytest

from deepscaler.reward import RewardScorer, gold_answers
from deepscaler.reward.equivalence import prepare

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
# Golds outside any answer grammar, each graded only against its own spelling:
UNGRADABLE = {
    "$\\angle B E A_{1}=90$,$\\angle A E B_{1}=90$": "geometry statement about angles, not a value",
    "$f(x)=a x+b$, where $b$ is an arbitrary integer, and $a$ is an arbitrary positive integer with "
    "$\\mho(a)=0$": "a family of functions described in prose",
    "\\frac{1}{7}\\triangle ABC": "an area written as a fraction of a triangle",
    "4\\!:\\!51\\!:\\!06 \\text{ p.m.}": "a clock time",
    "8\\!:\\!34 \\text{ p.m.}": "a clock time",
    "05\\!:\\!00": "a clock time",
    "$t(0,4]$": "shorthand for t in (0, 4]",
    "": "empty (two MATH train rows): as a gold it would reward only an empty box",
}


def _golds() -> list[tuple[str, str]]:
    if not DATA.is_dir():
        pytest.skip(f"{DATA} not found")
    golds = []
    for path in sorted(DATA.glob("*/*.json")):
        for row in json.loads(path.read_text()):
            golds.extend((path.name, gold) for gold in gold_answers(row["answer"]))
    return golds


def _rewrites(gold: str) -> list[str]:
    text = gold.strip()
    inner = text[1:-1] if text.startswith("$") and text.endswith("$") and text.count("$") == 2 else text
    spaced = re.sub(r"\s*([+=<>]|\\cdot)\s*", r" \1 ", inner)
    rewrites = [f"$ {inner} $", inner.replace("\\frac", "\\dfrac"), spaced]
    prepared = prepare(gold)
    structured = ("rel", "list", "tuple", "set", "matrix")
    if prepared.words is None and prepared.tree is not None and prepared.tree[0] not in structured:
        rewrites.append(f"\\left({prepared.text}\\right)")  # a scalar in redundant brackets
    return rewrites


def test_every_gold_is_gradable():
    golds = _golds()
    unusable = []
    for source, gold in golds:
        prepared = prepare(gold)
        if prepared.tree is None and prepared.words is None and prepared.letter is None:
            unusable.append((source, gold))
    unexplained = [(source, gold) for source, gold in unusable if gold not in UNGRADABLE]
    assert len(golds) > 9000
    assert unexplained == []


@pytest.mark.slow
def test_golds_equal_their_rewritings():
    golds = [(source, gold) for source, gold in _golds() if gold not in UNGRADABLE]
    responses, targets, origin = [], [], []
    for source, gold in dict.fromkeys(golds):
        for rewrite in _rewrites(gold):
            responses.append(f"<think>work</think> The answer is $\\boxed{{{rewrite}}}$.")
            targets.append(gold)
            origin.append((source, gold, rewrite))
    with RewardScorer(workers=2, timeout=5.0) as scorer:
        scores = scorer.score(responses, targets)
    failures = [item for item, score in zip(origin, scores) if score != 1.0]
    assert failures == [], "\n".join(f"{s}: {g!r} vs {r!r}" for s, g, r in failures[:40])
