"""`deepscaler train` end to end on a tiny model: two stages, metrics, checkpoints, plot, bad input."""

import json
import os
import subprocess
import sys

import pytest

from tests.trainer.conftest import train_args

pytestmark = pytest.mark.slow


def run_cli(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "deepscaler.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def test_two_stages_metrics_checkpoint_and_plot(tiny_run_inputs, tmp_path):
    out = tmp_path / "run"
    extra = ["stages.1.name=long", "stages.1.max_steps=2", "stages.1.prompts_per_step=4",
             "stages.1.samples_per_prompt=4", "stages.1.max_response_tokens=48", "validation.every_steps=2",
             "wandb_project=deepscaler-test"]
    # W&B offline: the run is written into the run directory, nothing is sent.
    result = run_cli("train", *train_args(tiny_run_inputs, out, steps=2, extra=extra),
                     env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in metrics] == [0, 0, 1, 1]
    assert [m["stage/max_response_tokens"] for m in metrics] == [24, 24, 48, 48]
    assert all(m["response_length/max"] <= m["stage/max_response_tokens"] for m in metrics)
    assert all(abs(m["rollout/logprob_gap"]) < 1e-3 for m in metrics)  # engine and trainer agree
    assert "val/pass@1" in metrics[1] and "val/pass@1" in metrics[3]
    for key in ("accuracy", "truncation_ratio", "actor/kl", "actor/entropy", "actor/clip_frac", "actor/grad_norm",
                "tokens_per_second", "time/generate", "time/score", "time/update", "groups/solve_none"):
        assert key in metrics[0], key
    assert (out / "config.yaml").is_file()
    (wandb_run,) = (out / "wandb").glob(f"offline-run-*-{(out / 'wandb_id').read_text()}")
    logged = next(wandb_run.glob("run-*.wandb")).read_bytes()  # W&B's record log: keys appear as text
    assert all(key.encode() in logged for key in ("val/pass@1", "actor/kl", "truncation_ratio"))
    latest = (out / "checkpoints" / "latest").read_text().strip()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "checkpoints" / latest / "model")  # Hugging Face format
    plotted = run_cli("plot", str(out))
    assert plotted.returncode == 0 and (out / "plots" / "training.png").stat().st_size > 10_000
    logged = (out / "metrics.jsonl").read_text()
    again = run_cli("train", *train_args(tiny_run_inputs, out, steps=2, extra=extra), timeout=120)
    assert again.returncode == 2 and f"out_dir={out} holds an earlier run" in again.stderr  # not a restart at step 0
    assert (out / "metrics.jsonl").read_text() == logged


def test_every_steps_0_validates_at_stage_ends_and_for_the_plateau_rule(tiny_run_inputs, tmp_path):
    # A 4-token budget truncates every response of the random model, so stage 0's truncation trigger holds from
    # its first step; its plateau rule then needs a validation each step, and pass@1 (0: nothing is ever boxed)
    # is flat after two. Stage 1 ends on max_steps and is validated there. The model never earns a reward, so the
    # solve-none warning fires once, at its second step in a row.
    out = tmp_path / "run"
    extra = ["stages.0.max_response_tokens=4", "stages.0.truncation_trigger=0.5", "stages.0.window=1",
             "stages.0.plateau_patience=1", "stages.1.name=long", "stages.1.max_steps=2",
             "stages.1.prompts_per_step=4", "stages.1.samples_per_prompt=4", "stages.1.max_response_tokens=8",
             "validation.max_problems=4", "validation.samples_per_problem=1", "solve_none_warn_steps=2"]
    result = run_cli("train", *train_args(tiny_run_inputs, out, steps=5, extra=extra))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in metrics] == [0, 0, 1, 1]  # the plateau ended stage 0 before its 5 steps
    assert [m["stage/ended"] for m in metrics] == [False, True, False, True]
    assert ["val/pass@1" in m for m in metrics] == [True, True, False, True]
    assert [m["groups/solve_none_streak"] for m in metrics] == [1, 2, 3, 4]
    assert ["warning" in m for m in metrics] == [False, True, False, False]
    assert result.stdout.count("no response earned a reward for 2 steps in a row") == 1
    assert "validation pass@1 flat for 1 validations" in result.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown key optim.lrr"),
        ("stages.0.prompts_per_step=3", "not divisible into optim.mini_batches=2"),
        ("optim.micro_batch_tokens=8", "micro_batch_tokens must hold"),
        ("data.max_prompt_tokens=4", "data.train_files: no problem fits data.max_prompt_tokens=4 (56 longer"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(tiny_run_inputs, tmp_path, override, message):
    result = run_cli("train", *train_args(tiny_run_inputs, tmp_path / "bad", extra=[override]), timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_wandb_that_cannot_start_is_a_one_line_error(tiny_run_inputs, tmp_path):
    extra = ["wandb_project=deepscaler-test"]
    # Online mode with no API key anywhere: W&B refuses at once.
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "", "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
           "HOME": str(tmp_path)}
    result = run_cli("train", *train_args(tiny_run_inputs, tmp_path / "run", extra=extra), timeout=120, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "W&B did not start" in result.stderr and "Traceback" not in result.stderr


def test_non_finite_updates_are_skipped_then_abort(tiny_run_inputs, tmp_path):
    out = tmp_path / "run"
    # A learning rate this large blows the weights up after the first optimizer step: the next losses are inf.
    args = train_args(tiny_run_inputs, out, steps=6, extra=["optim.lr=1e12", "optim.max_bad_steps=2"])
    result = run_cli("train", *args)
    assert result.returncode == 2
    assert "non-finite loss or gradient norm; update skipped" in result.stdout
    assert "2 steps in a row with non-finite updates" in result.stderr and "Traceback" not in result.stderr
    assert (out / "checkpoints" / "latest").is_file()


def test_single_update_per_step_uses_the_update_forward_as_old_policy(tiny_run_inputs, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", *train_args(tiny_run_inputs, out, steps=2, extra=["optim.mini_batches=1"]))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < m["rollout/logprob_gap"] < 1e-3 for m in metrics)  # measured inside the update
    assert all(abs(m["actor/ratio_mean"] - 1) < 1e-6 for m in metrics)  # on-policy: ratio exactly 1
