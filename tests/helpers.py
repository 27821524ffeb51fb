"""Small images and tiny recipes for fast end-to-end tests."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch


def make_photos(folder: Path, count: int = 6, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """Smooth, colourful synthetic photos (gradients + blobs), saved as PNG."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    w, h = size
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    for i in range(count):
        c = torch.rand(3, 4, generator=g)
        img = torch.stack([c[k, 0] + c[k, 1] * xx + c[k, 2] * yy + 0.3 * torch.sin(6 * c[k, 3] * (xx + yy) + i) for k in range(3)])
        img = (img - img.amin()) / (img.amax() - img.amin() + 1e-6)
        array = (img * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(array).save(folder / f"photo_{i}.png")
    return folder


def make_pairs(folder: Path, count: int = 4, size: tuple[int, int] = (40, 36), seed: int = 0) -> Path:
    """A|B files as the reference pix2pix's data sets hold them: a synthetic photo A (``size`` =
    width, height of each half) on the left and B = its negative on the right, saved as PNG."""
    from PIL import Image

    make_photos(folder, count, size, seed)
    for path in sorted(folder.glob("photo_*.png")):
        a = np.asarray(Image.open(path))
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(path.with_name(path.name.replace("photo", "pair")))
        path.unlink()
    return folder


def make_transparent_images(folder: Path, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """rgba.png (random pixels and alpha), la.png (grey + the same alpha), palette.png (a palette
    whose first colour is transparent: the right half) and rgb.png (rgba.png without its alpha)
    in ``folder``; returns the RGBA array and the alpha channel of each file that has one, by stem."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rgba = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(folder / "rgba.png")
    Image.fromarray(rgba[..., [1, 3]], mode="LA").save(folder / "la.png")
    palette = Image.new("P", (width, height), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 0, width // 2, height))
    palette.save(folder / "palette.png", transparency=0)
    Image.fromarray(rgba[..., :3]).save(folder / "rgb.png")
    palette_alpha = np.zeros((height, width), np.uint8)
    palette_alpha[:, :width // 2] = 255
    return rgba, {"rgba": rgba[..., 3], "la": rgba[..., 3], "palette": palette_alpha}


TINY_GAN = {
    "task": {"name": "denoise", "sigma": 25.0},
    "data": {"size": 16, "val_fraction": 0.34, "rotate": True},
    "generator": {"name": "unet", "depth": 2, "width": 4, "dropout": True},
    "discriminator": {"name": "patchgan", "n_layers": 1, "width": 4},
    "losses": {"gan": {"name": "lsgan", "weight": 1.0}, "l1": {"weight": 10.0}},
    "train": {"steps": 8, "batch_size": 2, "device": "cpu", "ema": 0.9, "seed": 3},
    "eval": {"crop": 16, "batch_size": 2},
    "output": {"log_every": 2, "tensorboard": False, "progress": "none"},
}


#: A tiny colouriser (U-Net, L1 only) that trains in a second: for tests of trained runs.
TINY_G2C = {
    "task": {"name": "gray2color"},
    "data": {"size": 16, "val_fraction": 0.34},
    "generator": {"name": "unet", "depth": 2, "width": 4},
    "losses": {"l1": {}},
    "train": {"steps": 3, "batch_size": 2, "device": "cpu"},
    "eval": {"crop": 32},
    "output": {"tensorboard": False, "progress": "none"},
}


def tiny_recipe(data_dir: Path, out: Path, base: dict = TINY_GAN, **sections) -> dict:
    recipe = copy.deepcopy(base)
    recipe["data"]["source"] = str(data_dir)
    recipe["output"]["dir"] = str(out)
    for section, values in sections.items():
        if values is None:
            recipe.pop(section, None)
        else:
            recipe.setdefault(section, {}).update(values)
    return recipe


def page_faults_to_touch(megabytes: int) -> int:
    """Minor page faults taken while allocating, filling and freeing a buffer of that size."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = torch.ones(megabytes * 2**20 // 4)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del buffer
    return after - before


def rewrite_checkpoint_file(file: Path, data: bytes | str) -> None:
    """Replace a checkpoint's file and its line in the folder's SHA256SUMS, as if i2i had
    written it so: for states a test sets up (a record naming another best, NaN that got past
    the checks), which the checksum would otherwise refuse first as damage."""
    import hashlib

    data = data.encode() if isinstance(data, str) else data
    file.write_bytes(data)
    sums = file.parent / "SHA256SUMS"
    lines = [line for line in sums.read_text().splitlines() if not line.endswith(f"  {file.name}")]
    sums.write_text("".join(f"{line}\n" for line in lines) + f"{hashlib.sha256(data).hexdigest()}  {file.name}\n")


def grey_icc_profile(gamma: float = 1.8) -> bytes:
    """A minimal ICC v2 grey display profile (a pure gamma curve, D50 white), as image editors
    embed in greyscale scans ("Gray Gamma 1.8"): Pillow can make no grey profile itself."""
    import struct

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def padded(data: bytes) -> bytes:
        return data + b"\0" * (-len(data) % 4)

    name = f"Gray Gamma {gamma}".encode() + b"\0"
    tags = [
        (b"desc", b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(4) + bytes(4) + bytes(2) + bytes(1)
         + bytes(67)),
        (b"wtpt", b"XYZ " + bytes(4) + s15(0.9642) + s15(1.0) + s15(0.8249)),
        (b"kTRC", b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))),
        (b"cprt", b"text" + bytes(4) + b"none\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += padded(data)
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntr" + b"GRAY" + b"XYZ " + bytes(12)
              + b"acsp" + bytes(4) + bytes(4) + bytes(4) + bytes(4) + bytes(8) + bytes(4)
              + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(4) + bytes(16) + bytes(28))
    assert len(header) == 128
    return header + table + body
