"""The embedded recipe's Stage 0 on a micro budget: files written, sets returned, metrics measured."""

from __future__ import annotations

import json
from pathlib import Path

from deepscaler.recipes.curriculum import is_heldout
from deepscaler.recipes.sft import SFTConfig
from deepscaler.recipes.tiny import TinyRecipeConfig, prepare_stage0, sft_examples, user_prompt


def test_prompt_is_the_evaluation_default():
    problem = {"problem": "Compute $2+3$."}
    assert user_prompt(problem) == ("Compute $2+3$. Let's think step by step and output the final answer "
                                    "within \\boxed{}.")


def test_sft_examples_pair_prompts_with_traces_at_their_rates():
    from deepscaler.recipes.curriculum import generate_problems

    problems = generate_problems(400, seed=0)
    pairs, shares = sft_examples(problems, error_rate=0.2, seed=0)
    assert len(pairs) == 400 and pairs[0][0] == user_prompt(problems[0])
    assert all(response.startswith("<think>\n") for _, response in pairs)
    assert 0.72 < shares["correct"] < 0.88 and shares["worked"] == 1.0
    assert sft_examples(problems, 0.2, seed=0) == (pairs, shares)
    # Hasty traces: 30% answer without working, a quarter of those right; 20% of the rest slip.
    _, shares = sft_examples(problems, error_rate=0.2, seed=0, hasty_rate=0.3)
    assert 0.24 < 1 - shares["worked"] < 0.36
    assert 0.55 < shares["correct"] < 0.69  # about 0.7 * 0.8 + 0.3 * 0.25 = 0.635


def test_prepare_stage0_on_a_micro_budget(tmp_path: Path):
    config = TinyRecipeConfig(sft_problems=40, rl_problems=30, heldout_problems=4, eval_samples=2,
                              eval_max_tokens=16, sft=SFTConfig(batch_size=8, progress=False, threads=1))
    sft_dir, train, heldout, metrics = prepare_stage0(tmp_path, config)
    assert sft_dir == tmp_path / "sft" and (sft_dir / "model.safetensors").is_file()
    # The RL set keeps each drawn problem once (easy levels of one family have few distinct problems).
    assert 25 <= len(train) <= 30 and len({p["id"] for p in train}) == len(train) and len(heldout) == 4
    assert {p["family"] for p in train + heldout} == {"modular"}
    assert not any(is_heldout(p["problem"]) for p in train) and all(is_heldout(p["problem"]) for p in heldout)
    assert metrics["sft"]["steps"] == 5 and metrics["sft"]["examples"] == 40
    result = metrics["heldout"]
    assert result["problems"] == 4 and 0.0 <= result["pass@1"] <= result["pass@2"] <= 1.0
    assert result["max_length"] <= 16 and set(result["by_difficulty"]) <= {1, 2, 3, 4, 5}
    saved = json.loads((tmp_path / "stage0.json").read_text())
    assert saved["sft"]["steps"] == 5 and saved["config"]["sft_problems"] == 40
