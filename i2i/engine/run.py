"""Starting and resuming runs: the run directory, the saved recipe, signals, the result."""

from __future__ import annotations

import contextlib

import gc
import json
import os
import platform
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import nn

from .. import __version__
from ..errors import (CheckpointError, SecondInterrupt, UserError, called_from_the_command_line, for_the_caller,
                      scoring_hint, shell_path)
from ..messages import routed_to_the_programs_logging, say
from ..plugins import host, registry
from ..options import changed_keys, format_value
from ..paths import user_path
from ..recipe import (RUN_FOLDER_EXPECTED, Recipe, blamed_on_recipe, dumps_toml, load_recipe, names_a_new_folder,
                      note_changed_run_plugins, recipe_error)
from . import checkpoint as ckpt
from .components import build_callbacks
from .contracts import find_metric
from .device import caller_autocast_off, dtype_name, global_state_kept
from .distributed import LAUNCHER_FOLDER_VARIABLE, STOP_SIGNALS, launch_command, launch_environment
from .init_weights import pin_init_from, refuse_on_resume
from .run_lock import run_folder_locked
from .trainer import Trainer, summary_line

if TYPE_CHECKING:
    from ..data import ImageData
    from .distributed import DistContext


@dataclass
class Run:
    """What :func:`i2i.train` returns; ``run_dir`` is absolute, so it still holds after ``os.chdir``."""

    run_dir: Path
    status: str
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    generator: nn.Module | None = field(default=None, repr=False)  # printing a Run shows where and how it ended
    recipe: Recipe | None = field(default=None, repr=False)


def _new_run_dir_of(recipe: Recipe, out: str | Path | None) -> Path:
    """The run's new folder: ``out`` (``--out``), or the recipe's ``output.dir``, whose mistakes
    name the recipe file or the ``--set`` it came from, as a recipe error."""
    if out is not None:
        return new_run_dir(out, announce=False)
    check_output_dir(recipe)  # its mistakes as the recipe's
    return new_run_dir(recipe["output"]["dir"], announce=False)


def check_output_dir(recipe: Recipe) -> None:
    """What creating the recipe's ``output.dir`` would refuse (a file or device of that name, a
    control character), without creating it: ``i2i validate`` passed what the run refused."""
    try:
        _refuse_unusable_run_folder(recipe["output"]["dir"])
    except UserError as exc:
        prefix = f"run folder {format_value(str(recipe['output']['dir']))}: "
        text = str(exc)
        raise recipe_error(recipe, f"output.dir = {text.removeprefix('run folder ')}") if text.startswith(prefix) \
            else exc from None


def say_moved_run_dir(wanted: str | Path, run_dir: Path) -> None:
    """The note that ``wanted`` existed, so the run went to ``run_dir`` (``wanted-2``...); on
    stderr, so that --quiet and scripts see it too. Nothing when it went where wanted."""
    base = user_path(wanted, "output.dir")
    if run_dir != base:
        empty = ("; it is empty (made by hand, or left by a run killed in its first seconds): delete it to use the name"
                 if _is_empty_folder(base) else "")
        say(f"i2i: note: {base} already exists (runs are never overwritten); this one goes to {run_dir}{empty}")


def _is_empty_folder(path: Path) -> bool:
    try:
        return path.is_dir() and not any(path.iterdir())
    except OSError:
        return False


def _refuse_unusable_run_folder(wanted: str | Path) -> None:
    if not names_a_new_folder(wanted):
        raise UserError(f"run folder {format_value(str(wanted))}: expected {RUN_FOLDER_EXPECTED}")
    if any(ord(c) < 32 or ord(c) == 127 for c in str(wanted)):  # a newline from a script's string, say
        raise UserError(f"run folder {str(wanted)!r}: contains a control character (a newline or tab); expected "
                        f"{RUN_FOLDER_EXPECTED}")
    base = user_path(wanted, "output.dir")
    from ..data.decode import not_a_folder

    in_the_way = not_a_folder(base)
    if in_the_way:  # FILE-2 beside a file, or /dev/null-2 in /dev for `--out /dev/null`, was no one's intent
        raise UserError(f"run folder {format_value(str(wanted))}: {in_the_way} of that name is there; expected "
                        f"{RUN_FOLDER_EXPECTED}")


def new_run_dir(wanted: str | Path, *, announce: bool = True) -> Path:
    """Create ``wanted``, or ``wanted-2``, ``wanted-3``... if it exists: never reuse a run dir.
    ``announce``: say so now (see :func:`say_moved_run_dir`; a run says it once its data are read)."""
    _refuse_unusable_run_folder(wanted)
    base = user_path(wanted, "output.dir")
    candidate, n = base, 1
    try:
        made_parents = [folder for folder in base.parents if not folder.exists()]  # innermost first
        base.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                candidate.mkdir()
                if announce:
                    say_moved_run_dir(base, candidate)
                _PARENTS_MADE_FOR[candidate] = made_parents
                return candidate
            except FileExistsError:
                n += 1
                candidate = base.with_name(f"{base.name}-{n}")
    except OSError as exc:  # read-only place, a file in the way, no such device...
        try:
            blocker = next((p for p in base.parents if p.exists()), None)
        except OSError:  # a path too long to ask about at all
            blocker = None
        reason = f"{blocker} is a file" if blocker is not None and not blocker.is_dir() else exc.strerror or exc
        shown = str(candidate) if len(str(candidate)) <= 200 else f"{str(candidate)[:100]}...{str(candidate)[-60:]}"
        raise UserError(f"{shown}: cannot create the run folder here ({reason}); "
                        "pass --out (or set output.dir to) a folder you can write to") from None


def pin_data_folders(recipe: Recipe) -> None:
    """Record relative data folders (relative to the working directory) as absolute paths, so
    the run's saved recipe resumes and reruns from any directory."""
    from ..data import SAMPLE
    from ..data.sources import DATA_FOLDERS

    data = recipe["data"]
    for key in DATA_FOLDERS:
        if data[key] in ("", SAMPLE):
            continue
        folder = user_path(data[key], f"data.{key}")
        # relative, or under ~ (whose meaning changes with HOME: another user, a batch job)
        if (not folder.is_absolute() or str(data[key]).startswith("~")) and folder.is_dir():
            data[key] = os.path.abspath(folder)


