"""Trusting i2i with runs: one process per run folder, exact logs after a stop, damaged
checkpoints and full disks (found by trying to break runs from the outside)."""

import errno
import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import i2i
from helpers import TINY_G2C, make_photos, rewrite_checkpoint_file, tiny_recipe
from i2i.cli import cli
from i2i.engine import checkpoint as ckpt
from i2i.engine.run_lock import run_folder_locked
from i2i.recipe import dumps_toml


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), count=4, size=(24, 24))


def recipe_of(photos, out, **sections):
    return tiny_recipe(photos, out, base=TINY_G2C, **sections)


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory):
    """A 4-step run with checkpoints at steps 2 and 4."""
    recipe = recipe_of(photos, tmp_path_factory.mktemp("runs") / "run", train={"steps": 4, "precision": "fp32"},
                       output={"checkpoint_every": 2, "keep": 5})
    return i2i.train(recipe, quiet=True).run_dir


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run that a test may damage."""
    return shutil.copytree(trained, tmp_path / "run")


def test_a_run_being_trained_cannot_be_resumed_by_a_second_process(run):
    """Two processes in one folder mixed histories and pruned each other's checkpoints."""
    import fcntl
    import os

    fd = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another training process holds it
        with pytest.raises(i2i.UserError, match="another i2i process is training this run now"):
            i2i.train(None, resume=run, overrides=["train.steps=6"], quiet=True)
        # one training its first steps has no checkpoint yet: that said 'start it again', a second run
        young = shutil.copytree(run, run.parent / "young", ignore=shutil.ignore_patterns("step_*", "LATEST", "BEST"))
        young_fd = os.open(young, os.O_RDONLY)
        fcntl.flock(young_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(i2i.UserError, match="another i2i process is training this run now"):
            i2i.train(None, resume=young, quiet=True)
        os.close(young_fd)
    finally:
        os.close(fd)
    assert i2i.train(None, resume=run, overrides=["train.steps=5"], quiet=True).step == 5  # released: fine
    with run_folder_locked(run):  # a training of this process (another thread) holds it
        with pytest.raises(i2i.UserError, match=r"this process is training this run already \(in another thread, or a "
                                                r"callback of that training called this\)"):
            i2i.train(None, resume=run, overrides=["train.steps=6"], quiet=True)


def test_after_a_stop_the_resumed_runs_logged_means_are_an_uninterrupted_runs(photos, tmp_path):
    """The stop's log line emptied the window of unlogged steps before the checkpoint kept it:
    the next logged mean after a resume covered fewer steps."""
    def recipe(out):
        return recipe_of(photos, out, train={"steps": 8, "precision": "fp32"}, output={"log_every": 3})

    straight = i2i.train(recipe(tmp_path / "straight"), quiet=True).run_dir
    with pytest.raises(i2i.TrainingStopped):  # after step 4, between the logs at steps 3 and 6
        i2i.train(recipe(tmp_path / "stopped"), callbacks=[StopEvery(4)], quiet=True)
    resumed = i2i.train(None, resume=tmp_path / "stopped", quiet=True).run_dir

    def logged(run_dir, step):
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [line for line in lines if line.get("type") == "train" and line["step"] == step][-1]

    assert logged(resumed, 6)["g_l1"] == pytest.approx(logged(straight, 6)["g_l1"], rel=1e-6)
    a = load_file(straight / "checkpoints" / "step_0000008" / "generator.safetensors")
    b = load_file(resumed / "checkpoints" / "step_0000008" / "generator.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


class StopEvery(i2i.Callback):
    """Asks for a stop when step ``at`` is done, as Ctrl-C there would."""

    def __init__(self, at):
        self.at = at

    def on_run_start(self, trainer):
        original = trainer.train_step

        def step():
            original()
            if trainer.step + 1 == self.at:
                trainer.request_stop()
        trainer.train_step = step


def test_a_stop_before_the_first_step_leaves_no_folder(photos, tmp_path):
    class StopAtOnce(i2i.Callback):
        def on_run_start(self, trainer):
            trainer.request_stop()

    with pytest.raises(i2i.TrainingStopped, match="stopped before the first step; nothing was trained"):
        i2i.train(recipe_of(photos, tmp_path / "run"), callbacks=[StopAtOnce()], quiet=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("file, damage", [("generator.safetensors", "truncated"), ("rng.safetensors", "truncated"),
                                          ("rng.safetensors", "missing"), ("optim_g.safetensors", "missing")])
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(run, capsys, file, damage):
    """A file a resume reads, deleted, was a hard error where the same file truncated fell back."""
    newest = run / "checkpoints" / "step_0000004" / file
    if damage == "missing":
        newest.unlink()
    else:
        newest.write_bytes(newest.read_bytes()[:100])
    assert ckpt.find_checkpoint(run).name == "step_0000002"
    assert f"step_0000004 is damaged ({file} is {damage}); using step_0000002" in capsys.readouterr().err
    assert i2i.train(None, resume=run, overrides=["train.steps=5"], quiet=True).step == 5


@pytest.mark.parametrize("file, content", [("state.json", "[]"), ("rng.safetensors", None)])
def test_checkpoint_files_with_the_wrong_contents_are_one_line(run, file, content):
    """A JSON list for the state, or another file's tensors, were tracebacks."""
    target = run / "checkpoints" / "step_0000004" / file
    if content is None:
        shutil.copy(target.with_name("generator.safetensors"), target)
    else:
        target.write_text(content)
    shutil.rmtree(run / "checkpoints" / "step_0000002")  # no intact one to fall back to
    with pytest.raises(i2i.CheckpointError, match="step_0000004"):
        i2i.train(None, resume=run, overrides=["train.steps=5"], quiet=True)


def test_resume_refuses_to_record_another_output_folder(run):
    with pytest.raises(i2i.UserError, match=r"overrides output.dir=/elsewhere: a resumed run stays in its folder"):
        i2i.train(None, resume=run, overrides=["output.dir=/elsewhere", "train.steps=5"], quiet=True)


def test_resuming_a_checkpoint_folder_points_at_its_run(run):
    with pytest.raises(i2i.UserError, match=r"is a checkpoint folder of the run .*; resume the run: i2i run --resume"):
        i2i.train(None, resume=run / "checkpoints" / "step_0000002", quiet=True)


def test_a_full_disk_is_one_line_naming_the_file(photos, tmp_path, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ckpt, "write_atomic", full)
    monkeypatch.setattr("i2i.engine.run.ckpt.write_atomic", full, raising=False)
    (tmp_path / "r.toml").write_text(dumps_toml(recipe_of(photos, tmp_path / "run")))
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "r.toml")])
    assert result.exit_code == 1
    assert "cannot write (No space left on device); free some space" in result.output
    assert "Traceback" not in result.output


