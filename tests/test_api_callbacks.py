"""A program's callbacks and recipes meeting the engine: a stop asked by raising, an error that
names its callback, an on_run_end that does not hide the error that ended the run, and a
Recipe edited after loading checked again."""

import sys

import pytest

import i2i
from i2i.engine.checkpoint import find_checkpoint
from i2i.errors import CheckpointError, RecipeError
from helpers import TINY_G2C, make_photos, tiny_recipe


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


class StopAt(i2i.Callback):
    def __init__(self, step):
        self.step = step

    def on_log(self, trainer, step, values):
        if step == self.step:
            raise i2i.TrainingStopped("enough")


class Boom(i2i.Callback):
    def on_log(self, trainer, step, values):
        if step == 4:
            raise ValueError("boom")


class FailsAtEnd(i2i.Callback):
    def on_run_end(self, trainer, status, metrics):
        raise OSError("disk full")


def test_a_callback_raising_training_stopped_stops_like_request_stop(photos, tmp_path):
    with pytest.raises(i2i.TrainingStopped, match=r"stopped at step 4/8 \(enough\); checkpoint saved") as info:
        i2i.train(tiny_recipe(photos, tmp_path / "run"), callbacks=[StopAt(4)], quiet=True)
    assert info.value.step == 4 and info.value.run_dir == tmp_path / "run"
    assert str(info.value).endswith(f"(Python: i2i.train(None, resume={str(tmp_path / 'run')!r}))")
    assert find_checkpoint(tmp_path / "run").name.endswith("_0000004")
    resumed = i2i.train(None, resume=tmp_path / "run", quiet=True)
    assert resumed.status == "finished" and resumed.step == 8


def test_a_program_stops_a_run_training_in_another_thread_with_request_stop(photos, tmp_path):
    """Signals reach the main thread only, so a service training in a worker thread stops it
    with trainer.request_stop(), as the README says; the main thread's SIGINT handler is left
    alone."""
    import signal
    import threading

    started, go, outcome = threading.Event(), threading.Event(), {}

    class KeepsTheTrainer(i2i.Callback):
        def on_log(self, trainer, step, values):  # step 2: the program asks while the run trains
            if not started.is_set():
                outcome["trainer"] = trainer
                started.set()
                go.wait(60)

    def worker():
        try:
            i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 50}), callbacks=[KeepsTheTrainer()],
                      quiet=True)
        except BaseException as exc:
            outcome["raised"] = exc

    handler = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=worker)
    thread.start()
    assert started.wait(120)
    outcome["trainer"].request_stop("the service is shutting down")
    go.set()
    thread.join(120)
    stopped = outcome["raised"]
    assert isinstance(stopped, i2i.TrainingStopped) and "(the service is shutting down)" in str(stopped)
    assert stopped.run_dir == tmp_path / "run" and stopped.step == 2
    assert find_checkpoint(tmp_path / "run").name.endswith(f"_{stopped.step:07d}")
    assert signal.getsignal(signal.SIGINT) is handler


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_a_failing_callback_is_named_with_the_step_and_the_checkpoint_to_resume_from(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run", output={"checkpoint_every": 2})
    with pytest.raises(ValueError, match="boom") as info:
        i2i.train(recipe, callbacks=[Boom()], quiet=True)
    note = "\n".join(info.value.__notes__)  # on_log at step 4 comes before its checkpoint
    assert "raised by callback Boom.on_log at step 4" in note
    assert f"its last checkpoint is at step 2: i2i run --resume {tmp_path / 'run'}" in note


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_a_keyboard_interrupt_from_a_callback_is_named_too(photos, tmp_path):
    class Interrupts(i2i.Callback):
        def on_evaluate(self, trainer, step, metrics):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 2}), callbacks=[Interrupts()], quiet=True)
    assert "raised by callback Interrupts.on_evaluate at step 2; it has no checkpoint yet" in "\n".join(info.value.__notes__)


def test_on_run_end_failing_does_not_hide_the_error_that_ended_the_run(photos, tmp_path, capsys):
    with pytest.raises(ValueError, match="boom"):
        i2i.train(tiny_recipe(photos, tmp_path / "run"), callbacks=[Boom(), FailsAtEnd()], quiet=True)
    assert "a callback's on_run_end failed while the run was ending on an error: OSError: disk full" in capsys.readouterr().err
    # with nothing else going wrong, its error is the run's
    with pytest.raises(OSError, match="disk full"):
        i2i.train(tiny_recipe(photos, tmp_path / "other", train={"steps": 1}), callbacks=[FailsAtEnd()], quiet=True)


