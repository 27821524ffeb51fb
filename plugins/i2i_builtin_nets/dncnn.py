"""DnCNN (Zhang et al. 2017): a plain stack of 3x3 convolutions that predicts the noise."""

from __future__ import annotations

from torch import Tensor, nn

import i2i

from .layers import MAX_LAYERS, MAX_WIDTH, Init, Norm, check_positive, conv_bias, init_weights, norm_layer


class DnCNN(nn.Module):
    """``[conv, ReLU]``, ``depth - 2`` x ``[conv, norm, ReLU]``, ``conv`` in ``self.body``.

    With ``residual`` the module returns ``input - body(input)`` and sets
    ``subtracts_residual = True`` so a task does not subtract the prediction a second time.
    Any input size works (``size_multiple = 1``).
    """

    size_multiple = 1

    def __init__(
        self, in_channels: int, out_channels: int, *, depth: int = 17, width: int = 64,
        norm: str = "batch", residual: bool = True,
    ) -> None:
        super().__init__()
        check_positive("depth", depth, minimum=2, maximum=MAX_LAYERS)
        check_positive("width", width, maximum=MAX_WIDTH)
        if residual and in_channels != out_channels:
            raise i2i.UserError(
                f"dncnn: residual = true needs as many input as output channels "
                f"(got {in_channels} -> {out_channels}); set residual = false"
            )
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(True)]
        for _ in range(depth - 2):
            conv = nn.Conv2d(width, width, 3, padding=1, bias=conv_bias(norm))
            layers += [conv, norm_layer(norm, width), nn.ReLU(True)]
        # no bias on the last layer: the predicted noise is zero-mean (as the original DnCNN)
        layers.append(nn.Conv2d(width, out_channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)
        self.residual = residual
        self.subtracts_residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x - out if self.residual else out


def dncnn(
    in_channels: int,
    out_channels: int,
    *,
    depth: int = 17,
    width: int = 64,
    norm: Norm = "batch",
    residual: bool = True,
    init: Init = "kaiming",
    init_gain: float = 0.02,
) -> nn.Module:
    """DnCNN denoiser: 3x3 conv stack that predicts the noise and subtracts it from the input.

    Options:
        depth: number of convolutions (17 in the paper for a known noise level, 20 for blind).
        width: channels of the hidden convolutions.
        norm: ``batch`` (SyncBatchNorm under distributed training), ``instance`` or ``none``;
            applies to the hidden layers only.
        residual: return ``input - prediction`` (residual learning, needs as many input as
            output channels); false returns the prediction itself.
        init: weight initialisation; ``kaiming`` (He, as the paper) by default, or ``normal``
            (std ``init_gain``), ``xavier``, ``orthogonal``; batch-norm scales ~ N(1, init_gain).
        init_gain: the std of ``normal``, the gain of ``xavier`` and ``orthogonal``.
    """
    net = DnCNN(in_channels, out_channels, depth=depth, width=width, norm=norm, residual=residual)
    return init_weights(net, init, init_gain)
