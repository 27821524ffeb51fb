"""The training engine: bit-exact resume, interrupts, non-finite losses, run directories, logs."""

import json
import os
import re
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import i2i
from i2i.engine.checkpoint import find_checkpoint
from i2i.engine.device import resolve_precision
from i2i.engine.optim import lr_factor
from i2i.errors import CheckpointError, RecipeError, TrainingStopped, UserError
from helpers import TINY_GAN, make_photos, tiny_recipe
from plugin_env import run_i2i


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


def checkpoint_tensors(run_dir):
    ckpt = find_checkpoint(run_dir)
    return {f.name: load_file(f) for f in sorted(ckpt.glob("*.safetensors"))}


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}:{key} differs"


def test_resume_is_bit_exact(photos, tmp_path, monkeypatch):
    straight = i2i.train(tiny_recipe(photos, tmp_path / "straight"), quiet=True)
    assert straight.step == 8
    half = i2i.train(tiny_recipe(photos, tmp_path / "half", train={"steps": 4}), quiet=True)
    assert half.step == 4
    resumed = i2i.train(None, resume=half.run_dir, overrides=["train.steps=8"], quiet=True)
    assert resumed.step == 8 and resumed.run_dir == half.run_dir
    assert_identical(checkpoint_tensors(straight.run_dir), checkpoint_tensors(half.run_dir))
    assert resumed.metrics == pytest.approx(straight.metrics)
    # the saved recipe now says 8 steps, so a plain resume has nothing left to do: said before
    # the photos are read (their warnings came first)
    monkeypatch.setattr("i2i.data.ImageData", None)
    with pytest.raises(UserError, match="already trained to step 8"):
        i2i.train(None, resume=half.run_dir, quiet=True)


def test_bf16_resume_is_bit_exact_inside_the_callers_autocast(photos, tmp_path):
    """bf16 on any CPU (auto picks it only on AMX ones), and inside a caller's autocast, whose
    nesting once kept torch from emptying its cache of weights cast to bf16: later steps ran
    on copies of weights the optimiser had changed, and resuming (a fresh cache) diverged."""
    bf16 = {"precision": "bf16"}
    with torch.autocast("cpu", enabled=False):
        straight = i2i.train(tiny_recipe(photos, tmp_path / "straight", train={**bf16, "steps": 4}), quiet=True)
        half = i2i.train(tiny_recipe(photos, tmp_path / "half", train={**bf16, "steps": 2}), quiet=True)
    i2i.train(None, resume=half.run_dir, overrides=["train.steps=4"], quiet=True)
    assert_identical(checkpoint_tensors(straight.run_dir), checkpoint_tensors(half.run_dir))


def test_a_run_with_a_relative_data_folder_resumes_from_another_directory(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(photos.parent)
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 2})
    recipe["data"]["source"] = photos.name  # relative to the working directory
    run = i2i.train(recipe, quiet=True)
    assert i2i.load_recipe(run.run_dir / "recipe.toml")["data"]["source"] == str(photos)
    monkeypatch.chdir(tmp_path)
    assert i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True).step == 3


class OptimizerSettings(i2i.Callback):
    """Records each optimiser's settings as the resumed run trains."""

    def on_log(self, trainer, step, values):
        self.seen = {name: {k: opt.param_groups[0][k] for k in ("betas", "weight_decay", "decoupled_weight_decay")}
                     for name, opt in (("g", trainer.opt_g), ("d", trainer.opt_d))}


def test_resume_applies_changed_optimizer_settings(photos, tmp_path):
    # the checkpoint's optimiser state used to bring its own betas and weight decay back, so
    # these overrides were written into the run's recipe.toml but never used
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 2}), quiet=True)
    spy = OptimizerSettings()
    i2i.train(None, resume=run.run_dir, quiet=True, callbacks=[spy], overrides=[
        "train.steps=4", "train.g.betas=[0.9, 0.99]", "train.d.weight_decay=0.01", "train.d.name=adamw"])
    assert spy.seen["g"]["betas"] == (0.9, 0.99) and spy.seen["g"]["weight_decay"] == 0
    assert spy.seen["d"] == {"betas": (0.5, 0.999), "weight_decay": 0.01, "decoupled_weight_decay": True}
    # and back: a plain resume uses what the saved recipe now says
    i2i.train(None, resume=run.run_dir, quiet=True, callbacks=[spy], overrides=["train.steps=6", "train.d.name=adam"])
    assert spy.seen["g"]["betas"] == (0.9, 0.99)
    assert spy.seen["d"] == {"betas": (0.5, 0.999), "weight_decay": 0.01, "decoupled_weight_decay": False}


def test_ema_turned_on_or_off_by_a_resume_is_said_and_starts_from_the_generator(photos, tmp_path, capfd):
    from safetensors.torch import load_file

    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 2, "ema": 0.0}), quiet=True)
    capfd.readouterr()
    seen = {}

    class Keep(i2i.Callback):
        def on_run_start(self, trainer):
            seen["ema"] = {k: v.clone() for k, v in trainer.ema.state_dict().items()}

    i2i.train(None, resume=run.run_dir, callbacks=[Keep()], overrides=["train.steps=3", "train.ema=0.9"])
    assert "train.ema = 0.9: step_0000002 kept no average, so it starts from the generator's weights at step 2" in \
        capfd.readouterr().err
    saved = load_file(run.run_dir / "checkpoints" / "step_0000002" / "generator.safetensors")
    assert all(torch.equal(seen["ema"][key], saved[key]) for key in saved)
    i2i.train(None, resume=run.run_dir, overrides=["train.steps=4", "train.ema=0"])
    assert "train.ema = 0: the average step_0000003 kept is left out from here on" in capfd.readouterr().err


def test_resume_refuses_to_change_the_train_validation_split(photos, tmp_path):
    # the split is drawn from train.seed and data.val_fraction: changed on resume, files the
    # run validated on would become training files (and BEST be picked on seen images)
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 2}), quiet=True)
    for override, saved in (("train.seed=4", "train.seed = 3"), ("data.val_fraction=0.5", "data.val_fraction = 0.34")):
        with pytest.raises(UserError, match=rf"^overrides {override}: a resumed run keeps {saved}, which fixes its train/validation split"):
            i2i.train(None, resume=run.run_dir, overrides=["train.steps=3", override], quiet=True)
    assert i2i.load_recipe(run.run_dir / "recipe.toml")["train"]["seed"] == 3  # nothing was rewritten
    assert i2i.train(None, resume=run.run_dir, overrides=["train.steps=3", "train.seed=3"], quiet=True).step == 3


class StopAt(i2i.Callback):
    def __init__(self, step):
        self.stop_step = step
        self.events = []

    def on_run_start(self, trainer):
        self.events.append("start")

    def on_log(self, trainer, step, values):
        self.events.append(("log", step))
        if step == self.stop_step:
            trainer.request_stop()

    def on_checkpoint(self, trainer, step, path):
        self.events.append(("checkpoint", step))

    def on_run_end(self, trainer, status, metrics):
        self.events.append(("end", status))


def test_stop_request_checkpoints_and_resume_matches_straight_run(photos, tmp_path):
    straight = i2i.train(tiny_recipe(photos, tmp_path / "straight"), quiet=True)
    stopper = StopAt(4)
    with pytest.raises(i2i.TrainingStopped, match=r"stopped at step 4/8; checkpoint saved\. Resume with: i2i run --resume") as info:
        i2i.train(tiny_recipe(photos, tmp_path / "stopped"), callbacks=[stopper], quiet=True)
    assert (info.value.run_dir, info.value.step) == (tmp_path / "stopped", 4)
    assert stopper.events[0] == "start" and stopper.events[-1] == ("end", "interrupted")
    # a stop asked from on_log neither logs nor checkpoints that step twice
    assert stopper.events.count(("log", 4)) == 1 and stopper.events.count(("checkpoint", 4)) == 1
    i2i.train(None, resume=tmp_path / "stopped", quiet=True)
    assert_identical(checkpoint_tensors(straight.run_dir), checkpoint_tensors(tmp_path / "stopped"))


