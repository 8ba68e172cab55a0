"""FSDP2 with bfloat16 mixed precision and the bfloat16 reference policy, under torchrun (2 ranks, gloo, CPU)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.conftest import free_port, train_args

pytestmark = pytest.mark.slow


def _torchrun(*args):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                           f"--master-port={free_port()}", *args], capture_output=True, text=True, timeout=600)


def test_mixed_precision_sharding_and_reference_on_two_ranks(tiny_run_inputs):
    """mixed_precision_worker.py: bfloat16 weights inside the forward over float32 shards, gradients reduce-scattered
    every micro-batch (two micro-batches accumulate to the gradient of one), the bfloat16 reference sharded and
    offloaded, reset shard to shard, saved and loaded whole."""
    worker = Path(__file__).parent / "mixed_precision_worker.py"
    result = _torchrun(str(worker), str(tiny_run_inputs / "model"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("mixed precision checks passed") == 2


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_fsdp_bfloat16_run_matches_float32_and_resets_the_sharded_reference(tiny_run_inputs, tmp_path):
    # Two stages: at the second's start the reference (sharded, offloaded) becomes the policy. Micro-batches of 120
    # tokens: several per optimizer step, and more on one rank than the other. One mini-batch, so the first step's
    # loss and gradient norm are those of the starting weights (a second mini-batch would start from an Adam step,
    # whose sign-like first update turns rounding-level differences in small gradients into different weights).
    common = ["algorithm.kl_coef=0.1", "optim.mini_batches=1", "optim.micro_batch_tokens=120"]
    second = ["stages.1.name=second", "stages.1.max_steps=1", "stages.1.prompts_per_step=4",
              "stages.1.samples_per_prompt=4", "stages.1.max_response_tokens=24"]
    sharded = _torchrun("-m", "deepscaler.cli", "train", *train_args(
        tiny_run_inputs, tmp_path / "fsdp", steps=2, extra=[*common, *second, "model.dtype=bfloat16",
                                                           "distributed.strategy=fsdp",
                                                           "distributed.reference_offload=true"]))
    assert sharded.returncode == 0, sharded.stdout[-3000:] + sharded.stderr[-3000:]
    exact = _torchrun("-m", "deepscaler.cli", "train", *train_args(tiny_run_inputs, tmp_path / "fp32", steps=1,
                                                                   extra=common))
    assert exact.returncode == 0, exact.stdout[-3000:] + exact.stderr[-3000:]

    logged, reference = _metrics(tmp_path / "fsdp"), _metrics(tmp_path / "fp32")
    assert [m["stage"] for m in logged] == [0, 0, 1]
    assert all(math.isfinite(m[key]) for m in logged for key in ("actor/loss", "actor/grad_norm"))
    first, expected = logged[0], reference[0]
    assert first["actor/kl"] == 0.0  # the policy's bfloat16 gather equals the bfloat16 reference exactly
    # bfloat16 keeps 8 significant bits (a relative rounding of 2**-9 per operation) in the weights, the residual
    # stream and the log-probs; the loss and the norm of a gradient summed over ~400 tokens come out about 0.1%
    # from float32's: 2% is ten times that, and far below what a dropped or doubled micro-batch (50%+) would move.
    assert first["actor/loss"] == pytest.approx(expected["actor/loss"], rel=0.02)
    assert first["actor/grad_norm"] == pytest.approx(expected["actor/grad_norm"], rel=0.02)

    # The checkpoint after step 2, written after the switch: the reference is the policy as the stage began.
    folder = tmp_path / "fsdp" / "checkpoints" / "step_000002"
    policy = load_file(str(folder / "model" / "model.safetensors"))
    saved = _reference_weights(folder / "reference", tmp_path / "reference.pt")
    assert {tensor.dtype for tensor in saved.values()} == {torch.bfloat16}
    # The sharded reference names a tied head too; the Hugging Face export writes it once, as the embeddings.
    assert set(saved) - {"lm_head.weight"} <= set(policy) and "model.embed_tokens.weight" in saved
    for name, tensor in saved.items():
        if name not in policy:
            continue
        assert torch.equal(tensor, policy[name].to(torch.bfloat16)), name


def _reference_weights(dcp_folder, path):
    """The whole reference model from a checkpoint's sharded (DCP) folder."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(dcp_folder, path)
    return torch.load(path, weights_only=True)