def test_a_full_disk_while_logging_names_the_log_and_the_checkpoint_to_resume_from(photos, tmp_path, monkeypatch):
    """It named no file, and advised 'i2i run --resume RUN_DIR' whether or not a checkpoint existed."""
    from i2i.engine import report

    recipe = recipe_of(photos, tmp_path / "run", train={"steps": 2})
    i2i.train(recipe, quiet=True)

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

        def close(self):
            pass

    real_init = report.MetricsLog.__init__

    def on_a_full_disk(self, path, resumed_at=None):
        real_init(self, path, resumed_at)
        self.handle.close()
        self.handle = FullDisk()

    monkeypatch.setattr(report.MetricsLog, "__init__", on_a_full_disk)
    result = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path / "run"), "--set", "train.steps=4", "--quiet"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output == (f"i2i: error: {tmp_path / 'run' / 'metrics.jsonl'}: cannot write (No space left on device); "
                             f"free some space. Its last checkpoint, step_0000002, is intact: i2i run --resume "
                             f"{tmp_path / 'run'} continues from it once there is room\n")


def test_a_file_where_the_run_writes_a_folder_is_one_line(photos, tmp_path):
    recipe = recipe_of(photos, tmp_path / "run", train={"steps": 2})
    i2i.train(recipe, quiet=True)
    shutil.rmtree(tmp_path / "run" / "samples", ignore_errors=True)
    (tmp_path / "run" / "samples").write_text("")
    result = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path / "run"), "--set", "train.steps=4", "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[-1].startswith(f"i2i: error: {tmp_path / 'run' / 'samples'}: cannot be written "
                                                     "(File exists; it is a file); move it away")


def test_a_checkpoint_the_disk_cannot_hold_exits_1_as_other_full_disk_errors(photos, tmp_path, monkeypatch):
    """It exited 2, the status of recipe mistakes: a script could not tell them apart."""
    write = ckpt._write_content

    def full(handle, data):
        if "step_" in handle.name:  # the checkpoint's files, not the run's recipe.toml
            raise OSError(errno.ENOSPC, "No space left on device")
        write(handle, data)

    monkeypatch.setattr(ckpt, "_write_content", full)
    (tmp_path / "r.toml").write_text(dumps_toml(recipe_of(photos, tmp_path / "run", train={"steps": 2})))
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "r.toml"), "--quiet"])
    assert result.exit_code == 1 and "cannot write this checkpoint (No space left on device)" in result.output


def test_a_full_disk_at_an_evaluations_sample_grid_is_one_line_and_keeps_the_score(photos, tmp_path, monkeypatch):
    """The grid is written after the scores are logged: a full disk there said 'could not save
    the weights after the evaluation failed', though the evaluation had not, then the error."""
    import torchvision.utils

    write = ckpt._write_content

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def full_after_step_2(handle, data):
        if "step_0000004" in handle.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(handle, data)

    monkeypatch.setattr(torchvision.utils, "save_image", full)
    monkeypatch.setattr(ckpt, "_write_content", full_after_step_2)
    recipe = recipe_of(photos, tmp_path / "run", train={"steps": 4}, eval={"every": 4},
                       output={"checkpoint_every": 2, "sample_every": 0})
    (tmp_path / "r.toml").write_text(dumps_toml(recipe))
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "r.toml"), "--quiet"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "cannot write this checkpoint (No space left on device); the last one, step_0000002, is intact" in result.output
    evals = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [4]  # its score is kept


def test_a_full_disk_at_the_last_steps_grid_does_not_promise_a_resume(photos, tmp_path, monkeypatch):
    """It said 'i2i run --resume continues from it once there is room'; the resume then said the
    run was already trained to its last step."""
    import torchvision.utils

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torchvision.utils, "save_image", full)
    recipe = recipe_of(photos, tmp_path / "run", train={"steps": 2}, output={"sample_every": 0})
    (tmp_path / "r.toml").write_text(dumps_toml(recipe))
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "r.toml"), "--quiet"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.endswith(f"Its last checkpoint, step_0000002, is intact and holds the trained run (i2i eval "
                                  f"{tmp_path / 'run'} scores it; a resume has no step left to train)\n")


def test_a_run_folder_moved_before_an_evaluation_is_one_line(photos, tmp_path):
    """Its sample grid's folder could not be made: a FileNotFoundError traceback."""
    class MovesTheRun(i2i.Callback):
        def on_checkpoint(self, trainer, step, path):
            if step == 2:
                shutil.move(str(trainer.run_dir), str(tmp_path / "moved"))

    recipe = recipe_of(photos, tmp_path / "run", train={"steps": 4}, eval={"every": 3},
                       output={"checkpoint_every": 2, "sample_every": 0})
    with pytest.raises(i2i.CheckpointError, match=r"the run folder is gone \(moved or deleted while the run trained\)"):
        i2i.train(recipe, callbacks=[MovesTheRun()], quiet=True)
    assert i2i.train(None, resume=tmp_path / "moved", quiet=True).step == 4


