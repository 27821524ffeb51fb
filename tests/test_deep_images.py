"""Images deeper than 8 bits per channel are trained on and scored at 16 bits, not rounded to 8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.data import ImageData, decode_image
from i2i.data.decode import fit_image, looks_grey, probe_image

from test_data import CPU, data_cfg, noise_rgb, write_png16


def fine_ramp(height: int = 16, width: int = 16, seed: int = 0) -> np.ndarray:
    """16-bit RGB values that 8 bits cannot tell apart: all within two 8-bit levels of
    mid-grey, yet every value differs, and some are above 32767 (int16's top)."""
    rng = np.random.default_rng(seed)
    return (32768 - 200 + rng.integers(0, 400, (height, width, 3))).astype(np.uint16)


def deep_folder(folder: Path, count: int = 2) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [fine_ramp(seed=i) for i in range(count)]
    for i, array in enumerate(arrays):
        write_png16(folder / f"deep_{i}.png", array)
    return arrays


def test_deep_files_are_read_at_16_bits_and_8_bit_files_scaled_exactly(tmp_path):
    [array] = deep_folder(tmp_path / "deep", 1)
    deep = decode_image(tmp_path / "deep" / "deep_0.png", 3, deep=True)
    assert deep.dtype == torch.uint16
    assert torch.equal(deep.to(torch.int32), torch.from_numpy(array.astype(np.int32)).permute(2, 0, 1))
    Image.fromarray(noise_rgb(8, 8)).save(tmp_path / "plain.png")
    plain = decode_image(tmp_path / "plain.png", 3)
    assert torch.equal(decode_image(tmp_path / "plain.png", 3, deep=True).to(torch.int32), plain.to(torch.int32) * 257)
    assert probe_image(tmp_path / "deep" / "deep_0.png")[2] and not probe_image(tmp_path / "plain.png")[2]
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(grey16)
    assert probe_image(grey16)[2]
    assert int(decode_image(grey16, 1, deep=True).to(torch.int32).max()) == 1000


@pytest.mark.parametrize("cache_gb,workers", [(4.0, 0), (0.0, 0), (0.0, 1)])
def test_training_batches_keep_16_bit_precision_cached_or_streamed(tmp_path, cache_gb, workers):
    arrays = deep_folder(tmp_path)
    data = ImageData(data_cfg(tmp_path, cache_gb=cache_gb, workers=workers, flip=False), channels=3, device=CPU, seed=0)
    assert data.cached == (cache_gb > 0)
    batch = data.next_batch(2)  # 16 px crops of 16 px images, no flips: the images themselves
    expected = {tuple(torch.from_numpy(a.astype(np.float32) / 65535).permute(2, 0, 1).flatten().tolist()) for a in arrays}
    assert {tuple(image.flatten().tolist()) for image in batch} == expected
    assert batch.unique().numel() > 100  # at 8 bits these would be two or three values
    data.close()


def test_flips_and_turns_of_16_bit_crops_match_between_cache_and_stream(tmp_path):
    deep_folder(tmp_path, 3)
    cfg = data_cfg(tmp_path, rotate=True, size=8)
    cached = ImageData(cfg, channels=3, device=CPU, seed=5)
    streamed = ImageData({**cfg, "cache_gb": 0.0}, channels=3, device=CPU, seed=5)
    for _ in range(3):
        a, b = cached.next_batch(4), streamed.next_batch(4)
        assert torch.equal(a, b) and a.min() > 0.49 and a.max() < 0.51


def test_a_mixed_folder_gives_8_bit_images_the_values_an_8_bit_folder_does(tmp_path):
    plain = noise_rgb(16, 16)
    Image.fromarray(plain).save(tmp_path / "a_plain.png")
    only_plain = ImageData(data_cfg(tmp_path, flip=False), channels=3, device=CPU, seed=0).next_batch(1)
    deep_folder(tmp_path, 1)
    mixed = ImageData(data_cfg(tmp_path, flip=False), channels=3, device=CPU, seed=0)
    batch = mixed.next_batch(2)
    assert any(torch.equal(image, only_plain[0]) for image in batch)


def test_validation_batches_score_16_bit_files_at_16_bits(tmp_path):
    [array] = deep_folder(tmp_path / "val", 1)
    Image.fromarray(noise_rgb(16, 16)).save(tmp_path / "train.png")
    data = ImageData(data_cfg(tmp_path, val_source=str(tmp_path / "val")),
                     channels=3, device=CPU, seed=0)
    [(batch, names)] = list(data.val_batches(0, 4))
    assert names == ["deep_0.png"]
    assert torch.equal(batch[0], torch.from_numpy(array.astype(np.float32) / 65535).permute(2, 0, 1))


def test_a_16_bit_set_needs_twice_the_cache(tmp_path):
    deep_folder(tmp_path, 2)  # 2 images x 3 x 16 x 16 values: 1536 values, 3072 bytes at 16 bits
    assert ImageData(data_cfg(tmp_path, cache_gb=3072e-9), channels=3, device=CPU, seed=0).cached
    assert not ImageData(data_cfg(tmp_path, cache_gb=3071e-9), channels=3, device=CPU, seed=0).cached


def test_training_on_16_bit_images_is_said_naming_one(tmp_path, capsys):
    deep_folder(tmp_path, 2)
    ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0)
    err = capsys.readouterr().err
    assert (f"2 of the 2 images have more than 8 bits per channel (e.g. {tmp_path / 'deep_0.png'}), so the training "
            "images are read at 16 bits, taking two bytes per value in memory") in err
    # a deep validation folder alone: training stays at 8 bits, only the scoring is at 16
    Image.fromarray(noise_rgb(16, 16)).save(tmp_path.parent / f"{tmp_path.name}_plain.png")
    train = tmp_path.parent / f"{tmp_path.name}_train"
    train.mkdir()
    (tmp_path.parent / f"{tmp_path.name}_plain.png").rename(train / "plain.png")
    ImageData(data_cfg(train, val_source=str(tmp_path)), channels=3, device=CPU, seed=0)
    assert "so the validation images are scored at 16 bits" in capsys.readouterr().err
    Image.fromarray(noise_rgb(16, 16)).save(tmp_path / "plain.png")
    for path in tmp_path.glob("deep_*"):
        path.unlink()
    ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0)
    assert "8 bits" not in capsys.readouterr().err


