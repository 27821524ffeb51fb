"""The data pipeline: decoding every kind of file, finding and splitting sources, batches, resume."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from i2i.data import ImageData, decode_image, find_images, load_images_for_inference, to_pil
from i2i.data.decode import UnreadableImageError, fit_image, pil_to_decoded, pil_to_tensor, probe_size
from i2i.data.sources import scan_folder, split_files
from i2i.errors import UserError
from i2i.recipe import SCHEMA

CPU = torch.device("cpu")


# -- helpers ------------------------------------------------------------------------------------------
def data_cfg(source: Path | str, **overrides) -> dict:
    """A resolved [data] table with test-friendly values."""
    cfg = {key: field.default for key, field in SCHEMA["data"].items()}
    cfg.update(source=str(source), size=16, workers=0, val_fraction=0.0)
    cfg.update(overrides)
    return cfg


def noise_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def make_folder(folder: Path, count: int = 4, size: tuple[int, int] = (24, 20), fmt: str = "png") -> Path:
    """``count`` random RGB images of ``size`` = (width, height)."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    for i in range(count):
        Image.fromarray(noise_rgb(height, width, seed=i)).save(folder / f"img_{i:02d}.{fmt}")
    return folder


def write_png16(path: Path, array: np.ndarray) -> None:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA), which Pillow cannot write for colour."""
    height, width, channels = array.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# -- decoding -----------------------------------------------------------------------------------------
def test_grey_is_replicated_for_three_channels(tmp_path):
    grey = np.arange(16 * 20, dtype=np.uint8).reshape(16, 20)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    rgb = decode_image(tmp_path / "g.png", 3)
    assert rgb.dtype == torch.uint8 and rgb.shape == (3, 16, 20)
    assert torch.equal(rgb[0], torch.from_numpy(grey)) and torch.equal(rgb[0], rgb[2])
    assert torch.equal(decode_image(tmp_path / "g.png", 1)[0], torch.from_numpy(grey))


def test_colour_to_one_channel_is_bt601_luminance(tmp_path):
    pixels = noise_rgb(16, 16)
    Image.fromarray(pixels).save(tmp_path / "c.png")
    grey = decode_image(tmp_path / "c.png", 1)
    assert grey.shape == (1, 16, 16)
    from kornia.color import rgb_to_grayscale

    expected = rgb_to_grayscale(torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255)[0] * 255
    assert (grey.float() - expected).abs().max() <= 0.5 + 1e-3


def test_alpha_is_composited_onto_white(tmp_path):
    la = np.zeros((16, 16, 2), np.uint8)
    la[..., 1] = 0  # fully transparent black -> white
    la[:8, :, 1] = 255  # opaque black stays black
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = decode_image(tmp_path / "la.png", 1)[0]
    assert out[:8].max() == 0 and out[8:].min() == 255

    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[..., 3] = 128  # half transparent -> pink
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    out = decode_image(tmp_path / "rgba.png", 3)
    assert out[:, 0, 0].tolist() == [255, 127, 127]


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (16, 16), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black, index 1 blue
    image.paste(1, (0, 0, 8, 16))
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = decode_image(tmp_path / "p.png", 3)
    assert out[:, 0, 0].tolist() == [0, 0, 255]  # opaque blue
    assert out[:, 0, 15].tolist() == [255, 255, 255]  # transparent -> white


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]] * 16, dtype=np.uint16).repeat(4, axis=1)
    Image.fromarray(values).save(tmp_path / "g16.png")
    Image.fromarray(values).save(tmp_path / "g16.tif")
    for name in ("g16.png", "g16.tif"):
        assert Image.open(tmp_path / name).mode.startswith("I;16")
        out = decode_image(tmp_path / name, 1)[0, 0]
        assert out[::4].tolist() == [0, 1, 128, 255], name
        assert decode_image(tmp_path / name, 3).shape == (3, 16, 16)


def test_16_bit_colour_png(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 32768, 971  # 971 / 257 = 3.78
    write_png16(tmp_path / "rgb16.png", rgb)
    assert decode_image(tmp_path / "rgb16.png", 3)[:, 5, 5].tolist() == [255, 128, 4]

    rgba = np.zeros((16, 16, 4), np.uint16)
    rgba[..., 3] = 32896  # about half transparent black -> mid grey
    write_png16(tmp_path / "rgba16.png", rgba)
    assert decode_image(tmp_path / "rgba16.png", 3)[:, 0, 0].tolist() == [127, 127, 127]


def test_32_bit_int_and_float_images(tmp_path):
    Image.fromarray(np.full((16, 16), 0.5, np.float32)).save(tmp_path / "f.tif")
    Image.fromarray(np.full((16, 16), 200.0, np.float32)).save(tmp_path / "f255.tif")
    ints = np.full((16, 16), 65535, np.int32)
    ints[0, 0] = 0
    Image.fromarray(ints).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F" and Image.open(tmp_path / "i.tif").mode == "I"
    assert decode_image(tmp_path / "f.tif", 1).unique().tolist() == [128]
    assert decode_image(tmp_path / "f255.tif", 1).unique().tolist() == [200]
    assert decode_image(tmp_path / "i.tif", 1).unique().tolist() == [0, 255]


def test_a_32_bit_image_whose_range_is_guessed_at_is_warned_about(tmp_path, capsys, monkeypatch):
    """NaNs read as black and an HDR image scaled by its own peak were silent; the plain cases
    (0-1 floats, 0-255 floats, 16-bit range integers) stay quiet, and a folder of such files
    is named a few times, not once per file."""
    import i2i.data.decode as decode

    monkeypatch.setattr(decode, "_remarked", {})
    monkeypatch.setattr(decode, "_left_out", {})
    nan = np.full((16, 16), 0.5, np.float32)
    nan[2, 3], nan[4, 5] = np.nan, np.inf
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    Image.fromarray(np.full((16, 16), 1e6, np.float32)).save(tmp_path / "hdr.tif")
    Image.fromarray(np.full((16, 16), -0.25, np.float32)).save(tmp_path / "neg.tif")
    Image.fromarray(np.full((16, 16), 1.5, np.float32)).save(tmp_path / "over.tif")
    Image.fromarray(np.full((16, 16), 0.5, np.float32)).save(tmp_path / "plain.tif")
    Image.fromarray(np.full((16, 16), 60000, np.int32)).save(tmp_path / "int.tif")
    Image.fromarray(np.full((16, 16), 200.0, np.float32)).save(tmp_path / "float255.tif")  # 0-255 floats: quiet
    assert decode_image(tmp_path / "nan.tif", 1)[0, 2, 3] == 0 and decode_image(tmp_path / "hdr.tif", 1).unique().tolist() == [255]
    for name in ("neg.tif", "over.tif", "plain.tif", "int.tif", "nan.tif", "float255.tif"):  # nan.tif again: said once
        decode_image(tmp_path / name, 1)
    assert capsys.readouterr().err.splitlines() == [
        f"i2i: warning: {tmp_path / 'nan.tif'}: 32-bit pixels: 2 NaN or infinite value(s) read as 0 (black)",
        f"i2i: warning: {tmp_path / 'hdr.tif'}: 32-bit pixels: no declared range and values up to 1e+06: scaled so that "
        "1e+06 is white",
        f"i2i: warning: {tmp_path / 'neg.tif'}: 32-bit pixels: values down to -0.25 read as 0 (black)",
        f"i2i: warning: {tmp_path / 'over.tif'}: 32-bit pixels: taken as 0-1, values up to 1.5 clipped to 1 (white)"]
    for i in range(4):
        Image.fromarray(np.full((16, 16), np.nan, np.float32)).save(tmp_path / f"more{i}.tif")
        decode_image(tmp_path / f"more{i}.tif", 1)
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1 and said[0].endswith("(the last such warning named: the others are counted at the end)")
    for i in range(4, 7):
        Image.fromarray(np.full((16, 16), np.nan, np.float32)).save(tmp_path / f"more{i}.tif")
        decode_image(tmp_path / f"more{i}.tif", 1)
    assert capsys.readouterr().err == ""
    from i2i.data.sources import report_skipped

    report_skipped([])  # the end of a folder's reading: one count of the 6 files not named (more1 to more6)
    assert capsys.readouterr().err == ("i2i: warning: 6 more file(s) hold 32-bit pixels whose range was guessed at "
                                       "(NaN read as black, no declared range...)\n")


def test_a_float_image_of_small_values_above_one_is_warned_about_as_all_but_black(tmp_path, capsys, monkeypatch):
    """Ratios up to 3 were read on the 0-255 scale, an image 80 times darker than meant, silently."""
    import i2i.data.decode as decode

    monkeypatch.setattr(decode, "_remarked", {})
    monkeypatch.setattr(decode, "_left_out", {})
    Image.fromarray(np.full((16, 16), 3.0, np.float32)).save(tmp_path / "ratio.tif")
    assert decode_image(tmp_path / "ratio.tif", 1).unique().tolist() == [3]
    assert capsys.readouterr().err == (
        f"i2i: warning: {tmp_path / 'ratio.tif'}: 32-bit pixels: float values up to 3 taken as 0-255 (floats up to 2 "
        "are taken as 0-1), so its brightest pixel is 1.2% of white; scale it to 0-1 or 0-255 first\n")


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    red = decode_image(tmp_path / "cmyk.jpg", 3)[:, 8, 8].tolist()
    assert red[0] > 240 and red[1] < 15 and red[2] < 15


def swapped_primaries_profile() -> bytes:
    """Pillow's sRGB ICC profile with the red and green primaries swapped: a wide-gamut stand-in
    (no Display P3 profile ships with Pillow) under which a pure red pixel means sRGB green."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    table = {srgb[132 + 12 * i:136 + 12 * i]: struct.unpack(">II", srgb[136 + 12 * i:144 + 12 * i])
             for i in range(struct.unpack(">I", srgb[128:132])[0])}
    (red, size), (green, _) = table[b"rXYZ"], table[b"gXYZ"]
    swapped = bytearray(srgb)
    swapped[red:red + size], swapped[green:green + size] = srgb[green:green + size], srgb[red:red + size]
    return bytes(swapped)


