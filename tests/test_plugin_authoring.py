"""What a careless plugin author meets: code that breaks only while training, registrations a
recipe could never use, and declared sizes that make no sense, each named in one line with the
plugin to blame (found by writing plugins from docs/plugins.md alone)."""

import json

import pytest
from click.testing import CliRunner
from torch import nn

import i2i
from helpers import make_photos, tiny_recipe
from i2i.cli import cli
from plugin_env import ROOT, make_distribution, run_i2i


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), count=6, size=(24, 24))


class TrainModeOnly(nn.Module):
    """Passes the dry run (eval mode), fails in the first training step."""

    def __init__(self, in_channels: int, out_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        if self.training:
            raise RuntimeError("training-mode forward exploded")
        return self.conv(x)


def train_mode_generator(in_channels: int, out_channels: int) -> nn.Module:
    return TrainModeOnly(in_channels, out_channels)


class NoFeatures(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 4, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class LateFailingPairs(i2i.Task):
    """make_pair works for the dry run (three calls: one checked, two that check it repeats)
    and the first step, then raises."""

    def __init__(self) -> None:
        self.calls = 0

    def make_pair(self, clean, generator=None):
        self.calls += 1
        if self.calls > 4:
            raise ValueError("ran out of masks")
        return clean * 2 - 1, clean * 2 - 1


class GreyPrepare(i2i.Task):
    """Trains fine, but hands translate a 1-channel input for a 3-channel generator."""

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        return clean * 2 - 1, clean * 2 - 1

    def prepare(self, image):
        return image.mean(1, keepdim=True)


class MisspeltPair(i2i.Task):
    def __init__(self) -> None:
        pass

    def make_pairs(self, clean, generator=None):
        return clean, clean


class TwoChannelImages(GreyPrepare):
    image_channels = 2


class StringMetrics(GreyPrepare):
    metrics = "psnr"


class ZeroMultiple(nn.Module):
    size_multiple = 0

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class Careless:
    @i2i.hookimpl
    def register_generators(self, register):
        register("train_mode_g", train_mode_generator)
        register("zero_multiple", ZeroMultiple)

    @i2i.hookimpl
    def register_discriminators(self, register):
        register("train_mode_d", TrainModeOnly)
        register("no_features", NoFeatures)

    @i2i.hookimpl
    def register_tasks(self, register):
        for name, task in (("late_pairs", LateFailingPairs), ("grey_prepare", GreyPrepare), ("misspelt", MisspeltPair),
                           ("two_channels", TwoChannelImages), ("string_metrics", StringMetrics)):
            register(name, task)


@pytest.fixture(autouse=True)
def careless():
    i2i.register_plugin(Careless(), "careless")


def generator_alone(photos, out):
    recipe = tiny_recipe(photos, out, discriminator=None)
    recipe["losses"] = {"l1": {"weight": 1.0}}
    return recipe


@pytest.mark.parametrize("section, name", [("generator", "train_mode_g"), ("discriminator", "train_mode_d")])
def test_a_network_failing_only_in_training_is_named_and_leaves_no_run_folder(photos, tmp_path, section, name):
    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe[section] = {"name": name}
    with pytest.raises(i2i.PluginError) as info:
        i2i.train(recipe, quiet=True)
    assert (f"{section}.name = '{name}' (plugin 'careless') failed at step 1 (training) on a batch of shape "
            "[2, ") in str(info.value)
    assert "RuntimeError: training-mode forward exploded; report this to the plugin's author" in str(info.value)
    assert not (tmp_path / "run").exists()  # the first step failed: no empty folder pushes the next run to run-2


def test_a_task_failing_on_a_later_batch_is_named_with_the_step(photos, tmp_path):
    recipe = generator_alone(photos, tmp_path / "run")
    recipe["task"] = {"name": "late_pairs"}
    with pytest.raises(i2i.PluginError, match=r"task.name = 'late_pairs' \(plugin 'careless'\) failed at step 2 "
                                              r"\(training\) .*ValueError: ran out of masks"):
        i2i.train(recipe, quiet=True)
    assert (tmp_path / "run").exists()  # a step was trained: the folder stays


def test_feature_matching_with_a_discriminator_without_features_is_a_recipe_error(photos, tmp_path):
    from i2i.engine.components import check_recipe

    recipe = tiny_recipe(photos, tmp_path / "run", losses={"fm": {"name": "feature_matching"}})
    recipe["discriminator"] = {"name": "no_features"}
    with pytest.raises(i2i.RecipeError, match=r"losses.fm \('feature_matching', plugin 'losses'\): needs the "
                                              r"discriminator's features, and .*discriminator.name = 'no_features' "
                                              r"\(plugin 'careless'\) has no forward\(x, return_features=True\)"):
        check_recipe(i2i.load_recipe(recipe))  # i2i validate


@pytest.mark.parametrize("task, message", [
    ("grey_prepare", r"task.name = 'grey_prepare' \(plugin 'careless'\): prepare returned a tensor of shape "
                     r"\[1, 1, 16, 16\] for images of shape \[1, 3, 16, 16\]; expected \[1, 3, 16, 16\]"),
    ("misspelt", r"task.name = 'misspelt' \(plugin 'careless'\): the task does not define make_pair\(self, clean, "
                 r"generator\) \(it has 'make_pairs'; the method is make_pair\)"),
    ("two_channels", r"task.name = 'two_channels' \(plugin 'careless'\): image_channels = 2; images are read with 1 "
                     r"\(grey\) or 3 \(RGB\) channels"),
    ("string_metrics", r"task.name = 'string_metrics' \(plugin 'careless'\): the task's metrics = 'psnr'; it is a tuple "
                       r"of metric names"),
])
def test_a_task_declaring_what_cannot_work_is_named_by_validate(photos, tmp_path, task, message):
    from i2i.engine.components import check_recipe

    recipe = generator_alone(photos, tmp_path / "run")
    recipe["task"] = {"name": task}
    with pytest.raises(i2i.PluginError, match=message):
        check_recipe(i2i.load_recipe(recipe))


def test_a_generator_declaring_size_multiple_zero_is_named(photos, tmp_path):
    from i2i.engine.components import check_recipe

    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["generator"] = {"name": "zero_multiple"}
    with pytest.raises(i2i.PluginError, match=r"generator.name = 'zero_multiple' \(plugin 'careless'\): "
                                              r"size_multiple = 0; it is the whole number \(1 or more\)"):
        check_recipe(i2i.load_recipe(recipe))


def test_a_generator_whose_size_multiple_became_fractional_is_refused_by_translate(photos, tmp_path, monkeypatch):
    """A plugin upgrade that declares size_multiple = 2.5: translate and eval read it as 2 and
    padded wrongly without a word; trained runs are refused as new ones are."""
    from i2i.translate import translate_files

    monkeypatch.setattr(ZeroMultiple, "size_multiple", 1)
    recipe = generator_alone(photos, tmp_path / "run")
    recipe.update(generator={"name": "zero_multiple"}, train={"steps": 1})
    run_dir = i2i.train(recipe, quiet=True).run_dir
    monkeypatch.setattr(ZeroMultiple, "size_multiple", 2.5)
    refusal = r"generator.name = 'zero_multiple' \(plugin 'careless'\): size_multiple = 2.5; it is the whole number"
    with pytest.raises(i2i.PluginError, match=refusal):
        translate_files(i2i.load(run_dir), photos, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def registration_error(hook_body) -> str:
    class Plugin:
        @i2i.hookimpl
        def register_generators(self, register):
            return hook_body(register)

    info = i2i.register_plugin(Plugin(), "mistakes")
    assert info.status == "failed" and "train_mode_g" in i2i.registry("generators")  # others unaffected
    return info.error


def wide_net(in_channels: int, out_channels: int, *, width: int = "wide") -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 1)


def plain_net(in_channels: int, out_channels: int, *, width: int = 8, name: str = "x") -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 1)


def ok_net(in_channels: int, out_channels: int, *, width: int = 8) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 1)


