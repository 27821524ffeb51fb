"""The ``i2i`` command line. User mistakes print one line and exit with status 2."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import WRITE_TROUBLE, StopRequested, TrainingStopped, UserError, shell_path, show_traceback
from .registry import KINDS, SINGULAR


class I2IGroup(click.Group):
    """Turns :class:`UserError` into one line on stderr and exit status 2, anywhere."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # i2i's own options (i2i --nope)
            _exit_on_usage_error(exc, exc.ctx)

    def invoke(self, ctx: click.Context) -> Any:
        from .engine.distributed import announce_worker

        try:
            announce_worker()
            return super().invoke(ctx)
        except click.UsageError as exc:
            _exit_on_usage_error(exc, ctx)
        except UserError as exc:
            _print_traceback_if_asked()
            prefix = _rank_prefix()
            said = _long_words_cut(str(exc))
            _say_error(f"i2i: error: {'' if said.startswith(prefix) else prefix}{said}")  # not 'rank 1: rank 1:'
            sys.exit(exc.exit_code)
        except TrainingStopped as exc:
            from .engine.distributed import RankLost, exit_status_for_launcher, launcher_signalled

            asked = isinstance(exc, StopRequested) or launcher_signalled()
            code = exc.exit_code
            if isinstance(exc, RankLost) and asked:  # the others acted on --nproc's signal first: not lost
                code = 130
                if not _rank_prefix():
                    click.echo("i2i: interrupted", err=True)
            elif isinstance(exc, RankLost) or not _rank_prefix():  # the others stopped the same way
                click.echo(f"i2i: {exc}", err=True)
            _forget_interrupt_in_exec()
            sys.exit(exit_status_for_launcher(code) if asked else code)
        except KeyboardInterrupt as exc:
            from .engine.distributed import exit_status_for_launcher

            failure = getattr(exc, "i2i_callback_failure", None)  # raised by a plugin's callback, not Ctrl-C
            resumes = getattr(exc, "i2i_resume_note", "")  # a run's second Ctrl-C: where it goes on from
            if failure or not _rank_prefix():  # a second Ctrl-C reaches every rank
                said = f": {_rank_prefix()}{failure}" if failure else f"; {resumes}" if resumes else ""
                click.echo(f"i2i: interrupted{said}", err=True)
            _forget_interrupt_in_exec()
            sys.exit(130 if failure else exit_status_for_launcher(130))
        except SystemExit as exc:
            failure = getattr(exc, "i2i_callback_failure", None)  # a plugin's callback called sys.exit()
            if failure is None:
                raise
            _say_error(f"i2i: error: {_rank_prefix()}{failure}")
            sys.exit(exc.code if isinstance(exc.code, int) and exc.code else 1)
        except Exception as exc:
            failure = getattr(exc, "i2i_callback_failure", None)  # a plugin's callback raised (set by the Trainer)
            if failure is None:
                _exit_on_unwritable(exc)
                _exit_on_the_wrong_kind_of_path(exc)
                _exit_on_a_path_no_file_system_takes(exc)
                raise
            _print_traceback_if_asked()
            _say_error(f"i2i: error: {_rank_prefix()}{failure} (I2I_TRACEBACK=1 shows where)")
            sys.exit(1)


def _say_error(text: str) -> None:
    """An error's one line on stderr (a newline in a file name or a plugin's message escaped)."""
    from .messages import one_line

    click.echo(one_line(text), err=True)


#: a run of characters without a space longer than this is cut in an error's line (see below)
LONGEST_WORD = 240


def _long_words_cut(message: str) -> str:
    """``message`` with each run of characters longer than :data:`LONGEST_WORD` cut to its
    start and end: a --set of 5000 characters came back twice in a 10 KB line. Paths are far
    shorter, and stay whole."""
    return re.sub(r"\S{%d,}" % (LONGEST_WORD + 1), lambda m: f"{m[0][:100]}...{m[0][-60:]}", message)


