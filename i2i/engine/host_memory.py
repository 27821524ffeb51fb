"""Keeping freed host memory for reuse, so CPU training does not page-fault its buffers back in.

Every CPU training step allocates and frees the same large buffers: activations, gradients and
oneDNN's reordered copies of the weights (a 1024->512 4x4 kernel is 32 MB). glibc's malloc
serves blocks above its mmap threshold (at most 32 MB) with fresh ``mmap`` pages and returns
them to the system on ``free``, and trims the heap top above 128 kB, so the next step takes a
page fault for every 4 kB of those buffers again. On the project's 2-core machine that was
about a sixth of a pix2pix ``unet_256`` step (``benchmarks/RESULTS.md``).

``keep_freed_memory`` tells glibc to serve every block from its heap and never to give freed
memory back, so steady-state steps reuse pages that are already mapped. The process's peak
memory stays what it was (it is set by the largest step, which mapped those pages anyway);
what changes is that memory freed after the peak is not returned until the process ends.

It is a process-wide setting, so the engine applies it only where it pays: CPU training
(``Trainer``). Inference frees far less per batch (no gradients, no optimiser) and measured no
faster with it. ``I2I_KEEP_FREED_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV_VARIABLE = "I2I_KEEP_FREED_MEMORY"

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied = False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse; returns whether the setting is in force.

    A no-op returning False off Linux, with a C library other than glibc, or when
    ``I2I_KEEP_FREED_MEMORY=0``. Safe to call more than once.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(ENV_VARIABLE, "1").strip() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only (musl has a no-op mallopt)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    del gnu_get_libc_version
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # Trim the heap top only when more than 2 GB (the largest value mallopt takes) lie free
    # there, and serve every block from the heap rather than from mmap.
    _applied = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and mallopt(_M_MMAP_MAX, 0) == 1
    return _applied
