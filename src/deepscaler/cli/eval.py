"""`deepscaler eval`: pass@1 over k samples (and pass@k, maj@k) on math benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepscaler.cli import MODEL_HELP, REVISION_HELP, THREADS_HELP, UsageError, threads_option
from deepscaler.prompting import DEFAULT_BENCHMARKS, INSTRUCTION


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("what to evaluate (one of)")
    source.add_argument("--model", help=MODEL_HELP)
    source.add_argument("--endpoint", help="an OpenAI-compatible server's base URL, e.g. http://127.0.0.1:8000/v1")
    source.add_argument("--responses", type=Path, help="JSONL of existing generations (id, response, answer)")
    parser.add_argument("--revision", help=f"with --model: {REVISION_HELP}")
    parser.add_argument("--served-model-name", help="model name to request from --endpoint (default: its first)")
    parser.add_argument("--engine", choices=("auto", "builtin", "vllm"), default="auto")
    parser.add_argument("--threads", type=threads_option, default="auto", help=THREADS_HELP)
    parser.add_argument("--benchmarks", default=",".join(DEFAULT_BENCHMARKS),
                        help="comma-separated names (see --data-dir) or JSON/JSONL/Parquet paths")
    parser.add_argument("--data-dir", help="folder holding the benchmark files (default: $DEEPSCALER_DATA_DIR, "
                        "data/benchmarks, ../shared/data/benchmarks)")
    parser.add_argument("--n", type=int, default=16, help="samples per problem (default 16)")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--top-k", type=int, default=-1)
    parser.add_argument("--max-tokens", type=int, default=32768)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt-template",
                        help=f'format string with {{problem}}; default: the problem + "{INSTRUCTION}"')
    parser.add_argument("--system-prompt", help="a system message (default: none)")
    parser.add_argument("--no-chat-template", action="store_true", help="send the raw prompt text")
    parser.add_argument("--think", choices=("optional", "required"), default="optional",
                        help="whether </think> must close the reasoning (default optional)")
    parser.add_argument("--limit", type=int, help="evaluate the first N problems of each benchmark")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel requests to --endpoint")
    parser.add_argument("--grader-timeout", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2, help="grading processes (default 2)")
    parser.add_argument("--out", type=Path, help="output directory (default runs/eval-<model>)")


def run(args: argparse.Namespace) -> int:
    from deepscaler.data.problems import ProblemFileError
    from deepscaler.eval.runner import EvalError, EvalSettings, score_responses
    from deepscaler.prompting import PROMPT_TEMPLATE

    chosen = [name for name in ("model", "endpoint", "responses") if getattr(args, name)]
    if len(chosen) != 1:
        raise UsageError("give exactly one of --model, --endpoint, --responses")
    if args.revision and not args.model:
        raise UsageError("--revision applies to --model")
    if args.n < 1 or args.max_tokens < 1:
        raise UsageError("--n and --max-tokens must be >= 1")
    _check_numbers(args)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out}: not a folder")
    settings = EvalSettings(
        benchmarks=[name.strip() for name in args.benchmarks.split(",") if name.strip()], n=args.n,
        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, max_tokens=args.max_tokens,
        seed=args.seed, prompt_template=args.prompt_template or PROMPT_TEMPLATE, system_prompt=args.system_prompt,
        chat_template=not args.no_chat_template, think=args.think, grader_timeout=args.grader_timeout,
        limit=args.limit, data_dir=args.data_dir,
    )
    if not settings.benchmarks and not args.responses:
        raise UsageError("--benchmarks names no benchmark")
    try:
        if args.responses:
            out = args.out or Path("runs") / f"eval-{args.responses.stem}"
            score_responses(args.responses, out, settings, workers=args.workers)
        else:
            out = _generate_and_grade(args, settings)
    except (ProblemFileError, EvalError) as error:
        raise UsageError(str(error)) from None
    print(out / "summary.json")
    return 0


def _check_numbers(args: argparse.Namespace) -> None:
    """Values no engine or grader can use, refused before anything loads (NaN fails every comparison)."""
    if not 0 <= args.temperature < float("inf"):
        raise UsageError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.top_k < -1:
        raise UsageError(f"--top-k must be -1 or 0 (off) or >= 1, got {args.top_k}")
    if not 0 < args.grader_timeout < float("inf"):
        raise UsageError(f"--grader-timeout must be a finite number of seconds > 0, got {args.grader_timeout}")
    for name in ("limit", "workers", "concurrency"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be >= 1, got {value}")
    if args.prompt_template is not None:
        try:
            args.prompt_template.format(problem="")
        except (KeyError, IndexError, ValueError) as error:
            raise UsageError(f"--prompt-template must use {{problem}} and double any other braces ({error})") from None


def _generate_and_grade(args: argparse.Namespace, settings) -> Path:
    from dataclasses import asdict

    from deepscaler.eval.generate import benchmark_files, check_resumable, run_eval
    from deepscaler.eval.results import read_records
    from deepscaler.inference import LLM
    from deepscaler.inference.llm import resolve_engine

    # Before paying for loading the model: bad benchmark names, and a folder holding another run's samples.
    early = {"settings": asdict(settings), "benchmark_files": benchmark_files(settings), "model": {}}
    if args.model:
        # The engine "auto" picks, so that a run resumes only with the engine that made its samples.
        early["model"] = {"name": Path(args.model).name, "path": str(args.model), "engine": resolve_engine(args.engine)}
    out = args.out or (Path("runs") / f"eval-{early['model']['name']}" if args.model else None)
    if out is not None:
        check_resumable(out, early, model_known=False)
        read_records(out / "samples.jsonl")  # a damaged line is reported now, not after the model has loaded
    from deepscaler.inference.remote import RemoteError, RemoteLLM

    try:
        if args.endpoint:
            llm = RemoteLLM(args.endpoint, model=args.served_model_name, concurrency=args.concurrency)
            model = {"name": llm.model, "endpoint": args.endpoint, "engine": "remote"}
        else:
            llm = LLM(model=args.model, revision=args.revision, engine=args.engine, seed=args.seed,
                      num_threads=args.threads)
            model = _model_record(args, llm.model_path, llm.engine.name)
    except (FileNotFoundError, RuntimeError, ValueError, OSError) as error:
        raise UsageError(str(error)) from None
    out = args.out or Path("runs") / f"eval-{model['name']}"
    with llm:
        try:
            run_eval(llm, settings, out, model=model, workers=args.workers)
        except RemoteError as error:
            raise UsageError(str(error)) from None
    return out


def _model_record(args: argparse.Namespace, folder: Path, engine: str) -> dict:
    """The model as given, and what it resolved to: a hub id's revision and commit, the folder loaded and the
    engine that runs it ("builtin" or "vllm", never "auto")."""
    from deepscaler.inference.hub import hub_commit

    record = {"name": Path(args.model).name, "path": str(args.model), "engine": engine, "folder": str(folder)}
    commit = hub_commit(folder)
    if commit is not None:  # only then: a local folder's record stays as it was, so earlier runs still resume
        record.update(revision=args.revision, commit=commit)
    return record