def _exit_on_usage_error(exc: click.UsageError, ctx: click.Context | None) -> None:
    """A command line Click could not take: one line naming the command's --help, status 2
    (Click's own is four lines: usage, a hint, a blank line, the error)."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # plain `i2i`: Click shows the help (Click >= 8.2)
        raise exc
    names, context = [], exc.ctx or ctx
    while context is not None and context.parent is not None:  # the root's name is however i2i was started
        names.insert(0, context.info_name)
        context = context.parent
    command = " ".join(["i2i", *names])
    hint, message = _reference_hint(exc), re.sub(r"\s*\n\s*", " ", exc.format_message())  # Click lists choices a line each
    if hint:  # Click's own guess (--model: "Did you mean '--help'?") is noise beside it
        message = re.split(r"\.? \(?Did you mean", message, maxsplit=1)[0]
    _say_error(f"i2i: error: {message.rstrip('.')}{hint} ({command} --help lists what it takes)")
    sys.exit(exc.exit_code)


#: The reference pix2pix's scripts, and what does their job here.
REFERENCE_COMMANDS = {"train": "i2i run RECIPE trains (the reference's train.py)",
                      "test": "i2i translate RUN IMAGES --out DIR applies a model, and i2i eval RUN --data DIR scores "
                              "it (the reference's test.py)"}


#: The reference test.py's options typed on the commands that apply or score a run: what they are there
APPLYING_REFERENCE_OPTIONS = {
    "eval": {"dataroot": "is --data DIR here (the test images; with --pair-data DIR for a run trained on two folders)",
             "phase": "is --data D/test here", "num_test": "is --set eval.max_images=N here",
             "results_dir": "is --save-images DIR (the input, output and target images) and --per-image FILE.csv here",
             "eval": "is always in effect here: i2i scores in eval mode; leave it out",
             "epoch": "is --checkpoint latest, best or a step here",
             "which_epoch": "is --checkpoint latest, best or a step here"},
    "translate": {"dataroot": "is the IMAGES arguments here (files or folders)",
                  "phase": "is the IMAGES arguments here (D/test)", "results_dir": "is --out DIR here",
                  "eval": "is always in effect here: i2i translates in eval mode; leave it out",
                  "epoch": "is --checkpoint latest, best or a step here",
                  "which_epoch": "is --checkpoint latest, best or a step here",
                  "num_test": "has no counterpart here: name the images to translate",
                  "direction": "is the run's own task.direction here: translate applies the run as it was trained "
                               "(a run trained with the other task.direction translates the other way)"},
}


def _reference_hint(exc: click.UsageError) -> str:
    """``; the reference's --dataroot is data.source here (set with --set KEY=VALUE)`` for a
    reference option or script name typed on i2i's command line, else ``""``."""
    from .recipe import REFERENCE_OPTIONS, reference_option_text

    if isinstance(exc, click.NoSuchOption) and exc.option_name == "--set" and exc.ctx is not None \
            and exc.ctx.info_name == "translate":  # eval takes one: a task option to score under
        return ("; translate applies the run as it was trained (its task options included); i2i eval RUN --set "
                "task.KEY=VALUE scores it under others, and a run trained under them translates with them")
    if isinstance(exc, click.NoSuchOption):
        command = exc.ctx.info_name if exc.ctx is not None else ""
        bare = exc.option_name.lstrip("-").lower()
        if command in APPLYING_REFERENCE_OPTIONS and bare in APPLYING_REFERENCE_OPTIONS[command]:
            return f"; the reference's --{exc.option_name.lstrip('-')} {APPLYING_REFERENCE_OPTIONS[command][bare]}"
        said = reference_option_text(exc.option_name)
        meaning = REFERENCE_OPTIONS.get(bare, "")
        keyed = not meaning.startswith(("i2i ", "--", "nothing: "))  # a recipe key, not a command or no counterpart
        if said and keyed and command in ("eval", "translate"):  # neither takes training settings
            return f"; {said} (a training setting: in the recipe, or i2i run RECIPE --set KEY=VALUE)"
        if said:
            return f"; {said}{' (set with --set KEY=VALUE)' if keyed else ''}"
    match = re.match(r"No such command '([^']+)'", exc.format_message())
    if match and match[1].lower() in REFERENCE_COMMANDS:
        return f"; {REFERENCE_COMMANDS[match[1].lower()]}"
    return ""


#: Permissions: a run folder made read-only (chmod, chattr +i) that a resume writes into
_NOT_ALLOWED = (errno.EACCES, errno.EPERM)


def _exit_on_unwritable(exc: BaseException) -> None:
    """A full disk (or quota, or a file system gone read-only), or a folder i2i may not write
    in, while a run or translation writes its files: one line naming the file, exit status 1.
    Checkpoints are written atomically, so what was saved before is intact and a run resumes
    from it."""
    seen = set()
    while exc is not None and id(exc) not in seen and not (
            isinstance(exc, OSError) and (exc.errno in WRITE_TROUBLE or exc.errno in _NOT_ALLOWED)):
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    if exc is not None and id(exc) in seen:
        return
    if exc is None:
        return
    _print_traceback_if_asked()
    filename = exc.filename
    if filename and Path(str(filename)).name.startswith(".") and ".tmp" in Path(str(filename)).name:
        filename = Path(str(filename)).parent  # i2i's temporary file, written there and renamed: the folder is the news
    where = f"{filename}: " if filename else ""
    if exc.errno in _NOT_ALLOWED:
        from .paths import umask_hint

        _say_error(f"i2i: error: {_rank_prefix()}{where}{exc.strerror}; give your user access to it (and to the "
                   f"folder that holds it){umask_hint()}{_what_is_kept(exc.filename, ' once it may write there')}")
    else:
        once = " once the file system can be written again" if exc.errno == errno.EROFS else " once there is room"
        trained = getattr(exc, "i2i_run_trained", False)  # the last step's grid, after its checkpoint
        _say_error(f"i2i: error: {_rank_prefix()}{where}cannot write ({exc.strerror}); {WRITE_TROUBLE[exc.errno]}"
                   f"{_what_is_kept(exc.filename, once, trained)}")
    sys.exit(1)


def _exit_on_the_wrong_kind_of_path(exc: BaseException) -> None:
    """A file where i2i writes a folder, or a folder where it writes a file (a run's
    ``samples`` made a file, its ``metrics.jsonl`` a folder): one line naming it, status 1."""
    if not isinstance(exc, (FileExistsError, IsADirectoryError, NotADirectoryError)) or not exc.filename:
        return
    # a rename onto a folder names the folder second
    path = Path(str(exc.filename2 if isinstance(exc, IsADirectoryError) and exc.filename2 else exc.filename))
    kind = "a folder" if path.is_dir() else "a file" if path.exists() else "in the way"
    _print_traceback_if_asked()
    _say_error(f"i2i: error: {_rank_prefix()}{path}: cannot be written ({exc.strerror}; it is {kind}); move it away"
               f"{_what_is_kept(path)}")
    sys.exit(1)


