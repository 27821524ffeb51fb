"""What the trainer needs to know about other processes (one process: nothing at all).

A single process uses :meth:`DistContext.single`, whose operations do nothing. Under
``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) or a multi-task ``srun`` step
(``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``), :meth:`DistContext.from_environment`
joins the process group: NCCL when the rank trains on a CUDA GPU, gloo on the CPU. The
rendezvous address comes from ``MASTER_ADDR``/``MASTER_PORT``; every collective gives up
after ``I2I_DIST_TIMEOUT`` seconds (default 300), so a dead or stuck rank ends the run with
a message instead of a silent hang.

Host-side agreement (the stop flag, per-rank checkpoint state, the run directory) runs on a
gloo group even when the tensors go through NCCL, so it never waits for the GPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import StopRequested, TrainingStopped, UserError, shell_path, show_traceback
from ..messages import say

DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_VARIABLE = "I2I_DIST_TIMEOUT"


class RankLost(TrainingStopped):
    """Another rank died, or the network between ranks failed: this rank cannot go on."""


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a launch: its rank, the world size, its rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = ""  # "torchrun", "slurm" or "" (a plain single process)


def launch_environment(env: Mapping[str, str] | None = None) -> Launch:
    """Read the launcher's variables: torchrun's first, else those of an ``srun`` step.

    SLURM's batch script also carries ``SLURM_PROCID=0`` and ``SLURM_NTASKS=N``, so SLURM's
    variables count only inside an ``srun`` step (``SLURM_STEP_ID`` set); a ``python -m i2i
    run`` in the batch script itself stays a single process rather than waiting for N - 1
    processes that never come.
    """
    env = os.environ if env is None else env
    try:
        if "RANK" in env and "WORLD_SIZE" in env:
            launch = Launch(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")), "torchrun")
            names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
        elif "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
            world = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or "1"
            launch = Launch(int(env["SLURM_PROCID"]), int(world), int(env.get("SLURM_LOCALID", "0")), "slurm")
            names = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
        elif env.get("WORLD_SIZE", "").strip() not in ("", "0", "1"):  # a launcher that set half of it
            raise UserError(f"WORLD_SIZE={env['WORLD_SIZE'].strip()} is set but RANK is not, so each process would "
                            "train a run of its own; a launcher of several processes sets both (torchrun does), with "
                            "MASTER_ADDR and MASTER_PORT; to train as one process, unset WORLD_SIZE")
        else:
            return Launch()
    except ValueError as exc:
        raise UserError(f"the launcher's rank variables are not integers ({exc})") from None
    # RANK=1 WORLD_SIZE=1 (a copied command line, say) trained as a second rank of one
    if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size or launch.local_rank < 0:
        raise UserError(f"{names[0]}={launch.rank}, {names[1]}={launch.world_size}, {names[2]}={launch.local_rank}: "
                        f"expected 0 <= {names[0]} < {names[1]} and {names[2]} >= 0")
    return launch


def dist_timeout(env: Mapping[str, str] | None = None) -> float:
    """Seconds any collective may wait for the other ranks (``I2I_DIST_TIMEOUT``, default 300)."""
    env = os.environ if env is None else env
    raw = env.get(TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"{TIMEOUT_VARIABLE}={raw!r}: expected a number of seconds > 0")
    return value


def rank_device(name: str, local_rank: int) -> torch.device:
    """The device of one rank: ``auto`` and ``cuda`` mean this machine's GPU number ``LOCAL_RANK``.

    ``LOCAL_RANK`` is taken modulo the visible GPUs, so a launcher that shows each task only
    its own GPU (SLURM's ``--gpus-per-task``) works too. ``cuda:N`` is used as given.
    """
    if name in ("auto", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if name == "cuda":
            raise UserError("train.device = 'cuda': no CUDA GPU is available here; use 'auto' or 'cpu'")
        return torch.device("cpu")  # MPS has no collective backend: several ranks use the CPU
    if name == "mps":
        raise UserError("train.device = 'mps': distributed training runs on CUDA GPUs or the CPU; use 'auto' or 'cpu'")
    from .device import resolve_device

    return resolve_device(name)


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo for CPU tensors."""
    return "nccl" if device.type == "cuda" else "gloo"


def is_comm_failure(exc: BaseException) -> bool:
    """Whether an exception is a collective failing (peer gone, timeout), not a bug of ours."""
    distributed = getattr(torch.distributed, "DistError", None)
    if distributed is not None and isinstance(exc, distributed):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(mark in text for mark in (
        "Connection closed by peer", "Connection reset by peer", "Broken pipe", "gloo", "Gloo", "NCCL",
        "Socket Timeout", "ProcessGroup",
    ))


def _first_sentence(exc: BaseException) -> str:
    """The gist of a backend error, without its source location: ``Connection closed by peer [...]``."""
    import re

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^(\[[^\]]*\]\s*)+", "", text)
    return text.split(". ")[0][:160]


