"""train.init_from: a new run fine-tunes an earlier run's (or imported) weights."""

import json
import shutil

import pytest
import torch

import i2i
from helpers import TINY_GAN, make_photos, tiny_recipe
from i2i.engine import checkpoint as ckpt
from i2i.engine.trainer import Trainer
from plugin_env import ROOT, run_i2i


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("init-from") / "photos", count=4, size=(24, 20))


@pytest.fixture(scope="module")
def base_run(photos, tmp_path_factory):
    """A short GAN run with an EMA copy of G: the weights to start from."""
    out = tmp_path_factory.mktemp("base") / "base"
    return i2i.train(tiny_recipe(photos, out, train={"steps": 4}), quiet=True).run_dir


def saved(run_dir, name):
    return ckpt.read_tensors(ckpt.find_checkpoint(run_dir) / name)


def test_a_new_run_starts_from_the_weights_the_source_translates_with(photos, base_run, tmp_path):
    recipe = i2i.load_recipe(tiny_recipe(photos, tmp_path / "tuned", train={"init_from": str(base_run)}))
    trainer = Trainer(recipe, tmp_path / "tuned", quiet=True)
    ema, d = saved(base_run, "generator_ema.safetensors"), saved(base_run, "discriminator.safetensors")
    assert not all(torch.equal(ema[k], v) for k, v in saved(base_run, "generator.safetensors").items())
    for module in (trainer.G, trainer.ema):  # G and its new EMA copy start at the source's EMA weights
        assert all(torch.equal(value, ema[key]) for key, value in module.state_dict().items())
    assert all(torch.equal(value, d[key]) for key, value in trainer.D.state_dict().items())
    assert trainer.step == 0 and trainer.initial_weights.discriminator_file == "discriminator.safetensors"
    assert not trainer.opt_g.state  # optimiser state starts afresh


def test_a_fine_tuned_run_records_its_source_and_resumes_without_it(photos, base_run, tmp_path, monkeypatch):
    source = tmp_path / "source"
    shutil.copytree(base_run, source)
    monkeypatch.chdir(tmp_path)
    result = run_i2i(["run", str(ROOT / "recipes" / "gray2color.toml"), "--set", "train.init_from=source",
                      "--set", "data.size=16", "--set", f"data.source='{photos}'", "--set", "train.steps=2",
                      "--set", "generator.name='unet'", "--set", "generator.depth=2", "--set", "generator.width=4",
                      "--set", "eval.crop=16", "--set", "discriminator.n_layers=1", "--out", "tuned"], cwd=tmp_path)
    # the source is a denoiser (3 -> 3): a colouriser (1 -> 2) cannot take its weights
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "train.init_from" in line and "task.name = 'denoise'" in line
    assert not (tmp_path / "tuned").exists()

    recipe = tiny_recipe(photos, tmp_path / "tuned", train={"init_from": "source", "steps": 2, "ema": 0.0})
    run = i2i.train(recipe, quiet=True)
    info = json.loads((run.run_dir / "run.json").read_text())
    started = info["initial_weights"]
    assert started["checkpoint"] == str(ckpt.find_checkpoint(source).resolve()) and started["step"] == 4
    assert started["generator"] == "generator_ema.safetensors"
    assert i2i.load_recipe(run.run_dir / "recipe.toml")["train"]["init_from"] == str(source.resolve())  # pinned absolute

    refused = run_i2i(["run", "--resume", str(run.run_dir), "--set", "train.init_from=source"], cwd=tmp_path)
    assert refused.returncode == 2 and "a resumed run continues from its own checkpoint" in refused.stderr
    shutil.rmtree(source)  # a resume never reads it again
    resumed = run_i2i(["run", "--resume", str(run.run_dir), "--set", "train.steps=3", "--quiet"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run.run_dir / "run.json").read_text())["initial_weights"] == started