def _exit_on_a_path_no_file_system_takes(exc: BaseException) -> None:
    """A name over 255 bytes, or a loop of symbolic links, given as any path: one line naming
    it, status 2, as for other mistakes in what was typed (it was a traceback from wherever the
    path was first used)."""
    from .paths import path_problem

    problem = path_problem(exc)
    if problem is None:
        return
    _print_traceback_if_asked()
    _say_error(f"i2i: error: {_rank_prefix()}{problem}")
    sys.exit(2)


def _what_is_kept(filename: Any, once: str = "", trained: bool = False) -> str:
    """After a write failed, what of the run it belonged to can be resumed: its last checkpoint
    (written atomically, so intact), or nothing yet; ``once``: when the resume can work (on a
    read-only file system, not now); ``trained``: the write came after the last step's
    checkpoint (its sample grid), so there is nothing left to resume."""

    from .engine.checkpoint import find_checkpoint

    if not filename:
        return ". Checkpoints already written are intact (they are written atomically)"
    def holds_a_recipe(folder: Path) -> bool:
        try:
            return (folder / "recipe.toml").is_file()
        except OSError:  # a folder this user may not look into (the error being said, often)
            return False

    run = next((folder for folder in Path(str(filename)).parents if holds_a_recipe(folder)), None)
    if run is None:  # not a run's file, or a new run's folder removed as it had trained nothing
        return ""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its notes (a LATEST pointer cut short) are not the news here
            checkpoint = find_checkpoint(run)
    except UserError:
        return f". The run {run} has no checkpoint yet"
    if trained:  # the last step's checkpoint is there: a resume has nothing left to do
        return (f". Its last checkpoint, {checkpoint.name}, is intact and holds the trained run (i2i eval "
                f"{shell_path(run)} scores it; a resume has no step left to train)")
    return f". Its last checkpoint, {checkpoint.name}, is intact: i2i run --resume {shell_path(run)} continues from it{once}"


def _one_process_only() -> None:
    """``i2i translate`` and ``i2i eval`` run as one process: under torchrun every rank would do
    all the work, and two ranks writing the same --out replace each other's files."""
    import os

    world = os.environ.get("WORLD_SIZE", "").strip()
    if world.isdigit() and int(world) > 1:
        ctx = click.get_current_context()
        raise UserError(f"i2i {ctx.info_name} runs as one process (WORLD_SIZE={world} here): start it without torchrun "
                        "or srun")


def _print_traceback_if_asked() -> None:
    """Under ``I2I_TRACEBACK=1``, the traceback of the exception being handled, above its usual
    one line (which keeps its exit status: scripts see the same outcome either way)."""
    if show_traceback():
        import traceback

        traceback.print_exc()


def _forget_interrupt_in_exec() -> None:
    """CPython keeps a KeyboardInterrupt raised inside exec()'d code (a dataclass being built while
    a module imports, say) as unhandled, caught or not, and under ``python -m`` (torchrun's
    workers) ends the process with SIGINT at exit, which torchrun reports as a failure. The next
    exec() forgets it."""
    exec("pass")


def _rank_prefix() -> str:
    """``rank N: `` on ranks other than 0 of a distributed launch, else nothing."""
    try:
        from .engine.distributed import launch_environment

        launch = launch_environment()
    except UserError:
        return ""
    return f"rank {launch.rank}: " if launch.world_size > 1 and launch.rank > 0 else ""