def test_resizing_and_grey_detection_work_on_16_bit_images():
    image = torch.full((3, 20, 20), 40000, dtype=torch.int32).to(torch.uint16)
    small = fit_image(image, size=8, resize=10)
    assert small.dtype == torch.uint16 and small.shape == (3, 10, 10) and int(small.to(torch.int32).min()) == 40000
    assert looks_grey(image)
    tinted = image.to(torch.int32)
    tinted[0] += 6 * 257 + 1  # more than six 8-bit levels apart, everywhere
    assert not looks_grey(tinted.to(torch.uint16))


def test_the_deep_images_note_counts_only_images_that_decode(tmp_path, capsys):
    """A 16-bit file whose header read but whose pixels did not was counted: '3 of 3 images have
    more than 8 bits' beside the warning that one of them could not be read."""
    deep_folder(tmp_path, 3)
    cut = tmp_path / "deep_2.png"
    cut.write_bytes(cut.read_bytes()[:120])  # header fine, pixels cut short
    ImageData(data_cfg(tmp_path), channels=3, device=CPU, seed=0)
    err = capsys.readouterr().err
    assert "deep_2.png" in err and "2 of the 2 images have more than 8 bits per channel" in err


def test_a_16_bit_image_in_the_pair_folder_is_the_one_named(tmp_path, capsys):
    """With 8-bit A images and 16-bit B ones, the note named the A file for B's depth."""
    deep_folder(tmp_path / "B", 2)
    (tmp_path / "A").mkdir()
    for i in range(2):
        Image.fromarray(noise_rgb(16, 16, seed=i)).save(tmp_path / "A" / f"deep_{i}.png")
    ImageData(data_cfg(tmp_path / "A", pair_source=str(tmp_path / "B")), channels=3, device=CPU, seed=0,
              side_by_side=True)
    assert f"(e.g. {tmp_path / 'B' / 'deep_0.png'})" in capsys.readouterr().err
