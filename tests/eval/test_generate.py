"""End-to-end evaluation of a tiny model through the built-in engine, and resuming an interrupted run."""

import json

import pytest

from deepscaler.eval.generate import run_eval
from deepscaler.eval.runner import EvalError, EvalSettings
from deepscaler.inference import LLM, make_tiny_model

DATA_DIR = str(__import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks")


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    folder = make_tiny_model(tmp_path_factory.mktemp("model") / "tiny", preset="tiny", seed=0)
    with LLM(model=str(folder), engine="builtin") as model:
        yield model


def settings(**overrides):
    base = dict(benchmarks=["aime2024", "math500"], n=3, max_tokens=24, limit=3, data_dir=DATA_DIR,
                problems_per_chunk=2)
    return EvalSettings(**{**base, **overrides})


def test_eval_writes_results_and_resumes_identically(llm, tmp_path):
    full = tmp_path / "full"
    summary = run_eval(llm, settings(), full, model={"name": "tiny"})
    assert summary["problems"] == 6 and summary["samples"] == 18
    assert set(summary["benchmarks"]) == {"aime2024", "math500"}
    assert 0 <= summary["truncation_rate"] <= 1 and summary["mean_length"] > 0
    lines = (full / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 18
    record = json.loads(lines[0])
    assert {"problem_id", "sample_index", "response", "extracted", "reward", "length", "finish_reason"} <= set(record)
    config = json.loads((full / "config.json").read_text())
    assert config["settings"]["n"] == 3 and "torch" in config["versions"]
    assert config["chat_template_default_system_prompt"] is None  # the tiny model's ChatML template adds none

    # Interruptions: inside the first chunk (2 problems = 6 samples), and inside the second after a whole first
    # chunk; each ends with a torn line.
    key = lambda r: (r["benchmark"], r["problem_id"], r["sample_index"])  # noqa: E731
    full_records = sorted((json.loads(line) for line in lines), key=key)
    for kept in (4, 8):
        cut = tmp_path / f"cut{kept}"
        cut.mkdir()
        (cut / "config.json").write_text((full / "config.json").read_text())
        (cut / "samples.jsonl").write_text("\n".join(lines[:kept]) + "\n" + lines[kept][:30])
        resumed = run_eval(llm, settings(), cut, model={"name": "tiny"})
        assert resumed["pass@1"] == summary["pass@1"]
        written = (cut / "samples.jsonl").read_text().splitlines()
        assert written[: 6 * (kept // 6)] == lines[: 6 * (kept // 6)]  # whole chunks are kept as they were
        cut_records = sorted((json.loads(line) for line in written), key=key)
        assert [r["response"] for r in cut_records] == [r["response"] for r in full_records]


def test_resume_refuses_other_settings(llm, tmp_path):
    run_eval(llm, settings(limit=1, benchmarks=["aime2024"]), tmp_path, model={"name": "tiny"})
    with pytest.raises(EvalError, match="other settings"):
        run_eval(llm, settings(limit=1, benchmarks=["aime2024"], temperature=1.0), tmp_path, model={"name": "tiny"})


def test_resume_accepts_the_model_from_another_folder_not_another_commit(llm, tmp_path):
    once = settings(limit=1, benchmarks=["aime2024"])
    hub_model = {"name": "tiny", "path": "org/tiny", "commit": "c1", "folder": "/cache-a/snapshots/c1"}
    run_eval(llm, once, tmp_path, model=hub_model)
    # The same snapshot under another HF_HOME resumes; another commit of the same id does not.
    run_eval(llm, once, tmp_path, model={**hub_model, "folder": "/cache-b/snapshots/c1"})
    with pytest.raises(EvalError, match=r"other settings \(earlier -> now\): model.commit: \"c1\" -> \"c2\"\. "):
        run_eval(llm, once, tmp_path, model={**hub_model, "commit": "c2", "folder": "/cache-b/snapshots/c2"})


# A ChatML template that, like SmolLM2-Instruct's, opens with its own system turn when the conversation has none.
DEFAULT_SYSTEM_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n"
    "{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_a_templates_own_system_prompt_is_found(llm):
    import copy

    from deepscaler.eval.generate import template_default_system_prompt

    assert template_default_system_prompt(llm.get_tokenizer()) is None
    tokenizer = copy.deepcopy(llm.get_tokenizer())
    tokenizer.chat_template = DEFAULT_SYSTEM_TEMPLATE
    assert template_default_system_prompt(tokenizer) == "You are a helpful AI assistant."
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # no turns at all
    assert template_default_system_prompt(tokenizer) is None
    assert template_default_system_prompt(None) is None
