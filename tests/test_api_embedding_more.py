"""A program embedding i2i, the way an application does: recipes built by sweep code, training
called from inside its own no-grad blocks, and a loaded model whose outputs it trains on,
casts or moves."""

import json
import sys


import numpy as np
import pytest
import torch

import i2i
from helpers import TINY_G2C, make_photos
from i2i.recipe import dumps_toml, tomllib


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), count=4, size=(32, 32))


def recipe_for(photos, out, steps=1):
    return {**TINY_G2C, "data": {**TINY_G2C["data"], "source": str(photos)},
            "train": {**TINY_G2C["train"], "steps": steps}, "output": {**TINY_G2C["output"], "dir": str(out)}}


@pytest.fixture(scope="module")
def run_dir(photos, tmp_path_factory):
    return i2i.train(recipe_for(photos, tmp_path_factory.mktemp("trained") / "run"), quiet=True).run_dir


def test_numpy_float64_and_arrays_in_a_dict_recipe_become_what_toml_can_write():
    """np.float64 is a float subclass, so it once slipped through and the run's recipe.toml held
    ``lr = np.float64(0.0001)``, which no later load or resume could read."""
    sweep = {**TINY_G2C, "train": {**TINY_G2C["train"], "g": {"lr": np.logspace(-4, -3, 2)[0], "betas": np.array([0.5, 0.9])}},
             "losses": {"l1": {"weight": np.float64(100)}}}
    recipe = i2i.load_recipe(sweep)
    assert type(recipe["train"]["g"]["lr"]) is float and recipe["train"]["g"]["betas"] == [0.5, 0.9]
    assert type(recipe["losses"]["l1"]["weight"]) is float
    assert tomllib.loads(dumps_toml(recipe))["train"]["g"]["lr"] == pytest.approx(1e-4)
    # float32 numbers, numpy's or torch's, are read as written, not as their nearest double
    for betas in (np.array([0.5, 0.9], np.float32), torch.tensor([0.5, 0.9]), torch.tensor([0.5, 0.9]).bfloat16()):
        recipe = i2i.load_recipe({**TINY_G2C, "train": {**TINY_G2C["train"], "g": {"betas": betas, "lr": betas[0]}}})
        assert recipe["train"]["g"]["betas"][0] == 0.5 and recipe["train"]["g"]["lr"] == 0.5
        assert recipe["train"]["g"]["betas"][1] == (0.8984375 if betas.dtype == torch.bfloat16 else 0.9)


def test_images_given_in_memory_as_a_recipe_value_are_refused_in_one_short_line():
    """A tensor of images as data.source became hundreds of MB of nested lists and of error
    message (19 s and 1 GB to say 'expected a string')."""
    images = torch.rand(64, 3, 256, 256)
    with pytest.raises(i2i.RecipeError) as info:
        i2i.load_recipe({**TINY_G2C, "data": {**TINY_G2C["data"], "source": images}})
    assert str(info.value) == ("<recipe>: data.source = an array of shape 64x3x256x256 (torch.Tensor): a recipe holds "
                               "settings, not images; i2i trains on image files (save them into a folder and give "
                               "its path as data.source)")
    with pytest.raises(i2i.RecipeError, match=r"= an array of shape 2x64x64x3 \(numpy.ndarray\)"):
        i2i.load_recipe({**TINY_G2C, "data": {**TINY_G2C["data"], "source": np.zeros((2, 64, 64, 3), np.uint8)}})
    # a long list of another kind is cut short in the message
    with pytest.raises(i2i.RecipeError, match=r"^<recipe>: data.source = \[0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\]: "
                                              r"expected a string$"):
        i2i.load_recipe({**TINY_G2C, "data": {**TINY_G2C["data"], "source": list(range(10_000))}})


