"""What ``i2i translate`` keeps of a file: decode_full's alpha and bit depth, and the 16-bit
PNG and TIFF encoders (checked against independent decoders: libpng via torchvision, Pillow)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from i2i.data.decode import decode_full, decode_image, pil_to_decoded
from i2i.data.encode import encode_png16, encode_tiff16, save_image, with_alpha
from helpers import make_transparent_images


def libpng(data: bytes) -> np.ndarray:
    """``[H, W, C]`` uint16 pixels of a PNG, decoded by torchvision's libpng."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision >= 0.29 points to torchcodec
        from torchvision.io import ImageReadMode, decode_png

        tensor = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
    return tensor.to(torch.int32).permute(1, 2, 0).numpy().astype(np.uint16)


def tiff_samples(data: bytes) -> np.ndarray:
    """The uncompressed strip of a TIFF as little-endian uint16 samples ``[H, W, C]``, found
    through Pillow's tag parsing (Pillow itself reads 16-bit RGB TIFFs as 8-bit)."""
    image = Image.open(io.BytesIO(data))
    tags = image.tag_v2
    assert tags[259] == 1 and tags[284] == 1  # uncompressed, chunky
    offset, count = tags[273][0], tags[279][0]
    width, height = image.size
    return np.frombuffer(data[offset:offset + count], "<u2").reshape(height, width, tags[277])


def smooth16(height: int, width: int, channels: int) -> np.ndarray:
    """Gradients with a little noise: rows where each PNG filter wins somewhere."""
    rng = np.random.default_rng(channels)
    yy, xx = np.mgrid[0:height, 0:width]
    planes = [(xx * 997 + yy * 31 * (c + 1) + rng.integers(0, 200, (height, width))) % 65536 for c in range(channels)]
    return np.stack(planes, -1).astype(np.uint16)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png16_round_trips_through_libpng(channels):
    rng = np.random.default_rng(0)
    for pixels in (rng.integers(0, 65536, (9, 7, channels), dtype=np.uint16), smooth16(40, 33, channels),
                   np.full((1, 1, channels), 65535, np.uint16)):
        data = encode_png16(pixels)
        assert data[24] == 16 and data[25] == {1: 0, 2: 4, 3: 2, 4: 6}[channels]  # IHDR bit depth, colour type
        assert np.array_equal(libpng(data), pixels)
        assert Image.open(io.BytesIO(data)).size == (pixels.shape[1], pixels.shape[0])  # Pillow opens it too


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_tiff16_holds_every_sample(channels):
    pixels = smooth16(12, 17, channels)
    data = encode_tiff16(pixels)
    image = Image.open(io.BytesIO(data))
    expected = pixels[..., [0, 0, 0, 1]] if channels == 2 else pixels  # grey+alpha is written as RGBA
    assert image.tag_v2[258] == (16,) * expected.shape[2]
    assert np.array_equal(tiff_samples(data), expected)
    if channels == 1:
        assert image.mode == "I;16" and np.array_equal(np.asarray(image), pixels[..., 0])
    else:  # Pillow reads 16-bit RGB(A) TIFFs as their high bytes
        assert image.mode == ("RGB" if channels == 3 else "RGBA")
        assert np.array_equal(np.asarray(image), (expected >> 8).astype(np.uint8))
    if channels >= 3:
        assert (image.tag_v2.get(338) == (2,)) == (channels == 4)  # ExtraSamples: unassociated alpha


def test_with_alpha_matches_depths_and_save_image_refuses_16_bits_where_they_do_not_fit(tmp_path):
    rgb8, rgb16 = np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3, 3), np.uint16)
    alpha8 = np.array([[0, 1, 128], [254, 255, 7]], np.uint8)
    alpha16 = np.array([[0, 128, 129], [385, 65535, 32896]], np.uint16)
    assert np.array_equal(with_alpha(rgb16, alpha8)[..., 3], alpha8.astype(np.uint16) * 257)
    assert with_alpha(rgb8, alpha16)[..., 3].tolist() == [[0, 0, 1], [1, 255, 128]]  # round(a / 257)
    assert np.array_equal(with_alpha(rgb8, alpha8)[..., 3], alpha8)
    with pytest.raises(ValueError, match="8 bits per channel"):
        save_image(rgb16, tmp_path / "x.jpg", "jpg")


