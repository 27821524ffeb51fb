"""Plugin mistakes and situations that once gave a wrong number, a traceback or an unusable run
(found by writing third-party plugin packages from docs/plugins.md alone)."""

import json
import pathlib
import re

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import i2i
from helpers import TINY_G2C, make_photos, tiny_recipe
from i2i import plugins
from i2i.recipe import dumps_toml
from plugin_env import make_distribution, run_i2i


def plain(photos, out, **sections) -> dict:
    """A tiny colouriser recipe (no discriminator, L1): the base the plugin parts replace."""
    return tiny_recipe(photos, out, base=TINY_G2C, **sections)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), count=6, size=(24, 24))


def psnr_twice():
    """Gives 'psnr' again, beside its own value: the denoise task's psnr already gives it."""
    def metric(output, target):
        mse = (output - target).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        return {"psnr": -10 * torch.log10(mse), "psnr_again": -10 * torch.log10(mse)}
    return metric


class NarrowWhenTraining(nn.Module):
    """Right in eval mode (the dry run's), one channel short in training mode."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y[:, :1] if self.training else y


def weights_from(in_channels: int, out_channels: int, weights: pathlib.Path = pathlib.Path("none")) -> nn.Module:
    """An option declared as a Path: no recipe value is one."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class Cropping(i2i.Task):
    """A task whose prepare crops the user's image: outputs would not match the inputs' sizes."""

    name = "cropping"
    in_channels = out_channels = 3

    def make_pair(self, clean, rng):
        return clean * 2 - 1, clean * 2 - 1

    def prepare(self, image):
        return image[..., 2:-2, 2:-2] * 2 - 1


class Shrinking(i2i.Task):
    """make_pair halves both images: the run trained at half the data.size it reported."""

    in_channels = out_channels = 3

    def make_pair(self, clean, rng):
        half = torch.nn.functional.avg_pool2d(clean, 2) * 2 - 1
        return half, half

    def prepare(self, image):
        return image * 2 - 1


class NoPrepare(i2i.Task):
    """Trains, but cannot translate user images (prepare left unimplemented)."""

    in_channels = out_channels = 3

    def make_pair(self, clean, rng):
        return clean * 2 - 1, clean * 2 - 1


class RunningMeanL1(i2i.ReconstructionLoss):
    """L1 scaled by a running mean it keeps as a buffer: state that must survive a resume."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.ones(()))

    def forward(self, fake, target):
        value = (fake - target).abs().mean()
        with torch.no_grad():
            self.mean.mul_(0.5).add_(0.5 * value.detach().float())
        return value / self.mean


class LearnedWeightL1(i2i.ReconstructionLoss):
    """A learned weighting that i2i never optimises."""

    def __init__(self) -> None:
        super().__init__()
        self.log_var = nn.Parameter(torch.zeros(()))

    def forward(self, fake, target):
        return (fake - target).abs().mean() * torch.exp(-self.log_var) + self.log_var


class MetaL1(i2i.ReconstructionLoss):
    """Returns its value on another device than its inputs'."""

    def forward(self, fake, target):
        return torch.zeros((), device="meta", requires_grad=True)


class Counter(i2i.Callback):
    autoload = True
    started = 0

    def on_run_start(self, trainer):
        type(self).started += 1


class ScoredByBrightness(NoPrepare):
    """Lists a metric of its own plugin by its bare name, as a task author does."""

    metrics = ("psnr", "brightness")


class Pitfalls:
    @i2i.hookimpl
    def register_metrics(self, register):
        register("psnr_twice", psnr_twice)
        register("brightness", lambda: (lambda output, target: output.flatten(1).mean(1)))

    @i2i.hookimpl
    def register_generators(self, register):
        register("narrow_when_training", NarrowWhenTraining)
        register("weights_from", weights_from)

    @i2i.hookimpl
    def register_tasks(self, register):
        register("cropping", Cropping)
        register("no_prepare", NoPrepare)
        register("shrinking", Shrinking)
        register("scored_by_brightness", ScoredByBrightness)

    @i2i.hookimpl
    def register_losses(self, register):
        register("running_mean_l1", RunningMeanL1)
        register("learned_weight_l1", LearnedWeightL1)
        register("meta_l1", MetaL1)


