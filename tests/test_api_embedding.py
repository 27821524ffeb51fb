"""A program that embeds i2i: what help() tells it, and the mistakes it makes most (a Path in a
dict recipe, overrides as a dict, a plugin without @i2i.hookimpl) answered with one clear line."""

import inspect
import types
from pathlib import Path

import pytest
import torch

import i2i
from helpers import TINY_G2C, make_photos, tiny_recipe


def test_help_shows_the_keywords_of_train_and_load_as_the_engine_takes_them():
    from i2i.engine.run import train
    from i2i.model import load

    engine = dict(inspect.signature(train).parameters)
    engine.pop("dist")  # torchrun's process group: internal
    public = inspect.signature(i2i.train).parameters
    assert list(public) == list(engine)
    assert all(public[name].default == engine[name].default and public[name].kind == engine[name].kind for name in engine)
    public, engine = inspect.signature(i2i.load).parameters, inspect.signature(load).parameters
    assert list(public) == list(engine)
    assert all(public[name].default == engine[name].default and public[name].kind == engine[name].kind for name in engine)
    for attribute in ("run_dir", "status", "metrics", "baselines", "generator", "TrainingStopped"):
        assert attribute in i2i.train.__doc__
    for attribute in ("which", "best", "generator", "checkpoint", "translate"):
        assert attribute in i2i.load.__doc__


def test_a_dict_recipe_may_name_folders_as_paths(tmp_path):
    recipe = i2i.load_recipe({**TINY_G2C, "data": {**TINY_G2C["data"], "source": tmp_path},
                              "output": {**TINY_G2C["output"], "dir": tmp_path / "run"}})
    assert recipe["data"]["source"] == str(tmp_path) and recipe["output"]["dir"] == str(tmp_path / "run")


def test_recipe_mistakes_of_a_program_get_one_line_saying_what_to_pass(tmp_path):
    with pytest.raises(TypeError, match=r"not a dict: e\.g\. \['train\.steps=7'\]"):
        i2i.load_recipe(TINY_G2C, overrides={"train.steps": 7})
    with pytest.raises(i2i.RecipeError, match=r"^load_recipe got TOML text where a path belongs: .*tomllib\.loads") as error:
        i2i.load_recipe("[task]\nname = 'denoise'\n")
    assert "\n" not in str(error.value)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.toml").write_text("")
    with pytest.raises(i2i.RecipeError, match=r"run: a folder, not a recipe file; a run's recipe is .*run/recipe\.toml"):
        i2i.load_recipe(tmp_path / "run")
    with pytest.raises(TypeError, match=r"not NoneType; to continue a run: i2i\.train\(None, resume=RUN_DIR\)"):
        i2i.train(None)


def test_registry_of_an_unknown_kind_is_a_user_error():
    with pytest.raises(i2i.UserError, match=r"unknown kind 'lossess' \(did you mean 'losses'\?\)"):
        i2i.registry("lossess")


def test_plugin_registration_mistakes_are_named(capsys):
    forgot = types.ModuleType("forgot")
    forgot.register_generators = lambda register: register("forgot_net", lambda in_channels, out_channels: None)
    info = i2i.register_plugin(forgot, "forgot")  # pluggy would skip the function silently
    assert info.status == "failed" and "register_generators is not marked @i2i.hookimpl" in info.error
    assert "plugin 'forgot' (forgot) disabled" in capsys.readouterr().err
    assert "forgot_net" not in i2i.registry().names("generators")

    misspelt = types.ModuleType("misspelt")
    misspelt.register_generator = i2i.hookimpl(lambda register: None)
    info = i2i.register_plugin(misspelt, "misspelt")  # a pip user has no i2i/hookspecs.py to look in
    assert info.status == "failed" and "unknown hook 'register_generator' (did you mean 'register_generators'?); " \
        "i2i's hooks: register_callbacks, register_commands, register_discriminators, register_generators" in info.error
    capsys.readouterr()

    i2i.register_plugin(types.ModuleType("empty"), "empty")
    assert "plugin 'empty' (empty) has no @i2i.hookimpl hooks, so it registers nothing" in capsys.readouterr().err

    mine = types.ModuleType("mine")
    mine.register_generators = i2i.hookimpl(lambda register: register("mine_net", lambda in_channels, out_channels: None))
    assert i2i.register_plugin(mine, "mine").status == "loaded"
    assert i2i.register_plugin(mine, "mine").status == "loaded"  # again: nothing changes
    with pytest.raises(i2i.UserError, match="mine is already registered as plugin 'mine'"):
        i2i.register_plugin(mine, "mine2")
    assert "mine2" not in i2i.plugins.host().plugins and i2i.registry("generators")["mine_net"].plugin == "mine"
    with pytest.raises(TypeError, match="not 'mine'; import it and pass the module"):
        i2i.register_plugin("mine", "by_name")
    with pytest.raises(TypeError, match="not None"):
        i2i.register_plugin(None, "nothing")

    class Methods:
        @i2i.hookimpl
        def register_generators(self, register):
            register("methods_net", lambda in_channels, out_channels: None)

    with pytest.raises(TypeError, match=r"^register_plugin takes an instance of Methods, whose hooks are methods: "
                                        r"i2i\.register_plugin\(Methods\(\), 'methods'\)$"):
        i2i.register_plugin(Methods, "methods")  # pluggy would call the hook without self, and disable it
    # shown as registered: what a run records, and what its missing-plugin error tells a program to call
    assert i2i.register_plugin(Methods(), "methods").module == "Methods()"


