"""One process trains a run folder at a time.

A second ``i2i run --resume`` of a run that is still training would prune the first one's
half-written checkpoint and rewrite its ``metrics.jsonl`` under it, leaving a folder that mixes
two histories. The training process holds an advisory lock (``flock``) on the run folder
itself, so no lock file is left behind, and the kernel releases it when the process ends, even
when it is killed. Where locks are not available (Windows, some network file systems) the check
is left out.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError


#: run folders this process holds the lock of (a second lock from another thread of it is
#: refused as one from another process would be, but said differently)
_held_here: set[str] = set()


@contextlib.contextmanager
def run_folder_locked(run_dir: Path) -> Iterator[None]:
    """Hold the lock on ``run_dir`` for the block; a :class:`UserError` if another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    try:
        fd = os.open(run_dir, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        key = os.path.realpath(run_dir)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if key in _held_here:
                raise UserError(f"{run_dir}: this process is training this run already (in another thread, or a "
                                "callback of that training called this); wait for that training to end, then resume"
                                ) from None
            raise UserError(f"{run_dir}: another i2i process is training this run now; wait for it to end (or stop it "
                            "with Ctrl-C there, which saves a checkpoint), then resume") from None
        except OSError:  # a file system without locks: no check
            pass
        _held_here.add(key)
        try:
            yield
        finally:
            _held_here.discard(key)
    finally:
        os.close(fd)