@pytest.mark.parametrize("name", ["p3.png", "p3.jpg", "p3.tif", "p3_alpha.png"])
def test_embedded_colour_profile_is_converted_to_srgb(tmp_path, name):
    """A phone's Display P3 or a camera's Adobe RGB photo looks as a colour-managed viewer shows
    it (the same for training, eval and translate), not as if its numbers were sRGB."""
    from PIL import ImageCms

    mode = "RGBA" if "alpha" in name else "RGB"
    Image.new(mode, (8, 6), (255, 0, 0, 255)[:len(mode)]).save(tmp_path / name, icc_profile=swapped_primaries_profile())
    green = decode_image(tmp_path / name, 3)[:, 3, 4].int()
    assert (green - torch.tensor([0, 255, 0])).abs().max() <= 3  # JPEG is lossy
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(noise_rgb(6, 8)).save(tmp_path / "srgb.png", icc_profile=srgb)
    assert torch.equal(decode_image(tmp_path / "srgb.png", 3), torch.from_numpy(noise_rgb(6, 8)).permute(2, 0, 1))
    Image.fromarray(noise_rgb(6, 8)).save(tmp_path / "junk.png", icc_profile=b"not a profile")
    assert torch.equal(decode_image(tmp_path / "junk.png", 3), torch.from_numpy(noise_rgb(6, 8)).permute(2, 0, 1))


def with_icc_chunk(png: bytes, profile: bytes) -> bytes:
    """``png`` with an iCCP chunk (the embedded colour profile) right after its IHDR."""
    body = b"icc\0\0" + zlib.compress(profile)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    return png[:33] + chunk + png[33:]  # 8-byte signature + 25-byte IHDR chunk


def test_a_16_bit_colour_png_with_a_colour_profile_is_converted_to_srgb(tmp_path):
    """A 16-bit PNG from a raw developer, tagged Display P3 or Adobe RGB, looks as a viewer shows
    it: its profile is applied (at 8 bits), not dropped to keep the low byte."""
    from i2i.data.decode import decode_full
    from i2i.data.encode import encode_png16

    red = np.zeros((6, 8, 3), np.uint16)
    red[..., 0] = 65535
    (tmp_path / "p3.png").write_bytes(with_icc_chunk(encode_png16(red), swapped_primaries_profile()))
    green = decode_image(tmp_path / "p3.png", 3)[:, 3, 4].int()
    assert (green - torch.tensor([0, 255, 0])).abs().max() <= 3
    assert decode_full(tmp_path / "p3.png", 3).bits == 16  # its translation is still written with 16 bits
    # untagged (or sRGB-tagged), it keeps all 16 bits
    ramp = (np.arange(6 * 8 * 3, dtype=np.uint16).reshape(6, 8, 3) * 397 + 5)
    (tmp_path / "ramp.png").write_bytes(encode_png16(ramp))
    assert torch.equal(decode_full(tmp_path / "ramp.png", 3).pixels, torch.from_numpy(ramp.transpose(2, 0, 1).copy()))


