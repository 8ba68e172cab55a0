"""Find the final answer in a model response: the last `\\boxed{...}` after the reasoning."""

from __future__ import annotations

import re

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
THINK_MODES = ("optional", "required")

# `\boxed{..}` and `\fbox{..}` mark the final answer; `\boxed 5` (no braces) takes one token.
# A command followed by a letter is another command (`\boxedx`), not a box.
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")


def solution_part(response: str, think: str = "optional") -> str | None:
    """The text after the reasoning, or None when the response has no usable final part.

    think="optional" (the default) grades a response with no think tags on its whole text, so a chat
    template that pre-fills `<think>` in the prompt (the model then writes only `</think>`) and one that
    does not both work. A response that opens `<think>` and never closes it was cut off mid-reasoning:
    it has no answer in either mode. think="required" also demands the closing tag.
    """
    if think not in THINK_MODES:
        raise ValueError(f"think must be one of {THINK_MODES}, got {think!r}")
    close = response.rfind(THINK_CLOSE)
    if close >= 0:
        return response[close + len(THINK_CLOSE) :]
    if think == "required" or THINK_OPEN in response:
        return None
    return response


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` / `\\boxed x` in text, brace-matched; None when
    there is none or it is empty."""
    last = None
    for match in _BOX_COMMAND.finditer(text):  # one linear scan: searching back box by box was quadratic
        last = match
    if last is None:
        return None
    # A broken or empty last box is no answer, not a cue to look earlier: an empty `\boxed{}` is what a
    # model writes when it echoes the prompt's instruction ("... within \boxed{}").
    content = _box_content(text, last.end())
    return content if content is not None and content.strip() else None


def _box_content(text: str, i: int) -> str | None:
    """The argument of a box command whose name ends just before index i."""
    if i < len(text) and text[i] == "{":
        depth, j = 0, i
        while j < len(text):
            char = text[j]
            if char == "\\":  # an escaped brace \{ neither opens nor closes a group
                j += 2
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j]
            j += 1
        return None  # never closed: the response was cut off
    if i < len(text) and text[i] == " ":
        rest = text[i:].lstrip(" ")
        token = rest.split("$", 1)[0].split()[0] if rest.strip() else ""
        return token.rstrip(".,;") or None
    return None


def extract_answer(response: str, think: str = "optional") -> str | None:
    """The final answer of a response: the last boxed expression after the last `</think>`.

    Returns None when there is no final part (see `solution_part`) or no box in it. Reasoning text is
    never searched for a fallback answer: an unboxed answer earns nothing.
    """
    if not isinstance(response, str):
        return None
    part = solution_part(response, think)
    return None if part is None else last_boxed(part)
