"""The kinds of loss term the engine knows how to use.

A loss plugin's factory returns an instance of one of these; the engine decides from the kind
where the term goes (G step, D step, or both) and multiplies it by the recipe's ``weight``.
Discriminator outputs reach losses as lists of logit tensors (one per scale).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn


class ReconstructionLoss(nn.Module):
    """Compares the generator's output with the target, in the network's value range (G step).

    A loss that also needs the generator's input (an inpainting mask carried as an input
    channel, a consistency term of super-resolution) declares a parameter named ``input``:
    ``forward(self, fake, target, input)``; the engine then passes it (see :func:`takes_input`).
    """

    def forward(self, fake: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class AdversarialLoss(nn.Module):
    """A GAN objective with a discriminator half and a generator half.

    ``d_real`` and ``d_fake`` are lists of logit tensors, one per discriminator scale. A
    relativistic objective (ESRGAN's) declares ``g_loss(self, d_fake, d_real)``: the engine
    then also gives G's half the discriminator's logits on the real pair (computed without
    gradient), which it does not compute for a ``g_loss(d_fake)``.
    """

    def d_loss(self, d_real: list[Tensor], d_fake: list[Tensor]) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def g_loss(self, d_fake: list[Tensor]) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class Regularizer(nn.Module):
    """A discriminator penalty (R1, gradient penalty), added in the D step every ``every`` steps.

    ``discriminator`` maps a batch to a list of logit tensors. The engine multiplies the result
    by ``weight * every`` (lazy regularisation, as in StyleGAN2) on the steps it is applied.
    """

    every: int = 1

    def forward(self, discriminator: Callable[[Tensor], list[Tensor]], real: Tensor, fake: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class FeatureMatchingLoss(nn.Module):
    """Compares discriminator features of real and fake pairs (pix2pixHD), in the G step.

    Needs a discriminator that supports ``forward(x, return_features=True)``.
    """

    def forward(self, real_features: list[Tensor], fake_features: list[Tensor]) -> Tensor:  # pragma: no cover
        raise NotImplementedError


LOSS_KINDS = (ReconstructionLoss, AdversarialLoss, Regularizer, FeatureMatchingLoss)


def takes_input(function: Callable[..., Any]) -> bool:
    """Whether a loss's ``forward`` or a metric declares a parameter named ``input`` after its
    two images (or keyword-only): the engine passes the generator's input (``input=...``) only
    to those. Two-argument ones stay as they are, ``forward(self, input, target)`` included, as
    torch's own losses name the prediction. A module's ``forward`` is the one looked at."""
    return takes_named(function, "input", after=2)


def takes_named(function: Callable[..., Any], name: str, after: int) -> bool:
    """Whether ``function`` (a module's ``forward``) declares a parameter ``name`` after its
    first ``after`` positional ones, or keyword-only: one the engine passes by name."""
    if isinstance(function, nn.Module):
        function = function.forward
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature
        return False
    return any(p.name == name and (p.kind == p.KEYWORD_ONLY or (i >= after and p.kind == p.POSITIONAL_OR_KEYWORD))
               for i, p in enumerate(parameters))


def unmet_parameters(function: Callable[..., Any], passed: int, given: str = "input") -> list[str]:
    """The parameters of ``function`` (a module's ``forward``) that a call with ``passed``
    positional arguments, plus ``given=...`` where it declares one, leaves without a value:
    ``forward(self, fake, target, mask)`` failed only at the first step, with Python's riddle."""
    if isinstance(function, nn.Module):
        function = function.forward
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return []
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return []
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [p.name for i, p in enumerate(positional) if i >= passed and p.default is p.empty and p.name != given] + \
        [p.name for p in parameters if p.kind == p.KEYWORD_ONLY and p.default is p.empty and p.name != given]


def positional_names(function: Callable[..., Any]) -> list[str] | None:
    """The names of ``function``'s positional parameters (``self`` left out of a bound method),
    or None when it has no signature to read."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def takes_any_positional(function: Callable[..., Any]) -> bool:
    """Whether ``function`` takes ``*args``."""
    try:
        return any(p.kind == p.VAR_POSITIONAL for p in inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return True


def as_logit_list(output: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """Normalise a discriminator's output (tensor or list of tensors) to a list."""
    if isinstance(output, torch.Tensor):
        return [output]
    return list(output)
