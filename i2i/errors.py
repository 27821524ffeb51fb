"""Errors that are the user's to fix.

Anything raised as :class:`UserError` is shown by the CLI as one line and exits with status 2,
without a traceback. Everything else is a bug (ours or a plugin's) and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import difflib
import os
import re
import shlex
from collections.abc import Iterable, Iterator


class UserError(Exception):
    """A mistake in a recipe, a path, a name or an option: one line, exit status 2."""

    exit_code = 2


class RecipeError(UserError):
    """A recipe that does not parse or does not match the schema."""


class UnknownComponentError(UserError):
    """A generator, task, loss, ... name that no loaded plugin provides. ``guess``: the part of
    the message that guesses what was meant (`` (did you mean 'unet'?)``), left out where
    something knows better (a run's record of the plugin it was trained with)."""

    def __init__(self, message: str, guess: str = "") -> None:
        super().__init__(message)
        self.guess = guess


class CheckpointError(UserError):
    """A run directory or checkpoint that is missing, truncated or not an i2i checkpoint."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (a full disk, a folder made read-only): the
    machine's state, not a mistake, so exit status 1 as for other files that cannot be written."""

    exit_code = 1


class PluginError(UserError):
    """A plugin's component broke its contract (a factory that raised, a loss that returned a
    vector, a generator whose output does not fit the target): one line naming the component,
    so a user knows whom to tell. ``I2I_TRACEBACK=1`` shows where it happened."""


class GeneratorFailure(PluginError):
    """The generator failed on an image at inference or evaluation (it raised, or changed the
    image's size); callers that know the recipe name the component (``generator_named``)."""


@contextlib.contextmanager
def naming_images(doing: str, names: list[str]) -> Iterator[None]:
    """A plugin's failure on a batch names the images it failed on (``scoring rocket.jpg: ...``,
    ``translating a.png and 3 more: ...``): often one of a size or kind the others are not."""
    try:
        yield
    except PluginError as exc:
        shown = names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        raise type(exc)(f"{doing} {shown}: {exc}") from exc.__cause__


class TrainingStopped(Exception):
    """Training ended early (interrupt, ``request_stop``, non-finite loss) after saving a
    checkpoint; the message says how to resume. ``run_dir`` (an absolute path, so it still
    holds after ``os.chdir``; None when nothing was kept) and ``step`` say where it stopped."""

    exit_code = 1

    def __init__(self, message: str = "training stopped", run_dir: object = None, step: int | None = None) -> None:
        super().__init__(message)
        import os
        from pathlib import Path

        self.run_dir = Path(os.path.abspath(run_dir)) if isinstance(run_dir, (str, os.PathLike)) else run_dir
        self.step = step


class StopRequested(TrainingStopped):
    """Training stopped because it was asked to (a signal, a callback's ``request_stop()``), not
    because something failed: ``i2i run --nproc`` does not report it as a worker's failure."""


def scoring_hint(run_dir: object) -> str:
    """How the reader scores ``run_dir``: ``i2i eval RUN`` under the command line, the Python
    call for a program."""
    if called_from_the_command_line():
        return f"i2i eval {shell_path(run_dir)}"
    return f"i2i.evaluation.evaluate_run({str(run_dir)!r})"


def called_from_the_command_line() -> bool:
    """Whether an ``i2i`` command is running (its messages name options such as ``--set``),
    rather than a program calling the Python API (which gave arguments such as ``overrides``)."""
    import click

    return click.get_current_context(silent=True) is not None


@contextlib.contextmanager
def named_as_arguments(spelling: dict[str, str]) -> Iterator[None]:
    """A function the CLI shares with Python callers words its :class:`UserError` with the
    command's options (``--data``); called from Python, ``spelling`` renames them to the
    function's arguments (``data_dir``), so a program is not told about options it never saw.
    The notes and warnings said inside are worded the same way."""
    from .messages import respelled_by

    def of_a_command(match: re.Match) -> bool:  # "i2i eval's --save-images", "i2i eval RUN --data DIR": as said
        return re.search(r"\bi2i [a-z]+(?:'s)?\b[^;,()]*$", match.string[:match.start()]) is not None

    def respell(text: str) -> str:
        # "--data DIR" -> "data_dir=DIR", then the options alone: "--crop" -> "crop"
        text = re.sub(r"(--[a-z-]+) ([A-Z][A-Z_]*)\b", lambda m: f"{spelling[m[1]]}={m[2]}"
                      if m[1] in spelling and "=" not in spelling[m[1]] and not of_a_command(m) else m[0], text)
        return re.sub(r"--[a-z-]+\b", lambda m: m[0] if of_a_command(m) else spelling.get(m[0], m[0]), text)

    try:
        with respelled_by(None if called_from_the_command_line() else respell):
            yield
    except UserError as exc:
        if called_from_the_command_line():
            raise
        text = respell(str(exc))
        if text == str(exc):
            raise
        try:
            respelled = type(exc)(text)
        except TypeError:  # a subclass that takes other arguments
            respelled = UserError(text)
        raise respelled from None


#: What a write can run into that is the machine's state, not a user's mistake, with what to do:
#: one line and exit status 1 (the command line), an ``OSError`` naming the file (the API)
WRITE_TROUBLE = {errno.ENOSPC: "free some space", getattr(errno, "EDQUOT", errno.ENOSPC): "free some space within your quota",
                 errno.EROFS: "the file system is read-only",
                 errno.EFBIG: "the file grew past the largest this process may write (ulimit -f) or the file system holds"}


def for_the_caller(text: str) -> str:
    """A message about ``--set`` values as its reader gave them: unchanged under the command
    line, in :func:`in_python_terms` for a program."""
    return text if called_from_the_command_line() else in_python_terms(text)


def in_python_terms(text: str) -> str:
    """A message written for the command line's ``--set`` as the Python API says it:
    ``overrides train.stpes=3: ...`` at its start, ``did you mean the override losses.l1.weight=50?``
    and ``(the override generator.OPTION=VALUE ...)`` within."""
    if text.startswith("--set "):
        text = "overrides " + text.removeprefix("--set ")
    text = re.sub(r"\b(one|this) --set\b", r"\1 override", text)
    text = re.sub(r"(override\(s\) |, )--set ", r"\1", text)  # "the override(s) --set a=1, --set b=2"

    def unless_in_a_command(match: re.Match) -> str:  # "i2i run --resume RUN --set ..." stays a shell command
        clause = text[:match.start()].rsplit(";", 1)[-1]
        return match.group(0) if re.search(r"\bi2i \w", clause) else "the override "

    return re.sub(r"(?<![\w-])--set ", unless_in_a_command, text)


@contextlib.contextmanager
def overrides_as_an_argument() -> Iterator[None]:
    """``i2i.train`` and ``i2i.load_recipe`` take ``--set``'s values as ``overrides``: a mistake
    blamed on one reads ``overrides train.stpes=3: ...`` there, not ``--set train.stpes=3``."""
    try:
        yield
    except UserError as exc:
        text = str(exc)
        respelled_text = for_the_caller(text)
        if respelled_text == text:
            raise
        try:
            respelled = type(exc)(respelled_text)
        except TypeError:  # a subclass that takes other arguments
            respelled = UserError(respelled_text)
        raise respelled from None


def exception_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``: an exception from a plugin, fit for one line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or an empty string. A choice
    that differs only in case comes first ('UNET' means 'unet', not 'unet_128')."""
    choices = list(choices)
    same_letters = [choice for choice in choices if choice.casefold() == word.casefold()]
    close = same_letters or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def switched_on(variable: str, default: bool = False) -> bool:
    """An ``I2I_*`` environment switch: off when set to ``0``, ``false``, ``no`` or ``off`` (any
    case), on when set to anything else, ``default`` when unset or empty."""
    value = os.environ.get(variable, "").strip().lower()
    return default if not value else value not in ("0", "false", "no", "off")


def show_traceback() -> bool:
    """``I2I_TRACEBACK=1``: errors and plugin failures keep their traceback (for a plugin's author)."""
    return switched_on("I2I_TRACEBACK")


class SecondInterrupt(KeyboardInterrupt):
    """The second Ctrl-C of a run, which stops it at once (the first asks for a checkpoint and a
    stop): told apart from a KeyboardInterrupt a plugin's callback raises itself."""


def shell_path(path: str | os.PathLike) -> str:
    """``path`` as a shell argument in a command i2i suggests: quoted where needed, and ``./``
    before a name starting with ``-``, which every command would take for an option."""
    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)
