"""Reconstruction terms: compare G's output with the target in the network's [-1, 1] range."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import i2i


class ClosedReconstruction(i2i.ReconstructionLoss):
    """Base for terms without options (an explicit ``__init__`` tells the registry so)."""

    def __init__(self) -> None:
        super().__init__()


class L1(ClosedReconstruction):
    """Mean absolute error |fake - target|: pix2pix's L1 term (weight 100 there).

    No options.
    """

    def forward(self, fake: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(fake, target)


class L2(ClosedReconstruction):
    """Mean squared error (fake - target)^2: favours PSNR, at the cost of blur.

    No options.
    """

    def forward(self, fake: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(fake, target)


class Charbonnier(i2i.ReconstructionLoss):
    """Charbonnier loss, mean sqrt((fake - target)^2 + eps^2): a smooth L1.

    Option ``eps`` (default 1e-3, as in LapSRN and MPRNet) rounds L1's corner at zero so the
    gradient stays finite; BasicSR writes the same function as ``sqrt(d^2 + eps)`` with
    ``eps = 1e-12``. Not kornia's ``charbonnier_loss``, which is a different function.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        if not eps > 0:
            raise i2i.RecipeError(f"eps = {eps}: expected a number > 0")
        self.eps = float(eps)

    def forward(self, fake: Tensor, target: Tensor) -> Tensor:
        return torch.sqrt((fake - target).square() + self.eps**2).mean()


class SSIM(i2i.ReconstructionLoss):
    """Structural dissimilarity 1 - SSIM (Gaussian window, sigma 1.5).

    Options: ``window`` (odd, default 11) is the window size; ``data_range`` (default 2.0)
    is the value range of the images, 2 for networks working in [-1, 1] (it sets SSIM's
    constants c1 = (0.01 L)^2, c2 = (0.03 L)^2). The SSIM map is reflect-padded to the image
    size and averaged over pixels, channels and images. kornia's ``ssim_loss`` halves this
    (``(1 - SSIM) / 2``); this term does not.
    """

    def __init__(self, window: int = 11, data_range: float = 2.0) -> None:
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
            raise i2i.RecipeError(f"window = {window!r}: expected an odd integer >= 3")
        if not data_range > 0:
            raise i2i.RecipeError(f"data_range = {data_range}: expected a number > 0")
        self.window, self.data_range = window, float(data_range)

    def forward(self, fake: Tensor, target: Tensor) -> Tensor:
        from kornia.metrics import ssim

        side = min(fake.shape[-2:])
        if self.window > side:  # reflect padding needs the window inside the image
            largest = side - 1 + side % 2
            raise i2i.RecipeError(f"window = {self.window}: larger than the {fake.shape[-2]}x{fake.shape[-1]} px images "
                                  f"it compares; use an odd window up to {largest}, or larger crops (data.size)")
        return 1 - ssim(fake, target, self.window, max_val=self.data_range).mean()


class TotalVariation(ClosedReconstruction):
    """Total variation of the output, mean |dy| + mean |dx|; ignores the target.

    Ignores the target. Each difference direction is averaged over its own pixel count
    (kornia's ``total_variation(reduction="mean")``), then over channels and images, so the
    value does not grow with the image size. No options.
    """

    def forward(self, fake: Tensor, target: Tensor) -> Tensor:
        from kornia.losses import total_variation

        return total_variation(fake, reduction="mean").mean()