@pytest.mark.parametrize("hook, error", [
    (lambda register: register("wide", wide_net),
     "generator 'wide': option 'width' defaults to 'wide', which is not an integer as its annotation says"),
    (lambda register: register("named", plain_net),
     "generator 'named': option 'name' has the name of the recipe table's own 'name' key"),
    (lambda register: register("ok", ok_net, defaults={"widht": 4}),
     "generator 'ok': defaults names 'widht', which is not an option of ok_net (did you mean 'width'?)"),
    (lambda register: register("ok", ok_net, defaults={"width": "eight"}),
     "generator 'ok': defaults gives width = 'eight', which is not an integer"),
    (lambda register: register("ok", ok_net, aliases=("mine:ok",)),
     "invalid generator name 'mine:ok' (a name is a non-empty string without ':')"),
    (lambda register: register("ok", ok_net, alias="okay"),
     "register('ok', ...) got an unknown keyword 'alias' (did you mean 'aliases'?)"),
    (lambda register: {"ok": ok_net},
     "register_generators returned dict; it registers each generator by calling register(name, factory) instead"),
])
def test_registrations_a_recipe_could_never_use_fail_the_plugin_at_load(hook, error):
    assert error in registration_error(hook)


def test_a_loss_option_named_weight_would_be_the_terms_weight():
    class WeightLoss(i2i.ReconstructionLoss):
        def __init__(self, weight: float = 2.0) -> None:
            super().__init__()

    class Plugin:
        @i2i.hookimpl
        def register_losses(self, register):
            register("weighted", WeightLoss)

    info = i2i.register_plugin(Plugin(), "weights")
    assert info.status == "failed" and "loss 'weighted': option 'weight' has the name of the recipe table's own" in info.error


