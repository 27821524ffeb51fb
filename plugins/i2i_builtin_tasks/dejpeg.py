"""JPEG artifact removal: photos saved at a low JPEG quality back to their clean originals."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

import i2i

from ._common import to_signed, to_unit
from .restoration import RestorationTask
from .jpeg_codec import jpeg_round_trip


def _quality_range(quality: int | tuple[int, int]) -> tuple[int, int]:
    """Check ``quality`` and return it as ``(lo, hi)`` (equal for a fixed quality)."""
    if isinstance(quality, bool):
        lo = hi = None
    elif isinstance(quality, int):
        lo = hi = quality
    elif isinstance(quality, (list, tuple)) and len(quality) == 2 and all(isinstance(q, int) and not isinstance(q, bool)
                                                                         for q in quality):
        lo, hi = quality
    else:
        lo = hi = None
    if lo is None or hi is None:
        raise i2i.RecipeError(f"task.quality = {quality!r}: expected a JPEG quality, a whole number from 1 to 100, "
                              "or a range [low, high] of them")
    if not 1 <= lo <= hi <= 100:
        raise i2i.RecipeError(f"task.quality = {quality!r}: expected JPEG qualities from 1 to 100 (Pillow's and "
                              "libjpeg's scale), low <= high")
    return lo, hi


class Dejpeg(RestorationTask):
    """JPEG artifact removal: undo the blocking, ringing and colour bleeding of a low JPEG quality.

    Input: the clean photo saved as a JPEG at ``quality`` and decoded again, on the device
    (IJG quantization tables scaled by quality, 4:2:0 colour, coefficients rounded as libjpeg
    rounds them: its PSNR to the original is libjpeg's within 0.02 dB on 256 px crops of the
    sample photos at qualities 10 to 40; up to 0.6 dB apart above about 38 dB, where libjpeg's
    integer arithmetic and this float codec differ by single levels),
    scaled to [-1, 1]. Target: the clean photo, scaled the same way.

    Options:

    ``quality`` (1-100 or [low, high], default 20): the JPEG quality on Pillow's and libjpeg's
        scale (artifact-removal papers report 10, 20, 30 and 40). A pair trains a blind model:
        each image gets a whole-number quality drawn uniformly from [low, high].
    ``channels`` (1 or 3, default 3): colour photos (YCbCr 4:2:0), or grey JPEGs (luma only;
        the data pipeline then delivers grey images, and ``i2i translate`` takes ITU-R 601 grey).
    ``residual`` (bool, default true): the network predicts the artifacts, which the generator
        subtracts from its input (checkpoint keys then start with ``net.``), as for ``denoise``.

    Metrics psnr and ssim; baseline "jpeg input": the decoded JPEG itself. A blind model's
    per-image scores (``i2i eval --per-image``) give each image's quality.
    """

    def __init__(self, quality: int | tuple[int, int] = 20, channels: Literal[1, 3] = 3, residual: bool = True) -> None:
        super().__init__(channels, residual)
        self.quality_lo, self.quality_hi = _quality_range(quality)

    def make_pair(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        quality = torch.full((clean.shape[0],), float(self.quality_lo), device=clean.device)
        if self.quality_hi > self.quality_lo:  # whole numbers, each as likely; no host sync
            span = self.quality_hi - self.quality_lo + 1
            u = torch.rand((clean.shape[0],), generator=generator, device=clean.device)
            quality = (quality + (u * span).floor()).clamp(max=self.quality_hi)
        return to_signed(jpeg_round_trip(clean, quality)), to_signed(clean)

    def pair_details(self, input: Tensor, target: Tensor) -> dict[str, Tensor]:
        """A blind model's per-image JPEG quality, for scores by quality (``i2i eval
        --per-image``): the quality in the range whose JPEG of the target is nearest the input
        (the input is that JPEG; one pass of the codec per quality in the range)."""
        if self.quality_lo == self.quality_hi:
            return {}
        clean, damaged = to_unit(target.float()), to_unit(input.float())
        best = torch.full((clean.shape[0],), float(self.quality_lo), device=clean.device)
        best_error = torch.full_like(best, float("inf"))
        for quality in range(self.quality_lo, self.quality_hi + 1):
            made = jpeg_round_trip(clean, torch.full_like(best, float(quality)))
            error = (made - damaged).square().flatten(1).mean(1)
            best = torch.where(error < best_error, torch.full_like(best, float(quality)), best)
            best_error = torch.minimum(error, best_error)
        return {"jpeg quality": best}

    def baselines(self, input: Tensor, target_image: Tensor) -> dict[str, Tensor]:
        return {"jpeg input": to_unit(input)}
