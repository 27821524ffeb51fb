"""Image files to uint8 tensors, and tensors to PIL images: the only place that reads Pillow's
pixels (writing 8- and 16-bit files is :mod:`i2i.data.encode`).

Every file is decoded the same way wherever it is read (training, validation, ``translate``,
``eval --data``), so a model sees the same pixels at training and inference time:

* EXIF orientation is applied (the tensor is upright as a viewer shows it).
* Transparency (LA, RGBA, palette with a transparent colour, and the transparent colour key
  of a grey or RGB PNG, as PNG optimisers write binary alpha) is composited onto **white**, as
  most viewers and browsers show it, rather than onto black, which would darken edges.
* High bit depths are scaled to 8 bits (unless asked for 16, see below), never clipped: 16-bit values ``v`` become
  ``round(v / 257)`` (65535 -> 255, 32768 -> 128). 32-bit integer (``I``) and float (``F``)
  images have no declared range, so it is guessed from the largest value: ``<= 2`` (floats
  only) is ``[0, 1]``, values above 1 clipped (resampling and HDR work overshoot 1 a little; a
  0-255 image whose brightest pixel is 2 is black to the eye), ``<= 255`` (``<= 510`` for
  floats, clipped at 255 in the same way) is 8-bit, ``<= 65535`` is 16-bit, anything larger is
  scaled by its maximum. Negative values and NaNs become 0. Clipping, zeroing and scaling by
  the maximum print a warning naming the file (for the first few such files of a process).
* An embedded ICC colour profile other than sRGB (Display P3 from phones, Adobe RGB from
  cameras, a CMYK press profile) is converted to sRGB by Pillow's LittleCMS, so colours look
  as a colour-managed viewer shows them; untagged images are taken as sRGB. A profile that
  cannot be read is ignored, as a damaged EXIF block is.
* CMYK, YCbCr, HSV, ... are converted to RGB by Pillow.
* Images above Pillow's decompression-bomb limit (about 179 megapixels) are refused as too
  large to decode; the command line silences Pillow's raw warning for half that size.
* Grey images asked for as 3 channels are replicated; colour images asked for as 1 channel
  become their luminance, ITU-R BT.601 ``0.299 R + 0.587 G + 0.114 B`` (the weights of
  ``kornia.color.rgb_to_grayscale``), rounded.

Training and scoring read a set holding any such deep file at 16 bits (``deep=True``: uint16,
at full precision, 8-bit files times 257), so a denoiser of 16-bit scans learns the levels
between 8-bit ones. ``i2i translate`` reads files with :func:`decode_full`: the same pixels, except that a deep
image keeps 16 bits (the rounding to 8 bits above is at most half an 8-bit level away), plus what the written output keeps of the file: its alpha channel and
whether it had more than 8 bits per channel. Pillow reads 16-bit RGB(A) TIFFs as 8-bit (their
high bytes), so those reach the network, and give their alpha, at 8 bits; so are 16-bit colour
PNGs with a colour profile other than sRGB, whose profile LittleCMS applies to 8-bit colour only.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, UnidentifiedImageError

from ..errors import UserError
from ..messages import say

#: File name suffixes read as images (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: The same, for messages: "jpg, jpeg, png, ...".
IMAGE_KINDS = ", ".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)

#: ITU-R BT.601 luma weights, as used by ``kornia.color.rgb_to_grayscale``.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

_EXIF_ORIENTATION = 0x0112
# What damaged or unsupported files raise from Pillow, zlib and torchvision's PNG decoder.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, TypeError, KeyError, IndexError,
                  RuntimeError, zlib.error, struct.error)


class UnreadableImageError(UserError):
    """A file that is missing, truncated, corrupt or in a format Pillow cannot decode.

    ``reason`` is the cause alone (no path), for warnings that list several skipped files.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def _reason(exc: BaseException, path: Path | None = None) -> str:
    """Why Pillow could not read a file, in a few words (its messages repeat the path)."""
    if isinstance(exc, UnidentifiedImageError) and path is not None:
        try:
            if path.stat().st_size == 0:
                return "empty file (0 bytes)"
        except OSError:
            pass
    if isinstance(exc, Image.DecompressionBombError):
        sizes = re.findall(r"\d+", str(exc))
        return (f"too large to decode ({int(sizes[0]):,} pixels; the limit is {int(sizes[1]):,})" if len(sizes) >= 2
                else "too large to decode")
    if isinstance(exc, UnidentifiedImageError):
        kind = _unread_kind(path) if path is not None else ""
        if kind:  # an iPhone's photo renamed .jpg: "Pillow cannot read it" told its owner nothing
            return f"a {kind} image, whatever its extension says; i2i does not read {kind}: convert it to JPEG or PNG"
        readable = _signature_kind(path) if path is not None else ""
        if readable:  # a PNG with a flipped header byte is no unknown format: it is a damaged PNG
            return f"a damaged {readable} file, whose header does not read"
        named = _NAMED_KINDS.get(path.suffix.lower(), "") if path is not None else ""
        if named:  # its first bytes are no image's: a damaged start, or another kind of file renamed
            return (f"named {path.suffix} but does not start as a {named} file does (damaged, or another kind of file "
                    "given that name)")
        return "not an image format Pillow can read"
    if isinstance(exc, FileNotFoundError):
        if path is not None and path.is_symlink():
            return f"a link to {os.readlink(path)}, which is gone"
        return "no such file"
    if "truncated" in str(exc).lower() or "Truncated File Read" in str(exc):  # Pillow words it two ways
        return "truncated (the file ends before its image data does)"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "a loop of symbolic links: a link that leads back to itself"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


