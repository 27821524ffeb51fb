"""The CycleGAN ResNet generator, laid out as the reference's ResnetGenerator (same keys).

``self.model`` is one ``nn.Sequential``: ``[pad, 7x7 conv, norm, ReLU]``, two
``[3x3 stride-2 conv, norm, ReLU]`` downsamplings, ``blocks`` residual blocks (each with a
``conv_block`` Sequential), two ``[transposed conv, norm, ReLU]`` upsamplings, then
``[pad, 7x7 conv, tanh|identity]``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .layers import (
    MAX_LAYERS, MAX_WIDTH, Init, Norm, Output, Padding, check_choice, check_positive, conv_bias, init_weights,
    norm_layer, output_layer,
)

DOWNSAMPLINGS = 2


def _pad(padding: str, amount: int) -> tuple[list[nn.Module], int]:
    """The explicit padding layer (if any) and the conv's own zero padding."""
    check_choice("padding", padding, ("reflect", "replicate", "zero"))
    if padding == "reflect":
        return [nn.ReflectionPad2d(amount)], 0
    if padding == "replicate":
        return [nn.ReplicationPad2d(amount)], 0
    return [], amount


class ResidualBlock(nn.Module):
    """``x + conv_block(x)`` with ``conv_block = [pad, conv, norm, ReLU, (Dropout,) pad, conv, norm]``."""

    def __init__(self, channels: int, *, padding: str, norm: str, dropout: bool) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = []
        for second in (False, True):
            pad, p = _pad(padding, 1)
            conv = nn.Conv2d(channels, channels, kernel_size=3, padding=p, bias=bias)
            layers += [*pad, conv, norm_layer(norm, channels)]
            if not second:
                layers.append(nn.ReLU(True))
                if dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResNetGenerator(nn.Module):
    """Encoder, residual blocks at 1/4 resolution, decoder; H and W must be multiples of 4."""

    size_multiple = 2**DOWNSAMPLINGS

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        blocks: int = 9,
        width: int = 64,
        norm: str = "instance",
        dropout: bool = False,
        padding: str = "reflect",
        output: str = "tanh",
    ) -> None:
        super().__init__()
        check_positive("blocks", blocks, minimum=0, maximum=MAX_LAYERS)
        check_positive("width", width, maximum=MAX_WIDTH)
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, kernel_size=7, bias=bias),
            norm_layer(norm, width), nn.ReLU(True),
        ]
        for i in range(DOWNSAMPLINGS):
            c = width * 2**i
            conv = nn.Conv2d(c, c * 2, kernel_size=3, stride=2, padding=1, bias=bias)
            layers += [conv, norm_layer(norm, c * 2), nn.ReLU(True)]
        inner = width * 2**DOWNSAMPLINGS
        layers += [ResidualBlock(inner, padding=padding, norm=norm, dropout=dropout) for _ in range(blocks)]
        for i in range(DOWNSAMPLINGS):
            c = width * 2 ** (DOWNSAMPLINGS - i)
            layers += [
                nn.ConvTranspose2d(c, c // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias),
                norm_layer(norm, c // 2), nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, kernel_size=7), output_layer(output)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def resnet(
    in_channels: int,
    out_channels: int,
    *,
    blocks: int = 9,
    width: int = 64,
    norm: Norm = "instance",
    dropout: bool = False,
    padding: Padding = "reflect",
    output: Output = "tanh",
    init: Init = "normal",
    init_gain: float = 0.02,
) -> nn.Module:
    """CycleGAN ResNet generator: 7x7 stem, 2 downsamplings, residual blocks, 2 upsamplings.

    Options:
        blocks: number of residual blocks at 1/4 resolution (9 = resnet_9blocks, 6 = resnet_6blocks).
        width: channels after the stem; 2x and 4x after the downsamplings.
        norm: ``instance`` (no affine, no running stats; the reference's CycleGAN default),
            ``batch`` (SyncBatchNorm under distributed training) or ``none``. Convolutions have a
            bias unless followed by batch norm.
        dropout: dropout 0.5 between the two convolutions of each residual block.
        padding: padding inside residual blocks: ``reflect``, ``replicate`` or ``zero``
            (the stem and the output layer always reflect). H and W must be multiples of 4.
        output: ``tanh`` (images in [-1, 1]) or ``identity`` (unbounded output).
        init: weight initialisation, ``normal`` (std ``init_gain``, the reference's), ``xavier``,
            ``kaiming`` or ``orthogonal``; batch-norm scales ~ N(1, init_gain).
        init_gain: the std of ``normal``, the gain of ``xavier`` and ``orthogonal``.
    """
    net = ResNetGenerator(
        in_channels, out_channels, blocks=blocks, width=width, norm=norm, dropout=dropout,
        padding=padding, output=output,
    )
    return init_weights(net, init, init_gain)