def test_with_alpha_takes_the_white_back_out_of_partly_transparent_pixels():
    """A 50 % grey shadow (127 at alpha 128) reaches the network as 191 over white; written back
    with its alpha it must be 127 again, not 191 lightened a second time by the viewer."""
    alpha = np.array([[255, 128, 0]], np.uint8)
    translated = np.array([[[40, 40, 40], [191, 191, 191], [250, 250, 250]]], np.uint8)
    out = with_alpha(translated, alpha)
    assert out[0, 0].tolist() == [40, 40, 40, 255] and out[0, 2].tolist() == [250, 250, 250, 0]  # opaque, clear: as is
    assert abs(int(out[0, 1, 0]) - 127) <= 1 and out[0, 1, 3] == 128
    shown = alpha[0, 1] / 255 * out[0, 1, :3].astype(float) + (1 - alpha[0, 1] / 255) * 255
    assert np.abs(shown - 191).max() <= 0.5
    deep = with_alpha(translated.astype(np.uint16) * 257, alpha)  # 16 bits: the same, at 16 bits
    assert abs(int(deep[0, 1, 0]) - 127 * 257) <= 257 and deep[0, 1, 3] == 128 * 257


def test_decode_full_keeps_8_bit_alpha_and_gives_the_network_decode_images_pixels(tmp_path):
    rgba, alphas = make_transparent_images(tmp_path, 16, 20, seed=1)
    for name in ("rgba.png", "la.png", "palette.png", "rgb.png"):
        decoded = decode_full(tmp_path / name, 3)
        assert torch.equal(decoded.pixels, decode_image(tmp_path / name, 3)), name  # onto white, uint8
        assert decoded.bits == 8
    for stem, alpha in alphas.items():  # the palette's: its transparent index
        assert np.array_equal(decode_full(tmp_path / f"{stem}.png", 3).alpha, alpha), stem
    assert decode_full(tmp_path / "rgb.png", 3).alpha is None
    from_pil = pil_to_decoded(Image.fromarray(rgba), 3)
    assert np.array_equal(from_pil.alpha, rgba[..., 3]) and torch.equal(from_pil.pixels, decode_image(tmp_path / "rgba.png", 3))


def test_decode_full_turns_alpha_upright_with_the_pixels(tmp_path):
    rgba = np.zeros((10, 16, 4), np.uint8)
    rgba[..., 3] = np.arange(16, dtype=np.uint8)[None, :] * 16  # alpha grows to the right
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    Image.fromarray(rgba).save(tmp_path / "o.webp", exif=exif, lossless=True)
    decoded = decode_full(tmp_path / "o.webp", 3)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.webp")))
    assert decoded.pixels.shape == (3, 16, 10) and np.array_equal(decoded.alpha, upright[..., 3])


def test_decode_full_keeps_16_bits(tmp_path):
    yy, xx = np.mgrid[0:16, 0:20]
    rgba = np.stack([xx * 3001, yy * 4001, (xx + yy) * 1001, 65535 - xx * 3000], -1).astype(np.uint16)
    (tmp_path / "rgba16.png").write_bytes(encode_png16(rgba))
    decoded = decode_full(tmp_path / "rgba16.png", 3)
    assert decoded.bits == 16 and decoded.pixels.dtype == torch.uint16
    assert np.array_equal(decoded.alpha, rgba[..., 3])  # 16-bit alpha, unchanged
    weight = rgba[..., 3:] / 65535
    over_white = (rgba[..., :3] * weight + 65535 * (1 - weight)).transpose(2, 0, 1)
    assert np.abs(decoded.pixels.numpy() - over_white).max() <= 0.5 + 1e-3  # 16-bit levels, not 8-bit ones
    assert torch.equal((decoded.pixels.float() / 257).round().to(torch.uint8), decode_image(tmp_path / "rgba16.png", 3))
    (tmp_path / "rgb16.png").write_bytes(encode_png16(rgba[..., :3]))
    assert np.array_equal(decode_full(tmp_path / "rgb16.png", 3).pixels.permute(1, 2, 0).numpy(), rgba[..., :3])  # exact

    grey = (xx * 3001 + yy).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    Image.fromarray(grey).save(tmp_path / "g16.tif")
    for name in ("g16.png", "g16.tif"):
        decoded = decode_full(tmp_path / name, 3)
        assert decoded.bits == 16 and decoded.alpha is None, name
        assert np.array_equal(decoded.pixels[1].numpy(), grey), name

    (tmp_path / "rgb16.tif").write_bytes(encode_tiff16(rgba[..., :3]))
    decoded = decode_full(tmp_path / "rgb16.tif", 3)  # Pillow reads it as 8-bit RGB: still a 16-bit file
    assert decoded.bits == 16 and decoded.pixels.dtype == torch.uint8
    Image.fromarray(grey.astype(np.uint8)).save(tmp_path / "g8.png")
    assert decode_full(tmp_path / "g8.png", 3).bits == 8



