"""A plugin component that breaks its contract is a one-line error naming it, not a traceback
deep in the step or a silently wrong number (i2i/engine/contracts.py)."""

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import i2i
from helpers import make_photos, tiny_recipe
from plugin_env import ROOT, make_distribution, run_i2i


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), count=6, size=(24, 24))


class IntegerNet(nn.Module):
    """A generator that rounds its output to integers (as a label map would)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv(x).round().int()


class LatePerImageL1(i2i.ReconstructionLoss):
    """Reduces over the batch until its 4th call, then forgets to (passes the check before training)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, fake, target):
        self.calls += 1
        d = (fake - target).abs()
        return d.mean() if self.calls < 4 else d.mean((1, 2, 3))


class Shrinks(nn.Module):
    """A generator that loses a border: its output does not fit the target."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x):
        return self.conv(x)


class Detached(nn.Module):
    """Right shape, but no gradient reaches its weights."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv(x).detach()


class PerImageL1(i2i.ReconstructionLoss):
    def forward(self, fake, target):
        return (fake - target).abs().mean((1, 2, 3))  # forgot to reduce over the batch


class MaskNamedL1(i2i.ReconstructionLoss):
    """An inpainting loss that names its third parameter after what it holds."""

    def forward(self, fake, target, mask):
        return ((fake - target).abs() * mask[:, -1:]).mean()


class FloatL1(i2i.ReconstructionLoss):
    def forward(self, fake, target):
        return float((fake - target).abs().mean())


class RaisingL1(i2i.ReconstructionLoss):
    def forward(self, fake, target):
        raise KeyError("loss boom")


class DetachedL1(i2i.ReconstructionLoss):
    def forward(self, fake, target):
        return (fake - target).abs().mean().detach()


class NoOptions(i2i.ReconstructionLoss):  # no __init__ of its own: takes no options
    def forward(self, fake, target):
        return (fake - target).abs().mean()


def exploding_net(in_channels: int, out_channels: int) -> nn.Module:
    raise RuntimeError("exploding_net factory exploded")


class DoublePair(i2i.Task):
    """A task whose pairs come in float64: the generator it feeds is not to blame."""

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        return clean.double(), clean.double()


class BreaksAtBatchSize(i2i.Task):
    """Fine on the dry run's one image; at the training batch size its pairs go wrong."""

    def __init__(self, mode: str = "half") -> None:
        self.mode = mode

    def make_pair(self, clean, generator=None):
        if clean.shape[0] == 1:
            return clean, clean
        return {"half": (clean[:1], clean[:1]), "uint8": (clean, (clean * 255).to(torch.uint8)),
                "none": (clean, None), "rgb_only": (clean[:, :2], clean)}[self.mode]


class HalvedInput(i2i.Task):
    """Super-resolution as a first try: the input at half the target's size."""

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        return torch.nn.functional.avg_pool2d(clean, 2) * 2 - 1, clean * 2 - 1


class MaskedInput(i2i.Task):
    """Inpainting: the image with a mask as a fourth input channel, and the default input_image."""

    in_channels = 4

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        return torch.cat([clean, torch.ones_like(clean[:, :1])], 1) * 2 - 1, clean * 2 - 1


class Float64Net(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv(x).double()


def net_with_a_kind(in_channels: int, out_channels: int, kind: str = "plain") -> nn.Module:
    """An option called 'kind' collided with Registry.build's own argument."""
    assert kind == "plain"
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class OneTensor(i2i.Task):
    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        return clean


class GreyTarget(i2i.Task):
    """Says out_channels = 3 but returns a 1-channel target."""

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        return clean, clean.mean(1, keepdim=True)


def raising_metric():
    def metric(output, target):
        raise KeyError("metric boom")
    return metric


def flaky_metric():
    """Passes the dry run, then raises on the validation images."""
    calls = []

    def metric(output, target):
        calls.append(1)
        if len(calls) > 1:
            raise ValueError("cannot score this image")
        return (output - target).abs().mean((1, 2, 3))
    return metric


class MeanRatio:
    """Two per-image means and their ratio: a summarize that divides by a mean."""

    def __call__(self, output, target):
        return {"mean_out": output.flatten(1).mean(1), "mean_target": target.flatten(1).mean(1)}

    def summarize(self, means):
        return {"mean_ratio": means["mean_out"] / means["mean_target"]}


class SummarizeRaises(MeanRatio):
    def summarize(self, means):
        return {"x": means["no_such_mean"]}


class SummarizeList(MeanRatio):
    def summarize(self, means):
        return [means["mean_out"]]


class LowerIsBetterBool(i2i.Task):
    """``lower_is_better = True`` reads naturally, but it is a tuple of metric names."""

    metrics = ("psnr", "mae")
    main_metric = "mae"
    lower_is_better = True

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        return clean, clean


class Target255(i2i.Task):
    """A target left on the 0-255 scale: trained and scored PSNR 7.5 without a word."""

    metrics = ("psnr",)

    def make_pair(self, clean, generator=None):
        return clean * 2 - 1, clean * 255

    def prepare(self, image):
        return image * 2 - 1


class ToImageUnscaled(Target255):
    """``to_image`` without ``(x + 1) / 2``: scored nonsense, and translate wrote half-black images."""

    def make_pair(self, clean, generator=None):
        return clean * 2 - 1, clean * 2 - 1

    def to_image(self, output, input):
        return output


class GlobalNoise(i2i.Task):
    """Noise from torch's global stream, not the generator it is given."""

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        return (clean + 0.1 * torch.randn(clean.shape, device=clean.device)) * 2 - 1, clean * 2 - 1


class InputAsBaseline(i2i.Task):
    """Forgets input_image: its baseline is the input in [-1, 1]."""

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        return clean * 2 - 1, clean * 2 - 1

    def baselines(self, input, target_image):
        return {"copy": input}


class DownUp(i2i.Task):
    """Super-resolution's common first try: half size and back, which loses a row of an odd image."""

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        small = torch.nn.functional.interpolate(clean, scale_factor=0.5, mode="bilinear")
        return torch.nn.functional.interpolate(small, scale_factor=2.0, mode="bilinear") * 2 - 1, clean * 2 - 1


class ReflectBlur(i2i.Task):
    """Reflect padding wider than a small validation image: torch raises on it."""

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        padded = torch.nn.functional.pad(clean, (8, 8, 8, 8), mode="reflect")
        return torch.nn.functional.avg_pool2d(padded, 17, stride=1) * 2 - 1, clean * 2 - 1


class ExplodingCallback(i2i.Callback):
    def __init__(self):
        raise RuntimeError("callback init exploded")


class CallbackNeedingAPath(i2i.Callback):
    def __init__(self, path):
        self.path = path


class ToImageNone(ToImageUnscaled):
    """to_image returning None was an AttributeError deep in i2i, naming no plugin."""

    def to_image(self, output, input):
        return None


class InputImageNone(ToImageUnscaled):
    """input_image returning None was blamed on the 'copy' baseline built from it."""

    def to_image(self, output, input):
        return (output + 1) / 2

    def input_image(self, input):
        return None

    def baselines(self, input, target_image):
        return {"copy": self.input_image(input)}


class StringChannels(ToImageUnscaled):
    """in_channels = "3": the generator's plugin was blamed for the task's mistake."""

    in_channels = "3"


class NanLater(nn.Module):
    """Finite weights, but from its third training forward on a NaN output: the loss and the
    learning rate were blamed."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.calls = 0

    def forward(self, x):
        out = torch.tanh(self.conv(x))
        if self.training:
            self.calls += 1
            if self.calls >= 3:
                return out * float("nan")
        return out


class ShrinksWhenTraining(nn.Module):
    """The input's shape in eval mode (the dry run's), a column short in training mode."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        out = self.conv(x)
        return out[..., :-1] if self.training else out