def test_on_run_end_failing_is_raised_from_a_run_started_while_the_caller_handles_an_exception(photos, tmp_path):
    # the run itself finished: an exception the caller is handling (a retry in an except
    # block) is not one that ended the run
    try:
        raise KeyError("the caller's own")
    except KeyError:
        with pytest.raises(OSError, match="disk full"):
            i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 1}), callbacks=[FailsAtEnd()], quiet=True)


def test_a_single_callback_instead_of_a_list_is_named(photos, tmp_path):
    with pytest.raises(TypeError, match=r"callbacks is a list of Callback instances, e\.g\. callbacks=\[Boom\(\)\]"):
        i2i.train(tiny_recipe(photos, tmp_path / "run"), callbacks=Boom(), quiet=True)
    assert not (tmp_path / "run").exists()


def test_a_recipe_edited_after_loading_is_checked_again(photos, tmp_path):
    recipe = i2i.load_recipe(tiny_recipe(photos, tmp_path / "run"), ["train.steps=2"])
    recipe["train"]["steps"] = "many"
    # the program's edit, not the recipe it loaded (nor the --set it gave then)
    with pytest.raises(RecipeError, match=r"^<recipe> \(edited after load_recipe\): train\.steps = 'many'"):
        i2i.train(recipe, quiet=True)
    recipe["train"]["steps"] = 1
    run = i2i.train(recipe, quiet=True)
    assert run.step == 1 and recipe["output"]["dir"] == str(tmp_path / "run")  # the caller's Recipe kept as it was
    assert run.recipe.overrides == ["train.steps=2"]
    assert "generator=" not in repr(run) and "status='finished'" in repr(run)


def test_loading_a_run_without_a_checkpoint_says_how_to_start_it_again(photos, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "recipe.toml").write_text("")
    with pytest.raises(CheckpointError, match=r"no checkpoint yet .*to start it again: i2i run .*recipe\.toml"):
        i2i.load(run_dir)
    (run_dir / "checkpoints" / ".tmp-step_0000168-4242").mkdir(parents=True)  # stopped while writing its first
    with pytest.raises(CheckpointError, match=r"no checkpoint yet \(its only one, \.tmp-step_0000168-4242, was never "
                                              r"finished \(the process stopped while writing it\)\); to start it again"):
        i2i.load(run_dir)


def test_the_command_line_names_a_failing_plugin_callback_in_one_line(photos, tmp_path):
    """A registered callback that raises ends ``i2i run`` with one line naming it, the event,
    the step, its error and where to resume; the traceback only with I2I_TRACEBACK=1."""
    from i2i.recipe import dumps_toml
    from plugin_env import make_distribution, run_i2i

    code = ("import i2i\n"
            "class BadCb(i2i.Callback):\n"
            "    def on_log(self, trainer, step, values):\n"
            "        raise RuntimeError('callback boom')\n"
            "@i2i.hookimpl\n"
            "def register_callbacks(register):\n"
            "    register('badcb', BadCb)\n")
    site = tmp_path / "site"
    make_distribution(site, "i2i-badcb", "1.0", {"badcb": "i2i_badcb"}, {"i2i_badcb.py": code})
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 3, "callbacks": ["badcb"]}, output={"log_every": 1})
    (tmp_path / "r.toml").write_text(dumps_toml(recipe))
    result = run_i2i(["run", str(tmp_path / "r.toml")], site)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "i2i: error: callback BadCb.on_log (plugin 'badcb') failed at step 1: RuntimeError: callback boom; "
        "it has no checkpoint, so its folder is removed (I2I_TRACEBACK=1 shows where)")
    assert not (tmp_path / "run").exists()  # a folder with nothing to resume was left for each try
    traced = run_i2i(["run", str(tmp_path / "r.toml")], site, env={"I2I_TRACEBACK": "1"})
    assert traced.returncode == 1 and "Traceback" in traced.stderr and "RuntimeError: callback boom" in traced.stderr


class ReadsTrainer(i2i.Callback):
    """What docs/plugins.md says a callback may read of the trainer."""

    def on_run_start(self, trainer):
        self.seen = (trainer.step, trainer.total_steps, trainer.run_dir, trainer.recipe["train"]["steps"],
                     trainer.device.type, trainer.G is not None, trainer.D is None, trainer.eval_generator is not None,
                     trainer.dist.is_main)


