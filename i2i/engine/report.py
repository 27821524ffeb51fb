"""What the user sees during a run: progress, metrics.jsonl, TensorBoard, sample grids."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..messages import is_terminal, say


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (flushed, so a killed process keeps
    it; fsynced before each checkpoint, see :meth:`sync`).

    ``resumed_at``: the step of the checkpoint a resumed run continues from. Records of later
    steps were written after that checkpoint by a run that was then killed; the resumed run
    writes those steps again, so they are dropped first (as is a line cut short by the kill),
    and the file reads as that of an uninterrupted run.
    """

    def __init__(self, path: Path, resumed_at: int | None = None) -> None:
        self.path = path
        if resumed_at is not None and path.is_file():
            _drop_records_after(path, resumed_at)
        # unbuffered bytes: a line the disk could not take whole is cut back off (see write)
        self.handle = open(path, "ab", buffering=0)
        self._size = os.fstat(self.handle.fileno()).st_size

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, allow_nan=True) + "\n").encode()
        left = memoryview(data)
        try:
            while left:  # an unbuffered write may take part of it
                left = left[self.handle.write(left):]
        except OSError as exc:  # a full disk: the error names the file (a write error carries no name)
            try:  # no half line left behind: a run with no checkpoint yet is never resumed to drop it
                os.truncate(self.path, self._size)
            except OSError:
                pass
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
        self._size += len(data)

    def sync(self) -> None:
        """Make the lines written so far durable (fsync). Called before each checkpoint, so a
        checkpoint that survives a power cut or a file-system failure never outlives the records
        of the steps it holds; a kill of the process alone loses nothing flushed."""
        try:
            os.fsync(self.handle.fileno())
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError as exc:  # what a failed write left in the buffer fails again: name the file here too
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc


def _drop_records_after(path: Path, step: int) -> None:
    """Rewrite ``metrics.jsonl`` (atomically) without records of steps after ``step`` and
    without a last line that was cut short."""
    from .checkpoint import write_atomic

    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")[:-1]  # whatever follows the last newline is an unfinished line
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    damaged = [line for line in lines if line.strip() and _step_of(line) is None]
    if damaged:  # complete lines i2i cannot read (edited by hand, say): set aside, not deleted unsaid
        aside = path.with_name(path.name + ".unreadable")
        with open(aside, "a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in damaged))
        say(f"i2i: note: {path}: {len(damaged)} unreadable line(s) moved to {aside}")
    if len(kept) != len(lines) or not text.endswith("\n") and text:
        write_atomic(path, "".join(line + "\n" for line in kept).encode("utf-8"))


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, TypeError, KeyError):
        return None


class TensorBoard:
    """TensorBoard scalars when ``tensorboard`` is installed (the ``[tensorboard]`` extra).
    ``enabled``: ``output.tensorboard``; ``"auto"`` skips quietly without the package, ``True``
    says so (a user who asked for TensorBoard found no events and no word why)."""

    def __init__(self, run_dir: Path, enabled: bool | str, resumed_at: int | None = None) -> None:
        self.writer = None
        if enabled is False:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed
            if enabled is True:
                from ..messages import say

                say("i2i: note: output.tensorboard = true, but the tensorboard package is not installed, so no "
                    "TensorBoard events are written (pip install 'i2i[tensorboard]'; metrics.jsonl holds the same "
                    "numbers)")
            return
        # a resumed run hides the events a killed run wrote after its checkpoint (it logs them again)
        purge = resumed_at + 1 if resumed_at is not None else None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def format_values(values: dict[str, float], limit: int = 6) -> str:
    """``g_l1 0.123  d_gan 0.69``: the first ``limit`` values, short enough for one log line."""
    shown = list(values.items())[:limit]
    return "  ".join(f"{k} {v:.4g}" for k, v in shown)


def format_duration(seconds: float) -> str:
    """``1h05m``, ``3m07s``, ``42s``: an ETA at the precision that matters."""
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """A tqdm bar on a terminal, plain log lines otherwise (``output.progress``)."""

    def __init__(self, mode: str, total: int, start: int, enabled: bool = True) -> None:
        if mode == "auto":
            mode = "bar" if is_terminal(sys.stdout) else "plain"
        if mode == "bar" and sys.stderr is None:  # tqdm draws on stderr: none (pythonw, a service), no bar
            mode = "plain"
        self.mode = mode if enabled else "none"
        self.total = total
        self.last_step, self.last_time = start, time.perf_counter()  # the previous line's: its rate is the recent one
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

    def update(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(format_values(values, 4), refresh=False)
            self.bar.update(step - self.bar.n)
        elif self.mode == "plain":  # the rate since the previous line (an average since the start hid slow-downs)
            now = time.perf_counter()
            elapsed = now - self.last_time
            rate = (step - self.last_step) / elapsed if elapsed > 0 else 0.0
            self.last_step, self.last_time = step, now
            eta = (self.total - step) / rate if rate > 0 else 0.0
            print(f"step {step}/{self.total}  {rate:.2f} it/s  ETA {format_duration(eta)}  {format_values(values)}", flush=True)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        elif self.mode != "none":
            print(text, flush=True)

    def warn(self, text: str) -> None:
        """A warning on stderr, whatever the mode (``--quiet`` keeps warnings), above the bar."""
        say(text, above=self.bar)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def save_grid(path: Path, columns: list[torch.Tensor]) -> None:
    """Save rows of (input | output | target) images, each column a batch in [0, 1]."""
    from torchvision.utils import make_grid, save_image

    columns = [c.detach().float().cpu().clamp(0, 1) for c in columns]
    columns = [c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c for c in columns]
    rows = torch.stack(columns, dim=1).flatten(0, 1)  # image i's columns side by side
    grid = make_grid(rows, nrow=len(columns), padding=2, pad_value=1.0)
    path.parent.mkdir(exist_ok=True)  # not the run folder itself: one moved away mid-run is not made again
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_image(grid, tmp, format="png")
        tmp.replace(path)
    except OSError as exc:  # a full disk: Pillow's error names no file
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
