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
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise JSONLError(f"{path}:{number}: not valid JSON ({error.msg})") from None
