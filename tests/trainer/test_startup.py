"""Start-up checks: a batch that the ranks cannot split evenly, and a run folder that cannot be written, stop the
run before any heavy work with one line naming the key (exit code 2 from each rank), no traceback of ours."""

import re
import subprocess
import sys

import pytest

from tests.trainer.conftest import train_args

pytestmark = pytest.mark.slow

OUR_FRAMES = re.compile(r'File "[^"]*deepscaler/(cli|trainer|inference)/')


def test_prompts_not_divisible_by_the_world_size_stop_every_rank(tiny_run_inputs, tmp_path):
    # Stage 1's 3 prompts cannot be split over 2 ranks (one optimizer step per training step, so the config
    # itself is valid).
    extra = ["optim.mini_batches=1", "stages.1.prompts_per_step=3", "stages.1.max_response_tokens=24"]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
         "-m", "deepscaler.cli", "train", *train_args(tiny_run_inputs, tmp_path / "run", extra=extra)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    line = ("deepscaler train: error: stages.1.prompts_per_step=3 is not divisible by the world size 2 "
            "(each rank takes an equal block of a step's prompts)")
    assert line in result.stderr.splitlines(), result.stderr[-3000:]
    assert not OUR_FRAMES.search(result.stderr), result.stderr[-3000:]  # torchrun's own report only
    assert not (tmp_path / "run").exists()  # stopped before anything was written


def test_a_run_folder_that_cannot_be_created_is_a_one_line_error(tiny_run_inputs, tmp_path):
    (tmp_path / "file").write_text("a file where the run folder's parent should be")
    out = tmp_path / "file" / "run"
    result = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train", *train_args(tiny_run_inputs, out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"deepscaler train: error: out_dir={out}: cannot create a folder in it (Not a directory)"]