@dataclass
class DistContext:
    """Rank, world size and the collective operations the trainer uses.

    A single process uses :meth:`single`, whose operations do nothing.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    backend: str = ""
    launcher: str = ""
    timeout: float = DEFAULT_TIMEOUT_S
    control: Any = field(default=None, repr=False)  # gloo group for host-side agreement
    owns_group: bool = False

    @classmethod
    def single(cls) -> "DistContext":
        """One process: every collective returns its input, so the trainer needs no ``if``."""
        return cls()

    @classmethod
    def from_environment(cls, device_name: str, env: Mapping[str, str] | None = None) -> "DistContext":
        """Join the launcher's process group, or a single-process context when there is none."""
        launch = launch_environment(env)
        if launch.world_size <= 1:
            return cls.single()
        env = os.environ if env is None else env
        if not (0 <= launch.rank < launch.world_size):
            raise UserError(f"rank {launch.rank} is outside a world of {launch.world_size} processes")
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
        if missing:
            raise UserError(f"{launch.world_size} processes ({launch.launcher}) but {' and '.join(missing)} not set; "
                            "export the address and a free port of the rank-0 machine (see docs/distributed.md)")
        device = rank_device(device_name, launch.local_rank)
        timeout = dist_timeout(env)
        context = cls(launch.rank, launch.world_size, launch.local_rank, device, backend_for(device), launch.launcher, timeout)
        context._init_group(env)
        return context

    def _init_group(self, env: Mapping[str, str]) -> None:
        import torch.distributed as dist

        kwargs: dict[str, Any] = {}
        if self.backend == "nccl":
            torch.cuda.set_device(self.device)
            kwargs["device_id"] = self.device
        where = f"{env.get('MASTER_ADDR')}:{env.get('MASTER_PORT')}"
        native = _NativeStderr()
        try:
            with native.held():
                dist.init_process_group(self.backend, init_method="env://", rank=self.rank, world_size=self.world_size,
                                        timeout=timedelta(seconds=self.timeout), **kwargs)
                self.owns_group = True
                self.control = dist.new_group(backend="gloo", timeout=timedelta(seconds=self.timeout)) if self.backend != "gloo" else None
        except Exception as exc:  # noqa: BLE001 - rendezvous errors come in many types
            if not is_comm_failure(exc) and not isinstance(exc, (ValueError, OSError)):
                native.release()
                raise
            if show_traceback():
                native.release()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"rank {self.rank}: could not join the other {self.world_size - 1} process(es) at {where} "
                            f"within {self.timeout:g} s ({first}); check MASTER_ADDR/MASTER_PORT and that every rank "
                            f"was started ({TIMEOUT_VARIABLE} sets the wait)") from None
        native.release()

    # -- who am I --------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        """Rank 0, the one that writes logs, samples and checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    # -- networks --------------------------------------------------------------------------------
    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``module``, so backward all-reduces (averages) its gradients."""
        if not self.is_distributed or not any(p.requires_grad for p in module.parameters()):
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def sync_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (batch-norm statistics) to every rank, so all evaluate one model."""
        if not self.is_distributed:
            return
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer.data, 0)

    # -- tensors (on the training device) --------------------------------------------------------
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks (loss and metric sums: one collective, no host read)."""
        if not self.is_distributed:
            return tensor
        import torch.distributed as dist

        tensor = tensor.contiguous()
        dist.all_reduce(tensor)
        return tensor

    def all_reduce_min(self, tensor: torch.Tensor) -> torch.Tensor:
        """The minimum over ranks (the first step any rank saw a non-finite loss)."""
        if not self.is_distributed:
            return tensor
        import torch.distributed as dist

        tensor = tensor.contiguous()
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    # -- host-side agreement (gloo, never waits for the GPU) -------------------------------------
    def agree(self, flag: bool) -> bool:
        """True on every rank when it is true on any rank (stop requests, skipped steps)."""
        return self.agree_each((flag,))[0]

    def agree_each(self, flags: tuple[bool, ...]) -> tuple[bool, ...]:
        """:meth:`agree` for several flags in one exchange."""
        if not self.is_distributed:
            return tuple(flags)
        import torch.distributed as dist

        value = torch.tensor([1 if flag else 0 for flag in flags], dtype=torch.int32)
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control)
        return tuple(bool(v) for v in value.tolist())

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (small picklable things only)."""
        if not self.is_distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def broadcast_path(self, path: str | None) -> str:
        """Rank 0's ``path`` on every rank (rank 0 alone picks a new run directory)."""
        if not self.is_distributed:
            return str(path)
        import torch.distributed as dist

        box = [path if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return str(box[0])

    def barrier(self) -> None:
        """Wait for every rank: the others wait here while rank 0 writes a checkpoint."""
        if not self.is_distributed:
            return None
        import torch.distributed as dist

        dist.barrier(group=self.control)
        return None

    # -- the end ---------------------------------------------------------------------------------
    def lost(self, exc: BaseException, step: int, run_dir: Any) -> RankLost:
        """A one-paragraph error for a failed collective: what happened and how to go on."""
        from . import checkpoint as ckpt

        has_checkpoint = run_dir is not None and ckpt.CheckpointStore(Path(run_dir)).newest_complete() is not None
        then = (f"Resume from the last checkpoint with: i2i run --resume {shell_path(run_dir)} --nproc {self.world_size} "
                "(or the same number of processes under your launcher)" if has_checkpoint else
                "The run has no checkpoint yet: once that error is fixed, start it again")
        return RankLost(
            f"rank {self.rank}: lost contact with the other processes near step {step} ({_first_sentence(exc)}); "
            f"another rank died or stopped answering within {TIMEOUT_VARIABLE}={self.timeout:g} s; its error is the "
            f"first above, if it printed one (a rank killed by a signal or the out-of-memory killer prints none: "
            f"under i2i run --nproc a line names its rank and signal, under torchrun run by hand torchrun's report "
            f"does). {then}"
        )

    def close(self) -> None:
        """Leave the process group this context joined (nothing when it joined none)."""
        if not self.owns_group:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False


# -- `i2i run --nproc N`: torchrun on this machine ------------------------------------------------
class _NativeStderr:
    """Holds back what torch's C++ layer prints to file descriptor 2 during a rendezvous.

    A rank that cannot reach MASTER_ADDR gets c10d's retry messages, each with some 50 lines of
    C++ stack frames, ahead of i2i's one-line error. Inside :meth:`held` they go to a temporary
    file; :meth:`release` writes them out (after a successful rendezvous nothing is lost, and
    ``I2I_TRACEBACK=1`` shows them with the traceback); otherwise they are dropped.
    """

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)

    def release(self) -> None:
        self.file.seek(0)
        os.write(2, self.file.read())
        self.file.close()