class OnLogMissingArguments(i2i.Callback):
    def on_log(self, trainer):
        pass


class NoParameters(nn.Module):
    """A network whose layers sit in a plain list, so none of them is registered."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1)]

    def forward(self, x):
        return self.layers[0](x)


def no_parameters_d(in_channels: int) -> nn.Module:
    return NoParameters(in_channels, 1)


class Sloppy:
    @i2i.hookimpl
    def register_discriminators(self, register):
        register("no_parameters_d", no_parameters_d)

    @i2i.hookimpl
    def register_callbacks(self, register):
        register("exploding_cb", ExplodingCallback)
        register("on_log_missing_arguments", OnLogMissingArguments)

    @i2i.hookimpl
    def register_generators(self, register):
        register("shrinks", Shrinks)
        register("integer", IntegerNet)
        register("exploding", exploding_net)
        register("detached", Detached)
        register("float64", Float64Net)
        register("with_a_kind", net_with_a_kind)
        register("nan_later", NanLater)
        register("shrinks_when_training", ShrinksWhenTraining)
        register("no_parameters", NoParameters)

    @i2i.hookimpl
    def register_losses(self, register):
        register("per_image_l1", PerImageL1)
        register("late_per_image_l1", LatePerImageL1)
        register("float_l1", FloatL1)
        register("mask_named_l1", MaskNamedL1)
        register("no_options", NoOptions)
        register("raising_l1", RaisingL1)
        register("detached_l1", DetachedL1)
        register("not_a_loss", lambda: (lambda fake, target: (fake - target).abs().mean()))

    @i2i.hookimpl
    def register_metrics(self, register):
        register("batch_mae", lambda: (lambda output, target: (output - target).abs().mean()))
        register("meta_mae", lambda: (lambda output, target: torch.zeros(output.shape[0], device="meta")))
        register("raising", raising_metric)
        register("flaky", flaky_metric)
        register("mean_ratio", MeanRatio)
        register("summarize_raises", SummarizeRaises)
        register("summarize_list", SummarizeList)

    @i2i.hookimpl
    def register_tasks(self, register):
        register("double_pair", DoublePair)
        register("halved_input", HalvedInput)
        register("breaks_at_batch_size", BreaksAtBatchSize)
        register("masked_input", MaskedInput)
        register("one_tensor", OneTensor)
        register("grey_target", GreyTarget)
        register("lower_is_better_bool", LowerIsBetterBool)
        register("lower_is_better_typo", type("LowerIsBetterTypo", (LowerIsBetterBool,), {"lower_is_better": ("mea",)}))
        register("global_noise", GlobalNoise)
        register("target_255", Target255)
        register("to_image_unscaled", ToImageUnscaled)
        register("input_as_baseline", InputAsBaseline)
        register("down_up", DownUp)
        register("reflect_blur", ReflectBlur)
        register("to_image_none", ToImageNone)
        register("input_image_none", InputImageNone)
        register("string_channels", StringChannels)


@pytest.fixture(autouse=True)
def sloppy():
    i2i.register_plugin(Sloppy(), "sloppy")


def refused_before_training(recipe: dict, message: str) -> None:
    """``i2i.train`` stops with ``message`` before any step, leaving no run folder behind."""
    with pytest.raises(i2i.UserError, match=message):
        i2i.train(recipe, quiet=True)
    assert not Path(recipe["output"]["dir"]).exists()


def test_a_loss_whose_forward_needs_what_i2i_never_passes_is_named_by_validate(photos, tmp_path):
    """forward(self, fake, target, mask) failed at the first step with 'missing 1 required
    positional argument: mask', and no word that the generator's input comes as input=."""
    recipe = tiny_recipe(photos, tmp_path / "run", losses={"l1": {"name": "mask_named_l1"}})
    message = (r"^<recipe>: losses.l1 \('mask_named_l1', plugin 'sloppy'\): its forward needs 'mask', which i2i never passes: a "
               r"reconstruction loss is called as forward\(fake, target\), plus input=\.\.\. .* when it declares a "
               r"parameter named input; report this to the plugin's author$")
    with pytest.raises(i2i.PluginError, match=message):
        i2i.validate(recipe)
    refused_before_training(recipe, message)


@pytest.mark.parametrize("loss, returned", [("per_image_l1", "a tensor of shape [2]"), ("float_l1", "a float")])
def test_a_loss_that_returns_no_scalar_tensor_is_named(photos, tmp_path, loss, returned):
    """float_l1's own float() drew torch's warning, placed in i2i's code, before i2i's error."""
    import warnings

    recipe = tiny_recipe(photos, tmp_path / "run", losses={"l1": {"name": loss, "weight": 1.0}})
    with pytest.raises(i2i.UserError) as info, warnings.catch_warnings():
        warnings.filterwarnings("error", message="Converting a tensor")  # raised instead of i2i's error, were it shown
        i2i.train(recipe, quiet=True)
    assert f"losses.l1 ('{loss}', plugin 'sloppy') returned {returned}, not a scalar tensor" in str(info.value)


def test_a_loss_class_without_init_takes_no_options(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run", losses={"l1": {"name": "no_options", "powr": 2}})
    with pytest.raises(i2i.UserError, match=r"losses.l1.powr: unknown option; it takes no options \(the table holds only its own name, weight\)"):
        i2i.train(recipe, quiet=True)


@pytest.mark.parametrize("metric, message", [
    ("batch_mae", r"eval.metrics 'batch_mae' \(plugin 'sloppy'\) returned a tensor of shape \[\] for "
                  r"a batch of 2 image\(s\); a metric returns one value per image"),
    # its values on another device: the check itself crashed with a traceback (float() of a meta tensor)
    ("meta_mae", r"eval.metrics 'meta_mae' \(plugin 'sloppy'\) returned its values on meta for images on cpu; a metric "
                 r"returns one value per image on the images' device"),
    ("raising", r"eval.metrics 'raising' \(plugin 'sloppy'\) failed on images of shape \[2, 3, 16, 16\]: "
                r"KeyError: 'metric boom'; report this"),
    ("summarize_raises", r"metric 'summarize_raises' \(plugin 'sloppy'\): summarize failed on the means \{.*\}: "
                         r"KeyError: 'no_such_mean'; report this"),
    ("summarize_list", r"metric 'summarize_list' \(plugin 'sloppy'\): summarize returned list; it returns \{name: number\}"),
])
def test_a_metric_that_breaks_its_contract_is_named_before_training(photos, tmp_path, metric, message):
    """Checked on the dry run: a metric found broken at the end of training would cost the run."""
    recipe = tiny_recipe(photos, tmp_path / "run", eval={"metrics": [metric]})
    refused_before_training(recipe, message)
    from i2i.engine.components import check_recipe

    with pytest.raises(i2i.UserError, match=message):  # i2i validate
        check_recipe(i2i.load_recipe(recipe))


@pytest.mark.parametrize("section, name, message", [
    # what the plugin's network returned, not the denoiser's residual sum that failed on it
    ("generator", "shrinks", r"generator.name = 'shrinks' \(plugin 'sloppy'\) returned a tensor of shape \[1, 3, 14, 14\] "
                             r"for a target of shape \[1, 3, 16, 16\]; a generator must return the target's shape"),
    ("generator", "integer", r"generator.name = 'integer' \(plugin 'sloppy'\) returned torch.int32 on cpu for an input of "
                             r"torch.float32 on cpu; a generator returns its input's dtype on its device"),
    ("generator", "exploding", r"generator.name = 'exploding': plugin 'sloppy' failed to build it: "
                               r"RuntimeError: exploding_net factory exploded; report this"),
    # a task's broken pairs name the task, not the generator they feed
    ("task", "double_pair", r"task.name = 'double_pair' \(plugin 'sloppy'\): make_pair's input is a tensor of shape "
                            r"\[1, 3, 16, 16\] \(torch.float64 on cpu\) for a batch of \[1, 3, 16, 16\]; expected "
                            r"\[1, 3, H, W\] \(torch.float32 on cpu\)"),
    ("task", "one_tensor", r"task.name = 'one_tensor' \(plugin 'sloppy'\): make_pair returned a tensor of shape "
                           r"\[1, 3, 16, 16\]; it returns \(input, target\), two tensors"),
    ("task", "grey_target", r"task.name = 'grey_target' \(plugin 'sloppy'\): make_pair's target is a tensor of shape "
                            r"\[1, 1, 16, 16\] .*the task's out_channels"),
    # it trained, then failed at the first evaluation (with a conditional D: a traceback at once)
    ("task", "halved_input", r"task.name = 'halved_input' \(plugin 'sloppy'\): make_pair's input is 8x8 px and its target "
                             r"16x16; i2i's generators, evaluation and translate keep an image's size"),
    # it trained, then the sample grid failed with a traceback at the first evaluation
    ("task", "masked_input", r"task.name = 'masked_input' \(plugin 'sloppy'\): input_image returned a tensor of shape "
                             r"\[1, 4, 16, 16\] for an input of shape \[1, 4, 16, 16\]; it returns the input as images"),
    # a traceback from backward
    ("generator", "float64", r"generator.name = 'float64' \(plugin 'sloppy'\) returned torch.float64 on cpu for an input "
                             r"of torch.float32 on cpu; a generator returns its input's dtype on its device"),
])
def test_a_generator_or_task_that_breaks_fails_before_training(photos, tmp_path, section, name, message):
    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe[section] = {"name": name}
    refused_before_training(recipe, message)


@pytest.mark.parametrize("mode, got", [
    ("half", r"a tensor of shape \[1, 3, 16, 16\] \(torch.float32 on cpu\)"),  # trained on half of each batch
    ("uint8", r"a tensor of shape \[2, 3, 16, 16\] \(torch.uint8 on cpu\)"),  # trained on a 0-255 target
    ("none", r"None"),  # a traceback from the step
    ("rgb_only", r"a tensor of shape \[2, 2, 16, 16\] \(torch.float32 on cpu\)"),  # the generator was blamed
])
def test_a_task_whose_pairs_break_only_at_the_training_batch_size_is_named_at_that_step(photos, tmp_path, mode, got):
    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["task"] = {"name": "breaks_at_batch_size", "mode": mode}
    role = "input" if mode in ("half", "rgb_only") else "target"
    with pytest.raises(i2i.PluginError, match=rf"^<recipe>: task.name = 'breaks_at_batch_size' \(plugin 'sloppy'\) at step 1 "
                                              rf"\(training, a batch of 2\): make_pair's {role} is {got} for a batch of "
                                              rf"\[2, 3, 16, 16\]; expected \[2, 3, H, W\]"):
        i2i.train(recipe, quiet=True)


def test_a_task_listing_a_metric_nobody_provides_fails_before_training(photos, tmp_path, monkeypatch):
    task_class = type(i2i.registry().build("tasks", "denoise"))
    monkeypatch.setattr(task_class, "metrics", ("psnr", "pnsr_typo"))
    recipe = tiny_recipe(photos, tmp_path / "run")
    with pytest.raises(i2i.UserError, match=r"task.name = 'denoise' \(plugin 'tasks'\): the task's metrics include unknown metric "
                                            r"'pnsr_typo'"):
        i2i.train(recipe, quiet=True)
    assert not (tmp_path / "run").exists()


def test_cli_shows_a_plugin_error_as_one_line_and_a_traceback_on_request(tmp_path):
    plugin = tmp_path / "site" / "i2i_sloppy_cli.py"
    plugin.parent.mkdir()
    plugin.write_text("import i2i\n@i2i.hookimpl\ndef register_generators(register):\n"
                      "    def boom(in_channels, out_channels):\n        raise RuntimeError('kaput')\n"
                      "    register('boom', boom)\n")
    make_distribution(tmp_path / "site", "i2i-sloppy-cli", "0.1", {"sloppy_cli": "i2i_sloppy_cli"}, {})
    args = ["run", "recipes/gray2color.toml", "--set", "generator.name='boom'", "--out", str(tmp_path / "run")]
    result = run_i2i(args, tmp_path / "site", cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "plugin 'sloppy_cli' failed to build it: RuntimeError: kaput" in result.stderr
    traced = run_i2i(args, tmp_path / "site", cwd=ROOT, env={"I2I_TRACEBACK": "1"})
    assert "Traceback" in traced.stderr and "kaput" in traced.stderr
    # the same one line last, and the same exit status: a script sees the same outcome
    assert traced.returncode == 2 and traced.stderr.splitlines()[-1] == result.stderr.splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_a_generator_output_of_the_wrong_shape_is_named_before_training(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run", discriminator=None)
    recipe["task"] = {"name": "color2gray"}
    recipe["losses"] = {"l1": {"weight": 1.0}}
    recipe["generator"] = {"name": "shrinks"}
    with pytest.raises(i2i.UserError, match=r"generator.name = 'shrinks' \(plugin 'sloppy'\) returned a tensor of shape "
                                            r"\[1, 1, 14, 14\] for a target of shape \[1, 1, 16, 16\]; a generator must "
                                            r"return the target's shape \(batch, 1 channels"):
        i2i.train(recipe, quiet=True)
    assert not (tmp_path / "run").exists()


def test_an_evaluation_that_fails_keeps_the_weights_trained_before_it(photos, tmp_path, capsys):
    """A metric that breaks only on the validation images ends the run, but the training is
    checkpointed first, so it can be scored or resumed once the metric is fixed."""
    from i2i.engine.checkpoint import find_checkpoint

    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 3}, eval={"metrics": ["flaky"]})
    with pytest.raises(i2i.UserError, match=r"^metric 'flaky' \(plugin 'sloppy'\) failed on a validation batch of shape \[\d+, 3, \d+, \d+\]: "
                                            r"ValueError: cannot score this image; report this"):
        i2i.train(recipe, quiet=True)
    assert find_checkpoint(tmp_path / "run").name == "step_0000003"
    assert ("i2i: note: the evaluation at step 3 failed (see below); the weights trained so far are saved: once the "
            f"cause is fixed, i2i eval {tmp_path / 'run'} scores them") in capsys.readouterr().err
    assert i2i.load(tmp_path / "run").generator is not None


@pytest.mark.parametrize("loss, message", [
    ("raising_l1", r"raised KeyError: 'loss boom'; report this to the plugin's author \(I2I_TRACEBACK=1 shows where\)$"),
    ("detached_l1", r"returned a float32 tensor that carries no gradient \(detached, an integer, or not computed from "
                    r"its inputs\)"),
])
def test_a_loss_that_raises_or_carries_no_gradient_is_one_line_naming_the_term(photos, tmp_path, loss, message):
    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["losses"]["l1"] = {"name": loss}
    with pytest.raises(i2i.UserError, match=rf"losses.l1 \('{loss}', plugin 'sloppy'\) {message}"):
        i2i.train(recipe, quiet=True)


def test_a_task_whose_main_metric_no_metric_gives_is_named_before_training(photos, tmp_path, monkeypatch):
    """main_metric picks the best checkpoint: one that no metric gives would never keep one."""
    task_class = type(i2i.registry().build("tasks", "denoise"))
    monkeypatch.setattr(task_class, "main_metric", "ssim_typo")
    with pytest.raises(i2i.UserError, match=r"task.name = 'denoise' \(plugin 'tasks'\): main_metric = 'ssim_typo', which "
                                            r"none of the task's metrics gives \(psnr, ssim\); so no best checkpoint"):
        i2i.train(tiny_recipe(photos, tmp_path / "run"), quiet=True)


def test_a_generator_whose_output_carries_no_gradient_is_named(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["generator"] = {"name": "detached"}
    with pytest.raises(i2i.UserError, match=r"generator.name = 'detached' \(plugin 'sloppy'\) returned an output that does "
                                            r"not depend on any trainable parameter"):
        i2i.train(recipe, quiet=True)


def test_a_task_whose_prepare_breaks_the_contract_is_named_at_inference(photos, tmp_path):
    """The dry run refuses such a task (tests/test_plugin_authoring.py); one whose prepare
    changes after training (a plugin upgraded under a finished run) is named at inference."""
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 1})
    model = i2i.load(i2i.train(recipe, quiet=True).run_dir)
    model.task.prepare = lambda image: image.mean(1, keepdim=True)
    with pytest.raises(i2i.UserError, match=r"task.name = 'denoise' \(plugin 'tasks'\): prepare returned a tensor of "
                                            r"shape \[1, 1, 16, 16\] for images of shape \[1, 3, 16, 16\]; expected \[1, 3, 16, 16\]"):
        model(torch.rand(1, 3, 16, 16))


def nan_metric():
    return lambda output, target: torch.full((output.shape[0],), float("nan"), device=output.device)


def test_a_metric_that_gives_nan_is_warned_about(photos, tmp_path, capsys):
    i2i.register_plugin(type("NaNMetric", (), {"register_metrics": i2i.hookimpl(lambda register: register("nan_m", nan_metric))}),
                        "nanmetric")
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 2}, eval={"metrics": ["nan_m"]}), quiet=True)
    assert run.status == "finished"
    assert "i2i: warning: step 2: metric(s) nan_m gave NaN or infinite values on the validation images" in capsys.readouterr().err
    from click.testing import CliRunner

    from i2i.cli import cli

    scored = CliRunner().invoke(cli, ["eval", str(run.run_dir)])  # in this process, where the plugin is registered
    assert scored.exit_code == 0 and "i2i: warning: metric(s) nan_m gave NaN or infinite values on these images" in \
        scored.output


def test_a_first_step_that_fails_keeps_a_folder_holding_a_callbacks_file_and_says_so(photos, tmp_path, capsys):
    """Its folder stayed without a word: no checkpoint, but a file i2i did not write."""
    class Notes(i2i.Callback):
        def on_run_start(self, trainer):
            (trainer.run_dir / "notes.txt").write_text("started\n")

    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["generator"] = {"name": "detached"}  # found at the first step: its output needs no gradient
    with pytest.raises(i2i.PluginError):
        i2i.train(recipe, quiet=True, callbacks=[Notes()])
    assert (tmp_path / "run" / "notes.txt").is_file()
    assert (f"i2i: note: {tmp_path / 'run'} trained no step but holds files i2i did not write (notes.txt), so it stays"
            in capsys.readouterr().err)


class Quarters(nn.Module):
    """Down and up by 4, without declaring size_multiple: fine at 16 px, shrinks 30 px."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(in_channels, 4, 4, stride=4)
        self.up = nn.ConvTranspose2d(4, out_channels, 4, stride=4)

    def forward(self, x):
        return self.up(self.down(x))