def test_a_generator_that_does_not_fit_is_one_line_naming_what_the_source_trained(photos, base_run, tmp_path):
    out = tmp_path / "wide"
    args = ["run", str(ROOT / "recipes" / "denoise.toml"), "--set", f"train.init_from='{base_run}'",
            "--set", f"data.source='{photos}'", "--set", "generator.name='unet'", "--set", "generator.depth=2",
            "--set", "generator.width=8", "--set", "data.size=16", "--set", "eval.crop=16", "--out", str(out)]
    result = run_i2i(args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "its generator does not fit" in result.stderr and "generator.width = 4" in result.stderr
    assert not out.exists()
    validated = run_i2i(["validate", *args[1:-2]])
    assert validated.returncode == 2 and "generator.width = 4" in validated.stderr


@pytest.mark.parametrize("where, says", [
    ("nowhere", "no such run directory"),
    ("photos", "not an i2i run directory"),
    ("base/recipe.toml", "a file; give a run's folder"),
])
def test_a_source_that_is_not_a_run_is_refused_before_the_run_starts(photos, base_run, tmp_path, where, says):
    shutil.copytree(base_run, tmp_path / "base")
    shutil.copytree(photos, tmp_path / "photos")
    recipe = tiny_recipe(photos, tmp_path / "new", train={"init_from": str(tmp_path / where)})
    with pytest.raises(i2i.RecipeError, match=f"train.init_from = .*{says}"):
        i2i.train(recipe, quiet=True)
    assert not (tmp_path / "new").exists()


def test_a_run_without_a_checkpoint_yet_is_named_as_such(photos, base_run, tmp_path):
    (tmp_path / "training" / "checkpoints").mkdir(parents=True)
    shutil.copy(base_run / "recipe.toml", tmp_path / "training")
    recipe = tiny_recipe(photos, tmp_path / "new", train={"init_from": str(tmp_path / "training")})
    with pytest.raises(i2i.RecipeError, match="that run has no checkpoint yet"):
        i2i.validate(recipe)


def test_a_discriminator_that_does_not_fit_starts_fresh_with_a_note(photos, base_run, tmp_path, capfd):
    recipe = tiny_recipe(photos, tmp_path / "new", train={"init_from": str(base_run), "steps": 1},
                         discriminator={"n_layers": 2})
    run = i2i.train(recipe, quiet=True)
    err = capfd.readouterr().err
    assert "its discriminator does not fit this recipe's" in err and "starts from its initialisation" in err
    assert json.loads((run.run_dir / "run.json").read_text())["initial_weights"]["discriminator"] is None


def test_imported_reference_weights_can_be_fine_tuned(photos, tmp_path, capfd):
    g = torch.Generator().manual_seed(0)
    from i2i.engine.components import build_networks

    recipe = i2i.load_recipe(tiny_recipe(photos, tmp_path / "x", discriminator=None, losses={"l1": {}},
                                         generator={"dropout": False}, train={"ema": 0.0}))
    reference = {key: torch.rand(value.shape, generator=g) * 0.02 if value.is_floating_point() else value
                 for key, value in build_networks(recipe, torch.device("cpu")).G.state_dict().items()}
    imported = i2i.create_run_from_weights(recipe, reference, tmp_path / "imported")
    tuned = tiny_recipe(photos, tmp_path / "tuned", generator={"dropout": False}, train={"init_from": str(imported)})
    trainer = Trainer(i2i.load_recipe(tuned), tmp_path / "tuned", quiet=True)
    assert all(torch.equal(value, reference[key]) for key, value in trainer.G.state_dict().items())
    assert trainer.initial_weights.discriminator_file is None
    run = i2i.train(tuned, quiet=True)
    assert "holds no discriminator weights" in capfd.readouterr().err and run.step == TINY_GAN["train"]["steps"]


def test_weights_of_another_task_that_fit_are_taken_with_a_note(photos, tmp_path, capfd):
    paired = i2i.load_recipe({"task": {"name": "paired"}, "generator": dict(TINY_GAN["generator"]), "losses": {"l1": {}}})
    from i2i.engine.components import build_networks

    weights = build_networks(paired, torch.device("cpu")).G.state_dict()
    source = i2i.create_run_from_weights(paired, weights, tmp_path / "paired")
    tuned = tiny_recipe(photos, tmp_path / "denoiser", task={"residual": False}, train={"init_from": str(source)})
    trainer = Trainer(i2i.load_recipe(tuned), tmp_path / "denoiser", quiet=True)
    assert all(torch.equal(value, weights[key]) for key, value in trainer.G.state_dict().items())
    assert "was trained for task 'paired'; this run fine-tunes it for task 'denoise'" in " ".join(trainer.initial_weights.notes)


@pytest.mark.parametrize("key", ["train.pretrained", "train.pretrain_network_g"])
def test_other_tools_names_for_the_key_point_to_it(photos, tmp_path, key):
    with pytest.raises(i2i.RecipeError, match="i2i's key is train.init_from"):
        i2i.load_recipe(tiny_recipe(photos, tmp_path / "x"), [f"{key}='runs/x'"])


def test_a_task_that_wraps_the_generator_otherwise_is_named_with_the_option_to_set(photos, tmp_path):
    from i2i.engine.components import build_networks

    generator = dict(TINY_GAN["generator"])
    plain = i2i.load_recipe({"task": {"name": "denoise", "residual": False}, "generator": generator, "losses": {"l1": {}}})
    source = i2i.create_run_from_weights(plain, build_networks(plain, torch.device("cpu")).G.state_dict(),
                                         tmp_path / "plain")
    recipe = tiny_recipe(photos, tmp_path / "x", train={"init_from": str(source)})  # residual = true by default
    with pytest.raises(i2i.RecipeError, match=r"wraps its generator \(net\.\*\) and that run's did not "
                                              r"\(task.residual = false takes it plain\)"):
        i2i.validate(recipe)
    paired = i2i.load_recipe({"task": {"name": "paired"}, "generator": generator, "losses": {"l1": {}}})
    other = i2i.create_run_from_weights(paired, build_networks(paired, torch.device("cpu")).G.state_dict(),
                                        tmp_path / "paired")
    recipe = tiny_recipe(photos, tmp_path / "x", train={"init_from": str(other)})
    with pytest.raises(i2i.RecipeError, match=r"wraps its generator \(net\.\*\) and that run's did not "
                                              r"\(task.residual = false takes it plain\)"):
        i2i.validate(recipe)


def test_validate_gives_the_notes_a_run_would(photos, base_run, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "x", train={"init_from": str(base_run)}, discriminator={"n_layers": 2},
                         generator={"output": "identity"})
    notes = " ".join(i2i.validate(recipe).notes)
    assert "so the discriminator starts from its initialisation" in notes
    assert "the weights fit, but that run trained generator.output = 'tanh'" in notes


def test_pointer_files_and_home_paths(photos, base_run, tmp_path, monkeypatch):
    latest = base_run / "checkpoints" / "LATEST"
    recipe = tiny_recipe(photos, tmp_path / "x", train={"init_from": str(latest)})
    with pytest.raises(i2i.RecipeError, match=f"a pointer file; give the checkpoint folder it names "
                                              f"\\(checkpoints/{latest.read_text().strip()}\\)"):
        i2i.validate(recipe)
    monkeypatch.setenv("HOME", str(base_run.parent))
    run = i2i.train(tiny_recipe(photos, tmp_path / "home", train={"init_from": f"~/{base_run.name}", "steps": 1}),
                    quiet=True)
    assert i2i.load_recipe(run.run_dir / "recipe.toml")["train"]["init_from"] == str(base_run)


def test_a_hint_names_the_whole_generator_table_when_the_source_used_another_generator(photos, tmp_path):
    from i2i.engine.components import build_networks

    plain = i2i.load_recipe({"task": {"name": "gray2color"}, "generator": {"name": "unet", "depth": 5, "width": 32},
                             "losses": {"l1": {}}})
    source = i2i.create_run_from_weights(plain, build_networks(plain, torch.device("cpu")).G.state_dict(), tmp_path / "u5")
    base = {"task": {"name": "gray2color"}, "losses": {"l1": {}}, "data": {"size": 32}, "eval": {"crop": 32},
            "train": {"init_from": str(source)}}
    assert not i2i.validate({**base, "generator": {"name": "unet_small"}}).notes  # the same network, by its preset
    with pytest.raises(i2i.RecipeError, match="that run trained generator.name = 'unet', generator.depth = 5, "
                                              "generator.width = 32, "):
        i2i.validate({**base, "generator": {"name": "unet_small", "width": 16}})
    with pytest.raises(i2i.RecipeError, match="that run was trained for task.name = 'gray2color', with "
                                              "generator.name = 'unet', generator.depth = 5"):
        i2i.validate({**base, "task": {"name": "denoise"}, "data": {"size": 32, "source": str(photos)},
                      "generator": {"name": "resnet"}})


def test_resuming_an_imported_paired_run_points_to_init_from_before_reading_its_data(tmp_path):
    """Its placeholder data.source = "sample" failed first: 'the photos shipped with i2i are
    single photos', not the documented 'holds imported weights only'; its recipe's header said
    to rerun it, which failed the same way."""
    from i2i.engine.run import create_run_from_weights
    from i2i.model import build_task_and_generator
    from i2i.recipe import load_recipe

    recipe = load_recipe({"task": {"name": "paired"}, "generator": {"name": "unet_small"}})
    _task, generator = build_task_and_generator(recipe)
    run_dir = create_run_from_weights(recipe, generator.state_dict(), tmp_path / "imported")
    result = run_i2i(["run", "--resume", str(run_dir)])
    assert result.returncode != 0 and result.stderr == (
        f"i2i: error: {run_dir / 'checkpoints' / 'step_0000000'}: holds imported weights only (no optimiser or data "
        f"state), so it cannot be resumed; fine-tune them in a new run instead: i2i run RECIPE --set "
        f"train.init_from={run_dir}\n")
    header = (run_dir / "recipe.toml").read_text().splitlines()[0]
    assert "rerun with" not in header and f"i2i run RECIPE --set train.init_from={run_dir}" in header


def test_a_source_trained_under_other_task_options_is_named_with_them(photos, tmp_path):
    """A BtoA run fine-tuned by a recipe left at AtoB trained the opposite mapping from its
    weights without a word (a changed generator option had a note)."""
    paired = i2i.load_recipe({"task": {"name": "paired", "direction": "BtoA"}, "generator": dict(TINY_GAN["generator"]),
                              "losses": {"l1": {}}})
    from i2i.engine.components import build_networks

    weights = build_networks(paired, torch.device("cpu")).G.state_dict()
    source = i2i.create_run_from_weights(paired, weights, tmp_path / "btoa")
    tuned = i2i.load_recipe({"task": {"name": "paired"}, "generator": dict(TINY_GAN["generator"]), "losses": {"l1": {}},
                             "data": {"source": str(photos), "size": 8}, "train": {"init_from": str(source)}})
    trainer = Trainer(tuned, tmp_path / "atob", quiet=True)
    assert "that run trained task.direction = 'BtoA', and this run fine-tunes it with this recipe's task options" in \
        " ".join(trainer.initial_weights.notes)


def test_eval_refuses_to_score_a_paired_run_the_other_way(photos, tmp_path):
    """--set task.direction=BtoA on an AtoB run fed the network its targets and compared its
    outputs with the inputs: a score table, exit 0, numbers of nothing."""
    from i2i.evaluation import evaluate_run

    paired = i2i.load_recipe({"task": {"name": "paired"}, "generator": dict(TINY_GAN["generator"]), "losses": {"l1": {}}})
    from i2i.engine.components import build_networks

    run = i2i.create_run_from_weights(paired, build_networks(paired, torch.device("cpu")).G.state_dict(), tmp_path / "ab")
    with pytest.raises(i2i.RecipeError, match=r"^overrides task.direction=BtoA: the run learnt AtoB, so scored the other way "):
        evaluate_run(run, data_dir=photos, overrides=["task.direction=BtoA"])