@pytest.mark.parametrize("overrides, said", [
    (["train.seed=10000000000000000"], "train.seed = 10000000000000000: expected a whole number from 0 to 4294967295"),
    (["discriminator.name=patchgan", "discriminator.n_layers=1"], "--set discriminator.n_layers=1: discriminator: no adversarial loss"),
    (["generator.init_gain=-1"], "--set generator.init_gain=-1: generator.init_gain = -1.0: must be a number above 0"),
])
def test_recipe_values_that_failed_late_or_blamed_the_file_are_named_up_front(photos, tmp_path, overrides, said):
    (tmp_path / "r.toml").write_text(dumps_toml(recipe_of(photos, tmp_path / "run")))
    sets = [part for override in overrides for part in ("--set", override)]
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "r.toml"), *sets])
    assert result.exit_code == 2 and said in result.output, result.output


def test_a_missing_data_folder_from_a_set_names_the_set(photos, tmp_path):
    with pytest.raises(i2i.UserError, match=r'^overrides data.source=/nowhere/photos: data.source = "/nowhere/photos": no such folder'):
        i2i.train(recipe_of(photos, tmp_path / "run"), overrides=["data.source=/nowhere/photos"], quiet=True)


def test_a_utf16_recipe_without_a_byte_order_mark_is_named(tmp_path):
    path = tmp_path / "r.toml"
    path.write_bytes('[task]\nname = "denoise"\n'.encode("utf-16-le"))
    with pytest.raises(i2i.RecipeError, match="looks like UTF-16 text .*; save it as UTF-8"):
        i2i.load_recipe(path)


def test_resuming_what_is_not_a_run_folder_is_a_checkpoint_error_saying_what_it_is(tmp_path):
    with pytest.raises(i2i.CheckpointError, match=r"nowhere: no such run folder; pass the folder a run was written to$"):
        i2i.train(None, resume=tmp_path / "nowhere", quiet=True)
    (tmp_path / "recipe.toml").write_text("")
    with pytest.raises(i2i.CheckpointError, match=r"recipe\.toml: is a file; pass the folder a run was written to "
                                                  r"\(its parent, .*, if that is the run\)$"):
        i2i.train(None, resume=tmp_path / "recipe.toml", quiet=True)


def test_a_run_folder_made_read_only_is_one_line_naming_it(photos, tmp_path, monkeypatch):
    """chmod 555 or chattr +i on a run folder, then a resume: a PermissionError traceback."""
    from i2i.engine import run as run_module

    recipe = recipe_of(photos, tmp_path / "run", train={"steps": 2})
    i2i.train(recipe, quiet=True)

    def not_allowed(run_dir, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "run" / ".recipe.toml.tmp-123"))

    monkeypatch.setattr(run_module, "_write_run_files", not_allowed)
    result = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path / "run"), "--set", "train.steps=4", "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output == (f"i2i: error: {tmp_path / 'run'}: Permission denied; give your user access to it (and to "
                             f"the folder that holds it). Its last checkpoint, step_0000002, is intact: i2i run --resume "
                             f"{tmp_path / 'run'} continues from it once it may write there\n")


def test_a_resume_scored_under_other_settings_keeps_the_old_best_and_chooses_again(run, capsys):
    """A best scored at another crop (or noise level) was compared with the resumed run's
    scores as if alike, and pruned when a worse-scoring checkpoint beat its number."""
    assert (run / "checkpoints" / "BEST").read_text() == "step_0000004"
    capsys.readouterr()
    i2i.train(None, resume=run, overrides=["train.steps=6", "eval.crop=16", "output.keep=0"], quiet=True)
    err = capsys.readouterr().err
    assert ("i2i: note: the run's best so far was scored under other settings (eval.crop = 32 then, 16 now), so its "
            "score cannot be compared with this resume's: the best is chosen again from this resume's evaluations; "
            "step_0000004 stays (checkpoints/BEST-until-step_0000004 names it)") in err
    checkpoints = run / "checkpoints"
    assert (checkpoints / "BEST-until-step_0000004").read_text() == "step_0000004"
    assert (checkpoints / "step_0000004").is_dir()  # kept through output.keep = 0
    assert (checkpoints / "BEST").read_text() == "step_0000006"
    assert ckpt.read_state(checkpoints / "step_0000006")["best"]["scored_with"]["eval.crop"] == 16
    i2i.train(None, resume=run, overrides=["train.steps=8", "eval.crop=16", "output.keep=0"], quiet=True)
    assert "other settings" not in capsys.readouterr().err  # scored alike now: compared as usual
    assert (checkpoints / "step_0000004").is_dir() and not (checkpoints / "step_0000002").exists()


def test_settings_changed_back_compare_with_the_best_scored_under_them(run, capsys):
    """eval.crop changed and changed back: the best scored at the first crop was retired and
    forgotten, so a worse checkpoint of the last resume became BEST."""
    checkpoints = run / "checkpoints"
    first = ckpt.read_state(checkpoints / "step_0000004")["best"]
    i2i.train(None, resume=run, overrides=["train.steps=6", "eval.crop=16"], quiet=True)
    capsys.readouterr()
    i2i.train(None, resume=run, overrides=["train.steps=8", "eval.crop=32"], quiet=True)
    err = capsys.readouterr().err
    assert "scored under other settings (eval.crop = 16 then, 32 now)" in err  # step 6's best, retired in turn
    assert (f"i2i: note: step_0000004 (psnr {first['value']:.4g}, checkpoints/BEST-until-step_0000004 names it) was "
            "scored under this resume's settings, so it is the best again") in err
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    at_8 = [row["metrics"]["psnr"] for row in evals if row["type"] == "eval" and row["step"] == 8][-1]
    best = ckpt.read_state(checkpoints / "step_0000008")["best"]
    assert best["value"] == max(first["value"], at_8) and best["scored_with"]["eval.crop"] == 32
    assert (checkpoints / "BEST").read_text() == ("step_0000008" if at_8 > first["value"] else "step_0000004")


