"""Files written whole or not at all, and the digest of a file's bytes.

A reader of a file written here finds its old content or its new, never a part: the content goes to the
sibling `<name>.tmp`, is flushed to disk, and is renamed over the target (a rename within one folder is atomic
on POSIX file systems), and the folder is flushed so that the rename survives a power cut too. A crash leaves
at most the `.tmp` file, which the next write of that path starts afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20  # hashing reads 1 MiB at a time: any file size in bounded memory


@contextlib.contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """Yields an empty temporary path to write `path`'s new content to; when the block ends without an
    exception the content replaces `path` in one step, else the temporary file is removed and `path` is as it
    was."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)  # left by a crashed write: callers may append to what they are given
    try:
        yield temporary
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path`'s content with `text` (UTF-8) in one step."""
    with replaced_atomically(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path`'s content with `data` as indented JSON (non-ASCII kept as is) in one step."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def sha256_file(path: Path) -> str:
    """The SHA-256 of the file's bytes, as hex digits (what `sha256sum` prints)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems cannot sync a folder; the rename is done anyway
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
