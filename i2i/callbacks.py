"""Callbacks: how plugins watch or steer a run without editing the engine.

Register a factory with the ``register_callbacks`` hook and list its name in the recipe's
``train.callbacks`` (or set ``autoload = True`` on the class to attach it to every run).
Every method is optional. ``trainer`` is the running :class:`i2i.engine.Trainer`; its
``run_dir``, ``step``, ``recipe``, ``task``, ``G``, ``D`` (None without a discriminator) and
``eval_generator`` (the EMA copy of G when the run keeps one) are there to read.

To end a run early and cleanly, call ``trainer.request_stop()`` or raise
:class:`i2i.TrainingStopped`: the run finishes the step, saves a checkpoint and
:func:`i2i.train` raises :class:`i2i.TrainingStopped` (the CLI exits with status 1). Any other
exception a callback raises (``KeyboardInterrupt`` included) stops the run where it is, without
a new checkpoint (but for ``on_evaluate``'s: the weights it was told the scores of are saved
first, as when an evaluation itself fails), and propagates to the caller with a note naming the callback, the event and
the step; the run folder resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

from .errors import PluginError, exception_line
from .messages import say


class Callback:
    """Override the events you need. Exceptions propagate and stop the run (without a new
    checkpoint; ``trainer.request_stop()`` or raising ``TrainingStopped`` stops it with one).

    ``trainer`` offers ``step``, ``total_steps``, ``run_dir``, ``recipe`` (read only),
    ``device``, ``G``, ``D`` (None without one), ``eval_generator`` and ``dist.is_main``."""

    autoload: bool = False

    def on_run_start(self, trainer: Any) -> None:
        """Before the first step (also after a resume)."""

    def on_log(self, trainer: Any, step: int, values: dict[str, float]) -> None:
        """Every ``output.log_every`` steps, with the averaged losses and health figures."""

    def on_evaluate(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        """After each evaluation on the validation images."""

    def on_checkpoint(self, trainer: Any, step: int, path: Any) -> None:
        """After a checkpoint directory has been written."""

    def on_run_end(self, trainer: Any, status: str, metrics: dict[str, float]) -> None:
        """When the run ends; ``status`` is ``finished``, ``interrupted`` or ``failed``."""


def check_callbacks(callbacks: list[Any]) -> None:
    """A class passed where an instance belongs (``callbacks=[MyCallback]``), an object with no
    event method (a plain function) or an event method that cannot take i2i's arguments is a
    ``TypeError`` before the run starts (before its folder is chosen), not at its first event."""
    events = sorted(name for name in dir(Callback) if name.startswith("on_"))
    for callback in callbacks:
        if isinstance(callback, type):
            raise TypeError(f"callbacks take instances: pass {callback.__name__}(), not the class {callback.__name__}")
        if not isinstance(callback, Callback) and not any(callable(getattr(callback, e, None)) for e in events):
            raise TypeError(f"callbacks take i2i.Callback instances (or objects with on_* event methods); "
                            f"{type(callback).__name__} has none of {', '.join(events)}")
        check_event_signatures(callback)


def warn_unknown_events(callbacks: list[Any]) -> None:
    """A callback method named like an event that does not exist (``on_logg``) is never called:
    say so, rather than leave its author wondering (after :func:`check_callbacks`)."""
    check_callbacks(callbacks)
    events = sorted(name for name in dir(Callback) if name.startswith("on_"))
    for callback in callbacks:
        for name in dir(callback):
            if name.startswith("on_") and name not in events:
                say(f"i2i: warning: callback {type(callback).__name__} has {name}, which i2i never calls "
                    f"(events: {', '.join(events)})")


def check_event_signatures(callback: Any) -> None:
    """Each event method can take the arguments i2i passes; a ``TypeError`` saying what it takes
    otherwise (checked where a plugin's callback is built, so ``i2i validate`` finds it too)."""
    for event in sorted(name for name in dir(Callback) if name.startswith("on_")):
        _check_event_signature(callback, event)


def _check_event_signature(callback: Any, event: str) -> None:
    """An event method that cannot take the arguments i2i passes (``on_log(self, trainer)``)
    failed only when first called, leaving a run folder of logs: a ``TypeError`` now, before
    the run starts, naming what it takes."""
    import inspect

    method = getattr(callback, event, None)
    if not callable(method):
        return
    expected = inspect.signature(getattr(Callback, event))
    arguments = [name for name in expected.parameters if name != "self"]
    try:
        inspect.signature(method).bind(*arguments)
    except TypeError:
        raise TypeError(f"callback {type(callback).__name__}.{event} cannot take the arguments i2i passes; it is "
                        f"def {event}(self, {', '.join(arguments)})") from None
    except ValueError:  # a builtin without a signature: left to its first call
        return


# -- what a checkpoint keeps of the callbacks ------------------------------------------------------
def _checkpoint_keys(callbacks: list[Any]) -> list[str]:
    """Each callback's key in a checkpoint: its class, numbered among callbacks of that class."""
    keys, seen = [], {}
    for callback in callbacks:
        name = f"{type(callback).__module__}.{type(callback).__qualname__}"
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


#: the callbacks built from plugins (``train.callbacks``, autoloaded): a broken one is its
#: plugin's author's to fix; one a program passed (``i2i.train(callbacks=...)``) is its own
BUILT_BY_PLUGINS: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _who_fixes(callback: Any) -> str:
    try:
        from_plugin = callback in BUILT_BY_PLUGINS
    except TypeError:  # an object that takes no weak reference was never added
        from_plugin = False
    return "report this to the plugin's author" if from_plugin else "fix it where the program passes it in callbacks="


def callback_states(callbacks: list[Any]) -> dict[str, Any]:
    """What the callbacks that define ``state_dict()`` return, for a checkpoint (JSON: a
    callback's patience count, the step it last acted at), by class. A state JSON cannot hold
    is a :class:`~i2i.errors.PluginError` naming the callback."""
    states = {}
    for key, callback in zip(_checkpoint_keys(callbacks), callbacks):
        if not callable(getattr(callback, "state_dict", None)):
            continue
        try:
            states[key] = json.loads(json.dumps(callback.state_dict(), allow_nan=False))
        except Exception as exc:
            raise PluginError(f"callback {type(callback).__name__}: state_dict() failed or gave what JSON cannot "
                              f"hold ({exception_line(exc)}); it returns a dict of numbers, strings, lists and "
                              f"dicts, which the checkpoint keeps; {_who_fixes(callback)}") from None
    return states


def load_callback_states(callbacks: list[Any], saved: dict[str, Any]) -> None:
    """Give each callback that defines ``load_state_dict`` what its ``state_dict`` gave at the
    checkpoint (a resume does, before ``on_run_start``)."""
    for key, callback in zip(_checkpoint_keys(callbacks), callbacks):
        if key in saved and callable(getattr(callback, "load_state_dict", None)):
            try:
                callback.load_state_dict(saved[key])
            except Exception as exc:
                raise PluginError(f"callback {type(callback).__name__}: load_state_dict() failed on the state the "
                                  f"checkpoint kept ({exception_line(exc)}); {_who_fixes(callback)}") from None