#: ISO base media ("ftyp") brands of image formats Pillow does not read, by the name people know.
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
                b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


#: The first bytes of the formats i2i reads, by name: a file that starts so and does not open is damaged.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


#: The formats whose first bytes :data:`_SIGNATURES` knows, by file extension.
_NAMED_KINDS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF",
                ".tiff": "TIFF", ".webp": "WebP"}


def _first_bytes(path: Path) -> bytes:
    """A file's first 12 bytes, where its format is announced (``b""`` when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(12)
    except OSError:
        return b""


def _signature_kind(path: Path) -> str:
    """The format a file's first bytes announce (``PNG``), or ``""``."""
    head = _first_bytes(path)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in _SIGNATURES if head.startswith(signature)), "")


def _unread_kind(path: Path) -> str:
    """The common name of a file Pillow could not identify, where its first bytes say: HEIC,
    HEIF or AVIF (``....ftypheic``); ``""`` otherwise."""
    head = _first_bytes(path)
    return _FTYP_BRANDS.get(head[8:12], "") if head[4:8] == b"ftyp" else ""


def is_image_file(path: Path) -> bool:
    """True for a non-hidden file whose suffix is one of :data:`IMAGE_EXTENSIONS`."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def decode_image(path: str | Path, channels: int, upright: bool = True, deep: bool = False) -> torch.Tensor:
    """Decode an image file into an upright uint8 tensor ``[channels, H, W]`` (1 or 3 channels).

    Raises :class:`UnreadableImageError` (a :class:`~i2i.errors.UserError`) for files that
    cannot be decoded; see the module docstring for the conversion rules. ``upright=False``
    leaves the pixels as stored, ignoring an EXIF orientation. ``deep=True`` gives uint16
    (0-65535) instead: a file deeper than 8 bits at its full precision, an 8-bit one times 257
    (exact: ``v * 257 / 65535 == v / 255``), so a folder mixing both is read one way.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    pixels, _, bits = _read(Path(path), upright)
    keep = deep and bits > 8 and pixels.dtype != np.uint8
    image = _to_tensor(_to_channels(pixels, channels, keep_precision=keep))
    return to_uint16(image) if deep else image


def decode_sample(path: str | Path, channels: int, side_by_side: bool = False,
                  partners: Mapping[Path, Path] | None = None, deep: bool = False) -> torch.Tensor:
    """What the data pipeline trains and validates on: :func:`decode_image`, and for a
    ``side_by_side`` task (see :attr:`i2i.Task.side_by_side`) its two halves stacked as channels,
    ``[2 * channels, H, W // 2]``: an odd width loses its last column. A pair is cut as its
    pixels are stored, ignoring an EXIF orientation, as the reference does: turned, its halves
    would be top and bottom. A file with a partner in ``partners`` (``data.pair_source``) is
    stacked on it instead, both upright: two photos, each as a viewer shows it. ``deep``: uint16,
    as :func:`decode_image` gives it."""
    partner = partners.get(Path(path)) if partners else None
    if partner is not None:
        image, other = decode_image(path, channels, deep=deep), decode_image(partner, channels, deep=deep)
        if image.shape != other.shape:  # changed since the folders were scanned
            raise UnreadableImageError(f"{path}: {image.shape[2]}x{image.shape[1]} px, its pair {partner} "
                                       f"{other.shape[2]}x{other.shape[1]} px",
                                       f"{image.shape[2]}x{image.shape[1]} px, its pair {partner} "
                                       f"{other.shape[2]}x{other.shape[1]} px")
        return torch.cat([image, other])
    image = decode_image(path, channels, upright=not side_by_side, deep=deep)
    if not side_by_side:
        return image
    half = image.shape[-1] // 2
    return torch.cat([image[..., :half], image[..., half:2 * half]])