def test_descriptions_come_from_the_components_own_docstring_and_list_takes_qualified_names():
    class Quiet(i2i.Callback):
        pass

    class Documented(i2i.Callback):
        """Posts the scores to the lab's chat."""

    class Plugin:
        @i2i.hookimpl
        def register_callbacks(self, register):
            register("quiet", Quiet)
            register("documented", Documented)

    i2i.register_plugin(Plugin(), "chat")
    described = {c.name: c.description for c in i2i.list_components("callbacks")}
    assert described == {"quiet": "", "documented": "Posts the scores to the lab's chat."}
    assert [c.name for c in i2i.list_components("generators", "careless:*")] == ["train_mode_g", "zero_multiple"]
    from i2i.cli import cli

    listed = CliRunner().invoke(cli, ["list", "generators", "careless:*"])  # as the README shows it
    assert listed.exit_code == 0 and "train_mode_g" in listed.output and "unet" not in listed.output
    with pytest.raises(ValueError, match=r"name 'a:b' must be non-empty and without ':'"):
        i2i.register_plugin(Plugin(), "a:b")


def test_a_plugin_commands_own_failure_is_one_line_and_a_failed_plugin_keeps_no_command():
    from i2i.cli import cli

    class Commands:
        @i2i.hookimpl
        def register_commands(self, cli):
            @cli.command("careless-boom")
            def boom():
                raise RuntimeError("command exploded")

    class HalfCommands:
        @i2i.hookimpl
        def register_commands(self, cli):
            @cli.command("careless-half")
            def half():
                pass
            cli.add_command("not a command")

    group = type(cli)("i2i-test", commands=dict(cli.commands))  # i2i's group, without touching the real one
    i2i.register_plugin(Commands(), "commands")
    i2i.register_plugin(HalfCommands(), "half")
    from i2i.plugins import host

    host().add_commands(group)
    result = CliRunner().invoke(group, ["careless-boom"])
    assert result.exit_code == 2
    assert result.output == ("i2i: error: command 'i2i careless-boom' (plugin 'commands') failed: RuntimeError: command "
                             "exploded; report this to the plugin's author (I2I_TRACEBACK=1 shows where)\n")
    half = host().plugins["half"]  # its commands are left out; what else it registered stays
    assert "careless-half" not in group.commands and half.status == "loaded" and half.error.startswith("its commands are left out: ")


