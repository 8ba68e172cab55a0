"""Incremental text for streamed completions: decode as tokens arrive, never emit what may still change."""

from __future__ import annotations

from typing import Any


class TextStream:
    """Turns one completion's token ids into text pieces.

    A piece is held back while it ends in an incomplete UTF-8 character, or while its tail could be the
    start of a stop string (the engine cuts stop strings from the final text, and a streamed piece cannot
    be taken back)."""

    def __init__(self, tokenizer: Any, stop: list[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.emitted = ""
        self.hold = max((len(s) for s in stop or []), default=1) - 1

    def push(self, token: int) -> str:
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        safe = text[: len(text) - self.hold] if self.hold else text
        if len(safe) <= len(self.emitted) or not safe.startswith(self.emitted):
            return ""
        piece, self.emitted = safe[len(self.emitted) :], safe
        return piece

    def finish(self, final_text: str) -> str:
        """What remains to send once the completion's final text is known."""
        if final_text.startswith(self.emitted):
            rest = final_text[len(self.emitted) :]
            self.emitted = final_text
            return rest
        return ""
