"""A checkpoint written on a GPU restores anywhere: its tensors are read onto the CPU (not onto the device the
file names, cuda:0 for everything rank 0 wrote) and moved from there."""

from contextlib import contextmanager

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from deepscaler.trainer.checkpoint import load_checkpoint, save_checkpoint

_as_gpu = {"on": False}


def _gpu_tag(storage):
    return "cuda:0" if _as_gpu["on"] else None  # None: the usual tag


# Priority 0 runs before torch's own CPU tagger (10); off, it defers to it.
torch.serialization.register_package(0, _gpu_tag, lambda storage, location: None)


@contextmanager
def saved_as_by_a_gpu_rank():
    """torch.save tags every tensor as rank 0's GPU would: cuda:0."""
    _as_gpu["on"] = True
    try:
        yield
    finally:
        _as_gpu["on"] = False


def _trained(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.tensor([[1, 2, 3, 4]])).logits.sum().backward()
    optimizer.step()
    return model, optimizer


def test_a_checkpoint_written_on_a_gpu_restores_on_the_cpu(tiny_run_inputs, tmp_path):
    model_dir = tiny_run_inputs / "model"
    model, optimizer = _trained(model_dir)
    with saved_as_by_a_gpu_rank():
        folder = save_checkpoint(tmp_path, 1, model, AutoTokenizer.from_pretrained(model_dir), optimizer,
                                 {"sampler": {"epoch": 0, "position": 4}})
    with pytest.raises(RuntimeError, match="CUDA"):  # as saved, the optimizer state needs the GPU it names
        torch.load(folder / "optimizer.pt", weights_only=True)

    fresh = AutoModelForCausalLM.from_pretrained(model_dir)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    state = load_checkpoint(folder, fresh, fresh_optimizer, reference=None)
    assert state["step"] == 1 and state["sampler"] == {"epoch": 0, "position": 4}
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    saved, restored = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert saved.keys() == restored.keys()
    for index in saved:
        for key, value in saved[index].items():
            assert restored[index][key].device.type == "cpu" and torch.equal(restored[index][key], value)
    rng = torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)
    assert "cuda" not in rng  # without CUDA there is no GPU generator to save
