"""PatchGAN, PixelGAN (the reference's NLayer/PixelDiscriminator) and pix2pixHD's multiscale D.

Every discriminator's ``forward(x, return_features=False)`` returns logits (a tensor; a list
of tensors for ``multiscale``), or with ``return_features=True`` a pair
``(logits_list, features_list)``: the activations after each hidden LeakyReLU (all scales,
coarse last), which the feature-matching loss compares between real and fake inputs.
"""

from __future__ import annotations

from torch import Tensor, nn

import i2i

from .layers import (
    MAX_LAYERS, MAX_WIDTH, Init, Norm, apply_spectral_norm, check_positive, conv_bias, init_weights, norm_layer,
)

#: The most scales a multiscale discriminator takes: each halves the image, so 8 already judges
#: a 256 px crop at 2 px
MAX_SCALES = 8


def _run(layers: nn.Sequential, x: Tensor, return_features: bool):
    """Run ``layers``; with ``return_features``, also collect each LeakyReLU's output."""
    if not return_features:
        return layers(x)
    features = []
    for layer in layers:
        x = layer(x)
        if isinstance(layer, nn.LeakyReLU):
            features.append(x)
    return [x], features


def _patchgan_min_size(n_layers: int) -> int:
    """Smallest input side giving a 1x1 patch grid: n stride-2 convs halve, two stride-1 convs take 1 each."""
    return 3 * 2**n_layers


class PatchGAN(nn.Module):
    """Classifies overlapping patches (70x70 for ``n_layers = 3``); layout as the reference's ``model``.

    ``padding``: of every 4x4 convolution, 1 as pix2pix's, 2 as pix2pixHD's (a few more patches
    along each edge; the weights are the same)."""

    def __init__(self, in_channels: int, *, n_layers: int = 3, width: int = 64, norm: str = "batch",
                 padding: int = 1) -> None:
        super().__init__()
        check_positive("n_layers", n_layers, maximum=MAX_LAYERS)
        check_positive("width", width, maximum=MAX_WIDTH)
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=padding), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(width * prev, width * mult, 4, stride=stride, padding=padding, bias=bias),
                       norm_layer(norm, width * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(width * mult, 1, 4, stride=1, padding=padding))
        self.model = nn.Sequential(*layers)
        self.n_layers = n_layers
        self.min_size = _patchgan_min_size(n_layers)

    def forward(self, x: Tensor, return_features: bool = False):
        if min(x.shape[-2:]) < self.min_size:
            raise i2i.UserError(
                f"patchgan with n_layers = {self.n_layers} needs images of at least "
                f"{self.min_size} px, got {x.shape[-2]}x{x.shape[-1]}; lower n_layers or raise data.size"
            )
        return _run(self.model, x, return_features)


class PixelGAN(nn.Module):
    """1x1 PatchGAN: judges each pixel's colour alone (layout as the reference's ``net``)."""

    def __init__(self, in_channels: int, *, width: int = 64, norm: str = "batch") -> None:
        super().__init__()
        check_positive("width", width, maximum=MAX_WIDTH)
        bias = conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, width * 2, 1, bias=bias),
            norm_layer(norm, width * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width * 2, 1, 1, bias=bias),  # no bias with batch norm: the reference's quirk
        )

    def forward(self, x: Tensor, return_features: bool = False):
        return _run(self.net, x, return_features)


