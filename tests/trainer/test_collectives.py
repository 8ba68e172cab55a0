"""The trainer's collectives: every tensor handed to torch.distributed lives on the device the process group
communicates on (an NCCL group has no CPU backend), no module but trainer/distributed.py calls torch.distributed
itself, and shares of a list dealt to the ranks come back in order."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepscaler.trainer import distributed as dist

SOURCE = Path(dist.__file__).resolve().parents[1]


class Reached(Exception):
    """Raised by a recording collective once it has seen its arguments: meta tensors hold no values to go on with."""


@pytest.fixture
def recorded(monkeypatch):
    """Two ranks whose group communicates on the meta device (standing in for a GPU), and whose torch.distributed
    collectives record what they are handed instead of running."""
    calls = []

    def recording(name):
        def collective(*args, **kwargs):
            calls.append((name, [*args, *kwargs.values()]))
            raise Reached

        return collective

    monkeypatch.setattr(dist, "world_size", lambda: 2)
    monkeypatch.setattr(dist, "communication_device", lambda: torch.device("meta"))
    for name in ("all_reduce", "all_gather", "all_gather_object", "broadcast", "barrier", "reduce_scatter"):
        monkeypatch.setattr(dist.torch_dist, name, recording(name))
    return calls


@pytest.mark.parametrize("reduce", [lambda: dist.all_reduce_sum({"tokens": 7, "loss": 0.5}),
                                    lambda: dist.all_reduce_max(3)], ids=["sum", "max"])
def test_reductions_hand_their_tensors_on_the_communication_device(recorded, reduce):
    with pytest.raises(Reached):
        reduce()
    ((name, arguments),) = recorded
    tensors = [value for value in arguments if isinstance(value, torch.Tensor)]
    assert name == "all_reduce" and tensors
    assert all(tensor.device == torch.device("meta") for tensor in tensors)


def test_barrier_names_the_gpu_it_synchronises_on(recorded, monkeypatch):
    monkeypatch.setattr(dist, "communication_device", lambda: torch.device("cuda", 3))
    with pytest.raises(Reached):
        dist.barrier()
    assert recorded == [("barrier", [[3]])]


def test_a_gloo_group_communicates_on_the_cpu(tmp_path):
    # In a process of its own: an in-process vLLM engine from an earlier test may hold this one's default group.
    script = (f"import torch.distributed as d; d.init_process_group('gloo', init_method='file://{tmp_path}/store', "
              "rank=0, world_size=1); from deepscaler.trainer import distributed as dist; "
              "print(dist.communication_device())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "cpu", result.stderr[-2000:]


def test_no_other_module_calls_torch_distributed():
    # Submodules that build on the process group without choosing devices for it are fine.
    allowed = {".tensor", ".fsdp", ".checkpoint"}
    offenders = [
        f"{path.relative_to(SOURCE)}: torch.distributed{suffix}"
        for path in sorted(SOURCE.rglob("*.py")) if path != Path(dist.__file__).resolve()
        for suffix in re.findall(r"torch\.distributed(\.\w+)?", path.read_text()) if suffix not in allowed
    ]
    assert offenders == []


@pytest.mark.parametrize("count", [0, 1, 5, 8])
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_dealt_shares_come_back_in_order(count, ranks):
    items = [f"problem {index}" for index in range(count)]
    shares = dist.deal(items, ranks)
    assert len(shares) == ranks and max(map(len, shares)) - min(map(len, shares)) <= 1
    assert dist.undeal(shares) == items


SCRIPT = """
import json
import sys
from datetime import timedelta
from pathlib import Path

import torch

from deepscaler.trainer import distributed as dist

dist.init_from_env(timedelta(minutes=7))
timeout = torch.distributed.group.WORLD._get_backend(torch.device("cpu")).options._timeout
summed = dist.all_reduce_sum({"rank": dist.rank() + 1})["rank"]
share = dist.deal(list(range(5)), dist.world_size())[dist.rank()]
merged = dist.undeal(dist.all_gather_objects([f"done {item}" for item in share]))
Path(sys.argv[1], f"rank_{dist.rank()}.json").write_text(json.dumps([str(timeout), summed, merged]))
dist.barrier()
dist.shutdown()
"""


@pytest.mark.slow
def test_two_ranks_join_with_the_timeout_and_merge_their_shares(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
                             str(script), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for rank in (0, 1):
        reported = json.loads((tmp_path / f"rank_{rank}.json").read_text())
        assert reported == ["0:07:00", 3.0, [f"done {item}" for item in range(5)]]