class UserPath(click.Path):
    """click's path, with ``~`` and ``~user`` expanded as i2i expands them everywhere (see
    :mod:`i2i.paths`): ``--out=~/x`` reaches i2i unexpanded by the shell, and made a folder
    named ``~`` in the working directory."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.startswith("~"):
            from .paths import user_path

            value = str(user_path(value, param.opts[0] if param is not None and param.opts else ""))
        return super().convert(value, param, ctx)


@click.group(cls=I2IGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="i2i")
def cli() -> None:
    """i2i: train and apply image-to-image translators (colourisers, denoisers, ...).

    \b
    Example:
      i2i run recipes/gray2color.toml
      i2i translate runs/gray2color old_photos/ --out coloured/
    """
    import warnings

    # Pillow's DecompressionBombWarning, with a raw source line, on photos above ~89 megapixels
    # (matched by message, so that --help does not import Pillow): a user's own panorama is no
    # attack, and twice that size is refused with a one-line reason anyway.
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
    # and its metadata complaints ("Corrupt EXIF data", "Tag data larger than file"), a raw
    # source line naming no file: the pixels are read all the same (a damaged EXIF block just
    # gives no orientation, as most viewers show it)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")


# -- run / validate ------------------------------------------------------------------------------
SET_HELP = "Override a recipe key with a TOML value, e.g. --set train.steps=500 (repeatable)."


@cli.command()
@click.argument("recipe", required=False, type=UserPath())
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--out", type=UserPath(), help="Run directory (default: output.dir); never overwritten.")
@click.option("--resume", type=UserPath(), metavar="RUN_DIR", help="Continue the run in RUN_DIR from its latest checkpoint.")
@click.option("--quiet", is_flag=True, help="Only the final summary and errors.")
@click.option("--nproc", type=click.IntRange(1), metavar="N",
              help="Train with N processes on this machine, e.g. one per GPU (runs torchrun; train.batch_size is per process).")
def run(recipe: str | None, overrides: tuple[str, ...], out: str | None, resume: str | None, quiet: bool, nproc: int | None) -> None:
    """Train what RECIPE says, or continue a run with --resume RUN_DIR.

    \b
    Examples:
      i2i run recipes/gray2color.toml
      i2i run recipes/denoise.toml --set train.steps=2000 --set train.device='cuda'
      i2i run --resume runs/gray2color --set train.steps=4000
      i2i run recipes/gray2color.toml --nproc 4
    """
    from .engine.run import train

    if resume is None and recipe is None:
        raise UserError("give a recipe file (i2i run recipes/gray2color.toml) or --resume RUN_DIR")
    if recipe is not None and Path(recipe).is_dir():  # a run folder, most likely: say how to continue it
        if (Path(recipe) / "recipe.toml").is_file():
            raise UserError(f"{recipe}: a run folder, not a recipe file; to continue it: i2i run --resume {recipe}")
        raise UserError(f"{recipe}: a folder, not a recipe file; give the .toml file (e.g. recipes/gray2color.toml)")
    if resume is not None and recipe is not None:
        raise UserError("give either a recipe or --resume RUN_DIR, not both (a resumed run uses its saved recipe)")
    if resume is not None and out is not None:
        raise UserError(f"--out does not apply to --resume: a resumed run continues in {resume}; leave --out out")
    if nproc is not None and nproc > 1:
        sys.exit(_launch(nproc, recipe, overrides, out, resume, quiet))
    result = train(recipe, out=out, resume=resume, overrides=overrides, quiet=quiet)
    if quiet and result.run_dir is not None and _rank_prefix() == "":
        values = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
        click.echo(f"i2i: {result.status} at step {result.step} in {result.run_dir}" + (f": {values}" if values else ""))


def _launch(nproc: int, recipe: str | None, overrides: tuple[str, ...], out: str | None, resume: str | None, quiet: bool) -> int:
    """``i2i run --nproc N``: the same command, without --nproc, in N torchrun processes."""
    from .engine.distributed import launch_environment, run_local

    if launch_environment().world_size > 1:
        raise UserError("--nproc starts its own processes; leave it out when running under torchrun or srun")
    # a mistake is one line here, not one per process plus torchrun's report: the recipe (with
    # the checks a run makes before its first step, as i2i validate does), its data folders, and
    # for a resume, the run and its checkpoint
    from .data.sources import check_folders_for_processes, resolve_data_folders
    from .engine.checkpoint import find_checkpoint
    from .engine.components import check_recipe
    from .recipe import blamed_on_recipe, load_recipe

    if resume is not None:
        from .engine.run import check_resume, check_run_folder
        from .engine.run_lock import run_folder_locked

        check_run_folder(Path(resume))
        with run_folder_locked(Path(resume)):  # a run still training: said now, not by a worker under torchrun
            pass
        resolved = load_recipe(Path(resume) / "recipe.toml", overrides)
        check_resume(Path(resume), find_checkpoint(resume), resolved, overrides, nproc)
    else:
        resolved = load_recipe(recipe, overrides) if recipe is not None else None
    if resolved is not None:
        task = check_recipe(resolved, resuming=resume is not None).task
        from .engine.device import resolve_device
        from .engine.trainer import check_sync_bn

        check_sync_bn(resolved, resolve_device(resolved["train"]["device"]), nproc)
        if resume is not None:
            from .engine.run import check_data_folders_there

            check_data_folders_there(resolved, Path(resume))
        with blamed_on_recipe(resolved, overrides_only=True):
            if resume is None:
                check_folders_for_processes(resolved["data"], resolved["train"]["seed"], nproc, task.side_by_side)
            else:  # the run's recorded split decides what each process reads; check_data_folders_there looked
                resolve_data_folders(resolved["data"], task.side_by_side)
    args = ["run", *([recipe] if recipe else []), *(a for o in overrides for a in ("--set", o))]
    args += [*(["--out", out] if out is not None else []), *(["--resume", resume] if resume else []), *(["--quiet"] if quiet else [])]
    return run_local(nproc, args)


@cli.command()
@click.argument("recipe", type=UserPath(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def validate(recipe: str, overrides: tuple[str, ...]) -> None:
    """Check RECIPE and print it resolved, with every default filled in.

    Runs the checks a run makes before its first step, short of reading the data: the
    components build, the crop size fits the networks, the losses can train them, one image
    goes through G and D (on the CPU), the data folders exist and hold image files.

    \b
    Example:
      i2i validate recipes/gray2color.toml --set train.steps=10
    """
    from . import validate as validated
    from .recipe import dumps_toml

    resolved = validated(recipe, overrides)
    for note in resolved.notes:
        click.echo(f"i2i: note: {note}", err=True)
    click.echo(dumps_toml(dict(resolved)), nl=False)


# -- plugins / list ------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Show loaded, failed and skipped plugins and what each provides.

    \b
    Example:
      i2i plugins --json
    """
    from .plugins import host

    infos = list(host().plugins.values())
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in infos], indent=2))
        return
    for p in infos:
        origin = f"{p.distribution} {p.version}" if p.distribution else "registered in-process"
        kind = "built-in" if p.builtin else "third-party"
        empty = " (no @i2i.hookimpl hooks: registers nothing)" if p.status == "loaded" and not p.hooks else ""
        click.echo(f"{p.name}  ({p.module}; {origin}; {kind})  {p.status}{empty}")
        if p.error:
            click.echo(f"    error: {p.error}")
        for why in p.refused:
            click.echo(f"    not registered: {why}")
        for comp_kind, names in p.components.items():
            click.echo(f"    {comp_kind}: {', '.join(names)}")


