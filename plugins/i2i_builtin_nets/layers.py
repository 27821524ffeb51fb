"""Normalisation, weight initialisation and spectral norm shared by the built-in networks.

These follow the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix,
``models/networks.py``) so that parameter counts, defaults and checkpoints match it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

import i2i

Norm = Literal["batch", "instance", "none"]
Init = Literal["normal", "xavier", "kaiming", "orthogonal"]
Padding = Literal["reflect", "replicate", "zero"]
Output = Literal["tanh", "identity"]

NORMS: tuple[str, ...] = ("batch", "instance", "none")
INITS: tuple[str, ...] = ("normal", "xavier", "kaiming", "orthogonal")


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    """Factories are also called from Python, bypassing recipe validation: fail clearly."""
    if value not in choices:
        raise i2i.UserError(f"{what} = {value!r}: expected one of {', '.join(map(repr, choices))}")


#: The widest first layer a network takes: 8x the reference's 64. Wider ones (width = 1e8, a
#: slipped exponent) overflowed torch's storage size, blamed on the plugin, or took all memory.
MAX_WIDTH = 512
#: The most layers, blocks or scales a network takes: far past any published one, still buildable.
MAX_LAYERS = 1000


def check_positive(what: str, value: int, minimum: int = 1, maximum: int | None = None) -> None:
    """Refuse a size option outside ``[minimum, maximum]`` as a recipe error, not a shape error in torch."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise i2i.UserError(f"{what} = {value!r}: expected an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise i2i.UserError(f"{what} = {value!r}: expected an integer from {minimum} to {maximum}")


def norm_layer(norm: str, channels: int) -> nn.Module:
    """A normalisation layer as the reference builds it.

    Batch norm is affine with running statistics (a plain ``nn.BatchNorm2d``, which the engine
    converts to ``SyncBatchNorm`` under distributed training); instance norm has neither affine
    parameters nor running statistics; ``none`` is a parameter-free identity, so layer indices
    (and therefore checkpoint keys) are the same for every choice.
    """
    check_choice("norm", norm, NORMS)
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


def conv_bias(norm: str) -> bool:
    """Whether a convolution followed by ``norm`` gets a bias.

    Batch norm's own shift makes a bias redundant (the reference's rule, which keeps parameter
    counts equal). The reference also drops the bias with ``norm = "none"``; here a conv without
    normalisation keeps its bias (reference weights still load: see ``reference.py``).
    """
    return norm != "batch"


def output_layer(output: str) -> nn.Module:
    """The last activation: ``tanh`` bounds images to [-1, 1], ``identity`` leaves the output unbounded."""
    check_choice("output", output, ("tanh", "identity"))
    return nn.Tanh() if output == "tanh" else nn.Identity()


def init_weights(net: nn.Module, init: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights (biases 0) and batch-norm scales ~ N(1, gain), as the reference.

    ``gain`` scales ``normal`` (the std), ``xavier`` and ``orthogonal``; ``kaiming`` (fan-in,
    ReLU) ignores it.
    """
    check_choice("init", init, INITS)
    if not (isinstance(gain, (int, float)) and not isinstance(gain, bool) and 0 < gain < float("inf")):
        raise i2i.UserError(f"init_gain = {gain!r}: must be a number above 0 (the std of 'normal', the gain of 'xavier' "
                            "and 'orthogonal')")
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                weight = module.weight
                if init == "normal":
                    nn.init.normal_(weight, 0.0, gain)
                elif init == "xavier":
                    nn.init.xavier_normal_(weight, gain=gain)
                elif init == "kaiming":
                    nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
                else:
                    nn.init.orthogonal_(weight, gain=gain)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                nn.init.normal_(module.weight, 1.0, gain)
                nn.init.zeros_(module.bias)
    return net


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectrally normalise every convolution (after init: the initial weight is kept as ``original``)."""
    for module in list(net.modules()):
        if isinstance(module, nn.modules.conv._ConvNd):
            spectral_norm(module)
    return net