def torchrun_command(nproc: int, args: list[str], python: str | None = None) -> list[str]:
    """The torchrun command line that runs ``i2i ARGS`` in ``nproc`` processes on this machine."""
    import sys

    return [python or sys.executable, "-m", "i2i.engine.torchrun", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "i2i", *args]


#: What asks a run to stop: Ctrl-C, SIGTERM, and SIGHUP (its terminal or SSH session closed).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))

#: Set by ``i2i run --nproc`` for its workers: the launcher's folder. A worker leaves its pid
#: there once it handles signals (see :func:`announce_worker`), and, when it stops because it was
#: asked to (Ctrl-C, SIGTERM, a hang-up, a callback), its exit status (see
#: :func:`exit_status_for_launcher`).
LAUNCHER_FOLDER_VARIABLE = "I2I_NPROC_FOLDER"
#: the ``i2i run --nproc N ...`` command line that started the workers, as JSON (see run.json)
LAUNCH_COMMAND_VARIABLE = "I2I_NPROC_COMMAND"


def launch_command() -> list[str]:
    """The command line that started this run: ``i2i run --nproc 2 ...`` for a worker --nproc
    started (whose own arguments leave --nproc out), else this process's."""
    with contextlib.suppress(KeyError, ValueError, TypeError):
        command = json.loads(os.environ[LAUNCH_COMMAND_VARIABLE])
        if isinstance(command, list) and all(isinstance(part, str) for part in command):
            return command
    return list(sys.argv)