def test_resuming_from_an_earlier_checkpoint_sets_the_later_ones_aside(run, capsys):
    """Pointing LATEST back (as the README says to resume from an earlier checkpoint) wrote the
    steps trained again over the later checkpoints, the best among them included."""
    later = (run / "checkpoints" / "step_0000004" / "generator.safetensors").read_bytes()
    grids = {p.name: p.read_bytes() for p in (run / "samples").glob("step_*.png") if p.name > "step_0000002.png"}
    lines = [line for line in (run / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] > 2]
    (run / "checkpoints" / "LATEST").write_text("step_0000002")
    capsys.readouterr()
    i2i.train(None, resume=run, overrides=["train.steps=4", "train.g.lr=1e-5"], quiet=True)
    aside = run / "checkpoints" / "later-than-step_0000002"
    assert (f"i2i: note: resuming from step_0000002, before step_0000004: moved them, with their sample grids and "
            f"metrics.jsonl lines, to {aside}, so the steps trained again write nothing over them") in capsys.readouterr().err
    assert (aside / "step_0000004" / "generator.safetensors").read_bytes() == later
    # the later branch's grids and scores, which the steps trained again wrote over and dropped
    assert grids and {p.name: p.read_bytes() for p in (aside / "samples").iterdir()} == grids
    assert lines and (aside / "metrics.jsonl").read_text().splitlines() == lines
    assert (run / "checkpoints" / "step_0000004" / "generator.safetensors").read_bytes() != later  # trained again
    assert ckpt.find_checkpoint(run).name == "step_0000004"


def test_a_best_pointer_deleted_by_hand_costs_no_best_checkpoint(run, capsys):
    """Pruning kept what BEST named: with BEST gone, the best weights were deleted at the next
    checkpoint, and eval --checkpoint best said no score had been saved."""
    checkpoints = run / "checkpoints"
    state = json.loads((checkpoints / "step_0000004" / "state.json").read_text())
    state["best"] = {**state["best"], "step": 2}  # the run's record: step 2 scored best
    rewrite_checkpoint_file(checkpoints / "step_0000004" / "state.json", json.dumps(state))
    (checkpoints / "BEST").unlink()
    store = ckpt.CheckpointStore(run)
    store.prune(0)
    assert (checkpoints / "step_0000002").is_dir()
    assert i2i.load(run, which="best").checkpoint.name == "step_0000002"
    assert "checkpoints/BEST is missing; using step_0000002, the best that the latest checkpoint's record names" in \
        capsys.readouterr().err
    store.agree_best(state["best"])
    assert (checkpoints / "BEST").read_text() == "step_0000002"
    assert "BEST was missing; the run's record names step_0000002 its best" in capsys.readouterr().err


def test_a_checkpoint_whose_weights_were_overwritten_with_nan_is_named_damaged(run):
    """Bytes damaged past the header loaded as NaN weights: eval printed nan, translate wrote
    garbage, a resume blamed the learning rate."""
    file = run / "checkpoints" / "step_0000004" / "generator.safetensors"
    data = bytearray(file.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[start:start + 64] = b"\xff" * 64
    rewrite_checkpoint_file(file, bytes(data))  # the sums agree: the NaN check stands on its own
    with pytest.raises(i2i.CheckpointError, match=r"generator.safetensors: .* holds NaN or infinite values, which i2i "
                                                  r"never saves: the file is damaged; use an earlier checkpoint"):
        i2i.load(run)
    assert i2i.load(run / "checkpoints" / "step_0000002").checkpoint.name == "step_0000002"


def test_a_file_too_large_for_the_process_is_one_line_naming_the_file(photos, tmp_path, monkeypatch):
    """ulimit -f: Pillow's error while saving a sample grid named no file, and was a traceback."""
    import torchvision.utils

    def too_large(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(torchvision.utils, "save_image", too_large)
    (tmp_path / "r.toml").write_text(dumps_toml(recipe_of(photos, tmp_path / "run", train={"steps": 2})))
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "r.toml"), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[-1].startswith(
        f"i2i: error: {tmp_path / 'run' / 'samples' / 'step_0000002.png'}: cannot write (File too large); the file grew "
        "past the largest this process may write (ulimit -f)")
    # the grid is written last: the evaluation it belonged to keeps its score and its say in BEST
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "eval"] == [2]
    assert (tmp_path / "run" / "checkpoints" / "BEST").read_text() == "step_0000002"


def test_a_retired_best_is_never_replaced_and_follows_the_resumed_record(run, capsys):
    """A second retirement at one step overwrote the first pointer (its checkpoint was then
    pruned); after LATEST was pointed back, the pointer named a checkpoint of the abandoned
    branch rather than the resumed record's best."""
    checkpoints = run / "checkpoints"
    i2i.train(None, resume=run, overrides=["train.steps=6", "eval.crop=16"], quiet=True)
    assert (checkpoints / "BEST-until-step_0000004").read_text() == "step_0000004"
    (checkpoints / "LATEST").write_text("step_0000004")  # back to the crop-32 branch, scored now at 24
    capsys.readouterr()
    i2i.train(None, resume=run, overrides=["train.steps=6", "eval.crop=24"], quiet=True)
    err = capsys.readouterr().err
    assert "step_0000004 stays (checkpoints/BEST-until-step_0000004-2 names it)" in err
    assert (checkpoints / "BEST-until-step_0000004").read_text() == "step_0000004"  # the first one, untouched
    assert (checkpoints / "BEST-until-step_0000004-2").read_text() == "step_0000004"
    aside = checkpoints / "later-than-step_0000004"
    assert (aside / "step_0000006").is_dir()  # the crop-16 branch, with nothing pointing into it from outside
    # a checkpoint set aside opens where it is
    assert i2i.load(aside / "step_0000006").checkpoint == aside / "step_0000006"


