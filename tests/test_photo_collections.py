"""Photo folders as users have them, which once trained on the wrong files, lost transparency,
darkened an image or ended in a traceback (found by pointing i2i at such folders)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import i2i
from helpers import TINY_G2C, make_photos, tiny_recipe
from i2i.data.decode import decode_full
from i2i.data.pipeline import ImageData
from i2i.recipe import SCHEMA
from i2i.translate import translate_files

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), count=4, size=(24, 24))


@pytest.fixture(scope="module")
def model(photos, tmp_path_factory):
    run = i2i.train(tiny_recipe(photos, tmp_path_factory.mktemp("runs") / "run", base=TINY_G2C), quiet=True)
    return i2i.load(run.run_dir)


def test_a_run_folder_inside_the_photo_folder_is_not_trained_on(tmp_path, capsys):
    """With data.source = "." a run's sample grids became the next run's training photos."""
    photos = make_photos(tmp_path / "photos", count=4, size=(24, 24))
    first = i2i.train(tiny_recipe(photos, photos / "runs" / "first", base=TINY_G2C, data={"val_fraction": 0.0},
                                  output={"sample_every": 1}), quiet=True)
    assert list((first.run_dir / "samples").glob("*.png"))  # grids a folder walk would find
    capsys.readouterr()
    second = i2i.train(tiny_recipe(photos, tmp_path / "second", base=TINY_G2C, data={"val_fraction": 0.0}), quiet=True)
    trained_on = json.loads((second.run_dir / "split.json").read_text())["train"]
    assert sorted(trained_on) == [f"photo_{i}.png" for i in range(4)]
    assert "1 i2i run or output folder(s) inside it not searched" in capsys.readouterr().err


def test_translate_leaves_run_folders_inside_its_input_alone(model, photos, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(photos / "photo_0.png").save(folder / "a.png")
    run = folder / "runs" / "x"
    (run / "samples").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "recipe.toml").write_text("")
    Image.open(photos / "photo_1.png").save(run / "samples" / "step_1.png")
    report = translate_files(model, folder, tmp_path / "out", progress=False)
    assert [p.name for p in report.outputs] == ["a.png"]
    assert "runs/x" in capsys.readouterr().err


def test_translating_a_folder_again_leaves_out_an_earlier_translation_inside_it(model, photos, tmp_path, capsys):
    """photos/out1 from a first translation became inputs of the second (photos/out2/out1/...),
    and training on photos/ trained on them too."""
    from i2i.data.sources import OUTPUTS_MARKER

    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(photos / "photo_0.png").save(folder / "a.jpg")
    first = translate_files(model, folder, folder / "out1", progress=False)
    assert (folder / "out1" / OUTPUTS_MARKER).is_file()
    second = translate_files(model, folder, folder / "out2", progress=False)
    assert [p.relative_to(folder) for p in (*first.outputs, *second.outputs)] == [Path("out1/a.png"), Path("out2/a.png")]
    assert f"{folder}: 1 i2i run or output folder(s) inside it not searched ({folder / 'out1'})" in capsys.readouterr().err
    # PNGs beside the JPEGs they came from would be trained on and scored as photos: refused
    with pytest.raises(i2i.UserError, match="it holds images being translated"):
        translate_files(model, folder, folder, progress=False)
    assert not (folder / "a.png").exists() and not (folder / OUTPUTS_MARKER).exists()
    # and a run on the folder trains on its photos alone
    run = i2i.train(tiny_recipe(folder, tmp_path / "run", base=TINY_G2C, data={"val_fraction": 0.0}), quiet=True)
    assert sorted(json.loads((run.run_dir / "split.json").read_text())["train"]) == ["a.jpg"]


def test_a_training_folder_inside_the_validation_folder_is_warned_about(photos, tmp_path, capsys):
    """Every training photo was also scored as a validation photo, without a word."""
    parent = tmp_path / "all"
    make_photos(parent / "train", count=3, size=(24, 24))
    make_photos(parent / "val", count=1, size=(24, 24), seed=5)
    recipe = tiny_recipe(parent / "train", tmp_path / "run", base=TINY_G2C, data={"val_source": str(parent)},
                         train={"steps": 1})
    i2i.train(recipe, quiet=True)
    assert 'is inside data.val_source' in capsys.readouterr().err


def test_a_float_image_overshooting_1_is_read_as_0_to_1_not_as_0_to_255(tmp_path):
    """A single pixel at 1.0001 turned the whole image nearly black."""
    values = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (8, 1))
    values[0, 0] = 1.0001
    Image.fromarray(values, "F").save(tmp_path / "overshoot.tif")
    decoded = decode_full(tmp_path / "overshoot.tif", 1)
    assert decoded.pixels.dtype == torch.uint16
    expected = np.clip(values, 0, 1) * 65535
    assert np.abs(decoded.pixels[0].numpy().astype(np.float64) - expected).max() <= 257  # within an 8-bit level
    bright = values * 255  # a 0-255 float image overshooting 255 the same way: not taken for 16-bit
    Image.fromarray(bright, "F").save(tmp_path / "bright.tif")
    assert np.abs(decode_full(tmp_path / "bright.tif", 1).pixels[0].numpy() - expected).max() <= 257


@pytest.mark.parametrize("mode, key", [("RGB", (0, 0, 0)), ("L", 0)])
def test_a_png_colour_key_is_transparency(model, tmp_path, mode, key):
    """PNG optimisers store a binary alpha as a transparent colour (tRNS); it was read as black."""
    rgb = np.full((16, 16, 3), 180, np.uint8)
    rgb[:8] = 0
    Image.fromarray(rgb if mode == "RGB" else rgb[..., 0]).save(tmp_path / "key.png", transparency=key)
    decoded = decode_full(tmp_path / "key.png", 3)
    assert decoded.pixels[:, 0, 0].tolist() == [255, 255, 255]  # composited onto white, as viewers show it
    assert decoded.pixels[:, 15, 15].tolist() == [180, 180, 180]
    assert decoded.alpha[0, 0] == 0 and decoded.alpha[15, 15] == 255
    out = translate_files(model, tmp_path / "key.png", tmp_path / "out", progress=False).outputs[0]
    written = Image.open(out)
    assert written.mode == "RGBA" and np.array_equal(np.asarray(written)[..., 3], np.where(rgb[..., 0] == 0, 0, 255))


def test_streamed_training_on_files_that_never_decode_is_one_line(tmp_path):
    """The scan reads headers only; truncated files passed it and ended in a worker's traceback."""
    folder = make_photos(tmp_path / "photos", count=3, size=(24, 24))
    for path in folder.iterdir():
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    cfg = {key: field.default for key, field in SCHEMA["data"].items()}
    cfg.update(source=str(folder), size=16, workers=0, val_fraction=0.0, cache_gb=0.0)
    data = ImageData(cfg, channels=3, device=CPU, seed=0)
    assert not data.cached
    with pytest.raises(i2i.UserError, match=r"photo_0.png: none of the training images can be decoded \(3 tried; "
                                            r"this one: .*truncated"):
        data.next_batch(2)
    with pytest.raises(i2i.UserError, match="none of the training images can be decoded"):
        data.preview_batch(2)