class _KindChoice(click.Choice):
    """A component kind, plural as listed (``generators``), or singular as a recipe table names
    one (``generator``)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        plural = {singular: kind for kind, singular in SINGULAR.items()}.get(str(value).lower(), str(value).lower())
        if plural in ("plugins", "plugin"):
            self.fail("'plugins' is not a kind of component: i2i plugins lists the plugins and what each registers",
                      param, ctx)
        if plural not in self.choices:
            from .errors import did_you_mean

            meant = did_you_mean(plural, [*self.choices, *SINGULAR.values()])
            if meant:  # 'generatr': the kind meant, before Click's list of all six
                self.fail(f"{value!r} is not a kind of component{meant}", param, ctx)
        return super().convert(plural, param, ctx)


class _CheckpointChoice(click.Choice):
    """``latest`` or ``best``; a step (``20``, ``step_0000020``, the reference's ``--epoch 20``)
    is told how to name one: as the run, by its folder."""

    def __init__(self) -> None:
        super().__init__(["latest", "best"])

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        text = str(value).strip()
        digits = text.removeprefix("step_")
        if digits.isdigit():
            self.fail(f"{text!r} is not one of 'latest', 'best'; for the checkpoint of step {int(digits)}, give its "
                      f"folder in place of the run: RUN/checkpoints/step_{int(digits):07d}", param, ctx)
        return super().convert(value, param, ctx)


@cli.command("list")
@click.argument("kind", type=_KindChoice(KINDS), metavar="KIND")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(kind: str, pattern: str | None, as_json: bool) -> None:
    """List the KIND of components plugins provide, with their options; a PATTERN that
    matches one component also shows its documentation (what each option means). KIND is
    generators, discriminators, tasks, losses, metrics or callbacks, or singular (generator,
    task, ...).

    \b
    Examples:
      i2i list generators
      i2i list losses 'l*'
      i2i list tasks denoise
    """
    import inspect
    import textwrap

    from .plugins import registry

    components = registry().components(kind, pattern)
    if as_json and (components or not pattern):
        click.echo(json.dumps([
            {"name": c.name, "plugin": c.plugin, "distribution": c.distribution, "version": c.version,
             "description": c.description,
             "options": {o.name: {"type": o.type_name, "default": o.default} for o in c.options.values()}}
            for c in components
        ], indent=2, default=str))
        return
    if not components:
        from .plugins import host

        failed = [p.name for p in host().plugins.values() if p.status == "failed"]
        why = f"; plugin(s) {', '.join(failed)} failed to load (i2i plugins says why)" if failed else ""
        if not pattern:
            click.echo(f"no {kind} are registered{why}")
            return
        from .errors import did_you_mean

        meant = "" if any(c in pattern for c in "*?[") else did_you_mean(pattern, registry().names(kind))
        if as_json:  # still JSON on stdout, for the program reading it
            click.echo("[]")
        click.echo(f"i2i: no {kind} match {pattern!r}{meant}{why}", err=True)  # status 1, as grep finding nothing
        sys.exit(1)
    for c in components:
        click.echo(f"{c.name}  [{c.plugin}]  {c.description}{_listing_marks(c)}")
        if not (kind in ("metrics", "callbacks") and not c.defaults):  # named without options: the defaults run
            for option in c.options.values():
                click.echo(f"    {option.name} = {_format_default(option.default)}  ({option.type_name})")
    if len(components) == 1 and pattern:  # one component asked for by name: what its options mean, in its author's words
        rest = inspect.cleandoc(components[0].doc).partition("\n\n")[2].strip()  # after the summary paragraph
        if rest:
            click.echo("\n" + textwrap.indent(rest, "    "))


def _listing_marks(component: Any) -> str:
    """What ``i2i list`` adds after a description: a callback attached to every run, a preset
    of another name (an alias registered with ``defaults``)."""
    from .plugins import registry

    marks = []
    if component.kind == "callbacks" and getattr(component.factory, "autoload", False):
        marks.append("attached to every run (autoload)")
    if component.defaults:  # its own plugin's bare factory first; another plugin's (a preset of a built-in) else
        bases = [c for c in registry().components(component.kind) if c.factory is component.factory and not c.defaults]
        base = [_recipe_name(c) for c in bases if c.plugin == component.plugin] or [_recipe_name(c) for c in bases]
        if base:
            marks.append(f"a preset of {base[0]}")
    twins = [_recipe_name(c) for c in registry().components(component.kind)  # an alias: one component, two names
             if c.factory is component.factory and c.defaults == component.defaults and c.plugin == component.plugin
             and c.name != component.name]
    if twins:
        marks.append(f"the same as {', '.join(twins)}")
    return f"  [{'; '.join(marks)}]" if marks else ""


def _recipe_name(component: Any) -> str:
    """The name a recipe gives to mean ``component``: its bare name, or ``plugin:name`` where the
    bare name means another's (a built-in's, which a plugin's clash leaves it, or several)."""
    from .errors import UserError
    from .plugins import registry

    try:
        if registry().get(component.kind, component.name) is component:
            return component.name
    except UserError:
        pass
    return component.qualified_name


def _format_default(value: Any) -> str:
    from .options import format_value

    return format_value(value) if value is not None else "(none)"


# -- translate / eval ----------------------------------------------------------------------------
def _tile_option(value: str) -> int | str:
    """``--tile``: ``auto`` or a number of pixels (0 = never tile)."""
    if value == "auto":
        return value
    try:
        tile = int(value)
    except ValueError:
        tile = -1
    if tile < 0:
        raise click.BadParameter(f"{value!r}: use auto, 0 (no tiling) or a tile size in pixels such as 512")
    return tile


@cli.command()
@click.argument("model_path", metavar="RUN_DIR_OR_CHECKPOINT", type=UserPath())
@click.argument("inputs", nargs=-1, required=True, type=UserPath())
@click.option("--out", "out_dir", required=True, type=UserPath(file_okay=False), help="Folder for the results.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N | mps")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1), help="Images per batch (same-size images are batched).")
@click.option("--format", "fmt", default="png", show_default=True,
              type=click.Choice(["png", "jpg", "jpeg", "webp", "tif", "tiff"], case_sensitive=False),
              help="Output format (jpeg and tiff are jpg and tif).")
