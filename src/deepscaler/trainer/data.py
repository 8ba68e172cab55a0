"""Training prompts: problems rendered with the chat template, drawn in a seeded order that can resume."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from deepscaler.data.records import Record
from deepscaler.prompting import conversation


@dataclass(frozen=True)
class Prompt:
    uid: str  # stable id of the problem (file position + id), used for seeds
    token_ids: list[int]
    answers: list[str]
    text: str


def render_prompts(
    problems: list[Record], tokenizer: Any, template: str, system_prompt: str | None, max_prompt_tokens: int,
    source: str = "",
) -> tuple[list[Prompt], int]:
    """Render each problem with the template and the tokenizer's chat template; drop (and count) long ones."""
    prompts, dropped = [], 0
    for problem in problems:
        messages = conversation(problem.problem, template, system_prompt)
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_prompt_tokens:
            dropped += 1
            continue
        prompts.append(Prompt(f"{source}{problem.id}", ids, problem.answers, text))
    return prompts, dropped


class PromptSampler:
    """Endless shuffled passes over the prompts; `state()` / `load_state()` make it resumable.

    With `world_size` > 1 every rank draws the same global batch and keeps its own slice, so a run's
    data does not depend on how many ranks it is spread over.
    """

    def __init__(self, prompts: list[Prompt], seed: int, shuffle: bool = True) -> None:
        if not prompts:
            raise ValueError("no training prompts")
        self.prompts, self.seed, self.shuffle = prompts, seed, shuffle
        self.epoch, self.position = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.prompts)))
        if self.shuffle:
            random.Random(self.seed * 100_003 + epoch).shuffle(order)
        return order

    def draw(self, count: int) -> list[Prompt]:
        drawn = []
        while len(drawn) < count:
            if self.position == len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._epoch_order(self.epoch)
            drawn.append(self.prompts[self._order[self.position]])
            self.position += 1
        return drawn

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._epoch_order(self.epoch)
