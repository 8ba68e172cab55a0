"""Reading JSON Lines input with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class JSONLError(ValueError):
    """Unreadable JSONL input; the message is `path:line: what is wrong`."""


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line; a missing file or a bad line raises JSONLError."""
    if not path.is_file():
        raise JSONLError(f"{path}: no such file")
    with path.open("rb") as handle:  # lines decoded one by one: a bad byte is named by its line
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise JSONLError(f"{path}:{number}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at column "
                                 f"{error.start + 1})") from None
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise JSONLError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            except ValueError as error:  # an integer past Python's 4,300-digit conversion limit
                raise JSONLError(f"{path}:{number}: not readable JSON ({error})") from None