def test_a_callback_failing_in_on_evaluate_names_the_checkpoint_saved_for_it(photos, tmp_path, capsys):
    class FailsOnEvaluate(i2i.Callback):
        def on_evaluate(self, trainer, step, metrics):
            raise RuntimeError("chat is down")

    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 4}, eval={"every": 2})
    with pytest.raises(RuntimeError, match="chat is down") as info:
        i2i.train(recipe, callbacks=[FailsOnEvaluate()], quiet=True)
    assert "its last checkpoint is at step 2: i2i run --resume" in info.value.i2i_callback_failure
    assert "the evaluation at step 2 failed" not in capsys.readouterr().err  # the evaluation itself worked
    assert (tmp_path / "run" / "checkpoints" / "step_0000002").is_dir()


def test_the_missing_plugin_hint_names_only_plugins_the_run_used(photos, tmp_path):
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 1}), quiet=True)
    recorded = json.loads((run.run_dir / "run.json").read_text())["plugins"]
    assert recorded["nets"]["used"] and recorded["losses"]["used"] and not recorded["careless"]["used"]
    recorded["careless"]["used"] = True  # as if a run had used it: now it is the one to name
    recorded["unused"] = {"distribution": "i2i-unused", "version": "1", "status": "loaded", "used": False}
    (run.run_dir / "run.json").write_text(json.dumps({"plugins": recorded}))
    recipe = run.run_dir / "recipe.toml"
    recipe.write_text(recipe.read_text().replace('name = "unet"', 'name = "careless:train_mode_g"'))
    from i2i import plugins

    plugins.reset()  # a new process without the careless plugin
    with pytest.raises(i2i.UnknownComponentError) as info:
        i2i.load(run.run_dir)
    assert "trained with plugin 'careless', which is not loaded here: in Python, before loading it: " in str(info.value)
    assert "i2i-unused" not in str(info.value)


def test_load_plugins_leaves_out_a_clashing_distribution_quietly(tmp_path):
    """``I2I_LOAD_PLUGINS=""`` in a plugin's own tests must not be broken by another package's clash."""
    site = tmp_path / "site"
    make_distribution(site, "i2i-clashing", "0.1", {"nets": "i2i_clashing"}, {"i2i_clashing.py": "x = 1\n"})
    quiet = run_i2i(["list", "tasks"], site, cwd=ROOT, env={"I2I_LOAD_PLUGINS": "", "I2I_STRICT_PLUGINS": "1"})
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = run_i2i(["list", "tasks"], site, cwd=ROOT)
    assert "the entry-point name 'nets' is taken by i2i's built-in plugin" in loud.stderr


def test_an_entry_point_naming_a_class_instead_of_its_module_is_pointed_out(tmp_path):
    site = tmp_path / "site"
    code = "import i2i\n\nclass Helper:\n    pass\n\n@i2i.hookimpl\ndef register_losses(register):\n    pass\n"
    make_distribution(site, "i2i-pointed", "0.1", {"pointed": "i2i_pointed:Helper"}, {"i2i_pointed.py": code})
    result = run_i2i(["list", "tasks"], site, cwd=ROOT)
    assert result.returncode == 0
    assert ("i2i: warning: plugin 'pointed' (i2i-pointed: i2i_pointed:Helper) has no @i2i.hookimpl hooks, so it "
            "registers nothing; its entry point names the module that holds them") in result.stderr
    listed = run_i2i(["plugins"], site, cwd=ROOT)  # not shown as plainly 'loaded'
    assert "pointed  (i2i_pointed:Helper; i2i-pointed 0.1; third-party)  loaded (no @i2i.hookimpl hooks: registers " \
           "nothing)" in listed.stdout