def test_training_works_inside_the_callers_no_grad_and_inference_mode(photos, tmp_path):
    with torch.no_grad():
        assert i2i.train(recipe_for(photos, tmp_path / "a"), quiet=True).status == "finished"
        assert not torch.is_grad_enabled()  # the caller's mode, back
    with torch.inference_mode():
        assert i2i.train(recipe_for(photos, tmp_path / "b"), quiet=True).status == "finished"
        assert torch.is_inference_mode_enabled()


def test_a_models_output_is_an_ordinary_tensor_a_program_can_train_on_and_edit(run_dir):
    model = i2i.load(run_dir)
    x = torch.rand(1, 3, 33, 47)
    y = model(x)
    assert not y.is_inference() and not y.requires_grad
    y.clamp_(0, 1)  # in place, as post-processing does
    student = torch.nn.Conv2d(3, 3, 3, padding=1)
    torch.nn.functional.mse_loss(student(x), y).backward()  # the output as a training target
    assert student.weight.grad is not None
    with torch.inference_mode():  # a web service's habit: still an ordinary tensor, editable after
        z = model(x)
    assert not z.is_inference() and torch.equal(z, y)
    z.clamp_(0, 1)


def test_a_generator_set_to_train_mode_still_translates_in_eval_mode_and_keeps_its_mode(run_dir):
    """A program fine-tuning model.generator (train mode) got dropout's random outputs from
    model(x), and every translation overwrote batch norm's running statistics."""
    model = i2i.load(run_dir)
    x = torch.rand(2, 3, 32, 32)
    expected = model(x)
    norms = [m for m in model.generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms, "the test needs a generator with batch norm"
    means = [m.running_mean.clone() for m in norms]
    model.generator.train()
    kept_in_eval = next(m for m in model.generator.modules() if isinstance(m, torch.nn.Conv2d))
    kept_in_eval.eval()  # a program's own mix of modes comes back as it was
    assert torch.equal(model(x), expected)
    assert all(torch.equal(m.running_mean, mean) for m, mean in zip(norms, means))
    assert model.generator.training and not kept_in_eval.training and all(m.training for m in norms)


def test_a_generator_cast_or_moved_after_loading_gets_inputs_to_match(run_dir):
    model = i2i.load(run_dir)
    x = torch.rand(1, 3, 32, 32)
    expected = model(x)
    model.generator.double()
    assert model(x).dtype == torch.float32 and torch.allclose(model(x), expected, atol=1e-4)
    model.generator.bfloat16()
    assert model(x).dtype == torch.float32 and (model(x) - expected).abs().max() < 0.1


def test_tile_and_overlap_must_be_whole_pixel_counts(run_dir):
    model = i2i.load(run_dir)
    x = torch.rand(1, 3, 40, 40)
    assert torch.equal(model(x, tile=np.int64(16), overlap=np.int64(4)), model(x, tile=16, overlap=4))
    for bad in (True, 2.5, "16"):
        with pytest.raises(ValueError, match=r"tile must be 'auto' \(or None\), 0 or a positive number of pixels"):
            model(x, tile=bad)
    for bad in (-64, 1.5, "a", None):
        with pytest.raises(ValueError, match=rf"overlap must be a whole number of pixels, 0 or more, got {bad!r}"):
            model(x, tile=16, overlap=bad)


def test_tile_none_is_auto_and_tile_0_runs_the_image_whole(run_dir, monkeypatch):
    """As the README says; it once said None ran images whole."""
    from i2i.engine import infer

    model = i2i.load(run_dir)
    x = torch.rand(1, 3, 40, 40)
    whole, tiled = model(x, tile=0), model(x, tile=16, overlap=4)
    assert not torch.equal(whole, tiled)
    monkeypatch.setattr(infer, "AUTO_TILE_PIXELS", 1000)  # 40 x 40 counts as large
    monkeypatch.setattr(infer, "AUTO_TILE", 16)
    monkeypatch.setattr(infer, "AUTO_OVERLAP", 4)
    assert torch.equal(model(x, tile=None, overlap=4), tiled) and torch.equal(model(x, tile="auto", overlap=4), tiled)
    assert torch.equal(model(x, tile=0), whole)


def test_load_takes_a_runs_checkpoints_folder_and_names_a_wrong_argument(run_dir):
    assert i2i.load(run_dir / "checkpoints").checkpoint == i2i.load(run_dir).checkpoint
    with pytest.raises(TypeError, match="expected the path of a run folder or a checkpoint folder, not NoneType"):
        i2i.load(None)


def test_a_model_loads_without_the_plugin_of_a_training_callback(run_dir, tmp_path):
    """Callbacks steer training only; a run shared without its callback plugin still translates."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    recipe = copy / "recipe.toml"
    recipe.write_text(recipe.read_text().replace("callbacks = []", 'callbacks = ["slack_notifier"]'))
    assert 'callbacks = ["slack_notifier"]' in recipe.read_text()
    info = json.loads((copy / "run.json").read_text())
    info["plugins"]["chat"] = {"distribution": "i2i-chat", "version": "2.0", "status": "loaded", "used": True}
    (copy / "run.json").write_text(json.dumps(info))
    with pytest.raises(i2i.RecipeError, match=r"unknown callback 'slack_notifier'.*; this run was trained with plugin "
                                              r"'chat', which is not loaded here: pip install i2i-chat==2\.0$"):
        i2i.train(None, resume=copy, quiet=True)  # training would need it, and says how to get it
    assert i2i.load(copy)(torch.rand(3, 16, 16)).shape == (3, 16, 16)


def test_translate_files_takes_strings_as_the_docstring_of_model_translate_suggests(run_dir, photos, tmp_path):
    from i2i.translate import translate_files

    report = translate_files(i2i.load(run_dir), str(photos), str(tmp_path / "out"), progress=False)
    assert report.written == 4 and len(list((tmp_path / "out").glob("*.png"))) == 4


def test_a_run_missing_plugins_names_how_to_bring_each_back(tmp_path):
    """One installed from a package (pip) and one a program registered itself (no package)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.toml").write_text(dumps_toml({**TINY_G2C, "generator": {"name": "ghostnet"}}))
    (run / "run.json").write_text('{"plugins": {'
                                  '"mine": {"distribution": null, "version": null, "module": "lab.nets", "status": "loaded"}, '
                                  '"extra": {"distribution": "i2i-extra", "version": "1.0", "module": "i2i_extra", "status": "loaded"}}}')
    with pytest.raises(i2i.UnknownComponentError) as info:
        i2i.load_recipe(run / "recipe.toml")
    assert str(info.value).endswith("this run was trained with plugins 'mine' and 'extra', which are not loaded here: "
                                    "pip install i2i-extra==1.0; in Python, before loading it: "
                                    "i2i.register_plugin(lab.nets, 'mine')")


def test_an_edited_recipe_value_is_not_blamed_on_the_override_it_replaced(photos, tmp_path):
    recipe = i2i.load_recipe(recipe_for(photos, tmp_path / "run"), ["train.steps=2"])
    recipe["train"]["steps"] = "many"
    with pytest.raises(i2i.RecipeError) as info:
        i2i.train(recipe, quiet=True)
    assert str(info.value) == "<recipe> (edited after load_recipe): train.steps = 'many': expected an integer"
    with pytest.raises(i2i.RecipeError, match=r"^overrides train\.steps=-3: "):  # an override still in force is named
        i2i.load_recipe(recipe_for(photos, tmp_path / "run"), ["train.steps=-3"])


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_on_run_end_failing_after_the_last_step_does_not_suggest_a_resume(photos, tmp_path):
    class FailsAtEnd(i2i.Callback):
        def on_run_end(self, trainer, status, metrics):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full") as info:
        i2i.train(recipe_for(photos, tmp_path / "run", steps=2), callbacks=[FailsAtEnd()], quiet=True)
    note = "\n".join(info.value.__notes__)
    assert "the run had finished and its checkpoint at step 2 is complete" in note and "--resume" not in note
    with pytest.raises(i2i.UserError) as done:
        i2i.train(None, resume=tmp_path / "run", quiet=True)
    # the run's own folder, ready to paste (it printed the placeholder RUN_DIR)
    assert f"(Python: i2i.train(None, resume={str(tmp_path / 'run')!r}, overrides=['train.steps=N']))" in str(done.value)


def test_overrides_given_as_a_generator_are_applied(photos, tmp_path):
    recipe = i2i.load_recipe(recipe_for(photos, tmp_path / "r"), overrides=(f"train.steps={s}" for s in [3]))
    assert recipe["train"]["steps"] == 3 and recipe.overrides == ["train.steps=3"]
    run = i2i.train(recipe_for(photos, tmp_path / "run", steps=2), overrides=iter(["train.steps=1"]), quiet=True)
    assert run.step == 1


def test_the_callers_autocast_does_not_change_what_an_fp32_run_trains(photos, tmp_path):
    plain = i2i.train(recipe_for(photos, tmp_path / "plain", steps=2), overrides=['train.precision="fp32"'], quiet=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = i2i.train(recipe_for(photos, tmp_path / "inside", steps=2), overrides=['train.precision="fp32"'], quiet=True)
    for (name, a), b in zip(plain.generator.state_dict().items(), inside.generator.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_bare_training_stopped_from_a_callback_stops_with_a_checkpoint(photos, tmp_path):
    class Stop(i2i.Callback):
        def on_log(self, trainer, step, values):
            raise i2i.TrainingStopped

    recipe = recipe_for(photos, tmp_path / "run", steps=5)
    recipe["output"] = {**recipe["output"], "log_every": 1}
    with pytest.raises(i2i.TrainingStopped) as stopped:
        i2i.train(recipe, callbacks=[Stop()], quiet=True)
    assert stopped.value.step == 1 and (stopped.value.run_dir / "checkpoints" / "LATEST").is_file()


def test_a_finished_run_frees_its_trainer_at_once_and_callbacks_cannot_edit_its_scores(photos, tmp_path):
    """The trainer (optimisers, data cache: GPU memory between back-to-back runs) sits in
    reference cycles; it is freed when train returns, not at the next garbage collection."""
    import weakref

    class Watch(i2i.Callback):
        def on_run_start(self, trainer):
            self.trainer = weakref.ref(trainer)

        def on_evaluate(self, trainer, step, metrics):
            metrics["psnr"] = "hacked"

    watch = Watch()
    run = i2i.train(recipe_for(photos, tmp_path / "run"), callbacks=[watch], quiet=True)
    assert watch.trainer() is None
    assert isinstance(run.metrics["psnr"], float)


def test_new_style_tf32_settings_and_the_start_method_are_left_as_the_program_set_them(photos, tmp_path):
    """torch >= 2.9's fp32_precision refuses reads through the older allow_tf32 flags once set;
    a streaming run's DataLoader must not fix the process's multiprocessing start method."""
    import subprocess

    recipe = recipe_for(photos, tmp_path / "run")
    recipe["data"] = {**recipe["data"], "cache_gb": 0.0, "workers": 1}
    code = f"""
import multiprocessing, torch, i2i
if hasattr(torch.backends, "fp32_precision"):
    torch.backends.fp32_precision = "tf32"
torch.set_float32_matmul_precision("medium") if not hasattr(torch.backends, "fp32_precision") else None
i2i.train({recipe!r}, quiet=True)
if hasattr(torch.backends, "fp32_precision"):
    assert torch.backends.fp32_precision == "tf32", torch.backends.fp32_precision
multiprocessing.set_start_method("spawn")  # raises if the run fixed it
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_a_dict_recipe_with_a_key_that_is_not_a_string_names_it():
    with pytest.raises(i2i.RecipeError, match=r"^<recipe>: train.5: a recipe's keys are strings"):
        i2i.load_recipe({**TINY_G2C, "train": {5: 1}})


def test_flags_that_are_not_bools_and_a_run_folder_with_a_newline_are_refused(photos, tmp_path, run_dir):
    with pytest.raises(TypeError, match=r"^quiet is True or False, not 'yes'$"):
        i2i.train(recipe_for(photos, tmp_path / "run"), quiet="yes")
    with pytest.raises(TypeError, match=r"^out is a folder's path \(a str or Path\), not int \(5\)$"):
        i2i.train(recipe_for(photos, tmp_path / "run"), out=5)
    with pytest.raises(TypeError, match=r"^keep_alpha is True or False, not 'no'$"):
        i2i.load(run_dir).translate(np.zeros((8, 8, 3), np.uint8), keep_alpha="no")
    with pytest.raises(i2i.UserError, match=r"contains a control character"):
        i2i.train(recipe_for(photos, tmp_path / "runs\nx"), quiet=True)
    assert not any(tmp_path.iterdir())


def test_scoring_a_run_from_python_names_its_arguments_not_the_commands_options(run_dir, tmp_path):
    import subprocess

    # the README's i2i.evaluation.evaluate_run and i2i.translate.translate_files, after a plain import i2i
    code = "import i2i; print(callable(i2i.evaluation.evaluate_run), callable(i2i.translate.translate_files))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "True True\n"
    from i2i.evaluation import evaluate_run

    scores = evaluate_run(run_dir, overrides=["eval.max_images=1"])
    assert set(scores["metrics"]) >= {"psnr", "ssim"} and scores["images"] == 1
    with pytest.raises(i2i.UserError, match=r'^data_dir = ".*nowhere": no such folder'):
        evaluate_run(run_dir, data_dir=tmp_path / "nowhere")
    with pytest.raises(TypeError, match=r"^overrides is a list of 'dotted\.key=VALUE' strings, not 'eval\.max_images=1'$"):
        evaluate_run(run_dir, overrides="eval.max_images=1")  # not read one character at a time
    with pytest.raises(TypeError, match=r"^crop is a whole number of pixels \(0 = whole images\) or None, not '32'$"):
        evaluate_run(run_dir, crop="32")


def test_what_train_and_load_return_still_points_at_the_run_after_chdir(photos, tmp_path, monkeypatch):
    """run_dir and checkpoint came back relative: after os.chdir a notebook opened another
    folder of the same name, or none."""
    monkeypatch.chdir(tmp_path)
    recipe = recipe_for(photos, "runs/rel")
    run = i2i.train(recipe, quiet=True)
    model = i2i.load("runs/rel")
    assert run.run_dir == tmp_path / "runs" / "rel" and model.checkpoint.is_absolute()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert i2i.load(run.run_dir).checkpoint == model.checkpoint

    class StopAtOnce(i2i.Callback):
        def on_run_start(self, trainer):
            trainer.request_stop()

    with pytest.raises(i2i.TrainingStopped) as stopped:  # nothing trained, no folder kept: nothing to resume
        i2i.train(recipe_for(photos, tmp_path / "never"), quiet=True, callbacks=[StopAtOnce()])
    assert stopped.value.run_dir is None and stopped.value.step == 0 and not (tmp_path / "never").exists()


def test_a_mistaken_override_is_named_as_the_argument_it_came_in(photos, tmp_path):
    """From Python, 'overrides', not the command line's --set."""
    with pytest.raises(i2i.RecipeError, match=r"^overrides train.stpes=3: train.stpes: unknown key \(did you mean 'steps'\?\)"):
        i2i.train(recipe_for(photos, tmp_path / "run"), overrides=["train.stpes=3"], quiet=True)


def test_a_tilde_in_a_programs_paths_means_the_home_folder_as_on_the_command_line(photos, run_dir, tmp_path,
                                                                                 monkeypatch):
    """``i2i.load("~/runs/x")`` was looked up as a folder named '~' in the working directory."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(run_dir, home / "runs" / "g2c")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    model = i2i.load("~/runs/g2c")
    assert model.checkpoint.is_relative_to(home / "runs" / "g2c")
    (home / "recipe.toml").write_text(dumps_toml(recipe_for(photos, "~/runs/next", steps=1)))
    run = i2i.train("~/recipe.toml", quiet=True)
    assert run.run_dir == home / "runs" / "next"
    resumed = i2i.train(None, resume="~/runs/next", overrides=["train.steps=2"], quiet=True)
    assert resumed.step == 2 and resumed.run_dir == home / "runs" / "next"
    from i2i.evaluation import evaluate_run
    from i2i.translate import translate_files

    shutil.copytree(photos, home / "photos")
    assert translate_files(model, "~/photos", "~/out", progress=False).written == 4
    assert len(list((home / "out").glob("*.png"))) == 4
    assert model.translate("~/photos/" + sorted(p.name for p in photos.iterdir())[0]).size == (32, 32)
    scores = evaluate_run("~/runs/g2c", data_dir="~/photos", save_images="~/saved")
    assert scores["images"] == 4 and len(list((home / "saved" / "output").glob("*.png"))) == 4
    assert not (tmp_path / "~").exists()
    with pytest.raises(i2i.UserError, match="there is no user 'nobody-here'"):
        i2i.load("~nobody-here/run")


def test_a_program_without_stdout_or_stderr_trains_and_translates(photos, run_dir, tmp_path, monkeypatch):
    """Under pythonw or a service sys.stdout is None: i2i.train (even quiet) and translate_files
    died with AttributeError 'NoneType' object has no attribute 'isatty' before doing anything."""
    from i2i.translate import translate_files

    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    run = i2i.train(recipe_for(photos, tmp_path / "run"), quiet=True)
    assert run.step == 1
    run = i2i.train(recipe_for(photos, tmp_path / "bar"), overrides=["output.progress='bar'"])  # tqdm draws on stderr
    assert run.step == 1
    run = i2i.train(recipe_for(photos, tmp_path / "run"))  # not quiet, and its folder taken: a note to nowhere
    assert run.run_dir == tmp_path / "run-2"
    report = translate_files(i2i.load(run_dir), photos, tmp_path / "out")
    assert report.written == 4


def test_a_component_renamed_in_a_loaded_recipe_gets_its_own_defaults_not_the_old_ones(photos):
    """Setting recipe["generator"]["name"] = "unet_128" on a loaded unet_small recipe built a
    5-deep, 32-wide U-Net under unet_128's name: loading had filled in unet_small's options."""
    from plugin_env import ROOT

    recipe = i2i.load_recipe(ROOT / "recipes" / "color2gray.toml")
    recipe["generator"]["name"] = "unet_128"
    resolved = i2i.load_recipe(recipe)
    assert (resolved["generator"]["depth"], resolved["generator"]["width"], resolved["generator"]["dropout"]) == (7, 64, True)
    assert resolved == i2i.load_recipe(ROOT / "recipes" / "color2gray.toml", overrides=["generator.name=unet_128"])
    [note] = [n for n in resolved.notes if "generator.name was changed" in n]
    assert "depth = 5, width = 32, dropout = false" in note
    # another kind of network: no 'unknown option depth'; an option the program set with the name is kept
    recipe = i2i.load_recipe(ROOT / "recipes" / "color2gray.toml")
    recipe["generator"].update(name="resnet_9blocks", width=16)
    resolved = i2i.load_recipe(recipe)
    assert "depth" not in resolved["generator"] and resolved["generator"]["width"] == 16
    assert resolved["generator"]["blocks"] == 9


def test_notes_from_scoring_in_python_name_its_arguments_not_the_commands_options(run_dir, tmp_path, capsys):
    """evaluate_run's notes said '--data = "..."' and 'pass e.g. --data ...' to a program that
    gave data_dir; the command line's own notes still name its options."""
    from click.testing import CliRunner

    from helpers import make_photos
    from i2i.cli import cli
    from i2i.evaluation import evaluate_run

    for split in ("train", "test"):
        make_photos(tmp_path / "set" / split, count=1, size=(32, 32))
    evaluate_run(run_dir, data_dir=tmp_path / "set")
    err = capsys.readouterr().err
    assert f'i2i: note: data_dir = "{tmp_path / "set"}" holds the subfolders train, test' in err and "--data" not in err
    result = CliRunner().invoke(cli, ["eval", str(run_dir), "--data", str(tmp_path / "set")])
    assert result.exit_code == 0 and f'i2i: note: --data = "{tmp_path / "set"}" holds the subfolders' in result.output


def test_a_run_that_cannot_start_leaves_no_empty_folders_it_made_above_its_own(photos, tmp_path):
    """output.dir = runs/a/x with a missing data folder left runs/a/ behind, empty."""
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "runs" / "a" / "x", tmp_path / "kept" / "x"):
        recipe = recipe_for(tmp_path / "no-such-photos", out)
        with pytest.raises(i2i.UserError, match="no such folder"):
            i2i.train(recipe, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())


def test_threads_of_a_service_load_plugins_translate_and_write_one_folder_at_once(run_dir, photos, tmp_path):
    """Three of four threads' first i2i calls found an empty registry ('unknown task'); threads
    sharing a model whose generator the program set to train mode ran it in train mode under
    one another (batch norm's statistics changed for good); threads translating into one folder
    shared one temporary file name and failed ('cannot write')."""
    from concurrent.futures import ThreadPoolExecutor

    from i2i import plugins
    from i2i.translate import translate_files

    plugins.reset()
    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda _: len(i2i.registry("tasks")), range(4)))
    assert len(set(counts)) == 1 and counts[0] > 0

    model = i2i.load(run_dir)
    images = torch.rand(2, 3, 32, 32)
    expected = model(images)
    statistics = {k: v.clone() for k, v in model.generator.state_dict().items()}
    model.generator.train()
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(lambda _: model(images), range(48)))
    assert all(torch.equal(out, expected) for out in outputs)
    assert all(torch.equal(v, statistics[k]) for k, v in model.generator.state_dict().items())
    assert all(m.training for m in model.generator.modules())  # the program's mode, back once all are done

    model.generator.eval()
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: translate_files(model, photos, tmp_path / "shared", overwrite=True,
                                                          progress=False), range(4)))
    assert all(report.written == 4 for report in reports)
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == sorted(
        [".i2i-outputs", *(p.with_suffix(".png").name for p in photos.iterdir())])


def test_the_stop_line_of_a_signal_goes_to_the_programs_logging_when_asked(photos, tmp_path, capsys):
    """After i2i.messages.to_your_logging(), SIGTERM's 'finishing the current step' line was still
    printed on stderr, the one line of i2i's that bypassed the program's handlers."""
    import logging
    import os
    import signal

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    class Terminate(i2i.Callback):
        def on_log(self, trainer, step, values):
            if step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    root, keep = logging.getLogger(), Keep()
    root.addHandler(keep)
    try:
        i2i.messages.to_your_logging()
        with pytest.raises(i2i.TrainingStopped):
            i2i.train(recipe_for(photos, tmp_path / "run", steps=6), overrides=["output.log_every=1"],
                      callbacks=[Terminate()], quiet=True)
    finally:
        root.removeHandler(keep)
    assert any(line.startswith("SIGTERM received: finishing the current step") for line in records), records
    assert "SIGTERM" not in capsys.readouterr().err