class MultiscaleDiscriminator(nn.Module):
    """``scales`` PatchGANs, the k-th on the input average-pooled k times, padded by 2 (pix2pixHD's
    ``MultiscaleDiscriminator``)."""

    def __init__(
        self, in_channels: int, *, scales: int = 3, n_layers: int = 3, width: int = 64, norm: str = "instance"
    ) -> None:
        super().__init__()
        check_positive("scales", scales, maximum=MAX_SCALES)
        self.scales = nn.ModuleList(
            PatchGAN(in_channels, n_layers=n_layers, width=width, norm=norm, padding=2) for _ in range(scales)
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        # each pooling maps a side h to ceil(h / 2)
        self.min_size = (_patchgan_min_size(n_layers) - 1) * 2 ** (scales - 1) + 1
        self.n_layers = n_layers

    def forward(self, x: Tensor, return_features: bool = False):
        if min(x.shape[-2:]) < self.min_size:
            raise i2i.UserError(
                f"multiscale with {len(self.scales)} scales and n_layers = {self.n_layers} needs images "
                f"of at least {self.min_size} px, got {x.shape[-2]}x{x.shape[-1]}; "
                "lower scales or n_layers, or raise data.size"
            )
        logits: list[Tensor] = []
        features: list[Tensor] = []
        for k, d in enumerate(self.scales):
            if k:
                x = self.downsample(x)
            if return_features:
                out, feats = d(x, return_features=True)
                logits += out
                features += feats
            else:
                logits.append(d(x))
        return (logits, features) if return_features else logits


def _finish(net: nn.Module, init: str, init_gain: float, spectral: bool) -> nn.Module:
    init_weights(net, init, init_gain)
    return apply_spectral_norm(net) if spectral else net


def patchgan(
    in_channels: int,
    *,
    n_layers: int = 3,
    width: int = 64,
    norm: Norm = "batch",
    spectral_norm: bool = False,
    init: Init = "normal",
    init_gain: float = 0.02,
) -> nn.Module:
    """PatchGAN: a grid of real/fake logits for overlapping patches (70x70 with n_layers = 3).

    Options:
        n_layers: stride-2 convolutions (3 = the reference's ``basic``: 70x70 patches, a 30x30
            grid for 256 px; 1: 16x16, 2: 34x34, 4: 142x142, 5: 286x286). Images must be at
            least 3 * 2**n_layers px.
        width: channels of the first convolution; doubles per layer up to 8x.
        norm: ``batch`` (SyncBatchNorm under distributed training), ``instance`` or ``none``.
        spectral_norm: spectrally normalise every convolution (kept alongside ``norm``).
        init: weight initialisation, ``normal`` (std ``init_gain``, the reference's), ``xavier``,
            ``kaiming`` or ``orthogonal``; batch-norm scales ~ N(1, init_gain).
        init_gain: the std of ``normal``, the gain of ``xavier`` and ``orthogonal``.
    """
    return _finish(PatchGAN(in_channels, n_layers=n_layers, width=width, norm=norm), init, init_gain, spectral_norm)


def pixelgan(
    in_channels: int,
    *,
    width: int = 64,
    norm: Norm = "batch",
    spectral_norm: bool = False,
    init: Init = "normal",
    init_gain: float = 0.02,
) -> nn.Module:
    """PixelGAN: 1x1 patches; pushes colour distributions, ignores spatial structure.

    Options:
        width: channels of the first 1x1 convolution (the second has twice as many).
        norm: ``batch`` (SyncBatchNorm under distributed training), ``instance`` or ``none``.
        spectral_norm: spectrally normalise every convolution (kept alongside ``norm``).
        init: weight initialisation, ``normal`` (std ``init_gain``, the reference's), ``xavier``,
            ``kaiming`` or ``orthogonal``; batch-norm scales ~ N(1, init_gain).
        init_gain: the std of ``normal``, the gain of ``xavier`` and ``orthogonal``.
    """
    return _finish(PixelGAN(in_channels, width=width, norm=norm), init, init_gain, spectral_norm)


def multiscale(
    in_channels: int,
    *,
    scales: int = 3,
    n_layers: int = 3,
    width: int = 64,
    norm: Norm = "instance",
    spectral_norm: bool = False,
    init: Init = "normal",
    init_gain: float = 0.02,
) -> nn.Module:
    """Multiscale PatchGAN (pix2pixHD): one PatchGAN per scale, returns a list of logits.

    Its convolutions pad by 2, as pix2pixHD's do (``patchgan``'s by 1, as pix2pix's): at 96 px the
    finest scale's logits are 15x15 where a ``patchgan`` gives 10x10.

    Options:
        scales: number of PatchGANs; scale k sees the input average-pooled k times
            (3x3, stride 2, padding not counted).
        n_layers: stride-2 convolutions of each PatchGAN (see ``patchgan``).
        width: channels of each PatchGAN's first convolution.
        norm: ``instance`` (pix2pixHD's default), ``batch`` (SyncBatchNorm under distributed
            training) or ``none``.
        spectral_norm: spectrally normalise every convolution (kept alongside ``norm``).
        init: weight initialisation, ``normal`` (std ``init_gain``), ``xavier``, ``kaiming`` or
            ``orthogonal``; batch-norm scales ~ N(1, init_gain).
        init_gain: the std of ``normal``, the gain of ``xavier`` and ``orthogonal``.
    """
    net = MultiscaleDiscriminator(in_channels, scales=scales, n_layers=n_layers, width=width, norm=norm)
    return _finish(net, init, init_gain, spectral_norm)