@dataclass(frozen=True)
class DecodedImage:
    """An image as ``i2i translate`` reads it: what the network sees, and what the written
    output keeps of the file.

    ``pixels`` is what :func:`decode_image` gives (transparency composited onto white), except
    that an image deeper than 8 bits per channel keeps its precision: uint16 (0-65535) rather
    than rounded to uint8 (half the memory of floats, for the images waiting to be
    translated). ``alpha`` is the file's alpha channel, upright,
    ``[H, W]`` uint8 or uint16 as the file holds it (palette transparency as 8 bits), or
    ``None`` when it has none. ``bits`` is 16 for files deeper than 8 bits per channel (16-bit
    PNG and TIFF, 32-bit integer and float TIFF), otherwise 8.
    """

    pixels: torch.Tensor
    alpha: np.ndarray | None
    bits: int


def decode_full(path: str | Path, channels: int) -> DecodedImage:
    """Decode an image file as :func:`decode_image` does, keeping its alpha channel and bit
    depth for the output (see :class:`DecodedImage`); raises :class:`UnreadableImageError`."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    pixels, alpha, bits = _read(Path(path))
    return _decoded(pixels, alpha, bits, channels)


def pil_to_tensor(image: Image.Image, channels: int) -> torch.Tensor:
    """An in-memory PIL image as uint8 ``[channels, H, W]``, by the same rules as files
    (transparency onto white, deep images scaled, an EXIF orientation applied)."""
    pixels, _ = _upright_pixels(image)
    return _to_tensor(_to_channels(pixels, channels))


def pil_to_decoded(image: Image.Image, channels: int) -> DecodedImage:
    """An in-memory PIL image as :func:`decode_full` reads a file: ``Image.open(path)`` gives
    the same pixels as ``path`` (upright; an image already turned by ``ImageOps.exif_transpose``
    has no orientation left to apply)."""
    pixels, alpha = _upright_pixels(image)
    return _decoded(pixels, alpha, 16 if _deep_mode(image.mode) else 8, channels)


def _upright_pixels(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    orientation = _orientation(image)
    guessed: list[str] = []
    pixels, alpha = _pixels(image, guessed)
    _warn_guessed_range(f"the {image.mode} image given", guessed)
    return _orient(pixels, orientation), None if alpha is None else _orient(alpha, orientation)


def probe_size(path: str | Path, upright: bool = True) -> tuple[int, int]:
    """``(height, width)`` of the upright image (as stored with ``upright=False``), read from
    the header only (no decoding).

    Raises :class:`UnreadableImageError` when the header cannot be read. A file whose header is
    fine but whose pixel data is damaged passes here and fails in :func:`decode_image`.
    """
    height, width, _deep = probe_image(path, upright)
    return height, width


def probe_image(path: str | Path, upright: bool = True) -> tuple[int, int, bool]:
    """:func:`probe_size` and whether :func:`decode_image` with ``deep=True`` keeps more than 8
    bits of this file (16-bit grey or colour PNG, 16- and 32-bit grey or float TIFF; not what
    Pillow reads at 8 bits: 16-bit RGB TIFFs, 16-bit colour PNGs with a colour profile)."""
    path = Path(path)
    _refuse_special_file(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if upright and _orientation(image) in (5, 6, 7, 8):
                width, height = height, width
            header = _png_header(path) if image.format == "PNG" else b""
            deep = _deep_mode(image.mode) or (bool(header) and header[24] == 16 and not _has_foreign_profile(image))
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:
        reason = _reason(exc, path)
        raise UnreadableImageError(f"{path}: cannot read this image ({reason})", reason) from None
    return height, width, deep


def not_a_folder(path: Path) -> str:
    """What stands at ``path`` when it is there but is no folder (``a file``, ``a device``...),
    else ``""`` (a folder, or nothing there): where i2i would write a folder."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there (or a broken link: making the folder says so)
        return ""
    return "" if stat.S_ISDIR(mode) else "a file" if stat.S_ISREG(mode) else _special_kind(mode)


