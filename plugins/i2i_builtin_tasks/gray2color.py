"""Colourisation in CIE Lab: the generator sees the lightness L and predicts the colour."""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

import i2i

from ._common import as_rgb, to_signed, to_unit

#: L in [0, 100] is fed as L / 50 - 1, in [-1, 1].
L_SCALE = 50.0
#: a and b of sRGB colours lie in about [-87, 99] and [-108, 95]: ab / 110 fits in tanh's [-1, 1].
AB_SCALE = 110.0


def _float(image: Tensor) -> Tensor:
    """Lab needs at least float32: half precision loses the round trip (float64 is kept)."""
    return image.to(torch.promote_types(image.dtype, torch.float32))


#: kornia's sRGB (D65) to XYZ matrix, with each row divided by the D65 white point
#: (0.95047, 1, 1.08883), and the linear map from f(X), f(Y), f(Z) to L, a, b (plus L's -16).
_XYZ_OVER_WHITE = ((0.412453 / 0.95047, 0.357580 / 0.95047, 0.180423 / 0.95047),
                   (0.212671, 0.715160, 0.072169),
                   (0.019334 / 1.08883, 0.119193 / 1.08883, 0.950227 / 1.08883))
_F_TO_LAB = ((0.0, 116.0, 0.0), (500.0, -500.0, 0.0), (0.0, 200.0, -200.0))
_lab_constants: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor, Tensor]] = {}


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """CIE Lab (D65, L in [0, 100]) of RGB images in [0, 1]: ``kornia.color.rgb_to_lab``'s maths
    (tested equal) in a few operations on constants kept on the device.

    Why not kornia's own: it copies its constant matrices from the host at every call (11
    copies, about 120 operations in all), and the training step calls it once per batch. On an
    H100 at batch 1 the graphed colourisation step took 4.06 ms with kornia's and 3.27 ms with
    this one.
    """
    key = (rgb.device, rgb.dtype)
    if key not in _lab_constants:
        _lab_constants[key] = (torch.tensor(_XYZ_OVER_WHITE, dtype=rgb.dtype).to(rgb.device),
                               torch.tensor(_F_TO_LAB, dtype=rgb.dtype).to(rgb.device),
                               torch.tensor([-16.0, 0.0, 0.0], dtype=rgb.dtype).to(rgb.device).view(3, 1))
    to_xyz, to_lab, offset = _lab_constants[key]
    with torch.autocast(rgb.device.type, enabled=False):  # the matrices stay in full precision
        linear = torch.where(rgb > 0.04045, ((rgb + 0.055).clamp(min=0.0) / 1.055).pow(2.4), rgb / 12.92)
        xyz = torch.matmul(to_xyz, linear.flatten(-2))
        f = torch.where(xyz > 0.008856, xyz.clamp(min=0.008856).pow(1 / 3), 7.787 * xyz + 4.0 / 29.0)
        return (torch.matmul(to_lab, f) + offset).view(rgb.shape)


#: Above this many pixels (batch x height x width), and outside training, the conversions below
#: run in horizontal strips of about this size: they work pixel by pixel, and their temporaries
#: took 50 (to L) and 90 (back to RGB) bytes a pixel, 3.4 GB for a 24-megapixel photo.
STRIP_PIXELS = 1 << 20


def _in_strips(convert: Callable[..., Tensor], *images: Tensor) -> Tensor:
    """``convert(*images)`` for per-pixel conversions, strip by strip when the images are large
    and no gradient is wanted (translation, evaluation), so only a strip's temporaries are
    held; the result is the same."""
    b, _, h, w = images[0].shape
    rows = max(1, STRIP_PIXELS // max(1, b * w))
    if rows >= h or torch.is_grad_enabled():
        return convert(*images)
    first = convert(*(image[..., :rows, :] for image in images))
    out = first.new_empty((*first.shape[:-2], h, w))
    out[..., :rows, :] = first
    del first
    for y in range(rows, h, rows):
        out[..., y:y + rows, :] = convert(*(image[..., y:y + rows, :] for image in images))
    return out


def lightness(rgb: Tensor) -> Tensor:
    """Normalised L of Lab, ``[B, 1, H, W]`` in [-1, 1], of RGB or grey images in [0, 1]."""
    return _in_strips(lambda image: rgb_to_lab(as_rgb(_float(image)))[:, :1] / L_SCALE - 1, rgb)


def lab_image(l_norm: Tensor, ab_norm: Tensor | None = None) -> Tensor:
    """RGB in [0, 1] from normalised L and ab (a = b = 0, i.e. grey, when ``ab_norm`` is None)."""
    from kornia.color import lab_to_rgb

    def convert(l_norm: Tensor, ab_norm: Tensor | None = None) -> Tensor:
        l_norm = _float(l_norm)
        ab = torch.zeros_like(l_norm).expand(-1, 2, -1, -1) if ab_norm is None else _float(ab_norm) * AB_SCALE
        return lab_to_rgb(torch.cat([(l_norm + 1) * L_SCALE, ab.to(l_norm.dtype)], dim=1)).clamp(0, 1)

    return _in_strips(convert, l_norm) if ab_norm is None else _in_strips(convert, l_norm, ab_norm)


class Gray2Color(i2i.Task):
    """Colourisation: predict the colours of a photo from its lightness (CIE Lab L).

    The generator's input is the Lab lightness of the image, scaled as L / 50 - 1 (L in
    [0, 100] -> [-1, 1]); user images, grey or colour, are reduced to that L.

    Options:

    ``space`` ("lab" or "rgb", default "lab"): what the generator predicts.
        "lab": the a and b channels (2 outputs), scaled as ab / 110 so the sRGB gamut fits in
        [-1, 1]; the image is the *input's* L with the predicted ab, converted to RGB and
        clamped to [0, 1], so the lightness is the input's wherever the colour fits in sRGB (a
        clamped, out-of-gamut colour moves it with it). "rgb": the three RGB channels
        directly, scaled as RGB * 2 - 1.

    Metrics: psnr, ssim and colourfulness on RGB (main: psnr). Baseline "grey copy": the
    input's L with a = b = 0, which is the grey image replicated to RGB; it scores about as
    well in PSNR as published colourisers, so read colourfulness beside it.
    """

    image_channels = 3
    in_channels = 1
    learns_colour = True
    metrics = ("psnr", "ssim", "colourfulness")
    main_metric = "psnr"

    def __init__(self, space: Literal["lab", "rgb"] = "lab") -> None:
        if space not in ("lab", "rgb"):
            raise i2i.RecipeError(f"task.space = {space!r}: expected 'lab' | 'rgb'")
        self.space = space
        self.out_channels = 2 if space == "lab" else 3

    def make_pair(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        lab = rgb_to_lab(_float(clean))
        input = lab[:, :1] / L_SCALE - 1
        target = lab[:, 1:] / AB_SCALE if self.space == "lab" else to_signed(clean)
        return input, target

    def to_image(self, output: Tensor, input: Tensor) -> Tensor:
        return lab_image(input, output) if self.space == "lab" else to_unit(output)

    def input_image(self, input: Tensor) -> Tensor:
        return lab_image(input)

    def prepare(self, image: Tensor) -> Tensor:
        return lightness(image)

    def baselines(self, input: Tensor, target_image: Tensor) -> dict[str, Tensor]:
        return {"grey copy": lab_image(input)}