def test_an_unknown_name_names_a_plugin_that_failed_to_load_with_its_error():
    """The author's own plugin, failing on an ImportError, was listed among others left out on
    purpose, without its error; with a name like one another plugin gives, not at all."""
    class Broken:
        @i2i.hookimpl
        def register_generators(self, register):
            raise RuntimeError("broken")

    class BrokenMetrics:  # it has no register_generators: never the source of a generator
        @i2i.hookimpl
        def register_metrics(self, register):
            raise RuntimeError("no metric today")

    def unknown(kind: str, name: str) -> str:
        with pytest.raises(i2i.UnknownComponentError) as info:
            i2i.registry().get(kind, name)
        return str(info.value)

    i2i.register_plugin(BrokenMetrics(), "a_metrics")
    i2i.register_plugin(Broken(), "broken0")
    assert unknown("generators", "zzz_nothing_like_it") == (
        "unknown generator 'zzz_nothing_like_it'; plugin 'broken0' failed to load (register_generators: RuntimeError: "
        "broken), and may be what provides it (see 'i2i plugins'); see 'i2i list generators'")
    assert unknown("generators", "unet_265").startswith("unknown generator 'unet_265' (did you mean 'unet_256'?); "
                                                         "plugin 'broken0' failed to load")
    for n in range(1, 5):  # several that may be it: named, and no one error quoted as the likely cause
        i2i.register_plugin(Broken(), f"broken{n}")
    assert unknown("generators", "zzz_nothing_like_it") == (
        "unknown generator 'zzz_nothing_like_it'; plugins 'broken0', 'broken1', 'broken2' and 2 more failed to load, "
        "and one may be what provides it (see 'i2i plugins'); see 'i2i list generators'")
    assert "plugin 'a_metrics' failed to load (register_metrics: RuntimeError: no metric today)" in \
        unknown("metrics", "zzz_metric")


def test_an_option_named_weight_reaches_a_generator():
    """``weight`` is a loss term's own key only: a generator's option of that name was validated,
    then silently left out when the network was built."""
    built = {}

    def weighted_net(in_channels: int, out_channels: int, *, weight: float = 1.0) -> nn.Module:
        built["weight"] = weight
        return nn.Conv2d(in_channels, out_channels, 1)

    class Plugin:
        @i2i.hookimpl
        def register_generators(self, register):
            register("weighted_net", weighted_net)

    assert i2i.register_plugin(Plugin(), "weighted").status == "loaded"
    from helpers import TINY_G2C
    from i2i.recipe import build_component

    recipe = i2i.load_recipe({**TINY_G2C, "generator": {"name": "weighted_net", "weight": 0.25}})
    build_component(i2i.registry(), "generators", recipe, "generator", 1, 2)
    assert built["weight"] == 0.25


def test_one_unusable_component_is_left_out_and_the_plugins_others_load(capsys, monkeypatch):
    """An option without a usable default disabled the whole plugin: every generator, task and
    loss it brings, for one mistake in one of them."""
    class Plugin:
        @i2i.hookimpl
        def register_generators(self, register):
            register("fine_net", ok_net)
            register("wide_net", wide_net, aliases=("wider_net",))

    info = i2i.register_plugin(Plugin(), "partly")
    assert info.status == "loaded" and info.components == {"generators": ["fine_net"]}
    why = "option 'width' defaults to 'wide', which is not an integer as its annotation says"
    assert info.refused == [f"generator 'wide_net': {why}"]
    assert (f"i2i: warning: plugin 'partly' ({info.module}): generator 'wide_net': {why}; generator 'wide_net' "
            "is left out, the plugin's other components are loaded") in capsys.readouterr().err
    assert "fine_net" in i2i.registry("generators")
    for name in ("wide_net", "wider_net", "partly:wide_net"):
        with pytest.raises(i2i.UserError, match=rf"^unknown generator '{name}': plugin 'partly' declares it, but i2i "
                                                rf"refused it when the plugin loaded \({why}\); see 'i2i plugins'$"):
            i2i.registry().get("generators", name)
    result = CliRunner().invoke(cli, ["plugins"])
    assert f"    not registered: generator 'wide_net': {why}" in result.output
    monkeypatch.setenv("I2I_STRICT_PLUGINS", "1")  # a plugin's own CI
    with pytest.raises(i2i.PluginError, match=r"I2I_STRICT_PLUGINS is set"):
        i2i.register_plugin(Plugin(), "partly")