@pytest.mark.parametrize("task, failure", [
    ("color2gray", r"returned 28x28 px for an input of 30x30: a generator keeps its input's height and width"),
    # not the residual sum's "The size of tensor a ...", and the plugin's class, not the task's wrapper
    ("denoise", r"returned 28x28 px for an input of 30x30: a generator keeps its input's height and width"),
    ("asserting", r"failed on an input of 30x30 px \(.*\): AssertionError: H and W must divide by 4"),
])
def test_a_generator_that_cannot_take_an_image_size_is_named_at_inference(photos, tmp_path, task, failure):
    class Asserting(Quarters):
        def forward(self, x):
            assert x.shape[-1] % 4 == 0, "H and W must divide by 4"  # an AssertionError gave a 60-line traceback
            return super().forward(x)

    def register(register):
        register("quarters", Asserting if task == "asserting" else Quarters)

    i2i.register_plugin(type("Q", (), {"register_generators": i2i.hookimpl(register)}), "quarters_plugin")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 1}, discriminator=None)
    recipe.update(task={"name": "denoise" if task == "asserting" else task}, losses={"l1": {"weight": 1.0}},
                  generator={"name": "quarters"})
    run_dir = i2i.train(recipe, quiet=True).run_dir
    model = i2i.load(run_dir)
    named = r"generator.name = 'quarters' \(plugin 'quarters_plugin'\): "
    with pytest.raises(i2i.PluginError, match=rf"{named}the generator \({'Asserting' if task == 'asserting' else 'Quarters'}\) {failure}"):
        model(torch.rand(1, 3, 30, 30))
    # scoring whole images of another size (--crop 0) names the plugin and the image too
    from PIL import Image

    from i2i.evaluation import evaluate_run
    from i2i.translate import translate_files

    (tmp_path / "odd").mkdir()
    Image.new("RGB", (30, 30), (90, 120, 150)).save(tmp_path / "odd" / "odd.png")
    with pytest.raises(i2i.PluginError, match=rf"{named}scoring odd.png: the generator \(\w+\) "):
        evaluate_run(run_dir, data_dir=tmp_path / "odd", crop=0)
    # and so does translating it, among images the generator takes
    Image.new("RGB", (32, 32), (90, 120, 150)).save(tmp_path / "odd" / "fine.png")
    with pytest.raises(i2i.PluginError, match=rf"translating {re.escape(str(tmp_path / 'odd' / 'odd.png'))}: .*{named}"
                                              rf"the generator \(\w+\) {failure}"):
        translate_files(model, tmp_path / "odd", tmp_path / "out")


