"""`deepscaler generate`: sample completions for prompts and stream them as JSON lines.

Input: --prompt TEXT (repeatable) or --file prompts.jsonl, whose lines are a JSON string or an object with
"prompt" (text), "messages" (a chat) or "prompt_token_ids"; an "id" field is copied to the output.
Output (stdout or --out): one line per prompt, in input order:
{"index", ["id",] "prompt", "completions": [{"text", "num_tokens", "finish_reason"}]}.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from deepscaler.cli import MODEL_HELP, REVISION_HELP, THREADS_HELP, UsageError, threads_option
from deepscaler.cli.quiet import VERBOSE_HELP, quiet_libraries, stdout_for_results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--revision", help=REVISION_HELP)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="a prompt (repeat for several)")
    source.add_argument("--file", type=Path, help="JSONL of prompts (see the description)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 means greedy (default 1.0)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=-1, help="-1 keeps all tokens (default)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--n", type=int, default=1, help="completions per prompt (default 1)")
    parser.add_argument("--seed", type=int, help="makes sampling reproducible")
    parser.add_argument("--stop", action="append", help="a stop string (repeatable)")
    parser.add_argument("--chat", action="store_true",
                        help="wrap text prompts as a user turn of the chat template")
    parser.add_argument("--engine", choices=("auto", "builtin", "vllm"), default="auto")
    parser.add_argument("--threads", type=threads_option, default="auto", help=THREADS_HELP)
    parser.add_argument("--batch-size", type=int, default=256,
                        help="prompts per engine call; results are written after each (default 256)")
    parser.add_argument("--out", type=Path, help="write JSONL here instead of stdout (which then holds only them)")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Parse a prompts JSONL file into records with one of prompt / messages / prompt_token_ids."""
    from deepscaler.jsonl import JSONLError, read_jsonl

    records = []
    try:
        for number, item in read_jsonl(path):
            if isinstance(item, str):
                item = {"prompt": item}
            fields = ("prompt", "messages", "prompt_token_ids")
            keys = [k for k in fields if isinstance(item, dict) and k in item]
            if len(keys) != 1:
                raise UsageError(f"{path}:{number}: expected a string or an object with exactly one of "
                                 "'prompt', 'messages', 'prompt_token_ids'")
            value = item[keys[0]]
            valid = {
                "prompt": isinstance(value, str),
                "messages": isinstance(value, list) and value and all(
                    isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("role", "content"))
                    for m in value
                ),
                "prompt_token_ids": isinstance(value, list) and value
                and all(isinstance(t, int) for t in value),
            }[keys[0]]
            if not valid:
                raise UsageError(f"{path}:{number}: '{keys[0]}' has the wrong type")
            records.append(item)
    except JSONLError as error:
        raise UsageError(str(error)) from None
    if not records:
        raise UsageError(f"{path} holds no prompts")
    return records


def _sampling_params(args: argparse.Namespace):
    from deepscaler.inference.params import SamplingParams

    try:
        return SamplingParams(
            temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, max_tokens=args.max_tokens,
            n=args.n, seed=args.seed, stop=args.stop,
        )
    except ValueError as error:
        raise UsageError(f"invalid sampling parameters: {error}") from None


def _generate(llm, records: list[dict[str, Any]], params: list, chat: bool) -> list:
    """Run one chunk; chats and plain prompts go through LLM.chat / LLM.generate, order kept."""
    def is_chat(r: dict[str, Any]) -> bool:
        return "messages" in r or (chat and "prompt" in r)

    chats = [i for i, r in enumerate(records) if is_chat(r)]
    plain = [i for i, r in enumerate(records) if not is_chat(r)]
    results: list = [None] * len(records)
    if chats:
        conversations = [records[i].get("messages") or [{"role": "user", "content": records[i]["prompt"]}]
                         for i in chats]
        chat_params = [params[i] for i in chats]
        for i, out in zip(chats, llm.chat(conversations, chat_params, use_tqdm=False), strict=True):
            results[i] = out
    if plain:
        inputs = [{"prompt_token_ids": records[i]["prompt_token_ids"]} if "prompt_token_ids" in records[i]
                  else records[i]["prompt"] for i in plain]
        outputs = llm.generate(inputs, [params[i] for i in plain], use_tqdm=False)
        for i, out in zip(plain, outputs, strict=True):
            results[i] = out
    return results


def run(args: argparse.Namespace) -> int:
    params = _sampling_params(args)
    if args.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    records = read_prompts(args.file) if args.file else [{"prompt": p} for p in args.prompt]
    quiet_libraries(args.verbose)
    with nullcontext() if args.out else stdout_for_results() as results:
        return _generate_all(args, params, records, results)


def _generate_all(args: argparse.Namespace, params, records: list[dict[str, Any]], results: TextIO | None) -> int:
    """Generate in chunks into --out, or into `results` (stdout, reserved for the JSON lines)."""
    from tqdm import tqdm

    from deepscaler.inference.llm import LLM

    try:
        llm = LLM(model=args.model, revision=args.revision, engine=args.engine, seed=args.seed or 0,
                  num_threads=args.threads)
    except (FileNotFoundError, ValueError, NotImplementedError, RuntimeError) as error:
        raise UsageError(str(error)) from None
    try:
        sink = args.out.open("w", encoding="utf-8") if args.out else results
    except OSError as error:
        llm.close()
        raise UsageError(f"cannot write {args.out}: {error.strerror or error}") from None
    try:
        with tqdm(total=len(records), desc="generating", unit="prompt", file=sys.stderr) as bar:
            for start in range(0, len(records), args.batch_size):
                chunk = records[start : start + args.batch_size]
                # Each prompt gets its own seed, so results do not depend on --batch-size.
                chunk_params = [params if args.seed is None else replace(params, seed=args.seed + start + i)
                                 for i in range(len(chunk))]
                try:
                    outputs = _generate(llm, chunk, chunk_params, args.chat)
                except ValueError as error:
                    raise UsageError(str(error)) from None
                for offset, (record, output) in enumerate(zip(chunk, outputs, strict=True)):
                    line: dict[str, Any] = {"index": start + offset}
                    if "id" in record:
                        line["id"] = record["id"]
                    line["prompt"] = output.prompt
                    line["completions"] = [
                        {"text": c.text, "num_tokens": len(c.token_ids), "finish_reason": c.finish_reason}
                        for c in output.outputs
                    ]
                    sink.write(json.dumps(line, ensure_ascii=False) + "\n")
                sink.flush()
                bar.update(len(chunk))
    finally:
        if args.out:
            sink.close()
        llm.close()
    return 0
