"""Load generators trained with the reference pix2pix/CycleGAN code (``latest_net_G.pth``).

The reference (junyanz/pytorch-CycleGAN-and-pix2pix) saves a plain state dict of its
``UnetGenerator`` or ``ResnetGenerator``, sometimes from a ``DataParallel`` (keys prefixed
``module.``). i2i's ``unet`` and ``resnet`` mirror the reference's module nesting, so the keys
are the same and the mapping is the identity apart from a few repairs:

=====================================================  =================================================
reference key                                          i2i key
=====================================================  =================================================
``module.<key>`` (DataParallel)                        ``<key>``
``_orig_mod.<key>`` (torch.compile)                    ``<key>``
``{"state_dict": {...}}`` (a script's wrapper)         the inner state dict
U-Net ``model.model.0.weight`` (first conv)            same; each level nests as ``model.model.1.`` then
                                                       ``model.3.`` per level (down conv ``model.1``,
                                                       norm ``model.2``, up conv ``model.5``,
                                                       innermost up conv ``model.3``, outermost up
                                                       conv ``model.model.3``)
ResNet ``model.1.weight`` (stem), ``model.<10+i>.``    same
``conv_block.<j>`` (residual block ``i``)
BatchNorm ``num_batches_tracked`` missing (PyTorch     added, set to 0
< 0.4.1)
InstanceNorm ``running_mean``/``running_var`` (old     dropped (instance norm keeps no statistics; the
PyTorch; the reference patches these out too)          reference's ``load_networks`` does the same)
conv ``bias`` absent with ``norm = "none"`` (the       added as zeros (i2i keeps biases on convs without
reference drops biases without norm)                   normalisation; zero bias = the same function)
=====================================================  =================================================

Anything else missing, unexpected or of the wrong shape is a :class:`i2i.UserError`.
Dropout leaves no weights, so a U-Net's ``dropout`` is not detected: it is recorded as ``true``,
as the reference's pix2pix (where its U-Nets come from) trains with it, so a run fine-tuning the
import trains the way it did (an evaluation or translation is the same either way: eval mode has
no dropout); ResNet dropout shifts layer indices and is detected. ``reflect`` and ``replicate`` padding cannot be told apart from the
weights: ``reflect`` (the reference's only choice in ``define_G``) is assumed.
"""

from __future__ import annotations

import warnings
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import i2i

from . import ALIASES, GENERATORS

_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
_CHANNELS = ("in_channels", "out_channels")


#: Keys under which hand-written training scripts often save a state dict (``{"state_dict": ...}``)
WRAPPER_KEYS = ("state_dict", "model", "generator", "netG", "G")


def _plain(state_dict: Any) -> dict[str, Tensor]:
    """Check it is a state dict, take it out of a training script's dict (``{"state_dict": ...}``),
    and strip the prefixes of ``DataParallel`` (``module.``) and ``torch.compile`` (``_orig_mod.``)."""
    if isinstance(state_dict, Mapping) and not all(isinstance(v, Tensor) for v in state_dict.values()):
        # a training script's dict ({"state_dict": ..., "epoch": 3, "optimizer": ...}): its weights
        inner = next((state_dict[k] for k in WRAPPER_KEYS if isinstance(state_dict.get(k), Mapping)), None)
        if inner is not None:
            state_dict = inner
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise i2i.UserError("not a reference generator: expected a state dict (a mapping of names to tensors)")
    plain = dict(state_dict)
    for prefix in ("module.", "_orig_mod."):
        if plain and all(k.startswith(prefix) for k in plain):
            plain = {k[len(prefix):]: v for k, v in plain.items()}
    return plain


def _norm(sd: dict[str, Tensor], first_conv: str) -> str:
    """Batch norm has affine weights beside its statistics; instance norm gives convs a bias."""
    for key in sd:
        if key.endswith(".running_var") and key[: -len("running_var")] + "weight" in sd:
            return "batch"
    # a norm layer's weight (1-D) without statistics: batch norm saved without its buffers
    unpaired = next((key for key, value in sd.items() if key.endswith(".weight") and value.dim() == 1), None)
    if unpaired is not None:
        raise i2i.UserError(f"{unpaired} is a batch norm's weight, but its running_mean and running_var are not in the "
                            "file; save the network's whole state_dict(), as the reference's save_networks does")
    return "instance" if first_conv + ".bias" in sd else "none"