def test_empty_file_and_folder_named_as_images_say_so(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(UnreadableImageError) as info:
        decode_image(tmp_path / "zero.jpg", 3)
    assert info.value.reason == "empty file (0 bytes)"
    with pytest.raises(UnreadableImageError) as info:
        probe_size(tmp_path / "folder.png")
    assert info.value.reason == "a folder, not a file"


@pytest.mark.parametrize("name", ["a.bmp", "a.webp", "a.TIFF", "a.tif", "a.JPG", "a.jpeg", "a.PNG"])
def test_formats(tmp_path, name):
    pixels = np.full((20, 24, 3), (200, 100, 50), np.uint8)
    options = {"lossless": True} if name.endswith("webp") else {}
    Image.fromarray(pixels).save(tmp_path / name, **options)
    out = decode_image(tmp_path / name, 3)
    assert out.shape == (3, 20, 24)
    assert (out[:, 10, 10].int() - torch.tensor([200, 100, 50])).abs().max() <= 3
    assert find_images(tmp_path) == [tmp_path / name]


@pytest.mark.parametrize("kind", ["jpg", "png", "tif"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path, orientation, kind):
    """Upright as Pillow's exif_transpose shows it, for every format. (Pillow 13 turns TIFFs
    upright itself, size included; i2i turned them a second time.)"""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o.{kind}"
    Image.fromarray(noise_rgb(16, 24)).save(path, exif=exif, **({"quality": 95} if kind == "jpg" else {}))
    out = decode_image(path, 3)
    with Image.open(path) as image:
        upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert out.shape == ((3, 24, 16) if orientation >= 5 else (3, 16, 24))
    assert torch.equal(out, torch.from_numpy(upright.copy()).permute(2, 0, 1))
    assert probe_size(path) == tuple(out.shape[1:])


@pytest.mark.parametrize("kind", ["jpg", "tif"])
def test_an_opened_pil_image_is_turned_upright_as_its_file_is(tmp_path, kind):
    """``model.translate(Image.open(p))`` gave a turned result where ``model.translate(p)`` gave
    an upright one; once exif_transpose has turned it, there is no orientation left to apply."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"o.{kind}"
    Image.fromarray(noise_rgb(16, 24)).save(path, exif=exif, **({"quality": 95} if kind == "jpg" else {}))
    with Image.open(path) as image:
        assert torch.equal(pil_to_tensor(image, 3), decode_image(path, 3))
        assert tuple(pil_to_decoded(image, 1).pixels.shape) == (1, 24, 16)
        turned = ImageOps.exif_transpose(image)
    assert torch.equal(pil_to_tensor(turned, 3), decode_image(path, 3))


def test_corrupt_file_raises_user_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    good = tmp_path / "good.png"
    Image.fromarray(noise_rgb(16, 16)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])  # header fine, data truncated
    for name in ("bad.png", "cut.png"):
        with pytest.raises(UnreadableImageError, match=name) as info:
            decode_image(tmp_path / name, 3)
        assert isinstance(info.value, UserError) and "\n" not in str(info.value)


def test_to_pil_round_trip(tmp_path):
    image = torch.rand(3, 8, 10)
    pil = to_pil(image)
    assert pil.mode == "RGB" and pil.size == (10, 8)
    assert to_pil(image[:1]).mode == "L"


# -- sources ------------------------------------------------------------------------------------------
def test_nested_folders_sorted_hidden_skipped(tmp_path):
    make_folder(tmp_path / "b", 1)
    make_folder(tmp_path / "a" / "deep", 1)
    make_folder(tmp_path / ".hidden", 1)
    Image.fromarray(noise_rgb(20, 20)).save(tmp_path / ".secret.png")
    (tmp_path / "notes.txt").write_text("not an image")
    found = find_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/deep/img_00.png", "b/img_00.png"]
    files, unreadable = scan_folder(str(tmp_path), "data.source")
    assert [f.name for f in files] == ["a/deep/img_00.png", "b/img_00.png"] and unreadable == []


def test_corrupt_files_skipped_with_one_warning(tmp_path, capsys):
    make_folder(tmp_path, 3)
    for i in range(12):
        (tmp_path / f"zz_bad_{i:02d}.jpg").write_bytes(b"garbage")
    data = ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0)
    assert len(data.train_files) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1  # ten named (the files to fix), the rest counted
    assert "skipped 12 unreadable file(s)" in err[0] and "zz_bad_09.jpg" in err[0] and err[0].endswith(" and 2 more")
    assert "zz_bad_00.jpg (named .jpg but does not start as a JPEG file does (damaged, or another kind of file " in err[0]


def test_truncated_file_found_when_caching_is_reported_in_the_same_line(tmp_path, capsys):
    make_folder(tmp_path, 3)
    (tmp_path / "bad.png").write_bytes(b"garbage")
    (tmp_path / "cut.png").write_bytes((tmp_path / "img_00.png").read_bytes()[:80])
    data = ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0)
    assert data.cached and len(data.train_files) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped 2" in err[0]


def test_a_linked_duplicate_counts_once_so_it_cannot_be_in_both_splits(tmp_path):
    make_folder(tmp_path, 2)
    (tmp_path / "zz_link.png").symlink_to(tmp_path / "img_00.png")
    files, unreadable = scan_folder(str(tmp_path), "data.source")
    assert [f.name for f in files] == ["img_00.png", "img_01.png"] and unreadable == []
    data = ImageData(data_cfg(tmp_path, val_fraction=0.5), channels=3, device=CPU, seed=0)
    assert len(data.train_files) == 1 and len(data.val_files) == 1
    assert find_images(tmp_path)[-1].name == "zz_link.png"  # translate still writes one output per input


def test_image_kinds_i2i_does_not_read_are_named(tmp_path, capsys):
    """An iPhone folder of HEIC photos is not 'no images', and a mixed folder says what it left out."""
    (tmp_path / "only").mkdir()
    Image.fromarray(noise_rgb(20, 24)).save(tmp_path / "only" / "a.gif")
    (tmp_path / "only" / "IMG_0001.HEIC").write_bytes(b"ftypheic")
    (tmp_path / "only" / "IMG_0002.heic").write_bytes(b"ftypheic")
    (tmp_path / "only" / "notes.txt").write_text("sidecars and notes are not mentioned")
    with pytest.raises(UserError) as info:
        ImageData(data_cfg(tmp_path / "only"), channels=3, device=CPU, seed=0)
    assert str(info.value).endswith("no images in this folder or its subfolders (jpg, jpeg, jpe, jfif, png, webp, bmp, tif, tiff); "
                                     "not read: 2 .heic, 1 .gif file(s) (convert them to one of these)")
    make_folder(tmp_path / "only", 2)
    data = ImageData(data_cfg(tmp_path / "only"), channels=3, device=CPU, seed=0)
    assert len(data.train_files) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('i2i: note: data.source = "') and "2 .heic, 1 .gif file(s) not read" in err[0]
    ImageData(data_cfg(tmp_path / "only"), channels=3, device=CPU, seed=0, rank=1, world_size=2)
    assert capsys.readouterr().err == ""  # once per run, not once per process


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r'data.source = ".*empty": no images'):
        ImageData(data_cfg(tmp_path / "empty"), channels=3, device=CPU, seed=0)
    with pytest.raises(UserError, match=r'data.source = ".*nowhere": no such folder'):
        ImageData(data_cfg(tmp_path / "nowhere"), channels=3, device=CPU, seed=0)
    (tmp_path / "only_bad").mkdir()
    (tmp_path / "only_bad" / "x.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"none of its 1 image files can be read \(e.g. x.png: named .png but does "
                                        r"not start as a PNG file does"):
        ImageData(data_cfg(tmp_path / "only_bad"), channels=3, device=CPU, seed=0)
    make_folder(tmp_path / "src", 2)
    with pytest.raises(UserError, match=r'data.val_source = ".*nothing": no such folder; give a folder of images, or '
                                        r'"sample" for the photos shipped with i2i, or "" to hold out part of '
                                        r'data.source instead \(--set "data.val_source=\'\'"\)$'):
        ImageData(data_cfg(tmp_path / "src", val_source=str(tmp_path / "nothing")), channels=3, device=CPU, seed=0)


def test_too_small_image_is_named(tmp_path):
    make_folder(tmp_path, 2, size=(64, 64))
    Image.fromarray(noise_rgb(30, 40)).save(tmp_path / "small.png")
    with pytest.raises(UserError) as info:
        ImageData(data_cfg(tmp_path, size=32), channels=3, device=CPU, seed=0)
    assert str(info.value) == (
        f"{tmp_path / 'small.png'}: 40x30 px is smaller than data.size = 32; "
        "use larger images, a smaller data.size, or data.upscale_small = true"
    )
    for i in range(3):
        Image.fromarray(noise_rgb(20, 20)).save(tmp_path / f"thumb_{i}.png")
    with pytest.raises(UserError, match=r"small.png: 40x30 px is smaller than data.size = 32 \(so are 3 more images\); "):
        ImageData(data_cfg(tmp_path, size=32), channels=3, device=CPU, seed=0)


@pytest.mark.parametrize("cache_gb", [4.0, 0.0])
def test_upscale_small(tmp_path, cache_gb):
    Image.fromarray(noise_rgb(12, 20)).save(tmp_path / "small.png")
    data = ImageData(data_cfg(tmp_path, size=24, upscale_small=True, cache_gb=cache_gb), channels=3, device=CPU, seed=0)
    assert data.cached == (cache_gb > 0)
    assert data.next_batch(3).shape == (3, 3, 24, 24)
    if data.cached:
        assert data._images[0].shape == (3, 24, 40)  # shorter side to data.size, aspect kept


@pytest.mark.parametrize("cache_gb", [4.0, 0.0])
def test_resize_scales_the_shorter_side_before_cropping(tmp_path, cache_gb):
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    Image.fromarray(noise_rgb(60, 100)).save(train / "big.png")  # scaled down
    Image.fromarray(noise_rgb(12, 20)).save(train / "small.png")  # scaled up
    Image.fromarray(noise_rgb(90, 30)).save(val / "tall.png")
    cfg = data_cfg(train, size=16, resize=24, cache_gb=cache_gb, val_source=str(val))
    data = ImageData(cfg, channels=3, device=CPU, seed=0)
    assert data.cached == (cache_gb > 0)
    if data.cached:
        assert [tuple(t.shape[-2:]) for t in data._images] == [(24, 40), (24, 40)]  # aspect kept
    assert data.next_batch(4).shape == (4, 3, 16, 16)
    (batch, names), = data.val_batches(100, 2)
    assert names == ["tall.png"] and batch.shape == (1, 3, 72, 24)  # validation resized alike
    expected = fit_image(decode_image(val / "tall.png", 3), size=16, resize=24).float() / 255
    assert torch.equal(batch[0], expected)
    (whole, _), = data.val_batches(0, 2)  # whole images (eval.crop = 0) at their own size, as i2i eval scores them
    assert torch.equal(whole[0], decode_image(val / "tall.png", 3).float() / 255)
    small_images_are_fine = ImageData(data_cfg(train, size=24, resize=24), channels=3, device=CPU, seed=0)
    assert small_images_are_fine.next_batch(1).shape == (1, 3, 24, 24)
    with pytest.raises(UserError, match="data.resize = 12: smaller than data.size = 16"):
        ImageData(data_cfg(train, size=16, resize=12), channels=3, device=CPU, seed=0)


def test_split_is_deterministic_by_file(tmp_path):
    make_folder(tmp_path, 10, size=(16, 16))
    files, _ = scan_folder(str(tmp_path), "data.source")
    train, val = split_files(files, 0.3, seed=1)
    assert len(val) == 3 and len(train) == 7 and not {f.path for f in train} & {f.path for f in val}
    assert split_files(files, 0.3, seed=1) == (train, val)
    splits = {tuple(f.name for f in split_files(files, 0.3, seed=s)[1]) for s in range(6)}
    assert len(splits) > 1
    assert split_files(files, 0.01, seed=0)[1] != []  # at least one validation image
    assert split_files(files, 0.0, seed=0)[1] == []
    assert split_files(files[:1], 0.5, seed=0) == (files[:1], [])  # never all of them
    assert len(split_files(files[:2], 0.9, seed=0)[0]) == 1

    a = ImageData(data_cfg(tmp_path, val_fraction=0.3), channels=3, device=CPU, seed=4)
    b = ImageData(data_cfg(tmp_path, val_fraction=0.3), channels=3, device=CPU, seed=4)
    assert a.val_files == b.val_files and a.train_files == b.train_files and len(a.val_files) == 3


def test_val_source_and_no_validation(tmp_path):
    make_folder(tmp_path / "train", 3)
    make_folder(tmp_path / "val", 2, size=(10, 12))  # validation images may be smaller than data.size
    data = ImageData(data_cfg(tmp_path / "train", val_source=str(tmp_path / "val"), val_fraction=0.5),
                     channels=3, device=CPU, seed=0)
    assert len(data.train_files) == 3 and [p.parent.name for p in data.val_files] == ["val", "val"]
    none = ImageData(data_cfg(tmp_path / "train"), channels=3, device=CPU, seed=0)
    assert none.val_files == [] and list(none.val_batches(16, 4)) == []


def test_sample_source_has_six_photos():
    files, unreadable = scan_folder("sample", "data.source")
    assert len(files) == 6 and unreadable == []
    assert all(min(f.height, f.width) >= 256 for f in files)


def test_distributed_shards(tmp_path):
    make_folder(tmp_path, 5, size=(16, 16))
    shards = [ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0, rank=r, world_size=2) for r in range(2)]
    assert [len(s.train_files) for s in shards] == [3, 2]
    assert not set(shards[0].train_files) & set(shards[1].train_files)
    with pytest.raises(UserError, match="cannot feed 8 processes"):
        ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0, rank=6, world_size=8)


def test_load_images_for_inference(tmp_path, capsys):
    make_folder(tmp_path / "in" / "sub", 2)
    (tmp_path / "in" / "broken.png").write_bytes(b"garbage")
    Image.fromarray(noise_rgb(16, 16)).convert("L").save(tmp_path / "single.png")
    images = load_images_for_inference([tmp_path / "in", tmp_path / "single.png"])
    assert [p.name for p, _ in images] == ["img_00.png", "img_01.png", "single.png"]
    assert all(t.dtype == torch.uint8 and t.shape[0] == 3 for _, t in images)
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(UserError, match="no such file or folder"):
        load_images_for_inference([tmp_path / "missing"])


# -- training batches -------------------------------------------------------------------------------
def test_next_batch_shape_range_dtype_device(tmp_path):
    make_folder(tmp_path, 3)
    for channels in (1, 3):
        data = ImageData(data_cfg(tmp_path, rotate=True), channels=channels, device=CPU, seed=0)
        batch = data.next_batch(5)  # more samples than files: crosses epochs
        assert batch.shape == (5, channels, 16, 16) and batch.dtype == torch.float32 and batch.device == CPU
        assert 0 <= batch.min() and batch.max() <= 1


def batches(data: ImageData, sizes: list[int]) -> list[torch.Tensor]:
    return [data.next_batch(n) for n in sizes]


def test_same_seed_same_batches_and_cached_equals_streaming(tmp_path):
    make_folder(tmp_path, 3)
    cfg = data_cfg(tmp_path, rotate=True)
    first = batches(ImageData(cfg, channels=3, device=CPU, seed=3), [2, 2, 4])
    again = batches(ImageData(cfg, channels=3, device=CPU, seed=3), [2, 2, 4])
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other = batches(ImageData(cfg, channels=3, device=CPU, seed=4), [2, 2, 4])
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    streamed = ImageData({**cfg, "cache_gb": 0.0}, channels=3, device=CPU, seed=3)
    assert not streamed.cached
    assert all(torch.equal(a, b) for a, b in zip(first, batches(streamed, [2, 2, 4])))
    # the batch size does not change which samples come next
    regrouped = batches(ImageData(cfg, channels=3, device=CPU, seed=3), [4, 4])
    assert torch.equal(torch.cat(first), torch.cat(regrouped))


@pytest.mark.parametrize("cache_gb,workers", [(4.0, 0), (0.0, 0), (0.0, 1)])
def test_resume_continues_the_same_sequence(tmp_path, cache_gb, workers):
    make_folder(tmp_path, 4)
    cfg = data_cfg(tmp_path, cache_gb=cache_gb, workers=workers, rotate=True)
    reference = ImageData(cfg, channels=3, device=CPU, seed=7)
    batches(reference, [3, 3])
    state = json.loads(json.dumps(reference.state_dict()))  # plain, JSON-safe values
    expected = batches(reference, [3, 3])

    resumed = ImageData(cfg, channels=3, device=CPU, seed=7)
    resumed.next_batch(3)  # a different position, overwritten by the state
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, batches(resumed, [3, 3])))
    reference.close()
    resumed.close()


def test_resume_warns_when_the_files_changed(tmp_path, capsys):
    make_folder(tmp_path, 3)
    data = ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0)
    data.load_state_dict({"samples": 5, "train_files": 4})
    assert "4 training images, now there are 3" in capsys.readouterr().err


def test_flips_and_rotations_are_per_sample(tmp_path):
    Image.fromarray(noise_rgb(16, 16)).save(tmp_path / "one.png")
    original = decode_image(tmp_path / "one.png", 3).float() / 255
    variants = [torch.rot90(v, k, dims=(-2, -1)) for v in (original, original.flip(-1)) for k in range(4)]

    plain = ImageData(data_cfg(tmp_path, flip=False), channels=3, device=CPU, seed=0).next_batch(8)
    assert all(torch.equal(x, original) for x in plain)

    batch = ImageData(data_cfg(tmp_path, rotate=True), channels=3, device=CPU, seed=0).next_batch(32)
    seen = {next(i for i, v in enumerate(variants) if torch.equal(x, v)) for x in batch}
    assert len(seen) >= 6  # all 8 flip/rotation combinations occur, chosen per sample


def test_preview_batch_does_not_advance(tmp_path):
    make_folder(tmp_path, 3)
    data = ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0)
    preview = data.preview_batch(2)
    assert torch.equal(preview, data.next_batch(2))
    assert data.state_dict()["samples"] == 2


# -- validation batches ------------------------------------------------------------------------------
def test_val_batches_group_equal_sizes_and_crop(tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    for name, (w, h) in {"a": (20, 20), "b": (20, 20), "c": (30, 20), "d": (20, 20), "e": (20, 20), "f": (20, 20)}.items():
        Image.fromarray(noise_rgb(h, w)).save(val / f"{name}.png")
    make_folder(tmp_path / "train", 2)
    data = ImageData(data_cfg(tmp_path / "train", val_source=str(val)), channels=3, device=CPU, seed=0)

    whole = list(data.val_batches(0, 2))
    assert [names for _, names in whole] == [["a.png", "b.png"], ["c.png"], ["d.png", "e.png"], ["f.png"]]
    assert whole[1][0].shape == (1, 3, 20, 30) and whole[0][0].dtype == torch.float32

    cropped = list(data.val_batches(16, 4))
    assert [len(names) for _, names in cropped] == [4, 2]
    assert all(x.shape[-2:] == (16, 16) for x, _ in cropped)
    full = decode_image(val / "c.png", 3).float() / 255
    assert torch.equal(cropped[0][0][2], full[:, 2:18, 7:23])  # centre crop

    large = list(data.val_batches(25, 8))  # crop larger than a side: min(crop, side)
    assert [x.shape[-2:] for x, _ in large] == [(20, 20), (20, 25), (20, 20)]
    assert [n for _, n in data.val_batches(16, 8, max_images=3)] == [["a.png", "b.png", "c.png"]]
    again = list(data.val_batches(16, 4))  # deterministic (and served from the cache)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(cropped, again))


def test_for_evaluation(tmp_path):
    make_folder(tmp_path, 3, size=(12, 10))
    data = ImageData.for_evaluation(tmp_path, channels=1, device=CPU)
    assert data.train_files == [] and len(data.val_files) == 3
    (batch, names), = list(data.val_batches(0, 4))
    assert batch.shape == (3, 1, 10, 12) and names == ["img_00.png", "img_01.png", "img_02.png"]
    with pytest.raises(UserError, match="--data"):
        ImageData.for_evaluation(tmp_path / "missing", channels=3, device=CPU)


def test_photos_that_show_no_colour_are_found_among_colour_ones(tmp_path):
    """A black-and-white scan saved as RGB JPEG or as grey PNG is grey; a washed-out colour photo is not."""
    make_folder(tmp_path, 3)
    grey = noise_rgb(24, 20)[..., :1].repeat(3, axis=2)
    Image.fromarray(grey).save(tmp_path / "bw_scan.jpg", quality=85)  # JPEG blurs nothing into colour
    Image.fromarray(grey[..., 0], mode="L").save(tmp_path / "bw.png")
    pale = np.clip(grey.astype(int) + np.array([0, 4, 12]), 0, 255).astype(np.uint8)  # a faint blue cast
    Image.fromarray(pale).save(tmp_path / "pale_colour.png")
    data = ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0, find_grey=True)
    assert sorted(p.name for p in data.grey_train_files) == ["bw.png", "bw_scan.jpg"]
    assert not ImageData(data_cfg(tmp_path), channels=1, device=CPU, seed=0, find_grey=True).grey_train_files  # nothing to tell
    assert not ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0).grey_train_files  # only when asked


def test_a_named_pipe_named_like_an_image_is_unreadable_not_waited_on(tmp_path):
    """``mkfifo photos/x.png``: opening it would wait for a writer for ever. (The timer only
    unblocks a reader that should not be there, so a regression fails instead of hanging.)"""
    import os
    import threading

    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    unblock = threading.Timer(20, lambda: open(pipe, "wb").close())
    unblock.daemon = True
    unblock.start()
    try:
        for read in (lambda: decode_image(pipe, 3), lambda: probe_size(pipe)):
            with pytest.raises(UnreadableImageError, match=r"pipe.png: cannot (decode|read) this image \(not a regular "
                                                           r"file but a named pipe\)"):
                read()
    finally:
        unblock.cancel()


def test_an_empty_source_is_refused_rather_than_the_working_directory(tmp_path, monkeypatch):
    """Path("") is the working directory: a run started with data.source = "" trained on
    whatever lay there (an earlier run's sample grids) and could not resume from elsewhere."""
    monkeypatch.chdir(make_folder(tmp_path / "here"))
    with pytest.raises(UserError, match=r'^data.source = "": empty; give a folder of images, or "sample"'):
        ImageData(data_cfg(""), channels=3, device=CPU, seed=0)


def test_a_local_folder_named_sample_gets_a_note_that_sample_means_the_shipped_photos(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "sample")
    data = ImageData(data_cfg("sample"), channels=3, device=CPU, seed=0)
    assert all("img_" not in p.name for p in data.train_files)  # the shipped photos
    assert ('i2i: note: data.source = "sample" means the photos shipped with i2i, not the folder ./sample here; '
            'for that one, write "./sample"') in capsys.readouterr().err


@pytest.mark.parametrize("val", ["photos", "photos/held_out"])
def test_validating_on_the_training_folder_or_inside_it_is_warned_about(tmp_path, capsys, val):
    make_folder(tmp_path / "photos")
    make_folder(tmp_path / "photos" / "held_out", count=2)
    ImageData(data_cfg(tmp_path / "photos", val_source=str(tmp_path / val)), channels=3, device=CPU, seed=0)
    err = capsys.readouterr().err
    assert "so the run validates on images it trains on" in err
    capsys.readouterr()
    make_folder(tmp_path / "elsewhere", count=2)
    ImageData(data_cfg(tmp_path / "photos", val_source=str(tmp_path / "elsewhere")), channels=3, device=CPU, seed=0)
    assert "validates on images it trains on" not in capsys.readouterr().err


def test_a_file_that_fails_to_decode_while_streaming_is_warned_about_once_with_why(tmp_path, capfd):
    """Each DataLoader worker is a process of its own: warned from there, it came once per
    worker, and without the reason the cached path gives."""
    folder = make_folder(tmp_path / "photos", count=3)
    whole = (folder / "img_01.png").read_bytes()
    (folder / "img_01.png").write_bytes(whole[: len(whole) // 2])  # header fine, pixels cut off
    data = ImageData(data_cfg(folder, cache_gb=0.0, workers=2), channels=3, device=CPU, seed=0)
    assert not data.cached
    for _ in range(6):
        batch = data.next_batch(4)
        assert batch.shape == (4, 3, 16, 16)
    warnings = [line for line in capfd.readouterr().err.splitlines() if "cannot be decoded" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"i2i: warning: {folder / 'img_01.png'}: cannot be decoded (")
    assert warnings[0].endswith("); using the next training image instead")


def test_validation_copies_of_training_photos_are_warned_about(tmp_path, capsys):
    """A photo saved twice under two names could land on both sides of the split, unsaid."""
    import shutil

    from helpers import make_photos
    from i2i.data import ImageData
    from i2i.recipe import SCHEMA

    photos = make_photos(tmp_path / "photos", count=4)
    for i in range(4):
        shutil.copy(photos / f"photo_{i}.png", photos / f"copy_{i}.png")
    cfg = {key: field.default for key, field in SCHEMA["data"].items()}
    cfg.update(source=str(photos), size=16, workers=0, val_fraction=0.5)
    data = ImageData(cfg, channels=3, device="cpu", seed=0)
    err = capsys.readouterr().err
    val = {p.name for p in data.val_files}
    leaked = sum(f"photo_{i}.png" in val and f"copy_{i}.png" not in val or f"copy_{i}.png" in val and f"photo_{i}.png" not in val
                 for i in range(4))
    assert leaked and f"i2i: warning: {leaked} validation image(s) are byte-for-byte copies of training images" in err
    shutil.rmtree(photos)
    make_photos(photos, count=4)
    ImageData(cfg, channels=3, device="cpu", seed=0)
    assert "copies" not in capsys.readouterr().err


def test_many_files_of_one_size_are_each_read_once_in_looking_for_copies(tmp_path, capsys, monkeypatch):
    """A scanner's equal-sized BMPs were compared pair by pair: 4,000 of them took a minute at
    start-up, 20,000 would take half an hour."""
    from i2i.data import sources
    from i2i.data.sources import ImageFile, warn_copies_across_split

    files = []
    for i in range(60):
        (tmp_path / f"scan_{i}.bmp").write_bytes(i.to_bytes(2, "big") * 50)  # 100 bytes each, all different
        files.append(ImageFile(tmp_path / f"scan_{i}.bmp", f"scan_{i}.bmp", 8, 8))
    (tmp_path / "copy.bmp").write_bytes((tmp_path / "scan_7.bmp").read_bytes())
    (tmp_path / "link.bmp").symlink_to(tmp_path / "scan_8.bmp")  # the same file: no copy
    read = []
    real_digest = sources._file_digest
    monkeypatch.setattr(sources, "_file_digest", lambda path: read.append(path) or real_digest(path))
    val = files[40:] + [ImageFile(tmp_path / name, name, 8, 8) for name in ("copy.bmp", "link.bmp")]
    warn_copies_across_split(files[:40], val)
    assert len(read) == 62  # 40 training files and 22 validation files, once each
    assert capsys.readouterr().err == ("i2i: warning: 1 validation image(s) are byte-for-byte copies of training "
                                       "images (copy.bmp = scan_7.bmp), so their scores are of photos the network "
                                       "trained on; remove the copies for scores of new photos\n")



@pytest.mark.parametrize("cache_gb", [4.0, 0.0], ids=["cached", "streamed"])
def test_side_by_side_pairs_get_the_same_crop_flip_and_turn(tmp_path, cache_gb):
    """A pix2pix data set's file holds A|B: both halves must be cut alike, or the task learns
    from misaligned pairs; here B is A's negative, so every pixel pair must still sum to 1."""
    from helpers import make_pairs

    make_pairs(tmp_path / "pairs", count=4, size=(40, 36))
    data = ImageData(data_cfg(tmp_path / "pairs", size=24, cache_gb=cache_gb, rotate=True, val_fraction=0.25),
                     channels=3, device=CPU, seed=0, side_by_side=True)
    assert data.cached == (cache_gb > 0) and len(data.train_files) == 3
    for _ in range(4):
        batch = data.next_batch(3)
        assert batch.shape == (3, 6, 24, 24)
        torch.testing.assert_close(batch[:, :3] + batch[:, 3:], torch.ones(3, 3, 24, 24), atol=1e-6, rtol=0)
        assert batch[:, :3].std() > 0.05  # real crops, not a constant image
    (val, names), = list(data.val_batches(crop=0, batch_size=4))
    assert val.shape == (1, 6, 36, 40) and names[0].startswith("pair_")  # each half whole
    torch.testing.assert_close(val[:, :3] + val[:, 3:], torch.ones(1, 3, 36, 40), atol=1e-6, rtol=0)


def test_side_by_side_files_are_cut_down_the_middle_and_sized_by_their_halves(tmp_path):
    """An odd width loses its last column, as the reference's aligned data set does; the size
    check speaks of the halves, which are what data.size must fit."""
    from i2i.data.decode import decode_sample

    pixels = noise_rgb(20, 41)
    Image.fromarray(pixels).save(tmp_path / "odd.png")
    pair = decode_sample(tmp_path / "odd.png", 3, side_by_side=True)
    assert pair.shape == (6, 20, 20)
    assert torch.equal(pair[:3], torch.from_numpy(pixels[:, :20]).permute(2, 0, 1))
    assert torch.equal(pair[3:], torch.from_numpy(pixels[:, 20:40]).permute(2, 0, 1))
    Image.fromarray(noise_rgb(20, 1)).save(tmp_path / "thin.png")
    files, unreadable = scan_folder(str(tmp_path), "data.source", side_by_side=True)
    assert [(f.name, f.height, f.width) for f in files] == [("odd.png", 20, 20)]
    assert unreadable == [tmp_path / "thin.png"]
    # a pair is cut as stored, as the reference cuts it: turned upright first, its halves were top and bottom
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "turned").mkdir()
    Image.fromarray(pixels[:, :40]).save(tmp_path / "turned" / "pair.png", exif=exif)
    assert decode_image(tmp_path / "turned" / "pair.png", 3).shape == (3, 40, 20)  # a single photo is turned upright
    turned = decode_sample(tmp_path / "turned" / "pair.png", 3, side_by_side=True)
    assert torch.equal(turned, pair)
    assert [(f.height, f.width) for f in scan_folder(str(tmp_path / "turned"), "data.source", side_by_side=True)[0]] == [(20, 20)]
    with pytest.raises(UserError, match=r"odd.png: each of its two halves, 20x20 px, is smaller than data.size = 32"):
        ImageData(data_cfg(tmp_path, size=32), channels=3, device=CPU, seed=0, side_by_side=True)


def test_a_data_set_laid_out_as_the_references_gets_a_note(tmp_path, capfd):
    """Given whole, facades/ pools its train, val and test folders and splits them again: the
    note names the keys that keep its own split; CycleGAN's trainA/trainB are no pairs at all."""
    from helpers import make_photos

    for split in ("train", "val", "test"):
        make_photos(tmp_path / "facades" / split, count=2, size=(20, 20))
    scan_folder(str(tmp_path / "facades"), "data.source")
    err = capfd.readouterr().err
    assert err == (f'i2i: note: data.source = "{tmp_path / "facades"}" holds the subfolders train, val, test, as the '
                   "reference's data sets do: all are searched for training images (and without data.val_source, split "
                   "again by data.val_fraction); for the data set's own split, set data.source = "
                   f'"{tmp_path / "facades" / "train"}" and data.val_source = '
                   f'"{tmp_path / "facades" / "val"}"\n')
    scan_folder(str(tmp_path / "facades" / "train"), "data.source")
    assert capfd.readouterr().err == ""
    for split in ("trainA", "trainB"):
        make_photos(tmp_path / "horse2zebra" / split, count=1, size=(20, 20))
    (tmp_path / "horse2zebra" / "trainB" / "photo_0.png").rename(tmp_path / "horse2zebra" / "trainB" / "zebra_0.png")
    scan_folder(str(tmp_path / "horse2zebra"), "data.source")
    assert "holds trainA, trainB: an unpaired (CycleGAN) data set" in capfd.readouterr().err
    with pytest.raises(UserError, match=r"holds trainA, trainB: an unpaired \(CycleGAN\) data set, whose files are single "
                                        r"photos, and this task reads files that hold a pair side by side"):
        scan_folder(str(tmp_path / "horse2zebra"), "data.source", side_by_side=True)  # they would be cut in half
    with pytest.raises(UserError, match="an unpaired.*; i2i does not train CycleGAN's unpaired setting$"):
        scan_folder(str(tmp_path / "horse2zebra"), "data.source", quiet=True, side_by_side=True)  # as --nproc checks
    # pairs kept in CycleGAN's folder names, under the same file names: the keys that read them as pairs
    for split in ("trainA", "trainB"):
        make_photos(tmp_path / "two" / split, count=2, size=(20, 20))
    with pytest.raises(UserError) as refused:
        scan_folder(str(tmp_path / "two"), "data.source", side_by_side=True)
    assert str(refused.value).endswith(
        f'; its trainA and trainB hold the same file names, so if they are pairs, '
        f'set data.source = "{tmp_path / "two" / "trainA"}" and data.pair_source = "{tmp_path / "two" / "trainB"}"')


def test_a_single_photo_among_side_by_side_pairs_is_named(tmp_path, capsys):
    """Cut in half, it trains as a pair of its own left and right halves, silently."""
    from helpers import make_pairs

    make_pairs(tmp_path / "pairs", count=4, size=(40, 36))
    Image.fromarray(noise_rgb(48, 64)).save(tmp_path / "pairs" / "photo.png")  # a 4:3 photo
    scan_folder(str(tmp_path / "pairs"), "data.source", side_by_side=True)
    assert capsys.readouterr().err == (
        f'i2i: warning: data.source = "{tmp_path / "pairs"}": 1 file(s) are shaped unlike the other pairs, whose halves '
        "are about 1.1:1 (photo.png (32x48 px halves)); a single photo among A|B files is cut in half and trained on as "
        "a pair\n")
    scan_folder(str(tmp_path / "pairs"), "data.source")  # photos, not pairs: any shape
    assert capsys.readouterr().err == ""


def test_the_sample_photos_are_refused_to_a_side_by_side_task():
    """Cut down the middle, the shipped single photos would train a pair task on nonsense."""
    with pytest.raises(UserError, match=r'^data.source = "sample": the photos shipped with i2i are single photos, and '
                                        r"this task reads files that hold a pair side by side \(A\|B\)"):
        ImageData(data_cfg("sample", size=16), channels=3, device=CPU, seed=0, side_by_side=True)


def test_a_resize_that_blows_small_images_up_is_warned_about(tmp_path, capsys):
    """recipes/pix2pix.toml's data.resize = 286 on 64 px images trained for hours on their blur, silently."""
    make_folder(tmp_path / "small", 3, size=(64, 48))
    ImageData(data_cfg(tmp_path / "small", size=96, resize=120), channels=3, device=CPU, seed=0)
    assert capsys.readouterr().err == ("i2i: warning: data.resize = 120 enlarges 3 of 3 training image(s) more than 2x "
                                       "(the most: img_00.png, 64x48 px, 2.5x), so the network trains on their blur; "
                                       "for images this small, lower data.resize and data.size\n")
    ImageData(data_cfg(tmp_path / "small", size=32, resize=64), channels=3, device=CPU, seed=0)
    assert capsys.readouterr().err == ""
    # data.upscale_small blows thumbnails up to data.size the same way (a 4x4 image 8x, silently)
    ImageData(data_cfg(tmp_path / "small", size=128, upscale_small=True), channels=3, device=CPU, seed=0)
    assert capsys.readouterr().err == ("i2i: warning: data.upscale_small (to data.size = 128) enlarges 3 of 3 training "
                                       "image(s) more than 2x (the most: img_00.png, 64x48 px, 2.7x), so the network "
                                       "trains on their blur; for images this small, lower data.size\n")


def test_every_jpeg_suffix_is_read(tmp_path):
    """A camera's .jpe or a browser's .jfif download was skipped without a word."""
    from i2i.data.sources import survey_folder

    for suffix in (".jpe", ".JFIF", ".jpeg"):
        Image.new("RGB", (20, 16), (200, 30, 60)).save(tmp_path / f"photo{suffix}", format="JPEG")
    assert sorted(p.name for p in survey_folder(tmp_path).images) == ["photo.JFIF", "photo.jpe", "photo.jpeg"]


def test_a_folder_too_small_to_hold_out_a_validation_image_is_warned_about_at_the_start(tmp_path, capsys):
    """One photo trained, unscored and without a best checkpoint, and said nothing about it."""
    import i2i
    from helpers import TINY_G2C, make_photos, tiny_recipe

    one = make_photos(tmp_path / "one", count=1, size=(32, 32))
    i2i.train(tiny_recipe(one, tmp_path / "run", base=TINY_G2C, train={"steps": 1}), quiet=True)
    assert (f"i2i: warning: data.val_fraction = 0.34 of {one}'s 1 image(s) holds out none, so this run is not validated "
            "(no scores, no best checkpoint); add photos, raise data.val_fraction, or give data.val_source"
            ) in capsys.readouterr().err


def make_two_folder_pairs(root: Path) -> tuple[Path, Path]:
    """``a/`` photos and, in ``b/`` under the same names (another extension, one in a subfolder),
    their negatives: one A turned by its EXIF orientation (B stored upright, as a viewer shows
    A), one A without a partner, one with a partner of another size, one B without an A."""
    a, b = root / "a", root / "b"
    for folder in (a / "sub", b / "sub"):
        folder.mkdir(parents=True)
    for i, name in enumerate(["p0", "p1", "sub/p2"]):
        pixels = noise_rgb(20, 24, seed=i)
        Image.fromarray(pixels).save(a / f"{name}.png")
        Image.fromarray(255 - pixels).save(b / f"{name}.tif")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    stored = noise_rgb(24, 20, seed=7)
    Image.fromarray(stored).save(a / "turned.png", exif=exif)
    Image.fromarray(255 - np.rot90(stored, k=-1).copy()).save(b / "turned.png")
    Image.fromarray(noise_rgb(20, 24, seed=8)).save(a / "alone.png")
    Image.fromarray(noise_rgb(20, 24, seed=9)).save(a / "odd.png")
    Image.fromarray(noise_rgb(22, 24, seed=9)).save(b / "odd.png")
    Image.fromarray(noise_rgb(20, 24, seed=10)).save(b / "extra.png")
    return a, b


@pytest.mark.parametrize("cache_gb", [4.0, 0.0], ids=["cached", "streamed"])
def test_pairs_across_two_folders_are_matched_by_name_and_cut_alike(tmp_path, cache_gb, capsys):
    """data.pair_source: each image's pair is the file of the same name (any extension) in the
    other folder, both upright; the two get the same crop, flip and turn, as A|B halves do."""
    a, b = make_two_folder_pairs(tmp_path)
    data = ImageData(data_cfg(a, pair_source=str(b), size=16, cache_gb=cache_gb, rotate=True, val_fraction=0.25),
                     channels=3, device=CPU, seed=0, side_by_side=True)
    err = capsys.readouterr().err
    assert data.cached == (cache_gb > 0) and len(data.train_files) + len(data.val_files) == 4
    assert f'i2i: note: data.pair_source = "{b}": 1 file(s) pair with no image of data.source = "{a}" and are not used ' \
           f"({b / 'extra.png'})" in err
    assert "skipped 2 unreadable or unpaired file(s)" in err and f'alone.png (no file alone.* in data.pair_source = "{b}" to pair ' \
           "it with)" in err and "odd.png (24x20 px, its pair" in err and "24x22 px; a pair's two images are the same size)" in err
    for _ in range(4):
        batch = data.next_batch(3)
        assert batch.shape == (3, 6, 16, 16)
        torch.testing.assert_close(batch[:, :3] + batch[:, 3:], torch.ones(3, 3, 16, 16), atol=1e-6, rtol=0)
    for val, names in data.val_batches(crop=0, batch_size=4):
        torch.testing.assert_close(val[:, :3] + val[:, 3:], torch.ones_like(val[:, 3:]), atol=1e-6, rtol=0)
    every = ImageData.for_evaluation(a, channels=3, device=CPU, side_by_side=True, pair_folder=b)
    shapes = {name: batch.shape for batch, names in every.val_batches(crop=0, batch_size=1) for name in names}
    assert shapes == {"p0.png": (1, 6, 20, 24), "p1.png": (1, 6, 20, 24), "sub/p2.png": (1, 6, 20, 24),
                      "turned.png": (1, 6, 20, 24)}  # the turned one upright, its pair as stored


def test_pair_folders_go_with_a_task_that_reads_pairs_and_with_each_other(tmp_path):
    a, b = make_two_folder_pairs(tmp_path)
    with pytest.raises(UserError, match=r'^data.pair_source = ".*": this task makes its own pairs from single photos; '
                                        r'folders of ready pairs .* train with task.name = "paired"$'):
        ImageData(data_cfg(a, pair_source=str(b)), channels=3, device=CPU, seed=0)
    with pytest.raises(UserError, match="data.val_pair_source = .* without data.val_source"):
        ImageData(data_cfg(a, pair_source=str(b), val_pair_source=str(b)), channels=3, device=CPU, seed=0,
                  side_by_side=True)
    with pytest.raises(UserError, match=r'^data.pair_source = ".*" and data.val_pair_source is not set: .*; set data.val_pair_source$'):
        ImageData(data_cfg(a, pair_source=str(b), val_source=str(a)), channels=3, device=CPU, seed=0, side_by_side=True)
    with pytest.raises(UserError, match='data.source = "sample": the photos shipped with i2i have no pairs'):
        ImageData(data_cfg("sample", pair_source=str(b)), channels=3, device=CPU, seed=0, side_by_side=True)
    with pytest.raises(UserError, match=r'^data.pair_source = ".*nowhere": no such folder'):
        ImageData(data_cfg(a, pair_source=str(tmp_path / "nowhere")), channels=3, device=CPU, seed=0, side_by_side=True)


def test_pair_folders_that_would_train_nonsense_or_hide_a_cause_are_named(tmp_path, capsys):
    """The data folder given as its own pair folder trained the identity without a word; a pair
    folder nested in it was searched for A images; a partner in a format i2i does not read, or
    two candidates, were reported as no partner, and the candidates as unused."""
    a, b = make_two_folder_pairs(tmp_path)
    with pytest.raises(UserError, match=r'^data.pair_source = ".*" is data.source = ".*" itself: each image would pair '
                                        r"with itself"):
        ImageData(data_cfg(a, pair_source=str(a / ".." / "a")), channels=3, device=CPU, seed=0, side_by_side=True)
    (b / "alone.heic").write_bytes(b"not read")  # alone.png's pair, in a kind i2i does not read
    Image.fromarray(noise_rgb(20, 24, seed=1)).save(b / "p1.jpg")  # a second candidate for p1.png
    shutil.move(str(b), str(a / "b"))  # the pair folder inside the images' folder
    capsys.readouterr()
    files, skipped = scan_folder(str(a), "data.source", pairs=(str(a / "b"), "data.pair_source"))
    assert sorted(f.name for f in files) == ["p0.png", "sub/p2.png", "turned.png"]  # nothing of b/ taken as an A
    reasons = {}
    files, skipped = scan_folder(str(a), "data.source", reasons, pairs=(str(a / "b"), "data.pair_source"))
    assert reasons[a / "alone.png"].startswith(f'its pair alone.heic in data.pair_source = "{a / "b"}" is of a kind i2i '
                                               "does not read")
    assert "several files could be its pair" in reasons[a / "p1.png"]
    note = capsys.readouterr().err
    assert "1 file(s) pair with no image" in note and "extra.png" in note and "p1.jpg" not in note
    data = ImageData(data_cfg(a, pair_source=str(a / "b")), channels=3, device=CPU, seed=0, side_by_side=True)
    assert "skipped 3 unreadable or unpaired file(s)" in capsys.readouterr().err and len(data.train_files) == 3


def test_an_animation_or_multi_page_tiff_is_said_to_be_read_at_its_first_frame(tmp_path, capsys, monkeypatch):
    """Only the first frame is read: said once per file, and not for a phone's JPEG that holds a
    second picture (MPO), which is a photo like any other."""
    import i2i.data.decode as decode

    monkeypatch.setattr(decode, "_remarked", {})
    monkeypatch.setattr(decode, "_left_out", {})
    frames = [Image.fromarray(np.full((8, 10, 3), value, np.uint8)) for value in (10, 128, 250)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "moving.webp", save_all=True, append_images=frames[1:], lossless=True)
    frames[0].save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=frames[1:2])
    assert Image.open(tmp_path / "phone.jpg").format == "MPO"
    for name in ("pages.tif", "moving.webp", "phone.jpg", "pages.tif"):
        assert decode_image(tmp_path / name, 3)[:, 0, 0].tolist() == [10, 10, 10]
    assert capsys.readouterr().err.splitlines() == [
        f"i2i: note: {tmp_path / 'pages.tif'}: 3 pages; only the first is read",
        f"i2i: note: {tmp_path / 'moving.webp'}: 3 frames; only the first is read"]


def test_the_references_separate_a_and_b_folders_are_not_cut_in_half_as_pairs(tmp_path, capsys):
    """ab/A and ab/B, single photos with their pairs under the same names, trained as A|B files:
    every photo cut down the middle, A and B photos pooled, without a word."""
    from helpers import make_photos

    for side in ("A", "B"):
        make_photos(tmp_path / "ab" / side, count=3, size=(32, 32))
    with pytest.raises(UserError, match=rf'^data.source = "{tmp_path / "ab"}" holds the folders A and B: the reference\'s '
                                        r"two-folder layout, .* set data.source = \".*ab/A\" and data.pair_source = \".*ab/B\""):
        scan_folder(str(tmp_path / "ab"), "data.source", side_by_side=True)
    with pytest.raises(UserError, match=r"score them with --data .*ab/A --pair-data .*ab/B$"):
        scan_folder(str(tmp_path / "ab"), "--data", side_by_side=True)
    scan_folder(str(tmp_path / "ab"), "data.source")  # single photos for a task that reads them so: fine
    from i2i.data.sources import resolve_data_folders  # what i2i validate checks: the same refusal

    with pytest.raises(UserError, match="holds the folders A and B"):
        resolve_data_folders(data_cfg(tmp_path / "ab"), side_by_side=True)
    assert capsys.readouterr().err == ""
    # ab/A alone, its pair folder forgotten: square files, so halves of 1:2
    scan_folder(str(tmp_path / "ab" / "A"), "data.source", side_by_side=True)
    assert capsys.readouterr().err == (
        f'i2i: warning: data.source = "{tmp_path / "ab" / "A"}": its files are about 1:1 (width:height), so each is cut '
        "into halves of 0.5:1, yet a file holding a pair side by side (A|B) is about twice as wide as tall: these look "
        "like single photos; for pairs kept in two folders under the same names, set data.pair_source (and "
        "data.val_pair_source; --pair-data for i2i eval) to the folder of the other images\n")


def test_an_image_too_large_once_resized_is_skipped_by_name_not_a_memory_error(tmp_path, monkeypatch, capsys):
    """A 1 x 20000 strip at data.resize = 256 would be 256 x 5,120,000 px: 15 GB of floats to
    resize, a traceback from the allocator. Past Pillow's decompression-bomb limit (lowered here
    to keep the test small) it is skipped with a warning naming it, as a bomb file is."""
    import i2i
    from helpers import TINY_G2C, make_photos

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    photos = make_photos(tmp_path / "photos", count=4, size=(32, 32))
    Image.new("RGB", (2, 300), (10, 200, 30)).save(photos / "strip.png")
    with pytest.raises(UnreadableImageError, match=r"^2 x 300 px would be 40 x 6,000 once its shorter side is resized "
                                                   r"to 40 px, past the 10,000 pixels an image may have$"):
        fit_image(torch.zeros(3, 300, 2, dtype=torch.uint8), size=16, resize=40)
    recipe = {**TINY_G2C, "data": {**TINY_G2C["data"], "source": str(photos), "resize": 40},
              "train": {**TINY_G2C["train"], "steps": 2}, "output": {**TINY_G2C["output"], "dir": str(tmp_path / "run")}}
    assert i2i.train(recipe, quiet=True).status == "finished"
    assert (f"skipped 1 unreadable file(s): {photos / 'strip.png'} (2 x 300 px would be 40 x 6,000 once its shorter "
            "side is resized to 40 px, past the 10,000 pixels an image may have)") in capsys.readouterr().err


@pytest.mark.parametrize("brand, kind", [(b"heic", "HEIC"), (b"mif1", "HEIF"), (b"avif", "AVIF")])
def test_a_phones_heic_photo_renamed_jpg_is_named_as_heic(tmp_path, brand, kind):
    """'not an image format Pillow can read' told an iPhone's owner nothing."""
    from i2i.data.decode import probe_image

    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(b"\x00\x00\x00\x18ftyp" + brand + bytes(4) + b"mif1heic" + bytes(64))
    reason = f"a {kind} image, whatever its extension says; i2i does not read {kind}: convert it to JPEG or PNG"
    with pytest.raises(UnreadableImageError) as info:
        probe_image(photo)
    assert info.value.reason == reason
    with pytest.raises(UnreadableImageError) as info:
        decode_image(photo, 3)
    assert info.value.reason == reason
    photo.write_bytes(b"not an image at all")
    with pytest.raises(UnreadableImageError, match="named .jpg but does not start as a JPEG file does"):
        decode_image(photo, 3)
    photo.rename(tmp_path / "IMG_0001.xyz")
    with pytest.raises(UnreadableImageError, match="not an image format Pillow can read"):
        decode_image(tmp_path / "IMG_0001.xyz", 3)


def test_a_png_with_a_damaged_header_is_named_a_damaged_png(tmp_path):
    """One flipped byte in a PNG's header was 'not an image format Pillow can read', as if it
    were some unknown format rather than the user's own PNG, damaged."""
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photo.png")
    damaged = bytearray((tmp_path / "photo.png").read_bytes())
    damaged[20] ^= 0xFF  # inside IHDR: its CRC no longer matches
    (tmp_path / "photo.png").write_bytes(bytes(damaged))
    with pytest.raises(UnreadableImageError) as info:
        decode_image(tmp_path / "photo.png", 3)
    assert info.value.reason == "a damaged PNG file, whose header does not read"
    damaged[1] ^= 0x01  # its signature too: no longer a PNG's first bytes
    (tmp_path / "photo.png").write_bytes(bytes(damaged))
    with pytest.raises(UnreadableImageError, match=r"named .png but does not start as a PNG file does \(damaged"):
        decode_image(tmp_path / "photo.png", 3)


def test_a_subfolder_this_user_may_not_list_is_left_out_with_a_warning(tmp_path, monkeypatch, capfd):
    """A chmod 000 folder among the photos (or a link to one) was a PermissionError traceback
    from the check for i2i's own folders, in run, eval and translate alike."""
    import os
    import pathlib

    from helpers import make_photos

    make_photos(tmp_path / "photos", count=2)
    (tmp_path / "photos" / "locked").mkdir()
    locked = str(tmp_path / "photos" / "locked")
    scandir, is_file = os.scandir, pathlib.Path.is_file

    def no_permission(path=".", *args):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return scandir(path, *args)

    def is_file_refused(self):
        if str(self).startswith(locked + os.sep):
            raise PermissionError(13, "Permission denied", str(self))
        return is_file(self)

    monkeypatch.setattr(os, "scandir", no_permission)
    monkeypatch.setattr(pathlib.Path, "is_file", is_file_refused)
    files, _ = scan_folder(str(tmp_path / "photos"), "data.source")
    assert len(files) == 2
    assert (f'data.source = "{tmp_path / "photos"}": 1 subfolder(s) could not be searched, as this user may not list them '
            f"(permission denied): {locked}; any images in them are left out") in capfd.readouterr().err


def test_more_loading_workers_than_cores_is_one_note_not_torchs_warning(tmp_path, monkeypatch, capfd):
    import os

    from helpers import make_photos

    make_photos(tmp_path / "photos", count=3)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    data = ImageData(data_cfg(tmp_path / "photos", cache_gb=0, workers=2), channels=3, device=CPU, seed=0)
    assert not data.cached
    data.next_batch(2)
    err = capfd.readouterr().err
    assert err.count("i2i: note: data.workers = 2 is more than the 1 core(s) this process may use") == 1, err
    assert "This DataLoader will create" not in err


def test_a_data_folder_this_user_may_not_list_is_named_as_such(tmp_path, monkeypatch):
    """It was named by the run.json looked for inside it: '/x/run.json: Permission denied'."""
    import os
    import pathlib

    (tmp_path / "locked").mkdir()
    is_file = pathlib.Path.is_file

    def is_file_refused(self):
        if str(self).startswith(str(tmp_path / "locked") + os.sep):
            raise PermissionError(13, "Permission denied", str(self))
        return is_file(self)

    monkeypatch.setattr(pathlib.Path, "is_file", is_file_refused)
    with pytest.raises(UserError, match=r'^data.source = ".*locked": this user may not list this folder \(permission '
                                        r'denied\); give your user access to it, or another folder$'):
        scan_folder(str(tmp_path / "locked"), "data.source")


def test_a_folder_whose_only_subfolder_may_not_be_listed_says_so_in_its_error(tmp_path, monkeypatch):
    """'no images in this folder or its subfolders', and nothing of the one it could not search
    (i2i validate prints no notes: the error is all it says)."""
    import os

    (tmp_path / "photos" / "locked").mkdir(parents=True)
    locked = str(tmp_path / "photos" / "locked")
    scandir = os.scandir

    def no_permission(path=".", *args):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return scandir(path, *args)

    monkeypatch.setattr(os, "scandir", no_permission)
    with pytest.raises(UserError, match=r"no images in this folder or its subfolders .*; 1 subfolder\(s\) this user may "
                                        r"not list were not searched \(permission denied\), e\.g\. .*locked$"):
        scan_folder(str(tmp_path / "photos"), "data.source", quiet=True)


def test_a_file_only_another_rank_decodes_is_reported_by_that_rank(tmp_path, capsys):
    """Rank 0 reports the folder's scan; a truncated file in rank 1's share was found by rank 1
    alone, and skipped without a word (split.json recorded it)."""
    make_folder(tmp_path, 4)
    cfg = data_cfg(tmp_path)
    theirs = ImageData(cfg, channels=3, device=CPU, seed=0, rank=1, world_size=2).train_files[0]
    theirs.write_bytes(theirs.read_bytes()[:80])  # header fine, data cut
    capsys.readouterr()
    ImageData(cfg, channels=3, device=CPU, seed=0, rank=0, world_size=2)
    assert theirs.name not in capsys.readouterr().err  # not rank 0's to read
    share = ImageData(cfg, channels=3, device=CPU, seed=0, rank=1, world_size=2)
    assert theirs not in share.train_files
    assert capsys.readouterr().err.startswith(f"i2i: warning: skipped 1 unreadable file(s) of rank 1's share: {theirs} "
                                              "(truncated")


def test_a_rank_whose_whole_share_is_unreadable_says_it_is_its_share(tmp_path):
    """'none of the training images can be decoded' from rank 1 read as the whole folder broken,
    where only that rank's one file was."""
    make_folder(tmp_path, 4)
    cfg = data_cfg(tmp_path)
    theirs = ImageData(cfg, channels=3, device=CPU, seed=0, rank=1, world_size=3).train_files
    for path in theirs:
        path.write_bytes(path.read_bytes()[:80])
    with pytest.raises(UserError, match=r"none of the training images of rank 1's share can "
                                         r"be decoded .*train with fewer processes"):
        ImageData(cfg, channels=3, device=CPU, seed=0, rank=1, world_size=3)


def test_pairs_of_varied_but_ordinary_shapes_are_not_taken_for_single_photos(tmp_path, capsys):
    """Halves from 64x48 to 64x68 (photos from 4:3 to a little taller than wide) were named as
    'shaped unlike the other pairs' on every run."""
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i, height in enumerate((48, 52, 56, 60, 64, 68)):
        Image.fromarray(noise_rgb(height, 128, seed=i)).save(folder / f"ab{i}.png")
    scan_folder(str(folder), "data.source", side_by_side=True)
    assert "shaped unlike" not in capsys.readouterr().err
