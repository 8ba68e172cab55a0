"""A corpus of broken input files, built here byte by byte, with the counts `data prepare` must give for each.

Whatever the damage, every row that can be found is either written or dropped with its file and row (1-based,
as a person counts lines), so rows read = rows written + rows dropped; a fault that hides the rest of a file is
named per input, and the command then exits 1.
"""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from deepscaler.data import Settings, prepare


def _row(i: int) -> dict:
    return {"problem": f"What is {i} + {i}?", "answer": str(2 * i)}


def _line(i: int) -> bytes:
    return json.dumps(_row(i)).encode() + b"\n"


def _parquet(path: Path, first: int, count: int) -> bytes:
    """A Parquet file of `count` rows in row groups of 3; returns its bytes."""
    pq.write_table(pa.Table.from_pylist([_row(first + i) for i in range(count)]), path, row_group_size=3,
                   compression="snappy")
    return path.read_bytes()


def _corpus(folder: Path) -> dict[str, tuple[int, dict[int, str], str | None]]:
    """Writes the files; for each: (rows it must count, {dropped row: start of the reason}, start of the fault)."""
    folder.mkdir()
    files = {}

    # One byte that is not UTF-8 costs its own line only (it used to cost the whole file, silently).
    (folder / "bad_byte.jsonl").write_bytes(_line(100) + b'{"problem": "caf\xe9?", "answer": "1"}\n' + _line(101))
    files["bad_byte.jsonl"] = (3, {2: "not valid UTF-8 (byte 0xe9 at column 17)"}, None)
    # Blank lines are no rows, but rows are named by their line; a write cut inside a multi-byte character.
    torn = json.dumps({"problem": "Ünïcode?", "answer": "3"}, ensure_ascii=False).encode()[:17]  # inside "ï"
    (folder / "torn.jsonl").write_bytes(b"\n" + _line(102) + b"\n\n" + b"{not json\n" + _line(103) + torn)
    files["torn.jsonl"] = (4, {5: "not valid JSON (Expecting property name",
                               7: "not valid UTF-8 (byte 0xc3 at column 17)"}, None)
    # Valid JSON whose text cannot be written as UTF-8, and an integer Python refuses to convert.
    (folder / "escapes.jsonl").write_bytes(b'{"problem": "x\\ud800", "answer": "1"}\n' + _line(104) +
                                           b'{"problem": "big", "answer": ' + b"9" * 5000 + b"}\n")
    files["escapes.jsonl"] = (3, {1: "`problem` is not valid UTF-8 text (character 2", 3: "not readable JSON"}, None)

    # A JSON array: a bad byte inside a string costs its row; rows that are not problems are dropped by name.
    (folder / "array.json").write_bytes(b'[{"problem": "caf\xe9?", "answer": "1"}, "text", {"answer": "5"}, ' +
                                        json.dumps(_row(105)).encode() + b", []]")
    files["array.json"] = (5, {1: "`problem` is not valid UTF-8 text (character 4", 2: "not an object but str",
                               3: "no problem text", 5: "not an object but list"}, None)
    # Cut mid-row: the rows before are read, the cut one is counted, what followed cannot be found.
    (folder / "cut.json").write_text(json.dumps([_row(106), _row(107), _row(108)])[:-30])
    files["cut.json"] = (3, {3: "not valid JSON"}, "stopped after 3 rows: invalid JSON in row 3")
    (folder / "empty.json").write_bytes(b"")
    files["empty.json"] = (0, {}, "stopped after 0 rows: expected a JSON array of objects, found nothing")
    (folder / "object.json").write_text(json.dumps(_row(109)))
    files["object.json"] = (0, {}, "stopped after 0 rows: expected a JSON array of objects, found '{'")
    (folder / "no_bracket.json").write_text(json.dumps([_row(110)])[:-1])
    files["no_bracket.json"] = (1, {}, "stopped after 1 rows: the array ends after row 1 without its closing ']'")

    # Parquet: a row group whose bytes are zeroed is counted row by row from the footer; the others are read.
    data = bytearray(_parquet(folder / "group.parquet", 111, 6))
    chunk = pq.ParquetFile(folder / "group.parquet").metadata.row_group(0).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data[start : start + chunk.total_compressed_size] = bytes(chunk.total_compressed_size)
    (folder / "group.parquet").write_bytes(bytes(data))
    files["group.parquet"] = (6, {n: "Parquet row group 0 cannot be decoded" for n in (1, 2, 3)}, None)
    # Without its footer no row can be found, nor counted: the input is named as unreadable instead.
    whole = _parquet(folder / "cut.parquet", 117, 6)
    (folder / "cut.parquet").write_bytes(whole[: len(whole) // 2])
    files["cut.parquet"] = (0, {}, "stopped after 0 rows: not a readable Parquet file")
    (folder / "empty.parquet").write_bytes(b"")
    files["empty.parquet"] = (0, {}, "stopped after 0 rows: not a readable Parquet file")
    return files


def test_every_row_of_a_broken_file_is_written_or_dropped_by_name(tmp_path):
    files = _corpus(tmp_path / "in")
    out = tmp_path / "train.jsonl"
    report = prepare([str(tmp_path / "in")], out, Settings(decontaminate=(), near_threshold=None, examples=100))
    inputs = {Path(item["input"]).name: item for item in report.inputs}
    assert set(inputs) == set(files)
    dropped = {(Path(e.file).name, e.row): e.reason for step in report.steps.values() for e in step.examples}
    for name, (rows, bad_rows, fault) in files.items():
        assert inputs[name]["rows"] == rows, name
        assert {row: dropped[(file, row)] for file, row in dropped if file == name}.keys() == bad_rows.keys(), name
        for row, reason in bad_rows.items():
            assert dropped[(name, row)].startswith(reason), (name, row, dropped[(name, row)])
        assert (inputs[name]["error"] or "").startswith(fault or ""), (name, inputs[name]["error"])
        assert (inputs[name]["error"] is None) == (fault is None), name
    assert report.rows_read == sum(rows for rows, _, _ in files.values()) == 25
    assert report.rows_read == report.rows_written + sum(step.dropped for step in report.steps.values())
    assert report.rows_written == 25 - sum(len(bad) for _, bad, _ in files.values()) == 12
    assert len(out.read_text().splitlines()) == 12


def test_the_command_counts_and_names_broken_inputs_and_exits_1(tmp_path):
    _corpus(tmp_path / "in")
    done = subprocess.run([sys.executable, "-m", "deepscaler.cli", "data", "prepare", "in", "--out", "train.jsonl",
                           "--decontaminate", "none", "--no-near-dedup", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "12 of 25 rows written to train.jsonl (13 dropped)" in done.stdout
    warnings = done.stderr.splitlines()
    assert len(warnings) == 6 and all(line.startswith("warning: in/") for line in warnings)
    assert "Traceback" not in done.stderr
    report = json.loads((tmp_path / "train.report.json").read_text())
    assert report["rows_read"] == report["rows_written"] + sum(step["dropped"] for step in report["steps"]) == 25

    # `convert` keeps what it can read of a cut file too, and says what it could not.
    done = subprocess.run([sys.executable, "-m", "deepscaler.cli", "data", "convert", "in/cut.json", "--out",
                           "cut.jsonl"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == "2 rows written to cut.jsonl; 1 bad rows skipped\n"
    assert done.stderr.splitlines() == [
        "skipped in/cut.json row 3: not valid JSON (Unterminated string starting at)",
        "warning: in/cut.json: invalid JSON in row 3: the rows after it cannot be found"]