def _conv_indices(sd: dict[str, Tensor], prefix: str) -> list[int]:
    """Indices ``i`` of 4-D ``<prefix><i>.weight`` entries (convolutions) directly under ``prefix``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    return sorted(int(m.group(1)) for k, v in sd.items() if (m := pattern.match(k)) and v.dim() == 4)


def _detect_unet(sd: dict[str, Tensor]) -> dict[str, Any]:
    first = sd["model.model.0.weight"]
    prefix, depth = "model.model.1.model.", 1
    while prefix + "1.weight" in sd:  # each inner level: down conv at index 1, submodule at 3
        depth += 1
        prefix += "3.model."
    up = sd.get("model.model.3.weight" if depth > 1 else "model.model.2.weight")
    if up is None or up.dim() != 4:
        raise i2i.UserError("not a reference generator: a U-Net without its outermost up-convolution")
    return {
        "in_channels": int(first.shape[1]), "out_channels": int(up.shape[1]),
        "depth": depth, "width": int(first.shape[0]), "norm": _norm(sd, "model.model.0"),
        # dropout leaves no weights: the reference's pix2pix, where its U-Nets come from, trains with it
        "dropout": True,
    }


def _detect_resnet(sd: dict[str, Tensor]) -> dict[str, Any]:
    stem = sd["model.1.weight"]
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
    convs = _conv_indices(sd, "model.")
    if not blocks or not convs:
        raise i2i.UserError("not a reference generator: a ResNet generator without residual blocks")
    inner = _conv_indices(sd, f"model.{blocks[0]}.conv_block.")
    if len(inner) != 2:
        raise i2i.UserError(
            f"not a reference generator: residual block model.{blocks[0]} has {len(inner)} convolutions, expected 2"
        )
    padded = inner[0] == 1  # reflect/replicate put a padding layer before each conv
    return {
        "in_channels": int(stem.shape[1]), "out_channels": int(sd[f"model.{convs[-1]}.weight"].shape[0]),
        "blocks": len(blocks), "width": int(stem.shape[0]), "norm": _norm(sd, "model.1"),
        "dropout": inner[1] - inner[0] == (5 if padded else 4),
        "padding": "reflect" if padded else "zero",
    }


def detect_reference_architecture(state_dict: Mapping[str, Tensor]) -> tuple[str, dict[str, Any]]:
    """Infer ``(name, options)`` of the i2i generator matching a reference ``latest_net_G.pth``.

    ``name`` is ``"unet"`` or ``"resnet"``; ``options`` holds the recipe options read from the
    weights (``depth``/``blocks``, ``width``, ``norm``; ResNet ``dropout``, ``padding``; U-Net
    ``dropout = True``, assumed) plus
    ``in_channels`` and ``out_channels``, which are factory arguments, not recipe options.
    """
    sd = _plain(state_dict)
    if "model.model.0.weight" in sd:
        return "unet", _detect_unet(sd)
    if "model.1.weight" in sd and any(".conv_block." in k for k in sd):
        return "resnet", _detect_resnet(sd)
    first = sd.get("model.0.weight", sd.get("net.0.weight"))
    pixel_d = "net.0.weight" in sd and getattr(first, "ndim", 0) == 4 and tuple(first.shape[-2:]) == (1, 1)
    if pixel_d or getattr(first, "ndim", 0) == 4 and tuple(first.shape[-2:]) == (4, 4):  # PatchGAN's 4x4 first layer
        raise i2i.UserError(
            "this is a reference discriminator (latest_net_D.pth), not a generator; use latest_net_G.pth "
            "(CycleGAN's: latest_net_G_A.pth or latest_net_G_B.pth)"
        )
    if not sd:
        raise i2i.UserError("holds no tensors: not a pix2pix/CycleGAN reference generator")
    if getattr(first, "ndim", 0) == 4:
        raise i2i.UserError(
            f"not a pix2pix/CycleGAN reference generator: its first layer is a {first.shape[-2]}x{first.shape[-1]} "
            f"convolution, as in a plain stack of convolutions (DnCNN, FFDNet from other code); import-weights reads "
            "the reference's U-Net and ResNet generators only"
        )
    example = next(iter(sd))
    raise i2i.UserError(
        f"not a pix2pix/CycleGAN reference generator: no 'model.model.0.weight' (U-Net) or "
        f"'model.1.weight' with residual blocks (ResNet); first key is {example!r}"
    )


def _resolve(name: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Factory name and options for ``name`` (``unet``, ``resnet`` or one of their aliases)."""
    if name in ALIASES:
        base, defaults, _ = ALIASES[name]
        return base, {**defaults, **options}
    if name not in ("unet", "resnet"):
        raise i2i.UserError(f"reference weights are U-Net or ResNet generators, not '{name}'")
    return name, dict(options)


def build_generator(name: str, options: Mapping[str, Any], *, device: str | torch.device | None = None) -> nn.Module:
    """The i2i generator for ``(name, options)`` as returned by :func:`detect_reference_architecture`."""
    base, opts = _resolve(name, options)
    channels = [opts.pop(c) for c in _CHANNELS]
    with torch.device(device or "cpu"):
        return GENERATORS[base](*channels, **opts)


