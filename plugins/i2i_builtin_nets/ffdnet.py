"""FFDNet-style denoiser (Zhang et al. 2018): DnCNN's conv stack run at half resolution.

Folding each 2x2 block of pixels into channels (``pixel_unshuffle``) lets the same stack of 3x3
convolutions see twice the context for a quarter of DnCNN's compute per pixel, which is what
makes a denoiser trainable within minutes on a CPU. FFDNet's noise-level map input is left out:
the network is blind to sigma, like DnCNN-B.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

import i2i

from .dncnn import conv_stack
from .layers import Init, Norm, check_positive, init_weights


class FFDNet(nn.Module):
    """``pixel_unshuffle`` -> ``[conv, ReLU]``, ``depth - 2`` x ``[conv, norm, ReLU]``, ``conv``
    -> ``pixel_shuffle``.

    With ``residual`` the module returns ``input - prediction`` and sets
    ``subtracts_residual = True`` (as :class:`~i2i_builtin_nets.dncnn.DnCNN`). Height and width
    must be multiples of ``scale`` (``size_multiple``); ``i2i translate`` pads to it.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, depth: int = 15, width: int = 96, scale: int = 2,
        norm: str = "none", residual: bool = True,
    ) -> None:
        super().__init__()
        check_positive("depth", depth, minimum=2)
        check_positive("width", width)
        check_positive("scale", scale)
        if residual and in_channels != out_channels:
            raise i2i.UserError(
                f"ffdnet: residual = true needs as many input as output channels "
                f"(got {in_channels} -> {out_channels}); set residual = false"
            )
        folded = scale * scale
        self.body = conv_stack(in_channels * folded, out_channels * folded, depth=depth, width=width, norm=norm)
        self.scale = scale
        self.size_multiple = scale
        self.residual = residual
        self.subtracts_residual = residual

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f"ffdnet: height and width must be multiples of {self.scale}, got {h}x{w}")
        folded = F.pixel_unshuffle(x, self.scale) if self.scale > 1 else x
        out = self.body(folded)
        out = F.pixel_shuffle(out, self.scale) if self.scale > 1 else out
        return x - out if self.residual else out


def ffdnet(
    in_channels: int,
    out_channels: int,
    *,
    depth: int = 15,
    width: int = 96,
    scale: int = 2,
    norm: Norm = "none",
    residual: bool = True,
    init: Init = "kaiming",
    init_gain: float = 0.02,
) -> nn.Module:
    """FFDNet-style denoiser: DnCNN's conv stack on 2x2-folded pixels, predicts the noise.

    Options:
        depth: number of convolutions (FFDNet: 15 for grey, 12 for colour).
        width: channels of the hidden convolutions (FFDNet: 64 for grey, 96 for colour).
        scale: pixels folded into channels along each side (2 as FFDNet; 1 is DnCNN).
        norm: ``none`` (default: trains fastest), ``batch`` or ``instance``; hidden layers only.
        residual: return ``input - prediction``; false returns the prediction itself.
        init: weight initialisation (``kaiming`` by default), ``normal``, ``xavier``, ``orthogonal``.
        init_gain: the std of ``normal``, the gain of ``xavier`` and ``orthogonal``.
    """
    net = FFDNet(in_channels, out_channels, depth=depth, width=width, scale=scale, norm=norm, residual=residual)
    return init_weights(net, init, init_gain)
