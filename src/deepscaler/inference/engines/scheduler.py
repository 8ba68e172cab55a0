"""Continuous batching: the step loop that runs a batch of sequences to completion in this process.

Every completion is a sequence occupying one KV-cache slot. Live sequences are kept in slots 0..n-1:
when some finish, the last live ones move into the holes, so a decode step always runs on one dense
batch. Waiting sequences are prefilled into free slots in groups (all completions of a prompt share one
prefill), so long and short requests mix freely and no slot idles while work is queued.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Sequence

import torch

from deepscaler.inference.engines.generation import Generation
from deepscaler.inference.engines.lean import LeanCausalLM
from deepscaler.inference.engines.sampler import BatchSampler
from deepscaler.inference.engines.threads import ThreadTuner

TIMED_PHASES = ("prefill", "decode forward", "sampling", "bookkeeping")


class Scheduler:
    """Decodes sequences on `model` in as many KV-cache slots as max_num_seqs and kv_cache_bytes allow.

    max_num_batched_tokens: most (padded) prompt tokens in one prefill call. `rng` draws for sequences
    without a seed of their own. The thread tuner lives as long as the scheduler: what it has measured
    carries over from call to call.
    """

    def __init__(self, model: LeanCausalLM, text: Callable[[list[int]], str], rng: random.Random,
                 max_num_seqs: int, max_num_batched_tokens: int, kv_cache_bytes: int) -> None:
        self.model = model
        self.text = text
        self.rng = rng
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.kv_cache_bytes = kv_cache_bytes
        self.tuner: ThreadTuner | None = None
        self._on_token: Callable[[int, int, int], None] | None = None

    def run(self, seqs: list[Generation], timings: dict[str, float], progress=None, fixed_threads: int | None = None,
            on_token: Callable[[int, int, int], None] | None = None) -> None:
        """Run `seqs` to completion, adding seconds per phase to `timings` and finished sequences to `progress`.

        fixed_threads: torch's thread count throughout, or None to let the tuner pick per step.
        on_token(request, index, token_id) is called for every sampled token."""
        max_len = max(len(s.prompt) + s.budget for s in seqs)
        per_slot = self.model.cache_bytes_per_slot(max_len)
        slots = min(self.max_num_seqs, len(seqs), max(1, self.kv_cache_bytes // per_slot))
        self.model.allocate_cache(slots, max_len)
        threads = torch.get_num_threads()
        if self.tuner is None or (self.tuner.fixed, max(self.tuner.options)) != (fixed_threads,
                                                                                  fixed_threads or threads):
            self.tuner = ThreadTuner(threads, fixed=fixed_threads)
        self._on_token = on_token
        try:
            self._loop(deque(seqs), slots, progress, timings)
        finally:
            torch.set_num_threads(threads)
            self._on_token = None

    def _loop(self, waiting: deque[Generation], slots: int, progress, timings: dict[str, float]) -> None:
        active: list[Generation] = []
        last = torch.zeros(slots, dtype=torch.long)
        positions = torch.zeros(slots, dtype=torch.long)
        sampler: BatchSampler | None = None
        refill_at = max(1, slots // 4)
        clock, tuner = time.perf_counter, self.tuner
        while waiting or active:
            free = slots - len(active)
            t0 = clock()
            if waiting and free and (not active or free >= min(refill_at, len(waiting))):
                tuner.apply_best()
                admitted, logits, prefill_sampler = self._prefill(waiting, len(active), free)
                tokens, logprobs = prefill_sampler.sample(logits)
                t1 = t2 = clock()
                timings["prefill"] += t1 - t0
                start = len(active)
                active.extend(admitted)
                last[start : len(active)] = tokens
                positions[start : len(active)] = torch.tensor([s.cached for s in admitted])
                self._record(admitted, tokens, logprobs, prefill_sampler, logits)
                sampler = None
            else:
                n = len(active)
                if sampler is None:
                    sampler = self._sampler(active)
                span = max(s.cached for s in active) + 1
                tuner.choose()
                t0 = clock()
                logits = self.model.decode(last[:n], positions[:n], span)
                t1 = clock()
                tokens, logprobs = sampler.sample(logits)
                t2 = clock()
                timings["decode forward"] += t1 - t0
                timings["sampling"] += t2 - t1
                tuner.record(t2 - t0, n)
                last[:n] = tokens
                positions[:n] += 1
                for seq in active:
                    seq.cached += 1
                self._record(active, tokens, logprobs, sampler, logits)
            done = [i for i, s in enumerate(active) if s.finish_reason is not None]
            if done:
                self._compact(active, done, last, positions)
                sampler = None
                if progress is not None:
                    progress.update(len(done))
            timings["bookkeeping"] += clock() - t2

    def _sampler(self, seqs: Sequence[Generation]) -> BatchSampler:
        return BatchSampler([s.params for s in seqs], [s.rng for s in seqs], self.rng)

    def _prefill(self, waiting: deque[Generation], first_slot: int, free: int):
        """Admit waiting sequences into free slots and prefill their prompts.

        Returns the admitted sequences, the logits for their first token, and their sampler.
        """
        admitted: list[Generation] = []
        prompts: list[list[int]] = []
        rows: list[int] = []
        while waiting and len(admitted) < free:
            seq = waiting[0]
            new_prompt = not admitted or admitted[-1].request != seq.request
            longest = max([len(p) for p in prompts] + [len(seq.prompt)])
            if new_prompt and prompts and longest * (len(prompts) + 1) > self.max_num_batched_tokens:
                break
            if new_prompt:
                prompts.append(seq.prompt)
            rows.append(len(prompts) - 1)
            admitted.append(waiting.popleft())
        width = max(len(p) for p in prompts)
        tokens = torch.zeros(len(prompts), width, dtype=torch.long)
        for i, p in enumerate(prompts):
            tokens[i, : len(p)] = torch.tensor(p)
        lengths = torch.tensor([len(p) for p in prompts])
        slot_ids = torch.arange(first_slot, first_slot + len(admitted))
        logits = self.model.prefill(tokens, lengths, slot_ids, torch.tensor(rows))[rows]
        for seq in admitted:
            seq.cached = len(seq.prompt)
        return admitted, logits, self._sampler(admitted)

    def _record(self, seqs: Sequence[Generation], tokens, logprobs, sampler: BatchSampler, logits) -> None:
        """Append each sequence's new token and decide whether it has finished."""
        if any(s.params.logprobs for s in seqs):
            self._record_top(seqs, sampler, logits, tokens, logprobs)
        for seq, token, logprob in zip(seqs, tokens.tolist(), logprobs.tolist(), strict=True):
            seq.append(token, logprob, self.text)
            if self._on_token is not None:
                self._on_token(seq.request, seq.index, token)

    def _record_top(self, seqs, sampler: BatchSampler, logits, tokens, logprobs) -> None:
        k = max(s.params.logprobs or 0 for s in seqs)
        ids, values = sampler.top_logprobs(logits, k)
        for i, seq in enumerate(seqs):
            if seq.params.logprobs:
                k_i = seq.params.logprobs
                entry = dict(zip(ids[i, :k_i].tolist(), values[i, :k_i].tolist(), strict=True))
                entry[int(tokens[i])] = float(logprobs[i])
                seq.top.append(entry)

    def _compact(
        self, active: list[Generation], done: list[int], last: torch.Tensor, positions: torch.Tensor
    ) -> None:
        """Drop finished sequences, moving the last live ones into their slots."""
        keep = len(active) - len(done)
        holes = [i for i in done if i < keep]
        movers = [i for i in range(keep, len(active)) if active[i].finish_reason is None]
        if holes:
            src, dst = torch.tensor(movers), torch.tensor(holes)
            span = max(active[i].cached for i in movers) + 1
            self.model.move_slots(src, dst, span)
            last[dst] = last[src]
            positions[dst] = positions[src]
            for h, m in zip(holes, movers, strict=True):
                active[h] = active[m]
        del active[keep:]
