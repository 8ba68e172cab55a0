"""What training and evaluation must agree on: how a problem is put to the model, and what it is measured on.

A model trained on one prompt and evaluated on another is measured on a task it was not trained for, so the
instruction, the prompt template and the conversation a problem becomes live here once; the trainer, the
evaluation, the data tools (verl's layout carries the instruction) and the command lines' help texts read them.
The chat template itself is the tokenizer's, applied to `conversation(...)` by whoever tokenizes.
"""

from __future__ import annotations

# DeepScaleR's instruction: appended to every problem in its training data and its evaluation.
INSTRUCTION = " Let's think step by step and output the final answer within \\boxed{}."
# A str.format template: {problem} is replaced, so the instruction's braces are doubled.
PROMPT_TEMPLATE = "{problem}" + INSTRUCTION.replace("{", "{{").replace("}", "}}")
# The benchmarks DeepScaleR reports, in its order: what `deepscaler eval` runs and `deepscaler data` decontaminates
# against unless told otherwise.
DEFAULT_BENCHMARKS = ("aime2024", "math500", "amc2023", "minerva", "olympiadbench")


def user_turn(problem: str, template: str = PROMPT_TEMPLATE) -> str:
    """The user message for a problem. Raises KeyError, IndexError or ValueError for a template that does not
    use {problem} alone (other braces must be doubled); callers turn that into their own one-line error."""
    return template.format(problem=problem)


def conversation(problem: str, template: str = PROMPT_TEMPLATE, system_prompt: str | None = None
                 ) -> list[dict[str, str]]:
    """The chat messages a problem becomes: the system prompt when there is one, then the user turn."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": user_turn(problem, template)}]
