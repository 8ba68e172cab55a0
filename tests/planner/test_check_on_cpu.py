"""The planner against reality: `deepscaler plan --check-on-cpu` measures one micro-batch of the trainer's update
(real widths, 2 layers) in a fresh process, and the prediction must be within 20% of it."""

import json
import subprocess
import sys

import pytest

from deepscaler.cpu import cpu_has_native_bf16
from deepscaler.planner.check import check_dtype

pytestmark = pytest.mark.slow

RECIPE = "configs/deepscaler-1.5b.yaml"


def check(*args):
    result = subprocess.run([sys.executable, "-m", "deepscaler.cli", "plan", "--config", RECIPE, "--check-on-cpu",
                             "--json", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])["check"]


def test_recipe_model_at_real_widths_within_20_percent():
    # DeepSeek-R1-Distill-Qwen-1.5B's widths, 2 layers, the recipe's bfloat16 compute and checkpointing: about 10 GB,
    # mostly the 151,936 × 1536 embedding and head with their gradients and Adam's state.
    result = check("--check-tokens", "1024")
    dtype = "bfloat16" if cpu_has_native_bf16() else "float32"  # float32: 10.2 GB predicted, 10.0 measured (AVX2)
    assert result["layers"] == 2 and result["tokens"] == 1024 and result["dtype"] == dtype
    assert 8 < result["measured_gb"] < 13
    assert abs(result["predicted_gb"] - result["measured_gb"]) <= 0.2 * result["measured_gb"], result


def test_activations_within_20_percent_where_they_dominate(tmp_path):
    # Real layer widths with a small vocabulary and no checkpointing: activations are about half of the peak.
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "vocab_size": 4096, "hidden_size": 1536, "intermediate_size": 8960,
        "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2, "tie_word_embeddings": False}))
    result = check(f"model.path={tmp_path}", "model.gradient_checkpointing=false", "--check-tokens", "3072")
    assert result["tokens"] == 3072
    assert abs(result["predicted_gb"] - result["measured_gb"]) <= 0.2 * result["measured_gb"], result


def test_the_check_stands_in_float32_only_for_emulated_bfloat16():
    assert check_dtype("bfloat16", native_bf16=False) == "float32"
    assert check_dtype("bfloat16", native_bf16=True) == "bfloat16"
    assert check_dtype("float32", native_bf16=False) == "float32"
