"""Which checkpoint a run directory resolves to, and what a user is told when it is not the
obvious one: no BEST yet, a LATEST pointer that is broken, weights of another network."""

import shutil

import pytest

import i2i
from helpers import TINY_G2C, make_photos, rewrite_checkpoint_file
from i2i.engine.checkpoint import find_checkpoint

G2C = {**TINY_G2C, "output": {**TINY_G2C["output"], "checkpoint_every": 1, "keep": 5}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-step run with step_0000001..3, LATEST and BEST (evaluated at the end)."""
    from i2i import plugins

    photos = make_photos(tmp_path_factory.mktemp("photos"))
    recipe = {**G2C, "data": {**G2C["data"], "source": str(photos)},
              "output": {**G2C["output"], "dir": str(tmp_path_factory.mktemp("runs") / "g2c")}}
    plugins.reset()
    return i2i.train(recipe, quiet=True).run_dir


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run that a test may damage."""
    return shutil.copytree(trained, tmp_path / "run")


def test_best_without_a_best_checkpoint_uses_the_latest_and_says_so(run, capsys):
    assert i2i.load(run, device="cpu", which="best").checkpoint.name == "step_0000003"
    assert capsys.readouterr().err == ""  # a BEST exists: nothing to say
    (run / "checkpoints" / "BEST").unlink()  # the latest checkpoint's record still names the best
    model = i2i.load(run, device="cpu", which="best")
    err = capsys.readouterr().err
    assert model.checkpoint.name == "step_0000003" and err.count("\n") == 1
    assert "checkpoints/BEST is missing; using step_0000003, the best that the latest checkpoint's record names" in err
    state = run / "checkpoints" / "step_0000003" / "state.json"
    rewrite_checkpoint_file(state, state.read_text().replace('"best": {', '"best_was": {'))  # no score recorded either
    model = i2i.load(run, device="cpu", which="best")
    err = capsys.readouterr().err
    assert model.checkpoint.name == "step_0000003" and err.count("\n") == 1
    assert err.startswith(f"i2i: note: {run} has no best checkpoint (no validation score was saved yet)")
    assert "using the latest, step 3" in err
    i2i.load(run, device="cpu")  # the latest, as asked: no note
    assert capsys.readouterr().err == ""


def test_best_of_one_checkpoint_folder_says_it_is_that_checkpoint(run, capsys):
    """`--checkpoint best` with a step folder used that step silently, whatever the run's best."""
    step = run / "checkpoints" / "step_0000001"
    assert find_checkpoint(step, "best") == step
    assert capsys.readouterr().err == (f"i2i: note: {step} is one checkpoint, so 'best' does not apply: using it; "
                                       f"for the run's best, give its run folder ({run})\n")
    assert find_checkpoint(step) == step and capsys.readouterr().err == ""  # the latest of one: as asked


def test_a_file_of_a_run_or_checkpoint_names_the_folder_to_give(run, tmp_path):
    """`i2i eval runs/x/recipe.toml` said the run's own recipe.toml was missing."""
    from i2i.errors import CheckpointError

    step = run / "checkpoints" / "step_0000001"
    for given, expected in ((run / "recipe.toml", f"give a run's folder ({run})"),
                            (step / "generator.safetensors", f"give a checkpoint's folder ({step})")):
        with pytest.raises(CheckpointError, match=f"^{given}: a file; {expected}$".replace("(", "\\(").replace(")", "\\)")):
            i2i.load(given, device="cpu")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(CheckpointError, match="notes.txt: a file, not a run folder or a checkpoint folder"):
        find_checkpoint(tmp_path / "notes.txt")


@pytest.mark.parametrize("latest, problem", [("step_0000009", "names step_0000009, which does not exist"), ("", "is empty")])
def test_a_broken_latest_pointer_falls_back_to_the_newest_complete_checkpoint(run, capsys, latest, problem):
    shutil.rmtree(run / "checkpoints" / "step_0000003")
    (run / "checkpoints" / "LATEST").write_text(latest)
    assert find_checkpoint(run).name == "step_0000002"
    err = capsys.readouterr().err
    assert err == f"i2i: note: {run / 'checkpoints' / 'LATEST'} {problem}; using the newest complete checkpoint, step_0000002\n"
    for step in ("step_0000001", "step_0000002"):
        shutil.rmtree(run / "checkpoints" / step)
    with pytest.raises(i2i.CheckpointError) as error:
        i2i.load(run, device="cpu")
    assert str(error.value) == (f"{run / 'checkpoints' / 'LATEST'}: {problem}, and no other complete step_* "
                                f"checkpoint is in {run / 'checkpoints'}")


def test_a_run_interrupted_before_its_first_latest_pointer_still_resumes(run):
    """A crash between renaming the first checkpoint into place and writing LATEST."""
    for name in ("LATEST", "BEST", "step_0000002", "step_0000003"):
        path = run / "checkpoints" / name
        path.unlink() if path.is_file() else shutil.rmtree(path)
    resumed = i2i.train(None, resume=run, overrides=["train.steps=2"], quiet=True)
    assert resumed.step == 2 and (run / "checkpoints" / "LATEST").read_text() == "step_0000002"


def test_weights_of_another_network_name_the_first_difference(run):
    recipe = run / "recipe.toml"
    text = recipe.read_text()
    recipe.write_text(text.replace("width = 4", "width = 8"))
    with pytest.raises(i2i.CheckpointError) as error:
        i2i.load(run, device="cpu")
    message = str(error.value)
    assert "Error(s)" not in message and "\n" not in message
    assert f"does not match the network in {recipe} (size mismatch for " in message
    assert "checkpoint [4, " in message and "network [8, " in message and "more difference(s))" in message
    recipe.write_text(text.replace("depth = 2", "depth = 3"))
    with pytest.raises(i2i.CheckpointError, match=r"\(missing key \S+ \(in the network, not in the checkpoint\)"):
        i2i.load(run, device="cpu")


def test_resuming_with_an_override_of_the_network_names_the_override(run):
    with pytest.raises(i2i.CheckpointError) as error:
        i2i.train(None, resume=run, overrides=["train.steps=5", "generator.width=8"], quiet=True)
    message = str(error.value)
    assert "does not match the recipe's network (size mismatch for " in message
    assert message.endswith("; the override(s) generator.width=8 may be why: resume without them")
    assert "train.steps" not in message


def test_a_run_folder_moved_while_training_is_not_made_again_at_the_next_checkpoint(tmp_path):
    """It was: the run went on into a new runs/x holding only checkpoints and samples, said
    'finished', and neither folder could be resumed whole."""
    import shutil

    import i2i
    from helpers import make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos")

    class MovesTheRun(i2i.Callback):
        def on_checkpoint(self, trainer, step, path):
            if step == 2:
                shutil.move(str(trainer.run_dir), str(tmp_path / "moved"))

    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 8}, output={"checkpoint_every": 2})
    with pytest.raises(i2i.CheckpointError, match=rf"^{tmp_path / 'run'}: the run folder is gone \(moved or deleted while "
                                                  r"the run trained\), so this checkpoint is not written; if it was moved, "
                                                  r"resume it where it is now: i2i run --resume NEW_PLACE$"):
        i2i.train(recipe, callbacks=[MovesTheRun()], quiet=True)
    assert not (tmp_path / "run").exists()
    resumed = i2i.train(None, resume=tmp_path / "moved", quiet=True)
    assert resumed.status == "finished" and resumed.step == 8