def check_data_folders_there(recipe: Recipe, run_dir: Path) -> None:
    """A resumed run whose data folder is gone (moved, renamed) is told how to point it there."""
    from ..data.sources import missing_data_folder

    key = missing_data_folder(recipe["data"])
    given = next((o for o in getattr(recipe, "overrides", ()) if isinstance(o, str)
                  and o.split("=", 1)[0].strip() == f"data.{key}"), None)
    if key is not None and given is not None:  # the --set's own folder, not the run's images moved
        raise UserError(f'--set {given}: data.{key} = "{recipe["data"][key]}": no such folder')
    if key is not None:
        raise UserError(f'data.{key} = "{recipe["data"][key]}": no such folder; if the run\'s images moved: '
                        f"i2i run --resume {shell_path(run_dir)} --set \"data.{key}='NEW_PLACE'\" (quoted, so a path with "
                        "spaces works)")


#: Keys that pick which files a run validates on: a resumed run must keep them.
SPLIT_KEYS = (("train", "seed"), ("data", "val_fraction"))


def _check_split_kept(saved: Recipe, recipe: Recipe) -> None:
    """Refuse a resume override that would move files between training and validation (the
    split is drawn from train.seed and data.val_fraction): the resumed run would train on
    images its validation scores, and BEST would be picked on images it has seen."""
    for table, key in SPLIT_KEYS:
        before, after = saved[table][key], recipe[table][key]
        if before != after:
            dotted = f"{table}.{key}"
            given = next((o for o in recipe.overrides if o.split("=", 1)[0].strip() == dotted), f"{dotted}={after}")
            raise UserError(f"--set {given}: a resumed run keeps {dotted} = {before}, which fixes its "
                            "train/validation split (changed, it would train on its validation images); "
                            "start a new run to use another")


def _refuse_other_task_channels(saved: Recipe, recipe: Recipe) -> None:
    """A task change on resume that changes the networks' channels (``task.channels=1`` on a
    colour denoiser) cannot go on from the checkpoint's weights: said before the note that the
    networks go on from them, and before the weights' shapes fail to load."""
    if saved["task"] == recipe["task"]:
        return
    from ..plugins import registry
    from ..recipe import build_component

    try:
        before, after = (build_component(registry(), "tasks", r, "task") for r in (saved, recipe))
    except UserError:  # the new options' own mistake: reported where the run builds its task
        return
    was, now = (tuple(getattr(t, k, None) for k in ("in_channels", "out_channels")) for t in (before, after))
    if was != now:
        changed = changed_keys(saved["task"], recipe["task"])[0]
        raise recipe_error(recipe, f"task.{changed} = {format_value(recipe['task'].get(changed))}: the checkpoint's "
                                   f"networks take {was[0]} channel(s) in and give {was[1]}, and the task would now need "
                                   f"{now[0]} and {now[1]}; train that in a new run (i2i run RECIPE) instead")


def _task_changes(saved: Recipe, recipe: Recipe) -> list[str]:
    """Notes for the task options a resume's --set changes (a denoiser's sigma may change on
    purpose; a pair task's direction turned round sets its network a new mapping to learn)."""
    notes = []
    for key in sorted(changed_keys(saved["task"], recipe["task"])):
        before, after = saved["task"].get(key), recipe["task"].get(key)
        # an option the run's recipe left out was the task's default, not None
        was, now = (format_value(v) if key in r["task"] else "unset, the task's default" for v, r in
                    ((before, saved), (after, recipe)))
        trained = format_value(before) if key in saved["task"] else "the task's default"
        notes.append(f"task.{key} = {now} (was {was}): the checkpoint's networks were trained for {trained}, and "
                     "go on from their weights under the changed task")
    return notes


def _write_split(run_dir: Path, data: ImageData, undecodable_train: list[str]) -> None:
    """Record which files the run trains and validates on, once: a resume checks the folders
    against it (a run from before this record gets one at its first resume).
    ``undecodable_train``: the training files that no rank could decode."""
    from ..data.sources import SPLIT_FILE

    record = data.recorded_split(undecodable_train)
    ckpt.write_atomic(run_dir / SPLIT_FILE, (json.dumps(record.to_json(), indent=0) + "\n").encode())


#: What a run writes before its first step completes (see ``_fit_and_report``).
UNSTARTED_RUN_FILES = {"recipe.toml", "run.json", "split.json", "metrics.jsonl", "tensorboard", "samples", "checkpoints"}


#: The folders :func:`new_run_dir` made above each run folder it made (``runs/`` for
#: ``runs/x``), which a run that never starts removes again when they are left empty
_PARENTS_MADE_FOR: dict[Path, list[Path]] = {}


def _remove_unstarted_run(run_dir: Path) -> None:
    """Remove a new run's folder that never got through its first step (a recipe mistake found
    while setting up, a plugin's error, memory): empty, or holding only the files every run
    starts with, and no checkpoint, with the folders made above it, where they are empty.
    Anything else in it stays."""
    import shutil

    try:
        entries = {p.name for p in run_dir.iterdir() if ".tmp-" not in p.name}  # half-written files too
        checkpoints = run_dir / "checkpoints"
        if checkpoints.is_dir() and any(checkpoints.glob("step_*")):  # a copy of one too: not ours to delete
            return
        if entries <= UNSTARTED_RUN_FILES:
            shutil.rmtree(run_dir)
            for folder in _PARENTS_MADE_FOR.pop(run_dir, []):
                folder.rmdir()  # OSError once one is not empty (another run went there meanwhile): kept
        else:  # a callback's own file, say: not i2i's to delete
            others = ", ".join(sorted(entries - UNSTARTED_RUN_FILES)[:3])
            say(f"i2i: note: {run_dir} trained no step but holds files i2i did not write ({others}), so it stays; "
                "delete it once they are not needed")
    except OSError:
        pass


def plugin_versions(recipe: Recipe | None = None) -> dict[str, dict[str, Any]]:
    """Each plugin's distribution, version, module and load status, for run.json: a run's
    results depend on the plugins' code, so a rerun can check it has the same ones (and say
    how to get one that is missing). ``used``: whether the recipe names one of its components
    (only those are needed to open the run again)."""
    used = _plugins_used(recipe) if recipe is not None else None
    return {
        name: {"distribution": p.distribution, "version": p.version, "module": p.module, "status": p.status,
               **({"used": name in used} if used is not None else {})}
        for name, p in host().plugins.items()
    }


