"""What a program embedding i2i relies on: its own state left alone, clear errors for API misuse."""

import random

import numpy as np
import pytest
import torch

import i2i
from helpers import TINY_G2C, make_photos


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), count=4, size=(32, 32))


def test_train_leaves_the_callers_random_streams_and_recipe_alone(photos, tmp_path):
    recipe = i2i.load_recipe({**TINY_G2C, "data": {**TINY_G2C["data"], "source": str(photos)},
                              "train": {**TINY_G2C["train"], "steps": 2}, "output": {**TINY_G2C["output"], "dir": str(tmp_path / "run")}})
    torch.manual_seed(123)
    random.seed(123)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(123)
    random.seed(123)
    run = i2i.train(recipe, quiet=True)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    assert recipe["output"]["dir"] == str(tmp_path / "run")  # not rewritten to the run folder
    assert i2i.train(recipe, quiet=True).run_dir == tmp_path / "run-2"
    assert not run.generator.training  # evaluates as i2i.load's model does
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    i2i.load(run.run_dir)
    assert torch.equal(torch.rand(3), before)
    with pytest.raises(i2i.UserError, match="device = 'gpu': not a device i2i can use"):
        i2i.load(run.run_dir, device="gpu")
    with pytest.raises(TypeError, match=r"^device is a device name such as 'auto', 'cpu' or 'cuda:0' \(or a torch.device\), "
                                        r"not NoneType None$"):  # was a UserError quoting 'None' as if typed
        i2i.load(run.run_dir, device=None)
    assert i2i.load(run.run_dir, device=torch.device("cpu")).device == torch.device("cpu")


def test_a_plugin_beside_a_builtin_name_leaves_the_bare_name_to_i2i():
    class Mine:
        @i2i.hookimpl
        def register_losses(self, register):
            register("l1", i2i.ReconstructionLoss)

    with pytest.raises(i2i.UserError, match="plugin name 'losses' is i2i's built-in plugin"):
        i2i.register_plugin(Mine(), "losses")
    i2i.register_plugin(Mine(), "mine")
    losses = i2i.registry("losses")
    assert losses["l1"].plugin == "losses" and losses["mine:l1"].plugin == "mine"


def test_a_dict_recipe_may_hold_numpy_numbers():
    import numpy as np

    recipe = i2i.load_recipe({**TINY_G2C, "train": {**TINY_G2C["train"], "steps": np.int64(3), "g": {"lr": np.float32(0.001)}}})
    assert recipe["train"]["steps"] == 3 and type(recipe["train"]["steps"]) is int
    assert type(recipe["train"]["g"]["lr"]) is float


def test_api_misuse_gets_a_clear_error():
    with pytest.raises(i2i.UserError, match=r"unknown kind 'generatrs' \(did you mean 'generators'\?\)"):
        i2i.list_components("generatrs")
    with pytest.raises(TypeError, match="overrides is a list of 'dotted.key=VALUE' strings"):
        i2i.load_recipe(TINY_G2C, overrides="train.steps=3")


def test_a_model_refuses_inputs_it_would_misread(photos, tmp_path, capfd):
    run = i2i.train({**TINY_G2C, "data": {**TINY_G2C["data"], "source": str(photos)},
                     "train": {**TINY_G2C["train"], "steps": 1}, "output": {**TINY_G2C["output"], "dir": str(tmp_path / "run")}},
                    quiet=True)
    model = i2i.load(run.run_dir)
    with pytest.raises(TypeError, match="takes float images in \\[0, 1\\] or uint8 ones in \\[0, 255\\], not torch.int32"):
        model(torch.zeros(1, 3, 16, 16, dtype=torch.int32))
    with pytest.raises(ValueError, match="empty batch"):
        model(torch.zeros(0, 3, 16, 16))
    with pytest.raises(TypeError, match="for a tensor use model\\(tensor\\)"):
        model.translate(torch.zeros(3, 16, 16))
    assert model(torch.zeros(3, 16, 16, dtype=torch.uint8)).shape == (3, 16, 16)
    # a 0-255 image given as floats would come out all white; NaN would come out NaN
    with pytest.raises(ValueError, match=r"takes float images in \[0, 1\], got values up to 255: divide a 0-255 image by 255"):
        model(torch.full((3, 16, 16), 255.0))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(torch.full((3, 16, 16), float("nan")))
    capfd.readouterr()
    noisy = (torch.rand(3, 16, 16) + 0.1 * torch.randn(3, 16, 16)).clamp(-0.4, 1.4)  # a noisy input strays a little
    assert torch.isfinite(model(noisy)).all() and capfd.readouterr().err == ""
    # pix2pix's [-1, 1] scaling passes the range check, and the output differs: said, once per model
    scaled = torch.rand(3, 16, 16) * 2 - 1
    scaled[0, 0, 0] = -1.0
    model(scaled), model(scaled)
    assert capfd.readouterr().err == ("i2i: warning: model(images) takes float images in [0, 1], and these go down to -1, "
                                      "as images scaled to [-1, 1] do; if they are, give (images + 1) / 2 (a noisy image "
                                      "strays a little below 0; then this is nothing)\n")
    grey16 = np.linspace(0, 65535, 16 * 16).astype(np.uint16).reshape(16, 16)
    assert model.translate(grey16).size == (16, 16)
    with pytest.raises(ValueError, match=r"for 16-bit colour use model\("):
        model.translate(np.zeros((16, 16, 3), np.uint16))
    with pytest.raises(ValueError, match=r"got values down to -5: undo a normalisation first"):
        model(torch.full((3, 16, 16), -5.0))
    with pytest.raises(ValueError, match="on the meta device"):
        model(torch.empty(1, 3, 16, 16, device="meta"))
    x = torch.rand(1, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the caller's autocast changed the numbers
        assert torch.equal(model(x), model(x.clone()).clone()) and model(x).dtype == torch.float32
        inside = model(x)
    assert torch.equal(inside, model(x))
    from i2i.translate import translate_files

    with pytest.raises(TypeError, match=r"translate_files takes an i2i.Model \(model = i2i.load\(RUN_DIR\)\), not str"):
        translate_files(str(run.run_dir), [str(tmp_path)], tmp_path / "out")
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "in" / "a.png")
    translate_files(model, tmp_path / "in", tmp_path / "out", progress=False)
    with pytest.raises(i2i.UserError, match=r"already exists .*; use overwrite=True, skip_existing=True \(to finish a translation that stopped\) or another out_dir$"):  # not --overwrite
        translate_files(model, tmp_path / "in", tmp_path / "out", progress=False)
    # a path that is not there: what Python's own file functions raise (it was "cannot decode")
    with pytest.raises(FileNotFoundError, match="model.translate: no such file"):
        model.translate(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError, match="takes one image, not a folder"):
        model.translate(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned: the README's model.translate(Image.open("photo.jpg")) is upright as the path is
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 24, 3), np.uint8)).save(tmp_path / "photo.jpg", exif=exif)
    with Image.open(tmp_path / "photo.jpg") as opened:
        from_pil = model.translate(opened)
    assert from_pil.size == (16, 24) and np.array_equal(np.asarray(from_pil), np.asarray(model.translate(tmp_path / "photo.jpg")))
    assert repr(model) == f"i2i.Model(task='gray2color', generator='unet', checkpoint='{model.checkpoint}', device='cpu')"