def test_run_files_of_the_wrong_kind_are_named_as_what_they_are(run, tmp_path):
    """A folder where a weights file or the recipe belongs was 'missing', random bytes were
    'truncated', a file where checkpoints/ belongs read as a run still training, and a recipe
    that is a loop of links was 'no such recipe file'."""
    step = run / "checkpoints" / "step_0000003"
    (step / "generator.safetensors").write_bytes(bytes(range(256)) * 2)
    for older in ("step_0000001", "step_0000002"):
        shutil.rmtree(run / "checkpoints" / older)
    with pytest.raises(i2i.CheckpointError, match=r"damaged \(generator.safetensors is not a safetensors file\)"):
        i2i.load(run)
    (step / "generator.safetensors").unlink()
    (step / "generator.safetensors").mkdir()
    with pytest.raises(i2i.CheckpointError, match=r"damaged \(generator.safetensors is a folder, not a file\)"):
        i2i.load(run)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("")
    with pytest.raises(i2i.CheckpointError, match=r"checkpoints: a file where the run keeps its folder of checkpoints"):
        i2i.load(run)
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    with pytest.raises(i2i.RecipeError, match=r"loopA: a symbolic link to .*loopB, which is not there \(or leads back "
                                              r"to itself\)"):
        i2i.load_recipe(tmp_path / "loopA")


def test_a_recipe_toml_that_is_a_folder_is_named_as_one(run):
    (run / "recipe.toml").unlink()
    (run / "recipe.toml").mkdir()
    with pytest.raises(i2i.CheckpointError, match=r"recipe.toml: a folder where the run keeps its recipe file"):
        i2i.load(run)


def test_a_pointer_file_given_as_the_model_names_the_checkpoint_it_points_to(run):
    with pytest.raises(i2i.CheckpointError, match=rf"LATEST: a pointer file; give {run / 'checkpoints' / 'step_0000003'} "
                                                  rf"for that checkpoint, or the run folder {run}$"):
        i2i.load(run / "checkpoints" / "LATEST")
    # each in its caller's words: i2i.load's argument, the command's option
    with pytest.raises(i2i.CheckpointError, match=r'BEST: a pointer file; give .* \(which="best"\)$'):
        i2i.load(run / "checkpoints" / "BEST")
    from click.testing import CliRunner

    from i2i.cli import cli

    result = CliRunner().invoke(cli, ["translate", str(run / "checkpoints" / "BEST"), str(run), "--out", str(run / "o")])
    assert result.exit_code != 0 and result.output.rstrip().endswith(f"the run folder {run} with --checkpoint best")
