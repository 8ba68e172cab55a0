"""Atomic writes and file digests (deepscaler.files), on real files."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from deepscaler.files import replaced_atomically, sha256_file, write_json_atomic, write_text_atomic


def test_json_round_trips_with_text_as_written(tmp_path) -> None:
    path = tmp_path / "summary.json"
    data = {"name": "équation ∑", "values": [1, 2.5, None]}
    write_json_atomic(path, data)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == data
    assert "équation ∑" in text and text.endswith("}\n") and '\n  "values"' in text
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left


def test_a_write_replaces_the_old_content(tmp_path) -> None:
    path = tmp_path / "latest"
    write_text_atomic(path, "step_000001")
    write_text_atomic(path, "step_02")
    assert path.read_text() == "step_02"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"), replaced_atomically(path) as temporary:
        temporary.write_text("half of the ne")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_temporary_left_by_a_crash_is_not_appended_to(tmp_path) -> None:
    path = tmp_path / "samples.jsonl"
    (tmp_path / "samples.jsonl.tmp").write_text('{"torn": ')
    with replaced_atomically(path) as temporary, temporary.open("a") as handle:
        handle.write('{"kept": 1}\n')
    assert path.read_text() == '{"kept": 1}\n'
    assert not (tmp_path / "samples.jsonl.tmp").exists()


def test_sha256_matches_known_digests_across_read_chunks(tmp_path) -> None:
    small = tmp_path / "abc"
    small.write_bytes(b"abc")
    assert sha256_file(small) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    large = tmp_path / "large.bin"
    content = bytes(range(256)) * (3 * 4096) + b"tail!"  # 3 MiB and 5 bytes: the last read is a short one
    large.write_bytes(content)
    assert sha256_file(large) == hashlib.sha256(content).hexdigest()
    printed = subprocess.run(["sha256sum", str(large)], capture_output=True, text=True, check=True).stdout
    assert sha256_file(large) == printed.split()[0]