def convert_reference_state_dict(
    state_dict: Mapping[str, Tensor], name: str, options: Mapping[str, Any]
) -> dict[str, Tensor]:
    """A state dict that loads with ``strict=True`` into the i2i generator ``(name, options)``.

    ``options`` may omit ``in_channels``/``out_channels`` (read from the weights then). The
    tensors are not copied. See the module docstring for the key mapping.
    """
    sd = _plain(state_dict)
    options = dict(options)
    if any(c not in options for c in _CHANNELS):
        detected = detect_reference_architecture(sd)[1]
        options = {**{c: detected[c] for c in _CHANNELS}, **options}
    options = {k: v for k, v in options.items() if k not in ("init", "init_gain")}  # no effect on keys
    expected = build_generator(name, options, device="meta").state_dict()

    out: dict[str, Tensor] = {}
    for key, target in expected.items():
        if key in sd:
            if sd[key].shape != target.shape:
                raise i2i.UserError(
                    f"reference weights do not fit {name}: {key} has shape {tuple(sd[key].shape)}, "
                    f"expected {tuple(target.shape)}"
                )
            out[key] = sd[key]
        elif key.endswith(".num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.long)
        elif key.endswith(".bias") and key[: -len("bias")] + "weight" in sd:
            out[key] = torch.zeros(target.shape, dtype=sd[key[: -len("bias")] + "weight"].dtype)
        else:
            extra = _unexpected(sd, expected)  # a renamed key shows as both: name the two together
            also = f", and the file has {extra[0]}, which it does not expect" if extra else ""
            raise i2i.UserError(f"reference weights do not fit {name} {_describe(options)} (as read from the file's "
                                f"keys): missing {key}{also}")
    extra = _unexpected(sd, expected)
    if extra:
        raise i2i.UserError(f"reference weights do not fit {name} {_describe(options)}: unexpected {extra[0]}")
    return out


def _unexpected(sd: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> list[str]:
    """The file's tensors the generator has no place for (statistics i2i drops aside)."""
    return [k for k in sd if k not in expected and not k.endswith(_STATISTICS)]


def _describe(options: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")"


def read_reference_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, so no code in
    the file runs; a missing, foreign or unsafe file is a one-line :class:`i2i.UserError`."""
    path = Path(path)
    if not path.is_file():
        raise i2i.UserError(f"{path}: no such checkpoint file")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save writes a zip archive (a pickle before torch 1.6)
        raise i2i.UserError(f"{path}: not a PyTorch checkpoint (files written by torch.save start with a zip or pickle "
                            f"header; this one starts with {head!r}); give the .pth file the reference saved")
    try:
        with warnings.catch_warnings():  # torch warns before failing on foreign files: one line is enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many kinds for a truncated or foreign file
        raise i2i.UserError(_unreadable(path, exc)) from None


def _unreadable(path: Path, exc: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` refused ``path``.

    torch's own message starts with advice to retry with ``weights_only=False``, which would run
    whatever code the file holds; the line that says what it met is the useful one.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        named = re.search(r"GLOBAL ([\w.]+)", line)  # a pickled object that is not a tensor
        if named:
            return (f"{path}: holds pickled Python objects, not only tensors (it refers to {named.group(1)}); "
                    "i2i never runs code from a checkpoint: save the generator's state_dict() instead")
    detail = lines[0] if lines else type(exc).__name__
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:  # what the unpickler met, on this line or the next
            detail = line.split("error:", 1)[1].strip() or (lines[i + 1] if i + 1 < len(lines) else detail)
    if "zip archive" in detail:  # torch's "failed finding central directory": the end of the file is gone
        return f"{path}: truncated or damaged (its zip archive cannot be read: {detail[:120]}); copy the file again"
    return (f"{path}: not a readable PyTorch checkpoint ({detail[:120]}); give the .pth file the reference's "
            "torch.save wrote (latest_net_G.pth)")


def load_reference_generator(
    source: str | Path | Mapping[str, Tensor],
) -> tuple[nn.Module, str, dict[str, Any]]:
    """Build the i2i generator for a reference checkpoint (path or state dict) and load it.

    Returns ``(generator, name, options)``, with ``options`` as from
    :func:`detect_reference_architecture`; the generator is in eval mode.
    """
    state_dict = source if isinstance(source, Mapping) else read_reference_checkpoint(source)
    name, options = detect_reference_architecture(state_dict)
    converted = convert_reference_state_dict(state_dict, name, options)
    net = build_generator(name, options)
    net.load_state_dict(converted, strict=True)
    return net.eval(), name, options
