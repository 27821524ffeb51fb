"""i2i: image-to-image translation with pluggable networks, tasks, losses and metrics.

The public API::

    import i2i
    recipe = i2i.load_recipe("recipes/gray2color.toml", overrides=["train.steps=100"])
    run = i2i.train(recipe)              # -> i2i.Run (run_dir, metrics, generator)
    model = i2i.load(run.run_dir)        # -> i2i.Model; model(tensor), model.translate(path)
    i2i.list_components("generators")    # what plugins provide
"""

from __future__ import annotations

import functools
import os as _os
import sys as _sys

try:
    _os.getcwd()
except FileNotFoundError:  # torch cannot load from there: oneMKL's FATAL ERROR, with no hint why
    _sys.stderr.write("i2i: error: the current folder no longer exists (deleted or moved since the shell entered it); "
                      "cd to a folder that exists\n")
    raise SystemExit(2) from None

from typing import TYPE_CHECKING, Any

from .callbacks import Callback
from .errors import (
    CheckpointError, PluginError, RecipeError, TrainingStopped, UnknownComponentError, UserError, did_you_mean,
)
from .hookspecs import hookimpl
from .recipe import Recipe, parse_override
from .recipe import load_recipe as _load_recipe
from .registry import Component, Registry

if TYPE_CHECKING:  # for annotations only: the functions below import these when called
    import os
    from pathlib import Path

    from .engine.run import Run
    from .losses import AdversarialLoss, FeatureMatchingLoss, ReconstructionLoss, Regularizer
    from .model import Model
    from .plugins import PluginInfo
    from .data.decode import UnreadableImageError
    from .task import Task

#: names whose modules import torch, imported on first use (``i2i.Task``, ``from i2i import
#: Task``): ``import i2i`` stays torch-free, so the command line can answer a Ctrl-C pressed
#: while torch loads with one line instead of a traceback.
_LAZY = {
    "AdversarialLoss": "losses", "FeatureMatchingLoss": "losses", "ReconstructionLoss": "losses",
    "Regularizer": "losses", "Task": "task", "Run": "engine.run", "Model": "model",
    "UnreadableImageError": "data.decode",
}

__version__ = "0.1.0"

__all__ = [
    "AdversarialLoss", "Callback", "CheckpointError", "Component", "FeatureMatchingLoss",
    "Model", "PluginError", "Recipe", "RecipeError", "ReconstructionLoss", "Registry", "Regularizer", "Run",
    "Task", "TrainingStopped", "UnknownComponentError", "UnreadableImageError", "create_run_from_weights", "UserError", "hookimpl", "list_components", "load",
    "load_recipe", "parse_override", "register_plugin", "registry", "train", "validate",
]


def registry(kind: str | None = None) -> Any:
    """The component registry (all plugins loaded), or the components of one kind by name
    (``generators``, ``discriminators``, ``tasks``, ``losses``, ``metrics``, ``callbacks``):
    ``{name: Component}``, with ``plugin:name`` keys for names that need their plugin."""
    from .plugins import registry as _registry

    reg = _registry()
    if kind is None:
        return reg
    kind = _check_kind(kind)
    return {c.name if _resolves_to(reg, kind, c) else c.qualified_name: c for c in reg.components(kind)}


def _resolves_to(reg: Registry, kind: str, component: Component) -> bool:
    """Whether a recipe naming ``component.name`` bare gets this component."""
    try:
        return reg.get(kind, component.name) is component
    except UserError:  # a clash between third-party plugins: only qualified names work
        return False


def list_components(kind: str, pattern: str | None = None) -> list[Component]:
    """Components of a kind (``generators``, ``discriminators``, ``tasks``, ``losses``, ``metrics``, ``callbacks``)."""
    from .plugins import registry as _registry

    return _registry().components(_check_kind(kind), pattern)


def _check_kind(kind: str) -> str:
    """The kind, plural (``generator`` -> ``generators``, as ``i2i list`` takes it)."""
    from .registry import KINDS, SINGULAR

    plural = {singular: plural for plural, singular in SINGULAR.items()}.get(str(kind).lower(), str(kind).lower())
    if plural not in KINDS:
        raise UserError(f"unknown kind {kind!r}{did_you_mean(str(kind), KINDS)}; kinds: {', '.join(KINDS)}")
    return plural


def register_plugin(plugin: object, name: str | None = None) -> PluginInfo:
    """Load a plugin (a module or object with ``@i2i.hookimpl`` functions) in this process."""
    from .plugins import register_plugin as _register

    return _register(plugin, name)


@functools.wraps(_load_recipe)
def load_recipe(*args: Any, **kwargs: Any) -> Recipe:
    from .errors import overrides_as_an_argument

    with overrides_as_an_argument():  # a mistake in one of them reads "overrides k=v: ..."
        recipe = _load_recipe(*args, **kwargs)
    from .errors import for_the_caller

    recipe.notes = [for_the_caller(note) for note in recipe.notes]  # notes about --set values, as overrides
    return recipe