class StopAtCheckpoint(i2i.Callback):
    def on_checkpoint(self, trainer, step, path):
        trainer.request_stop()


def test_a_stop_between_log_steps_logs_its_losses_without_stale_health_figures(photos, tmp_path):
    """Stopped at step 3 with a log every 2 steps, the run logs step 3's loss means; gradient
    norms and D accuracy are only computed on log steps, so step 2's are not repeated there."""
    recipe = tiny_recipe(photos, tmp_path / "run", output={"log_every": 2, "checkpoint_every": 3})
    with pytest.raises(i2i.TrainingStopped, match=r"stopped at step 3/8"):
        i2i.train(recipe, callbacks=[StopAtCheckpoint()], quiet=True)
    logged = {r["step"]: r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if r["type"] == "train"}
    assert sorted(logged) == [2, 3]
    assert {"grad_norm_g", "grad_norm_d", "d_acc_real"} <= logged[2].keys()
    assert not {"grad_norm_g", "grad_norm_d", "d_acc_real", "d_acc_fake", "diversity"} & logged[3].keys()
    assert {k for k in logged[2] if k.startswith(("g_", "d_")) and not k.startswith("d_acc")} == \
           {k for k in logged[3] if k.startswith(("g_", "d_"))}


class Killed(Exception):
    pass


class KillAt(i2i.Callback):
    """Dies at a logged step, as a killed process would: no checkpoint, no clean-up."""

    def __init__(self, step):
        self.kill_step = step

    def on_log(self, trainer, step, values):
        if step == self.kill_step:
            raise Killed


def test_a_run_killed_between_checkpoints_resumes_to_the_uninterrupted_run(photos, tmp_path):
    # a checkpoint at step 3 and a log every 2 steps: killed at step 4 after logging it, the
    # resumed run must log step 4 again with the same mean (over steps 3 and 4, one of them
    # before the checkpoint) and end with the same weights and the same metrics.jsonl as a
    # run that was never interrupted (its EMA warm-up, which counts steps, continuing too)
    sections = dict(output={"checkpoint_every": 3, "log_every": 2}, train={**TINY_GAN["train"], "ema_warmup": True})
    straight = i2i.train(tiny_recipe(photos, tmp_path / "straight", **sections), quiet=True)
    with pytest.raises(Killed):
        i2i.train(tiny_recipe(photos, tmp_path / "killed", **sections), callbacks=[KillAt(4)], quiet=True)
    assert find_checkpoint(tmp_path / "killed").name == "step_0000003"
    log = tmp_path / "killed" / "metrics.jsonl"
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [2, 4]
    with open(log, "a") as handle:
        handle.write('{"type": "train", "step": 5, "d_ga')  # a line cut short by the kill
    i2i.train(None, resume=tmp_path / "killed", quiet=True)
    assert_identical(checkpoint_tensors(straight.run_dir), checkpoint_tensors(tmp_path / "killed"))
    assert log.read_text() == (straight.run_dir / "metrics.jsonl").read_text()


def start_logged_run(photos, tmp_path, steps=100000) -> subprocess.Popen:
    """``i2i run`` in a subprocess, logging every step as plain lines on stdout."""
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": steps}, output={"progress": "plain", "log_every": 1})
    path = tmp_path / "r.toml"
    from i2i.recipe import dumps_toml

    path.write_text(dumps_toml(recipe))
    env = {k: v for k, v in os.environ.items() if not k.startswith("I2I_")}
    return subprocess.Popen([sys.executable, "-m", "i2i", "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


@pytest.mark.parametrize("sent", ["SIGINT", "SIGHUP"])  # SIGHUP: the terminal or SSH session closed
def test_sigint_finishes_the_step_saves_and_exits_nonzero(photos, tmp_path, sent):
    proc = start_logged_run(photos, tmp_path)
    for line in proc.stdout:  # wait until training steps are being logged
        if line.startswith("step 2/"):
            break
    proc.send_signal(getattr(signal, sent))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert f"{sent} received" in err
    assert f"Resume with: i2i run --resume {tmp_path / 'run'}" in err
    assert "Traceback" not in err
    state = json.loads((find_checkpoint(tmp_path / "run") / "state.json").read_text())
    assert state["step"] >= 2


def test_a_run_whose_output_reader_is_gone_trains_on_and_checkpoints(photos, tmp_path):
    """``i2i run ... | head -2``: the first progress line after the pipe closed used to end the
    run with a BrokenPipeError and no checkpoint."""
    proc = start_logged_run(photos, tmp_path, steps=30)
    for line in proc.stdout:
        if line.startswith("step 1/"):
            break
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert json.loads((find_checkpoint(tmp_path / "run") / "state.json").read_text())["step"] == 30


class NaNAfter(i2i.ReconstructionLoss):
    """Returns NaN from a given step on (counted by calls)."""

    def __init__(self, at: int = 3):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, fake, target):
        self.calls += 1
        value = (fake - target).abs().mean()
        return value * float("nan") if self.calls >= self.at else value


class NaNPlugin:
    @i2i.hookimpl
    def register_losses(self, register):
        register("nan_after", NaNAfter)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(photos, tmp_path):
    i2i.register_plugin(NaNPlugin(), "nanplugin")
    recipe = tiny_recipe(photos, tmp_path / "run", losses={"bad": {"name": "nan_after", "at": 5}},
                         output={"checkpoint_every": 2, "log_every": 4})
    with pytest.raises(TrainingStopped) as info:
        i2i.train(recipe, quiet=True)
    message = str(info.value)
    # the loss is named with its plugin: it, not the learning rate, may be what gives NaN
    assert "loss 'bad' (generator step, 'nan_after' of plugin 'nanplugin') became NaN or infinite at step 5" in message
    good = find_checkpoint(tmp_path / "run")
    assert good.name == "step_0000004"
    assert (info.value.run_dir, info.value.step) == (tmp_path / "run", 4)  # where a sweep resumes from
    weights = load_file(good / "generator.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


class OutOfMemoryAfter(i2i.ReconstructionLoss):
    """Raises what torch raises when memory runs out, from a given call on."""

    def __init__(self, at: int = 3, where: str = "cuda"):
        super().__init__()
        self.at, self.where, self.calls = at, where, 0

    def forward(self, fake, target):
        self.calls += 1
        if self.calls >= self.at:
            if self.where == "cuda":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if self.where == "cpu":
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4294967296 bytes.")
            raise RuntimeError("a bug in a plugin")
        return (fake - target).abs().mean()


class OutOfMemoryPlugin:
    @i2i.hookimpl
    def register_losses(self, register):
        register("oom_after", OutOfMemoryAfter)


@pytest.mark.parametrize("where", ["cuda", "cpu"])
def test_running_out_of_memory_names_the_settings_to_lower(photos, tmp_path, where):
    i2i.register_plugin(OutOfMemoryPlugin(), "oomplugin")
    recipe = tiny_recipe(photos, tmp_path / "run", losses={"big": {"name": "oom_after", "at": 3, "where": where}},
                         output={"checkpoint_every": 1})
    with pytest.raises(UserError) as info:
        i2i.train(recipe, quiet=True)
    message = str(info.value)
    assert message.startswith("out of memory on cpu at step 3 (train.batch_size = 2, data.size = 16")
    assert message.endswith("lower train.batch_size or data.size") and "\n" not in message
    assert find_checkpoint(tmp_path / "run").name == "step_0000002"  # what was written is kept


def test_running_out_of_memory_while_evaluating_names_the_eval_settings(photos, tmp_path, monkeypatch):
    from i2i.engine import evaluate

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(evaluate, "evaluate_generator", out_of_memory)
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 2})
    with pytest.raises(UserError, match=r"^out of memory on cpu evaluating after step 2 \(eval.batch_size = 2, "
                                        r"eval.crop = 16\); lower eval.batch_size or eval.crop$"):
        i2i.train(recipe, quiet=True)