def test_a_trained_run_from_a_path_recipe_loads_with_its_documented_attributes(tmp_path):
    photos = make_photos(tmp_path / "photos", count=3, size=(32, 32))
    run = i2i.train({**TINY_G2C, "data": {**TINY_G2C["data"], "source": Path(photos)},
                     "train": {**TINY_G2C["train"], "steps": 1}}, out=tmp_path / "run", quiet=True)
    assert run.status == "finished" and run.step == 1 and run.run_dir == tmp_path / "run"
    assert run.recipe["data"]["source"] == str(photos)
    model = i2i.load(run.run_dir, device="cpu", which="best")
    assert model.checkpoint.parent == run.run_dir / "checkpoints" and str(model.device) == "cpu"
    assert model.recipe["task"]["name"] == "gray2color" and not model.generator.training


def test_a_callback_class_passed_for_an_instance_is_named_before_the_run_starts(tmp_path):
    class Watch(i2i.Callback):
        pass

    photos = make_photos(tmp_path / "photos", count=3, size=(32, 32))
    recipe = {**TINY_G2C, "data": {**TINY_G2C["data"], "source": str(photos)}, "train": {**TINY_G2C["train"], "steps": 1}}
    with pytest.raises(TypeError, match=r"callbacks take instances: pass Watch\(\), not the class Watch"):
        i2i.train(recipe, out=tmp_path / "run", callbacks=[Watch], quiet=True)
    assert not (tmp_path / "run").exists()  # the run folder made for it is gone again
    with pytest.raises(TypeError, match=r"callbacks take i2i.Callback instances \(or objects with on_\* event methods\); "
                                        r"object has none of on_checkpoint, "):
        i2i.train(recipe, out=tmp_path / "run", callbacks=[object()], quiet=True)
    assert not (tmp_path / "run").exists()


def test_a_function_passed_as_a_callback_is_refused_before_a_note_names_a_run_folder(tmp_path, capsys):
    """The note 'runs/x already exists; this one goes to runs/x-2' came first, for a run that
    then never started."""
    photos = make_photos(tmp_path / "photos", count=3, size=(32, 32))
    (tmp_path / "run").mkdir()
    recipe = {**TINY_G2C, "data": {**TINY_G2C["data"], "source": str(photos)}, "train": {**TINY_G2C["train"], "steps": 1}}
    with pytest.raises(TypeError, match=r"has none of on_checkpoint, "):
        i2i.train(recipe, out=tmp_path / "run", callbacks=[lambda trainer: None], quiet=True)
    assert "already exists" not in capsys.readouterr().err
    assert not (tmp_path / "run-2").exists()


def test_a_second_run_in_the_same_process_while_one_trains_is_refused(tmp_path):
    """Two runs in two threads changed each other's weights through torch's global random
    streams and left the caller's seed as one of them had found it."""
    photos = make_photos(tmp_path / "photos", count=3, size=(32, 32))
    recipe = {**TINY_G2C, "data": {**TINY_G2C["data"], "source": str(photos)}, "train": {**TINY_G2C["train"], "steps": 2}}
    refused = []

    class TrainsAgain(i2i.Callback):
        def on_run_start(self, trainer):
            with pytest.raises(i2i.UserError, match=r"^another i2i.train is running in this process .*a process "
                                                    r"trains one run at a time"):
                i2i.train(recipe, out=tmp_path / "second", quiet=True)
            refused.append(trainer.step)

    torch.manual_seed(42)
    run = i2i.train(recipe, out=tmp_path / "first", callbacks=[TrainsAgain()], quiet=True)
    assert refused and run.status == "finished" and not (tmp_path / "second").exists()
    assert torch.initial_seed() == 42
    assert i2i.train(recipe, out=tmp_path / "after", quiet=True).status == "finished"  # the lock was let go


