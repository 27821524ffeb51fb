"""i2i's built-in loss terms: GAN objectives, D regularisers, reconstruction and feature matching.

Every factory returns one of the loss kinds of :mod:`i2i.losses`; the engine routes a term by
its kind and multiplies it by the recipe's ``weight``, so each term here is an unweighted mean.
kornia is imported only inside the terms that use it, to keep ``i2i list`` fast.
"""

from __future__ import annotations

from typing import Callable

import i2i

from .gan import LSGAN, FeatureMatching, Hinge, RelativisticAverage, Vanilla, WGAN
from .penalties import R1, GradientPenalty
from .reconstruction import L1, L2, SSIM, Charbonnier, TotalVariation

__all__ = [
    "L1", "L2", "LSGAN", "R1", "SSIM", "WGAN", "Charbonnier", "FeatureMatching",
    "GradientPenalty", "Hinge", "TotalVariation", "Vanilla", "register_losses",
]


@i2i.hookimpl
def register_losses(register: Callable[..., None]) -> None:
    register("vanilla", Vanilla)
    register("lsgan", LSGAN)
    register("wgan", WGAN)
    register("hinge", Hinge)
    register("ragan", RelativisticAverage)
    register("r1", R1)
    register("gp", GradientPenalty)
    register("l1", L1)
    register("l2", L2)
    register("charbonnier", Charbonnier)
    register("ssim", SSIM)
    register("tv", TotalVariation)
    register("feature_matching", FeatureMatching)
