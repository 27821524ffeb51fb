"""The hooks a plugin can implement.

Each ``register_<kind>`` hook is called once per plugin, as the plugin is loaded: when the
command line starts, or at the first API call that needs components (see :mod:`i2i.plugins`);
``register_commands`` only by the command line. The ``register`` callables record which plugin provided each component, so
``i2i plugins`` and error messages can name it.
Hooks only ever gain arguments: pluggy lets an implementation accept fewer arguments than the
spec, so a plugin written against an older i2i keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

hookspec = pluggy.HookspecMarker("i2i")
hookimpl = pluggy.HookimplMarker("i2i")


@hookspec
def register_generators(register: Callable[..., None]) -> None:
    """Register generator architectures.

    :param register: ``register(name, factory, *, description=None, aliases=(), defaults=None)``.
        ``factory(in_channels: int, out_channels: int, **options) -> torch.nn.Module`` builds the
        network. The task decides the channel counts; options come from the recipe's
        ``[generator]`` table and are validated against the factory's keyword parameters
        (their annotations and defaults). The module may set ``size_multiple`` (int): ``i2i
        run`` then refuses a ``data.size`` it does not divide, and ``i2i translate`` pads inputs
        to it.
    """


@hookspec
def register_discriminators(register: Callable[..., None]) -> None:
    """Register discriminator architectures.

    :param register: as for :func:`register_generators`, with
        ``factory(in_channels: int, **options) -> torch.nn.Module``. ``in_channels`` is set by the
        engine: the task's output channels, plus its input channels for a conditional D.
        ``forward(x)`` returns logits (a tensor, or a list of tensors for several scales). To
        support the ``feature_matching`` loss, also accept ``forward(x, return_features=True)``
        and return ``(logits, features)`` with ``features`` a list of tensors. The module may
        set ``min_size`` (int), the smallest side it takes; ``i2i run`` refuses a smaller
        ``data.size``.
    """


@hookspec
def register_tasks(register: Callable[..., None]) -> None:
    """Register translation tasks.

    :param register: ``register(name, factory, ...)`` where ``factory(**options)`` returns an
        :class:`i2i.Task` (usually the Task subclass itself). Options come from the recipe's
        ``[task]`` table.
    """


@hookspec
def register_losses(register: Callable[..., None]) -> None:
    """Register loss terms.

    :param register: ``register(name, factory, ...)`` where ``factory(**options)`` returns an
        instance of one of the loss kinds in :mod:`i2i.losses` (``ReconstructionLoss``,
        ``AdversarialLoss``, ``Regularizer``, ``FeatureMatchingLoss``). The engine decides
        where a term is used from its kind.
    """


@hookspec
def register_metrics(register: Callable[..., None]) -> None:
    """Register evaluation metrics.

    :param register: ``register(name, factory, ...)`` where ``factory(**options)`` returns a
        callable ``metric(output, target) -> Tensor[B] | dict[str, Tensor[B]]`` on images in
        [0, 1], one value per image (the evaluator averages over images). A metric that declares
        a parameter named ``input`` also gets the generator's input (in the network's range: an
        inpainting mask carried as an input channel, say). It may have a
        ``summarize(means: dict[str, float]) -> dict[str, float]`` method that adds derived
        values (e.g. the colourfulness difference) after averaging.
    """


@hookspec
def register_callbacks(register: Callable[..., None]) -> None:
    """Register training callbacks.

    :param register: ``register(name, factory, ...)`` where ``factory(**options)`` returns an
        :class:`i2i.Callback`. Callbacks listed in the recipe's ``train.callbacks`` (or with
        ``autoload = True`` on the class) receive run start, logged steps, evaluations,
        checkpoints and run end.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``i2i`` command line.

    :param cli: the top-level :class:`click.Group`; call ``cli.command()`` or
        ``cli.add_command()`` on it.
    """