def announce_worker() -> None:
    """Under ``i2i run --nproc``: from now on SIGTERM and SIGHUP end this worker as Ctrl-C does
    (the run installs its own handlers, which checkpoint, once it trains), and the launcher may
    pass signals on. Before this, a worker still importing torch died with a traceback."""
    folder = os.environ.get(LAUNCHER_FOLDER_VARIABLE)
    if not folder:
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for sig in STOP_SIGNALS[1:]:  # SIGINT raises KeyboardInterrupt already
        signal.signal(sig, interrupt)
    with contextlib.suppress(OSError):
        Path(folder, f"pid-rank{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))


def exit_status_for_launcher(code: int) -> int:
    """The status a worker exits with after a stop it was asked for: 0 under ``--nproc``, with
    ``code`` left in the launcher's folder (torchrun prints a failure report for a worker that
    exits non-zero); ``code`` itself anywhere else."""
    folder = os.environ.get(LAUNCHER_FOLDER_VARIABLE)
    if not folder:
        return code
    # a signal the launcher passes on late (it came before this worker could take it) would find
    # the default handlers Python restores as it exits, and end the process as a failure
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    try:
        Path(folder, f"status-rank{os.environ.get('RANK', '0')}").write_text(str(code))
    except OSError:  # the launcher's folder is gone: let torchrun see the status itself
        return code
    return 0


#: In the launcher's folder once a signal has come: a worker that then ends for any reason (a
#: rank lost because the others stopped first, say) was asked to
SIGNALLED_FILE = "signalled"


def launcher_signalled() -> bool:
    """Whether ``i2i run --nproc`` has passed a signal on to this worker's launch."""
    folder = os.environ.get(LAUNCHER_FOLDER_VARIABLE)
    return bool(folder) and Path(folder, SIGNALLED_FILE).exists()


def _by_rank(folder: str, prefix: str) -> dict[str, int]:
    """What the workers wrote in ``folder``'s files ``PREFIX-rankR``: {R: number}."""
    numbers = {}
    for entry in Path(folder).glob(f"{prefix}-rank*"):
        with contextlib.suppress(OSError, ValueError):
            numbers[entry.name.split("-rank", 1)[1]] = int(entry.read_text())
    return numbers


#: ``i2i-nproc-PID-...``: the launcher's folder for its workers' pids and statuses, named after its pid
LAUNCHER_FOLDER_PREFIX = "i2i-nproc-"


def _remove_folders_of_ended_launchers() -> None:
    """Remove the folders that launchers killed with SIGKILL left in the temporary folder (they
    could not remove their own): those whose launcher's pid runs no process now."""
    import shutil

    for folder in Path(tempfile.gettempdir()).glob(f"{LAUNCHER_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(LAUNCHER_FOLDER_PREFIX):].split("-", 1)[0]
        try:  # another launcher may be removing it at the same moment
            if not pid.isdigit() or folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (PermissionError, OverflowError, ValueError):  # another user's process, or no such pid
            continue


def run_local(nproc: int, args: list[str]) -> int:
    """Run ``i2i ARGS`` under torchrun with ``nproc`` processes; returns its exit status.

    torchrun runs in its own session, and each signal this process gets (Ctrl-C, SIGTERM, a
    hang-up) goes to every worker, once, as soon as the worker handles signals: the workers
    finish the step and save, and a second Ctrl-C stops them at once. torchrun is not told: it
    would end the workers itself, kill any still writing a checkpoint after 30 s, and print a
    traceback. A worker stopped that way exits 0 and leaves its status for this process.
    """
    import subprocess

    _remove_folders_of_ended_launchers()
    with tempfile.TemporaryDirectory(prefix=f"{LAUNCHER_FOLDER_PREFIX}{os.getpid()}-") as folder:
        # torchrun sets OMP_NUM_THREADS=1 for each worker when it is unset, with a three-line banner
        # saying so (even under --quiet); set here, the workers get the same and the banner is gone
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), LAUNCHER_FOLDER_VARIABLE: folder,
               LAUNCH_COMMAND_VARIABLE: json.dumps(sys.argv)}  # run.json's command: the one the user typed
        proc = subprocess.Popen(torchrun_command(nproc, args), start_new_session=True, env=env,
                                preexec_fn=_terminated_with_parent if sys.platform == "linux" else None)
        received: list[int] = []
        delivered: dict[int, int] = {}  # worker pid -> how many of `received` it has been sent

        def deliver() -> None:
            Path(folder, SIGNALLED_FILE).touch()
            for pid in _by_rank(folder, "pid").values():
                for signum in received[delivered.get(pid, 0):]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signum)
                delivered[pid] = len(received)

        saved_and_ended = False

        def forward(signum, frame):
            nonlocal saved_and_ended
            received.append(signum)
            pids, statuses = _by_rank(folder, "pid"), _by_rank(folder, "status")
            if pids and set(pids) <= set(statuses):
                # every worker has stopped, its checkpoint written, and is only exiting (seconds of
                # interpreter teardown): a second Ctrl-C then ends them now, without torchrun's report
                saved_and_ended = True
                _end_quietly(proc, pids)
                return
            deliver()

        # torchrun runs in its own session, so the terminal's signals (a closed one's SIGHUP too)
        # reach only this process; unforwarded, the workers trained on unseen
        previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
        first_stopped: float | None = None
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if received:  # signals that came before a worker could take them
                        deliver()
                    statuses = _by_rank(folder, "status")
                    if first_stopped is None and statuses:
                        first_stopped = time.monotonic()
                    elif first_stopped is not None:
                        grace = STOPPED_GRACE_S if max(statuses.values()) == StopRequested.exit_code else INTERRUPTED_GRACE_S
                        if time.monotonic() - first_stopped > grace:
                            _end_stragglers(proc, _by_rank(folder, "pid"), statuses, grace)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        statuses = _by_rank(folder, "status")
        if code == 0 or ((first_stopped is not None or saved_and_ended) and statuses):
            return max(statuses.values(), default=0)
    return 128 - code if code < 0 else code


