"""`deepscaler plan` and the memory check of `deepscaler train`, as users run them."""

import json
import subprocess
import sys

import pytest

from deepscaler.cli import main
from deepscaler.planner import startup
from deepscaler.planner.memory import GIB

RECIPE = "configs/deepscaler-1.5b.yaml"


def plan(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "deepscaler.cli", "plan", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def test_recipe_on_eight_80gb_gpus_fits_every_stage():
    result = plan("--config", RECIPE, "--gpus", "8", "--gpu-memory-gb", "80", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2].split() == ["fits", "yes", "yes", "yes"]  # the table, then the JSON
    stages = json.loads(lines[-1])["stages"]
    assert [(s["name"], s["fits"]) for s in stages] == [("8k", True), ("16k", True), ("24k", True)]
    assert all(0 < s["peak_gb_per_gpu"] <= 80 for s in stages)


def test_one_16gb_gpu_does_not_fit_and_says_what_would():
    result = plan("--config", RECIPE, "--gpus", "1", "--gpu-memory-gb", "16", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert not any(s["fits"] for s in out["stages"])
    assert out["suggestions"] == ["--gpus 8 distributed.strategy=fsdp"]
    assert "would fit with:" in result.stdout
    again = plan("--config", RECIPE, "--gpus", "8", "--gpu-memory-gb", "16", "distributed.strategy=fsdp", "--json")
    assert all(s["fits"] for s in json.loads(again.stdout.splitlines()[-1])["stages"])


@pytest.mark.parametrize(("args", "message"), [
    (["--config", RECIPE, "--gpus", "0"], "--gpus must be at least 1"),
    (["--config", RECIPE, "optim.lrr=1"], "unknown key optim.lrr"),
    (["--config", RECIPE, "model.path=nobody/no-such-model"], "not a known model"),
    (["--config", "nowhere.yaml"], "nowhere.yaml: no such config file"),
    ([], "model.path is not set"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = plan(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_refuses_with_the_table_when_a_stage_will_not_fit(monkeypatch, tmp_path, capsys):
    # A fake GPU target (this machine has no GPU): one 16 GiB GPU.
    monkeypatch.setattr(startup, "gpu_target", lambda: (1, 16 * GIB))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    problems = tmp_path / "train.jsonl"
    problems.write_text('{"problem": "1+1?", "answer": "2"}\n')
    args = ["train", "--config", RECIPE, "--out", str(tmp_path / "run"), "distributed.strategy=ddp",
            f"data.train_files=[{problems}]"]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert "fits" in out and "NO" in out and "--gpus 8 distributed.strategy=fsdp" in out
    assert "--skip-memory-check" in err and not (tmp_path / "run").exists()  # refused before any work
    # The flag lets it start: it then stops on the model, which is not in this offline machine's cache.
    assert main([*args, "--skip-memory-check"]) == 2
    assert "neither a local folder nor found" in capsys.readouterr().err


def test_train_check_passes_the_recipe_on_eight_80gb_gpus_and_is_off_without_cuda():
    from deepscaler.config import load_config
    from deepscaler.trainer.config import TrainConfig

    config = load_config(TrainConfig, RECIPE)
    assert startup.memory_refusal(config, 8, 80 * GIB) is None
    replicated = load_config(TrainConfig, RECIPE, ["distributed.strategy=ddp"])
    assert "NO" in startup.memory_refusal(replicated, 8, 24 * GIB)
    assert startup.gpu_target() is None  # this machine has no CUDA: training on it is never checked


def test_a_recipe_config_is_planned_by_its_grpo_part(tmp_path):
    from deepscaler.inference import make_tiny_model

    folder = make_tiny_model(tmp_path / "tiny", preset="tiny", seed=0)
    result = plan("--config", "configs/smollm2-gsm8k.yaml", f"model.path={folder}", "--gpus", "1",
                  "--gpu-memory-gb", "16", "--json")
    assert result.returncode == 0, result.stderr
    assert [s["name"] for s in json.loads(result.stdout.splitlines()[-1])["stages"]] == ["rl"]
