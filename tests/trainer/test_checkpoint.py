"""Checkpoints in one process: what is saved comes back exactly, from the CPU whatever device wrote it, and a
damaged or incomplete checkpoint is reported and passed over for the previous intact one, never loaded."""

import shutil
from contextlib import contextmanager

import pytest
import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from deepscaler.trainer.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from deepscaler.trainer.manifest import describe

_as_gpu = {"on": False}


def _gpu_tag(storage):
    return "cuda:0" if _as_gpu["on"] else None  # None: the usual tag


# Priority 0 runs before torch's own CPU tagger (10); off, it defers to it.
torch.serialization.register_package(0, _gpu_tag, lambda storage, location: None)


@contextmanager
def saved_as_by_a_gpu_rank():
    """torch.save (DCP's files too) tags every tensor as rank 0's GPU would: cuda:0."""
    _as_gpu["on"] = True
    try:
        yield
    finally:
        _as_gpu["on"] = False


def _micro_model():
    """A Qwen2 model of about 40K parameters: checkpoints of a few hundred KB, fast to write and damage."""
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def _train_step(model, optimizer):
    batch = torch.tensor([[1, 2, 3, 4, 5, 6]])
    model(input_ids=batch, labels=batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def _weights(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module")
def two_checkpoints(tiny_run_inputs, tmp_path_factory):
    """A run folder with checkpoints after steps 1 and 2, and the weights of each."""
    run = tmp_path_factory.mktemp("two_checkpoints")
    tokenizer = AutoTokenizer.from_pretrained(tiny_run_inputs / "model")
    model, optimizer = _micro_model()
    weights = {}
    for step in (1, 2):
        _train_step(model, optimizer)
        save_checkpoint(run, step, model, tokenizer, optimizer, {"sampler": {"position": step}})
        weights[step] = _weights(model)
    return run, weights


def _resume(run):
    model, optimizer = _micro_model()
    folder, passed_over = find_checkpoint(run)
    state = load_checkpoint(folder, model, optimizer, reference=None)
    return folder, passed_over, state, model


def test_a_checkpoint_written_on_a_gpu_restores_on_the_cpu(two_checkpoints, tmp_path):
    model, optimizer = _micro_model()
    _train_step(model, optimizer)
    reference = Qwen2ForCausalLM(model.config).requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(two_checkpoints[0] / "checkpoints" / "step_000001" / "model")
    with saved_as_by_a_gpu_rank():
        folder = save_checkpoint(tmp_path, 1, model, tokenizer, optimizer, {"sampler": {"epoch": 0}}, reference)
    with pytest.raises(RuntimeError, match="CUDA"):  # as saved, the file needs the GPU it names
        torch.load(folder / "rng.pt", weights_only=True)

    fresh, fresh_optimizer = _micro_model()
    fresh_reference = Qwen2ForCausalLM(model.config).requires_grad_(False)
    state = load_checkpoint(folder, fresh, fresh_optimizer, fresh_reference)
    assert state == {"sampler": {"epoch": 0}, "step": 1}
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    for name, tensor in reference.state_dict().items():
        assert torch.equal(fresh_reference.state_dict()[name], tensor), name
    saved, restored = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert saved.keys() == restored.keys()
    for index in saved:
        for key, value in saved[index].items():
            assert restored[index][key].device.type == "cpu" and torch.equal(restored[index][key], value)
    assert "cuda" not in torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)


def test_an_intact_run_resumes_from_its_latest_checkpoint(two_checkpoints):
    run, weights = two_checkpoints
    folder, passed_over, state, model = _resume(run)
    assert folder.name == "step_000002" and passed_over == [] and state["sampler"] == {"position": 2}
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in weights[2].items())
    assert not torch.equal(weights[1]["model.norm.weight"], weights[2]["model.norm.weight"])


