"""Training files in two layouts, written as streams: ours (what `deepscaler train` reads) and verl's.

Ours: one object per problem with `id, problem, answer, answers, source, solution, difficulty`; `answer` is
the first acceptable answer, for readers that take one. The trainer and the evaluation load either layout
through `problems.load`, which reads every alternative in `answers`.

verl's (its DeepScaleR recipe): `data_source`, `prompt` (one user message: the problem and INSTRUCTION),
`ability`, `reward_model` ({"style": "rule", "ground_truth": answer}) and `extra_info`, where the fields
verl has no column for are kept, so `read_records` gives back exactly the records that were written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepscaler.data.records import BadRow, Record, to_record
from deepscaler.data.sources import SUFFIXES, Unparsable, label, open_rows
from deepscaler.prompting import INSTRUCTION

LAYOUTS = ("deepscaler", "verl")
_BATCH = 4096


def to_row(record: Record) -> dict[str, Any]:
    """A record in our layout."""
    return {
        "id": record.id, "problem": record.problem, "answer": record.answer, "answers": list(record.answers),
        "source": record.source, "solution": record.solution, "difficulty": record.difficulty,
    }


def to_verl(record: Record, index: int, split: str = "train") -> dict[str, Any]:
    """A record in verl's layout; `index` is its position in the file, as verl's own scripts number rows."""
    return {
        "data_source": record.source,
        "prompt": [{"role": "user", "content": record.problem + INSTRUCTION}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": record.answer},
        "extra_info": {
            "index": index, "split": split, "id": record.id, "answers": list(record.answers),
            "solution": record.solution, "difficulty": record.difficulty,
        },
    }


def _schema(layout: str) -> Any:
    import pyarrow as pa

    if layout == "deepscaler":
        return pa.schema([
            ("id", pa.string()), ("problem", pa.string()), ("answer", pa.string()), ("answers", pa.list_(pa.string())),
            ("source", pa.string()), ("solution", pa.string()), ("difficulty", pa.float64()),
        ])
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    reward = pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
    extra = pa.struct([
        ("index", pa.int64()), ("split", pa.string()), ("id", pa.string()), ("answers", pa.list_(pa.string())),
        ("solution", pa.string()), ("difficulty", pa.float64()),
    ])
    return pa.schema([
        ("data_source", pa.string()), ("prompt", pa.list_(message)), ("ability", pa.string()),
        ("reward_model", reward), ("extra_info", extra),
    ])


class Writer:
    """Writes records to a .json, .jsonl or .parquet file (chosen by the suffix), in either layout.

    Rows go to `<path>.part`, renamed to `path` on `close()`: a failed run never leaves a file that
    looks complete. Use as a context manager; leaving it with an exception removes the part file.
    """

    def __init__(self, path: str | Path, layout: str = "deepscaler", split: str = "train") -> None:
        self.path = Path(path)
        if self.path.suffix not in SUFFIXES:
            raise ValueError(f"{self.path}: output must end in {', '.join(SUFFIXES)}")
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
        self.layout, self.split, self.count = layout, split, 0
        self._part = self.path.with_name(self.path.name + ".part")
        self._pending: list[dict[str, Any]] = []
        self._parquet = None
        if self.path.suffix != ".parquet":
            self._handle = self._part.open("w", encoding="utf-8")
            if self.path.suffix == ".json":
                self._handle.write("[")

    def write(self, record: Record) -> None:
        """Append one record."""
        row = to_row(record) if self.layout == "deepscaler" else to_verl(record, self.count, self.split)
        if self.path.suffix == ".parquet":
            self._pending.append(row)
            if len(self._pending) >= _BATCH:
                self._flush()
        elif self.path.suffix == ".jsonl":
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            self._handle.write(("\n" if not self.count else ",\n") + json.dumps(row, ensure_ascii=False))
        self.count += 1

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _schema(self.layout)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._part, schema)
        self._parquet.write_table(pa.Table.from_pylist(self._pending, schema=schema))
        self._pending = []

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self.path.suffix == ".parquet":
            if self._pending or self._parquet is None:
                self._flush()  # an empty output is still a valid file with the schema
            self._parquet.close()
        else:
            if self.path.suffix == ".json":
                self._handle.write("\n]\n")
            self._handle.close()
        os.replace(self._part, self.path)

    def abort(self) -> None:
        """Drop what was written."""
        if self._parquet is not None:
            self._parquet.close()
        elif self.path.suffix != ".parquet":
            self._handle.close()
        self._part.unlink(missing_ok=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def read_records(path: str | Path) -> Iterator[Record]:
    """The records of a file in either layout (detected per row); raises BadRow naming the row."""
    for number, row in open_rows(str(path)):
        if isinstance(row, Unparsable):
            raise BadRow(f"{path}: row {number}: {row.reason}")
        try:
            yield to_record(row, label(str(path)), number - 1)
        except BadRow as error:
            raise BadRow(f"{path}: row {number}: {error}") from None
