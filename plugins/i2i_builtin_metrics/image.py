"""Per-image metrics on images in [0, 1]."""

from __future__ import annotations

import torch
from torch import Tensor

import i2i

#: PSNR of identical images (MSE 0) is infinite; it is reported as this many dB instead.
PSNR_CAP_DB = 100.0


def as_float(image: Tensor) -> Tensor:
    """At least float32, so half-precision outputs are measured exactly (float64 is kept)."""
    return image.to(torch.promote_types(image.dtype, torch.float32))


def check_pair(output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Refuse mismatched shapes (broadcasting would score the wrong pixels); both as float."""
    if output.shape != target.shape or output.dim() != 4:
        raise ValueError(
            f"metric: expected output and target of the same [B, C, H, W] shape, got "
            f"{tuple(output.shape)} and {tuple(target.shape)}"
        )
    return as_float(output), as_float(target)


class Metric:
    """Base for metrics without options (an explicit ``__init__`` tells the registry so)."""

    def __init__(self) -> None:
        pass


class PSNR(Metric):
    """PSNR in dB per image, 10 log10(1 / MSE) for data range 1; capped at 100 dB.

    Per image, then averaged over images, as papers report it. Identical images (MSE below
    1e-10) score the cap of 100 dB rather than infinity, so one perfect image cannot make the
    mean infinite. No options.
    """

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        output, target = check_pair(output, target)
        mse = (output - target).square().flatten(1).mean(1)
        return -10 * torch.log10(mse.clamp_min(10 ** (-PSNR_CAP_DB / 10)))


def studio_luma(image: Tensor) -> Tensor:
    """``[B, H, W]``: ITU-R BT.601 luma on its studio range (16/255 to 235/255), as MATLAB's
    ``rgb2ycbcr`` and BasicSR's ``bgr2ycbcr(y_only=True)`` compute it; a grey (1-channel) image
    is its own values (see :class:`PSNRY`)."""
    if image.shape[1] == 1:
        return image[:, 0]
    weights = torch.tensor([65.481, 128.553, 24.966], dtype=image.dtype, device=image.device).view(1, 3, 1, 1) / 255
    return (image * weights).sum(1) + 16 / 255


def without_border(images: list[Tensor], border: int) -> list[Tensor]:
    """``border`` px left out on each side of ``[..., H, W]`` images, unless that leaves none."""
    if border and min(images[0].shape[-2:]) > 2 * border:
        return [image[..., border:-border, border:-border] for image in images]
    return images


class _OnLuma:
    """What the super-resolution papers' metrics share: the images' Y (:func:`studio_luma`)
    with ``border`` px left out on each side (their option)."""

    def __init__(self, border: int = 0) -> None:
        if border < 0:
            raise i2i.UserError(f"border = {border}: expected 0 or more px")
        self.border = border

    def lumas(self, output: Tensor, target: Tensor) -> list[Tensor]:
        """``[B, 1, H', W']`` Y of output and target, their borders left out."""
        output, target = check_pair(output, target)
        return without_border([studio_luma(output)[:, None], studio_luma(target)[:, None]], self.border)


class PSNRY(_OnLuma):
    """PSNR in dB per image on the luma channel Y, with ``border`` px left out on each side.

    How super-resolution papers (Set5, Set14, Urban100, DIV2K tables) report PSNR.

    Y is ITU-R BT.601 luma on its studio range, as MATLAB's ``rgb2ycbcr`` and BasicSR's
    ``bgr2ycbcr(y_only=True)`` compute it: ``16/255 + (65.481 R + 128.553 G + 24.966 B) / 255``;
    a grey (1-channel) image is scored on its own values, as BasicSR's ``to_y_channel`` and the
    papers' MATLAB scripts (``if size(im, 3) == 3``) leave one (taken as R = G = B it would
    read 20 log10(255/219) = 1.32 dB higher than their tables). ``border`` is the scale in those tables (a 4x model
    leaves out 4 px); an image too small to keep any pixel is scored whole (a recipe whose
    ``eval.crop`` keeps none is refused: see ``check_scoring_crop``). Capped at 100 dB as
    ``psnr`` is. The images are not rounded to 8 bits first, as an evaluation of saved files
    would: the difference is a few hundredths of a dB.

    Options:
      border: px left out on each side (0: the whole image).
    """

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        luma = self.lumas(output, target)
        mse = (luma[0] - luma[1]).square().flatten(1).mean(1)
        return -10 * torch.log10(mse.clamp_min(10 ** (-PSNR_CAP_DB / 10)))


class SSIM(Metric):
    """SSIM per image (Wang 2004): 11x11 Gaussian window, sigma 1.5, valid region.

    kornia's SSIM map (data range 1, no stabilising epsilon) over the pixels whose window lies
    inside the image, i.e. the 'valid' map, as the reference MATLAB code, scikit-image and
    torchmetrics average it; averaged over channels. Images of 6-10 px use the reflect-padded
    full map instead; below 6 px, where reflecting 5 px is impossible, the valid map of the
    largest odd window that fits. No options.
    """

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        output, target = check_pair(output, target)
        return ssim_per_image(output, target)


def ssim_per_image(output: Tensor, target: Tensor, window: int = 11) -> Tensor:
    """``[B]``: the mean of kornia's SSIM map of float ``[B, C, H, W]`` images, as :class:`SSIM`
    says (the valid map; small images as it says)."""
    from kornia.metrics import ssim

    side = min(output.shape[-2:])
    padding = "valid"
    if side < window:
        window, padding = (window, "same") if side > window // 2 else (side - 1 + side % 2, "valid")
    return ssim(output, target, window, max_val=1.0, eps=0.0, padding=padding).flatten(1).mean(1)


class SSIMY(_OnLuma):
    """SSIM per image on the luma channel Y, with ``border`` px left out on each side.

    The SSIM of super-resolution tables (BasicSR's ``calculate_ssim`` with ``test_y_channel``
    and ``crop_border``): Y as :class:`PSNRY` computes it, the border left out, then SSIM as
    :class:`SSIM` computes it (11x11 Gaussian window, sigma 1.5, valid map). A grey image is
    scored on its own values; an image too small to keep any pixel is scored whole.

    Options:
      border: px left out on each side (0: the whole image).
    """

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        return ssim_per_image(*self.lumas(output, target))


class MAE(Metric):
    """Mean absolute error per image, on the [0, 1] scale.

    No options. Lower is better (``eval.best_metric = "mae"`` keeps the lowest).
    """

    lower_is_better = True

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        output, target = check_pair(output, target)
        return (output - target).abs().flatten(1).mean(1)


def colourfulness(image: Tensor, *, absolute: bool = False) -> Tensor:
    """Hasler & Süsstrunk's colourfulness of each image of a [0, 1] batch, on the 0-255 scale.

    CF = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), with rg = R - G and
    yb = (R + G) / 2 - B (population statistics over the pixels; values not rounded to 8
    bits). ``absolute`` takes |rg| and |yb| first, as the pyimagesearch code that DDColor's
    metric copies does. Grey (1-channel) images score 0.
    """
    image = as_float(image)
    if image.shape[1] == 1:
        return image.new_zeros(image.shape[0])
    if image.shape[1] != 3:
        raise ValueError(f"colourfulness: expected 1 or 3 channels, got {image.shape[1]}")
    r, g, b = (image * 255).flatten(2).unbind(1)
    rg, yb = r - g, (r + g) / 2 - b
    if absolute:
        rg, yb = rg.abs(), yb.abs()
    spread = torch.sqrt(rg.var(1, correction=0) + yb.var(1, correction=0))
    level = torch.sqrt(rg.mean(1).square() + yb.mean(1).square())
    return spread + 0.3 * level


class Colourfulness:
    """Colourfulness (Hasler & Süsstrunk 2003) of output and target, and their ΔCF.

    CF = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2) on 0-255 RGB with the
    paper's signed opponent channels rg = R - G, yb = (R + G) / 2 - B. Returns per image
    ``colourfulness`` (of the output) and ``colourfulness_target``; ``summarize`` adds
    ``delta_colourfulness`` = |mean CF(output) - mean CF(target)|, the ΔCF of colourisation
    papers. Grey images score 0.

    Option ``absolute`` (default false): use |R - G| and |(R + G) / 2 - B| as DDColor's code
    (and so its published CF and ΔCF) does; the keys are then ``colourfulness_abs``,
    ``colourfulness_abs_target`` and ``delta_colourfulness_abs``. The metric
    ``colourfulness_abs`` is this variant.
    """

    def __init__(self, absolute: bool = False) -> None:
        self.absolute = bool(absolute)
        suffix = "_abs" if self.absolute else ""
        self.key = f"colourfulness{suffix}"
        self.target_key = f"colourfulness{suffix}_target"
        self.delta_key = f"delta_colourfulness{suffix}"
        self.lower_is_better = (self.delta_key,)  # a gap: the smaller the better

    def __call__(self, output: Tensor, target: Tensor) -> dict[str, Tensor]:
        check_pair(output, target)
        return {
            self.key: colourfulness(output, absolute=self.absolute),
            self.target_key: colourfulness(target, absolute=self.absolute),
        }

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        if self.key not in means or self.target_key not in means:
            return {}
        return {self.delta_key: abs(means[self.key] - means[self.target_key])}