def test_a_callback_reads_the_trainer_attributes_the_docs_list(photos, tmp_path):
    reads = ReadsTrainer()
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 2})
    i2i.train(recipe, callbacks=[reads], quiet=True)
    assert reads.seen == (0, 2, tmp_path / "run", 2, "cpu", True, True, True, True)


def test_an_event_method_that_cannot_take_its_arguments_is_refused_before_the_run(photos, tmp_path):
    """on_log(self, trainer) failed at the first log, leaving a run folder of logs behind."""
    class TooFew(i2i.Callback):
        def on_log(self, trainer):
            pass

    with pytest.raises(TypeError, match=r"^callback TooFew.on_log cannot take the arguments i2i passes; it is "
                                        r"def on_log\(self, trainer, step, values\)$"):
        i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 2}), quiet=True, callbacks=[TooFew()])
    assert not (tmp_path / "run").exists()

    class Loose(i2i.Callback):  # what Python can pass the arguments to is fine
        def on_log(self, trainer, *args, **kwargs):
            pass

    assert i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 2}), quiet=True,
                     callbacks=[Loose()]).status == "finished"


def test_list_components_takes_a_kind_singular_as_i2i_list_does():
    assert [c.name for c in i2i.list_components("generator", "unet_256")] == ["unet_256"]
    assert set(i2i.registry("Task")) == set(i2i.registry("tasks"))


def test_callbacks_get_absolute_paths_for_new_and_resumed_runs_alike(tmp_path, monkeypatch):
    """A new run gave callbacks trainer.run_dir and checkpoint paths relative to the working
    directory (a resumed run's were absolute): a program that kept them and then changed
    directory lost them."""
    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    seen = []

    class Keep(i2i.Callback):
        def on_run_start(self, trainer):
            seen.append(trainer.run_dir)

        def on_checkpoint(self, trainer, step, path):
            seen.append(path)

    monkeypatch.chdir(tmp_path)
    run = i2i.train(tiny_recipe(photos, "runs/x", base=TINY_G2C, train={"steps": 1}), callbacks=[Keep()], quiet=True)
    i2i.train(None, resume=run.run_dir, overrides=["train.steps=2"], callbacks=[Keep()], quiet=True)
    assert len(seen) == 4 and all(path.is_absolute() for path in seen)
    assert seen[0] == seen[2] == tmp_path / "runs" / "x" and seen[1] == seen[0] / "checkpoints" / "step_0000001"


class EarlyStopping(i2i.Callback):
    """Ends the run once the validation PSNR has not improved for ``patience`` evaluations."""

    def __init__(self, patience=1, at_log=None):
        self.patience, self.at_log, self.best, self.waited, self.ended = patience, at_log, None, 0, None

    def on_log(self, trainer, step, values):
        if step == self.at_log:
            trainer.finish_early("asked at a log step")

    def on_evaluate(self, trainer, step, metrics):
        if self.best is None or metrics["psnr"] > self.best:
            self.best, self.waited = metrics["psnr"], 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            trainer.finish_early(f"psnr has not improved for {self.waited} evaluation(s)")

    def on_run_end(self, trainer, status, metrics):
        self.ended = (status, trainer.step, bool(metrics))


def test_early_stopping_ends_a_run_as_finished_with_its_last_step_scored_and_saved(photos, tmp_path):
    """request_stop ended a run as interrupted (exit 1, TrainingStopped, and a step asked for
    at a log step was never scored): early stopping could only end as a failure."""
    import json

    early = EarlyStopping(patience=1, at_log=3)  # a step that is not scored on its own (eval.every = 2)
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 8}, eval={"every": 2},
                                output={"log_every": 1}), callbacks=[early], quiet=True)
    assert (run.status, run.step) == ("finished", 3) and early.ended == ("finished", 3, True) and run.metrics
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "eval"] == [2, 3]  # the last step scored, as a run's last is
    assert find_checkpoint(tmp_path / "run").name == "step_0000003"
    assert (tmp_path / "run" / "checkpoints" / "BEST").is_file()
    resumed = i2i.train(None, resume=tmp_path / "run", quiet=True)  # a resume trains on towards train.steps
    assert (resumed.status, resumed.step) == ("finished", 8)