def test_streamed_sample_grids_without_validation_images(photos, tmp_path):
    """The preview batch (sample grids of a run without validation images) failed when streamed."""
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, data={"val_fraction": 0.0, "cache_gb": 0.0},
                         train={"steps": 2}, output={"sample_every": 1})
    run = i2i.train(recipe, quiet=True)
    assert list((run.run_dir / "samples").glob("*.png"))


def test_a_photo_and_a_link_to_it_translate_once_under_the_photos_name(model, photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(photos / "photo_0.png").save(folder / "photo.png")
    os.symlink("photo.png", folder / "best_of_2024.png")  # sorts first
    report = translate_files(model, folder, tmp_path / "out", progress=False)
    assert [p.name for p in report.outputs] == ["photo.png"]


def test_a_linked_folder_is_read_under_its_own_name_and_a_link_to_an_ancestor_is_no_loop_in(tmp_path):
    """A link sorting before its target (link_to_sub) named the target's files after it, and a
    link back to the collection pulled the whole collection into a subfolder's evaluation."""
    from i2i.data.sources import find_images

    photos = tmp_path / "photos"
    (photos / "sub" / "deeper").mkdir(parents=True)
    for name in ("a.png", "sub/b.png", "sub/deeper/c.png"):
        Image.new("RGB", (8, 8)).save(photos / name)
    os.symlink("sub", photos / "link_to_sub")
    os.symlink("../../../photos", photos / "sub" / "deeper" / "loop")
    (tmp_path / "elsewhere").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "elsewhere" / "e.png")
    os.symlink("../elsewhere", photos / "linked")  # a folder outside: followed, once
    found = [p.relative_to(photos).as_posix() for p in find_images(photos)]
    assert found == ["a.png", "linked/e.png", "sub/b.png", "sub/deeper/c.png"]
    assert [p.name for p in find_images(photos / "sub")] == ["b.png", "c.png"]


@pytest.mark.parametrize("generator", [{"name": "resnet", "blocks": 1, "width": 4},
                                       {"name": "dncnn", "depth": 3, "width": 4, "norm": "instance", "residual": False}])