def test_other_runtime_errors_are_not_taken_for_running_out_of_memory(photos, tmp_path):
    """A loss's own error is named as the plugin's, with the original kept as its cause."""
    i2i.register_plugin(OutOfMemoryPlugin(), "oomplugin")
    recipe = tiny_recipe(photos, tmp_path / "run", losses={"big": {"name": "oom_after", "at": 2, "where": "bug"}})
    with pytest.raises(i2i.PluginError, match=r"losses.big \('oom_after', plugin 'oomplugin'\) raised RuntimeError: a bug "
                                              r"in a plugin; report this") as info:
        i2i.train(recipe, quiet=True)
    assert isinstance(info.value.__cause__, RuntimeError) and "out of memory" not in str(info.value)


def test_a_loss_that_is_nan_at_the_first_step_is_named_and_leaves_no_folder(photos, tmp_path):
    """Before any weight changed the learning rate cannot be the cause; a folder with nothing
    to resume from would only make the next run's a '-2'."""
    i2i.register_plugin(NaNPlugin(), "nanplugin")
    recipe = tiny_recipe(photos, tmp_path / "run", losses={"bad": {"name": "nan_after", "at": 1}}, output={"log_every": 3})
    with pytest.raises(TrainingStopped) as info:
        i2i.train(recipe, quiet=True)
    assert str(info.value) == (
        "loss 'bad' (generator step, 'nan_after' of plugin 'nanplugin') was NaN or infinite at the first step, before any "
        "weight had changed, so the learning rate is not the cause: the loss, or the generator feeding it, gives NaN or "
        "infinite values on these images; nothing was kept")
    assert not (tmp_path / "run").exists()


def test_nonfinite_skip_mode_skips_the_step(photos, tmp_path):
    i2i.register_plugin(NaNPlugin(), "nanplugin")
    recipe = tiny_recipe(photos, tmp_path / "run", losses={"bad": {"name": "nan_after", "at": 5}},
                         train={"on_nonfinite": "skip", "steps": 6})
    run = i2i.train(recipe, quiet=True)
    assert run.status == "finished"
    assert all(torch.isfinite(p).all() for p in run.generator.parameters())


def test_skipped_updates_are_warned_about_with_the_loss_to_blame(photos, tmp_path, capsys):
    i2i.register_plugin(NaNPlugin(), "nanplugin")
    recipe = tiny_recipe(photos, tmp_path / "run", losses={"bad": {"name": "nan_after", "at": 5}},
                         train={"on_nonfinite": "skip", "steps": 6}, output={"log_every": 3, "progress": "plain"})
    i2i.train(recipe)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert warnings == ["i2i: warning: step 6: 2 generator update(s) skipped since the last log: loss 'bad' was NaN or "
                        "infinite (train.on_nonfinite = 'skip'); a run that skips most of its steps learns nothing"]


def test_run_directory_is_never_overwritten(photos, tmp_path, capsys):
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 2}, discriminator=None, losses={"gan": None})
    recipe["losses"] = {"l1": {}}
    first = i2i.train(recipe, quiet=True)
    before = {p: p.read_bytes() for p in first.run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    second = i2i.train(recipe, quiet=True)
    assert first.run_dir == tmp_path / "run" and second.run_dir == tmp_path / "run-2"
    assert (f"i2i: note: {tmp_path / 'run'} already exists (runs are never overwritten); this one goes to "
            f"{tmp_path / 'run-2'}") in capsys.readouterr().err
    assert {p: p.read_bytes() for p in first.run_dir.rglob("*") if p.is_file()} == before


def test_an_empty_folder_left_by_a_run_killed_at_start_up_is_named_as_such(photos, tmp_path, capsys):
    """kill -9 in a run's first seconds leaves its folder empty: a resume said 'not an i2i run
    directory ... pass the folder a run was written to', a new run went to -2 unexplained."""
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match=r"run: empty, so there is nothing to resume: a run killed in its first "
                                              r"seconds, before it wrote its recipe.toml, leaves its folder so"):
        i2i.train(None, resume=tmp_path / "run", quiet=True)
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 1})
    capsys.readouterr()
    assert i2i.train(recipe, quiet=True).run_dir == tmp_path / "run-2"
    assert ("this one goes to " f"{tmp_path / 'run-2'}; it is empty (made by hand, or left by a run killed in its first "
            "seconds): delete it to use the name") in capsys.readouterr().err


def test_a_run_that_cannot_start_says_nothing_of_a_folder_it_does_not_keep(tmp_path, capsys):
    """'runs/x already exists; this one goes to runs/x-2' came before the error of an empty data
    folder, for a -2 folder that was then removed."""
    (tmp_path / "run").mkdir()
    (tmp_path / "empty").mkdir()
    with pytest.raises(i2i.UserError, match="no images in this folder"):
        i2i.train(tiny_recipe(tmp_path / "empty", tmp_path / "run"), quiet=True)
    assert "already exists" not in capsys.readouterr().err and not (tmp_path / "run-2").exists()


def test_a_run_folder_name_taken_by_a_file_or_device_is_refused_alike(photos, tmp_path, monkeypatch):
    """--out FILE was refused by the option parser while output.dir = FILE trained into FILE-2,
    and --out /dev/null made /dev/null-2 in /dev."""
    from click.testing import CliRunner

    from i2i.cli import cli
    from i2i.recipe import dumps_toml

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text(dumps_toml(tiny_recipe(photos, tmp_path / "run")))
    expected = "a name for the run's own new folder, e.g. 'runs/gray2color' (i2i never writes into an existing folder)"
    for args, shown in ((["--out", "notes.txt"], "run folder 'notes.txt'"),
                        (["--set", "output.dir=notes.txt"], "--set output.dir=notes.txt: output.dir = 'notes.txt'"),
                        (["--out", os.devnull], f"run folder '{os.devnull}'")):
        result = CliRunner().invoke(cli, ["run", str(recipe_file), *args])
        what = "a device" if os.devnull in shown else "a file"
        assert result.exit_code == 2 and result.output == f"i2i: error: {shown}: {what} of that name is there; expected {expected}\n"
    with pytest.raises(RecipeError, match=r"^<recipe>: output.dir = 'notes.txt': a file of that name is there"):
        i2i.train(tiny_recipe(photos, "notes.txt"), quiet=True)  # the API's recipe error, naming the key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "r.toml"] and not Path(os.devnull + "-2").exists()


def test_a_run_folder_named_dot_or_empty_is_one_line_before_any_work(photos, tmp_path, monkeypatch):
    """``--out .`` or ``output.dir = ""`` name folders that exist (here, its parent, nothing): a
    run gets its own new folder, so these are refused with one line, not renamed or traced back."""
    from i2i.engine.run import new_run_dir

    monkeypatch.chdir(tmp_path)
    for wanted in (".", "..", "runs/..", ""):
        with pytest.raises(UserError, match=rf"^run folder '{re.escape(wanted)}': expected a name for the run's own new folder"):
            new_run_dir(wanted)
    for value in ('""', '"."'):
        with pytest.raises(RecipeError, match=rf"output.dir = '\.?': expected a name for the run's own new folder, e.g. "):
            i2i.load_recipe(tiny_recipe(photos, tmp_path / "run"), [f"output.dir={value}"])
    with pytest.raises(UserError, match=r"^run folder '': expected a name for the run's own new folder"):
        i2i.train(tiny_recipe(photos, tmp_path / "run"), out="", quiet=True)  # not the recipe's output.dir instead
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert new_run_dir("runs/a") == Path("runs/a") and new_run_dir("runs/a") == Path("runs/a-2")


