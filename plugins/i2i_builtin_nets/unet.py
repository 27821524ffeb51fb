"""The pix2pix U-Net, structured as the reference's UnetGenerator so checkpoint keys match.

The network is a chain of nested skip blocks, outermost first: ``self.model`` is the outermost
block, whose ``model`` is an ``nn.Sequential`` holding the next block, and so on. Level ``i``
(0 = outermost) has ``width * min(2**i, 8)`` channels after its 4x4 stride-2 down convolution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import (
    MAX_WIDTH, Init, Norm, Output, check_positive, conv_bias, init_weights, norm_layer, output_layer,
)

#: Deepest U-Net accepted: crops must be multiples of 2**depth (65536 px at 16).
MAX_DEPTH = 16


class SkipBlock(nn.Module):
    """One U-Net level: down conv, the inner levels, up conv; concatenates its input (skip).

    Sequential layouts (the reference's, so indices, hence state-dict keys, are identical):

    - outermost: ``[down conv, inner, ReLU, up conv, tanh|identity]``, no skip, no norms;
    - innermost: ``[LeakyReLU, down conv, ReLU, up conv, norm]`` (no norm at the 1x1 bottleneck);
    - others: ``[LeakyReLU, down conv, norm, inner, ReLU, up conv, norm(, Dropout)]``.
    """

    def __init__(
        self,
        outer: int,
        inner: int,
        *,
        input: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        norm: str = "batch",
        dropout: bool = False,
        output: str = "tanh",
    ) -> None:
        super().__init__()
        self.outermost = outermost
        bias = conv_bias(norm)
        down = nn.Conv2d(input or outer, inner, kernel_size=4, stride=2, padding=1, bias=bias)
        up_in = inner if submodule is None else inner * 2
        layers: list[nn.Module]
        if outermost:
            up = nn.ConvTranspose2d(up_in, outer, kernel_size=4, stride=2, padding=1)
            middle = [] if submodule is None else [submodule]
            layers = [down, *middle, nn.ReLU(True), up, output_layer(output)]
        elif submodule is None:
            up = nn.ConvTranspose2d(inner, outer, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(True), up, norm_layer(norm, outer)]
        else:
            up = nn.ConvTranspose2d(up_in, outer, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down, norm_layer(norm, inner), submodule,
                      nn.ReLU(True), up, norm_layer(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return skip_concat(x, self.model(x))


def skip_concat(skip: Tensor, inner: Tensor) -> Tensor:
    """``torch.cat([skip, inner], 1)``, whose gradients come back dense in channels_last.

    Why: the backward of ``cat`` hands each side a channel slice of the gradient, which in
    channels_last is strided, and batch norm's backward then takes its slow generic kernel
    (an H100 at batch 64 spent 2.3 of its 29 ms per pix2pix step there). In the default memory
    format nothing changes.
    """
    if (torch.is_grad_enabled() and (skip.requires_grad or inner.requires_grad) and inner.dim() == 4
            and not inner.is_contiguous() and inner.is_contiguous(memory_format=torch.channels_last)):
        return _DenseGradCat.apply(skip, inner)
    return torch.cat([skip, inner], 1)


class _DenseGradCat(torch.autograd.Function):
    @staticmethod
    def forward(ctx, skip: Tensor, inner: Tensor) -> Tensor:
        ctx.split = skip.shape[1]
        return torch.cat([skip, inner], 1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        dense = torch.channels_last
        skip_grad, inner_grad = ctx.needs_input_grad
        return (grad[:, :ctx.split].contiguous(memory_format=dense) if skip_grad else None,
                grad[:, ctx.split:].contiguous(memory_format=dense) if inner_grad else None)


class UNet(nn.Module):
    """U-Net generator; input height and width must be multiples of ``size_multiple`` (2**depth)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        depth: int = 8,
        width: int = 64,
        norm: str = "batch",
        dropout: bool = False,
        output: str = "tanh",
    ) -> None:
        super().__init__()
        check_positive("depth", depth, maximum=MAX_DEPTH)
        check_positive("width", width, maximum=MAX_WIDTH)
        channels = [width * min(2**i, 8) for i in range(depth)]
        block: nn.Module | None = None
        for level in reversed(range(depth)):
            block = SkipBlock(
                out_channels if level == 0 else channels[level - 1],
                channels[level],
                input=in_channels if level == 0 else None,
                submodule=block,
                outermost=level == 0,
                norm=norm,
                # the reference's dropout blocks: ngf*8 -> ngf*8 levels, except the innermost
                dropout=dropout and 4 <= level < depth - 1,
                output=output,
            )
        self.model = block
        self.size_multiple = 2**depth

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def unet(
    in_channels: int,
    out_channels: int,
    *,
    depth: int = 8,
    width: int = 64,
    norm: Norm = "batch",
    dropout: bool = False,
    output: Output = "tanh",
    init: Init = "normal",
    init_gain: float = 0.02,
) -> nn.Module:
    """pix2pix U-Net: skip connections, 4x4 stride-2 convolutions (the reference's UnetGenerator).

    Options:
        depth: number of stride-2 downsamplings; H and W must be multiples of 2**depth
            (8 = the reference's unet_256, 7 = unet_128).
        width: channels after the first convolution; deeper levels double it, up to 8x.
        norm: ``batch`` (affine, running stats; SyncBatchNorm under distributed training),
            ``instance`` (no affine, no running stats) or ``none``. Convolutions have a bias
            unless followed by batch norm.
        dropout: dropout 0.5 after the innermost decoder blocks (the reference's
            ``depth - 5`` middle blocks of width 8x; none when depth <= 5).
        output: ``tanh`` (images in [-1, 1]) or ``identity`` (unbounded output).
        init: weight initialisation, ``normal`` (std ``init_gain``, the reference's), ``xavier``,
            ``kaiming`` or ``orthogonal``; batch-norm scales ~ N(1, init_gain).
        init_gain: the std of ``normal``, the gain of ``xavier`` and ``orthogonal``.
    """
    net = UNet(in_channels, out_channels, depth=depth, width=width, norm=norm, dropout=dropout, output=output)
    return init_weights(net, init, init_gain)