@click.option("--checkpoint", "which", default="latest", show_default=True, type=_CheckpointChoice(), help="Which checkpoint of a run directory.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--skip-existing", is_flag=True, help="Leave out inputs whose output is already there (to finish a "
                                                    "translation that stopped).")
@click.option("--tile", default="auto", show_default=True, callback=lambda ctx, param, value: _tile_option(value),
              help="Translate large images in overlapping tiles of this many px (bounds memory); "
                   "auto tiles images above ~4 megapixels in 1024 px tiles, 0 never tiles. Counted "
                   "at the network's size (superres: the enlarged image).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def translate(model_path: str, inputs: tuple[str, ...], out_dir: str, device: str, batch_size: int, fmt: str, which: str,
              overwrite: bool, skip_existing: bool, tile: int | str, quiet: bool) -> None:
    """Apply a trained model to image files and folders (recursively).

    Outputs keep each input's size (superres: task.scale times larger) and file stem.
    Existing files are never replaced unless --overwrite is given.

    \b
    Example:
      i2i translate runs/gray2color old_photos/ --out coloured/
    """
    from .engine.device import resolve_device
    from .model import load
    from .translate import translate_files

    _one_process_only()
    resolve_device(device, where="--device")
    from .data.decode import is_image_file

    if Path(model_path).is_file() and is_image_file(Path(model_path)):  # `i2i translate photo.jpg runs/x`: the run first
        from .data.sources import is_run_folder

        run = next((given for given in inputs if Path(given).is_dir() and is_run_folder(Path(given))), None)
        if run is not None:
            raise UserError(f"{model_path}: a file, not a run folder; the run folder comes first: i2i translate "
                            f"{shell_path(run)} {shell_path(model_path)} ... --out {shell_path(out_dir)}")
    model = load(model_path, device=device, which=which)
    fmt = {"jpeg": "jpg", "tiff": "tif"}.get(fmt.lower(), fmt.lower())
    from .engine.run import interrupt_on_termination

    with interrupt_on_termination():
        report = translate_files(model, list(inputs), out_dir, batch_size=batch_size, fmt=fmt,
                                 overwrite=overwrite, progress=not quiet, tile=tile, skip_existing=skip_existing)
    there = f", left {report.already_there} already there" if skip_existing else ""
    click.echo(f"i2i: wrote {report.written} image(s) to {out_dir}{there}"
               + (f", skipped {report.skipped} unreadable" if report.skipped else ""), err=quiet)


@cli.command("eval")
@click.argument("run_dir", type=UserPath())
@click.option("--data", "data_dir", type=UserPath(), help="Evaluate on this folder instead of the run's validation images.")
@click.option("--pair-data", "pair_dir", type=UserPath(), metavar="DIR",
              help="The folder holding, under the same names, the other image of each pair in --data: for a run "
                   "trained with data.pair_source, or, for a task that makes its own pairs, the clean images of "
                   "degraded ones made elsewhere (real noisy photos and their clean references).")
@click.option("--checkpoint", "which", default="latest", show_default=True, type=_CheckpointChoice(),
              help="Which checkpoint of a run directory (best: the best validation score so far).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N | mps")
@click.option("--crop", type=int, metavar="N", default=None, callback=lambda ctx, param, value: _checked_crop(value),
              help="Score each image's centre N x N px (N of 8 or more); 0 = whole images.  "
                   "[default: the run's eval.crop]")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change a task option (task.sigma=25 scores a blind denoiser at one noise level) or "
                   "eval.batch_size / eval.max_images / eval.metrics.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--per-image", "per_image_csv", type=UserPath(dir_okay=False), metavar="FILE.csv",
              help="Also write each image's scores (and its baselines') to this new CSV file.")
