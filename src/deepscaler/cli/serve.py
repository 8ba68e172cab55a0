"""`deepscaler serve`: an OpenAI-compatible HTTP server for a model."""

from __future__ import annotations

import argparse
import math
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
    parser.add_argument("--request-timeout", type=float, default=600.0,
                        help="seconds a generation may take, queueing included, before a 504 (default 600)")
    parser.add_argument("--read-timeout", type=float, default=10.0,
                        help="seconds a client may take to send its headers, or pause while sending its body")
    parser.add_argument("--stall-timeout", type=float, default=300.0,
                        help="seconds an engine with work may show no progress before /health answers 503")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from deepscaler.inference import LLM
    from deepscaler.serve.app import Timeouts, create_app
    from deepscaler.serve.protocol import header_timeout_protocol

    for flag in ("request_timeout", "read_timeout", "stall_timeout"):  # before the model loads
        if not 0 < getattr(args, flag) < math.inf:
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive number of seconds")
    try:
        llm = LLM(model=args.model, revision=args.revision, engine=args.engine, seed=args.seed,
                  num_threads=args.threads)
    except (FileNotFoundError, RuntimeError, ValueError, OSError) as error:
        raise UsageError(str(error)) from None
    name = args.served_model_name or Path(args.model).name
    timeouts = Timeouts(request=args.request_timeout, body_idle=args.read_timeout,
                        body_total=max(60.0, args.read_timeout), stall=args.stall_timeout)
    app = create_app(llm, name, api_key=args.api_key, max_batch=args.max_batch, timeouts=timeouts)
    print(f"serving {name!r} ({llm.engine.name} engine) on http://{args.host}:{args.port}/v1", flush=True)
    # On SIGTERM, requests in flight get a few seconds (a hung engine must not hold the exit), then the
    # signal ends the process.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                http=header_timeout_protocol(args.read_timeout), timeout_keep_alive=5, timeout_graceful_shutdown=3)
    llm.close()
    return 0