def test_a_metric_whose_summarize_divides_by_a_mean_trains_and_reports_it(photos, tmp_path):
    """The dry run summarizes its own means, not made-up zeros that such a metric divides by."""
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 2}, eval={"metrics": ["mean_ratio"]}), quiet=True)
    assert run.metrics["mean_ratio"] == pytest.approx(run.metrics["mean_out"] / run.metrics["mean_target"])


def test_a_task_whose_lower_is_better_names_no_metric_it_gives_is_named_before_training(photos, tmp_path):
    """A misspelt name kept the checkpoint with the worst error as the best, without a word."""
    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["task"] = {"name": "lower_is_better_typo"}
    refused_before_training(recipe, r"task.name = 'lower_is_better_typo'.*: lower_is_better names 'mea', which none of "
                                    r"the task's metrics gives \(did you mean 'mae'\?\); report this")


def test_a_task_whose_lower_is_better_is_no_tuple_is_named_before_training(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["task"] = {"name": "lower_is_better_bool"}
    refused_before_training(recipe, r"task.name = 'lower_is_better_bool'.*: the task's lower_is_better = True; it is a tuple "
                                    r"of metric names, e.g. \('mae',\)")


def test_a_callback_that_cannot_be_built_is_named_before_training(photos, tmp_path):
    message = (r"train.callbacks 'exploding_cb' \(plugin 'sloppy'\): building it raised RuntimeError: callback init "
               r"exploded; report this to the plugin's author")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"callbacks": ["exploding_cb"]})
    refused_before_training(recipe, message)
    from i2i.engine.components import check_recipe

    with pytest.raises(i2i.UserError, match=message):  # i2i validate
        check_recipe(i2i.load_recipe(recipe))


