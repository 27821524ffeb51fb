"""FFDNet-style denoiser (Zhang et al. 2018): DnCNN's conv stack run at half resolution.

Folding each 2x2 block of pixels into channels (``pixel_unshuffle``) lets the same stack of 3x3
convolutions see twice the context for a quarter of DnCNN's compute per pixel. FFDNet's
noise-level map input is left out: the network is blind to sigma, like DnCNN-B. (Measured on
the sample photos it does not learn faster per step than DnCNN; the CPU recipes use a U-Net.)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

import i2i

from .dncnn import DnCNN
from .layers import Init, Norm, check_positive, init_weights


class FFDNet(DnCNN):
    """``pixel_unshuffle`` -> a :class:`~i2i_builtin_nets.dncnn.DnCNN` on the folded channels ->
    ``pixel_shuffle``.

    Folding is a permutation of pixels, so DnCNN's residual ``input - body(input)`` in the
    folded space is the same as in the image. Height and width must be multiples of ``scale``
    (``size_multiple``); ``i2i translate`` pads to it.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, depth: int = 15, width: int = 96, scale: int = 2,
        norm: str = "none", residual: bool = True,
    ) -> None:
        check_positive("scale", scale, maximum=16)
        if residual and in_channels != out_channels:
            raise i2i.UserError(
                f"ffdnet: residual = true needs as many input as output channels "
                f"(got {in_channels} -> {out_channels}); set residual = false"
            )
        folded = scale * scale
        super().__init__(in_channels * folded, out_channels * folded, depth=depth, width=width, norm=norm, residual=residual)
        self.scale = scale
        self.size_multiple = scale

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f"ffdnet: height and width must be multiples of {self.scale}, got {h}x{w}")
        if self.scale == 1:
            return super().forward(x)
        return F.pixel_shuffle(super().forward(F.pixel_unshuffle(x, self.scale)), self.scale)


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
