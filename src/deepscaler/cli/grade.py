"""`deepscaler grade`: score one response, or a JSONL file of them, with the math verifier."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepscaler.cli import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("response", nargs="?", help="a model response (or just an answer) to grade")
    parser.add_argument("gold", nargs="?", help="the gold answer")
    parser.add_argument("--file", type=Path, help="JSONL with fields `response` and `answer`, one item per line")
    parser.add_argument("--out", type=Path, help="write the scored lines here (default: standard output)")
    parser.add_argument("--think", choices=("optional", "required"), default="optional",
                        help="whether </think> must close the reasoning before the answer (default: optional)")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds of grading per item (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="grading processes for --file (default 2)")


def run(args: argparse.Namespace) -> int:
    from deepscaler.reward import extract_answer, math_reward

    if args.file is None:
        if args.response is None or args.gold is None:
            raise UsageError("give RESPONSE and GOLD, or --file items.jsonl")
        score = math_reward(args.response, args.gold, think=args.think, timeout=args.timeout)
        answer = extract_answer(args.response, think=args.think)
        if answer is None and "\\boxed" not in args.response and "<think>" not in args.response:
            # A bare answer typed on the command line: grade it as if it were boxed.
            score = math_reward(f"\\boxed{{{args.response}}}", args.gold, timeout=args.timeout)
            answer = args.response
        print(json.dumps({"score": score, "extracted": answer, "gold": args.gold}))
        return 0
    return _grade_file(args)


def _grade_file(args: argparse.Namespace) -> int:
    from deepscaler.reward import RewardScorer, extract_answer

    items = _read_items(args.file)
    with RewardScorer(workers=args.workers, timeout=args.timeout, think=args.think) as scorer:
        scores = scorer.score([item["response"] for item in items], [item["answer"] for item in items])
        stats = scorer.stats
    out = args.out.open("w") if args.out else sys.stdout
    try:
        for item, score in zip(items, scores):
            extracted = extract_answer(item["response"], think=args.think)
            out.write(json.dumps({**item, "score": score, "extracted": extracted}) + "\n")
    finally:
        if args.out:
            out.close()
    accuracy = stats.correct / stats.items if stats.items else 0.0
    summary = {"items": stats.items, "correct": stats.correct, "accuracy": round(accuracy, 4),
               "no_answer": stats.no_answer, "timeouts": stats.timeouts, "seconds": round(stats.seconds, 3)}
    print(json.dumps(summary), file=sys.stderr)
    return 0


def _read_items(path: Path) -> list[dict]:
    from deepscaler.jsonl import JSONLError, read_jsonl

    items = []
    try:
        for number, item in read_jsonl(path):
            if not isinstance(item, dict) or "response" not in item or "answer" not in item:
                raise UsageError(f"{path}:{number}: needs the fields `response` and `answer`")
            if not isinstance(item["response"], str):
                raise UsageError(f"{path}:{number}: `response` must be a string")
            items.append(item)
    except JSONLError as error:
        raise UsageError(str(error)) from None
    return items