def test_the_command_line_says_why_a_run_ended_early_and_exits_0(photos, tmp_path):
    from i2i.recipe import dumps_toml
    from plugin_env import make_distribution, run_i2i

    code = ("import i2i\n"
            "class Enough(i2i.Callback):\n"
            "    def on_evaluate(self, trainer, step, metrics):\n"
            "        trainer.finish_early('good enough')\n"
            "@i2i.hookimpl\n"
            "def register_callbacks(register):\n"
            "    register('enough', Enough)\n")
    site = tmp_path / "site"
    make_distribution(site, "i2i-enough", "1.0", {"enough": "i2i_enough"}, {"i2i_enough.py": code})
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 6, "callbacks": ["enough"]}, eval={"every": 2})
    (tmp_path / "r.toml").write_text(dumps_toml(recipe))
    result = run_i2i(["run", str(tmp_path / "r.toml")], site)
    assert result.returncode == 0, result.stderr
    assert "i2i: finished 2 steps of 6, ended early (good enough): psnr " in result.stdout


class DropOnce(i2i.Callback):
    """Drops G's and D's learning rate tenfold at step 2, once per run, resumes included."""

    def __init__(self):
        self.dropped_at = None
        self.loaded = None

    def on_log(self, trainer, step, values):
        if step == 2 and self.dropped_at is None:
            trainer.scale_lr(0.1)
            self.dropped_at = step

    def state_dict(self):
        return {"dropped_at": self.dropped_at}

    def load_state_dict(self, state):
        self.loaded = dict(state)
        self.dropped_at = state["dropped_at"]


def test_a_callback_scales_the_learning_rate_and_keeps_its_state_across_a_resume(photos, tmp_path):
    """Editing trainer.opt_g.param_groups was overwritten at the next step (the schedule is set
    every step), and a callback's own state was lost at a resume, so 'drop once' dropped twice."""
    import json

    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 6, "g": {"lr": 1e-3}, "d": {"lr": 2e-3}},
                         output={"log_every": 1})
    with pytest.raises(i2i.TrainingStopped):
        i2i.train(recipe, callbacks=[DropOnce(), StopAt(4)], quiet=True)
    resumed = DropOnce()
    i2i.train(None, resume=tmp_path / "run", callbacks=[resumed], quiet=True)
    assert resumed.loaded == {"dropped_at": 2} and resumed.dropped_at == 2  # not dropped again
    rates = {r["step"]: r["lr_g"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
             if r["type"] == "train"}
    assert rates[1] == pytest.approx(1e-3) and rates[2] == pytest.approx(1e-3)  # logged at step 2: the drop follows it
    assert all(rates[step] == pytest.approx(1e-4) for step in (3, 4, 5, 6)), rates  # 4-6: after the resume too
    state = json.loads((find_checkpoint(tmp_path / "run") / "state.json").read_text())
    assert state["lr_scale"] == {"g": pytest.approx(0.1), "d": pytest.approx(0.1)}


    class DropsToNothing(i2i.Callback):
        def on_run_start(self, trainer):
            trainer.scale_lr(0)

    with pytest.raises(ValueError, match=r"scale_lr's factor = 0: expected a number above 0"):
        i2i.train(tiny_recipe(photos, tmp_path / "zero"), callbacks=[DropsToNothing()], quiet=True)

    class DropsD(i2i.Callback):
        def on_run_start(self, trainer):
            trainer.scale_lr(0.5, which="d")

    with pytest.raises(ValueError, match=r"scale_lr\(which='d'\): this run has no discriminator"):
        recipe = tiny_recipe(photos, tmp_path / "no_d", discriminator=None)
        recipe["losses"] = {"l1": {"weight": 1.0}}
        i2i.train(recipe, callbacks=[DropsD()], quiet=True)


def test_eval_best_metric_picks_the_best_checkpoint_in_the_direction_its_metric_declares(photos, tmp_path, capsys):
    """Only the task's main_metric could pick BEST: a built-in denoiser could not keep its best by
    a perceptual distance (lower is better) without a new task."""
    import json

    def worst_error():
        def score(output, target):
            return (output - target).abs().amax(dim=(1, 2, 3))
        score.lower_is_better = True
        return score

    i2i.register_plugin(type("W", (), {"register_metrics": i2i.hookimpl(
        lambda register: register("worst_error", worst_error))}), "worst_error_plugin")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 4}, eval={"every": 1, "metrics": ["worst_error"],
                                                                            "best_metric": "worst_error"},
                         output={"keep": 4})
    i2i.train(recipe, quiet=True)
    scores = {r["step"]: r["metrics"]["worst_error"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl")
                                                                  .read_text().splitlines()) if r["type"] == "eval"}
    best_step = min(scores, key=scores.get)
    assert (tmp_path / "run" / "checkpoints" / "BEST").read_text().strip() == f"step_{best_step:07d}"
    # a misspelt name is one line naming the key and the names there are
    recipe["eval"]["best_metric"] = "worst_eror"
    with pytest.raises(RecipeError, match=r"eval.best_metric = 'worst_eror': none of the run's metrics gives it "
                                          r"\(did you mean 'worst_error'\?\)"):
        i2i.validate(recipe)
    # a resume picking by another metric chooses the best again, rather than compare psnr with an error
    i2i.train(None, resume=tmp_path / "run", overrides=["train.steps=5", "eval.best_metric='psnr'"], quiet=True)
    assert "the best was chosen by worst_error then, by psnr now (eval.best_metric)" in capsys.readouterr().err
    state = json.loads((find_checkpoint(tmp_path / "run", "best") / "state.json").read_text())
    assert state["best"]["metric"] == "psnr" and state["best"]["step"] == 5


