"""i2i: image-to-image translation with pluggable networks, tasks, losses and metrics.

The public API::

    import i2i
    recipe = i2i.load_recipe("recipes/gray2color.toml", overrides=["train.steps=100"])
    run = i2i.train(recipe)              # -> i2i.Run (run_dir, metrics, generator)
    model = i2i.load(run.run_dir)        # -> i2i.Model; model(tensor), model.translate(path)
    i2i.list_components("generators")    # what plugins provide
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .callbacks import Callback
from .errors import (
    CheckpointError, PluginError, RecipeError, TrainingStopped, UnknownComponentError, UserError, did_you_mean,
)
from .hookspecs import hookimpl
from .losses import AdversarialLoss, FeatureMatchingLoss, ReconstructionLoss, Regularizer
from .recipe import Recipe, load_recipe, parse_override
from .registry import Component, Registry
from .task import Task

if TYPE_CHECKING:  # for annotations only: the functions below import these when called
    from pathlib import Path

    from .engine.run import Run
    from .model import Model
    from .plugins import PluginInfo

__version__ = "0.1.0"

__all__ = [
    "AdversarialLoss", "Callback", "CheckpointError", "Component", "FeatureMatchingLoss",
    "Model", "PluginError", "Recipe", "RecipeError", "ReconstructionLoss", "Registry", "Regularizer", "Run",
    "Task", "TrainingStopped", "UnknownComponentError", "create_run_from_weights", "UserError", "hookimpl", "list_components", "load",
    "load_recipe", "parse_override", "register_plugin", "registry", "train",
]


def registry(kind: str | None = None) -> Any:
    """The component registry (all plugins loaded), or the components of one kind by name."""
    from .plugins import registry as _registry

    reg = _registry()
    if kind is None:
        return reg
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
    from .registry import KINDS

    if kind not in KINDS:
        raise UserError(f"unknown kind {kind!r}{did_you_mean(kind, KINDS)}; kinds: {', '.join(KINDS)}")
    return _registry().components(kind, pattern)


def register_plugin(plugin: object, name: str | None = None) -> PluginInfo:
    """Load a plugin (a module or object with ``@i2i.hookimpl`` functions) in this process."""
    from .plugins import register_plugin as _register

    return _register(plugin, name)


def train(recipe: Any, **kwargs: Any) -> Run:
    """Train a recipe (a :class:`Recipe`, a dict or a path); returns an :class:`i2i.Run`.

    Keywords: ``out`` (run folder; default ``output.dir``, never overwritten), ``resume`` (a run
    folder to continue; pass ``None`` as the recipe), ``overrides`` (``["train.steps=500"]``),
    ``callbacks`` (a list of :class:`i2i.Callback`), ``quiet``. A run stopped early raises
    :class:`i2i.TrainingStopped` after saving a checkpoint.
    """
    from .engine.run import train as _train

    return _train(recipe, **kwargs)


def load(path: str | Path, **kwargs: Any) -> Model:
    """Load a trained model from a run directory or checkpoint; returns an :class:`i2i.Model`.

    Keywords: ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) and ``which``
    (``latest`` or ``best``).
    """
    from .model import load as _load

    return _load(path, **kwargs)


def create_run_from_weights(recipe: Any, generator_state: dict, out: str | Path, **kwargs: Any) -> Path:
    """Write a run directory from a recipe and generator weights (for importers); returns its path."""
    from .engine.run import create_run_from_weights as _create

    return _create(recipe, generator_state, out, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Run":
        from .engine.run import Run

        return Run
    if name == "Model":
        from .model import Model

        return Model
    raise AttributeError(name)
