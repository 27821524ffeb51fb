"""Paired translation: each file holds an (A, B) pair side by side, as pix2pix's data sets do."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

import i2i

from ._common import as_grey, as_rgb, to_signed, to_unit
from .restoration import residual_wrapped


def _channels(key: str, value: object) -> int:
    if value not in (1, 3) or isinstance(value, bool):
        raise i2i.RecipeError(f"task.{key} = {value!r}: expected 1 | 3")
    return int(value)  # type: ignore[call-overload]


class Paired(i2i.Task):
    """Paired translation (pix2pix's own setting): learn to turn one image of a pair into the other.

    Each file holds a pair side by side, as the reference pix2pix's aligned data sets do
    (facades, maps, cityscapes, edges2shoes): A on the left half, B on the right; or, with
    ``data.pair_source``, A in data.source and B under the same name in that folder (real noisy
    and clean photos, say). Both get the same crop and flip. Input and target are the halves scaled to [-1, 1] (x * 2 - 1).

    Options:

    ``direction`` ("AtoB" or "BtoA", default "AtoB"): which half is the input, as the
        reference's ``--direction``.
    ``input_channels``, ``target_channels`` (1 or 3, default 3): grey halves are ITU-R 601
        luminance (the reference's ``--input_nc 1`` / ``--output_nc 1``). For ``i2i translate``
        the user's image is an input half.
    ``residual`` (bool, default false): the network predicts the difference, which the
        generator subtracts from its input (``input - net(input)``, checkpoint keys then start
        with ``net.``), as the built-in denoiser does: for pairs whose two images are nearly
        alike (real noisy and clean photos), where a network starting from the input copy's
        score learns far faster than one starting from nothing. Needs input_channels ==
        target_channels.

    Metrics psnr and ssim; baseline "input copy" (the input half itself) when input and target
    have the same channels: the score of changing nothing.
    """

    side_by_side = True
    image_channels = 3
    metrics = ("psnr", "ssim")
    main_metric = "psnr"

    def __init__(self, direction: Literal["AtoB", "BtoA"] = "AtoB", input_channels: Literal[1, 3] = 3,
                 target_channels: Literal[1, 3] = 3, residual: bool = False) -> None:
        if direction not in ("AtoB", "BtoA"):
            raise i2i.RecipeError(f"task.direction = {direction!r}: expected 'AtoB' | 'BtoA'")
        self.direction = direction
        self.in_channels = _channels("input_channels", input_channels)
        self.out_channels = _channels("target_channels", target_channels)
        if residual and self.in_channels != self.out_channels:
            raise i2i.RecipeError(f"task.residual = true: the network's output is subtracted from its input, so "
                                  f"task.input_channels ({self.in_channels}) and task.target_channels "
                                  f"({self.out_channels}) must be equal")
        self.residual = residual

    def wrap_generator(self, generator: nn.Module) -> nn.Module:
        return residual_wrapped(generator, self.residual)

    def make_pair(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        a, b = clean[:, :3], clean[:, 3:]
        source, target = (a, b) if self.direction == "AtoB" else (b, a)
        return self._as(source, self.in_channels), self._as(target, self.out_channels)

    def prepare(self, image: Tensor) -> Tensor:
        return self._as(as_rgb(image), self.in_channels)

    def baselines(self, input: Tensor, target_image: Tensor) -> dict[str, Tensor]:
        return {"input copy": to_unit(input)} if self.in_channels == self.out_channels else {}

    @staticmethod
    def _as(image: Tensor, channels: int) -> Tensor:
        return to_signed(as_grey(image) if channels == 1 else image)