@pytest.mark.parametrize("task, metric, chosen", [("denoise", "mae", "mae"),
                                                  ("gray2color", "colourfulness", "delta_colourfulness")])
def test_the_built_in_error_metrics_are_minimised_as_best_metric(photos, tmp_path, task, metric, chosen):
    """eval.best_metric = 'mae' kept the step of the largest error as BEST: no built-in metric
    said lower was better (mae, colourfulness's delta_colourfulness)."""
    import json

    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 4},
                         eval={"every": 1, "metrics": [metric], "best_metric": chosen}, output={"keep": 4})
    recipe["task"] = {"name": task}
    i2i.train(recipe, quiet=True)
    scores = {r["step"]: r["metrics"][chosen] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl")
                                                          .read_text().splitlines()) if r["type"] == "eval"}
    assert (tmp_path / "run" / "checkpoints" / "BEST").read_text().strip() == f"step_{min(scores, key=scores.get):07d}"


class Unkeepable(i2i.Callback):
    """A state JSON cannot hold: from the start, or from ``bad_from`` on."""

    def __init__(self, bad_from=0):
        self.bad_from, self.step = bad_from, 0

    def on_log(self, trainer, step, values):
        self.step = step

    def state_dict(self):
        return {"when": object()} if self.step >= self.bad_from else {"step": self.step}


def test_a_callback_state_that_cannot_be_kept_costs_no_trained_step(photos, tmp_path):
    """A state_dict JSON cannot hold was found only at the first checkpoint: every step trained
    was lost with it, and the run had no checkpoint to resume."""
    with pytest.raises(i2i.PluginError, match=r"callback Unkeepable: state_dict\(\) failed or gave what JSON cannot "
                                              r"hold .*; fix it where the program passes it in callbacks=$"):
        i2i.train(tiny_recipe(photos, tmp_path / "early"), callbacks=[Unkeepable()], quiet=True)
    assert not (tmp_path / "early").exists()  # before the first step: nothing trained, no folder left
    with pytest.raises(i2i.PluginError, match=r"at step 4, whose checkpoint step_0000004 is saved without the "
                                              r"callbacks' state; resume with: i2i run --resume "):
        i2i.train(tiny_recipe(photos, tmp_path / "late", eval={"every": 4}), callbacks=[Unkeepable(bad_from=3)],
                  quiet=True)
    assert find_checkpoint(tmp_path / "late").name == "step_0000004"


