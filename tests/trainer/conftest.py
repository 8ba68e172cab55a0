import json
import random
import socket

import pytest

from deepscaler.inference import make_tiny_model


@pytest.fixture(scope="session")
def tiny_run_inputs(tmp_path_factory):
    """A tiny model and a small addition data set, shared by the trainer tests."""
    root = tmp_path_factory.mktemp("trainer")
    rng = random.Random(0)
    rows = []
    for i in range(64):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"id": i, "problem": f"What is {a}+{b}?", "answer": str(a + b)})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:56]))
    (root / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[56:]))
    make_tiny_model(root / "model", preset="tiny", seed=0)
    return root


def train_args(root, out, steps=4, extra=()):
    return [
        f"model.path={root / 'model'}", f"data.train_files=[{root / 'train.jsonl'}]",
        f"data.val_files=[{root / 'val.jsonl'}]", f"out_dir={out}", f"stages.0.max_steps={steps}",
        "stages.0.prompts_per_step=4", "stages.0.samples_per_prompt=4", "stages.0.max_response_tokens=24",
        "optim.micro_batch_tokens=512", "optim.lr=1e-3", "validation.every_steps=0", "checkpoint.every_steps=1",
        "tensorboard=false", *extra,
    ]


def free_port() -> int:
    """A port nothing listens on now, for torchrun's rendezvous: fixed ones collide when test runs overlap."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