def folder_blocked(folder: Path) -> str:
    """Why i2i cannot write into ``folder``: ``"is a file"`` (or a device...), ``"cannot be made:
    afile is a file"`` when a file stands where one of its parents would be, else ``""``.
    Checked before any work: making ``afile/x`` failed only when the first output was written."""
    for path in (folder, *folder.parents):
        what = not_a_folder(path)
        if what:
            return f"is {what}" if path == folder else f"cannot be made: {path} is {what}"
        if os.path.isdir(path):  # (False for a name too long to look up: its mkdir says so)
            return ""
    return ""


def _special_kind(mode: int) -> str:
    """A file that is neither a regular file nor a folder, in words."""
    return "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"


def _refuse_special_file(path: Path) -> None:
    """A named pipe, socket or device named like an image would block the read for ever (or
    stream without end): unreadable, with why. Missing files are left to the open's own error."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        reason = f"not a regular file but {_special_kind(mode)}"
        raise UnreadableImageError(f"{path}: cannot decode this image ({reason})", reason)


def shorter_side_to(height: int, width: int, short: int) -> tuple[int, int]:
    """The size after scaling (up or down) so the shorter side is ``short``, aspect kept."""
    scale = short / min(height, width)
    return max(short, round(height * scale)), max(short, round(width * scale))


def fitted_size(height: int, width: int, *, size: int, resize: int = 0, upscale: bool = False) -> tuple[int, int]:
    """A training or validation image's size after ``data.resize`` (shorter side to ``resize``
    px) or, without it, ``data.upscale_small`` (shorter side up to ``size`` when below it)."""
    if resize:
        return shorter_side_to(height, width, resize)
    if upscale and min(height, width) < size:
        return shorter_side_to(height, width, size)
    return height, width


def fit_image(image: torch.Tensor, *, size: int, resize: int = 0, upscale: bool = False) -> torch.Tensor:
    """Resize a uint8 or uint16 ``[C, H, W]`` image to :func:`fitted_size` (bicubic,
    antialiased), keeping its dtype; :class:`UnreadableImageError` where the result would be
    larger than Pillow lets a file be (its decompression-bomb limit)."""
    height, width = fitted_size(image.shape[-2], image.shape[-1], size=size, resize=resize, upscale=upscale)
    if (height, width) == tuple(image.shape[-2:]):
        return image
    limit = Image.MAX_IMAGE_PIXELS
    if limit and height * width > limit:  # a 1 x 20000 strip at data.resize = 256: 15 GB of floats to resize
        reason = (f"{image.shape[-1]} x {image.shape[-2]} px would be {width:,} x {height:,} once its shorter side is "
                  f"resized to {min(height, width)} px, past the {limit:,} pixels an image may have")
        raise UnreadableImageError(reason, reason)
    resized = F.interpolate(image[None].float(), size=(height, width), mode="bicubic",
                            align_corners=False, antialias=True)[0]
    return resized.round_().clamp_(0, _PEAK[image.dtype]).to(image.dtype)


#: A pixel counts as coloured when its channels differ by more than this many 8-bit levels
#: (JPEG keeps grey content within a level or two); an image is grey when under
#: ``GREY_COLOURED_SHARE`` of its pixels are coloured (a stray caption or stamp is allowed).
GREY_SPREAD_LEVELS = 6
GREY_COLOURED_SHARE = 0.001


def looks_grey(image: torch.Tensor) -> bool:
    """Whether a uint8 or uint16 ``[C, H, W]`` image shows no colour: one channel, or RGB
    channels that (nearly) agree everywhere, as a black-and-white photo saved as RGB does."""
    if image.shape[0] == 1:
        return True
    levels = image.to(torch.int32)  # uint16 has no max kernel; int32 holds either depth
    spread = levels.amax(0).sub_(levels.amin(0))
    limit = GREY_SPREAD_LEVELS * (257 if image.dtype == torch.uint16 else 1)
    return (spread > limit).float().mean().item() < GREY_COLOURED_SHARE


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] as uint8 0-255 (rounded, clipped), where they are; uint8 passes."""
    if image.dtype == torch.uint8:
        return image
    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


