"""The GSM8K recipe: its held-out split and SFT targets, and the whole path (SFT -> eval -> GRPO -> eval ->
compare) through `deepscaler train --config configs/smollm2-gsm8k.yaml` on a tiny random model and 24 rows."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepscaler.recipes.gsm8k_data import boxed_solution, final_answer, is_heldout, split_rows, step_count

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
            "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer's market.\n#### 1,018")


def test_sft_target_drops_calculator_notes_and_ends_boxed():
    assert final_answer(SOLUTION) == "1018"
    assert step_count(SOLUTION) == 2
    assert boxed_solution(SOLUTION) == ("Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n"
                                        "She makes 9 * 2 = $18 every day at the farmer's market.\n"
                                        "The answer is $\\boxed{1018}$.")


def test_split_is_by_problem_text_disjoint_and_near_the_share():
    rows = [{"problem": f"Problem number {i}?", "solution": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(2000)]
    train, heldout = split_rows(rows, 0.25)
    assert len(train) + len(heldout) == 2000
    assert 450 < len(heldout) < 550
    assert not {r["problem"] for r in train} & {r["problem"] for r in heldout}
    # The side depends on the text alone, not on the row's place in the file.
    reversed_train, reversed_heldout = split_rows(rows[::-1], 0.25)
    assert {r["problem"] for r in reversed_heldout} == {r["problem"] for r in heldout}
    assert is_heldout("Problem number 7?", 0.25) == any(r["problem"] == "Problem number 7?" for r in heldout)
    assert heldout[0]["answer"] == str(int(heldout[0]["problem"].split()[-1][:-1]) + 1)


def test_the_shipped_gsm8k_split_holds_out_about_300_problems():
    rows = json.loads((ROOT.parent / "shared" / "data" / "benchmarks" / "gsm8k.json").read_text())
    train, heldout = split_rows(rows, 0.23)
    assert (len(train), len(heldout)) == (1003, 316)


@pytest.mark.slow
def test_recipe_runs_end_to_end_on_a_tiny_model(tmp_path):
    from deepscaler.inference import make_tiny_model

    model = make_tiny_model(tmp_path / "model", preset="tiny", seed=0)
    rows = [{"problem": f"Tom has {i} apples and buys {i + 2} more. How many apples does he have?",
             "solution": f"He has {i} + {i + 2} = <<{i}+{i + 2}={2 * i + 2}>>{2 * i + 2} apples.\n#### {2 * i + 2}"}
            for i in range(24)]
    source = tmp_path / "rows.json"
    source.write_text(json.dumps(rows))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "deepscaler.cli", "train", "--config", str(ROOT / "configs/smollm2-gsm8k.yaml"),
               "--out", str(out), f"model.path={model}", f"recipe.source={source}", "recipe.heldout_share=0.3",
               "recipe.sft_examples=8", "recipe.sft.warmup_steps=0", "recipe.eval_samples=2", "recipe.eval_base=true",
               "stages.0.max_steps=1", "stages.0.prompts_per_step=2", "stages.0.samples_per_prompt=2",
               "stages.0.max_response_tokens=16", "data.max_prompt_tokens=128", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    split = summary["split"]
    assert split["sft"] == 8 and split["sft"] + split["rl"] + split["heldout"] == 24
    assert summary["sft"]["steps"] == 1
    assert set(summary["eval"]) == {"base", "sft", "rl", "final"}
    assert list(summary["phases"]) == ["eval_base", "sft", "eval_sft", "rl_rl", "eval_rl", "close"]
    assert all(phase["wall"] >= 0 and phase["cpu"] >= 0 for phase in summary["phases"].values())
    assert summary["cpu_seconds"] > 0 and 0 < summary["wall_seconds"] < 300
    gain = summary["gain"]
    assert gain["problems"] == split["heldout"]
    assert gain["delta"] == pytest.approx(summary["eval"]["rl"]["pass@1"] - summary["eval"]["sft"]["pass@1"])
    assert gain["ci_low"] <= gain["delta"] <= gain["ci_high"]
    for name in ("base", "sft", "rl"):
        samples = (out / "eval" / name / "samples.jsonl").read_text().splitlines()
        assert len(samples) == 2 * split["heldout"]
        # A chunk holds 192 sequences (96 problems x 2 samples), so continuous batching stays full.
        settings = json.loads((out / "eval" / name / "config.json").read_text())["settings"]
        assert settings["problems_per_chunk"] == 96
    metrics = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "accuracy" in m] == [1]
    assert (out / "sft" / "model.safetensors").is_file()
    heldout = {json.loads(line)["problem"] for line in (out / "data" / "heldout.jsonl").read_text().splitlines()}
    rl = {json.loads(line)["problem"] for line in (out / "data" / "train.jsonl").read_text().splitlines()}
    assert heldout and rl and not heldout & rl
    assert "held-out pass@1" in result.stdout
