"""Colourisation in CIE Lab: the generator sees the lightness L and predicts the colour."""

from __future__ import annotations

from typing import Literal

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


def lightness(rgb: Tensor) -> Tensor:
    """Normalised L of Lab, ``[B, 1, H, W]`` in [-1, 1], of RGB or grey images in [0, 1]."""
    from kornia.color import rgb_to_lab

    return rgb_to_lab(as_rgb(_float(rgb)))[:, :1] / L_SCALE - 1


def lab_image(l_norm: Tensor, ab_norm: Tensor | None = None) -> Tensor:
    """RGB in [0, 1] from normalised L and ab (a = b = 0, i.e. grey, when ``ab_norm`` is None)."""
    from kornia.color import lab_to_rgb

    l_norm = _float(l_norm)
    ab = torch.zeros_like(l_norm).expand(-1, 2, -1, -1) if ab_norm is None else _float(ab_norm) * AB_SCALE
    return lab_to_rgb(torch.cat([(l_norm + 1) * L_SCALE, ab.to(l_norm.dtype)], dim=1)).clamp(0, 1)


class Gray2Color(i2i.Task):
    """Colourisation: predict the colours of a photo from its lightness (CIE Lab L).

    The generator's input is the Lab lightness of the image, scaled as L / 50 - 1 (L in
    [0, 100] -> [-1, 1]); user images, grey or colour, are reduced to that L.

    Options:

    ``space`` ("lab" or "rgb", default "lab"): what the generator predicts.
        "lab": the a and b channels (2 outputs), scaled as ab / 110 so the sRGB gamut fits in
        [-1, 1]; the image is the *input's* L with the predicted ab, converted to RGB and
        clamped to [0, 1], so the lightness can never drift. "rgb": the three RGB channels
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
        from kornia.color import rgb_to_lab

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
