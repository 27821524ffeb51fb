"""Running a generator on images of any size: padding to the network's multiple, and tiling
images too large to translate in one piece."""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def size_multiple(net: nn.Module) -> int:
    """The multiple of H and W the network needs (``size_multiple`` attribute; 1 if unset)."""
    owner = size_multiple_owner(net)
    return int(owner.size_multiple) if owner is not None else 1


def size_multiple_owner(net: nn.Module) -> nn.Module | None:
    """The module that declares ``size_multiple``: the network, or the one it wraps (DDP's
    ``module``, torch.compile's ``_orig_mod``, a task's ``wrap_generator`` wrapper's network,
    which the wrapper need not repeat); None when none does."""
    for module in (net, getattr(net, "module", None), getattr(net, "_orig_mod", None),
                   getattr(net, "i2i_unwrapped", None)):
        if module is not None and hasattr(module, "size_multiple"):
            return module
    return None


#: Images are padded to at least this many pixels a side before a generator sees them: a ResNet
#: generator's reflection padding at quarter scale needs 16 px, and instance norm needs more than
#: one pixel at every scale; smaller images (a 1 x 1 icon, a 3 px strip) failed part-way through a
#: folder. Only images below it are affected.
MIN_SIDE = 16


def pad_to_multiple(x: Tensor, multiple: int, minimum: int = 0) -> tuple[Tensor, tuple[int, int]]:
    """Pad the bottom/right edges (reflect where possible) so H and W divide by ``multiple``
    and are at least ``minimum`` (rounded up to the multiple)."""
    h, w = x.shape[-2:]
    floor = -(-minimum // multiple) * multiple
    ph, pw = max((-h) % multiple, floor - h), max((-w) % multiple, floor - w)
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def run_generator(net: nn.Module, input: Tensor) -> Tensor:
    """``net(input)`` with the input padded to the net's multiple and the output cropped back."""
    if input.dim() != 4:
        return net(input)
    from ..errors import GeneratorFailure
    from .contracts import raise_plugin_failure

    multiple = size_multiple(net)
    padded, (h, w) = pad_to_multiple(input, multiple, MIN_SIDE)
    try:
        out = net(padded)
    except Exception as exc:  # a shape the generator cannot take (a wrapper's sum, a fixed-size layer, an assert)
        hint = " (a generator that needs multiples of N px declares size_multiple = N)" if multiple == 1 else ""
        raise_plugin_failure(exc, f"the generator ({_class_name(net)}) failed on an input of "
                                  f"{padded.shape[-2]}x{padded.shape[-1]} px{hint}: ", GeneratorFailure)
    if isinstance(out, Tensor) and out.dim() == 4 and out.shape[-2:] != padded.shape[-2:]:
        raise GeneratorFailure(f"the generator ({_class_name(net)}) returned {out.shape[-2]}x{out.shape[-1]} px for an input "
                          f"of {padded.shape[-2]}x{padded.shape[-1]}: a generator keeps its input's height and width (one "
                          "that needs multiples of N px declares size_multiple = N); report this to the plugin's author")
    return out[..., :h, :w]


#: Images with more pixels than this are tiled when the tile size is "auto" (about 2048 x 2048).
AUTO_TILE_PIXELS = 2048 * 2048
#: The tile side and overlap "auto" tiling uses.
AUTO_TILE, AUTO_OVERLAP = 1024, 64


def resolve_tile(tile: int | str | None, h: int, w: int) -> int:
    """The tile side to use for an ``h x w`` image: 0 means no tiling.

    ``"auto"``/``None`` tiles only images above :data:`AUTO_TILE_PIXELS`; an int forces that
    tile side (0 turns tiling off).
    """
    if tile is None or tile == "auto":
        return AUTO_TILE if h * w > AUTO_TILE_PIXELS else 0
    if not is_whole_number(tile):
        raise ValueError(f"tile must be 'auto' (or None), 0 or a positive number of pixels, got {tile!r}")
    return int(tile)


def check_overlap(overlap: object) -> int:
    """``overlap``, the pixels neighbouring tiles share, as a whole number of pixels >= 0 (a
    tile uses at most half its side of it)."""
    if not is_whole_number(overlap):
        raise ValueError(f"overlap must be a whole number of pixels, 0 or more, got {overlap!r}")
    return int(overlap)


def is_whole_number(value: object, least: int = 0) -> bool:
    """A whole number >= ``least`` (a numpy integer too), not a bool, a float or a string."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least


def _starts(n: int, tile: int, stride: int) -> list[int]:
    if n <= tile:
        return [0]
    return [*range(0, n - tile, stride), n - tile]


def _ramp(n: int, overlap: int, device: torch.device) -> Tensor:
    """1 in the middle, falling linearly towards both ends over ``overlap`` pixels (never 0)."""
    pos = torch.arange(n, device=device, dtype=torch.float32)
    edge = torch.minimum(pos + 0.5, n - 0.5 - pos)
    return (edge / max(overlap, 1)).clamp(max=1.0)


def tile_side(net: nn.Module, tile: int) -> int:
    """The tile side used for ``tile``: rounded down to the network's size multiple, one multiple at least."""
    multiple = size_multiple(net)
    return max(multiple, int(tile) - int(tile) % multiple)


def run_tiled(net: nn.Module, input: Tensor, tile: int, overlap: int = AUTO_OVERLAP) -> Tensor:
    """``net(input)`` computed on overlapping ``tile x tile`` pieces, blended linearly.

    Why: a U-Net at full resolution on a 20-megapixel photo needs many GB of activations; tiles
    bound the memory. Overlaps are cross-faded so no seams show; the tile side is rounded down
    to the network's multiple. Inputs no larger than one tile run in one piece.
    """
    h, w = input.shape[-2:]
    tile = tile_side(net, tile)
    if h <= tile and w <= tile:
        return run_generator(net, input)
    overlap = max(0, min(overlap, tile // 2))
    stride = tile - overlap
    out: Tensor | None = None
    weight = torch.zeros(1, 1, h, w, device=input.device, dtype=torch.float32)
    for y in _starts(h, tile, stride):
        for x in _starts(w, tile, stride):
            piece = input[..., y:y + tile, x:x + tile]
            th, tw = piece.shape[-2:]
            result = run_generator(net, piece).float()
            if out is None:
                out = torch.zeros(input.shape[0], result.shape[1], h, w, device=input.device, dtype=torch.float32)
            window = _ramp(th, overlap, input.device)[:, None] * _ramp(tw, overlap, input.device)[None, :]
            out[..., y:y + th, x:x + tw] += result * window
            weight[..., y:y + th, x:x + tw] += window
    assert out is not None
    return out.div_(weight)


def run_any_size(net: nn.Module, input: Tensor, tile: int | str | None = "auto", overlap: int = AUTO_OVERLAP) -> Tensor:
    """``net(input)`` for images of any size: padded to the net's multiple, and tiled (see
    :func:`resolve_tile`) when large, so a whole 20-megapixel photo does not exhaust memory."""
    side = resolve_tile(tile, *input.shape[-2:])
    overlap = check_overlap(overlap)
    return run_tiled(net, input, side, overlap) if side else run_generator(net, input)


def _class_name(net: Any) -> str:
    """The class of the plugin's network, not of a task's wrapper around it (ResidualGenerator)."""
    return type(getattr(net, "i2i_unwrapped", None) or net).__name__