def test_running_out_of_memory_on_the_dry_run_names_data_size_not_the_plugin(photos, tmp_path):
    """A GPU's allocator refuses an image too large for it: that is the recipe's data.size, in
    one line, not a generator plugin's failure."""
    from i2i.engine.components import build_networks
    from i2i.engine.contracts import dry_run

    recipe = i2i.load_recipe(tiny_recipe(photos, tmp_path / "run"))
    nets = build_networks(recipe, torch.device("cpu"))

    def out_of_memory(x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    nets.G.forward = out_of_memory
    size = recipe["data"]["size"]
    with pytest.raises(RecipeError, match=rf"data.size = {size}: one {size}x{size} px image does not fit in the memory "
                                          rf"of cpu \(checking the networks on it ran out\); lower data.size$"):
        dry_run(recipe, nets, torch.device("cpu"))


def test_run_directory_contents(photos, tmp_path, capfd):
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 4}, output={"tensorboard": True}), quiet=True)
    told = "output.tensorboard = true, but the tensorboard package is not installed" in capfd.readouterr().err
    d = run.run_dir
    saved = i2i.load_recipe(d / "recipe.toml")
    assert saved["train"]["steps"] == 4 and saved["output"]["dir"] == str(d)
    info = json.loads((d / "run.json").read_text())
    assert info["plugins"]["nets"]["distribution"] == "i2i" and info["torch_version"] == torch.__version__
    records = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    assert [r["step"] for r in train] == [2, 4]
    for key in ("g_l1", "g_gan", "d_gan", "d_acc_real", "d_acc_fake", "grad_norm_g", "grad_norm_d", "diversity", "lr_g"):
        assert key in train[0], key
    evals = [r for r in records if r["type"] == "eval"]
    assert evals and {"psnr", "ssim"} <= set(evals[-1]["metrics"])
    assert set(evals[-1]["baselines"]) == {"noisy input", "best gaussian blur"}
    assert list((d / "samples").glob("step_*.png"))
    try:
        import tensorboard  # noqa: F401  (the optional [tensorboard] extra)
    except ImportError:
        assert not (d / "tensorboard").exists() and told  # asked for, and skipped without the extra: said so
        i2i.train(tiny_recipe(photos, tmp_path / "auto", train={"steps": 1}, output={"tensorboard": "auto"}))
        assert "tensorboard" not in capfd.readouterr().err  # 'auto', the default: quietly
    else:
        assert list((d / "tensorboard").glob("events.*")) and not told
    ckpt = find_checkpoint(d)
    assert {"generator.safetensors", "generator_ema.safetensors", "discriminator.safetensors", "optim_g.safetensors",
            "optim_d.safetensors", "rng.safetensors", "state.json"} <= {p.name for p in ckpt.iterdir()}
    assert (d / "checkpoints" / "BEST").read_text() == ckpt.name
    assert not any(p.suffix in (".pt", ".pth", ".pkl") for p in d.rglob("*"))


def test_old_checkpoints_are_pruned(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 6}, output={"checkpoint_every": 1, "keep": 2})
    recipe["eval"]["every"] = 0
    run = i2i.train(recipe, quiet=True)
    names = sorted(p.name for p in (run.run_dir / "checkpoints").glob("step_*"))
    best = (run.run_dir / "checkpoints" / "BEST").read_text()
    assert "step_0000006" in names and best in names
    assert len(names) <= 4


@pytest.mark.parametrize("minutes, saved", [(1, [4, 8, 10]), (0, [10])])
def test_checkpoints_are_written_every_checkpoint_minutes(photos, tmp_path, monkeypatch, minutes, saved):
    """A run that no process can stop cleanly (kill -9, a power cut) loses at most
    output.checkpoint_minutes of training. The clock here moves 25 s per step: with 1 minute, a
    checkpoint follows the first step that starts 60 s or more after the last one."""
    import i2i.engine.trainer as trainer_module

    now = [0.0]
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))

    class Clock(i2i.Callback):
        def __init__(self):
            self.saved = []

        def on_log(self, trainer, step, values):
            now[0] = 25.0 * step

        def on_checkpoint(self, trainer, step, path):
            self.saved.append(step)

    clock = Clock()
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 10},
                         output={"log_every": 1, "checkpoint_minutes": minutes, "keep": 5})
    i2i.train(recipe, callbacks=[clock], quiet=True)
    assert clock.saved == saved


def test_truncated_or_foreign_checkpoint_is_a_one_line_error(photos, tmp_path):
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 2}), quiet=True)
    weights = find_checkpoint(run.run_dir) / "generator_ema.safetensors"  # what i2i.load reads
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"damaged \(generator_ema.safetensors is truncated\), and no older intact"):
        i2i.load(run.run_dir)
    result = run_i2i(["translate", str(run.run_dir), str(photos), "--out", str(tmp_path / "out")])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "generator_ema.safetensors" in result.stderr
    with pytest.raises(CheckpointError, match="not an i2i run directory"):
        i2i.load(tmp_path)