def _flip(path, at=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x10
    path.write_bytes(bytes(data))


def _zero(path, count=64):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(count)
    path.write_bytes(bytes(data))


DAMAGE = {
    "a bit flipped in the sharded weights": (lambda f: _flip(f / "policy" / "__0_0.distcp", 0.7),
                                             "policy/__0_0.distcp does not match its checksum"),
    "a bit flipped in the Hugging Face export": (lambda f: _flip(f / "model" / "model.safetensors", 0.9),
                                                 "model/model.safetensors does not match its checksum"),
    "zeroed bytes in the optimizer state": (lambda f: _zero(f / "optimizer" / "__0_0.distcp"),
                                            "optimizer/__0_0.distcp does not match its checksum"),
    "rng.pt cut short": (lambda f: (f / "rng.pt").write_bytes((f / "rng.pt").read_bytes()[:100]),
                         "rng.pt has 100 bytes where the manifest says"),
    "trainer_state.json rewritten": (lambda f: (f / "trainer_state.json").write_text('{"step": 7}'),
                                     "trainer_state.json has 11 bytes"),
    "a file deleted": (lambda f: (f / "optimizer" / ".metadata").unlink(), "optimizer/.metadata is missing"),
    "no manifest (a write cut short)": (lambda f: (f / "manifest.json").unlink(), "no manifest.json"),
    "a damaged manifest": (lambda f: (f / "manifest.json").write_text("{\"files\": [1"), "manifest.json is damaged"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_reported_and_the_previous_one_used(two_checkpoints, tmp_path, damage):
    run = shutil.copytree(two_checkpoints[0], tmp_path / "run")
    harm, reported = DAMAGE[damage]
    harm(run / "checkpoints" / "step_000002")
    folder, passed_over, state, model = _resume(run)
    assert folder.name == "step_000001" and state["step"] == 1
    (line,) = passed_over
    assert "step_000002 is damaged or incomplete" in line and reported in line and "\n" not in line
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in two_checkpoints[1][1].items())


@pytest.mark.parametrize("pointer", [b"step_000009", b"\x00\xff garbage", None])
def test_a_bad_latest_pointer_is_reported_and_the_newest_intact_checkpoint_used(two_checkpoints, tmp_path,
                                                                                 pointer):
    run = shutil.copytree(two_checkpoints[0], tmp_path / "run")
    latest = run / "checkpoints" / "latest"
    latest.unlink() if pointer is None else latest.write_bytes(pointer)
    folder, passed_over, _, _ = _resume(run)
    assert folder.name == "step_000002"
    (line,) = passed_over
    assert "latest" in line and ("is missing" if pointer is None else "names no checkpoint folder") in line


def test_latest_is_honoured_when_it_names_an_earlier_checkpoint(two_checkpoints, tmp_path):
    run = shutil.copytree(two_checkpoints[0], tmp_path / "run")
    (run / "checkpoints" / "latest").write_text("step_000001")  # a rollback by hand
    folder, passed_over, _, _ = _resume(run)
    assert folder.name == "step_000001" and passed_over == []


def test_no_intact_checkpoint_is_one_line_naming_each_problem(two_checkpoints, tmp_path):
    run = shutil.copytree(two_checkpoints[0], tmp_path / "run")
    _flip(run / "checkpoints" / "step_000002" / "rng.pt")
    (run / "checkpoints" / "step_000001" / "trainer_state.json").unlink()
    with pytest.raises(CheckpointError) as error:
        find_checkpoint(run)
    message = str(error.value)
    assert "no intact checkpoint" in message and "\n" not in message
    assert "step_000002" in message and "rng.pt" in message
    assert "step_000001" in message and "trainer_state.json is missing" in message


def test_no_checkpoint_at_all(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        find_checkpoint(tmp_path)


def test_describe_gives_size_and_sha256_as_sha256sum_does(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc" * 1_000_000)
    assert describe(tmp_path, "a.bin") == {
        "bytes": 3_000_000, "sha256": "f4096a131e7e6ebfa7a512b5c299e13b065df34d15624ee1202ab394cc4d7e90"}


def test_a_fresh_optimizer_is_saved_as_fresh_and_left_untouched(two_checkpoints, tmp_path):
    # As after a stage with reset_optimizer: asking DCP for its state would take a zero step, and the next real
    # step would then be Adam's second (another bias correction) in the run and after a resume alike.
    model, optimizer = _micro_model()
    tokenizer = AutoTokenizer.from_pretrained(two_checkpoints[0] / "checkpoints" / "step_000001" / "model")
    folder = save_checkpoint(tmp_path, 3, model, tokenizer, optimizer, {"sampler": None})
    assert not optimizer.state and not (folder / "optimizer").exists()
    fresh, fresh_optimizer = _micro_model()
    assert find_checkpoint(tmp_path) == (folder, [])
    load_checkpoint(folder, fresh, fresh_optimizer, reference=None)
    assert not fresh_optimizer.state
