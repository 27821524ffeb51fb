"""Training on fewer CPU threads while other programs keep the cores busy (``train.threads``).

torch runs its CPU kernels on an OpenMP pool, one thread per core, whose threads spin while
they wait for each other. When another program keeps one of those cores busy, every parallel
region waits for the thread that lost its core, and the whole step slows down several times:
on the project's 2-core machine a 30-step gray2color run took 32.7 s beside a test suite
busy on one core, against 7.6 s on one thread (and 6.5 s on two with nothing else running).

:class:`ThreadGovernor` reads, every few seconds of training, how much of the CPUs this process
may run on the rest of the machine used (``/proc/stat`` for those CPUs, minus this process's own
CPU time), and gives torch the cores left over: never more than torch's own count, never fewer
than one. It only reads counters, so it costs no step time. It does nothing where it cannot see
the machine's load (outside Linux), when ``OMP_NUM_THREADS`` was set (the user or a launcher
chose), or when the recipe fixes ``train.threads``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: seconds of training between two looks at the machine's load
INTERVAL_S = 5.0
#: the first look comes sooner, so a run on a busy machine does not spend its first seconds slow
FIRST_INTERVAL_S = 2.0
#: a core counts as taken once others use this much of it: spinning threads suffer long before 100 %
TAKEN_FRACTION = 0.5


@dataclass(frozen=True)
class CpuSample:
    """Busy seconds of the watched CPUs (all programs) and of this process, at a moment."""

    busy_s: float
    own_s: float
    at_s: float


def omp_threads_fixed() -> bool:
    """Whether ``OMP_NUM_THREADS`` fixes torch's thread count: a whole number above 0 (OpenMP
    ignores another value, ``abc`` or ``0``, with its own warning, and so does ``auto`` here)."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    return raw.isdigit() and int(raw) > 0


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


def watched_cpus() -> set[int] | None:
    """The CPUs this process may run on, or None where the system does not say."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def read_sample(cpus: set[int], stat_path: str = "/proc/stat") -> CpuSample | None:
    """Busy time of ``cpus`` from ``/proc/stat`` (everything but idle and iowait; guest time is
    already inside user time) and this process's CPU time, or None where there is no such file."""
    try:
        with open(stat_path, encoding="ascii") as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    busy_ticks = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        fields = [int(v) for v in rest.split()]
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        busy_ticks += user + nice + system + irq + softirq + steal
    own = os.times()
    return CpuSample(busy_ticks / _clock_ticks(), own.user + own.system, time.monotonic())


def others_load(before: CpuSample, after: CpuSample) -> float:
    """Cores' worth of the watched CPUs that other programs used between two samples."""
    wall = after.at_s - before.at_s
    if wall <= 0:
        return 0.0
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return max(0.0, others / wall)


def threads_for(cores: int, others: float, most: int) -> int:
    """Threads that fit beside ``others`` cores' worth of other work on ``cores`` CPUs."""
    taken = int(others + (1 - TAKEN_FRACTION))  # half a core and more counts as a whole one
    return max(1, min(most, cores - taken))


class ThreadGovernor:
    """Sets torch's CPU thread count during training from the load other programs put on the
    cores (see the module's docstring). ``configured`` is ``train.threads``: ``'auto'`` or a
    fixed count; ``work`` and ``fixed_by`` word the note (what runs, and the setting that fixes the
    count). Call :meth:`after_step` after each step and :meth:`close` when training ends:
    the thread count the process had is put back."""

    def __init__(self, configured: int | str, *, note: Callable[[str], None] = print, work: str = "training",
                 fixed_by: str = "train.threads = {}",
                 sample: Callable[[], CpuSample | None] | None = None, cores: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.original = torch.get_num_threads()
        self.note, self.work, self.fixed_by = note, work, fixed_by
        self.threads = self.original
        self.adapting = False
        self._noted = False
        if configured != "auto":
            self._set(int(configured))
            cpus = watched_cpus()
            usable = len(cpus) if cpus else os.cpu_count() or 1
            if int(configured) > 2 * usable:  # threads beyond the cores only wait on each other: far slower, not faster
                note(f"i2i: warning: {fixed_by.format(configured)} is more than the {usable} core(s) this process may "
                     f"use: the extra threads only take turns on them, which slows {work} many times over (a "
                     "thousand threads on 2 cores ran a step about a thousand times slower); 'auto' uses them all")
            return
        if omp_threads_fixed():
            return
        cpus = watched_cpus()
        if sample is None and cpus is not None:
            sample = lambda: read_sample(cpus)  # noqa: E731
        self._sample = sample
        self.cores = cores if cores is not None else (len(cpus) if cpus else os.cpu_count() or 1)
        self._last = sample() if sample is not None else None
        self.adapting = self._last is not None and self.original > 1
        self._due = FIRST_INTERVAL_S

    def _set(self, threads: int) -> None:
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.threads = threads

    def after_step(self) -> None:
        """Look at the load once the interval has passed; cheap otherwise (a clock read)."""
        if not self.adapting or self.clock() - self._last.at_s < self._due:
            return
        now = self._sample()
        if now is None:
            self.adapting = False
            return
        others = others_load(self._last, now)
        self._last, self._due = now, INTERVAL_S
        threads = threads_for(self.cores, others, self.original)
        if threads == self.threads:
            return
        if threads < self.threads and not self._noted:
            self._noted = True
            self.note(f"i2i: note: other programs are using {others:.1f} of the {self.cores} CPU cores; {self.work} on "
                      f"{threads} thread{'s' if threads > 1 else ''} instead of {self.original} while they do "
                      f"({self.fixed_by.format(self.original)} keeps {self.original})")
        self._set(threads)

    def close(self) -> None:
        """Give the process back the thread count it had before training."""
        self.adapting = False
        self._set(self.original)


class NoThreadGovernor:
    """What a GPU run governs: nothing."""

    def after_step(self) -> None:
        pass

    def close(self) -> None:
        pass
