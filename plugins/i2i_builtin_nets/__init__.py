"""i2i's built-in networks: pix2pix/CycleGAN generators and discriminators, DnCNN, FFDNet.

Written as any third-party plugin would be, through ``i2i.hookimpl`` and the ``register``
callables only. The classic networks follow the reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``): same topology, parameter counts
and checkpoint keys (see :mod:`i2i_builtin_nets.reference` to load its ``latest_net_G.pth``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from torch import nn

import i2i

from .discriminators import multiscale, patchgan, pixelgan
from .dncnn import dncnn
from .ffdnet import ffdnet
from .resnet import resnet
from .unet import unet

if TYPE_CHECKING:
    import click

#: The generator factories, by the name a recipe's ``generator.name`` gives.
GENERATORS: dict[str, Callable[..., nn.Module]] = {"unet": unet, "resnet": resnet, "dncnn": dncnn, "ffdnet": ffdnet}
#: Named presets: ``alias -> (factory name, defaults, description)``. The pix2pix ones use the
#: reference's defaults (width 64, batch norm, dropout in the middle blocks).
ALIASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "unet_256": ("unet", {"depth": 8, "width": 64, "norm": "batch", "dropout": True},
                 "pix2pix U-Net for 256 px: 8 downsamplings, width 64, batch norm, dropout"),
    "unet_128": ("unet", {"depth": 7, "width": 64, "norm": "batch", "dropout": True},
                 "pix2pix U-Net for 128 px: 7 downsamplings, width 64, batch norm, dropout"),
    "unet_small": ("unet", {"depth": 5, "width": 32, "norm": "batch", "dropout": False},
                   "small fast U-Net for CPU recipes: 5 downsamplings, width 32, batch norm"),
    "resnet_9blocks": ("resnet", {"blocks": 9},
                       "CycleGAN ResNet generator with 9 residual blocks (256 px), instance norm"),
    "resnet_6blocks": ("resnet", {"blocks": 6},
                       "CycleGAN ResNet generator with 6 residual blocks (128 px), instance norm"),
}


@i2i.hookimpl
def register_generators(register: Callable[..., None]) -> None:
    for name, factory in GENERATORS.items():
        register(name, factory)
    for alias, (name, defaults, description) in ALIASES.items():
        register(alias, GENERATORS[name], defaults=defaults, description=description)


@i2i.hookimpl
def register_discriminators(register: Callable[..., None]) -> None:
    register("patchgan", patchgan)
    register("pixelgan", pixelgan)
    register("multiscale", multiscale)


@i2i.hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import import_weights

    cli.add_command(import_weights)