@click.option("--save-images", type=UserPath(file_okay=False), metavar="DIR",
              help="Write each scored image's input, output and target as PNGs into DIR/input, DIR/output, "
                   "DIR/target (DIR new or empty).")
def eval_cmd(run_dir: str, data_dir: str | None, which: str, device: str, crop: int | None, overrides: tuple[str, ...],
             as_json: bool, per_image_csv: str | None, save_images: str | None, pair_dir: str | None) -> None:
    """Score a trained run with its task's metrics, next to the task's baselines.

    \b
    Examples:
      i2i eval runs/denoise
      i2i eval runs/denoise --data my_test_photos/ --crop 0 --json
      i2i eval runs/blind-denoise --set task.sigma=50
      i2i eval runs/denoise --data test/ --per-image scores.csv --save-images results/
    """
    from .engine.device import resolve_device
    from .evaluation import check_csv_target, evaluate_run, write_per_image_csv
    from .plugins import plugin_output_to_stderr

    _one_process_only()
    resolve_device(device, where="--device")
    if per_image_csv is not None:
        if save_images is not None and Path(per_image_csv).resolve() == Path(save_images).resolve():
            raise UserError(f"{per_image_csv}: given to both --per-image (a file) and --save-images (a folder); give "
                            "each its own path")
        check_csv_target(Path(per_image_csv), Path(save_images) if save_images is not None else None)
    from .engine.run import interrupt_on_termination

    try:
        with plugin_output_to_stderr() if as_json else contextlib.nullcontext(), interrupt_on_termination():
            result = evaluate_run(run_dir, data_dir=data_dir, which=which, device=device, crop=crop,
                                  overrides=overrides, per_image=per_image_csv is not None, save_images=save_images,
                                  pair_dir=pair_dir)
    except (KeyboardInterrupt, OSError) as exc:  # Ctrl-C (SIGTERM, SIGHUP) or a full disk while saving images
        if save_images is not None and (isinstance(exc, KeyboardInterrupt) or exc.errno in WRITE_TROUBLE):
            _say_what_was_saved(Path(save_images))
        raise
    if per_image_csv is not None:
        write_per_image_csv(result["per_image"], Path(per_image_csv))
    broken = [name for name, value in result["metrics"].items() if not math.isfinite(value)]
    if broken:  # a metric's bug, or a generator that outputs NaN: not a score to print without a word
        click.echo(f"i2i: warning: metric(s) {', '.join(broken)} gave NaN or infinite values on these images (a "
                   "metric that cannot score some image, or outputs gone NaN); --per-image FILE.csv shows which", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(format_table(result))
    if per_image_csv is not None:
        click.echo(f"i2i: wrote the scores of {len(result['per_image'])} image(s) to {per_image_csv}", err=as_json)
    if save_images is not None:
        click.echo(f"i2i: saved the inputs, outputs and targets of {result['images']} image(s) to {save_images}",
                   err=as_json)


def _say_what_was_saved(folder: Path) -> None:
    """An evaluation stopped before its end: what its --save-images folder holds, and that the
    same command needs that folder gone (i2i eval replaces no file)."""
    try:  # an image counts once all its PNGs are there (a stop between them leaves some)
        roles = [sub for sub in (folder / "input", folder / "output", folder / "target") if sub.is_dir()]
        names = [{p.name for p in sub.rglob("*.png") if not p.name.startswith(".")} for sub in roles]
        saved = len(set.intersection(*names)) if names else 0
    except OSError:
        return
    if saved:
        click.echo(f"i2i: stopped with the inputs, outputs and targets of {saved} image(s) saved in {folder} (each "
                   "written whole) and no scores; to score again, delete that folder or give another --save-images",
                   err=True)


def _checked_crop(crop: int | None) -> int | None:
    from .evaluation import crop_problem

    problem = crop_problem(crop)
    if problem:
        raise click.BadParameter(problem)
    return crop


def format_table(result: dict[str, Any]) -> str:
    """``i2i eval``'s table: the model's metrics above each baseline's, under a line saying what
    was scored (which images, crop, step), so two tables are not compared unknowingly."""
    rows = [("model", result["metrics"])] + list(result["baselines"].items())
    names = list(result["metrics"])
    # a value of the targets (colourfulness_target) is the same in every row: one row of its own,
    # under the metric it measures, rather than a column that reads as each row's score
    of_targets = [n for n in names if n.endswith("_target") and n.removesuffix("_target") in names]
    if of_targets:
        names = [n for n in names if n not in of_targets]
        rows.append(("target images", {n.removesuffix("_target"): result["metrics"][n] for n in of_targets}))
    width = max(len(r[0]) for r in rows) + 2
    crop, images = result.get("crop", 0), result["images"]
    smaller, within = result.get("smaller_than_crop", 0), result.get("within_crop", 0)
    scored = f"centre {crop} x {crop} px crops" if crop else "whole images"
    if crop and result.get("scored_crop", crop) != crop:  # cut down to a multiple of the task's scale
        scored = (f"centre {result['scored_crop']} x {result['scored_crop']} px crops (a crop of {crop} cut down to a "
                  "multiple of the task's scale)")
    if crop and within >= images:
        scored = f"whole images, all within the {crop} px crop"
    elif crop and smaller:
        scored += f"; {smaller} image(s) smaller than {crop} px on a side, cropped only to fit"
    if result.get("resize"):
        scored = f"resized to {result['resize']} px on the shorter side (data.resize), then {scored}"
    changed = "".join(f", {o}" for o in result.get("overrides", []))
    lines = [f"{result['task']} on {result['images']} image(s) ({result['source']}; {scored}), step {result['step']}{changed}",
             "".ljust(width) + "".join(n.rjust(max(12, len(n) + 2)) for n in names)]
    for label, values in rows:
        lines.append(label.ljust(width) + "".join(
            (f"{values[n]:.4f}" if n in values else "-").rjust(max(12, len(n) + 2)) for n in names))
    return "\n".join(lines)


def _add_plugin_commands() -> None:
    """Plugins' commands join ``cli`` before click parses: ``i2i --help`` lists them."""
    import os

    from . import plugins

    try:
        plugins.host().add_commands(cli)
    except UserError as exc:  # strict mode: a broken plugin is an error, except where one looks into it
        if not _describes_only(sys.argv[1:]):
            _say_error(f"i2i: error: {exc}")
            sys.exit(exc.exit_code)
        os.environ["I2I_STRICT_PLUGINS"] = "0"  # `i2i plugins` and --help show the failure, as a warning
        plugins.reset()
        plugins.host().add_commands(cli)


def _describes_only(args: list[str]) -> bool:
    """``i2i``, ``i2i --help``, ``i2i CMD --help``, ``i2i --version`` and ``i2i plugins``: what a
    user runs to find out why a plugin failed, so strict mode must not refuse them too."""
    return not args or args[0] in ("plugins", "--version") or any(arg in ("--help", "-h") for arg in args)


class _OutputThatOutlivesItsReader:
    """stdout or stderr that goes quiet, rather than raising, once its reader is gone (``i2i run
    ... | head``, a closed SSH terminal): the run carries on and checkpoints as it would have.
    Before, the first progress line after that was a BrokenPipeError that ended the run without
    a checkpoint."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.lost: OSError | None = None  # a full disk (not a reader gone): what the output was lost to

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:  # EPIPE, EIO; ENOSPC
            self._gone_quiet(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self._gone_quiet(exc)

    def _gone_quiet(self, exc: OSError) -> None:
        import errno

        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and self.lost is None:
            self.lost = exc  # `i2i eval --json > scores.json` on a full disk: said at the end, not lost silently
        self._to_devnull()

    def _to_devnull(self) -> None:
        """Point the file descriptor at /dev/null, so what is buffered (flushed again at exit,
        past this wrapper) goes there quietly too."""
        import os

        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main() -> None:
    """Console-script entry point."""
    import os

    # a stream closed before start (`i2i run ... >&-` from cron) is None: written to, that was a
    # traceback, and flushed at exit a status of 120 for a run that went well
    streams = [stream if stream is not None else open(os.devnull, "w") for stream in (sys.stdout, sys.stderr)]  # noqa: SIM115
    sys.stdout, sys.stderr = (_OutputThatOutlivesItsReader(stream) for stream in streams)
    try:
        _add_plugin_commands()  # loads the plugins, and with them torch: a second or two
        try:
            cli.main(prog_name="i2i")
        except SystemExit as done:
            _fail_when_stdout_was_lost(done.code)
            raise
    except UserError as exc:  # raised before a command runs (e.g. plugin loading)
        _print_traceback_if_asked()
        _say_error(f"i2i: error: {exc}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before a command took over its handling (torch still loading)
        click.echo("i2i: interrupted", err=True)
        sys.exit(130)
    finally:
        import atexit

        # registered last, so run first of the exit handlers (torch's were registered as it loaded)
        atexit.register(_quit_quietly_on_ctrl_c)


def _fail_when_stdout_was_lost(code: Any) -> None:
    """A command that went well but whose stdout could not be written (a full disk under
    ``i2i eval --json > scores.json``): an empty file and status 0 read as success. Exit 1, as a
    full disk elsewhere does. A reader gone (``| head``) is no failure."""
    sys.stdout.flush()  # what is still buffered meets the disk now, through the wrapper
    lost = getattr(sys.stdout, "lost", None)
    if lost is not None and code in (0, None):
        _say_error(f"i2i: error: the command's output could not be written to stdout ({lost.strerror or lost}); "
                   "it is incomplete")
        sys.exit(1)


def _quit_quietly_on_ctrl_c() -> None:
    """Once the command is done, only the exit handlers are left (torch's among them): a Ctrl-C
    while they ran printed a traceback from inside one. It ends the process at once instead, as
    interrupted; everything i2i had to write is written by then. So does a SIGTERM or SIGHUP
    that i2i's own handler would have taken (torchrun ends the other workers so once one failed)."""
    import os
    import signal
    import threading

    def quit_now(signum: int, frame: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())):
        current = signal.getsignal(sig)
        if current is signal.SIG_IGN:
            # an --nproc worker that left its status for the launcher ignores its signals from then
            # on: exiting 130 on a second Ctrl-C during its exit made torchrun report a failure
            continue
        if sig == signal.SIGINT or callable(current):
            signal.signal(sig, quit_now)
