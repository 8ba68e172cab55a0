"""`deepscaler train` with no model: the embedded default end to end, scaled down to seconds, twice."""

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.plain_install]  # also run in `make demo`'s environment

# The whole recipe with every size cut down: 200 SFT problems, one GRPO step per stage, 6 held-out problems.
SMALL = [
    "stage0.sft_problems=200", "stage0.rl_problems=40", "stage0.heldout_problems=6", "stage0.sft.progress=false",
    *(f"stages.{i}.{key}" for i in range(3)
      for key in ("max_steps=1", "prompts_per_step=4", "samples_per_prompt=4")),
    "stages.0.max_response_tokens=24", "stages.1.max_response_tokens=32", "stages.2.max_response_tokens=40",
    "validation.every_steps=0", "checkpoint.every_steps=1",
]


def train(out, *extra):
    return subprocess.run([sys.executable, "-m", "deepscaler.cli", "train", "--out", str(out), *SMALL, *extra],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    results = [train(root / name) for name in ("first", "second")]
    for result in results:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return root, results


def test_writes_everything_a_run_promises(runs):
    root, results = runs
    out = root / "first"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["eval"]) == {"sft", "short", "medium", "long", "final"}
    assert summary["eval"]["final"] == summary["eval"]["long"]
    for values in summary["eval"].values():
        assert 0.0 <= values["pass@1"] <= values["pass@8"] <= 1.0
    assert 0 < summary["wall_seconds"] < 600
    metrics = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "accuracy" in m]
    assert [m["stage/name"] for m in steps] == ["short", "medium", "long"]
    assert [m["stage/max_response_tokens"] for m in steps] == [24, 32, 40]
    assert (out / "plots" / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((out / "rl" / "checkpoints").iterdir())
    assert (out / "stage0" / "sft" / "model.safetensors").is_file()
    report = (out / "report.md").read_text()
    assert "| sft |" in report and "| long |" in report and "changed by" in report
    for name in ("sft", "short", "medium", "long"):  # held-out evaluations through deepscaler.eval
        samples = [json.loads(line) for line in (out / "eval" / name / "samples.jsonl").read_text().splitlines()]
        assert len(samples) == 6 * 8
        hasty = sum("without working it out" in sample["response"] for sample in samples)
        assert summary["eval"][name]["worked_rate"] == pytest.approx(1 - hasty / len(samples))
    assert "| worked |" in report
    # The one-screen ending names the gain and where the report is.
    assert "pass@1" in results[0].stdout and "report.md" in results[0].stdout


def test_the_same_seed_gives_the_same_numbers(runs):
    root, _ = runs
    first, second = (json.loads((root / name / "summary.json").read_text()) for name in ("first", "second"))
    assert first["eval"] == second["eval"]
    rewards = [[json.loads(line).get("reward/mean") for line in (root / name / "rl" / "metrics.jsonl").open()]
               for name in ("first", "second")]
    assert rewards[0] == rewards[1]


@pytest.mark.parametrize("override, named", [("stage0.sft.lr=fast", "stage0.sft.lr"),
                                             ("stage0.families=[modular,geometry]", "stage0.families"),
                                             ("stage0.hasty_rate=1.5", "stage0.hasty_rate")])
def test_bad_override_fails_before_any_work(tmp_path, override, named):
    result = train(tmp_path / "bad", override)
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "bad" / "stage0").exists()