def test_generator_alone_without_discriminator(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run", discriminator=None, train={"steps": 3})
    recipe["losses"] = {"l1": {"weight": 1.0}}
    run = i2i.train(recipe, quiet=True)
    assert run.status == "finished"
    assert not (find_checkpoint(run.run_dir) / "discriminator.safetensors").exists()


def test_gan_losses_without_discriminator_is_an_error(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run", discriminator=None)
    with pytest.raises(i2i.RecipeError, match="losses.gan: needs a discriminator"):
        i2i.train(recipe, quiet=True)


def test_every_adversarial_loss_and_regulariser_trains(photos, tmp_path):
    for i, losses in enumerate([
        {"gan": {"name": "vanilla"}, "r1": {"weight": 1.0, "every": 2}},
        {"gan": {"name": "hinge"}, "fm": {"name": "feature_matching", "weight": 1.0}},
        {"gan": {"name": "wgan"}, "gp": {"weight": 10.0}},
    ]):
        recipe = tiny_recipe(photos, tmp_path / f"run{i}", train={"steps": 2, "d_steps": 2, "g_warmup_steps": 1})
        recipe["losses"] = {"l1": {"weight": 1.0}, **losses}
        run = i2i.train(recipe, quiet=True)
        records = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
        logged = {k for r in records if r["type"] == "train" for k in r}
        for label in losses:
            assert any(k.endswith(f"_{label}") for k in logged), (label, logged)


def test_bf16_autocast_and_channels_last_paths_run_on_cpu(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 2, "precision": "bf16", "channels_last": True})
    run = i2i.train(recipe, quiet=True)
    assert run.status == "finished" and all(torch.isfinite(p).all() for p in run.generator.parameters())
    with pytest.raises(UserError, match="fp16"):
        i2i.train(tiny_recipe(photos, tmp_path / "fp16", train={"precision": "fp16"}), quiet=True)


@pytest.mark.parametrize("amx, avx512_bf16", [(True, False), (False, True), (False, False)])
def test_auto_precision_is_bf16_on_cpus_with_bf16_instructions_and_run_json_says_which(photos, tmp_path, monkeypatch,
                                                                                       amx, avx512_bf16):
    """On an AMX or AVX-512 BF16 CPU `auto` trains under bf16 autocast (measured 1.0-2.4x and
    1.04-1.43x faster there), elsewhere in fp32; run.json records what `auto` chose, so runs
    from two machines can be told apart."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    expected = "bfloat16" if amx or avx512_bf16 else "float32"
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 2, "precision": "auto", "device": "cpu"})
    run = i2i.train(recipe, quiet=True)
    info = json.loads((run.run_dir / "run.json").read_text())
    assert (info["device"], info["precision"]) == ("cpu", expected)
    resumed = i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True)
    info = json.loads((resumed.run_dir / "run.json").read_text())
    assert (info["resumes"][-1]["step"], info["resumes"][-1]["precision"]) == (2, expected)
    # an explicit choice is kept whatever the CPU
    assert resolve_precision("fp32", torch.device("cpu")) == torch.float32
    assert resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16


def test_auto_precision_keeps_fp32_where_torch_cannot_tell(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert resolve_precision("auto", torch.device("cpu")) == torch.float32


def test_channels_last_computes_the_same_as_contiguous():
    net = i2i.registry().build("generators", "unet", 3, 3, depth=3, width=8).eval()
    x = torch.rand(2, 3, 32, 32)
    expected = net(x)
    net = net.to(memory_format=torch.channels_last)
    got = net(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_lr_schedules():
    cfg = {"schedule": "linear", "decay_start": 0.5, "warmup_steps": 0}
    # pix2pix's lambda_rule over 5 + 5 epochs: 5 at the full rate, then 5/6, 4/6, ..., 1/6
    assert [lr_factor(s, 10, cfg) for s in range(10)] == pytest.approx([1.0] * 5 + [5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    cosine = {"schedule": "cosine", "decay_start": 0.5, "warmup_steps": 2}
    assert lr_factor(0, 10, cosine) == 0.5 and lr_factor(1, 10, cosine) == 1.0
    assert lr_factor(2, 10, cosine) == 1.0 and lr_factor(10, 10, cosine) == pytest.approx(0.0)
    assert lr_factor(6, 10, cosine) == pytest.approx(0.5)
    assert lr_factor(5, 10, {"schedule": "constant", "warmup_steps": 0}) == 1.0


# -- unconditional synthesis: latent vector in, image out, through plugins only --------------
class LatentTask(i2i.Task):
    """Unconditional synthesis from a latent vector."""

    input_is_image = False
    in_channels = 8
    out_channels = 3
    metrics = ()

    def make_pair(self, clean, generator=None):
        z = torch.randn(clean.shape[0], self.in_channels, generator=generator, device=clean.device)
        return z, clean * 2 - 1


def mlp_generator(in_channels: int, out_channels: int, *, size: int = 16):
    return torch.nn.Sequential(torch.nn.Linear(in_channels, out_channels * size * size), torch.nn.Tanh(),
                               torch.nn.Unflatten(1, (out_channels, size, size)))


def mlp_discriminator(in_channels: int, *, size: int = 16):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_channels * size * size, 1))


class MNISTStyle:
    @i2i.hookimpl
    def register_tasks(self, register):
        register("latent", LatentTask)

    @i2i.hookimpl
    def register_generators(self, register):
        register("mlp", mlp_generator)

    @i2i.hookimpl
    def register_discriminators(self, register):
        register("mlp_d", mlp_discriminator)


def test_unconditional_gan_fits_without_engine_changes(photos, tmp_path):
    i2i.register_plugin(MNISTStyle(), "mnist_style")
    recipe = {
        "task": {"name": "latent"}, "data": {"source": str(photos), "size": 16},
        "generator": {"name": "mlp"}, "discriminator": {"name": "mlp_d"},
        "losses": {"gan": {"name": "vanilla"}}, "train": {"steps": 3, "batch_size": 4, "device": "cpu"}, "eval": {"crop": 16},
        "output": {"dir": str(tmp_path / "run"), "log_every": 1, "tensorboard": False},
    }
    run = i2i.train(recipe, quiet=True)
    assert run.status == "finished"
    assert run.generator(torch.randn(2, 8)).shape == (2, 3, 16, 16)


def test_checkpoint_files_are_standard_safetensors_written_without_a_copy():
    """Checkpoints stream each tensor to disk; the bytes are exactly safetensors' own."""
    from safetensors.torch import load, save

    from i2i.engine.checkpoint import TensorFile

    weight = torch.randn(3, 4)
    tensors = {"w": weight, "b": torch.randn(4).bfloat16(), "step": torch.tensor(3), "rng": torch.get_rng_state(),
               "flag": torch.tensor([True, False]), "empty": torch.zeros(0), "t": torch.randn(4, 3).t(),
               "tied": weight, "half": torch.randn(2).half()}
    content = TensorFile(tensors)
    assert content.tensors["w"].data_ptr() == weight.data_ptr()  # held, not copied, until written
    raw = bytes(content)
    assert raw == save({k: v.contiguous().clone() for k, v in tensors.items()})
    back = load(raw)
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)


