"""Deblurring: undo a Gaussian blur (defocus, a soft lens), at a fixed width or blind over a range."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

import i2i

from ._common import psnr_per_image, to_signed, to_unit
from .restoration import RestorationTask

#: The widest blur a pair may carry, in pixels: a kernel of 61 px already averages away most
#: of a small crop, and wider blurs leave nothing a network can restore.
MAX_SIGMA = 10.0
#: The grid (px) on which a blind deblurrer's per-image width is found for ``--per-image``.
DETAIL_STEP = 0.05
#: Blur widths (px) of the "best unsharp mask" baseline; each gets the amount that fits best.
UNSHARP_WIDTHS = (0.5, 1.0, 1.5, 2.0, 3.0)
#: The largest amount it tries: a fitted amount is rarely above 10 on photos; past this one a
#: sharpening only amplifies noise.
MAX_AMOUNT = 20.0


def _blur_range(sigma: float | tuple[float, float]) -> tuple[float, float]:
    """Check ``sigma`` (pixels) and return it as ``(lo, hi)`` (equal for a fixed blur)."""
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        lo = hi = float(sigma)
    elif isinstance(sigma, (list, tuple)) and len(sigma) == 2 and not any(isinstance(v, bool) for v in sigma):
        lo, hi = float(sigma[0]), float(sigma[1])
    else:
        raise i2i.RecipeError(f"task.sigma = {sigma!r}: expected a blur width in pixels or a range [low, high]")
    fixed = not isinstance(sigma, (list, tuple))
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi > MAX_SIGMA or (fixed and lo <= 0) or not 0 <= lo <= hi \
            or hi == 0:
        expected = (f"0 <= low <= high <= {MAX_SIGMA:g} px, high above 0" if not fixed
                    else f"a blur width above 0 and at most {MAX_SIGMA:g} px, or a range [low, high]")
        raise i2i.RecipeError(f"task.sigma = {sigma!r}: expected {expected}")
    return lo, hi


class Deblur(RestorationTask):
    """Deblurring: undo a Gaussian blur of ``sigma`` pixels, fixed or blind over a range.

    Input and target are images scaled to [-1, 1]; the input is the clean image blurred with
    kornia's ``gaussian_blur2d`` (a kernel of 2 ceil(3 sigma) + 1 px, borders replicated, so
    an image smaller than the kernel works too), plus Gaussian noise of ``noise`` when set,
    not clipped (as ``denoise`` adds it).

    Options:

    ``sigma`` (number or [low, high], default 2): the blur's standard deviation in pixels,
        above 0 and at most 10. A pair trains a blind deblurrer: each image gets a width drawn
        uniformly from [low, high] (low may be 0: sharp images among them).
    ``noise`` (number, default 0): Gaussian noise added after the blur, its standard deviation
        on the 0-255 scale (deconvolution benchmarks add 1 % to 2 %: 2.55 to 5.1); at most 255.
    ``channels`` (1 or 3, default 3): colour or grey images. For ``i2i translate`` the user's
        image is the blurred input.
    ``residual`` (bool, default true): the network predicts what the blur took away; the
        generator is wrapped to output ``input - net(input)``.

    Metrics psnr and ssim. Baselines: "blurred input", and "best unsharp mask": the input
    sharpened as ``x + amount (x - blur(x))``, per image, with the blur of 0.5, 1, 1.5, 2 or 3 px
    and the amount (0 to 20) that come closest to the clean image (an oracle: the amount is
    fitted to it by least squares for each blur, and the best of these or the blurred input
    itself is kept, so it is never below the blurred input).
    """

    def __init__(self, sigma: float | tuple[float, float] = 2.0, noise: float = 0.0, channels: Literal[1, 3] = 3,
                 residual: bool = True) -> None:
        super().__init__(channels, residual)
        self.sigma_lo, self.sigma_hi = _blur_range(sigma)
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= 255:
            raise i2i.RecipeError(f"task.noise = {noise!r}: expected a noise level from 0 to 255 (0-255 scale; 0: none)")
        if 0 < noise < 1:  # the 0-1 scale's habit: under one grey level
            raise i2i.RecipeError(f"task.noise = {noise!r}: noise levels are on the 0-255 scale, where this is less "
                                  f"than one level; if you meant the 0-1 scale, write task.noise = {round(noise * 255, 3)}")
        self.noise = float(noise)

    def make_pair(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        from kornia.filters import gaussian_blur2d

        batch = clean.shape[0]
        if self.sigma_lo == self.sigma_hi:
            sigma = torch.full((batch,), self.sigma_hi, device=clean.device)
        else:
            u = torch.rand((batch,), generator=generator, device=clean.device)
            sigma = self.sigma_lo + (self.sigma_hi - self.sigma_lo) * u
        size = 2 * math.ceil(3 * self.sigma_hi) + 1  # one kernel for the batch, wide enough for its widest blur
        # a width near 0 is no blur (the kernel becomes one pixel's); exactly 0 would divide by 0
        sigmas = sigma.clamp_min(1e-3).float().unsqueeze(1).expand(-1, 2)
        blurred = gaussian_blur2d(clean.float(), size, sigmas, border_type="replicate").to(clean.dtype)
        input = to_signed(blurred)
        if self.noise:
            input = input + torch.randn(clean.shape, generator=generator, device=clean.device,
                                        dtype=clean.dtype) * (self.noise * 2 / 255)
        return input, to_signed(clean)

    def pair_details(self, input: Tensor, target: Tensor) -> dict[str, Tensor]:
        """A blind deblurrer's per-image blur width, for scores by width (``--per-image``):
        the width on a 0.05 px grid over the task's range whose blur of the sharp image comes
        closest to the input (the drawn width to within 0.025 px without noise)."""
        if self.sigma_lo == self.sigma_hi:
            return {}
        from kornia.filters import gaussian_blur2d

        blurred, sharp = (input.float() + 1) / 2, (target.float() + 1) / 2
        size = 2 * math.ceil(3 * self.sigma_hi) + 1
        steps = round((self.sigma_hi - self.sigma_lo) / DETAIL_STEP)
        # float64, so the grid's 1.05 reads 1.05 in the CSV rather than float32's 1.0499999523
        best_width = torch.full((input.shape[0],), self.sigma_lo, device=input.device, dtype=torch.float64)
        best_error = torch.full((input.shape[0],), float("inf"), device=input.device)
        for i in range(steps + 1):
            width = self.sigma_lo + i * DETAIL_STEP
            candidate = gaussian_blur2d(sharp, size, (max(width, 1e-3),) * 2, border_type="replicate")
            error = (candidate - blurred).square().flatten(1).mean(1)
            best_width = torch.where(error < best_error, torch.full_like(best_width, round(width, 2)), best_width)
            best_error = torch.minimum(error, best_error)
        return {"blur sigma": best_width}

    def baselines(self, input: Tensor, target_image: Tensor) -> dict[str, Tensor]:
        from kornia.filters import gaussian_blur2d

        blurred = (input + 1) / 2  # sharpened unclipped, as the network sees it
        target = target_image.to(blurred.dtype)

        best = blurred.clamp(0, 1)  # amount 0: the input as it is
        best_score = psnr_per_image(best, target_image)
        for s in UNSHARP_WIDTHS:  # per image, so the batch it shares changes nothing; no host sync
            detail = blurred - gaussian_blur2d(blurred, 2 * math.ceil(3 * s) + 1, (s, s), border_type="replicate")
            # the amount whose sharpening is nearest the target, before clipping: <t - x, d> / <d, d>
            fitted = ((target - blurred) * detail).flatten(1).sum(1) / detail.square().flatten(1).sum(1).clamp_min(1e-12)
            amount = fitted.clamp(0, MAX_AMOUNT).view(-1, 1, 1, 1)
            candidate = (blurred + amount * detail).clamp(0, 1)
            score = psnr_per_image(candidate, target_image)
            best = torch.where((score > best_score).view(-1, 1, 1, 1), candidate, best)
            best_score = torch.maximum(score, best_score)
        return {"blurred input": to_unit(input), "best unsharp mask": best}
