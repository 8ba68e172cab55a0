"""A model's weights in one shared file mapping, so that several processes decode on one copy.

Every process's model views the same memory: a weight update written by one process is at once every
other's too, and nothing is copied per update.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import weakref

import torch


class SharedWeights:
    """A model's weights (LeanCausalLM.tensors()) moved into one memory-mapped file that other processes map too.

    The file is deleted once every worker has mapped it (`unlink`); the mappings outlive it.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        dtype = next(iter(tensors.values())).dtype
        if any(t.dtype != dtype for t in tensors.values()):
            raise ValueError("shared weights must all have one dtype")
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        handle, self.path = tempfile.mkstemp(prefix="deepscaler-weights-", dir=folder)
        os.close(handle)
        self.dtype = dtype
        self.layout: list[tuple[str, int, tuple[int, ...]]] = []
        offset = 0
        for name, tensor in tensors.items():
            self.layout.append((name, offset, tuple(tensor.shape)))
            offset += tensor.numel()
        self.size = offset
        self.views = self.map(self.path, self.layout, self.size, dtype)
        for name, tensor in tensors.items():
            self.views[name].copy_(tensor)
        # Deleted at the latest when this object is collected or the interpreter exits.
        self._finalizer = weakref.finalize(self, _remove, self.path)

    @staticmethod
    def map(path: str, layout, size: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        flat = torch.from_file(path, shared=True, size=size, dtype=dtype)
        return {name: flat[offset : offset + math.prod(shape)].view(shape) for name, offset, shape in layout}

    @property
    def address(self) -> tuple[str, list[tuple[str, int, tuple[int, ...]]], int, torch.dtype]:
        """What another process passes to `map` to view these weights."""
        return self.path, self.layout, self.size, self.dtype

    @property
    def linked(self) -> bool:
        """Whether new processes can still map the weights."""
        return self._finalizer.alive

    def unlink(self) -> None:
        self._finalizer()


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