@pytest.fixture(autouse=True)
def pitfalls():
    i2i.register_plugin(Pitfalls(), "pitfalls")


def test_two_metrics_giving_the_same_key_are_refused_not_added_up(photos, tmp_path):
    """Both values were summed into 'psnr' (twice the real PSNR), which picks the best checkpoint."""
    recipe = tiny_recipe(photos, tmp_path / "run", eval={"metrics": ["psnr_twice"]})
    with pytest.raises(i2i.PluginError, match=r"metrics 'psnr' \(plugin '\w+'\) and 'psnr_twice' \(plugin 'pitfalls'\) "
                                              r"both give 'psnr'.*leave one of the metrics out of eval.metrics"):
        i2i.train(recipe, quiet=True)
    assert not (tmp_path / "run").exists()


def test_a_generator_wrong_only_in_training_mode_is_named_at_step_1(photos, tmp_path):
    """The dry run sees eval mode only; a one-channel output trained on by broadcasting."""
    recipe = plain(photos, tmp_path / "run")
    recipe["generator"] = {"name": "narrow_when_training"}
    with pytest.raises(i2i.PluginError, match=r"generator.name = 'narrow_when_training' \(plugin 'pitfalls'\) at step 1 "
                                              r"\(training mode\) returned a tensor of shape \[2, 1, 16, 16\] for a target "
                                              r"of shape \[2, 2, 16, 16\]"):
        i2i.train(recipe, quiet=True)


def test_an_option_no_recipe_value_can_fit_is_blamed_on_the_plugin(photos, tmp_path):
    """'generator.weights = "w.pt": expected Path' left the user looking for a Path syntax."""
    recipe = plain(photos, tmp_path / "run")
    recipe["generator"] = {"name": "weights_from", "weights": "w.pt"}
    with pytest.raises(i2i.RecipeError, match=r"generator.weights: the component of plugin '\w+' declares this option as Path, "
                                              r"which no recipe value can be .*report this to the plugin's author"):
        i2i.load_recipe(recipe)


def test_a_task_whose_prepare_changes_the_size_is_refused_before_training(photos, tmp_path):
    recipe = plain(photos, tmp_path / "run")
    recipe["task"] = {"name": "cropping"}
    with pytest.raises(i2i.PluginError, match=r"prepare returned a tensor of shape \[1, 3, 12, 12\] for images of shape "
                                              r"\[1, 3, 16, 16\]; expected \[1, 3, 16, 16\]"):
        i2i.train(recipe, quiet=True)


def test_a_task_whose_pairs_are_smaller_than_its_crops_is_warned_of(photos, tmp_path, capfd):
    recipe = plain(photos, tmp_path / "run", train={"steps": 1})
    recipe["task"] = {"name": "shrinking"}
    i2i.train(recipe)
    assert ("task.name = 'shrinking' (plugin 'pitfalls'): make_pair turns 16x16 px crops (data.size = 16) "
            "into 8x8 px pairs, so the networks train at that size") in capfd.readouterr().err


def test_a_task_without_prepare_trains_but_translating_is_one_line(photos, tmp_path, capsys):
    recipe = plain(photos, tmp_path / "run", train={"steps": 1})
    recipe["task"] = {"name": "no_prepare"}
    model = i2i.load(i2i.train(recipe).run_dir)
    # the run's last line suggested i2i translate, which cannot work for it
    assert capsys.readouterr().out.splitlines()[-1] == (f"i2i: saved in {tmp_path / 'run'}; try: "
                                                        f"i2i.evaluation.evaluate_run({str(tmp_path / 'run')!r})")
    with pytest.raises(i2i.PluginError, match=r"task.name = 'no_prepare' \(plugin 'pitfalls'\) cannot translate user "
                                              r"images \(its prepare\(\) is not implemented\)"):
        model(torch.rand(1, 3, 16, 16))


