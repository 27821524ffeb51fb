"""Keeping freed host memory for reuse while training on the CPU, so steps do not page-fault.

Every CPU training step allocates and frees the same large buffers: activations, gradients and
oneDNN's reordered copies of the weights (a 1024->512 4x4 kernel is 32 MB). glibc's malloc
serves blocks above its mmap threshold (at most 32 MB) with fresh ``mmap`` pages, returns them
to the system on ``free`` and trims the heap top above 128 kB, so the next step takes a page
fault for every 4 kB of those buffers again: about a sixth of a pix2pix ``unet_256`` step on
the project's 2-core machine (``benchmarks/RESULTS.md``).

Inside ``freed_memory_kept()`` glibc serves every block from its heap and never gives freed
memory back, so steady-state steps reuse pages that are already mapped; on leaving, glibc's
defaults (or the ``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` the process started with)
come back and the free pages are returned (``malloc_trim``). It is a process-wide
setting, so the engine holds it only around CPU training loops (``Trainer.fit``); inference
frees far less per batch and measured no faster with it. ``I2I_KEEP_FREED_MEMORY=0`` turns it
off.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator

from ..errors import switched_on

ENV_VARIABLE = "I2I_KEEP_FREED_MEMORY"

# mallopt parameters and glibc's defaults for them, from <malloc.h> and mallopt(3)
_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD = -1, 128 * 1024
_M_MMAP_MAX, _DEFAULT_MMAP_MAX = -4, 65536

_depth = 0  # nesting of freed_memory_kept() (trainers may run inside trainers' callbacks)


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (musl and others have no-op or missing mallopt)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into Python: no ldconfig subprocess
        libc.gnu_get_libc_version, libc.mallopt, libc.malloc_trim  # noqa: B018 (AttributeError if absent)
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def _setting(variable: str, default: int) -> int:
    """What glibc started with: its environment variable (a program may tune malloc), else its default."""
    try:
        return int(os.environ.get(variable, default))
    except ValueError:
        return default


def _enabled() -> bool:
    return switched_on(ENV_VARIABLE, default=True)


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """Within the block, glibc's malloc keeps freed memory for reuse; yields whether it does.

    A no-op yielding False off Linux, with a C library other than glibc, or when
    ``I2I_KEEP_FREED_MEMORY=0``. Nested blocks keep the setting until the outermost ends.
    """
    global _depth
    libc = _glibc() if _enabled() else None
    if libc is None:
        yield False
        return
    if _depth == 0:
        # Trim the heap top only when more than 2 GB (the largest value mallopt takes) lie free
        # there, and serve every block from the heap rather than from mmap.
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        libc.mallopt(_M_MMAP_MAX, 0)
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, _setting("MALLOC_MMAP_MAX_", _DEFAULT_MMAP_MAX))
            libc.mallopt(_M_TRIM_THRESHOLD, _setting("MALLOC_TRIM_THRESHOLD_", _DEFAULT_TRIM_THRESHOLD))
            libc.malloc_trim(0)