def test_a_component_that_fails_to_build_from_a_set_names_the_set(photos, tmp_path):
    from i2i.engine.components import check_recipe

    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["generator"] = {"name": "unet"}
    recipe = i2i.load_recipe(recipe, ["generator.name=exploding"])
    with pytest.raises(i2i.UserError, match=r"^--set generator.name=exploding: generator.name = 'exploding': plugin "
                                            r"'sloppy' failed to build it: RuntimeError: exploding_net factory exploded"):
        check_recipe(recipe)


@pytest.mark.parametrize("kind, factory, message", [
    ("metrics", lambda output, target: (output - target).abs().mean((1, 2, 3)),
     r"metric 'm': <lambda> takes the images \('output'\), so it is the metric function itself; register a factory "
     r"that returns it, e.g. register\('m', lambda: <lambda>\)"),
    ("metrics", lambda scale: None,
     r"metric 'm': <lambda> needs 'scale', which i2i never passes \(it passes only the recipe's options\); give 'scale' "
     r"a default, which a recipe can then change, or register it with defaults=\{'scale': ...\} \(a metric is "
     r"registered by a factory that returns the metric function\)"),
    ("callbacks", CallbackNeedingAPath, r"callback 'm': CallbackNeedingAPath needs 'path', which i2i never passes"),
    ("losses", type("NeedsDelta", (i2i.ReconstructionLoss,), {"__init__": lambda self, delta: None}),
     r"loss 'm': NeedsDelta needs 'delta', which i2i never passes"),
    ("generators", lambda in_channels, out_channels, depth: None,
     r"generator 'm': <lambda> needs 'depth', which i2i never passes \(it passes in_channels and out_channels, then the "
     r"recipe's options\)"),
])
def test_a_factory_needing_an_argument_i2i_never_passes_disables_its_plugin_at_once(capsys, kind, factory, message):
    """Found at registration, the plugin's author reads one line saying what to change; found
    when a recipe names it, a user read 'unknown option; options: none' for the very option."""
    hook = f"register_{kind}"
    plugin = type("Needy", (), {hook: i2i.hookimpl(lambda register: register("m", factory))})
    info = i2i.register_plugin(plugin, "needy")
    assert info.status == "failed"
    assert re.search(message, info.error), info.error


def test_an_argument_given_through_defaults_is_fine():
    plugin = type("Given", (), {"register_callbacks": i2i.hookimpl(
        lambda register: register("given", CallbackNeedingAPath, defaults={"path": "x"}))})
    assert i2i.register_plugin(plugin, "given").status == "loaded"