def to_uint16(image: torch.Tensor) -> torch.Tensor:
    """A uint8 image as uint16 0-65535 (``v * 257``, so 255 -> 65535); uint16 passes."""
    if image.dtype == torch.uint16:
        return image
    return image.to(torch.int32).mul_(257).to(torch.uint16)


#: the largest value of each integer pixel type
_PEAK = {torch.uint8: 255, torch.uint16: 65535}


def to_pil(image: torch.Tensor) -> Image.Image:
    """A ``[C, H, W]`` tensor (float in [0, 1], or uint8) as an 8-bit PIL image (L or RGB)."""
    array = to_uint8(image).cpu()
    if array.shape[0] == 1:
        return Image.fromarray(array[0].numpy(), mode="L")
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")


# -- helpers --------------------------------------------------------------------------------------
def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) left for i2i to apply; a damaged EXIF block counts as upright
    rather than unreadable. A TIFF that Pillow turns upright itself (Pillow 13 does, on load, and
    reports the upright size before it) has none left: applying it again turned such photos."""
    if image.format == "TIFF" and _pillow_orients_tiff():
        return 1
    if image.format == "PNG" and "exif" not in image.info:
        # no eXIf chunk before the pixels (where the PNG spec wants it, and Pillow reads it on
        # open); looking for one after them would decode the whole image, in the header scan
        # too, and a damaged pixel stream failing there was taken for damaged EXIF, after which
        # convert() used the half-decoded pixels without a word
        return 1
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # noqa: BLE001 - EXIF parsing fails in many creative ways
        return 1


@functools.lru_cache(maxsize=1)
def _pillow_orients_tiff() -> bool:
    """Whether this Pillow applies a TIFF's orientation tag itself: tried on a 2 x 1 TIFF turned
    180 degrees (a version check would guess)."""
    buffer = io.BytesIO()
    probe = Image.fromarray(np.array([[0, 255]], np.uint8))
    exif = probe.getexif()
    exif[_EXIF_ORIENTATION] = 3
    probe.save(buffer, format="TIFF", exif=exif)
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        return int(np.asarray(image)[0, 0]) == 255


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an ``[H, W, C]`` array (same result as ``ImageOps.exif_transpose``)."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return np.rot90(pixels, 2).transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def _read(path: Path, upright: bool = True) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``(pixels, alpha, bits)`` of an image file, upright (unless not asked): pixels ``[H, W, 1 or 3]`` composited
    onto white (uint8, or float32 on the 0-255 scale), alpha ``[H, W, 1]`` (uint8 or uint16) or
    ``None``, and 16 for files deeper than 8 bits per channel, else 8."""
    _refuse_special_file(path)
    try:
        with Image.open(path) as image:
            orientation = _orientation(image) if upright else 1
            header = _png_header(path) if image.format == "PNG" else b""
            bits = 16 if header and header[24] == 16 else _bits(image)  # Pillow reads 16-bit RGB PNGs as RGB
            # full 16-bit precision, unless a colour profile must be applied (LittleCMS, through
            # Pillow, converts 8-bit colour only): colours right matter more than the low byte
            found = _png16_colour_pixels(path, header) if header and not _has_foreign_profile(image) else None
            guessed: list[str] = []
            pixels, alpha = found if found is not None else _pixels(image, guessed)
            _note_frames(str(path), image)
    except Image.DecompressionBombError as exc:
        reason = _reason(exc)
        raise UnreadableImageError(f"{path}: {reason}", reason) from None
    except _DECODE_ERRORS as exc:
        reason = _reason(exc, path)
        raise UnreadableImageError(f"{path}: cannot decode this image ({reason})", reason) from None
    _warn_guessed_range(str(path), guessed)
    return _orient(pixels, orientation), None if alpha is None else _orient(alpha, orientation), bits


