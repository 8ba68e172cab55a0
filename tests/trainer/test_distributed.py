"""Two ranks under torchrun (gloo, CPU) end with the weights of one rank on the same global batch, and validate
to the same metrics; two "nodes" (torchrun started twice, c10d rendezvous, one rank each, separate working
folders, one shared run folder) end exactly where one node with two ranks ends."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.conftest import free_port, train_args

pytestmark = pytest.mark.slow


def _weights(run_dir):
    folder = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(folder / "model" / "model.safetensors"))


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_node_two_ranks(tiny_run_inputs, tmp_path_factory):
    """The run folder of 3 steps on one node, two ranks."""
    out = tmp_path_factory.mktemp("one_node") / "two"
    double = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={free_port()}",
         "-m", "deepscaler.cli", "train", *train_args(tiny_run_inputs, out, steps=3)],
        capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stdout[-3000:] + double.stderr[-3000:]
    return out


def test_two_ranks_equal_one_rank(tiny_run_inputs, tmp_path, one_node_two_ranks):
    args = train_args(tiny_run_inputs, tmp_path / "one", steps=3)
    single = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train", *args], capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stdout + single.stderr
    assert [m["world_size"] for m in _metrics(one_node_two_ranks)] == [2, 2, 2]
    one, two = _weights(tmp_path / "one"), _weights(one_node_two_ranks)
    initial = load_file(str(tiny_run_inputs / "model" / "model.safetensors"))
    moved = max(float((one[k] - initial[k]).abs().max()) for k in one)
    assert moved > 1e-4  # training really changed the weights
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)


def test_two_nodes_equal_one_node(tiny_run_inputs, tmp_path, one_node_two_ranks):
    shared, port = tmp_path / "shared" / "run", free_port()
    nodes = []
    for node in range(2):
        cwd = tmp_path / f"node{node}"  # each "node" has its own working folder; only the run folder is shared
        cwd.mkdir()
        nodes.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={node}",
             "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
             "--rdzv-id=two-nodes", "--local-addr=127.0.0.1", "-m", "deepscaler.cli", "train",
             *train_args(tiny_run_inputs, shared, steps=3)],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            # torchrun sets one thread per process only for several processes per node: as on one node, so
            # that matrix products sum in the same order and the runs are bit-equal.
            env={**os.environ, "OMP_NUM_THREADS": "1"}))
    for process in nodes:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-3000:]
    assert [m["world_size"] for m in _metrics(shared)] == [2, 2, 2]
    timing = ("time/", "tokens_per_second")
    for one, two in zip(_metrics(one_node_two_ranks), _metrics(shared), strict=True):
        assert {k: v for k, v in two.items() if not k.startswith(timing)} == \
            {k: v for k, v in one.items() if not k.startswith(timing)}
    expected, actual = _weights(one_node_two_ranks), _weights(shared)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name
    assert not any((tmp_path / "node0").iterdir()) and not any((tmp_path / "node1").iterdir())  # all in out_dir


def test_validation_on_two_ranks_equals_one_rank(tiny_run_inputs, tmp_path):
    # Validation after step 1, on the weights both runs share: the step cannot move them (a random model earns
    # no reward, so every advantage is 0; no KL, entropy or weight decay term). The model ends a response at
    # one token in eight, so lengths and truncation tell apart any two runs that sample different tokens; 7
    # problems split 4 + 3 over the ranks.
    model = shutil.copytree(tiny_run_inputs / "model", tmp_path / "model")
    (model / "generation_config.json").write_text(json.dumps({"eos_token_id": list(range(0, 1024, 8)),
                                                              "pad_token_id": 0}))
    extra = [f"model.path={model}", "validation.every_steps=1", "validation.max_problems=7",
             "algorithm.kl_coef=0", "algorithm.entropy_coef=0", "optim.weight_decay=0"]
    single = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train",
                             *train_args(tiny_run_inputs, tmp_path / "one", steps=1, extra=extra)],
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stdout + single.stderr
    double = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
         "-m", "deepscaler.cli", "train", *train_args(tiny_run_inputs, tmp_path / "two", steps=1, extra=extra)],
        capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stdout[-3000:] + double.stderr[-3000:]
    (one,) = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    (two,) = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert two["world_size"] == 2
    assert 0 < one["val/truncation_rate"] < 1  # some responses ended early: lengths depend on the tokens
    validation = {key: value for key, value in one.items() if key.startswith("val/")}
    assert "val/pass@1" in validation and "val/mean_length" in validation
    assert {key: two[key] for key in validation} == validation