def test_a_resume_refuses_nan_optimiser_state_and_never_saves_nan_weights(run, monkeypatch):
    """NaN in the optimiser's state trained on, wrote a checkpoint of NaN weights and exited 0."""
    from safetensors.torch import save_file

    file = run / "checkpoints" / "step_0000004" / "optim_g.safetensors"
    tensors = load_file(file)
    key = next(k for k, t in tensors.items() if t.is_floating_point() and t.numel() > 1)
    tensors[key][0] = float("nan")
    save_file(tensors, file)
    rewrite_checkpoint_file(file, file.read_bytes())  # the sums agree: the NaN check stands on its own
    with pytest.raises(i2i.CheckpointError, match=rf"optim_g.safetensors: {key} holds NaN or infinite values"):
        i2i.train(None, resume=run, overrides=["train.steps=6"], quiet=True)

    class Poison(i2i.Callback):  # weights gone NaN with no loss showing it yet
        def on_log(self, trainer, step, values):
            with torch.no_grad():
                next(trainer.G.parameters()).fill_(float("nan"))

    (run / "checkpoints" / "LATEST").write_text("step_0000002")
    with pytest.raises(i2i.TrainingStopped, match=r"the generator's weights became NaN or infinite by step \d, so they "
                                                  r"were not saved; stopped, the last good checkpoint is"):
        i2i.train(None, resume=run, overrides=["train.steps=3", "output.log_every=1"], quiet=True, callbacks=[Poison()])
    assert not (run / "checkpoints" / "step_0000003").exists()


def test_a_best_pointer_edited_or_a_best_checkpoint_deleted_by_hand_is_said(run, capsys):
    checkpoints = run / "checkpoints"
    (checkpoints / "BEST").write_text("step_0000002")  # edited: the record says step 4
    assert i2i.load(run, which="best").checkpoint.name == "step_0000004"
    assert "checkpoints/BEST names step_0000002, and the run's record names step_0000004 its best" in capsys.readouterr().err
    shutil.rmtree(checkpoints / "step_0000004")
    (checkpoints / "LATEST").write_text("step_0000002")
    (checkpoints / "BEST").unlink()
    state = json.loads((checkpoints / "step_0000002" / "state.json").read_text())
    state["best"] = {"metric": "psnr", "value": 99.0, "step": 4}  # a best no later score could beat, now gone
    rewrite_checkpoint_file(checkpoints / "step_0000002" / "state.json", json.dumps(state))
    i2i.train(None, resume=run, overrides=["train.steps=4"], quiet=True)
    assert "the run's best so far, step_0000004 (psnr 99), is no longer in" in capsys.readouterr().err
    assert (checkpoints / "BEST").read_text() == "step_0000004"  # chosen again: the new step 4


def test_a_run_resumed_from_inside_its_folder_stays_usable(tmp_path, monkeypatch):
    """``cd runs/x && i2i run --resume .`` saved output.dir = "." in the run's recipe, which
    every later command (resume, eval, translate) then refused as no folder name of its own."""
    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 2})
    run = i2i.train(recipe, quiet=True)
    monkeypatch.chdir(run.run_dir)
    i2i.train(None, resume=".", overrides=["train.steps=3"], quiet=True)
    monkeypatch.chdir(tmp_path)
    assert i2i.load_recipe(tmp_path / "run" / "recipe.toml")["output"]["dir"] == str(tmp_path / "run")
    again = i2i.train(None, resume=tmp_path / "run", overrides=["train.steps=4"], quiet=True)
    assert again.step == 4 and i2i.load(tmp_path / "run") is not None


def test_ctrl_c_twice_while_the_run_scores_keeps_the_training_before_it(tmp_path, monkeypatch):
    """The second Ctrl-C quits at once; during the end-of-run evaluation (long on large
    validation images) it left the run with no checkpoint, every step lost."""
    import i2i.engine.evaluate
    from i2i.errors import SecondInterrupt

    def interrupted(*args, **kwargs):
        raise SecondInterrupt()

    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    monkeypatch.setattr(i2i.engine.evaluate, "evaluate_generator", interrupted)
    with pytest.raises(KeyboardInterrupt) as stopped:
        i2i.train(tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 3}), quiet=True)
    assert ckpt.find_checkpoint(tmp_path / "run").name == "step_0000003"
    # the command line's last line says where it goes on from (it said 'interrupted' alone)
    run = tmp_path / "run"
    assert stopped.value.i2i_resume_note == f"{run} resumes from step_0000003: i2i run --resume {run}"


def test_a_run_folder_given_as_the_data_folder_is_refused(tmp_path):
    """It trained the next run on the first run's sample grids, with only a split warning."""
    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 1}), quiet=True)
    with pytest.raises(i2i.UserError, match=rf'^<recipe>: data.source = "{run.run_dir}": an i2i run folder, whose sample grids are '
                                            r"no photos to train on; give the folder that holds the images$"):
        i2i.train(tiny_recipe(run.run_dir, tmp_path / "second", base=TINY_G2C, train={"steps": 1}), quiet=True)


def test_a_discriminator_added_on_resume_is_named_as_such(tmp_path):
    """It read as a damaged checkpoint: '.../discriminator.safetensors: checkpoint file is missing'."""
    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 1}), quiet=True)
    with pytest.raises(i2i.UserError, match=r"^overrides discriminator.name=patchgan: discriminator.name = 'patchgan': this "
                                            r"run was trained without a discriminator, so its checkpoints hold none"):
        i2i.train(None, resume=run.run_dir, overrides=["discriminator.name=patchgan", "losses.gan.name=lsgan",
                                                        "train.steps=2"], quiet=True)


def test_an_unreadable_metrics_line_is_set_aside_on_resume_not_deleted(tmp_path, capsys):
    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 3}, output={"log_every": 1})
    run = i2i.train(recipe, quiet=True)
    log = run.run_dir / "metrics.jsonl"
    lines = log.read_text().splitlines()
    lines[1] = lines[1][:-5] + "oops"  # a hand edit gone wrong
    log.write_text("".join(line + "\n" for line in lines))
    i2i.train(None, resume=run.run_dir, overrides=["train.steps=4"], quiet=True)
    assert (run.run_dir / "metrics.jsonl.unreadable").read_text() == lines[1] + "\n"
    assert f"{log}: 1 unreadable line(s) moved to {log}.unreadable" in capsys.readouterr().err


