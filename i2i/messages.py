"""The notes and warnings i2i gives its user, through the standard ``logging`` logger ``i2i``.

By default they go to stderr as plain lines (``i2i: note: ...``, ``i2i: warning: ...``), as the
command line shows them. A program embedding i2i can route them into its own logging (notes
are ``INFO`` records, warnings ``WARNING``), silence the notes, or capture them per call::

    import logging
    logging.getLogger("i2i").setLevel(logging.WARNING)          # warnings only
    i2i.messages.to_your_logging()                               # your handlers, not stderr

Errors are never logged here: they are raised (see :mod:`i2i.errors`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

LOGGER = logging.getLogger("i2i")


class StderrLines(logging.Handler):
    """Each message as it is, one line on the *current* ``sys.stderr`` (so a redirect, a closed
    stream replaced by the CLI, or pytest's capture sees it), flushed at once."""

    def emit(self, record: logging.LogRecord) -> None:
        if sys.stderr is None:  # pythonw, a service: nowhere to write (print would pick stdout)
            return
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal: False for None (``sys.stdout`` under pythonw or a
    service), a closed stream, or an object without ``isatty``."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


#: The handler that writes i2i's messages to stderr unless a program takes them over.
STDERR_HANDLER = StderrLines()
STDERR_HANDLER.setFormatter(logging.Formatter("%(message)s"))
if not any(isinstance(h, StderrLines) for h in LOGGER.handlers):  # a module reloaded keeps one handler
    LOGGER.addHandler(STDERR_HANDLER)
LOGGER.propagate = False  # not twice: once here and once more by a program's root handler
if LOGGER.level == logging.NOTSET:
    LOGGER.setLevel(logging.INFO)


#: Control characters as Python writes them in a string ("\\n"): a file named "a\nb.jpg"
#: printed raw broke a message in two, and could fake a line of its own ("i2i: error: ...")
_ESCAPED = {code: repr(chr(code))[1:-1] for code in (*range(32), 127)}


def one_line(text: str) -> str:
    """``text`` with its control characters (a newline, a tab in a file name) written as escapes."""
    return text.translate(_ESCAPED)


#: How a function shared by the command line and the API words the notes said inside it for a
#: program (``--data`` as ``data_dir``): see :func:`i2i.errors.named_as_arguments`
_RESPELL: contextvars.ContextVar[Callable[[str], str] | None] = contextvars.ContextVar("i2i_respell", default=None)


@contextlib.contextmanager
def respelled_by(respell: Callable[[str], str] | None) -> Iterator[None]:
    """Inside, each note and warning passes through ``respell`` (None: as written)."""
    token = _RESPELL.set(respell)
    try:
        yield
    finally:
        _RESPELL.reset(token)


def say(text: str, above: Any = None) -> None:
    """Give the user a note or a warning; its level follows its wording (``i2i: warning:``
    and ``i2i: WARNING`` lines are warnings, the rest notes). ``above``: a tqdm progress bar
    on stderr, which the line is written above rather than through, while i2i's own
    handler writes to stderr."""
    respell = _RESPELL.get()
    if respell is not None:
        text = respell(text)
    text = one_line(text)
    head = text.lstrip()[:40].lower()
    level = logging.WARNING if head.startswith(("i2i: warning", "warning")) else logging.INFO
    if above is not None and STDERR_HANDLER in LOGGER.handlers and not LOGGER.propagate:
        if LOGGER.isEnabledFor(level):
            above.write(text, file=sys.stderr)
        return
    LOGGER.log(level, text)


class _WithoutPrefix(logging.Filter):
    """A record's text without the ``i2i: note:`` / ``i2i: warning:`` the command line shows:
    the program's own handlers name the logger and the level themselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        if LOGGER.propagate and isinstance(record.msg, str) and not record.args:  # not what collected() keeps
            record.msg = _PREFIX.sub("", record.msg, count=1)
        return True


_PREFIX = re.compile(r"^\s*i2i: (?:note|warning|WARNING): ")


def routed_to_the_programs_logging() -> bool:
    """Whether :func:`to_your_logging` sent i2i's lines to the program's handlers."""
    return LOGGER.propagate and STDERR_HANDLER not in LOGGER.handlers


def to_your_logging() -> None:
    """Send i2i's notes and warnings to the program's own logging configuration (the root
    logger's handlers) instead of stderr, as records whose text leaves out the ``i2i: note:``
    or ``i2i: warning:`` the command line starts its lines with."""
    LOGGER.removeHandler(STDERR_HANDLER)
    LOGGER.propagate = True
    if not any(isinstance(f, _WithoutPrefix) for f in LOGGER.filters):
        LOGGER.addFilter(_WithoutPrefix())


class _Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def collected() -> Iterator[list[str]]:
    """The notes and warnings said inside, kept in the list yielded instead of shown: for a step
    whose messages are passed on as a whole (shown once by one process of several, or returned
    by ``i2i.validate``)."""
    handler = _Collected()
    handlers, propagate = LOGGER.handlers[:], LOGGER.propagate
    LOGGER.handlers[:] = [handler]
    LOGGER.propagate = False
    try:
        yield handler.lines
    finally:
        LOGGER.handlers[:] = handlers
        LOGGER.propagate = propagate
