"""What the restoring tasks share: a damaged photo in, the clean one out, the network
predicting the damage, which the generator subtracts from its input (``residual``).

``denoise``, ``dejpeg`` and ``superres`` subclass :class:`RestorationTask`; ``paired`` uses
:func:`residual_wrapped` for its own ``residual`` option.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

import i2i

from ._common import as_grey, as_rgb, to_signed


class ResidualGenerator(nn.Module):
    """``input - net(input)``: turns a network that predicts the noise into a denoiser.

    The wrapped network is ``.net`` (checkpoint keys start with ``net.``); its
    ``size_multiple`` is kept so ``i2i translate`` still pads inputs correctly.
    """

    subtracts_residual = True

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        if hasattr(net, "size_multiple"):
            self.size_multiple = int(net.size_multiple)

    def forward(self, input: Tensor) -> Tensor:
        residual = self.net(input)
        if not isinstance(residual, Tensor) or residual.shape != input.shape:
            return residual  # as the network returned it: the engine's check names its shape, not this subtraction
        return input - residual


def residual_wrapped(generator: nn.Module, residual: bool) -> nn.Module:
    """The generator as a restoring task's ``wrap_generator`` gives it: wrapped to subtract its
    output from its input when ``residual`` (unless the network does so itself)."""
    if not residual or getattr(generator, "subtracts_residual", False):
        return generator
    return ResidualGenerator(generator)


class RestorationTask(i2i.Task):
    """What the restoring tasks (``denoise``, ``dejpeg``, ``superres``) share: a damaged photo
    in, the clean one out, in colour or grey (``channels``, 1 or 3), the network predicting the
    damage, which the generator subtracts from its input (``residual``). A subclass declares
    its own options in its ``__init__`` and passes these two on."""

    metrics = ("psnr", "ssim")
    main_metric = "psnr"

    def __init__(self, channels: Literal[1, 3] = 3, residual: bool = True) -> None:
        if channels not in (1, 3):
            raise i2i.RecipeError(f"task.channels = {channels!r}: expected 1 | 3")
        self.channels = channels
        self.residual = residual
        self.image_channels = channels  # type: ignore[misc]  # a per-instance choice here
        self.in_channels = self.out_channels = channels

    def as_task_channels(self, image: Tensor) -> Tensor:
        """A user's RGB image in the task's channels: itself, or its ITU-R 601 grey."""
        return as_grey(image) if self.channels == 1 else as_rgb(image)

    def prepare(self, image: Tensor) -> Tensor:
        return to_signed(self.as_task_channels(image))

    def wrap_generator(self, generator: nn.Module) -> nn.Module:
        if not self.residual and getattr(generator, "subtracts_residual", False):  # dncnn, ffdnet by default
            raise i2i.RecipeError("task.residual = false: the generator subtracts its prediction from its input itself "
                                  "(its own residual option, as DnCNN does), so it would still predict the damage; set "
                                  "generator.residual = false too, for a network that outputs the whole image")
        return residual_wrapped(generator, self.residual)
