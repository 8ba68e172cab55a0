"""`deepscaler serve`: an OpenAI-compatible HTTP server for a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepscaler.cli import MODEL_HELP, REVISION_HELP, THREADS_HELP, UsageError, threads_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--revision", help=REVISION_HELP)
    parser.add_argument("--engine", choices=("auto", "builtin", "vllm"), default="auto")
    parser.add_argument("--threads", type=threads_option, default="auto", help=THREADS_HELP)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 requests")
    parser.add_argument("--served-model-name",
                        help="the model name clients ask for (default: the last part of --model)")
    parser.add_argument("--max-batch", type=int, default=64, help="most requests batched into one engine call")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from deepscaler.inference import LLM
    from deepscaler.serve.app import create_app

    try:
        llm = LLM(model=args.model, revision=args.revision, engine=args.engine, seed=args.seed,
                  num_threads=args.threads)
    except (FileNotFoundError, RuntimeError, ValueError, OSError) as error:
        raise UsageError(str(error)) from None
    name = args.served_model_name or Path(args.model).name
    app = create_app(llm, name, api_key=args.api_key, max_batch=args.max_batch)
    print(f"serving {name!r} ({llm.engine.name} engine) on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    llm.close()
    return 0