def test_a_run_opens_after_another_plugin_reuses_its_component_names(photos, tmp_path):
    """A second plugin registering 'narrow_when_training' made the run's bare name ambiguous:
    load, translate, eval and resume all refused it, and no --set could help."""
    recipe = plain(photos, tmp_path / "run", train={"steps": 2})
    recipe["generator"] = {"name": "narrow_when_training"}
    recipe["task"] = {"name": "color2gray"}  # grey targets: a one-channel output is right in training too
    run_dir = i2i.train(recipe, quiet=True).run_dir

    class Clash:
        @i2i.hookimpl
        def register_generators(self, register):
            register("narrow_when_training", lambda in_channels, out_channels: nn.Identity())

    i2i.register_plugin(Clash(), "clash")
    with pytest.raises(i2i.UserError, match="provided by several plugins"):  # a new recipe must still choose
        i2i.load_recipe(recipe)
    # one an override (--set) chose is told as the override's, as an unknown name is, not the recipe's
    recipe["generator"] = {"name": "unet", "depth": 2, "width": 4}
    with pytest.raises(i2i.RecipeError, match=r"^overrides generator.name='narrow_when_training': generator.name: generator "
                                              r"'narrow_when_training' is provided by several plugins"):
        i2i.load_recipe(recipe, overrides=["generator.name='narrow_when_training'"])
    model = i2i.load(run_dir)
    assert isinstance(model.generator, NarrowWhenTraining)  # the plugin the run was trained with (run.json)
    resumed = i2i.train(None, resume=run_dir, overrides=["train.steps=3"], quiet=True)
    assert resumed.step == 3


def test_a_task_keeps_its_own_plugins_metric_when_another_plugin_reuses_the_name(photos, tmp_path):
    """A second plugin registering 'brightness' made the task's own metric ambiguous: its runs
    no longer scored or resumed, and no recipe could say which one the task meant."""
    from i2i.evaluation import evaluate_run

    recipe = plain(photos, tmp_path / "run", train={"steps": 2})
    recipe["task"] = {"name": "scored_by_brightness"}
    run_dir = i2i.train(recipe, quiet=True).run_dir

    class Clash:
        @i2i.hookimpl
        def register_metrics(self, register):
            register("brightness", lambda: (lambda output, target: torch.full((output.shape[0],), -1.0)))

    i2i.register_plugin(Clash(), "clash")
    scored = evaluate_run(run_dir)["metrics"]["brightness"]
    assert 0 <= scored <= 1  # the task's plugin's mean brightness, not the other plugin's -1
    assert i2i.train(None, resume=run_dir, overrides=["train.steps=3"], quiet=True).step == 3
    again = i2i.train(dict(recipe, output={"dir": str(tmp_path / "new")}), quiet=True)  # a new run of the task too
    assert 0 <= again.metrics["brightness"] <= 1


def test_loss_buffers_are_kept_so_a_resumed_run_matches_a_straight_one(photos, tmp_path):
    def recipe(out, steps):
        return plain(photos, out, losses={"l1": {"name": "running_mean_l1"}},
                     train={"steps": steps, "precision": "fp32"}, output={"checkpoint_every": 2})

    straight = i2i.train(recipe(tmp_path / "straight", 4), quiet=True).run_dir
    i2i.train(recipe(tmp_path / "resumed", 2), quiet=True)
    resumed = i2i.train(None, resume=tmp_path / "resumed", overrides=["train.steps=4"], quiet=True).run_dir
    saved = load_file(resumed / "checkpoints" / "step_0000002" / "losses.safetensors")
    assert set(saved) == {"l1.mean"} and saved["l1.mean"].item() != 1.0
    a = load_file(straight / "checkpoints" / "step_0000004" / "generator.safetensors")
    b = load_file(resumed / "checkpoints" / "step_0000004" / "generator.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_loss_with_trainable_parameters_is_warned_about(photos, tmp_path, capsys):
    recipe = plain(photos, tmp_path / "run", losses={"l1": {"name": "learned_weight_l1"}}, train={"steps": 1})
    i2i.train(recipe, quiet=True)
    assert re.search(r"i2i: warning: .*losses.l1 .*has trainable parameters \('log_var'\), which i2i does not train",
                     capsys.readouterr().err)


def test_a_loss_on_another_device_than_its_inputs_is_named(photos, tmp_path):
    recipe = plain(photos, tmp_path / "run", losses={"l1": {"name": "meta_l1"}})
    with pytest.raises(i2i.PluginError, match=r"returned a tensor on meta for inputs on cpu; a loss computes on its "
                                              r"inputs' device"):
        i2i.train(recipe, quiet=True)


def test_a_run_applies_without_its_loss_and_metric_plugins(photos, tmp_path):
    """Translating needs the task's and generator's plugins only."""
    recipe = plain(photos, tmp_path / "run", losses={"l1": {"name": "running_mean_l1"}},
                   eval={"metrics": ["brightness"]})
    run_dir = i2i.train(recipe, quiet=True).run_dir
    plugins.reset()  # the plugin is gone
    model = i2i.load(run_dir)
    assert model(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(i2i.UserError, match=r"losses.l1.name: unknown loss 'running_mean_l1'.*trained with plugin 'pitfalls'"):
        i2i.train(None, resume=run_dir, overrides=["train.steps=4"], quiet=True)


@pytest.mark.parametrize("twice", [False, True])
def test_an_autoloaded_callback_is_built_once_whatever_shares_its_name(photos, tmp_path, twice):
    """Another plugin's callback of the same name broke every run; an alias built it twice."""
    class Auto:
        @i2i.hookimpl
        def register_callbacks(self, register):
            register("counter", Counter, aliases=("count",))

    class Other:
        @i2i.hookimpl
        def register_callbacks(self, register):
            register("counter", i2i.Callback)

    i2i.register_plugin(Auto(), "auto")
    i2i.register_plugin(Other(), "other")
    Counter.started = 0
    listed = ["auto:count"] if twice else []  # listing it as well does not double it either
    i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 1, "callbacks": listed}), quiet=True)
    assert Counter.started == 1
    from click.testing import CliRunner

    from i2i.cli import cli

    listed = CliRunner().invoke(cli, ["list", "callbacks", "auto:counter"]).output
    assert listed.splitlines()[0].endswith("[attached to every run (autoload); the same as count]")