def test_finish_early_before_any_step_and_a_stop_during_the_finishing_scoring(photos, tmp_path):
    """finish_early in on_run_start of a new run dropped its reason; on a resume it scored the
    checkpoint's step again (two eval records for one step); a stop asked for while the finishing
    step was scored (SIGTERM, say) turned the finished run into an interrupted one."""
    import json

    class FinishAtStart(i2i.Callback):
        def on_run_start(self, trainer):
            trainer.finish_early("already good")

    with pytest.raises(i2i.TrainingStopped, match=r"^stopped before the first step \(already good\); nothing was "
                                                  r"trained"):
        i2i.train(tiny_recipe(photos, tmp_path / "new"), callbacks=[FinishAtStart()], quiet=True)
    i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 4}), quiet=True)
    run = i2i.train(None, resume=tmp_path / "run", overrides=["train.steps=8"], callbacks=[FinishAtStart()], quiet=True)
    assert (run.status, run.step) == ("finished", 4)
    evals = [r["step"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
             if r["type"] == "eval"]
    assert evals == [4]

    class FinishThenStop(i2i.Callback):
        def on_log(self, trainer, step, values):
            if step == 2:
                trainer.finish_early("enough")

        def on_evaluate(self, trainer, step, metrics):
            trainer.request_stop()  # as SIGTERM's handler does, while the finishing step is scored

    run = i2i.train(tiny_recipe(photos, tmp_path / "stopped", train={"steps": 8}), callbacks=[FinishThenStop()],
                    quiet=True)
    assert (run.status, run.step) == ("finished", 2)


def test_lower_is_better_said_on_a_factory_reaches_a_metric_that_cannot_hold_it(photos, tmp_path):
    """A factory returning a bound method (which takes no attribute) had its lower_is_better
    dropped without a word, and its metric was maximised."""
    import json

    class Scorer:
        def error(self, output, target, input=None):
            assert input is not None  # still given the generator's input through the wrapper
            return (output - target).abs().flatten(1).mean(1)

    def factory():
        return Scorer().error

    factory.lower_is_better = True
    i2i.register_plugin(type("M", (), {"register_metrics": i2i.hookimpl(
        lambda register: register("method_error", factory))}), "method_metric_plugin")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 4},
                         eval={"every": 1, "metrics": ["method_error"], "best_metric": "method_error"},
                         output={"keep": 4})
    i2i.train(recipe, quiet=True)
    scores = {r["step"]: r["metrics"]["method_error"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl")
                                                                   .read_text().splitlines()) if r["type"] == "eval"}
    assert (tmp_path / "run" / "checkpoints" / "BEST").read_text().strip() == f"step_{min(scores, key=scores.get):07d}"


def test_a_stop_that_cuts_the_finishing_scoring_short_ends_the_run_stopped_with_the_reason(photos, tmp_path):
    """A stop in the middle of the finishing step's scoring ends the run as stopped, unscored, as
    at a last step; the finish's reason is said, and on_run_end hears 'interrupted'."""
    ended = []

    class Finish(i2i.Callback):
        def on_log(self, trainer, step, values):
            if step == 2:
                self.trainer = trainer
                trainer.finish_early("enough")

        def on_run_end(self, trainer, status, metrics):
            ended.append(status)

    finish = Finish()

    def stopping_metric():
        def score(output, target):
            if getattr(finish, "trainer", None) is not None:  # (not in the check before training)
                finish.trainer.request_stop()  # as SIGTERM's handler does, between batches
            return (output - target).abs().flatten(1).mean(1)
        return score

    i2i.register_plugin(type("S", (), {"register_metrics": i2i.hookimpl(
        lambda register: register("stops", stopping_metric))}), "stopping_metric_plugin")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 6}, eval={"metrics": ["stops"], "batch_size": 1})
    with pytest.raises(i2i.TrainingStopped, match=r"stopped at step 2/6 \(enough\) during its final evaluation"):
        i2i.train(recipe, callbacks=[finish], quiet=True)
    assert ended == ["interrupted"]


def test_a_stop_asked_for_just_before_an_evaluation_is_not_said_to_cut_it_short(photos, tmp_path, capfd):
    """on_log at an evaluation step asks for a stop before any image is scored: the note said the
    evaluation 'was cut short', and pointed a program to the shell's i2i eval."""

    class StopBeforeScoring(i2i.Callback):
        def on_log(self, trainer, step, values):
            if step == 2:
                trainer.request_stop()

    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 4}, eval={"every": 2},
                         output={"log_every": 2})
    with pytest.raises(i2i.TrainingStopped):
        i2i.train(recipe, callbacks=[StopBeforeScoring()], quiet=True)
    err = capfd.readouterr().err
    assert ("i2i: note: the evaluation at step 2 was not run, as a stop was asked for before it, so step 2 has no "
            "validation score and the best checkpoint stays as it was; its weights are saved, and "
            f"i2i.evaluation.evaluate_run({str(tmp_path / 'run')!r}) scores them") in err, err
    assert find_checkpoint(tmp_path / "run").name == "step_0000002"