def test_a_loss_factory_that_builds_no_loss_kind_is_named_with_its_plugin(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run", losses={"odd": {"name": "not_a_loss"}})
    refused_before_training(recipe, r"losses.odd \('not_a_loss', plugin 'sloppy'\): its factory built a function, which is "
                                    r"none of i2i's loss kinds \(i2i.ReconstructionLoss, .*report this to the plugin's author")


def test_a_component_may_have_an_option_called_kind(photos, tmp_path):
    """Registry.build's own 'kind' argument took it: a plugin was blamed for a name i2i reserved."""
    recipe = tiny_recipe(photos, tmp_path / "run", discriminator=None)
    recipe["losses"] = {"l1": {}}
    recipe["generator"] = {"name": "with_a_kind", "kind": "plain"}
    recipe["train"]["steps"] = 1
    assert i2i.train(recipe, quiet=True).run_dir.is_dir()


class MaskedL1(i2i.ReconstructionLoss):
    """Inpainting: the error inside the hole only, the mask read from the input's last channel."""

    def forward(self, fake, target, input):
        hole = (input[:, -1:] > 0).float()
        return ((fake - target).abs() * hole).sum() / hole.sum().clamp_min(1)


class HolePSNR:
    def __call__(self, output, target, input):
        hole = (input[:, -1:] > 0).float()
        mse = ((output - target) ** 2 * hole).flatten(1).sum(1) / (hole.flatten(1).sum(1) * output.shape[1]).clamp_min(1)
        return {"hole_psnr": -10 * torch.log10(mse.clamp_min(1e-10))}


class Inpaint(i2i.Task):
    """The left half of each image is the hole: the input is the image with it greyed out, plus the mask."""

    in_channels = 4
    metrics = ("psnr", "hole_psnr")

    def __init__(self) -> None:
        pass

    def make_pair(self, clean, generator=None):
        mask = torch.zeros_like(clean[:, :1])
        mask[..., : clean.shape[-1] // 2] = 1
        holed = clean * (1 - mask) + 0.5 * mask
        return torch.cat([holed * 2 - 1, mask * 2 - 1], 1), clean * 2 - 1

    def input_image(self, input):
        return ((input[:, :3] + 1) / 2).clamp(0, 1)


def test_losses_and_metrics_that_declare_input_get_the_generators_input(photos, tmp_path, monkeypatch):
    """An inpainting plugin's masked loss and hole-only metric need the mask: declared as a
    parameter named `input`, they get it (it was never passed, so such a loss silently got None)."""
    seen = []
    forward = MaskedL1.forward
    monkeypatch.setattr(MaskedL1, "forward", lambda self, fake, target, input: seen.append(input.shape) or
                        forward(self, fake, target, input))
    i2i.register_plugin(type("Inpainting", (), {
        "register_tasks": i2i.hookimpl(lambda self, register: register("inpaint", Inpaint)),
        "register_losses": i2i.hookimpl(lambda self, register: register("masked_l1", MaskedL1)),
        "register_metrics": i2i.hookimpl(lambda self, register: register("hole_psnr", HolePSNR)),
    })(), "inpainting")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 2})
    recipe["task"] = {"name": "inpaint"}
    recipe["losses"] = {"hole": {"name": "masked_l1"}, "gan": {"name": "vanilla"}}
    run = i2i.train(recipe, quiet=True)
    assert seen and all(shape[1] == 4 for shape in seen)  # the generator's 4-channel input, each step
    # scored on the hole alone: not the whole image's PSNR (the grey left half fills it)
    assert math.isfinite(run.metrics["hole_psnr"]) and run.metrics["hole_psnr"] != run.metrics["psnr"]


@pytest.mark.parametrize("checkpoint_every, resume", [
    (2, r"its last checkpoint is at step 2: i2i run --resume .*run once the plugin is fixed"),
    (0, r"no checkpoint was written yet, so .*run holds only its logs"),
])
def test_a_plugin_failing_on_a_later_batch_names_the_step_and_where_to_resume(photos, tmp_path, checkpoint_every, resume):
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 6}, output={"checkpoint_every": checkpoint_every})
    recipe["losses"]["l1"] = {"name": "late_per_image_l1"}  # calls 1-3: steps 1-3
    with pytest.raises(i2i.PluginError, match=rf"losses.l1 \('late_per_image_l1', plugin 'sloppy'\) returned a tensor of "
                                              rf"shape \[2\], not a scalar tensor.* \(at step 4; {resume}\)$"):
        i2i.train(recipe, quiet=True)


def with_task(recipe: dict, name: str) -> dict:
    recipe["task"] = {"name": name}
    return recipe


def test_a_task_drawing_its_noise_from_the_global_stream_is_warned_about(photos, tmp_path, capsys):
    """Its validation noise changed at every evaluation, so scores (and the best checkpoint) did."""
    recipe = with_task(tiny_recipe(photos, tmp_path / "run", train={"steps": 1}), "global_noise")
    i2i.train(recipe, quiet=True)
    assert ("task.name = 'global_noise' (plugin 'sloppy'): make_pair gave two different pairs for generators seeded alike"
            in capsys.readouterr().err)
    recipe = with_task(tiny_recipe(photos, tmp_path / "run2", train={"steps": 1}), "down_up")
    i2i.train(recipe, quiet=True)
    assert "make_pair gave" not in capsys.readouterr().err  # no randomness at all: nothing to say


def test_baselines_unlike_the_target_image_are_refused_before_training(photos, tmp_path):
    """A baseline in [-1, 1] printed as a real score (PSNR 3.5, SSIM -0.39)."""
    refused_before_training(with_task(tiny_recipe(photos, tmp_path / "run"), "input_as_baseline"),
                            r"^<recipe>: task.name = 'input_as_baseline' \(plugin 'sloppy'\): baseline 'copy' holds values "
                            r"from -?[\d.]+ to [\d.]+; baselines are images in \[0, 1\]")


@pytest.mark.parametrize("task, size, said", [
    ("down_up", (61, 47), r"^<recipe>: task.name = 'down_up' \(plugin 'sloppy'\), validation image odd.png \(61x47 px\): make_pair's "
                          r"input is 46x60 px and its target 47x61"),
    ("reflect_blur", (7, 5), r"^<recipe>: task.name = 'reflect_blur' \(plugin 'sloppy'\), validation image odd.png \(7x5 px\): "
                             r"make_pair failed: RuntimeError: .*pad"),
])
def test_a_task_that_fails_on_one_validation_image_names_it(photos, tmp_path, task, size, said):
    """It was a traceback, or blamed on the built-in psnr comparing images of two sizes (and then
    the task was named by its class and module, not as the recipe names it)."""
    from PIL import Image

    val = tmp_path / "val"
    val.mkdir()
    Image.new("RGB", size, (120, 30, 200)).save(val / "odd.png")
    recipe = with_task(tiny_recipe(photos, tmp_path / "run", train={"steps": 1}, data={"val_source": str(val)},
                                   eval={"crop": 0}), task)
    with pytest.raises(i2i.PluginError, match=said):
        i2i.train(recipe, quiet=True)


def test_pair_details_not_one_value_per_image_is_one_line_naming_the_task():
    """A plugin task's per-image details (``i2i eval --per-image`` columns) must be one number per image."""
    from i2i.engine.evaluate import task_pair_details

    class Whole(i2i.Task):
        def make_pair(self, clean, generator=None):
            return clean, clean

        def pair_details(self, input, target):
            return {"noise": (input - target).std()}  # one value for the batch, not per image

    input = torch.rand(3, 3, 8, 8)
    with pytest.raises(i2i.PluginError, match=r"Whole.*pair_details gave 'noise': \[\] for 3 image\(s\); expected a "
                                              r"tensor of one value per image"):
        task_pair_details(Whole(), input, input)
    Whole.pair_details = lambda self, input, target: {"noise": (input - target).flatten(1).std(1)}
    assert task_pair_details(Whole(), input, input)["noise"].shape == (3,)


class WholeBatchDetails(ToImageUnscaled):
    def to_image(self, output, input):
        return (output + 1) / 2

    def pair_details(self, input, target):
        return {"amount": (input - target).abs().mean()}  # 0-d: one value for the batch