CHATTY = '''import i2i
print("i2i-chatty loaded!")

@i2i.hookimpl
def register_generators(register):
    print("registering")
'''

CALLBACKS = '''import i2i

class Interrupting(i2i.Callback):
    def on_log(self, *args):
        raise KeyboardInterrupt

class Exiting(i2i.Callback):
    def on_log(self, *args):
        raise SystemExit("bye from a callback")

@i2i.hookimpl
def register_callbacks(register):
    register("interrupting", Interrupting)
    register("exiting", Exiting)
'''


def test_what_a_plugin_prints_while_loading_goes_to_stderr(tmp_path):
    """stdout carries i2i's own output: --json broke for every command."""
    site = tmp_path / "site"
    make_distribution(site, "i2i-chatty", "0.1", {"chatty": "i2i_chatty"}, {"i2i_chatty.py": CHATTY})
    result = run_i2i(["plugins", "--json"], site)
    assert result.returncode == 0
    assert {p["name"] for p in json.loads(result.stdout)} >= {"chatty", "nets"}
    assert "i2i-chatty loaded!" in result.stderr and "registering" in result.stderr


@pytest.mark.parametrize("callback, status, said", [
    ("interrupting", 130, r"i2i: interrupted: callback Interrupting.on_log \(plugin 'cbs'\) failed at step 2: KeyboardInterrupt"),
    ("exiting", 1, r"i2i: error: callback Exiting.on_log \(plugin 'cbs'\) failed at step 2: SystemExit: bye from a callback"),
])
def test_the_cli_names_a_callback_that_interrupts_or_exits(photos, tmp_path, callback, status, said):
    site = tmp_path / "site"
    make_distribution(site, "i2i-cbs", "0.1", {"cbs": "i2i_cbs"}, {"i2i_cbs.py": CALLBACKS})
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 2, "callbacks": [callback]})
    path = tmp_path / "recipe.toml"
    path.write_text(dumps_toml(recipe))
    result = run_i2i(["run", str(path)], site)
    assert result.returncode == status, result.stderr
    assert re.search(said, result.stderr), result.stderr
    assert "Traceback" not in result.stderr



def test_a_hook_whose_argument_is_misnamed_says_what_it_is_called():
    """pluggy's own words (declared in the hookimpl but can not be found in the hookspec) left
    the author guessing the name."""
    class Misnamed:
        @i2i.hookimpl
        def register_tasks(self, registry):
            pass

    info = i2i.register_plugin(Misnamed(), "misnamed")
    assert info.status == "failed" and "register_tasks(registry)" in info.error
    assert info.error.endswith("i2i's hooks take one argument each, by these names: register_commands(cli), the others "
                               "(register_tasks, ...) register")
