"""The batcher in front of an engine: what it tells the operator about streaming."""

from __future__ import annotations

import asyncio
import logging

from deepscaler.inference.outputs import CompletionOutput
from deepscaler.inference.params import SamplingParams
from deepscaler.serve.batcher import Batcher


class WholeAnswers:
    """An engine whose generate takes no on_token (as vLLM's did before issue 20)."""

    name = "whole"

    def generate(self, prompts, params, use_tqdm=False):
        return [[CompletionOutput(index=0, text="ab", token_ids=[7, 8], finish_reason="length")] for _ in prompts]


def test_an_engine_that_cannot_stream_is_named_in_a_warning_and_still_answers(caplog):
    with caplog.at_level(logging.WARNING, logger="deepscaler.serve.batcher"):
        batcher = Batcher(WholeAnswers())
    try:
        assert [r.getMessage() for r in caplog.records] == [
            "the whole engine cannot stream tokens: streamed responses arrive whole, at the end"
        ]
        streamed: list[int] = []
        outputs = asyncio.run(batcher.submit([1, 2], SamplingParams(max_tokens=2), lambda i, t: streamed.append(t)))
        assert [o.token_ids for o in outputs] == [[7, 8]] and streamed == []
    finally:
        batcher.close()
