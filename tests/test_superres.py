"""The super-resolution task: its degradation, and translations larger than their inputs."""

import re

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import i2i
from helpers import make_photos, tiny_recipe

TINY_SR = {
    "task": {"name": "superres", "scale": 2},
    "data": {"size": 16, "val_fraction": 0.34},
    "generator": {"name": "unet", "depth": 2, "width": 4, "norm": "none", "output": "identity"},
    "losses": {"l1": {}},
    "train": {"steps": 2, "batch_size": 2, "device": "cpu"},
    "eval": {"crop": 0},
    "output": {"tensorboard": False, "progress": "none"},
}


def superres(**options):
    return i2i.registry().build("tasks", "superres", **options)


def as_unit_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_its_low_resolution_images_are_pillows_bicubic_shrink(tmp_path, scale):
    """The benchmarks' low-resolution images are the photo shrunk with bicubic and antialiasing,
    saved on 8 bits: Pillow's BICUBIC (MATLAB's imresize up to rounding)."""
    from i2i_builtin_tasks.superres import shrunk

    photo = Image.open(make_photos(tmp_path, count=1, size=(48, 36)) / "photo_0.png")
    ours = shrunk(as_unit_tensor(photo), scale)
    pillows = as_unit_tensor(photo.resize((48 // scale, 36 // scale), Image.BICUBIC))
    assert ours.shape == pillows.shape
    assert (ours - pillows).abs().max() <= 1.01 / 255  # a level of rounding at most
    assert (ours * 255 - (ours * 255).round()).abs().max() < 1e-4  # 8-bit levels, as an image file holds them


def test_a_narrow_image_shrinks_to_a_column_as_pillow_shrinks_it(tmp_path):
    """torch's antialiased resize to one column repeats its first row: a 48 x 4 image shrunk
    4 times came out one flat grey column, and scored 8 dB."""
    from i2i_builtin_tasks.superres import shrunk

    photo = Image.open(make_photos(tmp_path, count=1, size=(4, 48)) / "photo_0.png")
    ours = shrunk(as_unit_tensor(photo), 4)
    pillows = as_unit_tensor(photo.resize((1, 12), Image.BICUBIC))
    assert ours.shape == pillows.shape == (1, 3, 12, 1)
    assert (ours - pillows).abs().max() <= 1.01 / 255


def test_images_are_scored_cut_to_a_multiple_of_the_scale_as_the_benchmarks_modcrop(tmp_path):
    """SR tables score the photo cut down to a multiple of the scale (the rows the shrink could
    not use are not scored): a 26 x 22 photo at 3x scores as its top-left 24 x 21."""
    from i2i.evaluation import evaluate_run

    photos = make_photos(tmp_path / "photos", count=3, size=(24, 24))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_SR, data={"size": 12})
    recipe["task"]["scale"] = 3
    run = i2i.train(recipe, quiet=True)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    cut.mkdir()
    photo = Image.open(make_photos(whole, count=1, size=(22, 26)) / "photo_0.png")
    photo.crop((0, 0, 21, 24)).save(cut / "photo_0.png")
    scored = [evaluate_run(run.run_dir, data_dir=folder, crop=0) for folder in (whole, cut)]
    assert scored[0]["metrics"] == pytest.approx(scored[1]["metrics"], abs=1e-5)
    assert scored[0]["baselines"]["bicubic"] == pytest.approx(scored[1]["baselines"]["bicubic"], abs=1e-5)


def test_on_the_sample_photos_its_shrink_is_pillows_as_the_readme_says():
    """The README's figures: within one level but for at most 0.09 % of the pixels, which are
    at most 7 levels apart."""
    from i2i_builtin_tasks.superres import shrunk

    samples = Path(i2i.__file__).parent / "data" / "samples"
    photos = sorted(p for p in samples.iterdir() if p.suffix in (".png", ".jpg"))
    assert len(photos) == 6
    for path in photos:
        whole = Image.open(path).convert("RGB")
        for scale in (2, 3, 4):
            size = (whole.width // scale, whole.height // scale)
            photo = whole.crop((0, 0, size[0] * scale, size[1] * scale))  # as a crop of a multiple of the scale
            apart = (shrunk(as_unit_tensor(photo), scale) - as_unit_tensor(photo.resize(size, Image.BICUBIC))).abs() * 255
            assert (apart > 1.01).float().mean() <= 0.0009 and apart.max() <= 7.01, (path.name, scale)


def test_pairs_keep_the_photos_size_whatever_its_sides():
    """Including sides shorter than the scale: a 1 x 1 icon among the validation photos stopped
    a run at its first evaluation, after all its training."""
    for size in ((1, 1), (3, 2), (2, 7)):
        input, target = superres(scale=3).make_pair(torch.rand(1, 3, *size))
        assert input.shape == target.shape == (1, 3, *size)
    task = superres(scale=4)
    clean = torch.rand(2, 3, 18, 23)
    input, target = task.make_pair(clean)
    assert input.shape == target.shape == clean.shape and torch.equal(target, clean * 2 - 1)
    # the 2 rows and 3 columns beyond the last multiple of 4 repeat the last one the enlargement made
    assert torch.equal(input[..., 16:, :], input[..., 15:16, :].expand(-1, -1, 2, -1))
    assert torch.equal(input[..., :, 20:], input[..., :, 19:20].expand(-1, -1, -1, 3))
    grey = superres(scale=2, channels=1)
    assert grey.make_pair(torch.rand(1, 1, 8, 8))[0].shape == (1, 1, 8, 8) and grey.image_channels == 1


def test_prepare_enlarges_a_users_image_by_the_scale():
    task = superres(scale=3)
    assert task.output_scale == 3 and task.prepare(torch.rand(2, 3, 10, 7)).shape == (2, 3, 30, 21)
    assert superres(scale=2, channels=1).prepare(torch.rand(1, 3, 5, 6)).shape == (1, 1, 10, 12)


@pytest.mark.parametrize("options, message", [
    ({"scale": 5}, r"task.scale = 5: expected 2 \| 3 \| 4 \| 8"),
    ({"scale": True}, r"task.scale = True: expected 2 \| 3 \| 4 \| 8"),
    ({"channels": 2}, r"task.channels = 2: expected 1 \| 3"),
])
def test_bad_options_are_recipe_errors(options, message):
    with pytest.raises(i2i.RecipeError, match=message):
        superres(**options)


def test_a_trained_upscaler_scores_against_bicubic_and_translates_images_larger(tmp_path):
    """Training, evaluation against the bicubic baseline, and translations twice the size of
    their inputs: files (alpha channel enlarged alike), PIL images and tensors."""
    from i2i.translate import translate_files

    photos = make_photos(tmp_path / "photos", count=3, size=(24, 20))
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", base=TINY_SR), quiet=True)
    assert "bicubic" in run.baselines and "psnr" in run.baselines["bicubic"]
    model = i2i.load(run.run_dir)
    assert model(torch.rand(2, 3, 9, 11)).shape == (2, 3, 18, 22)
    # the bare generator takes the task's enlarged input, as the README says: model() is all three
    images = torch.rand(2, 3, 8, 12)
    net_input = model.task.prepare(images)
    assert net_input.shape == (2, 3, 16, 24) and model.generator(images).shape == (2, 3, 8, 12)
    with torch.no_grad():
        by_hand = model.task.to_image(model.generator(net_input), net_input)
    torch.testing.assert_close(by_hand, model(images), atol=1e-5, rtol=0)

    inputs = tmp_path / "small"
    inputs.mkdir()
    Image.new("RGBA", (10, 7), (200, 30, 60, 128)).save(inputs / "logo.png")
    Image.open(photos / "photo_0.png").save(inputs / "photo.jpg")
    report = translate_files(model, inputs, tmp_path / "out", progress=False)
    assert report.written == 2
    logo = Image.open(tmp_path / "out" / "logo.png")
    assert (logo.mode, logo.size) == ("RGBA", (20, 14)) and np.all(np.asarray(logo)[..., 3] == 128)
    assert Image.open(tmp_path / "out" / "photo.png").size == (48, 40)
    assert model.translate(Image.open(inputs / "logo.png")).size == (20, 14)

    # a crop that psnr_y_x2 would score whole (its border is the scale) is refused, as in a recipe
    from i2i.evaluation import evaluate_run

    with pytest.raises(i2i.UserError, match=r"^crop 8: metric 'psnr_y_x4' leaves out 4 px a side, so it would score "
                                            r"these crops whole; raise crop above 11 \(or 0, whole images\)$"):
        evaluate_run(run.run_dir, crop=8, overrides=["task.scale=4"])
    assert evaluate_run(run.run_dir, crop=8)["crop"] == 8  # psnr_y_x2 leaves 4 px of each 8
    # an odd crop is scored cut to the scale, as the images are; the table names what was scored
    from i2i.cli import format_table

    odd = evaluate_run(run.run_dir, crop=9)
    assert (odd["crop"], odd["scored_crop"]) == (9, 8)
    assert "centre 8 x 8 px crops (a crop of 9 cut down to a multiple of the task's scale)" in format_table(odd)


def test_a_translation_too_large_for_its_format_once_enlarged_is_refused_before_any_work(tmp_path):
    from i2i.translate import translate_files

    photos = make_photos(tmp_path / "photos", count=3, size=(24, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_SR)
    recipe["task"]["scale"] = 8
    model = i2i.load(i2i.train(recipe, quiet=True).run_dir)
    Image.new("RGB", (2100, 4), (1, 2, 3)).save(tmp_path / "strip.png")  # 16800 px once enlarged: WebP holds 16383
    with pytest.raises(i2i.UserError, match=r"strip.png: 2100 x 4 px is 16800 x 32 px once enlarged 8 times, larger "
                                            r"than webp can store \(16383 px a side\)"):
        translate_files(model, [tmp_path / "strip.png"], tmp_path / "out", fmt="webp", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_plugin_tasks_output_scale_and_prepare_must_agree():
    """prepare's size is checked against output_scale before training, so a translation is
    never written at a size the task did not declare."""
    from i2i.engine.contracts import check_prepared

    class Declares(i2i.Task):
        output_scale = 2

    images = torch.rand(1, 3, 5, 6)
    check_prepared(torch.rand(1, 3, 10, 12), images, Declares(), "task 'x'")
    with pytest.raises(i2i.PluginError, match=r"^task 'x': prepare returned a tensor of shape \[1, 3, 5, 6\] for images of "
                                              r"shape \[1, 3, 5, 6\]; expected \[1, 3, 10, 12\] \(the task's in_channels, "
                                              r"the images' batch, height and width times the task's output_scale, 2\)"):
        check_prepared(torch.rand(1, 3, 5, 6), images, Declares(), "task 'x'")
    Declares.output_scale = 1.5
    with pytest.raises(i2i.PluginError, match=r"^task 'x': output_scale = 1.5; it is how many times larger"):
        check_prepared(torch.rand(1, 3, 5, 6), images, Declares(), "task 'x'")


@pytest.mark.parametrize("scale", [0, None, "2"])
def test_a_plugin_tasks_unusable_output_scale_is_named_before_its_prepare_uses_it(tmp_path, scale):
    """A prepare that enlarges by self.output_scale failed inside torch ('Input and output sizes
    should be greater than 0') before the check that names output_scale ran."""
    import torch.nn.functional as F

    class Upscale(i2i.Task):
        output_scale = scale

        def make_pair(self, clean, generator=None):
            small = F.interpolate(clean, scale_factor=0.5, mode="area")
            return F.interpolate(small, size=clean.shape[-2:], mode="bicubic") * 2 - 1, clean * 2 - 1

        def prepare(self, image):
            return F.interpolate(image, scale_factor=self.output_scale, mode="bicubic") * 2 - 1

    plugin = type("UpscalePlugin", (), {"register_tasks": i2i.hookimpl(lambda register: register("upscale", Upscale))})
    assert i2i.register_plugin(plugin, "upscale_plugin").status == "loaded"
    recipe = tiny_recipe(make_photos(tmp_path / "photos", count=3, size=(24, 20)), tmp_path / "run", base=TINY_SR)
    recipe["task"] = {"name": "upscale"}
    with pytest.raises(i2i.PluginError, match=rf"task.name = 'upscale' \(plugin 'upscale_plugin'\): output_scale = "
                                              rf"{re.escape(repr(scale))}; it is how many times larger"):
        i2i.validate(recipe)


def test_validation_images_smaller_than_the_scale_are_scored_not_fatal(tmp_path):
    """A 1 x 1 or 3 x 2 image among the validation photos stopped the run at its first
    evaluation, after every training step, and every resume again."""
    photos = make_photos(tmp_path / "photos", count=3, size=(24, 20))
    val = make_photos(tmp_path / "val", count=1, size=(24, 20))
    Image.new("RGB", (1, 1), (90, 20, 200)).save(val / "dot.png")
    Image.new("RGB", (3, 2), (90, 20, 200)).save(val / "strip.png")
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_SR, data={"val_source": str(val)})
    recipe["task"]["scale"] = 3
    run = i2i.train(recipe, quiet=True)
    from i2i.evaluation import evaluate_run

    assert evaluate_run(run.run_dir, crop=0)["images"] == 3


def test_a_checkpoint_trained_before_a_resume_changed_the_scale_says_so_when_applied(tmp_path, capsys):
    """A 2x checkpoint translated at 4x, without a word, after a resume set task.scale = 4."""
    photos = make_photos(tmp_path / "photos", count=3, size=(24, 20))
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", base=TINY_SR), quiet=True)
    i2i.train(None, resume=run.run_dir, overrides=["task.scale=4", "train.steps=3"], quiet=True)
    capsys.readouterr()
    assert i2i.load(run.run_dir / "checkpoints" / "step_0000002")(torch.rand(1, 3, 5, 5)).shape == (1, 3, 20, 20)
    assert ("i2i: note: step_0000002 was trained with task.scale = 2, and the run's recipe.toml has since been changed "
            "(by a resume's --set, or by hand) to task.scale = 4, which it is applied with (i2i eval --set "
            "task.KEY=VALUE scores it as trained)") in capsys.readouterr().err
    i2i.load(run.run_dir)  # the resume's own checkpoint: trained at 4x, nothing to say
    assert "was trained with" not in capsys.readouterr().err
    # the task itself changed in the file: no resume does that, and no --set puts it back
    recipe = run.run_dir / "recipe.toml"
    recipe.write_text(recipe.read_text().replace('name = "superres"', 'name = "denoise"').replace("scale = 4\n", ""))
    i2i.load(run.run_dir / "checkpoints" / "step_0000002")
    assert ("and the run's recipe.toml was edited by hand since to task.name = 'denoise'" in capsys.readouterr().err)


def test_a_crop_size_the_scale_does_not_divide_gets_a_note_naming_sizes_that_fit(tmp_path, capfd):
    photos = make_photos(tmp_path / "photos", count=3, size=(40, 36))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_SR, task={"scale": 3}, data={"size": 28},
                         train={"steps": 1})
    checked = i2i.validate(recipe)
    note = "data.size = 28 is no multiple of the task's scale, 3: the shrunk input of each crop covers 27 px of its 28"
    assert any(n.startswith(note) and n.endswith("24 or 36 would use every pixel") for n in checked.notes)
    i2i.train(recipe, quiet=True)
    assert note in capfd.readouterr().err
    fitting = tiny_recipe(photos, tmp_path / "run2", base=TINY_SR, task={"scale": 3}, data={"size": 24})
    assert not any("multiple of the task's scale" in n for n in i2i.validate(fitting).notes)


def test_sizes_suggested_for_the_generator_suit_the_scale_too(tmp_path):
    photos = make_photos(tmp_path / "photos", count=3, size=(40, 36))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_SR, task={"scale": 3}, data={"size": 26})
    with pytest.raises(i2i.RecipeError, match=r"needs a multiple of 4; use 24 or 36 \(multiples of the task's scale, 3, too\)"):
        i2i.validate(recipe)