def _decoded(pixels: np.ndarray, alpha: np.ndarray | None, bits: int, channels: int) -> DecodedImage:
    keep = bits > 8 and pixels.dtype != np.uint8
    tensor = _to_tensor(_to_channels(pixels, channels, keep_precision=keep))
    return DecodedImage(tensor, None if alpha is None else np.array(alpha[..., 0]), bits)


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``[H, W, C]`` -> ``[C, H, W]``: one writable, contiguous copy."""
    return torch.from_numpy(np.array(pixels.transpose(2, 0, 1), order="C"))


def _bits(image: Image.Image) -> int:
    """16 when the image holds more than 8 bits per channel (Pillow's deep modes, or a TIFF's
    BitsPerSample: Pillow reads 16-bit RGB(A) TIFFs as 8-bit RGB(A)), else 8."""
    if _deep_mode(image.mode):
        return 16
    tags = getattr(image, "tag_v2", None)
    if tags is not None:
        try:
            depth = tags.get(258, 8)  # BitsPerSample
            if max(depth if isinstance(depth, tuple) else (depth,)) > 8:
                return 16
        except (TypeError, ValueError):
            pass
    return 8


def _deep_mode(mode: str) -> bool:
    """Whether a Pillow mode holds more than 8 bits per channel (16-bit grey, 32-bit int or float)."""
    return mode in ("I", "F") or mode.startswith("I;16")


def _png_header(path: Path) -> bytes:
    """A PNG's first 26 bytes, through IHDR's bit depth and colour type; ``b""`` if damaged."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    return header if len(header) == 26 and header[12:16] == b"IHDR" else b""


def _png16_colour_pixels(path: Path, header: bytes) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A 16-bit colour or grey+alpha PNG at full precision: float ``[H, W, C]`` (0-255 scale)
    composited onto white, and its alpha ``[H, W, 1]`` as uint16 (``None`` without one).

    Pillow keeps only the high byte of these (``v >> 8``, up to one level too dark), so they
    go through torchvision's libpng decoder. ``None`` for every other PNG (Pillow reads 16-bit
    grey exactly, as ``I;16``) or when torchvision's decoder is unavailable.
    """
    if header[24] != 16 or header[25] == 0:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision >= 0.29 points to torchcodec
            from torchvision.io import ImageReadMode, decode_png, read_file

            tensor = decode_png(read_file(str(path)), mode=ImageReadMode.UNCHANGED)
    except ImportError:
        return None
    pixels = tensor.to(torch.float32).permute(1, 2, 0).numpy() / 257.0
    if pixels.shape[2] in (2, 4):
        alpha = tensor[-1:].to(torch.int32).permute(1, 2, 0).numpy().astype(np.uint16)
        return _over_white(pixels[..., :-1], pixels[..., -1:]), alpha
    return pixels, None


#: Modes whose embedded ICC profile is converted to sRGB (deep modes keep their values). A grey
#: one (a scan saved with Photoshop's "Dot Gain 20%" or "Gray Gamma 2.2") becomes grey RGB.
_ICC_MODES = ("RGB", "RGBA", "CMYK", "P", "L", "LA")


def _to_srgb(image: Image.Image) -> Image.Image:
    """The image converted from its embedded ICC profile to sRGB (RGB or RGBA); unchanged when
    it has none, the profile is sRGB already, or it cannot be read."""
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in _ICC_MODES:
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode == "LA":  # the grey through its profile, its alpha as it is
        grey, alpha = image.split()
        grey.info["icc_profile"] = profile
        converted = _to_srgb(grey)
        if converted is grey:
            return image
        converted.putalpha(alpha)
        return converted
    transform = _srgb_transform(bytes(profile), image.mode)
    if transform is None:
        return image
    try:
        return ImageCms.applyTransform(image, transform)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image


def _has_foreign_profile(image: Image.Image) -> bool:
    """Whether the image embeds a readable colour profile other than sRGB."""
    profile = image.info.get("icc_profile")
    return bool(profile) and image.mode in _ICC_MODES and _srgb_transform(bytes(profile), image.mode) is not None


@functools.lru_cache(maxsize=16)
def _srgb_transform(profile: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A transform from ``profile`` to sRGB for ``mode`` images, or ``None`` for a profile that
    is unreadable or already sRGB (it maps a 16-level colour cube onto itself within 1 level)."""
    out_mode = "RGBA" if mode == "RGBA" else "RGB"
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        transform = ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), mode, out_mode,
                                            renderingIntent=ImageCms.Intent.PERCEPTUAL)
        if mode == "CMYK":
            return transform
        if mode == "L":  # every grey level, as grey RGB
            cube = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)
        else:
            levels = np.arange(0, 256, 17, dtype=np.uint8)
            cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(64, 64, 3)
        probe = Image.fromarray(cube).convert(mode)
        moved = np.asarray(ImageCms.applyTransform(probe, transform).convert("RGB")).astype(np.int16)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
    return None if np.abs(moved - cube).max() <= 1 else transform