def validate(recipe: Recipe | dict | str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """What ``i2i validate`` checks, for a program that accepts recipes (a service queueing
    training jobs, say): the recipe loads (:func:`load_recipe`), its components build with its
    options (a factory's own checks, such as a task's noise level, run here; ``load_recipe``
    checks only names and types), the crop size fits the networks, the losses can train them,
    one image goes through G and D on the CPU, the train device and precision exist here, and
    the data folders exist and hold image files (none is read). Returns the resolved
    :class:`Recipe`, its relative data folders and ``train.init_from`` made absolute (the ones
    checked are the ones a later :func:`train` uses, from any working directory; ``output.dir``
    stays as given); a mistake raises :class:`i2i.UserError` (a :class:`RecipeError` for a
    recipe value), as :func:`train` would before its first step."""
    from .data.sources import resolve_data_folders
    from .engine.components import check_recipe
    from .engine.init_weights import pin_init_from
    from .engine.run import check_output_dir, pin_data_folders
    from .errors import overrides_as_an_argument
    from .recipe import blamed_on_recipe

    import torch

    resolved = load_recipe(recipe, overrides)
    # building the networks draws their initial weights from torch's global stream: the
    # caller's random numbers must not depend on whether it validated a recipe first
    with overrides_as_an_argument(), torch.random.fork_rng(devices=[]):
        task = check_recipe(resolved).task
        check_output_dir(resolved)
        with blamed_on_recipe(resolved):
            resolve_data_folders(resolved["data"], task.side_by_side)
    # the folders checked are the ones trained on, wherever the Recipe is trained later
    pin_init_from(resolved)
    pin_data_folders(resolved)
    return resolved


def train(
    recipe: Recipe | dict | str | os.PathLike | None,
    *,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    callbacks: list[Callback] | None = None,
    quiet: bool = False,
) -> Run:
    """Train a recipe (a :class:`Recipe`, a dict or a path to a TOML file); returns an :class:`i2i.Run`.

    ``out``: the run folder (default: the recipe's ``output.dir``); an existing one is never
    overwritten, ``-2``, ``-3``... is used instead. ``resume``: a run folder to continue from its
    latest checkpoint with its saved recipe (pass ``None`` as the recipe). ``overrides``:
    ``["train.steps=500", ...]``, TOML values as ``i2i run --set`` takes them. ``callbacks``: a
    list of :class:`i2i.Callback` instances. ``quiet``: no progress or summary on stdout.

    The returned :class:`i2i.Run` has ``run_dir`` (where the run went), ``status``
    (``"finished"``), ``step``, ``metrics`` (the last validation scores, ``{name: value}``),
    ``baselines`` (``{baseline: {metric: value}}``), ``generator`` (the trained network, EMA
    weights if kept, in eval mode) and ``recipe`` (the resolved :class:`Recipe`).

    A run stopped early (Ctrl-C, SIGTERM, a callback's ``trainer.request_stop()``, a non-finite
    loss) saves a checkpoint and raises :class:`i2i.TrainingStopped`, whose ``run_dir`` and
    ``step`` say where to resume. Mistakes in the recipe or the data raise :class:`i2i.UserError`
    subclasses before any step; an exception raised by a callback propagates unchanged, and the
    run folder resumes from its last checkpoint. The caller's default dtype, random streams and
    cuDNN/TF32 flags are restored on return.
    """
    from .engine.run import train as _train
    from .errors import overrides_as_an_argument

    with overrides_as_an_argument():
        return _train(recipe, out=out, resume=resume, overrides=overrides, callbacks=callbacks, quiet=quiet)


def load(path: str | os.PathLike, *, device: str = "auto", which: str = "latest") -> Model:
    """Load a trained model from a run directory or one of its checkpoint folders; returns an
    :class:`i2i.Model` in eval mode.

    ``device``: ``"auto"`` (a CUDA GPU, else MPS, else the CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or ``"mps"``. ``which``: ``"latest"`` or ``"best"`` (the best validation score,
    what ``i2i translate --checkpoint best`` uses; a run without one yet gives its latest, with a
    note on stderr).

    ``model(images)`` translates a tensor ``[B, C, H, W]`` or ``[C, H, W]`` (C = 3, or 1 for
    grey), float in [0, 1] or uint8, of any size, and returns floats in [0, 1];
    ``model.translate(x)`` takes a path, a PIL image or a uint8 numpy array and returns a PIL
    image of the same size (``scale`` times it for ``superres``). Attributes: ``generator`` (the torch module), ``task``, ``recipe``,
    ``checkpoint`` (the folder loaded) and ``device``. A missing or broken run raises
    :class:`i2i.CheckpointError`.
    """
    from .model import load as _load

    return _load(path, device=device, which=which)


def create_run_from_weights(recipe: Any, generator_state: dict, out: str | Path, **kwargs: Any) -> Path:
    """Write a run directory from a recipe and generator weights (for importers); returns its path."""
    from .engine.run import create_run_from_weights as _create

    return _create(recipe, generator_state, out, **kwargs)


#: submodules the README names as ``i2i.<module>.<function>``: there after a plain ``import i2i``
_SUBMODULES = ("translate", "evaluation")


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # the import system sets the attribute
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'i2i' has no attribute {name!r}")

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