def test_pair_details_of_one_value_for_the_batch_is_named_before_training(photos, tmp_path):
    """It passed the one-image check and a run validated on one image, failing only at an
    i2i eval --per-image of several."""
    i2i.register_plugin(type("Details", (), {"register_tasks": i2i.hookimpl(
        lambda register: register("whole_batch_details", WholeBatchDetails))}), "details")
    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["task"] = {"name": "whole_batch_details"}
    refused_before_training(recipe, r"pair_details gave 'amount': \[\] for 2 image\(s\); expected a tensor of one "
                                    r"value per image")


def test_a_task_whose_images_are_out_of_range_is_told_before_training(photos, tmp_path, capsys):
    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["task"] = {"name": "to_image_unscaled"}
    refused_before_training(recipe, r"task.name = 'to_image_unscaled'.*: to_image gave the target as values from -[\d.]+ to 1; "
                                    r"it gives images in \[0, 1\] for metrics and files")
    recipe = tiny_recipe(photos, tmp_path / "run255", train={"steps": 1})
    recipe["task"] = {"name": "target_255"}
    i2i.train(recipe, quiet=True)  # a task may have its reasons: warned, not refused
    assert re.search(r"i2i: warning: .*task.name = 'target_255'.*: make_pair's target holds values from [\d.]+ to 2\d\d, "
                     r"where generators end in tanh", capsys.readouterr().err)


@pytest.mark.parametrize("task, message", [
    ("to_image_none", r"task.name = 'to_image_none' \(plugin 'sloppy'\): to_image returned None for a target of shape "
                      r"\[1, 3, 16, 16\]; it returns images for metrics and files"),
    ("input_image_none", r"task.name = 'input_image_none' \(plugin 'sloppy'\): input_image returned None"),
    ("string_channels", r"task.name = 'string_channels' \(plugin 'sloppy'\): in_channels = '3'; it is the "
                        r"generator's input channels, a whole number"),
])
def test_a_task_method_or_channel_count_that_breaks_its_contract_is_the_task_plugin_named(photos, tmp_path, task, message):
    """Each was a traceback, or a line blaming a baseline or the generator's plugin."""
    from i2i.engine.components import check_recipe

    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe["task"] = {"name": task}
    refused_before_training(recipe, message)
    with pytest.raises(i2i.UserError, match=message):  # i2i validate
        check_recipe(i2i.load_recipe(recipe))


def test_a_callback_event_that_cannot_take_its_arguments_is_named_with_its_plugin_by_validate(photos, tmp_path):
    from i2i.engine.components import check_recipe

    message = (r"train.callbacks 'on_log_missing_arguments' \(plugin 'sloppy'\): callback OnLogMissingArguments.on_log "
               r"cannot take the arguments i2i passes; it is def on_log\(self, trainer, step, values\); report this")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"callbacks": ["on_log_missing_arguments"]})
    with pytest.raises(i2i.UserError, match=message):
        check_recipe(i2i.load_recipe(recipe))
    refused_before_training(recipe, message)


def test_an_autoloaded_callback_whose_event_cannot_take_its_arguments_is_named_with_its_plugin(photos, tmp_path):
    plugin = type("AutoBad", (), {"register_callbacks": i2i.hookimpl(lambda register: register(
        "auto_bad", type("AutoBad", (OnLogMissingArguments,), {"autoload": True})))})
    i2i.register_plugin(plugin, "autobad")  # the plugins are reset after each test
    refused_before_training(tiny_recipe(photos, tmp_path / "run"),
                            r"autoloaded callback 'autobad:auto_bad' \(plugin 'autobad'\): callback AutoBad.on_log "
                            r"cannot take the arguments i2i passes")


def test_a_generator_factory_that_takes_no_channels_disables_its_plugin_at_once(capsys):
    """It registered, was listed, and failed only when a recipe built it, blamed on the recipe's --set."""
    plugin = type("NoChannels", (), {"register_generators": i2i.hookimpl(
        lambda register: register("no_channels", lambda *, width=4: nn.Identity()))})
    info = i2i.register_plugin(plugin, "nochannels")
    assert info.status == "failed"
    assert re.search(r"generator 'no_channels': <lambda> cannot take in_channels and out_channels, which i2i passes "
                     r"first, by position", info.error), info.error


def test_a_generator_whose_output_goes_nan_is_named_rather_than_the_loss(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 6},
                         output={"log_every": 1})
    recipe.pop("discriminator", None)
    recipe["generator"] = {"name": "nan_later"}
    recipe["losses"] = {"l1": {"name": "l1"}}
    with pytest.raises(i2i.TrainingStopped, match=r"the generator's output \(generator.name = 'nan_later' \(plugin "
                                                  r"'sloppy'\)\) became NaN or infinite at step 3"):
        i2i.train(recipe, quiet=True)


@pytest.mark.parametrize("section, name, has", [("generator", "no_parameters", "no parameters"),
                                                ("discriminator", "no_parameters_d", "no parameters")])
def test_a_network_with_nothing_to_train_is_named_by_validate(photos, tmp_path, section, name, has):
    """Its optimiser failed with torch's 'empty parameter list' traceback once training began,
    after validate had passed it."""
    recipe = tiny_recipe(photos, tmp_path / "run")
    recipe[section] = {"name": name}
    message = (rf"{section}.name = '{name}' \(plugin 'sloppy'\) built a network with {has}, so there is nothing to "
               r"train \(layers kept in a plain list or dict are not registered: use nn.ModuleList")
    with pytest.raises(i2i.PluginError, match=message):
        i2i.validate(recipe)
    refused_before_training(recipe, message)


def test_a_residual_denoisers_network_of_the_wrong_shape_is_named_rather_than_the_subtraction(photos, tmp_path):
    """Under denoise's residual wrapper the network's wrong training-mode shape surfaced as
    'The size of tensor a (24) must match the size of tensor b (23)', from i2i's subtraction."""
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 2})  # denoise, residual
    recipe["generator"] = {"name": "shrinks_when_training"}
    with pytest.raises(i2i.PluginError, match=r"generator.name = 'shrinks_when_training'.* returned a tensor of "
                                              r"shape \[2, 3, 16, 15\] for a target of shape \[2, 3, 16, 16\]"):
        i2i.train(recipe, quiet=True)


