"""Train/eval parity: one problem becomes the same prompt through the trainer's path and the evaluation's."""

from pathlib import Path

import pytest

from deepscaler.data.problems import load
from deepscaler.eval.generate import messages_for
from deepscaler.eval.runner import EvalSettings
from deepscaler.inference import LLM, SamplingParams, make_tiny_model
from deepscaler.prompting import INSTRUCTION, PROMPT_TEMPLATE, conversation
from deepscaler.trainer.config import DataConfig
from deepscaler.trainer.data import render_prompts

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"


def test_the_template_is_the_instruction_after_the_problem():
    assert PROMPT_TEMPLATE == "{problem} Let's think step by step and output the final answer within \\boxed{{}}."
    assert PROMPT_TEMPLATE.format(problem="P") == "P" + INSTRUCTION
    assert DataConfig().prompt_template == EvalSettings().prompt_template == PROMPT_TEMPLATE
    assert conversation("P", system_prompt="S") == [{"role": "system", "content": "S"},
                                                    {"role": "user", "content": "P" + INSTRUCTION}]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not found beside the repository")
@pytest.mark.parametrize("system_prompt", [None, "You are a careful mathematician."])
def test_training_and_evaluation_render_the_same_prompt(tmp_path, system_prompt):
    # amc2023's first problems include one ending in a newline, which both paths must keep.
    problems = [p for p in load("amc2023", data_dir=SHARED) if p.problem != p.problem.strip()][:1]
    problems += load("olympiadbench", data_dir=SHARED, limit=1)
    with LLM(model=str(make_tiny_model(tmp_path / "tiny", preset="tiny", seed=0)), engine="builtin") as llm:
        data = DataConfig(system_prompt=system_prompt)  # the trainer's defaults, as `deepscaler train` reads them
        training, dropped = render_prompts(problems, llm.get_tokenizer(), data.prompt_template, data.system_prompt,
                                           10_000)
        settings = EvalSettings(system_prompt=system_prompt)
        outputs = llm.chat([messages_for(p, settings) for p in problems], SamplingParams(max_tokens=1),
                           use_tqdm=False)
    assert dropped == 0 and len(training) == 2
    for prompt, output, problem in zip(training, outputs, problems):
        assert prompt.text == output.prompt
        assert prompt.token_ids == list(output.prompt_token_ids)
        assert problem.problem + INSTRUCTION in prompt.text
