"""i2i's built-in metrics: psnr, ssim, mae and colourfulness.

A metric maps ``(output, target)`` images in [0, 1], ``[B, C, H, W]``, to one value per image
(a ``[B]`` tensor, or a dict of them); the evaluator sums them on the device and averages over
all validation images, so nothing here reads a value back to the host. Papers report the mean
of per-image values, which is what this gives (kornia's ``psnr`` pools the whole batch).
"""

from __future__ import annotations

from typing import Callable

import i2i

from .image import MAE, PSNR, SSIM, Colourfulness, colourfulness

__all__ = ["MAE", "PSNR", "SSIM", "Colourfulness", "colourfulness", "register_metrics"]


@i2i.hookimpl
def register_metrics(register: Callable[..., None]) -> None:
    register("psnr", PSNR)
    register("ssim", SSIM)
    register("mae", MAE)
    register("colourfulness", Colourfulness)
    register(
        "colourfulness_abs",
        Colourfulness,
        description="Colourfulness with |R - G|, |(R + G)/2 - B| as DDColor computes it (keys *_abs).",
        defaults={"absolute": True},
    )