def test_images_of_a_few_pixels_translate_with_every_network(photos, tmp_path, generator):
    """A ResNet's quarter-scale reflection padding, or instance norm over one pixel, failed part
    way through a folder on a 1 x 1 icon or a 3 px strip."""
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, generator=None, train={"steps": 1})
    recipe["generator"] = generator
    model = i2i.load(i2i.train(recipe, quiet=True).run_dir)
    folder = tmp_path / "in"
    folder.mkdir()
    for name, size in {"icon": (1, 1), "strip": (200, 3), "odd": (37, 5)}.items():
        Image.new("RGB", size, (90, 120, 30)).save(folder / f"{name}.png")
    report = translate_files(model, folder, tmp_path / "out", progress=False)
    assert {p.stem: Image.open(p).size for p in report.outputs} == {"icon": (1, 1), "strip": (200, 3), "odd": (37, 5)}


def test_translate_files_checks_its_arguments(model, photos, tmp_path):
    """A misspelt format was a KeyError in a writer thread after the network ran; batch size 0 passed."""
    with pytest.raises(ValueError, match=r"fmt = 'gif': expected one of 'png', 'jpg', 'webp', 'tif'"):
        translate_files(model, photos, tmp_path / "a", fmt="gif", progress=False)
    with pytest.raises(ValueError, match="batch_size = 0: expected a whole number of images, 1 or more"):
        translate_files(model, photos, tmp_path / "b", batch_size=0, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    written = translate_files(model, photos / "photo_0.png", tmp_path / "c", fmt="JPEG", progress=False).outputs
    assert [p.name for p in written] == ["photo_0.jpg"]


def test_a_channels_last_tensor_gets_a_hint(model):
    with pytest.raises(ValueError, match=r"takes channels first, \[3, H, W\], got shape \[20, 24, 3\].*permute\(2, 0, 1\)"):
        model(torch.rand(20, 24, 3))


def test_a_file_name_with_a_newline_is_written_escaped_in_a_one_line_warning(model, photos, tmp_path, capsys):
    """'evil\\nname.jpg' broke the skipped-files warning in two lines; a crafted name could
    print a line of its own that looked like i2i's ('i2i: error: ...')."""
    import shutil

    folder = tmp_path / "in"
    shutil.copytree(photos, folder)
    (folder / "evil\ni2i: error: name.jpg").write_bytes(b"not an image")
    report = translate_files(model, folder, tmp_path / "out", progress=False)
    assert report.written == len(list(photos.iterdir()))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evil\\ni2i: error: name.jpg" in err and err.startswith("i2i: warning: skipped 1")


def test_a_folder_of_many_animations_names_five_and_counts_the_rest(model, tmp_path, capsys, monkeypatch):
    """The first-frame notes stopped after five files with no count: 40 animations and 40
    multi-page TIFFs read as if 5 files had several frames. Each kind is named and counted apart."""
    import i2i.data.decode as decode

    monkeypatch.setattr(decode, "_remarked", {})
    monkeypatch.setattr(decode, "_left_out", {})
    frames = [Image.fromarray(np.full((16, 16, 3), value, np.uint8)) for value in (10, 250)]
    (tmp_path / "in").mkdir()
    for i in range(8):
        frames[0].save(tmp_path / "in" / f"a{i}.webp", save_all=True, append_images=frames[1:], lossless=True)
    nan = np.full((16, 16), np.nan, np.float32)
    for i in range(6):
        Image.fromarray(nan).save(tmp_path / "in" / f"f{i}.tif")
    assert translate_files(model, tmp_path / "in", tmp_path / "out", progress=False).written == 14
    lines = capsys.readouterr().err.splitlines()
    assert sum("frames; only the first is read" in line for line in lines) == 5
    assert sum(".tif: 32-bit pixels" in line for line in lines) == 5
    assert "i2i: note: 3 more file(s) hold several frames or pages; only the first of each is read" in lines
    assert any(line.startswith("i2i: warning: 1 more file(s) hold 32-bit pixels") for line in lines)


def test_scoring_a_colouriser_on_grey_photos_is_warned_about(model, photos, tmp_path, capsys):
    """i2i eval of gray2color on a folder of grey photos printed 99 dB for the grey copy and
    exit 0, without a word: the scores of grey targets say nothing of colouring."""
    import shutil

    from i2i.evaluation import evaluate_run

    folder = tmp_path / "mixed"
    shutil.copytree(photos, folder)
    Image.open(next(iter(sorted(photos.iterdir())))).convert("L").convert("RGB").save(folder / "old_photo.png")
    run_dir = model.checkpoint.parent.parent
    evaluate_run(run_dir, data_dir=folder, crop=0)
    assert ("i2i: warning: 1 of 5 scored images show no colour (old_photo.png), and task 'gray2color' is scored on its "
            "output's colours against theirs") in capsys.readouterr().err
    evaluate_run(run_dir, data_dir=photos, crop=0)
    assert "show no colour" not in capsys.readouterr().err
