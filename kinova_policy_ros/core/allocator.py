"""
Heap settings for a process that allocates and frees large tensors at a steady rate (training).

glibc's ``malloc`` serves a block above its *mmap threshold* (128 KiB at start, raised
dynamically up to 32 MiB) with fresh pages from the kernel and gives them back on ``free``; it
also gives back free memory at the top of the heap beyond its *trim threshold* (128 KiB). A
training step of the demo recipe allocates and frees ~100 MB of activations (a 176-frame batch
of 32×24×32 feature maps alone is 17 MB per tensor), so every step the kernel maps and zero-fills
those pages again: page faults, time in the kernel instead of in the convolutions. Keeping freed
memory in the heap (the mmap threshold at its maximum, the trim threshold high) removes that;
``bench/bench_allocator.py`` measures the effect on a training step (docs/benchmarks.md).

The settings are process-wide and cannot be undone (setting the mmap threshold turns off its
dynamic adjustment). On a C library other than glibc nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's largest accepted mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2).
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory the heap keeps before it returns some to the kernel.
DEFAULT_TRIM_THRESHOLD = 1024 * 1024 * 1024


def _glibc() -> ctypes.CDLL | None:
    """Return the process's C library when it is glibc on Linux, else None."""
    if not sys.platform.startswith('linux'):
        return None
    name = ctypes.util.find_library('c')
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory(
    trim_threshold: int = DEFAULT_TRIM_THRESHOLD, mmap_threshold: int = MAX_MMAP_THRESHOLD
) -> bool:
    """
    Keep freed memory in the heap for reuse instead of returning it to the kernel (glibc).

    :param trim_threshold: bytes of free memory the heap may keep at its top.
    :param mmap_threshold: blocks at least this large still get their own mapping, in
        (0, :data:`MAX_MMAP_THRESHOLD`].
    :return: True when both settings were applied, False on another C library (nothing changed).
    :raises ValueError: a threshold out of range, naming it.
    """
    if trim_threshold <= 0:
        raise ValueError(f'trim_threshold must be > 0 bytes, got {trim_threshold}')
    if not 0 < mmap_threshold <= MAX_MMAP_THRESHOLD:
        raise ValueError(
            f'mmap_threshold must be in (0, {MAX_MMAP_THRESHOLD}] bytes, got {mmap_threshold}'
        )
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    trim = min(trim_threshold, 2**31 - 1)  # mallopt takes an int
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, trim)
    )
