"""Decolourisation: colour in, ITU-R 601 luminance out (a simple, well-posed sanity task)."""

from __future__ import annotations

import torch
from torch import Tensor

import i2i

from ._common import as_grey, as_rgb, to_signed, to_unit


class Color2Gray(i2i.Task):
    """Decolourisation: predict the grey (ITU-R 601 luminance) version of a colour photo.

    Input: the RGB image scaled to [-1, 1] (x * 2 - 1), 3 channels. Target: kornia's
    ``rgb_to_grayscale`` (0.299 R + 0.587 G + 0.114 B) scaled the same way, 1 channel. No
    options. Metrics psnr and ssim; baseline "channel mean": the plain mean of R, G and B.
    """

    image_channels = 3
    in_channels = 3
    out_channels = 1
    metrics = ("psnr", "ssim")
    main_metric = "psnr"

    def __init__(self) -> None:
        """No options; the explicit signature lets the registry reject unknown recipe keys."""

    def make_pair(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        return to_signed(clean), to_signed(as_grey(clean))

    def prepare(self, image: Tensor) -> Tensor:
        return to_signed(as_rgb(image))

    def baselines(self, input: Tensor, target_image: Tensor) -> dict[str, Tensor]:
        return {"channel mean": to_unit(input).mean(dim=1, keepdim=True)}