def test_a_checkpoint_that_cannot_be_written_leaves_the_last_one_intact(tmp_path, monkeypatch):
    import errno

    from i2i.engine import checkpoint as ckpt

    store = ckpt.CheckpointStore(tmp_path)
    store.write(1, intact_checkpoint_files(), keep=3, best=False)
    write = ckpt._write_content

    def disk_fills_up(handle, data):
        if data == b"too much":
            raise OSError(errno.ENOSPC, "No space left on device")
        write(handle, data)

    monkeypatch.setattr(ckpt, "_write_content", disk_fills_up)
    with pytest.raises(CheckpointError, match=r"step_0000002: cannot write this checkpoint \(No space left on device\); "
                                              r"the last one, step_0000001, is intact"):
        store.write(2, {"state.json": b"{}", "generator.safetensors": b"too much"}, keep=3, best=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["LATEST", "step_0000001"]  # no half-written folder
    assert ckpt.find_checkpoint(tmp_path).name == "step_0000001"


def test_a_checkpoint_write_killed_midway_leaves_the_last_one_usable_and_is_cleaned_up(tmp_path):
    from i2i.engine import checkpoint as ckpt

    store = ckpt.CheckpointStore(tmp_path)
    store.write(1, intact_checkpoint_files(), keep=3, best=False)
    # what a process killed while writing step 2 leaves: a partial folder under its own pid
    partial = tmp_path / "checkpoints" / ".tmp-step_0000002-999999"
    partial.mkdir()
    (partial / "generator.safetensors").write_bytes(b"half")
    assert ckpt.find_checkpoint(tmp_path).name == "step_0000001"
    # the resumed run's next checkpoint removes it (it could be gigabytes, once per kill)
    store.write(2, intact_checkpoint_files(), keep=3, best=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["LATEST", "step_0000001", "step_0000002"]


def intact_checkpoint_files() -> dict[str, bytes]:
    """The smallest checkpoint find_checkpoint takes for intact: an i2i state, readable weights
    and the random streams a resume reads."""
    from safetensors.torch import save

    from i2i.engine import checkpoint as ckpt

    return {"state.json": json.dumps({"format": ckpt.FORMAT}).encode(), "generator.safetensors": save({"w": torch.zeros(2)}),
            "rng.safetensors": save({"torch_cpu": torch.get_rng_state()})}


def test_a_colouriser_warns_about_training_photos_that_show_no_colour(tmp_path, capsys):
    """A family archive mixes black-and-white scans into colour photos: the colouriser says which."""
    from PIL import Image

    from helpers import TINY_G2C

    folder = make_photos(tmp_path / "photos")
    Image.open(folder / "photo_0.png").convert("L").save(folder / "scan.png")
    i2i.train(tiny_recipe(folder, tmp_path / "g2c", base=TINY_G2C, data={"val_fraction": 0.0}, train={"steps": 1}),
              quiet=True)
    assert "i2i: warning: 1 of 7 training images show no colour (" in capsys.readouterr().err
    i2i.train(tiny_recipe(folder, tmp_path / "denoise", data={"val_fraction": 0.0}, train={"steps": 1}), quiet=True)
    assert "show no colour" not in capsys.readouterr().err  # a denoiser learns from grey photos too


def test_a_run_whose_validation_files_all_fail_to_decode_says_so(tmp_path, capsys):
    """Headers that read but pixels that do not pass the folder scan; the evaluation then scores
    nothing, and the run must say why it has no validation score rather than only 'no validation images'."""
    import io

    from PIL import Image

    val = tmp_path / "val"
    val.mkdir()
    buffer = io.BytesIO()
    Image.effect_noise((40, 40), 64).convert("RGB").save(buffer, format="PNG")
    (val / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    photos = make_photos(tmp_path / "train")
    # sample grids between evaluations too: they took the first validation images and stopped the run
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", data={"val_source": str(val)}, train={"steps": 2},
                                output={"sample_every": 1}), quiet=True)
    err = capsys.readouterr().err
    assert "none of the 1 validation image(s) could be decoded" in err
    assert run.metrics == {} and (run.run_dir / "samples" / "step_0000001.png").is_file()
    from i2i.evaluation import evaluate_run  # i2i eval names the folder the run validates on

    with pytest.raises(UserError, match=rf"^no readable images in {re.escape(str(val))}: none of the 1 image file"):
        evaluate_run(run.run_dir, device="cpu")


def test_commands_suggested_for_a_folder_with_spaces_can_be_pasted(photos, tmp_path, capsys):
    """The 'try:' and 'Resume with:' commands quote a run folder the shell would split."""
    import shlex

    import click

    with click.Context(click.Command("run")):  # as under the i2i command (a program is told of Python calls)
        run = i2i.train(tiny_recipe(photos, tmp_path / "my run", train={"steps": 1}))
    quoted = shlex.quote(str(run.run_dir))
    assert quoted != str(run.run_dir)
    assert f"try: i2i translate {quoted} IMAGE... --out OUT_DIR" in capsys.readouterr().out
    assert shlex.split(f"i2i translate {quoted} IMAGE")[2] == str(run.run_dir)


def test_a_sigterm_while_a_run_sets_up_leaves_no_empty_run_folder(photos, tmp_path, monkeypatch):
    """Reading and caching the data takes seconds; the default SIGTERM handler used to end the
    process there and leave an empty folder that pushed the next run to run-2."""
    from i2i.engine import run as run_module

    original = run_module.Trainer.__init__

    def init_then_terminated(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the Trainer is being built
        original(self, *args, **kwargs)

    def outside_handler(signum, frame):  # stands in for the default (which would end pytest)
        raise SystemError("SIGTERM reached the process's own handler")

    monkeypatch.setattr(run_module.Trainer, "__init__", init_then_terminated)
    previous = signal.signal(signal.SIGTERM, outside_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            i2i.train(tiny_recipe(photos, tmp_path / "run"), quiet=True)
        assert signal.getsignal(signal.SIGTERM) is outside_handler  # the process's own handler, back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["", "[]", '{"resumes": 3}', "{not json"])
def test_a_run_whose_run_json_is_damaged_still_resumes(photos, tmp_path, capsys, damage):
    """A crash or a full disk can leave run.json empty; the run's weights are elsewhere."""
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 2}), quiet=True)
    (run.run_dir / "run.json").write_text(damage)
    resumed = i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True)
    assert resumed.step == 3
    assert "run.json: cannot be read" in capsys.readouterr().err
    assert (run.run_dir / "run.json.unreadable").read_text() == damage
    info = json.loads((run.run_dir / "run.json").read_text())
    assert info["rebuilt_at_resume"] and info["resumes"][0]["step"] == 2


class ConstantPlusGAN(i2i.AdversarialLoss):
    """An adversarial loss whose value is 3 whatever the logits are (its gradient still trains D)."""

    def d_loss(self, d_real, d_fake):
        logits = d_real[0].mean() - d_fake[0].mean()
        return logits - logits.detach() + 3.0

    def g_loss(self, d_fake):
        return d_fake[0].mean() - d_fake[0].mean().detach() + 3.0


class ConstantGANPlugin:
    @i2i.hookimpl
    def register_losses(self, register):
        register("constant_gan", ConstantPlusGAN)


def test_discriminator_losses_are_logged_per_d_step_whatever_train_d_steps(photos, tmp_path):
    """With train.d_steps = 2, d_ losses were logged summed over the two D steps: twice their value."""
    i2i.register_plugin(ConstantGANPlugin(), "constant_gan_plugin")
    for d_steps in (1, 3):
        recipe = tiny_recipe(photos, tmp_path / f"run{d_steps}", losses={"l1": {"weight": 1.0}, "gan": {"name": "constant_gan"}},
                             train={"steps": 2, "d_steps": d_steps}, output={"log_every": 2})
        run = i2i.train(recipe, quiet=True)
        records = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
        logged = [r for r in records if r["type"] == "train"][-1]
        assert logged["d_gan"] == pytest.approx(3.0) and logged["g_gan"] == pytest.approx(3.0), (d_steps, logged)


class StopAtOnce(i2i.Callback):
    def on_run_start(self, trainer):
        trainer.request_stop()


def test_a_resumed_run_stopped_before_its_first_step_leaves_its_checkpoint_as_it_was(photos, tmp_path):
    """It wrote the checkpoint it resumed from again, removing the old copy first: a kill in
    between lost the run's only checkpoint."""
    with pytest.raises(i2i.TrainingStopped):
        i2i.train(tiny_recipe(photos, tmp_path / "run"), callbacks=[StopAt(4)], quiet=True)
    checkpoint = tmp_path / "run" / "checkpoints" / "step_0000004"
    before = checkpoint.stat().st_ino, (checkpoint / "state.json").read_bytes()
    with pytest.raises(i2i.TrainingStopped, match=r"stopped at step 4/8; checkpoint saved"):
        i2i.train(None, resume=tmp_path / "run", callbacks=[StopAtOnce()], quiet=True)
    assert (checkpoint.stat().st_ino, (checkpoint / "state.json").read_bytes()) == before


def test_a_step_written_again_replaces_its_checkpoint_by_renames(tmp_path):
    """The old copy is removed only once the new one is in place; a process killed between the
    two renames leaves the old copy, which goes back in place."""
    from i2i.engine import checkpoint as ckpt

    store = ckpt.CheckpointStore(tmp_path)
    store.write(3, intact_checkpoint_files(), keep=3, best=False)
    files = intact_checkpoint_files()
    files["note.txt"] = b"second"
    store.write(3, files, keep=3, best=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["LATEST", "step_0000003"]
    assert (tmp_path / "checkpoints" / "step_0000003" / "note.txt").read_bytes() == b"second"
    # killed after moving the old copy aside, before the new one took its place: the resume (or the
    # next write) puts it back; a reader leaves it, as it could be inside a live swap
    (tmp_path / "checkpoints" / "step_0000003").rename(tmp_path / "checkpoints" / ".old-step_0000003-999999")
    store.restore_swapped()
    assert ckpt.find_checkpoint(tmp_path).name == "step_0000003"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["LATEST", "step_0000003"]


def test_a_lazy_regulariser_runs_on_every_every_th_discriminator_step(photos, tmp_path, monkeypatch):
    """R1's `every` counts D steps as its documentation says: it counted generator steps, so with
    train.d_steps = 3 it ran on all three D steps of those, three times as strong."""
    from i2i_builtin_losses.penalties import R1

    calls = []
    penalty = R1.forward
    monkeypatch.setattr(R1, "forward", lambda self, *args: calls.append(1) or penalty(self, *args))
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 6, "d_steps": 3})
    recipe["losses"] = {"l1": {}, "gan": {"name": "vanilla"}, "r1": {"every": 4}}
    i2i.train(recipe, quiet=True)
    assert len(calls) == 5  # D steps 0, 4, 8, 12 and 16 of 18 (it was 6: each D step of generator steps 0 and 4)


