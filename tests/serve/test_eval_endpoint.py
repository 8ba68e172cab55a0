"""An evaluation through a served endpoint gives the same samples and numbers as through the engine itself."""

import json
from pathlib import Path

from deepscaler.eval.generate import run_eval
from deepscaler.eval.runner import EvalSettings
from deepscaler.inference import LLM
from deepscaler.inference.remote import RemoteLLM

DATA_DIR = str(Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks")


def test_endpoint_and_builtin_agree(served_model, tmp_path):
    settings = EvalSettings(benchmarks=["aime2024", "math500"], n=3, max_tokens=20, limit=3, data_dir=DATA_DIR)
    with LLM(model=str(served_model["folder"]), engine="builtin") as llm:
        local = run_eval(llm, settings, tmp_path / "local", model={"name": "tiny"})
    with RemoteLLM(served_model["base_url"], api_key=served_model["api_key"], concurrency=4) as remote:
        served = run_eval(remote, settings, tmp_path / "served", model={"name": "tiny"})

    def samples(name):
        rows = [json.loads(line) for line in (tmp_path / name / "samples.jsonl").read_text().splitlines()]
        return sorted((r["benchmark"], r["problem_id"], r["sample_index"], r["response"], r["length"]) for r in rows)

    assert samples("local") == samples("served")
    for key in ("pass@1", "pass@3", "maj@3", "mean_length", "truncation_rate"):
        assert local[key] == served[key], key