def test_a_second_ctrl_c_while_the_cut_short_scorings_weights_are_saved_lets_the_save_finish(tmp_path, monkeypatch):
    """Two Ctrl-C 30 ms apart: the first cut the scoring short, the second landed in the
    checkpoint write after it, and i2i quit with no checkpoint of the weights it said were saved."""
    import os
    import signal

    import i2i.engine.evaluate
    from i2i.errors import SecondInterrupt

    plain_pairs, plain_write = i2i.engine.evaluate.validation_pairs, ckpt.CheckpointStore.write
    writes = []

    def pairs_then_sigint(task, clean, names):
        os.kill(os.getpid(), signal.SIGINT)
        return plain_pairs(task, clean, names)

    def write_then_second_ctrl_c(store, step, files, **options):
        writes.append(step)
        if len(writes) == 1:
            raise SecondInterrupt  # as the handler raises it, mid-write
        return plain_write(store, step, files, **options)

    monkeypatch.setattr(i2i.engine.evaluate, "validation_pairs", pairs_then_sigint)
    monkeypatch.setattr(ckpt.CheckpointStore, "write", write_then_second_ctrl_c)
    photos = make_photos(tmp_path / "photos", count=9, size=(20, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 6},
                         eval={"every": 3, "batch_size": 1}, output={"checkpoint_every": 0})
    with pytest.raises(KeyboardInterrupt):
        i2i.train(recipe)
    assert writes == [3, 3]
    assert ckpt.find_checkpoint(tmp_path / "run").name == f"step_{3:07d}"


@pytest.mark.parametrize("steps, stopped_at", [(6, 3), (3, None)])
def test_a_stop_asked_while_the_run_scores_cuts_the_scoring_short(tmp_path, monkeypatch, capsys, steps, stopped_at):
    """SIGTERM from a job scheduler is followed by SIGKILL after a grace period (often 10 to 30
    s); an evaluation on many large validation images ran on through it and the checkpoint
    after it was never written."""
    import os
    import signal

    import i2i.engine.evaluate

    scored = []
    plain_pairs = i2i.engine.evaluate.validation_pairs

    def pairs_then_sigterm(task, clean, names):
        scored.append(names)
        if len(scored) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the first validation batch is scored
        return plain_pairs(task, clean, names)

    monkeypatch.setattr(i2i.engine.evaluate, "validation_pairs", pairs_then_sigterm)
    photos = make_photos(tmp_path / "photos", count=9, size=(20, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": steps},
                         eval={"every": 3, "batch_size": 1})
    if stopped_at:
        with pytest.raises(i2i.TrainingStopped, match=f"^stopped at step {stopped_at}/{steps}"):
            i2i.train(recipe)
    else:  # the end-of-run evaluation: all steps trained, but no final scores, so not 'finished'
        with pytest.raises(i2i.TrainingStopped, match=rf"^stopped at step 3/3 during its final evaluation, so "
                                                      rf"the run has no final scores; its weights are saved, and i2i "
                                                      rf"eval {tmp_path / 'run'} scores them \(a resume has no step left to train\)$"):
            i2i.train(recipe)
    assert len(scored) == 1  # three validation images, one batch each: two left unscored
    assert ckpt.find_checkpoint(tmp_path / "run").name == f"step_{3:07d}"
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert not [entry for entry in log if entry.get("type") == "eval"]
    assert ("i2i: note: the evaluation at step 3 was cut short by the stop request, so step 3 has no validation "
            "score and the best checkpoint stays as it was; its weights are saved, and "
            f"i2i.evaluation.evaluate_run({str(tmp_path / 'run')!r}) scores them") in capsys.readouterr().err  # (the API's call)


def test_the_command_lines_second_ctrl_c_says_where_the_run_goes_on_from(tmp_path, monkeypatch, capsys):
    import i2i.cli
    import i2i.engine.evaluate
    from i2i.recipe import dumps_toml
    from i2i.errors import SecondInterrupt

    def interrupted(*args, **kwargs):
        raise SecondInterrupt()

    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    recipe = tmp_path / "r.toml"
    recipe.write_text(dumps_toml(tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 3})))
    monkeypatch.setattr(i2i.engine.evaluate, "evaluate_generator", interrupted)
    monkeypatch.setattr("sys.argv", ["i2i", "run", str(recipe)])
    with pytest.raises(SystemExit) as exit_info:
        i2i.cli.main()
    run = tmp_path / "run"
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.splitlines()[-1] == (f"i2i: interrupted; {run} resumes from step_0000003: "
                                                         f"i2i run --resume {run}")


