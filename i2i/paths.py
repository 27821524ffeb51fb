"""What a path a user typed means: ``~`` and ``~user`` expanded, or one line saying why not
(and, for the CLI, the errors that such a path causes wherever it is first used).

Every option and recipe key that takes a path goes through :func:`user_path`, so ``~/photos``
means the same wherever it is given (``--out=~/x`` and a quoted ``'~/x'`` reach i2i unexpanded
by the shell), and ``~nobody/x`` is refused rather than made into a folder named ``~nobody``
or ending in pathlib's traceback.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from .errors import UserError


def user_path(value: str | os.PathLike, key: str = "") -> Path:
    """``value`` with a leading ``~`` or ``~user`` expanded; ``key`` (``--out``,
    ``data.source``) names where it was given, in the error for a user this machine lacks."""
    text = os.fspath(value)
    if not isinstance(text, str) or not text.startswith("~"):
        return Path(text)
    expanded = os.path.expanduser(text)
    if expanded == text:  # os.path leaves ~name alone when there is no such user
        user = text[1:].split(os.sep, 1)[0].split("/", 1)[0]
        where = f"{key} = {text}" if key else text
        raise UserError(f"{where}: there is no user '{user}' on this machine, so ~{user} names no home folder; "
                        "give the full path")
    return Path(expanded)


def path_problem(exc: BaseException) -> str | None:
    """One line for an error that a path the user gave causes wherever i2i first touches it:
    a name longer than the file system allows, or a loop of symbolic links (pathlib's
    ``resolve`` raises RuntimeError for one). None for any other error. Follows the chain of
    causes, as the error may be re-raised by the code that met it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
            where = shortened_path(exc.filename)
            return (f"{where + ': ' if where else ''}a name in this path is longer than the file system allows (at "
                    "most 255 bytes a name, 4096 a path); give a shorter one")
        if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
            where = shortened_path(exc.filename)
            return f"{where + ': ' if where else ''}a loop of symbolic links (a link that leads back to itself); give another path"
        looped = re.match(r"Symlink loop from '(.*)'$", str(exc)) if isinstance(exc, RuntimeError) else None
        if looped:
            return f"{shortened_path(looped[1])}: a loop of symbolic links (a link that leads back to itself); give another path"
        exc = exc.__cause__ or exc.__context__
    return None


def shortened_path(filename: object) -> str:
    """A path for a message, its over-long names cut to their first and last characters."""
    if not filename:
        return ""
    text = os.fsdecode(filename) if isinstance(filename, (str, bytes, os.PathLike)) else str(filename)
    return "/".join(part if len(part) <= 60 else f"{part[:24]}...{part[-24:]}" for part in text.split("/"))


def umask_hint() -> str:
    """``; this process's umask (277) ...`` when the umask keeps new folders from their owner's
    writing (a folder i2i just made, then could not write into), else ``""``."""
    mask = os.umask(0)
    os.umask(mask)
    if not mask & 0o200:
        return ""
    return (f"; this process's umask ({mask:03o}) makes the folders it creates unwritable even to their owner: "
            "run with a umask such as 022")