def _plugins_used(recipe: Recipe) -> set[str]:
    """The plugins that provide the components ``recipe`` names (its task's metrics included)."""
    reg = registry()
    named = [("tasks", recipe["task"]["name"]), ("generators", recipe["generator"]["name"])]
    if recipe.has_discriminator:
        named.append(("discriminators", recipe["discriminator"]["name"]))
    named += [("losses", table["name"]) for table in recipe["losses"].values()]
    named += [("metrics", name) for name in recipe["eval"]["metrics"]]
    named += [("callbacks", name) for name in recipe["train"]["callbacks"]]
    used = {reg.get(kind, name).plugin for kind, name in named}
    task_metrics = getattr(reg.get("tasks", recipe["task"]["name"]).factory, "metrics", ())
    for name in task_metrics if isinstance(task_metrics, (tuple, list)) else ():
        try:
            used.add(find_metric(recipe, name).plugin)
        except UserError:
            pass
    return used


def _write_run_files(run_dir: Path, recipe: Recipe, resumed_at: int | None, trainer: Trainer | None = None,
                     imported: bool = False) -> None:
    """recipe.toml and run.json, both or neither: a resume that a full disk stopped had rewritten
    recipe.toml alone, and the next resume took its --set values for hand edits of the file."""
    ckpt.write_atomic_together({run_dir / "recipe.toml": _recipe_text(run_dir, recipe, imported),
                                run_dir / "run.json": _run_info_text(run_dir, recipe, resumed_at, trainer)})


def _recipe_text(run_dir: Path, recipe: Recipe | dict, imported: bool = False) -> bytes:
    """The run's recipe.toml: the resolved recipe under a header saying how to rerun it."""
    rerun = (f"imported weights (i2i import-weights); to fine-tune them, give this folder as train.init_from in a "
             f"recipe that sets data.source: i2i run RECIPE --set train.init_from={shell_path(run_dir)}" if imported else
             f"rerun with: i2i run {run_dir / 'recipe.toml'}")
    header = f"# Resolved recipe of this run (i2i {__version__}); {rerun}\n"
    try:
        return (header + dumps_toml(dict(recipe))).encode()
    except UnicodeEncodeError:  # a name the file system gave as undecodable bytes: no UTF-8 file can hold it
        raise UserError(f"{run_dir}: a folder or file name of this run is not text in this process's file-name encoding "
                        f"({sys.getfilesystemencoding()}, from the locale: LC_ALL/LANG), so its recipe.toml cannot "
                        "record it; run i2i under a UTF-8 locale (LC_ALL=C.UTF-8) or with PYTHONUTF8=1") from None


def _run_info_text(run_dir: Path, recipe: Recipe, resumed_at: int | None, trainer: Trainer | None = None) -> bytes:
    """run.json: versions, command and plugins, and where ``auto`` put the run (device and
    precision: bf16 or fp32 on the CPU depends on the machine), again at each resume."""
    path = run_dir / "run.json"
    where = {} if trainer is None else {"device": str(trainer.device), "precision": dtype_name(trainer.dtype),
                                        "processes": trainer.dist.world_size, "speed": _speed_settings(trainer)}
    started_from = getattr(trainer, "initial_weights", None)
    info = _read_run_info(path) if path.is_file() else None
    if info is None:
        info = {
            "i2i_version": __version__, "torch_version": torch.__version__, "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "recipe_source": recipe.source,
            "overrides": recipe.overrides, "command": launch_command(), "plugins": plugin_versions(recipe), **where, "resumes": [],
        }
        if started_from is not None:  # train.init_from: which weights it fine-tuned
            info["initial_weights"] = started_from.record()
        if resumed_at is not None:
            info["rebuilt_at_resume"] = True  # what it says about the run's start is this resume's
    if resumed_at is not None:
        edits = {"hand_edits": recipe.hand_edits} if getattr(recipe, "hand_edits", None) else {}
        info["resumes"].append({"step": resumed_at, "overrides": recipe.overrides, **edits, "command": launch_command(),
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                "plugins": plugin_versions(recipe), **where})
    # the recipe as written to recipe.toml now: a resume tells edits made to the file since
    info["recipe"] = json.loads(json.dumps(dict(recipe)))
    return json.dumps(info, indent=1).encode()


def _speed_settings(trainer: Trainer) -> dict[str, Any]:
    """What the speed options resolved to on this machine (``auto`` decides several), for
    run.json: a run that differs from another in speed or in its last digits says why."""
    return {"channels_last": trainer.channels_last, "compile": bool(trainer.train_cfg["compile"]),
            "cuda_graphs": getattr(trainer, "graphs", None) is not None, "data_cached": bool(trainer.data.cached),
            "threads": _threads_setting(trainer.train_cfg["threads"]) if trainer.device.type == "cpu" else None}


def _threads_setting(configured: int | str) -> int | str:
    """``train.threads`` as it applies here (see :class:`~i2i.engine.cpu_threads.ThreadGovernor`):
    a count wins over ``OMP_NUM_THREADS``; ``auto`` keeps that variable's count, or adapts up
    to torch's."""
    if configured != "auto":
        return int(configured)
    from .cpu_threads import omp_threads_fixed

    if omp_threads_fixed():
        return f"{torch.get_num_threads()} (OMP_NUM_THREADS)"
    return f"auto, at most {torch.get_num_threads()}"


def _read_run_info(path: Path) -> dict | None:
    """A run's run.json, or None when it cannot be read as one (a crash or a full disk can leave
    it empty): then it is moved aside to ``run.json.unreadable``, with a note, and the caller
    writes a new one. The run's weights and data are elsewhere, so the resume goes on."""
    try:
        info = json.loads(path.read_text())
        if isinstance(info, dict) and isinstance(info.setdefault("resumes", []), list):
            return info
        problem = f"a JSON {type(info).__name__}, not the run's record" if not isinstance(info, dict) else "its 'resumes' is not a list"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else f"not JSON ({exc})"
    kept = ckpt.set_aside(path)
    say(f"i2i: note: {path}: cannot be read ({problem}); {kept}, and a new run.json is written from this resume")
    return None


#: Under torchrun run by hand, a second SIGINT this soon after the first is torchrun passing on the
#: same Ctrl-C (the terminal sent it to the workers already), not a second Ctrl-C. ``i2i run
#: --nproc`` sends each signal once, so there every second Ctrl-C counts.
ECHO_WINDOW_S = 2.0