def _pixels(image: Image.Image, guessed: list[str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels as ``[H, W, 1 or 3]`` (uint8, or float32 on the 0-255 scale for deep images),
    composited onto white, and the alpha channel ``[H, W, 1]`` (uint8) or ``None``; what a
    32-bit image's range guess changed goes into ``guessed``."""
    image = _to_srgb(image)
    mode = image.mode
    if (mode == "P" and "transparency" in image.info) or mode == "PA":
        image, mode = image.convert("RGBA"), "RGBA"
    keyed = _colour_key_pixels(image)
    if keyed is not None:
        return keyed
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"))[..., None], None
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.float32)[..., None] / 257.0, None
    if mode in ("I", "F"):
        return _scale_unknown_range(np.asarray(image), is_float=mode == "F", guessed=guessed)[..., None], None
    if mode in ("LA", "La", "RGBA", "RGBa"):
        rgba = np.asarray(image.convert("LA" if mode.startswith("L") else "RGBA"))
        colour = rgba.astype(np.float32)
        return _over_white(colour[..., :-1], colour[..., -1:]), rgba[..., -1:]
    return np.asarray(image.convert("RGB")), None


def _colour_key_pixels(image: Image.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """A grey (8 or 16-bit) or RGB image with a transparent colour key (PNG's tRNS chunk: the
    pixels of that one value are transparent) as pixels composited onto white (float, 0-255
    scale) and its alpha (uint8, 0 or 255); None for any other image."""
    key = image.info.get("transparency")
    if image.mode not in ("L", "RGB", "I;16") or key is None or isinstance(key, bytes):
        return None
    values = np.asarray(image)
    try:
        clear = np.all(values == np.asarray(key), axis=-1) if image.mode == "RGB" else values == key
    except (TypeError, ValueError):  # a key of another shape than the pixels: no usable key
        return None
    if not clear.any():
        return None
    colour = values.astype(np.float32) / (257.0 if image.mode == "I;16" else 1.0)
    colour = colour.reshape(*values.shape[:2], -1)
    alpha = np.where(clear, 0, 255).astype(np.uint8)[..., None]
    return np.where(alpha == 0, np.float32(255.0), colour), alpha


def _over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite straight-alpha pixels (0-255 scale) onto a white background."""
    weight = alpha / 255.0
    return colour * weight + 255.0 * (1.0 - weight)


#: A float image whose largest value is at most this is taken as [0, 1] (see the module's docstring).
FLOAT_UNIT_PEAK = 2.0
#: A float image whose largest value is above FLOAT_UNIT_PEAK but at most this is read on the
#: 0-255 scale, all but black: warned about (ratios, HDR radiance), not guessed at further
FLOAT_DIM_PEAK = 32.0


def _scale_unknown_range(values: np.ndarray, is_float: bool, guessed: list[str] | None = None) -> np.ndarray:
    """A 32-bit integer or float image on the 0-255 scale, its range guessed (see the module's
    docstring); what the guess changed beyond a plain rescale (values read as 0, clipped, or
    scaled by the image's own peak) is added to ``guessed``, for a warning naming the file."""
    values = values.astype(np.float64)
    said = guessed if guessed is not None else []
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        said.append(f"{bad} NaN or infinite value(s) read as 0 (black)")
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low = float(values.min()) if values.size else 0.0
    if low < 0:
        said.append(f"values down to {low:.4g} read as 0 (black)")
    values = np.maximum(values, 0.0)
    peak = float(values.max()) if values.size else 0.0
    if is_float and peak <= FLOAT_UNIT_PEAK:
        if peak > 1.0:
            said.append(f"taken as 0-1, values up to {peak:.4g} clipped to 1 (white)")
        return (np.minimum(values, 1.0) * 255.0).astype(np.float32)
    if is_float and peak <= 255.0 * FLOAT_UNIT_PEAK:  # 0-255 floats overshooting a little: clipped too
        if peak > 255.0:
            said.append(f"taken as 0-255, values up to {peak:.4g} clipped to 255 (white)")
        elif peak <= FLOAT_DIM_PEAK:  # ratios or HDR values, most likely: read as 0-255, the image is all but black
            said.append(f"float values up to {peak:.4g} taken as 0-255 (floats up to {FLOAT_UNIT_PEAK:g} are taken as "
                        f"0-1), so its brightest pixel is {peak / 255:.1%} of white; scale it to 0-1 or 0-255 first")
        return np.minimum(values, 255.0).astype(np.float32)
    if peak <= 255.0:
        scale = 1.0
    elif peak <= 65535.0:
        scale = 1 / 257.0
    else:
        scale = 255.0 / peak
        said.append(f"no declared range and values up to {peak:.6g}: scaled so that {peak:.6g} is white")
    return (values * scale).astype(np.float32)


#: At most this many files get each topic of remark below, per process (a folder of float TIFFs
#: or of animations would otherwise give one line each); ``_remarked`` holds those remarked on,
#: ``_left_out`` how many more files had each, which :func:`say_remarks_left_out` then counts.
_FILE_REMARKS_SHOWN = 5
_remarked: dict[str, set[str]] = {}
_left_out: dict[str, tuple[str, set[str], str]] = {}
_remarks_lock = threading.Lock()


def _remark_on_file(kind: str, where: str, text: str, topic: str, summary: str) -> None:
    """``i2i: KIND: WHERE: TEXT`` once per file, for the first few files of a process with that
    ``topic``; the rest are counted, for one line ending in ``summary``."""
    with _remarks_lock:
        seen = _remarked.setdefault(topic, set())
        if where in seen:
            return
        if len(seen) >= _FILE_REMARKS_SHOWN:
            _left_out.setdefault(topic, (kind, set(), summary))[1].add(where)
            return
        seen.add(where)
        last = f" (the last such {kind} named: the others are counted at the end)" if len(seen) == _FILE_REMARKS_SHOWN else ""
    say(f"i2i: {kind}: {where}: {text}{last}")


def say_remarks_left_out() -> None:
    """One line per topic for the files :func:`_remark_on_file` did not name (``and 35 more
    files hold several frames or pages; only the first of each is read``), at the end of a
    command's reading of a folder."""
    with _remarks_lock:
        left = list(_left_out.values())
        _left_out.clear()
    for kind, files, summary in left:
        say(f"i2i: {kind}: {len(files)} more file(s) {summary}")


def _warn_guessed_range(where: str, guessed: list[str]) -> None:
    """One warning line for an image whose 32-bit values had to be guessed at (the network would
    otherwise see black where the file holds NaN, say, without a word)."""
    if guessed:
        _remark_on_file("warning", where, f"32-bit pixels: {'; '.join(guessed)}", "range",
                        "hold 32-bit pixels whose range was guessed at (NaN read as black, no declared range...)")


def _note_frames(where: str, image: Image.Image) -> None:
    """A note for an animation or a multi-page TIFF: only its first frame is read. A phone's
    JPEG holding a second picture (MPO: a preview, a depth map) is a photo, and says nothing."""
    if image.format in ("TIFF", "PNG", "WEBP", "GIF"):
        try:
            frames = getattr(image, "n_frames", 1)
        except _DECODE_ERRORS:  # a damaged later page: the first one, read already, is what counts
            return
        if frames > 1:
            kind = "pages" if image.format == "TIFF" else "frames"
            _remark_on_file("note", where, f"{frames} {kind}; only the first is read", "frames",
                            "hold several frames or pages; only the first of each is read")


def _to_channels(pixels: np.ndarray, channels: int, keep_precision: bool = False) -> np.ndarray:
    """Replicate grey or take BT.601 luminance, then round to uint8 once (``keep_precision``:
    to uint16, 0-65535, so 16-bit values come back exactly)."""
    if pixels.shape[2] == 3 and channels == 1:
        pixels = pixels.astype(np.float32) @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
        pixels = pixels[..., None]
    if keep_precision:
        pixels = np.clip(np.rint(pixels * np.float32(257)), 0, 65535).astype(np.uint16)
    elif pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    if pixels.shape[2] == 1 and channels == 3:
        pixels = np.repeat(pixels, 3, axis=2)
    return pixels
