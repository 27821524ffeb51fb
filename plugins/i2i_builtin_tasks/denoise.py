"""Denoising of additive white Gaussian noise (AWGN), at a fixed level or blind over a range."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

import i2i

from ._common import psnr_per_image, to_signed, to_unit
from .restoration import RestorationTask

#: Gaussian blur widths (pixels) tried by the "best gaussian blur" baseline, beside no blur
#: (light noise is best left as it is); fine at the narrow end, where low noise levels' best lie.
BLUR_SIGMAS = (0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def _sigma_range(sigma: float | tuple[float, float], levels: int = 255) -> tuple[float, float]:
    """Check ``sigma`` (on the 0-``levels`` scale) and return it as ``(lo, hi)`` (equal for a
    fixed noise level)."""
    if levels not in (255, 65535) or isinstance(levels, bool):
        raise i2i.RecipeError(f"task.levels = {levels!r}: expected 255 (task.sigma in 8-bit grey levels) or 65535 "
                              "(in 16-bit levels, for deep images)")
    scale = f"0-{levels} scale"
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        lo = hi = float(sigma)
    elif isinstance(sigma, (list, tuple)) and len(sigma) == 2:
        lo, hi = float(sigma[0]), float(sigma[1])
    else:
        raise i2i.RecipeError(f"task.sigma = {sigma!r}: expected a number or [low, high]")
    if not (0 <= lo <= hi) or not math.isfinite(hi):
        expected = (f"0 <= low <= high ({scale})" if isinstance(sigma, (list, tuple)) else
                    f"a noise level above 0 and at most {levels} ({scale}), or a range [low, high]")
        raise i2i.RecipeError(f"task.sigma = {sigma!r}: expected {expected}")
    if 0 < hi < 1:  # sigma on the 0-1 scale: under one grey level of noise, which nobody trains to remove
        scaled = [round(v * levels, 3) for v in (lo, hi)] if lo != hi else round(hi * levels, 3)
        deep = (f"; for 16-bit images, give it in 16-bit levels: task.levels = 65535 and task.sigma = "
                f"{[round(v * 257, 3) for v in (lo, hi)] if lo != hi else round(hi * 257, 3)}") if levels == 255 else ""
        raise i2i.RecipeError(f"task.sigma = {sigma!r}: noise levels are on the {scale}, where this is less than "
                              f"one level; if you meant the 0-1 scale, write task.sigma = {scaled}{deep}")
    if hi == 0 or hi > levels:  # no noise to remove; or noise beyond the whole range
        raise i2i.RecipeError(f"task.sigma = {sigma!r}: expected a noise level above 0 and at most {levels} ({scale}; "
                              "a range [low, high] may start at 0)")
    return lo, hi


class Denoise(RestorationTask):
    """Denoising: remove additive white Gaussian noise, at a fixed level or blind over a range.

    Input and target are images scaled to [-1, 1] (x * 2 - 1); the input is the target plus
    Gaussian noise and is *not* clipped to the valid range, as in the standard AWGN
    benchmarks (BSD68, CBSD68), so the noise stays exactly Gaussian.

    Options:

    ``sigma`` (number or [low, high], default 25): noise standard deviation on the 0-255
        scale (benchmarks use 15, 25, 50). A pair trains a blind denoiser: each image gets
        a sigma drawn uniformly from [low, high].
    ``levels`` (255 or 65535, default 255): the scale ``sigma`` is given on; 65535 counts it
        in 16-bit levels, for deep images whose noise is below one 8-bit level (``sigma = 128``
        is half an 8-bit level). The same noise either way: ``sigma / levels`` of the range.
    ``channels`` (1 or 3, default 3): denoise colour or grey images (the data pipeline then
        delivers grey ones). For ``i2i translate`` the user's image is the noisy input,
        reduced to ITU-R 601 grey when channels = 1.
    ``residual`` (bool, default true): the network predicts the noise, as DnCNN does; the
        generator is wrapped to output ``input - net(input)`` (checkpoint keys then start with
        ``net.``). Networks that set ``subtracts_residual = True`` already do this and are
        not wrapped.

    Metrics psnr and ssim. Baselines: "noisy input", and "best gaussian blur": the noisy
    input blurred with whichever of BLUR_SIGMAS (0.3 to 3 px), or no blur, gives the best PSNR
    against the clean image, chosen per image (an oracle choice: the best a blur can do, never
    below the noisy input). The noisy input is
    scored clipped to [0, 1], as an image file holds it (metrics take images in [0, 1]):
    20.39 dB at sigma 25 on the held-out sample crop, where unclipped noise scores about 20.17.
    """

    def __init__(
        self, sigma: float | tuple[float, float] = 25.0, channels: Literal[1, 3] = 3, residual: bool = True,
        levels: Literal[255, 65535] = 255,
    ) -> None:
        super().__init__(channels, residual)
        lo, hi = _sigma_range(sigma, levels)
        # on the 0-255 scale inside, as the noise is drawn and reported
        self.sigma_lo, self.sigma_hi = lo * 255 / levels, hi * 255 / levels
        self.levels = levels

    def make_pair(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        target = to_signed(clean)
        if self.sigma_lo == self.sigma_hi:
            sigma: float | Tensor = self.sigma_lo
        else:
            u = torch.rand((clean.shape[0], 1, 1, 1), generator=generator, device=clean.device, dtype=clean.dtype)
            sigma = self.sigma_lo + (self.sigma_hi - self.sigma_lo) * u
        noise = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        return target + noise * (sigma * 2 / 255), target  # x2: the [-1, 1] scale

    def pair_details(self, input: Tensor, target: Tensor) -> dict[str, Tensor]:
        """A blind denoiser's per-image noise level, for scores by noise level: the standard
        deviation of the noise added (on the scale of ``task.levels``), measured on the pair (the noise is not
        clipped, so this is the drawn sigma up to sampling: about 0.2 % on a 256 px colour crop)."""
        if self.sigma_lo == self.sigma_hi:
            return {}
        return {"noise sigma": (input - target).flatten(1).std(dim=1) * (self.levels / 2)}

    def baselines(self, input: Tensor, target_image: Tensor) -> dict[str, Tensor]:
        from kornia.filters import gaussian_blur2d

        noisy = (input + 1) / 2  # blurred unclipped, like the network sees it

        def blur(s: float) -> Tensor:
            return gaussian_blur2d(noisy, 2 * math.ceil(3 * s) + 1, (s, s), border_type="replicate").clamp(0, 1)

        best = noisy.clamp(0, 1)  # no blur: the noisy input as it is scored
        best_score = psnr_per_image(best, target_image)
        for s in BLUR_SIGMAS:  # per image, so the batch it shares changes nothing; no host sync
            blurred = blur(s)
            score = psnr_per_image(blurred, target_image)
            best = torch.where((score > best_score).view(-1, 1, 1, 1), blurred, best)
            best_score = torch.maximum(score, best_score)
        return {"noisy input": to_unit(input), "best gaussian blur": best}