#: Signals that ask a process to end: SIGTERM, and SIGHUP (its terminal or SSH session closed).
TERMINATION_SIGNALS = tuple(sig for sig in STOP_SIGNALS if sig != signal.SIGINT)


@contextmanager
def _stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """SIGINT/SIGTERM (and SIGHUP: the terminal closed): finish the step, checkpoint, stop. A
    second Ctrl-C stops at once."""
    if not _main_thread():
        yield
        return
    first_at: list[float] = []
    echoes = trainer.dist.is_distributed and not os.environ.get(LAUNCHER_FOLDER_VARIABLE)

    def handler(signum, frame):
        if first_at and signum == signal.SIGINT:
            if echoes and time.monotonic() - first_at[0] < ECHO_WINDOW_S:
                return
            raise SecondInterrupt
        if first_at:
            return
        first_at.append(time.monotonic())
        trainer.request_stop()
        if trainer.dist.is_main:  # every rank got it, or will agree on it within a step
            now = "Ctrl-C again to quit now" if signum == signal.SIGINT else "Ctrl-C quits now"
            said = (f"i2i: {signal.Signals(signum).name} received: finishing the current step, then saving a "
                    f"checkpoint ({now})")
            if routed_to_the_programs_logging():  # to_your_logging(): the program's handlers, as every note
                say(said.replace("i2i: ", "i2i: note: ", 1))
            else:  # on a line of its own, below a progress bar's
                print(f"\n{said}", file=sys.stderr, flush=True)

    with _signals_handled(STOP_SIGNALS, handler):
        yield


