"""Kept rows parked on disk, so that a run can write them in a shuffled order without holding them.

Memory is 8 bytes per row (its offset in the spool file) plus one row at a time.
"""

from __future__ import annotations

import json
import random
from array import array
from collections.abc import Iterator
from pathlib import Path

from deepscaler.data.records import Record


class Spool:
    """An append-only file of records, read back in any order; `close()` deletes it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._handle = self.path.open("w+b")
        self._offsets = array("q")

    @property
    def count(self) -> int:
        """Records parked so far."""
        return len(self._offsets)

    def write(self, record: Record) -> None:
        """Park one record."""
        self._offsets.append(self._handle.tell())
        fields = {"id": record.id, "problem": record.problem, "answers": record.answers, "source": record.source,
                  "solution": record.solution, "difficulty": record.difficulty}
        self._handle.write(json.dumps(fields, ensure_ascii=False).encode("utf-8") + b"\n")

    def shuffled(self, rng: random.Random) -> Iterator[Record]:
        """Every parked record once, in an order drawn from rng."""
        order = array("q", range(self.count))
        rng.shuffle(order)
        self._handle.flush()
        for position in order:
            self._handle.seek(self._offsets[position])
            yield Record(**json.loads(self._handle.readline()))

    def close(self) -> None:
        """Delete the spool file."""
        self._handle.close()
        self.path.unlink(missing_ok=True)
