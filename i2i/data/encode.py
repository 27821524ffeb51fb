"""Writing images: 8-bit ones through Pillow, 16-bit PNG and TIFF encoded here.

PNGs of either depth are deflated at zlib level 3 (:data:`PNG_LEVEL`), not Pillow's default 6:
on the sample photos at 256 px, 8.4 instead of 20.5 ms per image on one core, for files 5.5 %
larger. Writing is what bounds ``i2i translate`` to PNG beside a GPU.

Pillow has no 16-bit colour mode (``I;16`` is grey only) and torchvision's ``encode_png``
takes uint8 only, so 16 bits per channel are written by the two small encoders below rather
than through a new dependency:

* PNG: the standard's 16-bit grey, grey+alpha, RGB and RGBA colour types (big-endian samples),
  each row filtered with whichever of the five PNG filters gives the smallest sum of absolute
  differences (libpng's heuristic), then deflated at zlib level 3: the low byte of a photo's
  samples is mostly noise, and level 6 (Pillow's default) took about four times as long for
  files 2 % smaller (a 6-megapixel RGB image: about 2 s in all).
* TIFF: baseline, uncompressed (as Pillow writes 8-bit TIFFs), one strip, little-endian;
  alpha is an unassociated extra sample, as Pillow writes it for RGBA. Grey with alpha is
  written as RGBA: Pillow cannot open a 16-bit grey+alpha TIFF, so i2i could not read it back.

Alpha is stored straight (not premultiplied), as it was read.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

#: zlib level of every PNG written (see the module's docstring).
PNG_LEVEL = 3
#: ``--format`` names and Pillow's format names.
SAVE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF"}
#: Formats that hold an alpha channel, and formats that hold 16 bits per channel.
ALPHA_FORMATS = frozenset({"png", "webp", "tif"})
DEEP_FORMATS = frozenset({"png", "tif"})
#: The longest side each format can store (WebP's 14-bit sizes, JPEG's 16-bit ones).
SIDE_LIMITS = {"webp": 16383, "jpg": 65535}


def with_alpha(pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``[H, W, C]`` pixels translated from the input composited onto white, with the input's
    ``alpha`` (``[H, W]``, uint8 or uint16) appended as a last channel at the pixels' depth (an
    8-bit alpha in a 16-bit image is ``a * 257``, exact; a 16-bit one in an 8-bit image
    ``round(a / 257)``).

    Where the alpha is partial the white is taken back out (``c = (c' - (1 - a)) / a``), so
    the output shown over white is the translation of the input shown over white (clipped
    where that would need a colour darker than black); kept as they were, such pixels were
    lightened twice (a 50 % shadow came out at 75 %)."""
    if alpha.shape != pixels.shape[:2]:
        alpha = _enlarged_alpha(alpha, pixels.shape[:2])
    if pixels.dtype == np.uint16 and alpha.dtype == np.uint8:
        alpha = alpha.astype(np.uint16) * 257
    elif pixels.dtype == np.uint8 and alpha.dtype == np.uint16:
        alpha = ((alpha.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)  # round(a / 257), halves up
    alpha = alpha.astype(pixels.dtype)
    pixels = _without_white(pixels, alpha)
    return np.concatenate([pixels, alpha[..., None]], axis=2)


def _enlarged_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The input's alpha at the size of a translation that enlarged it a whole number of times
    (a super-resolution task's ``output_scale``): bicubic, as the colours were, kept to its range."""
    (height, width), (out_height, out_width) = alpha.shape, size
    if out_height % height or out_width % width or out_height // height != out_width // width:
        raise ValueError(f"alpha of shape {list(alpha.shape)} for an image of {list(size)}")
    import torch
    import torch.nn.functional as F

    top = np.iinfo(alpha.dtype).max
    values = torch.from_numpy(alpha.astype(np.float32))[None, None]
    scaled = F.interpolate(values, size=(out_height, out_width), mode="bicubic", align_corners=False)
    return scaled[0, 0].clamp(0, top).round().numpy().astype(alpha.dtype)


def _without_white(pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Undo compositing onto white where ``0 < alpha < max`` (see :func:`with_alpha`)."""
    top = np.iinfo(pixels.dtype).max
    partial = (alpha > 0) & (alpha < top)
    if not partial.any():
        return pixels
    a = alpha[partial].astype(np.float32)[:, None] / top
    values = pixels[partial].astype(np.float32)
    straight = np.clip(np.rint((values - (1 - a) * top) / a), 0, top)
    out = pixels.copy()
    out[partial] = straight.astype(pixels.dtype)
    return out


#: The longest file name (in bytes) of Linux's, macOS's and Windows' usual file systems.
NAME_MAX_BYTES = 255


def name_too_long(name: str) -> bool:
    """Whether a file name is past :data:`NAME_MAX_BYTES` (a 251-letter stem plus ``.webp``)."""
    return len(os.fsencode(name)) > NAME_MAX_BYTES


def too_long_said(name: str) -> str:
    """``aaaa...aaaa.webp, would be 256 bytes, past the 255 a file name may have`` for a name
    :func:`name_too_long` refuses, for the messages that name the file it belongs to."""
    return (f"{name[:40]}...{name[-20:]}, would be {len(os.fsencode(name))} bytes, past the {NAME_MAX_BYTES} a file "
            "name may have")


def temporary_beside(path: Path, tag: str) -> Path:
    """A hidden name in ``path``'s folder to write ``path`` under before renaming it into place
    (whole or not at all): ``.NAME.TAG``, or ``.<hash of NAME>.TAG`` where that would be too
    long for the file system although ``NAME`` is not."""
    name = f".{path.name}.{tag}"
    if name_too_long(name):
        name = f".{hashlib.sha1(os.fsencode(path.name)).hexdigest()[:20]}.{tag}"
    return path.with_name(name)


def save_image(pixels: np.ndarray, path: str | Path, fmt: str) -> None:
    """Write ``[H, W, C]`` pixels (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; uint8, or uint16
    for ``png``/``tif``) to ``path`` in ``fmt`` (a key of :data:`SAVE_FORMATS`)."""
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"pixels must be H x W x 1, 2, 3 or 4, got shape {list(pixels.shape)}")
    if pixels.dtype == np.uint16:
        if fmt not in DEEP_FORMATS:
            raise ValueError(f"{fmt} holds 8 bits per channel, not 16")
        data = encode_png16(pixels) if fmt == "png" else encode_tiff16(pixels)
        with open(path, "wb") as handle:
            handle.write(data)
        return
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8 or uint16, not {pixels.dtype}")
    from PIL import Image

    mode = ("L", "LA", "RGB", "RGBA")[pixels.shape[2] - 1]
    image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode=mode)
    options = {"compress_level": PNG_LEVEL} if fmt == "png" else {}
    image.save(path, format=SAVE_FORMATS[fmt], **options)


# -- 16-bit PNG ---------------------------------------------------------------------------------
#: PNG colour type for 1-4 channels: grey, grey+alpha, RGB, RGBA.
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG of ``[H, W, C]`` uint16 pixels (C = 1, 2, 3 or 4)."""
    height, width, channels = pixels.shape
    if height == 0 or width == 0:
        raise ValueError("a PNG needs at least one pixel")
    bpp = 2 * channels  # bytes per pixel: the distance the Sub and Paeth filters look back
    raw = np.ascontiguousarray(pixels, dtype=">u2").view(np.uint8).reshape(height, width * bpp)
    compressor = zlib.compressobj(PNG_LEVEL)
    parts = []
    rows = max(1, (1 << 20) // raw.shape[1])  # filter in blocks of about 1 MB: bounded temporaries
    for start in range(0, height, rows):
        block = _filter_rows(raw, start, min(height, start + rows), bpp)
        parts.append(compressor.compress(block.tobytes()))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 16, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))


def _filter_rows(raw: np.ndarray, start: int, stop: int, bpp: int) -> np.ndarray:
    """Rows ``start:stop`` of ``raw`` (uint8 ``[H, row bytes]``), each prefixed with its PNG
    filter type byte and filtered by the filter whose output has the smallest sum of absolute
    (signed byte) values. Bytes wrap modulo 256, as the PNG spec's filters do."""
    cur = raw[start:stop]
    up = raw[start - 1:stop - 1] if start else np.vstack([np.zeros((1, raw.shape[1]), np.uint8), raw[:stop - 1]])
    left = np.zeros_like(cur)
    left[:, bpp:] = cur[:, :-bpp]
    up_left = np.zeros_like(up)
    up_left[:, bpp:] = up[:, :-bpp]
    l16, u16, ul16 = left.astype(np.int16), up.astype(np.int16), up_left.astype(np.int16)
    # Paeth (PNG spec 9.4): of left, up and up-left, the one closest to left + up - up_left
    pa, pb, pc = np.abs(u16 - ul16), np.abs(l16 - ul16), np.abs(l16 + u16 - 2 * ul16)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    average = ((l16 + u16) >> 1).astype(np.uint8)
    candidates = np.stack([cur, cur - left, cur - up, cur - average, cur - paeth])  # types 0-4
    cost = np.minimum(candidates, 0 - candidates).sum(axis=2, dtype=np.int64)  # |signed byte|
    choice = cost.argmin(axis=0)
    out = np.empty((cur.shape[0], cur.shape[1] + 1), np.uint8)
    out[:, 0] = choice
    out[:, 1:] = candidates[choice, np.arange(cur.shape[0])]
    return out


# -- 16-bit TIFF --------------------------------------------------------------------------------
_SHORT, _LONG = 3, 4


def encode_tiff16(pixels: np.ndarray) -> bytes:
    """An uncompressed 16-bit baseline TIFF of ``[H, W, C]`` uint16 pixels (grey, RGB or RGBA;
    grey+alpha is written as RGBA)."""
    if pixels.shape[2] == 2:
        pixels = pixels[..., [0, 0, 0, 1]]
    height, width, channels = pixels.shape
    data = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    if len(data) + 1024 >= 1 << 32:
        raise ValueError("too large for a TIFF file (4 GB)")
    data_offset = 8
    extra_offset = data_offset + len(data) + (len(data) & 1)  # word-aligned
    bits = struct.pack(f"<{channels}H", *[16] * channels)
    entries = [
        (256, _LONG, 1, width),  # ImageWidth
        (257, _LONG, 1, height),  # ImageLength
        (258, _SHORT, channels, bits),  # BitsPerSample
        (259, _SHORT, 1, 1),  # Compression: none
        (262, _SHORT, 1, 1 if channels == 1 else 2),  # PhotometricInterpretation: BlackIsZero / RGB
        (273, _LONG, 1, data_offset),  # StripOffsets
        (277, _SHORT, 1, channels),  # SamplesPerPixel
        (278, _LONG, 1, height),  # RowsPerStrip: one strip
        (279, _LONG, 1, len(data)),  # StripByteCounts
        (284, _SHORT, 1, 1),  # PlanarConfiguration: chunky
    ]
    if channels == 4:
        entries.append((338, _SHORT, 1, 2))  # ExtraSamples: unassociated alpha
    extra = b""  # values longer than 4 bytes, stored after the pixels
    packed = []
    for tag, kind, count, value in entries:
        if isinstance(value, bytes):
            if len(value) <= 4:
                field = value.ljust(4, b"\0")
            else:
                field = struct.pack("<I", extra_offset + len(extra))
                extra += value + b"\0" * (len(value) & 1)
        else:
            field = struct.pack("<HH", value, 0) if kind == _SHORT else struct.pack("<I", value)
        packed.append(struct.pack("<HHI", tag, kind, count) + field)
    ifd_offset = extra_offset + len(extra)
    ifd = struct.pack("<H", len(packed)) + b"".join(packed) + struct.pack("<I", 0)
    return (b"II" + struct.pack("<HI", 42, ifd_offset) + data + b"\0" * (len(data) & 1) + extra + ifd)
