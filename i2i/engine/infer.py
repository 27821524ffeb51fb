"""Running a generator on images of any size (padding to the network's multiple)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def size_multiple(net: nn.Module) -> int:
    """The multiple of H and W the network needs (``size_multiple`` attribute; 1 if unset)."""
    for module in (net, getattr(net, "module", None), getattr(net, "_orig_mod", None)):
        if module is not None and hasattr(module, "size_multiple"):
            return int(module.size_multiple)
    return 1


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad the bottom/right edges (reflect where possible) so H and W divide by ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def run_generator(net: nn.Module, input: Tensor) -> Tensor:
    """``net(input)`` with the input padded to the net's multiple and the output cropped back."""
    if input.dim() != 4:
        return net(input)
    padded, (h, w) = pad_to_multiple(input, size_multiple(net))
    out = net(padded)
    return out[..., :h, :w]