class DictFeatures(nn.Module):
    """Logits as they should be, but features as a dict of layer name to tensor."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1)

    def forward(self, x, return_features=False):
        logits = self.conv(x)
        return (logits, {"conv": logits}) if return_features else logits


def test_a_discriminators_features_of_the_wrong_kind_are_named_rather_than_the_feature_matching_loss(photos, tmp_path):
    """The built-in feature_matching failed with "'str' object has no attribute 'float'; report
    this to the plugin's author", naming i2i's losses plugin for the discriminator's dict."""
    i2i.register_plugin(type("F", (), {"register_discriminators": i2i.hookimpl(
        lambda register: register("dict_features", DictFeatures))}), "dict_features_plugin")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 1})
    recipe["discriminator"] = {"name": "dict_features"}
    recipe["losses"]["fm"] = {"name": "feature_matching", "weight": 1.0}
    with pytest.raises(i2i.PluginError, match=r"discriminator.name = 'dict_features' \(plugin 'dict_features_plugin'\) "
                                              r"with return_features=True returned a dict.*; a discriminator returns "
                                              r"\(logits, features\)"):
        i2i.validate(recipe)
    del recipe["losses"]["fm"]  # without feature matching its features are never asked for
    i2i.validate(recipe)


class EditsItsInput(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv(x.mul_(0))


def test_a_generator_that_edits_its_input_in_place_is_named_before_training(photos, tmp_path):
    """x.mul_(0) inside a generator zeroed the input the baselines were then scored on: the
    'noisy input' and 'gaussian blur' baselines both read 14.94 dB, without a word."""
    i2i.register_plugin(type("E", (), {"register_generators": i2i.hookimpl(
        lambda register: register("edits_input", EditsItsInput))}), "edits_plugin")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 1})
    recipe["generator"] = {"name": "edits_input"}
    with pytest.raises(i2i.PluginError, match=r"generator.name = 'edits_input' \(plugin 'edits_plugin'\) changed its "
                                              r"input in place"):
        i2i.validate(recipe)


class _TaskMistakes:
    """Tasks (denoise's own, changed) with the mistakes a task author makes."""

    @staticmethod
    def denoise():
        from i2i.plugins import registry

        return registry().get("tasks", "denoise").factory

    @classmethod
    def plugin(cls):
        base = cls.denoise()

        class CropsARow(base):
            def make_pair(self, clean, generator):
                input, target = super().make_pair(clean, generator)
                return input[..., 1:, :], target[..., 1:, :]

        class EditsClean(base):
            def make_pair(self, clean, generator):
                clean.mul_(0.9)
                return super().make_pair(clean, generator)

        class WrapsBadly(base):
            def wrap_generator(self, generator):
                return lambda x: generator(x)

        class WrapsHidingTheMultiple(base):
            def wrap_generator(self, generator):
                class Plus(nn.Module):
                    def __init__(self, net):
                        super().__init__()
                        self.net = net

                    def forward(self, x):
                        return x + self.net(x)
                return Plus(generator)

        class UnclampedImages(WrapsHidingTheMultiple):  # x + net(x): past white where the photo is bright
            def to_image(self, output, input):
                return (output + 1) / 2  # unclamped

        class Uint8Baseline(base):
            def baselines(self, input, target_image):
                return {"copy": (target_image * 255).to(torch.uint8)}

        class BaselineNamedModel(base):
            def baselines(self, input, target_image):
                return {"model": target_image.clone()}

        class DetailsNamedPsnr(base):
            def pair_details(self, input, target):
                return {"psnr": torch.zeros(input.shape[0])}

        def register_tasks(register):
            for task in (CropsARow, EditsClean, WrapsBadly, WrapsHidingTheMultiple, UnclampedImages, Uint8Baseline,
                         BaselineNamedModel, DetailsNamedPsnr):
                register(task.__name__.lower(), task)

        return type("T", (), {"register_tasks": staticmethod(i2i.hookimpl(register_tasks))})


@pytest.mark.parametrize("task, message", [
    ("cropsarow", r"task.name = 'cropsarow' \(plugin 'task_mistakes'\): make_pair turned a 16x16 crop into a 16x15 "
                  r"input, and then .*failed"),
    ("editsclean", r"task.name = 'editsclean' \(plugin 'task_mistakes'\): make_pair changed the clean batch it was "
                   r"given in place"),
    ("wrapsbadly", r"task.name = 'wrapsbadly' \(plugin 'task_mistakes'\): wrap_generator returned function; it "
                   r"returns the generator, or a torch.nn.Module"),
    ("uint8baseline", r"baseline 'copy' is a uint8 tensor of shape \[1, 3, 16, 16\]; expected"),
    ("baselinenamedmodel", r"a baseline named 'model', which i2i eval's table calls a row of its own"),
    ("detailsnamedpsnr", r"pair_details gives 'psnr', which a metric gives too"),
])
def test_a_tasks_mistakes_are_named_as_the_tasks_not_the_networks(photos, tmp_path, task, message):
    """A task's resized pair was blamed on the generator ('report this to the nets plugin's author'),
    clean.mul_() in make_pair was taken for drawing from the global random streams, a
    wrap_generator returning a function was a traceback, and a uint8 baseline of the right shape
    was 'a tensor of shape [1, 3, 16, 16]; expected ... [1, 3, 16, 16]'."""
    i2i.register_plugin(_TaskMistakes.plugin(), "task_mistakes")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 1})
    recipe["task"] = {"name": task}
    with pytest.raises(i2i.PluginError, match=message):
        i2i.validate(recipe)


def test_a_tasks_wrapper_need_not_repeat_the_networks_size_multiple_and_outputs_stay_in_0_1(photos, tmp_path):
    """A wrap_generator wrapper that did not copy size_multiple trained, then failed on every
    odd-sized photo, blaming the network; and model(x) returned 1.117 from a to_image that did
    not clamp, where the README promises [0, 1]."""
    i2i.register_plugin(_TaskMistakes.plugin(), "task_mistakes")
    for task in ("wrapshidingthemultiple", "unclampedimages"):
        recipe = tiny_recipe(photos, tmp_path / task, train={"steps": 1})
        recipe["task"] = {"name": task}
        model = i2i.load(i2i.train(recipe, quiet=True).run_dir)
        out = model(torch.rand(1, 3, 37, 53))
        assert out.shape == (1, 3, 37, 53) and 0 <= float(out.min()) and float(out.max()) <= 1


def test_kornia_augmentation_under_the_documented_fork_rng_is_repeatable(photos, tmp_path, capsys):
    """docs/plugins.md: kornia.augmentation takes no generator; run inside fork_rng, seeded from
    the generator make_pair is given, it gives the same pair for generators seeded alike."""
    import kornia.augmentation as K

    base = _TaskMistakes.denoise()
    jitter = K.ColorJitter(0.3, 0.3, 0.3, 0.1, p=1.0)

    class Jittered(base):
        def make_pair(self, clean, generator):
            with torch.random.fork_rng(devices=[clean.device] if clean.is_cuda else []):
                torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator, device=clean.device)))
                clean = jitter(clean)
            return super().make_pair(clean, generator)

    i2i.register_plugin(type("J", (), {"register_tasks": i2i.hookimpl(
        lambda register: register("jittered", Jittered))}), "jitter_plugin")
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 1})
    recipe["task"] = {"name": "jittered"}
    i2i.validate(recipe)
    assert "draws its randomness elsewhere" not in capsys.readouterr().err
