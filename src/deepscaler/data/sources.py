"""Inputs read as streams of rows: JSON arrays, JSON lines, Parquet files and Hugging Face datasets.

Every reader yields `(number, row)` one row at a time, so a file of any size is read in bounded memory
(a JSON array too: it is decoded object by object). `number` is the row as a person counts it: 1-based, and
in a JSONL file the line number. A row that cannot be read (a JSON line that does not parse or is not UTF-8,
a Parquet row group that will not decode) is yielded as `Unparsable`, so that it is counted as a bad row and
the next one is still read. Only where the rows after a fault cannot even be found (a JSON array broken
mid-way, a Parquet file without its footer, a stream cut off) does a reader raise `SourceError`, after the
rows before the fault.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIXES = (".json", ".jsonl", ".parquet")
HF_PREFIX = "hf:"
_CHUNK = 1 << 20
_MAX_ROW_CHARS = 64 << 20  # past this, an element that will not decode is taken as corrupt, not as large


class SourceError(Exception):
    """An input that cannot be read, at all or past some row; the message is one line."""


class SourceUnavailable(SourceError):
    """An input that cannot even be opened (no such file, unknown format, offline): bad usage, not bad data."""


@dataclass(frozen=True)
class Unparsable:
    """A row that is not valid JSON, with the decoder's complaint."""

    reason: str


