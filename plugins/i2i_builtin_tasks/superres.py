"""Super-resolution: photos shrunk by ``scale`` (bicubic, as the SR benchmarks shrink them) back
to their full size and detail."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

import i2i

from ._common import to_signed, to_unit
from .restoration import RestorationTask

#: The scales i2i trains: 2 to 4 are the benchmarks' (Set5, Set14, DIV2K); 8 is the most a
#: 64 px crop leaves enough of (8 px) to learn from.
SCALES = (2, 3, 4, 8)


def shrunk(clean: Tensor, scale: int) -> Tensor:
    """The low-resolution image the SR benchmarks make of ``clean`` (``[B, C, H, W]`` in [0, 1]):
    bicubic with antialiasing (torch's, which matches Pillow's and, within a level away from its
    border, MATLAB's ``imresize``, which mirrors the edge where torch reweighs the kernel),
    stored on 8-bit levels as an image file holds it. H and W are cut down to
    multiples of ``scale`` first (the benchmarks' "modcrop"); a side shorter than ``scale``
    (an icon among validation photos) shrinks whole, to one pixel."""
    height, width = max(1, clean.shape[-2] // scale), max(1, clean.shape[-1] // scale)
    cropped = clean[..., :height * scale, :width * scale]
    if width == 1 and height > 1:  # torch's antialiased resize to one column repeats its first row: resize it as a row
        small = F.interpolate(cropped.transpose(-1, -2), size=(width, height), mode="bicubic", antialias=True,
                              align_corners=False).transpose(-1, -2)
    else:
        small = F.interpolate(cropped, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return (small.clamp(0, 1) * 255).round() / 255


def enlarged(small: Tensor, scale: int) -> Tensor:
    """``small`` made ``scale`` times larger with bicubic interpolation, in [0, 1]: what the
    network starts from, in training and in ``i2i translate`` alike."""
    return F.interpolate(small, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


class SuperRes(RestorationTask):
    """Super-resolution: restore the detail of a photo enlarged ``scale`` times.

    Input: the clean photo shrunk ``scale`` times (bicubic with antialiasing, on 8-bit levels,
    as Set5/Set14/DIV2K's low-resolution images are made) and enlarged back with bicubic
    interpolation, scaled to [-1, 1]; the network restores what the enlargement blurred (the
    pre-upsampling design of SRCNN and VDSR, which fits every i2i generator). Target: the clean
    photo. A side that is no multiple of ``scale`` has its last rows or columns (fewer than
    ``scale``) filled from their neighbours in the input; a side shorter than ``scale`` is
    shrunk to one pixel and enlarged back.

    ``i2i translate`` enlarges each image ``scale`` times: a 200 x 150 photo becomes 800 x 600
    at ``scale = 4`` (its alpha channel enlarged alike).

    Options:

    ``scale`` (2, 3, 4 or 8; default 4): how many times smaller the training inputs are, and how
        many times larger ``i2i translate`` makes an image. A ``data.size`` that is a multiple
        uses every row of a crop (other sizes repeat up to ``scale - 1`` of them).
    ``channels`` (1 or 3, default 3): colour photos, or grey ones (luma only; the data pipeline
        then delivers grey images, and ``i2i translate`` takes ITU-R 601 grey).
    ``residual`` (bool, default true): the network predicts the missing detail, which the
        generator subtracts from its input (checkpoint keys then start with ``net.``), as for
        ``denoise``.

    Metrics psnr and ssim, on all channels and the whole image, and ``psnr_y_x<scale>``: PSNR on
    the Y channel with ``scale`` px of border left out, as super-resolution papers report it,
    and ``ssim_y_x<scale>``, SSIM on that Y with that border;
    baseline "bicubic": the enlarged input itself.
    """

    def __init__(self, scale: Literal[2, 3, 4, 8] = 4, channels: Literal[1, 3] = 3, residual: bool = True) -> None:
        if isinstance(scale, bool) or scale not in SCALES:
            raise i2i.RecipeError(f"task.scale = {scale!r}: expected {' | '.join(map(str, SCALES))}")
        super().__init__(channels, residual)
        self.scale = scale
        self.output_scale = scale  # type: ignore[misc]
        # the papers' PSNR and SSIM at this scale
        self.metrics = ("psnr", "ssim", f"psnr_y_x{scale}", f"ssim_y_x{scale}")  # type: ignore[misc]

    def make_pair(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        height, width = clean.shape[-2:]
        input = enlarged(shrunk(clean, self.scale), self.scale)[..., :height, :width]  # a side under the scale: cut
        missing = (height - input.shape[-2], width - input.shape[-1])
        if any(missing):  # the sides' remainders (modcrop), filled from the rows and columns beside them
            input = F.pad(input, (0, missing[1], 0, missing[0]), mode="replicate")
        return to_signed(input), to_signed(clean)

    def prepare(self, image: Tensor) -> Tensor:
        return to_signed(enlarged(self.as_task_channels(image), self.scale))

    def baselines(self, input: Tensor, target_image: Tensor) -> dict[str, Tensor]:
        return {"bicubic": to_unit(input)}
