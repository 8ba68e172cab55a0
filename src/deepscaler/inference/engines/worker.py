"""A data-parallel worker process: `python -m deepscaler.inference.engines.worker` (started by parallel.py).

It reads pickled messages from its stdin: the engine's settings, then where the shared weights are, then
one shard of requests at a time; it answers each with a pickled ("ok", value) or ("error", text) on its
stdout (the rest of its output goes to stderr). It exits when its stdin closes.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import IO, Any

import torch

from deepscaler.inference.engines.builtin import BuiltinEngine
from deepscaler.inference.engines.shared_weights import SharedWeights


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer shards from `requests` until it closes."""

    def reply(message: tuple[str, Any]) -> None:
        pickle.dump(message, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()

    spec = pickle.load(requests)
    torch.set_num_threads(spec["num_threads"])
    engine = BuiltinEngine(**spec)
    engine.model.adopt(SharedWeights.map(*pickle.load(requests)))
    reply(("ok", None))
    version = 0
    while True:
        try:
            prompts, params, weights_version = pickle.load(requests)
        except EOFError:
            return
        try:
            if weights_version != version:  # keys and values cached under the old weights are stale
                engine.model.clear_cache()
                version = weights_version
            reply(("ok", engine.generate(prompts, params)))
        except Exception as error:  # reported to the main process, which raises it there
            reply(("error", f"{type(error).__name__}: {error}"))


def main() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the reply stream
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