def _end_quietly(torchrun: Any, pids: dict[str, int]) -> None:
    """SIGKILL torchrun (which then prints nothing), then the workers it leaves."""
    with contextlib.suppress(ProcessLookupError):
        torchrun.kill()
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _terminated_with_parent() -> None:
    """In torchrun's process, before it starts: SIGTERM when ``i2i run --nproc`` dies, even by
    ``kill -9`` (Linux's parent-death signal). torchrun then stops its workers as for a SIGTERM
    (they checkpoint); before, they trained on in a session of their own, out of sight."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


#: How long ``i2i run --nproc`` waits for the other workers once one has stopped as asked, then
#: ends them: a worker that got the signal inside torch's rendezvous (its first seconds) cannot act
#: on it until I2I_DIST_TIMEOUT. After a stop with a checkpoint, every checkpoint is written by the
#: time the first worker exits (the others may still run callbacks); after an interrupt (Ctrl-C
#: while setting up, or twice) there is nothing to save.
STOPPED_GRACE_S = 30.0
INTERRUPTED_GRACE_S = 5.0


def _end_stragglers(torchrun: Any, pids: dict[str, int], statuses: dict[str, int], grace: float) -> None:
    """Kill torchrun, then the workers that have not stopped (torchrun first: told of a killed
    worker, it prints a failure report), with one line saying so."""
    torchrun.kill()
    torchrun.wait()
    stragglers = sorted(rank for rank in pids if rank not in statuses)
    for rank in stragglers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[rank], signal.SIGKILL)
    if stragglers:
        say(f"i2i: rank{'s' if len(stragglers) > 1 else ''} {', '.join(stragglers)} had not stopped {grace:g} s after "
            "the first rank did; ended")