def test_validate_pins_the_folders_it_checked_for_a_later_train_elsewhere(tmp_path, monkeypatch):
    """A service validated a job's recipe in one working directory and trained it in another,
    on another folder of the same relative name."""
    make_photos(tmp_path / "a" / "photos", count=3, size=(32, 32))
    make_photos(tmp_path / "b" / "photos", count=3, size=(32, 32))
    recipe = {**TINY_G2C, "data": {**TINY_G2C["data"], "source": "photos"}, "output": {**TINY_G2C["output"], "dir": "runs/job"}}
    monkeypatch.chdir(tmp_path / "a")
    checked = i2i.validate(recipe)
    assert checked["data"]["source"] == str(tmp_path / "a" / "photos")
    assert checked["output"]["dir"] == "runs/job"  # where it trains, as documented
    monkeypatch.chdir(tmp_path / "b")
    run = i2i.train(checked, quiet=True)
    assert run.recipe["data"]["source"] == str(tmp_path / "a" / "photos")
    assert run.run_dir == tmp_path / "b" / "runs" / "job"


def test_notes_and_warnings_are_records_of_the_i2i_logger_a_program_can_take_over(tmp_path, capsys):
    """A service embedding i2i had its notes on stderr only: no levels, no way to route them
    into its own log or to keep only the warnings."""
    import logging

    import i2i.messages

    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 1})
    i2i.train(recipe, quiet=True)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    root = logging.getLogger()
    keep = Keep()
    root.addHandler(keep)
    logger = logging.getLogger("i2i")
    try:
        i2i.train(recipe, quiet=True)  # a note: "run already exists ...; this one goes to run-2"
        assert records == [] and "this one goes to" in capsys.readouterr().err  # by default: stderr, as the CLI shows them
        i2i.messages.to_your_logging()
        i2i.train(recipe, quiet=True)
        assert capsys.readouterr().err == ""
        [note] = [record for record in records if "this one goes to" in record.getMessage()]
        assert (note.name, note.levelno) == ("i2i", logging.INFO) and note.getMessage().endswith("run-3")
        records.clear()
        logger.setLevel(logging.WARNING)
        i2i.messages.say("i2i: note: kept out")
        i2i.messages.say("i2i: warning: kept")
        # the record's text without the command line's "i2i: warning:": the handler names logger and level
        assert [(r.levelno, r.getMessage()) for r in records] == [(logging.WARNING, "kept")]
    finally:
        root.removeHandler(keep)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        if i2i.messages.STDERR_HANDLER not in logger.handlers:
            logger.addHandler(i2i.messages.STDERR_HANDLER)


def test_the_api_speaks_of_overrides_where_the_command_line_says_set(tmp_path, capsys):
    """Hints and notes inside the API's messages still said '--set ...', an option no Python
    caller has."""
    from plugin_env import ROOT

    with pytest.raises(i2i.UserError, match=r"^overrides losses.L1.weight=50: the recipe has no \[losses.L1\]; did you "
                                            r"mean the override losses.l1.weight=50\?$"):
        i2i.load_recipe(ROOT / "recipes" / "color2gray.toml", overrides=["losses.L1.weight=50"])
    [note] = i2i.load_recipe(ROOT / "recipes" / "denoise.toml", overrides=["generator.name=unet_small"]).notes
    assert note.startswith("overrides generator.name=unet_small replaces generator 'unet'") and "--set" not in note
    assert note.endswith("(the override generator.OPTION=VALUE gives one to the new one)")
    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 1})
    i2i.train(recipe, overrides=['generator={name="unet", depth=2}'], quiet=True)  # a whole table replaced: a note
    err = capsys.readouterr().err
    assert ("i2i: note: overrides generator={name=\"unet\", depth=2} replaces the recipe's whole [generator] table" in err
            and "--set" not in err)


def test_validate_checks_what_load_recipe_leaves_to_the_components_as_i2i_validate_does(tmp_path):
    """A service that checked users' recipes with load_recipe queued task.sigma = -3, which
    only the task's own check refuses, at the start of training."""
    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C)
    recipe["task"] = {"name": "denoise", "sigma": -3}
    assert i2i.load_recipe(recipe)["task"]["sigma"] == -3.0  # names and types are fine
    with pytest.raises(i2i.RecipeError, match=r"^<recipe>: task.sigma = -3.0: expected a noise level above 0 and at "
                                              r"most 255 \(0-255 scale\), or a range \[low, high\]$"):
        i2i.validate(recipe)
    with pytest.raises(i2i.RecipeError, match=r"^overrides task.sigma=\[55, 0\]: task.sigma = \[55.0, 0.0\]: expected "
                                              r"0 <= low <= high"):
        i2i.validate(recipe, ["task.sigma=[55, 0]"])
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    resolved = i2i.validate(recipe, ["task.sigma=25"])
    assert torch.equal(torch.rand(3), expected)  # the networks it built drew no numbers from the caller's stream
    assert resolved["task"]["sigma"] == 25 and resolved["generator"]["depth"] == 2
    assert not (tmp_path / "run").exists()  # nothing trained, no folder made
