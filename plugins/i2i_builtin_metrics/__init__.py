"""i2i's built-in metrics: psnr, psnr_y and ssim_y (super-resolution papers' PSNR and SSIM), ssim, mae and colourfulness.

A metric maps ``(output, target)`` images in [0, 1], ``[B, C, H, W]``, to one value per image
(a ``[B]`` tensor, or a dict of them); the evaluator sums them on the device and averages over
all validation images, so nothing here reads a value back to the host. Papers report the mean
of per-image values, which is what this gives (kornia's ``psnr`` pools the whole batch).
"""

from __future__ import annotations

from typing import Callable

import i2i

from .image import MAE, PSNR, PSNRY, SSIM, SSIMY, Colourfulness, colourfulness

__all__ = ["MAE", "PSNR", "PSNRY", "SSIM", "SSIMY", "Colourfulness", "colourfulness", "register_metrics"]

#: The scales super-resolution tables report, each with its border left out (``psnr_y_x4``).
SR_SCALES = (2, 3, 4, 8)


@i2i.hookimpl
def register_metrics(register: Callable[..., None]) -> None:
    register("psnr", PSNR)
    register("psnr_y", PSNRY)
    for scale in SR_SCALES:  # a recipe names metrics without options: one name per scale
        register(f"psnr_y_x{scale}", PSNRY, defaults={"border": scale},
                 description=f"PSNR on Y with {scale} px of border left out, as {scale}x super-resolution tables report it.")
    register("ssim", SSIM)
    register("ssim_y", SSIMY)
    for scale in SR_SCALES:
        register(f"ssim_y_x{scale}", SSIMY, defaults={"border": scale},
                 description=f"SSIM on Y with {scale} px of border left out, as {scale}x super-resolution tables report it.")
    register("mae", MAE)
    register("colourfulness", Colourfulness)
    register(
        "colourfulness_abs",
        Colourfulness,
        description="Colourfulness with |R - G|, |(R + G)/2 - B| as DDColor computes it (keys colourfulness_abs, colourfulness_abs_target, delta_colourfulness_abs).",
        defaults={"absolute": True},
    )