def test_resume_with_a_recipe_and_a_misspelt_callback_event_are_pointed_out(photos, tmp_path, capsys):
    class Typo(i2i.Callback):
        def on_logg(self, trainer, step, values):
            pass

    recipe = {**TINY_G2C, "data": {**TINY_G2C["data"], "source": str(photos)},
              "train": {**TINY_G2C["train"], "steps": 1}, "output": {**TINY_G2C["output"], "dir": str(tmp_path / "run")}}
    run = i2i.train(recipe, callbacks=[Typo()], quiet=True)
    assert "callback Typo has on_logg, which i2i never calls" in capsys.readouterr().err
    with pytest.raises(i2i.UserError, match="without a recipe or out"):
        i2i.train(recipe, resume=run.run_dir)


def test_training_and_loading_work_under_a_float64_default_dtype(photos, tmp_path):
    recipe = {**TINY_G2C, "data": {**TINY_G2C["data"], "source": str(photos)},
              "train": {**TINY_G2C["train"], "steps": 1}, "output": {**TINY_G2C["output"], "dir": str(tmp_path / "run")}}
    torch.set_default_dtype(torch.float64)
    try:
        run = i2i.train(recipe, quiet=True)
        assert torch.get_default_dtype() == torch.float64  # the caller's setting, back
        output = i2i.load(run.run_dir)(torch.rand(3, 16, 16))
    finally:
        torch.set_default_dtype(torch.float32)
    assert output.dtype == torch.float32 and output.shape == (3, 16, 16)


def test_callbacks_that_are_not_a_list_of_callbacks_say_what_was_given():
    with pytest.raises(TypeError, match=r"^callbacks is a list of i2i.Callback instances, not int \(5\)$"):
        i2i.train({}, callbacks=5)


def test_a_file_of_the_scored_folder_whose_pixels_do_not_decode_is_named_as_the_folders(tmp_path, capsys):
    """i2i eval --data called it an 'unreadable validation file', as if it were the run's."""
    from helpers import TINY_G2C, make_photos, tiny_recipe

    from i2i.evaluation import evaluate_run

    run = i2i.train(tiny_recipe(make_photos(tmp_path / "photos", count=3, size=(20, 20)), tmp_path / "run",
                                base=TINY_G2C, train={"steps": 1}), quiet=True)
    folder = make_photos(tmp_path / "scored", count=2, size=(20, 20))
    whole = (folder / "photo_1.png").read_bytes()
    (folder / "photo_1.png").write_bytes(whole[: len(whole) // 2])  # its header reads, its pixels are cut off
    capsys.readouterr()
    assert evaluate_run(run.run_dir, data_dir=folder)["images"] == 1
    err = capsys.readouterr().err
    assert f"i2i: warning: skipped 1 unreadable file(s) of {folder}: " in err and "photo_1.png (truncated" in err
    # with a file the scan already refuses, both are named in one warning, as the README says
    (folder / "notes.png").write_text("not an image")
    assert evaluate_run(run.run_dir, data_dir=folder)["images"] == 1
    warnings = [line for line in capsys.readouterr().err.splitlines() if "unreadable" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"i2i: warning: skipped 2 unreadable file(s) of {folder}: ")
    assert "notes.png (named .png but does not start as a PNG file does" in warnings[0]
    assert "photo_1.png (truncated" in warnings[0]
