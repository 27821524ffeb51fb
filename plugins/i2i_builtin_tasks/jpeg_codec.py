"""Baseline JPEG compression and decompression of a batch, on its device, as libjpeg does it.

Why not ``kornia.enhance.jpeg_codec_differentiable``: it is built for gradients, so it rounds
the DCT coefficients softly (``round(x) + (x - round(x))^3``) and its images come out about
0.7 dB milder than libjpeg's at the same quality (on the sample photos), and it checks the
quality's range with two host reads a call. A task that degrades photos needs the degradation
its users' files have, not its gradient: here the coefficients are rounded as libjpeg rounds
them, the quantization tables are the IJG ones scaled by quality (``jpeg_quality_scaling``),
colour is 4:2:0 subsampled (Pillow's and libjpeg's default) and upsampled by libjpeg's "fancy"
triangle filter (bilinear at half-pixel offsets), and the result is rounded to 8 bits, as a
decoded file is. kornia does the colour conversion. No host syncs, any batch of qualities.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: The IJG / JPEG standard (Annex K) quantization tables at quality 50, row-major.
LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)


def quantization_tables(quality: Tensor, base: tuple[int, ...]) -> Tensor:
    """``[B, 8, 8]`` tables for qualities ``[B]`` (1-100), scaled as libjpeg's
    ``jpeg_quality_scaling`` and ``jpeg_add_quant_table`` do (baseline: entries 1 to 255)."""
    quality = quality.clamp(1, 100).floor()
    scale = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality)
    table = _on_device(base, quality.dtype, quality.device).view(1, 8, 8)
    return ((table * scale.view(-1, 1, 1) + 50) / 100).floor().clamp(1, 255)


@functools.lru_cache(maxsize=16)
def _on_device(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A constant copied to the device once: each copy from the host waits for the device, so
    one per training step would stall a GPU's queue."""
    return torch.tensor(values, dtype=dtype, device=device)


def _dct_matrix(dtype: torch.dtype, device: torch.device) -> Tensor:
    """The orthonormal 8-point DCT-II: JPEG's FDCT is ``D @ block @ D.T``."""
    rows = [[math.cos((2 * x + 1) * u * math.pi / 16) * (0.5 / math.sqrt(2) if u == 0 else 0.5) for x in range(8)]
            for u in range(8)]
    return _on_device(tuple(value for row in rows for value in row), dtype, device).view(8, 8)


def _quantize_blocks(plane: Tensor, table: Tensor) -> Tensor:
    """A ``[B, 1, H, W]`` plane of 0-255 samples (H, W multiples of 8) through level shift, DCT,
    quantization by ``table`` ``[B, 8, 8]``, dequantization and inverse DCT."""
    b, _, h, w = plane.shape
    dct = _dct_matrix(plane.dtype, plane.device)
    blocks = (plane - 128).reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coefficients = dct @ blocks @ dct.T
    step = table.view(b, 1, 1, 8, 8)
    coefficients = torch.round(coefficients / step) * step
    blocks = dct.T @ coefficients @ dct
    return (blocks.permute(0, 1, 3, 2, 4).reshape(b, 1, h, w) + 128).round().clamp(0, 255)


#: libjpeg's chroma centre (128) less kornia's (0.5 x 255), for Y, Cb, Cr in 0-255 units.
CHROMA_CENTRE_SHIFT = (0.0, 0.5, 0.5)


def jpeg_round_trip(images: Tensor, quality: Tensor) -> Tensor:
    """``images`` ``[B, 1 or 3, H, W]`` in [0, 1] saved as JPEG at ``quality`` ``[B]`` (1-100,
    whole numbers) and decoded again: [0, 1] images on 8-bit levels, the same shape. Grey
    images are coded as a grey JPEG (luma only); colour ones as YCbCr 4:2:0."""
    from kornia.color import rgb_to_ycbcr, ycbcr_to_rgb

    b, c, h, w = images.shape
    work = images.float() if images.dtype in (torch.float16, torch.bfloat16) else images
    pad_h, pad_w = (-h) % 16, (-w) % 16  # whole MCUs, edge pixels repeated as libjpeg does
    padded = F.pad(work, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else work
    luma_table = quantization_tables(quality.to(work.dtype), LUMA_TABLE)
    if c == 1:
        decoded = _quantize_blocks((padded * 255).round(), luma_table) / 255
    else:
        # kornia centres Cb and Cr on 0.5 (127.5 of 255), JPEG on 128: grey came back magenta
        shift = _on_device(CHROMA_CENTRE_SHIFT, work.dtype, work.device).view(1, 3, 1, 1)
        ycbcr = (rgb_to_ycbcr(padded) * 255 + shift).round()
        luma = _quantize_blocks(ycbcr[:, :1], luma_table)
        chroma_table = quantization_tables(quality.to(work.dtype), CHROMA_TABLE)
        halves = F.avg_pool2d(ycbcr[:, 1:], 2)  # 4:2:0: whole 8 x 8 blocks, as the image is whole MCUs
        chroma = torch.cat([_quantize_blocks(halves[:, i:i + 1], chroma_table) for i in (0, 1)], dim=1)
        chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
        decoded = ycbcr_to_rgb((torch.cat([luma, chroma], dim=1) - shift) / 255)
    decoded = (decoded[..., :h, :w].clamp(0, 1) * 255).round() / 255
    return decoded.to(images.dtype)