def test_hand_edits_of_a_runs_recipe_are_named_on_resume_and_checked_as_a_set_is(tmp_path, capsys):
    """lr = 0.5 and seed = 7 typed into the run's recipe.toml were applied without a word, the
    seed (which fixes the split) past the refusal a --set gets, and run.json recorded no change."""
    import json

    photos = make_photos(tmp_path / "photos", count=4, size=(20, 20))
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 2}), quiet=True).run_dir
    again = i2i.train(None, resume=run, overrides=["train.steps=3"], quiet=True)  # i2i's own rewrite: no note
    assert again.step == 3 and "edited since" not in capsys.readouterr().err
    path = run / "recipe.toml"
    text = path.read_text()
    path.write_text(text.replace("seed = 0", "seed = 7"))
    with pytest.raises(i2i.UserError, match=rf"^{path}, edited since i2i wrote it: train.seed = 7, where the run was "
                                            r"trained with train.seed = 0, which fixes its train/validation split"):
        i2i.train(None, resume=run, overrides=["train.steps=4"], quiet=True)
    lr = next(line for line in text.splitlines() if line.startswith("lr = "))
    path.write_text(text.replace(lr, "lr = 0.0005", 1))
    i2i.train(None, resume=run, overrides=["train.steps=4"], quiet=True)
    before = lr.split(" = ")[1]
    assert (f"i2i: note: {path}, edited since i2i wrote it: train.g.lr = {before} then, 0.0005 now; the resume trains "
            "with the edited values") in capsys.readouterr().err
    resumes = json.loads((run / "run.json").read_text())["resumes"]
    assert resumes[-1]["hand_edits"] == ["train.g.lr"] and "hand_edits" not in resumes[0]
    i2i.train(None, resume=run, overrides=["train.steps=5"], quiet=True)  # written back: nothing edited since
    assert "edited since" not in capsys.readouterr().err
    # output.dir edited: not followed (the run stays in its folder), and said so rather than ignored silently
    text = path.read_text()
    path.write_text(text.replace(f'dir = "{run}"', f'dir = "{tmp_path / "elsewhere"}"'))
    assert path.read_text() != text
    assert i2i.train(None, resume=run, overrides=["train.steps=6"], quiet=True).run_dir == run
    assert (f"{path}: output.dir = '{tmp_path / 'elsewhere'}', edited since i2i wrote it, is not followed: a resumed run "
            "stays in its folder") in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def test_a_second_ctrl_c_mid_write_leaves_no_partial_checkpoint_behind(tmp_path, monkeypatch):
    """Its .tmp-step_N-PID folder (as large as a checkpoint) stayed, and a run with no finished
    checkpoint was never resumed to clean it."""
    from i2i.errors import SecondInterrupt

    plain, files = ckpt._write_content, []

    def interrupted(handle, data):  # the second checkpoint's first file
        files.append(handle.name)
        if "step_0000002" in handle.name:
            raise SecondInterrupt()
        plain(handle, data)

    monkeypatch.setattr(ckpt, "_write_content", interrupted)
    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 2}, eval={"every": 0},
                         output={"checkpoint_every": 1})
    with pytest.raises(KeyboardInterrupt) as stopped:
        i2i.train(recipe, quiet=True)
    run = tmp_path / "run"
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert stopped.value.i2i_resume_note == f"{run} resumes from step_0000001: i2i run --resume {run}"


def test_an_option_a_newer_plugin_adds_is_no_hand_edit(tmp_path, capsys):
    """run.json records the resolved recipe; a task option added since (with its default) is in
    the file's resolved recipe now, and read as an edit it was a false alarm on every resume."""
    import json

    photos = make_photos(tmp_path / "photos", count=4, size=(20, 20))
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 2}), quiet=True).run_dir
    info = json.loads((run / "run.json").read_text())
    del info["recipe"]["task"]["space"]  # as an older version of the task, without this option, recorded it
    (run / "run.json").write_text(json.dumps(info))
    capsys.readouterr()
    i2i.train(None, resume=run, overrides=["train.steps=3"], quiet=True)
    assert "edited since" not in capsys.readouterr().err