def test_a_colouriser_refuses_a_folder_of_grey_photos_only(tmp_path):
    """The old black-and-white photos someone wants coloured, given to train on: it would learn grey."""
    from PIL import Image

    from helpers import TINY_G2C

    folder = make_photos(tmp_path / "photos", count=3)
    for photo in folder.iterdir():
        Image.open(photo).convert("L").convert("RGB").save(photo)  # grey, stored as RGB as scans often are
    with pytest.raises(i2i.RecipeError, match=r"data.source = '.*photos': none of its 3 training images shows colour, "
                                              r"and task 'gray2color' learns colour from colour photos; train on colour "
                                              r"photos \(or \"sample\"\), then give your grey ones to i2i translate$"):
        i2i.train(tiny_recipe(folder, tmp_path / "g2c", base=TINY_G2C, data={"val_fraction": 0.0}), quiet=True)
    assert not (tmp_path / "g2c").exists()


def test_an_ema_longer_than_the_run_is_warned_about(photos, tmp_path, capsys):
    """A 300-step run with train.ema = 0.999 scored 20.7 dB on its EMA, 26.3 on its trained G."""
    i2i.train(tiny_recipe(photos, tmp_path / "short", train={"steps": 20, "ema": 0.99}), quiet=True)
    assert ("i2i: warning: train.ema = 0.99 averages G's weights over about 100 steps, more than this run's 20: the "
            "weights evaluated, kept as BEST and translated would still be mostly the initial ones; set "
            "train.ema_warmup = true, or train.ema to at most 0.5 (a tenth of the run) or 0") in capsys.readouterr().err
    i2i.train(tiny_recipe(photos, tmp_path / "long", train={"steps": 20, "ema": 0.9}), quiet=True)
    assert "train.ema" not in capsys.readouterr().err
    i2i.train(tiny_recipe(photos, tmp_path / "warm", train={"steps": 20, "ema": 0.99, "ema_warmup": True}), quiet=True)
    assert "train.ema" not in capsys.readouterr().err  # warm-up: the EMA follows G early on


def test_ema_warmup_follows_g_from_the_first_step(photos, tmp_path):
    """Decay min(ema, (1 + t) / (10 + t)) at step t: 0.1, then 2/11, ...; without warm-up, ema."""
    from i2i.engine.trainer import Trainer

    for warmup, decays in ((True, (0.1, 2 / 11, 3 / 12)), (False, (0.999,) * 3)):
        recipe = i2i.load_recipe(tiny_recipe(photos, tmp_path / f"w{warmup}", train={
            "steps": 3, "ema": 0.999, "ema_warmup": warmup, "precision": "fp32"}), [])
        (tmp_path / f"w{warmup}" / "run").mkdir(parents=True)
        trainer = Trainer(recipe, tmp_path / f"w{warmup}" / "run", quiet=True)
        expected = {k: v.clone() for k, v in trainer.G.state_dict().items() if v.is_floating_point()}
        for decay in decays:
            trainer.train_step()
            trainer.step += 1
            weights = trainer.G.state_dict()
            for name, value in expected.items():
                value.mul_(decay).add_(weights[name], alpha=1 - decay) if name in dict(trainer.G.named_parameters()) \
                    else value.copy_(weights[name])  # buffers are copied
        for name, value in trainer.ema.state_dict().items():
            if name in expected:
                torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_term_absent_from_part_of_a_log_window_is_averaged_over_its_own_steps(photos, tmp_path):
    """g_gan first runs at step 3 (train.g_warmup_steps = 2): a log of steps 1-3 showed its
    step-3 value divided by 3, as if G fooled D; the other terms are means over all 3 steps."""
    lines = {}
    for every in (1, 3):
        recipe = tiny_recipe(photos, tmp_path / f"log{every}", train={**TINY_GAN["train"], "steps": 6,
                                                                       "g_warmup_steps": 2},
                             output={"log_every": every})
        run = i2i.train(recipe, quiet=True)
        rows = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
        lines[every] = {row["step"]: row for row in rows if row["type"] == "train"}
    each, window = lines[1], lines[3][3]
    assert "g_gan" not in each[1] and "g_gan" not in each[2]
    assert window["g_gan"] == pytest.approx(each[3]["g_gan"], rel=1e-5)
    for key in ("g_l1", "d_gan"):
        assert window[key] == pytest.approx(sum(each[step][key] for step in (1, 2, 3)) / 3, rel=1e-5)


def test_a_users_copies_beside_the_checkpoints_are_never_pruned_nor_set_aside(tmp_path):
    """Any name starting with step_ was taken for i2i's own: step_0000001_keep was pruned without
    a word, and copies of the checkpoint resumed from moved away as 'later' ones."""
    import shutil

    from i2i.engine import checkpoint as ckpt

    store = ckpt.CheckpointStore(tmp_path)
    for step in (1, 2):
        store.write(step, intact_checkpoint_files(), keep=1, best=False)
    root = store.root
    copies = ["step_0000001_keep", "step_1-good", "step_0000002.bak", "step_0000002 copy"]
    shutil.copytree(root / "step_0000002", root / "step_0000001_keep")
    for name in copies[1:]:
        shutil.copytree(root / "step_0000002", root / name)
    store.write(3, intact_checkpoint_files(), keep=1, best=False)
    assert all((root / name).is_dir() for name in copies)
    assert [p.name for p in ckpt.checkpoint_folders(root)] == ["step_0000002", "step_0000003"]  # LATEST and one more
    moved, aside = store.set_aside_later(root / "step_0000002")
    assert moved == ["step_0000003"] and (aside / "step_0000003").is_dir()
    with pytest.raises(i2i.errors.CheckpointError, match=r"later-than-step_0000002: not an i2i run directory \(no "
                                                         r"recipe.toml or checkpoints/\); it holds checkpoints "
                                                         r"\(step_0000003\): give one of them, e.g. .*step_0000003$"):
        ckpt.find_checkpoint(aside)
    assert all((root / name).is_dir() for name in copies)
    # LATEST pointed at a copy by hand: the newest checkpoint instead, saying how to read the copy
    (root / "LATEST").write_text("step_0000002.bak")
    assert ckpt._pointer_problem(store, "LATEST") == (
        f"names step_0000002.bak, which is not one of i2i's step_N folders (a copy of one is read when given as the "
        f"checkpoint itself: {root / 'step_0000002.bak'})")
    # a step past 9,999,999 has eight digits: newest by number, not by text
    store.write(10_000_000, intact_checkpoint_files(), keep=5, best=False)
    assert store.newest_complete().name == "step_10000000"


def test_a_plain_progress_line_gives_the_rate_since_the_previous_line(monkeypatch, capsys):
    """The rate was the average since the run started, so a slow-down (or a warm-up) read as a
    steady rate and the ETA was off."""
    from i2i.engine import report

    clock = iter([100.0, 110.0, 115.0])
    monkeypatch.setattr(report.time, "perf_counter", lambda: next(clock))
    progress = report.Progress("plain", total=40, start=0)
    progress.log(10, {"g_l1": 0.5})  # 10 steps in 10 s
    progress.log(20, {"g_l1": 0.4})  # 10 steps in 5 s
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("step 10/40  1.00 it/s  ETA 30s")
    assert lines[1].startswith("step 20/40  2.00 it/s  ETA 10s")


