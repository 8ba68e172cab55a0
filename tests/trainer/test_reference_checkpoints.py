"""Checkpoints carry the reference model only once a stage has reset it (before that, resume rebuilds it from
model.path), and a run resumed from either kind ends with exactly the weights of an uninterrupted one."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.conftest import train_args

pytestmark = pytest.mark.slow

# Stage 0 takes 2 steps, then stage 1 (reset_reference, the default) starts from step 2's weights and takes 1.
SECOND_STAGE = ["stages.1.name=second", "stages.1.max_steps=1", "stages.1.prompts_per_step=4",
                "stages.1.samples_per_prompt=4", "stages.1.max_response_tokens=24", "checkpoint.keep_last=3"]


def _train(*args):
    run = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train", *args], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


def _weights(folder):
    return load_file(str(folder / "model" / "model.safetensors"))


def test_the_reference_is_stored_after_a_reset_only_and_resumes_either_way(tiny_run_inputs, tmp_path):
    full = tmp_path / "full"
    _train(*train_args(tiny_run_inputs, full, steps=2, extra=SECOND_STAGE))
    checkpoints = full / "checkpoints"
    stored = {step: (checkpoints / f"step_00000{step}" / "reference").is_dir() for step in (1, 2, 3)}
    assert stored == {1: False, 2: True, 3: True}
    for step in (1, 2, 3):
        manifest = json.loads((checkpoints / f"step_00000{step}" / "manifest.json").read_text())["files"]
        assert any(name.startswith("reference/") for name in manifest) == stored[step]
        state = json.loads((checkpoints / f"step_00000{step}" / "trainer_state.json").read_text())
        assert state["reference_changed"] == stored[step]
    expected = _weights(checkpoints / "step_000003")

    # Resumed after step 1 (reference rebuilt from model.path) and after step 2 (reference read back): step 3's
    # KL term is against the reset reference both times, so the final weights are those of the full run.
    for resume_after in (1, 2):
        run = tmp_path / f"from{resume_after}"
        shutil.copytree(full, run)
        for later in range(resume_after + 1, 4):
            shutil.rmtree(run / "checkpoints" / f"step_00000{later}")
        (run / "checkpoints" / "latest").write_text(f"step_00000{resume_after}")
        _train("--resume", str(run))
        actual = _weights(run / "checkpoints" / "step_000003")
        assert expected.keys() == actual.keys()
        for name in expected:
            assert torch.equal(expected[name], actual[name]), (resume_after, name)