def test_metrics_records_are_on_disk_before_each_checkpoint_that_holds_their_steps(photos, tmp_path, monkeypatch):
    """metrics.jsonl was only flushed: after a power cut the checkpoints could be there and the
    records of their steps gone, with nothing said."""
    import os

    from i2i.engine.checkpoint import CheckpointStore

    events, write = [], CheckpointStore.write
    real_fsync = os.fsync
    metrics = tmp_path / "run" / "metrics.jsonl"

    def fsync(fd):
        if metrics.exists() and os.fstat(fd).st_ino == metrics.stat().st_ino:
            events.append(("fsync", metrics.read_text().count("\n")))
        return real_fsync(fd)

    def recording_write(self, step, *args, **kwargs):
        events.append(("checkpoint", metrics.read_text().count("\n")))
        return write(self, step, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(CheckpointStore, "write", recording_write)
    i2i.train(recipe_of(photos, tmp_path / "run", train={"steps": 4}, output={"checkpoint_every": 2, "log_every": 1}),
              quiet=True)
    checkpoints = [i for i, (kind, _) in enumerate(events) if kind == "checkpoint"]
    assert len(checkpoints) == 2
    for i in checkpoints:  # the fsync just before it covered every line there was
        assert events[i - 1] == ("fsync", events[i][1]) and events[i][1] > 0


def test_a_checkpoint_written_but_not_yet_named_in_latest_is_used(run, capsys):
    """A run killed between a checkpoint's rename and LATEST's update resumed from the one
    before: the steps were trained again and the newer checkpoint moved aside as if chosen so.
    LATEST pointed back by hand (written after the newer one) is still obeyed."""
    import os

    latest = run / "checkpoints" / "LATEST"
    newer = run / "checkpoints" / "step_0000004" / "state.json"
    latest.write_text("step_0000002\n")
    before = newer.stat().st_mtime_ns - 10**9
    os.utime(latest, ns=(before, before))  # as LATEST was, written at the checkpoint before
    assert i2i.load(run).checkpoint.name == "step_0000004"
    assert "LATEST names step_0000002, but step_0000004 was written after it, complete" in capsys.readouterr().err
    resumed = i2i.train(None, resume=run, quiet=True, overrides=["train.steps=5"])
    assert resumed.step == 5 and not list((run / "checkpoints").glob("later-than-*"))
    latest.write_text("step_0000004\n")  # pointed back by hand, after every checkpoint was written
    assert i2i.load(run).checkpoint.name == "step_0000004"


def test_a_weight_changed_on_disk_is_named_by_its_checksum_and_sha256sum_can_check_a_checkpoint(run, capsys):
    """A flipped bit that leaves a finite weight loaded and trained on without a word."""
    import subprocess

    checkpoint = run / "checkpoints" / "step_0000004"
    assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=checkpoint).returncode == 0
    file = checkpoint / "generator.safetensors"
    data = bytearray(file.read_bytes())
    data[-2] ^= 0x01  # the low bits of a float32's exponent: still finite
    file.write_bytes(bytes(data))
    assert load_file(file)  # it reads as a safetensors file of finite weights
    damaged = (r"generator.safetensors: its bytes do not match the SHA-256 that SHA256SUMS lists for it: the file \(or "
               r"SHA256SUMS\) is damaged; use an earlier")
    with pytest.raises(i2i.CheckpointError, match=damaged):
        i2i.load(run)
    result = CliRunner().invoke(cli, ["run", "--resume", str(run), "--set", "train.steps=6", "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output  # a damaged input, as a bad recipe is
    assert "SHA256SUMS" in result.output.splitlines()[-1]
    (checkpoint / "SHA256SUMS").unlink()  # gone from a checkpoint whose state.json says it was written: damage
    assert i2i.load(run).checkpoint.name == "step_0000002"  # the intact one before it, with a note, as for other damage
    assert "SHA256SUMS: missing, though this checkpoint was written with it" in capsys.readouterr().err
    # a checkpoint written before i2i kept the sums (its state.json says nothing of them) loads unchecked
    state = json.loads((checkpoint / "state.json").read_text())
    del state["checksums"]
    (checkpoint / "state.json").write_text(json.dumps(state))
    assert i2i.load(run).checkpoint.name == "step_0000004"


def test_sums_that_cannot_vouch_for_a_file_and_a_file_they_list_gone_are_damage_not_silence(photos, tmp_path):
    """An EMA weights file deleted was replaced by G's weights without a word, and SHA256SUMS
    emptied or missing a line turned the checking off."""
    run = i2i.train(recipe_of(photos, tmp_path / "run", train={"steps": 4, "ema": 0.9},
                              output={"checkpoint_every": 2, "keep": 5}), quiet=True).run_dir
    last = run / "checkpoints" / "step_0000004"
    (last / "generator_ema.safetensors").unlink()
    assert i2i.load(run).checkpoint.name == "step_0000002"  # the newest intact one, with a note
    shutil.copy(run / "checkpoints" / "step_0000002" / "generator_ema.safetensors", last)  # back, but not its bytes
    sums = (last / "SHA256SUMS").read_text()
    (last / "SHA256SUMS").write_text("".join(line + "\n" for line in sums.splitlines()
                                             if not line.endswith("generator_ema.safetensors")))
    with pytest.raises(i2i.CheckpointError, match=r"SHA256SUMS: lists no SHA-256 for generator_ema.safetensors, as i2i "
                                                  r"writes one for each file: it is damaged"):
        i2i.load(last)
    (last / "SHA256SUMS").write_text("")
    with pytest.raises(i2i.CheckpointError, match=r"SHA256SUMS: lists no SHA-256 for state.json"):
        i2i.load(last)


def test_a_resume_stopped_by_a_full_disk_leaves_recipe_toml_as_it_was(photos, tmp_path, monkeypatch, capsys):
    """recipe.toml was rewritten, run.json then failed: the next plain resume named the failed
    resume's --set values as hand edits of the file and trained with them."""
    from i2i.engine import checkpoint as ckpt_module

    run_dir = i2i.train(recipe_of(photos, tmp_path / "run", train={"steps": 2}), quiet=True).run_dir
    before = {name: (run_dir / name).read_bytes() for name in ("recipe.toml", "run.json")}
    real_open = open

    def full_for_run_json(path, *args, **kwargs):
        if ".run.json.tmp-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(ckpt_module, "open", full_for_run_json, raising=False)
    with pytest.raises(OSError, match="No space left on device"):
        i2i.train(None, resume=run_dir, overrides=["train.steps=4"], quiet=True)
    monkeypatch.undo()
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]
    capsys.readouterr()
    assert i2i.train(None, resume=run_dir, overrides=["train.steps=3"], quiet=True).step == 3
    assert "edited since i2i wrote it" not in capsys.readouterr().err
    assert "hand_edits" not in (run_dir / "run.json").read_text()


def test_a_full_disk_leaves_no_half_line_in_metrics_jsonl(tmp_path):
    """A run stopped by a full disk before its first checkpoint kept a cut-off last line, which
    no resume drops, and json.loads (or pandas.read_json(lines=True)) failed on it."""
    from i2i.engine.report import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write({"type": "train", "step": 1, "g_l1": 0.5})

    class TakesHalfThenFull:
        def __init__(self, handle):
            self.handle, self.calls = handle, 0

        def write(self, data):
            self.calls += 1
            if self.calls > 1:
                raise OSError(errno.EFBIG, "File too large")
            return self.handle.write(bytes(data[: len(data) // 2]))

        def fileno(self):
            return self.handle.fileno()

    log.handle = TakesHalfThenFull(log.handle)
    with pytest.raises(OSError, match="File too large"):
        log.write({"type": "train", "step": 2, "g_l1": 0.25})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines(keepends=True)
    assert [json.loads(line)["step"] for line in lines] == [1] and lines[-1].endswith("\n")


def test_a_resume_of_a_run_whose_recipe_toml_was_deleted_rebuilds_it(photos, tmp_path, capsys):
    """It said 'not an i2i run directory (no recipe.toml)' of a run folder with its checkpoints."""
    run_dir = i2i.train(recipe_of(photos, tmp_path / "run", train={"steps": 2}), quiet=True).run_dir
    (run_dir / "recipe.toml").unlink()
    capsys.readouterr()
    assert i2i.train(None, resume=run_dir, overrides=["train.steps=3"], quiet=True).step == 3
    assert f"{run_dir / 'recipe.toml'} was missing; rebuilt from" in capsys.readouterr().err
    assert "steps = 3" in (run_dir / "recipe.toml").read_text()


def test_a_finished_run_whose_checkpoints_folder_was_deleted_is_not_said_to_be_still_training(photos, tmp_path):
    run_dir = i2i.train(recipe_of(photos, tmp_path / "run", train={"steps": 2}), quiet=True).run_dir
    shutil.rmtree(run_dir / "checkpoints")
    with pytest.raises(i2i.CheckpointError) as info:
        i2i.train(None, resume=run_dir, overrides=["train.steps=3"], quiet=True)
    assert (f"this run has no checkpoint ({run_dir / 'checkpoints'} is gone, though its metrics.jsonl records "
            "checkpoints written: restore it from a copy if you have one)") in str(info.value)
