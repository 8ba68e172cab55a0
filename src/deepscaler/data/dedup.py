"""Duplicate problems: exact (same normal form) and near (MinHash LSH over word shingles).

Rows are checked in input order and the first occurrence is kept, so which copy survives depends only on
the order of the inputs. Near duplicates are found by LSH and then confirmed by the MinHash estimate of
their Jaccard similarity, so a band collision alone never drops a row.
"""

from __future__ import annotations

import hashlib
import zlib
from array import array
from collections.abc import Callable
from typing import Any

import numpy as np

from deepscaler.data.text import fingerprint

_CHUNK_ROWS = 1 << 13


class ExactDuplicates:
    """Remembers each normal form seen (16 bytes each); a later row with the same one is a duplicate."""

    def __init__(self) -> None:
        self._first: dict[bytes, int] = {}

    def check(self, normal: str, key: int) -> int | None:
        """The key of the earlier row with the same normal form (`text.normal_form`), or None (then it is kept)."""
        digest = fingerprint(normal)
        earlier = self._first.get(digest)
        if earlier is None:
            self._first[digest] = key
        return earlier


def _band_key(band: bytes) -> bytes:
    return hashlib.blake2b(band, digest_size=8).digest()


def shingles(words: list[str], size: int) -> set[str]:
    """Overlapping runs of `size` tokens; a problem shorter than that is one shingle."""
    size = max(1, min(size, len(words)))
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


class NearDuplicates:
    """MinHash LSH index (datasketch's `MinHashLSH`) of the rows kept so far.

    Memory per kept row is about 2.3 kB: datasketch's band buckets (a set each, about 1.4 kB for the 5 bands
    of the default 0.9 / 128), the signature kept to confirm candidates (512 bytes) and the key lists; so
    300,000 rows take about 0.7 GB.
    """

    def __init__(self, threshold: float = 0.9, shingle: int = 3, num_perm: int = 128, seed: int = 0) -> None:
        from datasketch import MinHash  # imported here: only this step needs it (and SciPy)

        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        if shingle < 1:
            raise ValueError(f"shingle size must be at least 1, got {shingle}")
        self.threshold, self.shingle, self.num_perm, self.seed = threshold, shingle, num_perm, seed
        self._minhash = MinHash
        # CRC-32 hashes shingles ten times faster than the default SHA-1; the affine32 scheme mixes its output
        # (MurmurHash3's finaliser) before permuting, which is all MinHash needs of it.
        self._permutations = MinHash(num_perm=num_perm, seed=seed).permutations  # built once, shared by all
        self._lsh = self.index(threshold, num_perm)
        self._chunks: list[np.ndarray] = []
        self._keys = array("q")  # slot -> the caller's key
        self.rejected = 0  # rows similar enough to an earlier one, kept because `accept` said no

    @staticmethod
    def index(threshold: float, num_perm: int) -> Any:
        """An empty `MinHashLSH`; ValueError when the threshold leaves it fewer than two bands."""
        from datasketch import MinHashLSH

        try:
            # Bands are keyed by an 8-byte digest instead of their raw 100 bytes: 460 bytes less per row.
            return MinHashLSH(threshold=threshold, num_perm=num_perm, hashfunc=_band_key)
        except ValueError:
            raise ValueError(f"a near-duplicate threshold of {threshold} needs more than {num_perm} MinHash "
                             "permutations (raise num_perm or lower the threshold)") from None

    def signature(self, words: list[str]) -> Any:
        """The `datasketch.MinHash` of the token shingles (its `hashvalues`: num_perm uint32 values)."""
        sketch = self._minhash(num_perm=self.num_perm, seed=self.seed, permutations=self._permutations,
                               scheme="affine32", hashfunc=zlib.crc32)
        sketch.update_batch(item.encode("utf-8") for item in shingles(words, self.shingle))
        return sketch

    def check(
        self, words: list[str], key: int, accept: Callable[[int], bool] | None = None
    ) -> tuple[int, float] | None:
        """(key of the earliest kept row this one nearly duplicates, estimated Jaccard), or None.

        `accept(earlier_key)`, when given, must also confirm a match (the pipeline checks that the answers
        agree). None means the row is new: it is then indexed under `key`. Rows without tokens are never
        matched (the exact step still compares them).
        """
        if not words:
            return None
        sketch = self.signature(words)
        values = sketch.hashvalues
        similar = []
        for slot in self._lsh.query(sketch):
            similarity = float(np.count_nonzero(self._stored(slot) == values)) / self.num_perm
            if similarity >= self.threshold:
                similar.append((slot, similarity))
        for slot, similarity in sorted(similar):
            if accept is None or accept(self._keys[slot]):
                return self._keys[slot], similarity
        self.rejected += bool(similar)
        slot = len(self._keys)
        if slot % _CHUNK_ROWS == 0:
            self._chunks.append(np.empty((_CHUNK_ROWS, self.num_perm), dtype=values.dtype))
        self._chunks[-1][slot % _CHUNK_ROWS] = values
        self._keys.append(key)
        self._lsh.insert(slot, sketch, check_duplication=False)
        return None

    def _stored(self, slot: int) -> np.ndarray:
        return self._chunks[slot // _CHUNK_ROWS][slot % _CHUNK_ROWS]