@contextmanager
def interrupt_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP as Ctrl-C: while a run is set up (reading and caching its data can take
    a while), so the new run folder is removed rather than left empty by the default handler;
    and for all of ``i2i translate`` and ``i2i eval``, which then finish the file being written
    and say how to go on, as a batch scheduler or a closed terminal sends these, not Ctrl-C."""
    if not _main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    with _signals_handled(TERMINATION_SIGNALS, interrupt):
        yield


@contextmanager
def _signals_handled(signals: tuple[int, ...], handler: Any) -> Iterator[None]:
    """``handler`` for ``signals`` inside the block; the previous handlers after it."""
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


#: Held while a run trains: training draws on torch's global random streams and puts them back
#: afterwards, so two runs in one process's threads would change each other's weights and leave
#: the caller's streams as whichever finished last had found them.
_TRAINING = threading.Lock()


def train(
    recipe: Recipe | dict | str | Path,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    callbacks: list[Any] | None = None,
    quiet: bool = False,
    dist: DistContext | None = None,
) -> Run:
    """Train a recipe, or resume a run directory (its saved recipe, plus ``overrides``).

    Under ``torchrun`` or a multi-task ``srun`` step every process calls this; they join one
    process group (``dist``, unless given) and train one model together (docs/distributed.md).
    """
    if not isinstance(quiet, bool):  # quiet="no" would be taken as True
        raise TypeError(f"quiet is True or False, not {quiet!r}")
    for name, value in (("out", out), ("resume", resume)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} is a folder's path (a str or Path), not {type(value).__name__} ({value!r})")
    # ~ means the home folder here too, as it does on the command line (i2i.load takes it as well)
    if out is not None and os.fspath(out).startswith("~"):  # (an empty one stays "", which is refused as such)
        out = user_path(out, "out")
    if resume is not None and os.fspath(resume).startswith("~"):
        resume = user_path(resume, "resume")
    if not isinstance(overrides, (str, bytes, dict)) and hasattr(overrides, "__iter__"):
        overrides = list(overrides)  # a generator would be used up by the first of several reads
    # an embedding program keeps its random streams and backend flags; training needs gradients
    # even when the caller is inside torch.no_grad() or torch.inference_mode(), and runs in the
    # recipe's precision even inside the caller's torch.autocast
    if not _TRAINING.acquire(blocking=False):
        raise UserError("another i2i.train is running in this process (in another thread, or this one's callback): "
                        "a process trains one run at a time, as training draws on torch's global random streams; "
                        "wait for it to return, or train in another process")
    try:
        with global_state_kept(), torch.inference_mode(False), torch.enable_grad(), caller_autocast_off():
            run = _train_recipe(recipe, out=out, resume=resume, overrides=overrides, callbacks=callbacks,
                                quiet=quiet, dist=dist)
    finally:
        _TRAINING.release()
    # the trainer, its optimisers and its data cache sit in reference cycles: freed now, not
    # whenever the garbage collector next runs (GPU memory between back-to-back runs). Only
    # after a run that ended well: after a lost rank, collecting the process group would wait
    # on the dead peer, and the launcher would kill this process before it could say so.
    gc.collect()
    return run


def rebuild_recipe_file(run_dir: Path) -> bool:
    """Write back the ``recipe.toml`` a run folder lost (deleted by hand) from its ``run.json``,
    which records the recipe as i2i last wrote it, with a note; False when the folder holds no
    checkpoints/ or no such record. Resume, ``i2i eval`` and ``translate`` need the file, and
    the message asking to restore it sent users looking for a copy they did not have."""
    recipe_path = run_dir / "recipe.toml"
    if recipe_path.exists() or not (run_dir / "checkpoints").is_dir():
        return False
    try:
        recipe = json.loads((run_dir / "run.json").read_text()).get("recipe")
        if not isinstance(recipe, dict) or not recipe:
            return False
        ckpt.write_atomic(recipe_path, _recipe_text(run_dir, recipe))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, UserError):
        return False
    say(f"i2i: note: {recipe_path} was missing; rebuilt from {run_dir / 'run.json'}, which records the recipe as i2i "
        "last wrote it (hand edits made to the lost file since are not in it)")
    return True


def check_run_folder(run_dir: Path) -> None:
    """``run_dir`` is a run folder to resume (holding its ``recipe.toml``, rebuilt from
    ``run.json`` when only it was lost); else one line saying what it is: a checkpoint folder of
    one (naming the run), missing, a file, or no run."""
    if not (run_dir / "recipe.toml").is_file() and not rebuild_recipe_file(run_dir):
        owner = run_dir.parent.parent if (run_dir / "state.json").is_file() else run_dir.parent
        if (owner / "recipe.toml").is_file() and run_dir.name.startswith(("step_", "checkpoints")):
            raise CheckpointError(f"{run_dir}: is a checkpoint folder of the run {owner}; resume the run: i2i run --resume "
                            f"{shell_path(owner)} (it continues from the checkpoint named in "
                            f"{owner / 'checkpoints' / 'LATEST'}, which you may point at another step_* folder; "
                            f"Python: i2i.train(None, resume={str(owner)!r}))")
        if not run_dir.exists():
            raise CheckpointError(f"{run_dir}: no such run folder; pass the folder a run was written to")
        if run_dir.is_file():
            raise CheckpointError(f"{run_dir}: is a file; pass the folder a run was written to (its parent, "
                                  f"{run_dir.parent}, if that is the run)")
        if _is_empty_folder(run_dir):  # made by `i2i run` and killed (kill -9) before it wrote anything
            raise CheckpointError(f"{run_dir}: empty, so there is nothing to resume: a run killed in its first seconds, "
                                  "before it wrote its recipe.toml, leaves its folder so; delete it and start the run "
                                  "again")
        raise CheckpointError(f"{run_dir}: not an i2i run directory (no recipe.toml); pass the folder a run was written to")


def _train_recipe(recipe, *, out, resume, overrides, callbacks, quiet, dist) -> Run:
    """Resolve the recipe (a resumed run's saved one), join the process group, create the run
    folder and the Trainer; a lost rank becomes :class:`RankLost`."""
    from ..data.sources import RecordedSplit, split_was_redrawn
    from .distributed import DistContext, is_comm_failure

    checkpoint_dir, run_dir, split = None, None, None
    lost_contact = False
    if callbacks is not None and (isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__")):
        from ..callbacks import Callback

        if isinstance(callbacks, Callback):  # one callback, not in a list
            raise TypeError(f"callbacks is a list of Callback instances, e.g. callbacks=[{type(callbacks).__name__}()], "
                            f"not a single {type(callbacks).__name__}")
        raise TypeError(f"callbacks is a list of i2i.Callback instances, not {type(callbacks).__name__} ({callbacks!r})")
    if callbacks is not None:
        from ..callbacks import check_callbacks

        callbacks = list(callbacks)
        check_callbacks(callbacks)  # before a note names the run folder it would have gone to
    if resume is not None and (recipe is not None or out is not None):
        raise UserError("a resumed run continues in its own folder with its saved recipe: "
                        "call train(None, resume=RUN_DIR, overrides=[...]) without a recipe or out")
    if resume is not None:
        run_dir = Path(resume)
        check_run_folder(run_dir)
        refuse_on_resume(overrides)
        moved = [o for o in overrides if isinstance(o, str) and o.split("=", 1)[0].strip() in ("output.dir", "output")]
        if moved:  # it was recorded, while the run went on in its own folder
            raise UserError(f"--set {moved[0]}: a resumed run stays in its folder, {run_dir}; to move it, move the folder "
                            "and resume it from there")
        if (run_dir / "checkpoints").is_dir():  # a kill inside a step's rewrite left its old copy aside
            ckpt.CheckpointStore(run_dir).restore_swapped()
        checkpoint_dir = ckpt.find_checkpoint(run_dir)
        recipe = load_recipe(run_dir / "recipe.toml", overrides)
        if launch_environment().rank == 0:
            note_changed_run_plugins(run_dir / "recipe.toml")
        saved = check_resume(run_dir, checkpoint_dir, recipe, overrides)  # before the data is read
        if saved is not None:
            recipe.notes.extend(_task_changes(saved, recipe))
        # where it is now (a run folder may have been moved); absolute when given as "." or "..",
        # which the saved recipe could not name it by (every later command refused the run)
        recipe["output"]["dir"] = str(run_dir) if names_a_new_folder(run_dir) else str(run_dir.resolve())
        split = RecordedSplit.read(run_dir)
        check_data_folders_there(recipe, run_dir)
    else:  # a Recipe is checked again, as its holder may have edited it; a copy: the run fills in output.dir
        recipe = load_recipe(recipe, overrides)
    pin_init_from(recipe)
    pin_data_folders(recipe)  # a resume may move them (--set data.source=NEW_PLACE), relative to here too
    owned = dist is None
    with blamed_on_recipe(recipe):  # train.device = 'cuda' without a GPU names the file or the --set
        dist = dist or DistContext.from_environment(recipe["train"]["device"])
    if dist.is_main:
        for note in recipe.notes:
            say(f"i2i: note: {for_the_caller(note)}")
    trainer: Trainer | None = None
    try:
        _check_ranks_agree(dist, recipe, resume)
        if resume is None:
            wanted = out if out is not None else recipe["output"]["dir"]
            made = _new_run_dir_of(recipe, out) if dist.is_main else None
            try:
                run_dir = Path(dist.broadcast_path(str(made) if made is not None else None))
            except BaseException:  # the others never came (a stop while they set up): no empty folder left
                if made is not None:
                    _remove_unstarted_run(made)
                raise
            recipe["output"]["dir"] = str(run_dir)
        # a SIGTERM while data loads or the run's files are written: clean up as for Ctrl-C (fit
        # installs its own handlers, which checkpoint)
        with interrupt_on_termination(), run_folder_locked(run_dir) if dist.is_main else contextlib.nullcontext():
            try:
                # absolute for the Trainer, its callbacks' trainer.run_dir and checkpoint paths, as
                # a resumed run's are: a program that keeps them may change its working directory
                trainer = Trainer(recipe, Path(os.path.abspath(run_dir)), dist=dist, callbacks=[*build_callbacks(recipe), *(callbacks or [])],
                                  quiet=quiet, split=split, resuming=resume is not None)
                if resume is None and dist.is_main:  # not before: a run that cannot start keeps no -2 folder
                    say_moved_run_dir(wanted, made)
                return _fit_and_report(trainer, recipe, run_dir, checkpoint_dir, quiet, split is None,
                                       resume is not None and (split is None or split_was_redrawn(run_dir)))
            except BaseException as exc:
                # a recipe mistake, or a first step that failed (its callbacks too) before any
                # checkpoint: the folder holds nothing to resume, and a -2 folder next time would be noise
                first_step_failed = trainer is None or trainer.first_step_unsaved or getattr(exc, "nothing_trained", False)
                if resume is None and dist.is_main and first_step_failed:
                    _remove_unstarted_run(run_dir)
                if isinstance(exc, SecondInterrupt):  # stopped at once: say what is left to resume from
                    exc.i2i_resume_note = _what_resumes(run_dir, dist.world_size)
                raise
    except RuntimeError as exc:
        if dist.is_distributed and is_comm_failure(exc):
            lost_contact = True
            raise dist.lost(exc, trainer.step if trainer is not None else 0, run_dir or "RUN_DIR") from None
        raise
    finally:
        if run_dir is not None:
            _PARENTS_MADE_FOR.pop(run_dir, None)
        if owned:
            # torchrun sends SIGTERM to the ranks left once one dies: leaving the process group
            # must not be cut short by it before this rank has said what happened
            with _signals_handled(TERMINATION_SIGNALS, signal.SIG_IGN) if lost_contact else contextlib.nullcontext():
                dist.close()


#: Keys that may differ between ranks: paths, which machines may mount in different places
#: (a relative data folder is made absolute on each), and rank 0's choice of the run folder.
RANK_OWN_KEYS = {"data.source", "data.val_source", "data.pair_source", "data.val_pair_source", "output.dir",
                 "train.init_from"}


def _check_ranks_agree(dist: DistContext, recipe: Recipe, resume: str | Path | None) -> None:
    """Every rank trains the same recipe. Ranks started by hand with different recipes or --sets
    trained silently with different batch sizes, or waited out I2I_DIST_TIMEOUT over a different
    train.steps; torchrun and --nproc start every rank with the same command."""
    if not dist.is_distributed:
        return
    mine = {key: value for key, value in _flat(recipe).items() if key not in RANK_OWN_KEYS}
    everyone = dist.all_gather_object((mine, resume is not None))
    for rank, (theirs, resuming) in enumerate(everyone):
        if resuming != (resume is not None):
            raise UserError(f"rank {rank} {'resumes a run' if resuming else 'starts a new run'} and rank {dist.rank} "
                            f"does not; start every rank with the same command (torchrun and --nproc do)")
        if theirs != mine:
            key = next(k for k in sorted(theirs.keys() | mine.keys()) if theirs.get(k, "(unset)") != mine.get(k, "(unset)"))
            raise UserError(f"rank {rank} was given another recipe than rank {dist.rank}: {key} = "
                            f"{theirs.get(key, '(unset)')!r} there, {mine.get(key, '(unset)')!r} here; start every rank "
                            "with the same recipe and --set options (torchrun and --nproc do)")


def _flat(table: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train.steps": 100, ...}``: a recipe's values by dotted key."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resume(run_dir: Path, checkpoint_dir: Path, recipe: Recipe, overrides: list[str] | tuple[str, ...],
                 nproc: int = 1) -> Recipe | None:
    """What a resume's ``--set`` may not change, and a run already trained to its steps: refused
    before any data is read, and under ``--nproc`` before its processes start (one line, not one
    per process and torchrun's report). Returns the run's saved recipe when overrides change it."""
    ckpt.refuse_resuming_imported(checkpoint_dir)
    on_disk = load_recipe(run_dir / "recipe.toml") if overrides else recipe  # without overrides, the same file read
    _check_hand_edits(run_dir, on_disk, recipe)
    saved = None
    if overrides:
        saved = on_disk
        _check_split_kept(saved, recipe)
        if recipe.has_discriminator and not saved.has_discriminator:  # was "discriminator.safetensors is missing"
            raise recipe_error(recipe, f"discriminator.name = '{recipe['discriminator']['name']}': this run was "
                                       "trained without a discriminator, so its checkpoints hold none to continue; "
                                       "train one in a new run (i2i run RECIPE) instead")
        _refuse_other_task_channels(saved, recipe)
    saved_step = -1
    with contextlib.suppress(Exception):  # a damaged state.json is said by the checkpoint's load
        saved_step = int(ckpt.read_state(checkpoint_dir)["step"])
    _refuse_a_finished_resume(run_dir, saved_step, recipe["train"]["steps"], nproc)
    return saved


#: Keys a run's recipe.toml changes by itself: where the run folder is now
MOVABLE_KEYS = {"output.dir"}


def _check_hand_edits(run_dir: Path, on_disk: Recipe, recipe: Recipe) -> None:
    """A run's recipe.toml edited by hand since i2i wrote it (``lr = 0.5``, ``seed = 7``) was
    applied without a word, past the checks a ``--set`` gets: the same refusals (the split's
    keys, a discriminator added, the networks' channels), a note naming what changed otherwise,
    and the keys kept for run.json (``recipe.hand_edits``). What i2i wrote is in run.json;
    ``on_disk`` is the file as it is now, ``recipe`` the resume's (with its overrides)."""
    try:
        recorded = json.loads((run_dir / "run.json").read_text()).get("recipe")
    except (OSError, ValueError, AttributeError):  # no run.json, a damaged one: nothing to compare with
        return
    if not isinstance(recorded, dict):
        return
    then, now = _flat(recorded), _flat(json.loads(json.dumps(dict(on_disk))))
    if "output.dir" in then and then["output.dir"] != now.get("output.dir", then["output.dir"]):
        recipe.notes.append(f"{run_dir / 'recipe.toml'}: output.dir = {format_value(now['output.dir'])}, edited since "
                            "i2i wrote it, is not followed: a resumed run stays in its folder (move the folder to move "
                            "the run)")
    # keys on both sides only: one a newer plugin version added (with its default) is no edit; a
    # component replaced by hand shows in its table's name
    edited = [key for key in then if key in now and key not in MOVABLE_KEYS and then[key] != now[key]]
    if not edited:
        return
    where = f"{run_dir / 'recipe.toml'}, edited since i2i wrote it"

    def shown(values: dict, key: str) -> str:
        return f"{key} = {format_value(values[key])}"

    for table, key in SPLIT_KEYS:
        dotted = f"{table}.{key}"
        if dotted in edited:
            raise UserError(f"{where}: {shown(now, dotted)}, where the run was trained with {shown(then, dotted)}, "
                            f"which fixes its train/validation split (changed, it would train on its validation "
                            f"images); put {format_value(then[dotted])} back, or start a new run to use another")
    try:
        trained = load_recipe(recorded)
    except UserError:  # a plugin gone or changed since: its own checks say so
        return
    if on_disk.has_discriminator and not trained.has_discriminator:
        raise UserError(f"{where}: discriminator.name = '{on_disk['discriminator']['name']}', and the run was trained "
                        "without a discriminator, so its checkpoints hold none to continue; remove the table again, or "
                        "train one in a new run (i2i run RECIPE)")
    _refuse_other_task_channels(trained, on_disk)
    listed = "; ".join(f"{shown(then, key)} then, {shown(now, key).removeprefix(key + ' = ')} now" for key in edited[:4])
    more = f" (and {len(edited) - 4} more)" if len(edited) > 4 else ""
    recipe.notes.append(f"{where}: {listed}{more}; the resume trains with the edited values")
    recipe.hand_edits = edited


def _refuse_a_finished_resume(run_dir: Path, step: int, steps: int, nproc: int = 1) -> None:
    if step >= steps:
        processes = f" --nproc {nproc}" if nproc > 1 else ""
        raise UserError(
            f"{run_dir}: already trained to step {step} of train.steps = {steps}; "
            f"to train longer: i2i run --resume {shell_path(run_dir)}{processes} --set train.steps=N "
            f"(Python: i2i.train(None, resume={str(run_dir)!r}, overrides=['train.steps=N']))"
        )


def _keep_what_the_resume_would_replace(trainer: Trainer, checkpoint_dir: Path) -> None:
    """Before a resume trains: the checkpoints of steps it trains again are set aside rather
    than written over, a best scored under other settings is kept rather than compared (and
    pruned), and BEST names the best the resumed record names. Each said in a note."""
    store = ckpt.CheckpointStore(checkpoint_dir.parent.parent)
    later, aside = store.set_aside_later(checkpoint_dir)
    if later and aside is not None:
        _keep_later_records(store.root.parent, aside, trainer.step)
        shown = ", ".join(later[:3]) + (f" and {len(later) - 3} more" if len(later) > 3 else "")
        say(f"i2i: note: resuming from {checkpoint_dir.name}, before {shown}: moved them, with their sample grids and "
            f"metrics.jsonl lines, to {aside}, so the steps trained again write nothing over them (delete it once they "
            "are not needed)")
    best = trainer.best
    if "step" in best and not (store.root / ckpt.step_name(int(best["step"]))).is_dir():
        say(f"i2i: note: the run's best so far, {ckpt.step_name(int(best['step']))} ({best.get('metric', 'score')} "
            f"{best.get('value', float('nan')):.4g}), is no longer in {store.root}, so no checkpoint could be kept "
            "for it: the best is chosen again from this resume's evaluations")
        trainer.best = {}
    elif trainer.best_not_comparable:
        kept, pointer = store.retire_best(ckpt.step_name(trainer.step), trainer.retired_best)
        where = f"; {kept} stays (checkpoints/{pointer} names it)" if kept else ""
        say(f"i2i: note: the run's best so far was scored under other settings ({trainer.best_not_comparable}), so its "
            f"score cannot be compared with this resume's: the best is chosen again from this resume's evaluations"
            f"{where}")
    else:
        store.agree_best(trainer.best, later)
    if "step" not in trainer.best:
        _take_back_a_retired_best(trainer, store)


def _keep_later_records(run_dir: Path, aside: Path, step: int) -> None:
    """The later branch's sample grids and log lines go with its checkpoints: the steps trained
    again wrote their grids over them, and the log dropped their lines (its scores were left only
    inside the checkpoints' state.json)."""
    from .report import _step_of

    grids = [p for p in sorted((run_dir / "samples").glob("step_*.png"))
             if p.stem[len("step_"):].isdigit() and int(p.stem[len("step_"):]) > step]
    if grids:
        (aside / "samples").mkdir(exist_ok=True)
        for grid in grids:
            os.replace(grid, aside / "samples" / grid.name)
    log = run_dir / "metrics.jsonl"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        lines = [line for line in log.read_text().splitlines(keepends=True) if (_step_of(line) or 0) > step]
        if lines:
            ckpt.write_atomic(aside / "metrics.jsonl", "".join(line if line.endswith("\n") else line + "\n"
                                                               for line in lines).encode())


def _take_back_a_retired_best(trainer: Trainer, store: ckpt.CheckpointStore) -> None:
    """A resume whose scoring settings are again those a retired best was scored under
    (``eval.crop`` changed, then changed back) compares with that best rather than choosing
    anew: else a worse checkpoint of this resume would become BEST."""
    main, lower = trainer.best_metric, trainer.best_is_lower
    comparable = [(pointer, record) for pointer, record in store.retired_bests()
                  if record.get("metric") == main and isinstance(record.get("value"), (int, float))
                  and isinstance(record.get("scored_with"), dict) and not trainer.changed_scoring(record)]
    if not comparable:
        return
    pointer, best = (min if lower else max)(comparable, key=lambda item: item[1]["value"])
    best.pop("pending", None)
    trainer.best = best
    name = ckpt.step_name(int(best["step"]))
    with contextlib.suppress(OSError):
        ckpt.write_atomic(store.root / "BEST", name.encode())
    say(f"i2i: note: {name} ({main} {best['value']:.4g}, checkpoints/{pointer} names it) was scored under this "
        "resume's settings, so it is the best again, to be compared with this resume's evaluations")


def _what_resumes(run_dir: Path, processes: int = 1) -> str:
    """Where a run stopped at once (a second Ctrl-C) goes on from, for its last line: a checkpoint
    being written then was abandoned (its partial folder, this process's, is removed), and the output said only
    'interrupted'. ``processes``: the run's, named in the command (a resume on another number
    of processes shards the data and random streams otherwise)."""
    if not run_dir.is_dir():
        return "nothing was trained, so nothing was kept"
    store = ckpt.CheckpointStore(run_dir)
    store.remove_own_partials()
    latest = store.pointer("LATEST") or store.newest_complete()
    if latest is None:
        return f"{run_dir} holds no checkpoint yet, so nothing can be resumed"
    nproc = f" --nproc {processes} (or as many processes under your launcher)" if processes > 1 else ""
    return f"{run_dir} resumes from {latest.name}: i2i run --resume {shell_path(run_dir)}{nproc}"


def _fit_and_report(trainer: Trainer, recipe: Recipe, run_dir: Path, checkpoint_dir: Path | None, quiet: bool,
                    record_split: bool, split_redrawn: bool = False) -> Run:
    """Resume (when asked), write the run's files (rank 0; ``record_split``: split.json too), train, report.
    ``split_redrawn``: a resume whose split.json is missing or was damaged (and set aside): its
    split is drawn again, which is the run's only while the training folder is unchanged."""
    dist = trainer.dist
    if checkpoint_dir is not None:
        trainer.load_checkpoint(checkpoint_dir)
        if split_redrawn and trainer.data.files_changed_since_checkpoint:  # the split drawn again is not the run's
            # a retry after the damaged file was set aside finds none: refused alike, not drawn anew
            damaged = (run_dir / "split.json.unreadable").exists()
            raise UserError(f"{run_dir / 'split.json'}: {'it could not be read' if damaged else 'missing'}, and the "
                            "training folder has changed since the checkpoint, so the split drawn again is not the run's "
                            "(it would train on its validation images); restore split.json"
                            f"{' (the damaged one is in split.json.unreadable)' if damaged else ''}, put the folder back "
                            "as it was, or start a new run")
        _refuse_a_finished_resume(run_dir, trainer.step, trainer.total_steps, dist.world_size)
        if dist.is_main:
            _keep_what_the_resume_would_replace(trainer, checkpoint_dir)
    # each rank decoded its own shard of the training files: the record names every rank's failures
    undecodable = [name for names in dist.all_gather_object(trainer.data.undecodable_train_names) for name in names] \
        if record_split else []
    if dist.is_main:
        _write_run_files(run_dir, recipe, trainer.step if checkpoint_dir is not None else None, trainer)
        if record_split:
            _write_split(run_dir, trainer.data, undecodable)
        started_from = trainer.initial_weights
        for note in started_from.notes if started_from is not None else ():
            say(f"i2i: note: {for_the_caller(note)}")
        if not quiet:
            what = f"resuming {run_dir} at step {trainer.step}" if checkpoint_dir else f"run directory: {run_dir}"
            if started_from is not None:
                what += f", starting from {started_from.checkpoint} (step {started_from.step})"
            where = f"{trainer.device}" if not dist.is_distributed else f"{dist.world_size} processes ({dist.backend}), rank 0 on {trainer.device}"
            shard = "" if not dist.is_distributed else " in rank 0's shard"
            graphs = ", CUDA graphs" if trainer.graphs is not None else ""
            print(f"i2i: {what} ({where}, {dtype_name(trainer.dtype)}{graphs}, {len(trainer.data.train_files)} training{shard} / {len(trainer.data.val_files)} validation images)", flush=True)
    with _stop_on_signals(trainer):
        status = trainer.fit()
    run = Run(Path(os.path.abspath(run_dir)), status, trainer.step, trainer.last_metrics, trainer.last_baselines, trainer.eval_generator.eval(), recipe)
    if dist.is_main and not quiet:
        early = (f" of {trainer.total_steps}, ended early{f' ({trainer.finish_reason})' if trainer.finish_reason else ''}"
                 if trainer.finished_early else "")
        print(f"i2i: finished {trainer.step} step{'' if trainer.step == 1 else 's'}{early}: "
              f"{summary_line(run.metrics, run.baselines, trainer.best_metric)}", flush=True)
        from ..task import takes_photos

        # a task without prepare() cannot translate user images: its runs are evaluated instead
        if not takes_photos(trainer.task):
            then = scoring_hint(run_dir if called_from_the_command_line() else run.run_dir)
        elif called_from_the_command_line():
            then = f"i2i translate {shell_path(run_dir)} IMAGE... --out OUT_DIR"
        else:  # a program: what it would call next
            then = f"i2i.load({str(run.run_dir)!r}).translate(IMAGE)"
        print(f"i2i: saved in {run_dir}; try: {then}", flush=True)
    return run


def _state_mismatch(expected: dict, given: dict, exc: BaseException) -> str:
    """What ``load_state_dict`` refused, in one line: the first missing and unexpected tensor
    names (and a prefix that tells them apart: a wrapper such as ``residual = true`` adds
    ``net.``), or the first size mismatch."""
    missing, unexpected = sorted(expected.keys() - given.keys()), sorted(given.keys() - expected.keys())
    if missing or unexpected:
        parts = [f"{len(missing)} of its tensors are missing (first: '{missing[0]}')" if missing else "",
                 f"{len(unexpected)} given are not its (first: '{unexpected[0]}')" if unexpected else ""]
        text = " and ".join(p for p in parts if p)
        if missing and unexpected and missing[0].endswith(unexpected[0]) and missing[0] != unexpected[0]:
            prefix = missing[0][: -len(unexpected[0])]
            text += (f"; the names differ by the prefix '{prefix}', which a task option that wraps the network adds "
                     "(residual = true, say; the reference's networks output the clean image: residual = false)")
        return text
    sizes = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
    return sizes[0] if sizes else str(exc).splitlines()[0]


def create_run_from_weights(recipe: Recipe | dict, generator_state: dict[str, torch.Tensor], out: str | Path, *, note: str = "") -> Path:
    """Write a run directory holding only generator weights (e.g. converted from another tool).

    The result works with ``i2i translate``, ``i2i eval`` and :func:`i2i.load`; it cannot be
    resumed (there is no optimiser state). The weights must load into the generator the recipe
    builds (checked here, so a mismatch is reported before anything is written).
    """
    from ..model import build_task_and_generator

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    task, generator = build_task_and_generator(recipe)
    # the plugin's network's own weights, when the task wraps it (a residual denoiser's "net.")
    unwrapped = getattr(generator, "i2i_unwrapped", None)
    fits_unwrapped = unwrapped is not None and set(generator_state) == set(unwrapped.state_dict())
    target = unwrapped if fits_unwrapped else generator
    try:
        target.load_state_dict(generator_state)
    except RuntimeError as exc:
        raise UserError(f"the weights do not fit generator '{recipe['generator']['name']}': "
                        f"{_state_mismatch(target.state_dict(), generator_state, exc)}") from None
    run_dir = new_run_dir(out)
    recipe["output"]["dir"] = str(run_dir)
    _write_run_files(run_dir, recipe, None, imported=True)
    state = {"format": ckpt.FORMAT, "i2i_version": __version__, "checksums": ckpt.CHECKSUMS, "step": 0,
             "weights_only": True, "note": note}
    ckpt.CheckpointStore(run_dir).write(0, {
        "generator.safetensors": ckpt.TensorFile(generator.state_dict()),
        "state.json": json.dumps(state, indent=1).encode(),
    }, keep=1, best=False)
    return run_dir