def expand(specs: list[str]) -> list[str]:
    """Inputs as given, with each directory replaced by its data files (sorted, so runs are repeatable)."""
    expanded = []
    for spec in specs:
        path = Path(spec)
        if spec.startswith(HF_PREFIX):
            expanded.append(spec)
        elif path.is_dir():
            files = sorted(str(p) for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
            if not files:
                raise SourceUnavailable(f"{spec}: no {', '.join(SUFFIXES)} files in this directory")
            expanded.extend(files)
        elif not path.exists():
            raise SourceUnavailable(f"{spec}: no such file")
        elif path.suffix not in SUFFIXES:
            raise SourceUnavailable(f"{spec}: unknown format (expected {', '.join(SUFFIXES)} or hf:owner/name)")
        else:
            expanded.append(spec)
    return expanded


def label(spec: str) -> str:
    """The default `source` of the rows of an input: the file's stem, or the dataset's name."""
    if spec.startswith(HF_PREFIX):
        return spec[len(HF_PREFIX) :].split(":")[0]
    return Path(spec).stem


def open_rows(spec: str) -> Iterator[tuple[int, Any]]:
    """The rows of one input, read lazily; raises SourceUnavailable now when the input cannot be opened."""
    if spec.startswith(HF_PREFIX):
        return _hf_rows(spec)
    path = Path(spec)
    if path.suffix == ".jsonl":
        return _jsonl_rows(path)
    if path.suffix == ".parquet":
        return _parquet_rows(path)
    return _json_array_rows(path)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Line by line, each decoded on its own: one bad byte costs its line, not the file."""
    number = 0
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark some editors write
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    yield number, Unparsable(f"not valid UTF-8 (byte 0x{raw[error.start]:02x} at column "
                                             f"{error.start + 1})")
                    continue
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as error:
                    yield number, Unparsable(f"not valid JSON ({error.msg}, column {error.colno})")
                except ValueError as error:  # an integer past Python's 4,300-digit conversion limit
                    yield number, Unparsable(f"not readable JSON ({_one_line(error)})")
    except OSError as error:
        raise SourceError(f"cannot read past line {number} ({_one_line(error)})") from None


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SourceUnavailable(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    return _parquet_groups(pq, path)


def _parquet_groups(pq: Any, path: Path) -> Iterator[tuple[int, Any]]:
    """Row group by row group: the footer says how many rows each holds, so a group that will not decode
    is still counted, row by row, as unreadable."""
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise SourceError(f"not a readable Parquet file, no row can be found ({_one_line(error)})") from None
    before = 0
    for group in range(parquet.num_row_groups):
        size, done = parquet.metadata.row_group(group).num_rows, 0
        try:
            for batch in parquet.iter_batches(batch_size=2048, row_groups=[group]):
                for row in batch.to_pylist():
                    done += 1
                    yield before + done, row
        except (OSError, ValueError) as error:
            reason = f"Parquet row group {group} cannot be decoded ({_one_line(error)})"
            for number in range(before + done + 1, before + size + 1):
                yield number, Unparsable(reason)
        before += size


def _json_array_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Decode a JSON array one element at a time; the buffer holds one chunk plus the current element.

    Bytes that are not UTF-8 are kept as lone surrogates (surrogateescape): inside a string they make only
    that row bad (`to_record` refuses such text), where a strict decode would lose the rest of the file."""
    decoder = json.JSONDecoder()
    try:
        handle = path.open(encoding="utf-8-sig", errors="surrogateescape")
    except OSError as error:
        raise SourceError(f"cannot read ({_one_line(error)})") from None
    with handle:
        buffer, position, at_end = "", 0, False

        def fill() -> None:
            nonlocal buffer, position, at_end
            chunk = handle.read(max(_CHUNK, len(buffer)))  # doubling keeps a huge element linear
            at_end = not chunk
            buffer, position = buffer[position:] + chunk, 0

        def next_char() -> str:
            nonlocal position
            while True:
                while position < len(buffer) and buffer[position].isspace():
                    position += 1
                if position < len(buffer) or at_end:
                    return buffer[position] if position < len(buffer) else ""
                fill()

        try:
            first = next_char()
            if first != "[":
                found = repr(first) if first else "nothing"
                raise SourceError(f"expected a JSON array of objects, found {found}: no row can be found")
            position += 1
            number = 0
            while True:
                char = next_char()
                if char == "]":
                    return
                if not char:
                    raise SourceError(f"the array ends after row {number} without its closing ']'")
                if number and char != ",":
                    raise SourceError(f"invalid JSON after row {number} (expected ',' or ']'): the rows "
                                      "after it cannot be found")
                if number:
                    position += 1
                    if not next_char():
                        raise SourceError(f"the array ends after row {number} without its closing ']'")
                number += 1
                while True:
                    try:
                        row, end = decoder.raw_decode(buffer, position)
                        if end < len(buffer) or at_end:
                            break  # a value ending at the buffer's end may be a cut-off number
                    except ValueError as error:  # JSONDecodeError, or an integer past the digit limit
                        syntax = isinstance(error, json.JSONDecodeError)
                        if not syntax or at_end or len(buffer) - position > _MAX_ROW_CHARS:
                            yield number, Unparsable(f"not valid JSON ({error.msg if syntax else _one_line(error)})")
                            raise SourceError(f"invalid JSON in row {number}: the rows after it cannot be "
                                              "found") from None
                    fill()
                position = end
                yield number, row
        except OSError as error:
            raise SourceError(f"cannot read ({_one_line(error)})") from None


def _hf_rows(spec: str) -> Iterator[tuple[int, Any]]:
    """`hf:owner/name`, `hf:owner/name:split` or `hf:owner/name:config:split`, streamed (split: train)."""
    parts = spec[len(HF_PREFIX) :].split(":")
    if not parts[0] or len(parts) > 3:
        raise SourceUnavailable(f"{spec}: expected hf:owner/name[:split] or hf:owner/name:config:split")
    name, config, split = parts[0], parts[1] if len(parts) == 3 else None, parts[-1] if len(parts) > 1 else "train"
    try:
        import datasets  # optional and heavy: only Hugging Face inputs need it
    except ImportError:
        message = f"{spec}: reading Hugging Face datasets needs `datasets` (pip install datasets)"
        raise SourceUnavailable(message) from None
    try:
        dataset = datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as error:  # offline, unknown name, bad split: the library raises many kinds
        raise SourceUnavailable(f"{spec}: cannot load ({_one_line(error)}); offline, or a wrong name?") from None
    return _hf_iterate(dataset, spec)


def _hf_iterate(dataset: Any, spec: str) -> Iterator[tuple[int, Any]]:
    number = 0
    try:
        for row in dataset:
            number += 1
            yield number, row
    except Exception as error:  # a stream can break on the network at any row
        raise SourceError(f"cannot read past row {number} ({_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__