def _zlib_level_class(png: bytes) -> int:
    """FLEVEL of the PNG's zlib stream (0 fastest, 1 fast, 2 default = level 6, 3 best)."""
    pos = 8
    while True:
        length = int.from_bytes(png[pos:pos + 4], "big")
        if png[pos + 4:pos + 8] == b"IDAT":
            return png[pos + 9] >> 6  # the stream's second byte, FLG
        pos += 12 + length


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_pngs_are_written_at_the_fast_zlib_level_and_lose_nothing(dtype, tmp_path):
    """Translate's PNGs, 8- and 16-bit, are deflated at zlib level 3 ('fast'), not Pillow's
    default 6: writing bounds translation to PNG beside a GPU. The pixels come back exactly."""
    rng = np.random.default_rng(0)
    top = 255 if dtype == np.uint8 else 65535
    pixels = (np.linspace(0, top, 48)[None, :, None] * np.ones((40, 1, 3))).astype(dtype)
    pixels[::3] = rng.integers(0, top, (14, 48, 3), dtype=dtype)
    save_image(pixels, tmp_path / "out.png", "png")
    assert _zlib_level_class((tmp_path / "out.png").read_bytes()) == 1
    back = decode_full(tmp_path / "out.png", 3).pixels.permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(back, pixels)


def test_a_png_whose_pixel_stream_is_damaged_is_unreadable_not_half_decoded(tmp_path):
    """Reading the EXIF orientation made Pillow decode the pixels; its error was taken for a
    damaged EXIF block, and the half-decoded pixels were trained on and translated silently."""
    from i2i.data.decode import UnreadableImageError, probe_size

    pixels = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[data.find(b"IDAT") + 20] ^= 0xFF  # one flipped byte in the compressed pixels
    path = tmp_path / "damaged.png"
    path.write_bytes(bytes(data))
    assert probe_size(path) == (32, 32)  # the header scan reads no pixels
    with pytest.raises(UnreadableImageError, match="damaged.png: cannot decode this image"):
        decode_image(path, 3)


def test_unreadable_files_say_why_in_one_wording(tmp_path):
    """A truncated file was 'Truncated File Read' or 'image file is truncated (215 bytes not
    processed)' depending on where it ended; a link whose target moved was 'no such file'."""
    import os

    from i2i.data.decode import UnreadableImageError

    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)).save(buffer, format="JPEG")
    for cut in (len(buffer.getvalue()) // 2, len(buffer.getvalue()) - 2):
        (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:cut])
        with pytest.raises(UnreadableImageError) as info:
            decode_image(tmp_path / "cut.jpg", 3)
        assert info.value.reason == "truncated (the file ends before its image data does)"
    os.symlink("moved_away.png", tmp_path / "link.png")
    with pytest.raises(UnreadableImageError) as info:
        decode_image(tmp_path / "link.png", 3)
    assert info.value.reason == "a link to moved_away.png, which is gone"


def test_a_grey_scan_with_a_grey_profile_is_read_through_it(tmp_path):
    """Greyscale scans embed a grey profile (Photoshop's "Gray Gamma 2.2", "Dot Gain 20%"): it was
    ignored, so a colourised scan came out darker than any colour-managed viewer shows it."""
    from PIL import ImageCms

    from helpers import grey_icc_profile

    profile = grey_icc_profile(1.8)
    grey = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), "L")
    grey.save(tmp_path / "scan.png", icc_profile=profile)
    viewed = ImageCms.profileToProfile(grey, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                       ImageCms.createProfile("sRGB"), outputMode="RGB")
    expected = torch.from_numpy(np.array(viewed)).permute(2, 0, 1)
    assert not torch.equal(expected[0], torch.from_numpy(np.array(grey)))  # the profile moves the levels
    assert torch.equal(decode_image(tmp_path / "scan.png", 3), expected)
    # with an alpha channel: the grey through the profile, the alpha as it was
    alpha = Image.fromarray(np.full((16, 16), 200, dtype=np.uint8), "L")
    Image.merge("LA", (grey, alpha)).save(tmp_path / "scan_la.png", icc_profile=profile)
    decoded = decode_full(tmp_path / "scan_la.png", 3)
    assert decoded.alpha is not None and int(decoded.alpha.min()) == int(decoded.alpha.max()) == 200
    opaque = tmp_path / "plain.png"
    grey.save(opaque)  # without a profile: the values as stored
    assert torch.equal(decode_image(opaque, 3)[0], torch.from_numpy(np.array(grey)))
