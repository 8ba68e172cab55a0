"""What this machine's CPU can do natively, where it decides how to compute."""

from __future__ import annotations

from pathlib import Path


def has_native_bf16(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's text names a bfloat16 instruction set (AVX512-BF16 or AMX-BF16)."""
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def cpu_has_native_bf16() -> bool:
    """Without it, torch emulates bfloat16 products: autocast then runs many times slower than float32."""
    try:
        return has_native_bf16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False