def test_run_json_records_what_the_speed_settings_came_to(photos, tmp_path, monkeypatch):
    """A run's record said nothing of the thread count (which decides the last bits), the
    layout, or whether its photos were cached."""
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 1, "threads": 1, "channels_last": True},
                         data={"cache_gb": 0})
    run = i2i.train(recipe, quiet=True)
    speed = json.loads((run.run_dir / "run.json").read_text())["speed"]
    assert speed == {"channels_last": True, "compile": False, "cuda_graphs": False, "data_cached": False, "threads": 1}
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    resumed = i2i.train(None, resume=run.run_dir, overrides=["train.steps=2", "train.threads=auto",
                                                             "data.cache_gb=4"], quiet=True)
    speed = json.loads((resumed.run_dir / "run.json").read_text())["resumes"][-1]["speed"]
    assert speed["threads"] == f"auto, at most {torch.get_num_threads()}" and speed["data_cached"] is True


def test_a_colouriser_validated_on_grey_photos_is_warned_that_its_best_means_nothing(photos, tmp_path, capfd):
    """An archivist's black-and-white validation folder scored the least-coloured checkpoint best,
    without a word (i2i eval warned; the run, which picks the best from them, did not)."""
    from PIL import Image

    from helpers import TINY_G2C

    grey = tmp_path / "grey"
    grey.mkdir()
    for i, source in enumerate(sorted(photos.iterdir())[:2]):
        Image.open(source).convert("L").save(grey / f"scan_{i}.png")
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, data={"val_source": str(grey)}, train={"steps": 2},
                         eval={"every": 1})
    i2i.train(recipe, quiet=True)
    err = capfd.readouterr().err
    assert err.count("i2i: warning: all validation images show no colour (scan_0.png, scan_1.png), and task "
                     "'gray2color' is scored on its output's colours against theirs") == 1, err  # once, not per evaluation
    assert "yet the best checkpoint is chosen by them; validate on colour photos (data.val_source)" in err


def test_sync_bn_in_one_process_is_said_to_do_nothing(photos, tmp_path, capfd):
    i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 1, "sync_bn": True}))
    assert ("i2i: note: train.sync_bn = true has no effect in one process: it synchronises batch norm across the "
            "processes of i2i run --nproc N (or torchrun), each on a CUDA GPU (it is refused on the CPU)"
            in capfd.readouterr().err)  # (the tests train on the CPU, where --nproc refuses sync_bn)


def test_a_task_that_makes_its_own_pairs_is_scored_on_pairs_made_elsewhere(photos, tmp_path):
    """Real noisy photos and their clean ones (a denoising benchmark's pairs) scored a synthetic
    denoiser only through a paired run made for the purpose: --pair-data was refused."""
    import numpy as np
    from PIL import Image

    from i2i.evaluation import evaluate_run

    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 1}), quiet=True)
    (tmp_path / "noisy").mkdir()
    (tmp_path / "clean").mkdir()
    rng = np.random.default_rng(0)
    expected = {}
    for source in sorted(photos.iterdir())[:2]:
        clean = np.asarray(Image.open(source).convert("RGB")).astype(float)
        noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).round()
        Image.fromarray(clean.astype(np.uint8)).save(tmp_path / "clean" / f"{source.stem}.png")
        Image.fromarray(noisy.astype(np.uint8)).save(tmp_path / "noisy" / f"{source.stem}.png")
        expected[f"{source.stem}.png"] = 10 * np.log10(255 ** 2 / ((noisy - clean) ** 2).mean())
    scored = evaluate_run(run.run_dir, data_dir=tmp_path / "noisy", pair_dir=tmp_path / "clean", crop=0, per_image=True)
    assert scored["images"] == 2 and scored["source"] == f"{tmp_path / 'noisy'} with its pairs in {tmp_path / 'clean'}"
    for row in scored["per_image"]:  # the input is the noisy photo as it is, scored against its own clean one
        assert row["baselines"]["noisy input"]["psnr"] == pytest.approx(expected[row["file"]], abs=1e-3)


def test_pairs_made_elsewhere_are_refused_for_a_super_resolution_run(tmp_path):
    from helpers import make_photos

    photos = make_photos(tmp_path / "photos", count=3)
    from test_superres import TINY_SR

    run = i2i.train(tiny_recipe(photos, tmp_path / "run", base=TINY_SR, train={"steps": 1}), quiet=True)
    from i2i.evaluation import evaluate_run

    with pytest.raises(i2i.UserError, match=r"a super-resolution model's input is smaller than its target, which "
                                            r"data_dir and pair_dir cannot give"):  # named as the API's arguments
        evaluate_run(run.run_dir, data_dir=photos, pair_dir=photos, crop=0)


def test_a_skipped_update_leaves_no_nonfinite_statistics_in_the_checkpoints(photos, tmp_path):
    """Under on_nonfinite = 'skip' the skipped step's forward had written its batch-norm statistics
    of the bad values: every checkpoint held infinite running_var, which resuming refuses as
    damaged, so the 'finished' run could not be continued."""
    from safetensors.torch import load_file

    recipe = tiny_recipe(photos, tmp_path / "run", train={"on_nonfinite": "skip", "steps": 4, "precision": "fp32",
                                                          "d": {"lr": 1e10}}, output={"checkpoint_every": 1})
    run = i2i.train(recipe, quiet=True)
    assert run.status == "finished"
    for step in range(1, 5):
        folder = tmp_path / "run" / "checkpoints" / f"step_{step:07d}"
        if folder.is_dir():
            for name in ("generator", "discriminator"):
                tensors = load_file(folder / f"{name}.safetensors")
                assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()), (step, name)
    assert i2i.train(None, resume=tmp_path / "run", overrides=["train.steps=5"], quiet=True).step == 5


def test_a_first_step_nan_after_the_discriminators_update_names_its_learning_rate(photos, tmp_path):
    """D is updated before G within a step: the generator step's adversarial loss at step 1 was
    said to be NaN 'before any weight had changed, so the learning rate is not the cause', for a
    train.d.lr of 1e10."""
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 4, "precision": "fp32", "d": {"lr": 1e10}})
    with pytest.raises(TrainingStopped, match=r"^loss 'gan' \(generator step, 'lsgan' of plugin '\w+'\) was NaN or "
                                              r"infinite at the first step, after the discriminator's first update: lower "
                                              r"train.d.lr"):
        i2i.train(recipe, quiet=True)
    assert not (tmp_path / "run").exists()


class GHalfNaNAfter(i2i.AdversarialLoss):
    """An LSGAN whose generator half returns NaN from a given call on."""

    def __init__(self, at: int = 3):
        super().__init__()
        self.at, self.calls = at, 0

    def d_loss(self, d_real, d_fake):
        return sum(((r - 1) ** 2).mean() + (f ** 2).mean() for r, f in zip(d_real, d_fake))

    def g_loss(self, d_fake):
        self.calls += 1
        value = sum(((f - 1) ** 2).mean() for f in d_fake)
        return value * float("nan") if self.calls >= self.at else value


class GHalfNaNPlugin:
    @i2i.hookimpl
    def register_losses(self, register):
        register("g_half_nan", GHalfNaNAfter)


def test_a_later_nan_in_a_loss_through_the_discriminator_names_both_learning_rates(photos, tmp_path):
    """The generator's adversarial term blows up as often from D's weights as from G's; the
    message named only train.g.lr, so a user whose train.d.lr was the cause lowered the wrong one."""
    i2i.register_plugin(GHalfNaNPlugin(), "ghalfnan")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 6},
                         losses={"l1": {"name": "l1"}, "gan": {"name": "g_half_nan", "at": 4}})
    with pytest.raises(TrainingStopped) as info:
        i2i.train(recipe, quiet=True)
    message = str(info.value)
    assert "loss 'gan' (generator step, 'g_half_nan' of plugin 'ghalfnan') became NaN or infinite at step 4" in message
    assert "Lower train.g.lr or train.d.lr (this loss goes through the discriminator)" in message
