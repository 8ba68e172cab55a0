"""FSDP2 (distributed.strategy=fsdp) under torchrun (gloo, CPU): 2 ranks end with the weights of 1 rank, and a
run resumed from a sharded run's checkpoint ends with exactly the weights of the uninterrupted run."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.conftest import free_port, train_args

pytestmark = pytest.mark.slow


def _torchrun(*args):
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={free_port()}",
         "-m", "deepscaler.cli", "train", *args], capture_output=True, text=True, timeout=600)


def _weights(run_dir, step=None):
    root = run_dir / "checkpoints"
    folder = root / (f"step_{step:06d}" if step else (root / "latest").read_text().strip())
    return load_file(str(folder / "model" / "model.safetensors"))


def test_fsdp_two_ranks_equal_one_rank(tiny_run_inputs, tmp_path):
    # A small micro-batch budget: several micro-batches per optimizer step (gradient accumulation), and
    # ranks with different counts (the padding passes); a gradient clip the first steps' norms exceed.
    extra = ["optim.micro_batch_tokens=120", "optim.grad_clip=0.002"]
    single = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train",
                             *train_args(tiny_run_inputs, tmp_path / "one", steps=3, extra=extra)],
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stdout + single.stderr
    sharded = _torchrun(*train_args(tiny_run_inputs, tmp_path / "fsdp", steps=3,
                                           extra=[*extra, "distributed.strategy=fsdp"]))
    assert sharded.returncode == 0, sharded.stdout[-3000:] + sharded.stderr[-3000:]
    logged = [json.loads(line) for line in (tmp_path / "fsdp" / "metrics.jsonl").read_text().splitlines()]
    assert [m["world_size"] for m in logged] == [2, 2, 2]
    reference = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert reference[0]["actor/grad_norm"] > 0.002  # clipping takes part
    for one_rank, two_ranks in zip(reference, logged):  # the global norm, not one shard's
        assert two_ranks["actor/grad_norm"] == pytest.approx(one_rank["actor/grad_norm"], rel=1e-4)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "fsdp")
    assert one.keys() == two.keys()  # whole tensors under the Hugging Face names, not shards
    initial = load_file(str(tiny_run_inputs / "model" / "model.safetensors"))
    assert max(float((one[k] - initial[k]).abs().max()) for k in one) > 1e-4  # training moved the weights
    for name in one:
        assert two[name].shape == one[name].shape, name
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)


def test_fsdp_resume_matches_uninterrupted(tiny_run_inputs, tmp_path):
    steps, resume_at = 4, 2
    args = train_args(tiny_run_inputs, tmp_path / "full", steps=steps,
                      extra=["distributed.strategy=fsdp", f"checkpoint.keep_last={steps}"])
    full = _torchrun(*args)
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]

    # The run as a kill after step `resume_at` would leave it: that checkpoint is the latest, nothing later.
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    root = tmp_path / "cut" / "checkpoints"
    for folder in root.glob("step_*"):
        if int(folder.name.split("_")[1]) > resume_at:
            shutil.rmtree(folder)
    (root / "latest").write_text(f"step_{resume_at:06d}")
    # Each rank wrote its own shards of the optimizer state; none was gathered whole.
    assert len(list((root / f"step_{resume_at:06d}" / "optimizer").glob("*.distcp"))) == 2

    resumed = _torchrun("--resume", str(tmp_path / "cut"))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    expected, actual = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert (root / "latest").read_text().strip() == f"step_{steps:06d}"
    assert expected.keys() == actual.keys()
    before = _weights(tmp_path / "full", resume_at)
    assert any(not torch.equal(before[name], expected[name]) for name in expected)  # the resumed steps trained
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    logged = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, steps + 1))
