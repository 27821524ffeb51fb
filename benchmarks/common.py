"""Shared helpers for the benchmarks: synthetic images, timed subprocesses with peak memory.

Nothing here imports i2i or torch, so the helpers can drive any Python (i2i's or the
reference's) as a subprocess.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


# -- command-line checks ---------------------------------------------------------------------------
# argparse ``type=`` functions: a bad value is argparse's one-line error (status 2), before any work.
def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < least:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of {least} or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number above 0")
    return value


def reference_checkout(text: str) -> Path:
    """``--reference``: a checkout of junyanz/pytorch-CycleGAN-and-pix2pix (its train.py and options/)."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder; expected a checkout of "
                                         "junyanz/pytorch-CycleGAN-and-pix2pix (see benchmarks/README.md)")
    if not (path / "train.py").is_file() or not (path / "options").is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a checkout of junyanz/pytorch-CycleGAN-and-pix2pix "
                                         "(it has no train.py and options/; see benchmarks/README.md)")
    return path.resolve()


def json_file(text: str) -> Path:
    """``--json``: a file in an existing folder (checked now, not after the measurement)."""
    path = Path(text)
    if not path.parent.is_dir() or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {'a folder' if path.is_dir() else f'no folder {path.parent}'}; "
                                         "expected a file in an existing folder")
    return path


VARIANT_SYNTAX = "NAME:KEY=VALUE[;KEY=VALUE...], e.g. 'cl:train.channels_last=true'"


def variant(text: str) -> tuple[str, list[str]]:
    """``--variant NAME:KEY=VALUE;KEY=VALUE``: (NAME, its KEY=VALUE items; none for ``NAME:``)."""
    name, colon, spec = text.partition(":")
    name = name.strip()
    if not colon or not name or "=" in name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {VARIANT_SYNTAX} (a name, a colon, then the settings)")
    items = [s.strip() for s in spec.split(";") if s.strip()]
    for item in items:
        key, equals, _ = item.partition("=")
        if not equals or not key.strip():
            raise argparse.ArgumentTypeError(f"variant {name!r}: {item!r} is not KEY=VALUE; expected {VARIANT_SYNTAX}")
    return name, items


def unique_names(ap: argparse.ArgumentParser, variants: list[tuple[str, list[str]]]) -> None:
    names = [name for name, _ in variants]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        ap.error(f"argument --variant: the name {twice[0]!r} is given twice; each variant needs its own name")


# -- synthetic data -------------------------------------------------------------------------------
def smooth_image(rng, size: int):
    """A "random-ish" photo stand-in: smooth colour blobs plus a little texture, uint8 HxWx3."""
    import numpy as np
    from PIL import Image

    coarse = (rng.random((9, 9, 3)) * 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int, size: int, *, seed: int = 0, aligned: bool = False,
                 noise_sigma: float = 25.0, fmt: str = "jpg") -> Path:
    """``count`` images of ``size`` px in ``folder``.

    ``aligned``: pix2pix's A|B layout (2*size wide): A = B + Gaussian noise (sigma on 0-255),
    B = the clean image, as the reference's ``--dataset_mode aligned`` expects.
    """
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        clean = smooth_image(rng, size)
        if aligned:
            noisy = np.clip(clean + rng.normal(0, noise_sigma, clean.shape), 0, 255).astype(np.uint8)
            clean = np.concatenate([noisy, clean], axis=1)
        Image.fromarray(clean).save(folder / f"img_{i:04d}.{fmt}", quality=95)
    return folder


# -- measured subprocesses --------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _pss_kb(pid: int) -> int:
    """Proportional set size (shared pages split between processes), kB; 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores; /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return (total - idle) / os.sysconf("SC_CLK_TCK")


def foreign_load(seconds: float = 1.0) -> float:
    """Busy fraction of the machine's cores over ``seconds`` (this process is idle meanwhile)."""
    start = cpu_busy_seconds()
    time.sleep(seconds)
    return (cpu_busy_seconds() - start) / (seconds * (os.cpu_count() or 1))


def wait_for_quiet(threshold: float = 0.15, max_wait: float = 120.0, window: float = 1.0) -> tuple[float, float]:
    """Wait until other processes use less than ``threshold`` of the cores (at most ``max_wait``
    seconds); returns (the last measured load, seconds waited)."""
    start = time.perf_counter()
    load = foreign_load(window)
    while load > threshold and time.perf_counter() - start < max_wait:
        load = foreign_load(window)
    return load, time.perf_counter() - start


@dataclass
class Measured:
    seconds: float  # wall clock, start of the process to its exit
    returncode: int
    max_rss_mb: float  # ru_maxrss of the process and its waited-for children (largest single one)
    peak_tree_pss_mb: float  # sampled sum of PSS over the process tree (main + data workers)
    output: str
    cpu_seconds: float = 0.0  # user + system CPU of the process and its children
    foreign: float = 0.0  # share of the machine's cores used by *other* processes meanwhile


def run_measured(cmd: list[str], *, cwd: str | Path | None = None, env: dict | None = None,
                 sample_every: float = 2.0, timeout: float | None = None) -> Measured:
    """Run ``cmd``; wall time, peak RSS (wait4) and the sampled peak PSS of its process tree.

    Sampling is sparse on purpose: reading ``smaps_rollup`` walks the page tables of a 1.6 GB
    process in ~30 ms of CPU and holds its memory-map lock meanwhile; every 0.25 s that slowed
    the measured training step by 10-25 % on the 2-core machine. Training's memory is steady,
    so a sample every 2 s still finds its peak.
    """
    import resource

    def own() -> float:  # this process (the memory sampler reads /proc, which costs CPU too)
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    busy0, own0 = cpu_busy_seconds(), own()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]
    done = threading.Event()

    def sampler() -> None:
        while not done.is_set():
            total = sum(_pss_kb(p) for p in _tree(proc.pid))
            peak[0] = max(peak[0], total)
            done.wait(sample_every)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    deadline = None if timeout is None else start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    busy = cpu_busy_seconds() - busy0 - (own() - own0)
    thread.join()
    reader.join(timeout=5)
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    foreign = max(0.0, busy - cpu) / (seconds * (os.cpu_count() or 1))
    return Measured(seconds, proc.returncode, usage.ru_maxrss / 1024, peak[0] / 1024, "".join(chunks), cpu, foreign)


# -- machine description ------------------------------------------------------------------------------
def machine_info() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for key in ("Model name", "Core(s) per socket", "Thread(s) per core", "Flags"):
            m = re.search(rf"^{re.escape(key)}:\s*(.*)$", lscpu, re.M)
            if m:
                info[key] = m.group(1).strip()
        flags = set(info.pop("Flags", "").split())
        info["bf16_hw"] = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx512_vnni", "avx_vnni"}) or "none"
    except OSError:
        pass
    return info


def python_versions(python: str) -> dict:
    """torch/kornia/numpy versions as seen by ``python``."""
    code = ("import json, torch; v={'torch': torch.__version__, 'threads': torch.get_num_threads(), "
            "'cpu_capability': torch.backends.cpu.get_cpu_capability()}\n"
            "try:\n import kornia; v['kornia']=kornia.__version__\nexcept Exception: pass\n"
            "print(json.dumps(v))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    import json

    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": out.stderr[-500:]}


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def default_python() -> str:
    return sys.executable
