"""Small helpers shared by the built-in tasks: value ranges, channel counts, per-image PSNR."""

from __future__ import annotations

from torch import Tensor


def to_signed(image: Tensor) -> Tensor:
    """[0, 1] images to the networks' [-1, 1] range."""
    return image * 2 - 1


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] values back to [0, 1] images (clamped, since network outputs may overshoot)."""
    return ((x + 1) / 2).clamp(0, 1)


def as_rgb(image: Tensor) -> Tensor:
    """Replicate a grey ``[B, 1, H, W]`` batch to three channels; colour batches pass through."""
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


def as_grey(image: Tensor) -> Tensor:
    """ITU-R 601 luminance of an RGB batch (kornia's ``rgb_to_grayscale``); grey passes through."""
    if image.shape[1] == 1:
        return image
    from kornia.color import rgb_to_grayscale

    return rgb_to_grayscale(image)


def psnr_per_image(image: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB of each image of a batch in [0, 1] (not kornia's batch-pooled PSNR)."""
    mse = (image - target).pow(2).flatten(1).mean(1)
    return 10 * mse.clamp_min(1e-10).reciprocal().log10()
