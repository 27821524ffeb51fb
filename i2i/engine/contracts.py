"""What a plugin's network, loss and metric must return, checked where i2i first uses them.

A plugin that breaks its contract (a generator whose output is not the target's shape, a loss
that returns one value per image, a metric that returns the batch mean) would otherwise fail
deep inside the step with a shape error, or train and evaluate silently wrong. These checks
turn that into a one-line :class:`PluginError` naming the recipe table, the component and its
plugin. They read only shapes and types, never tensor values, so they cost no device sync.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import torch
from torch import Tensor

from ..errors import GeneratorFailure, PluginError, did_you_mean, exception_line, show_traceback
from ..losses import as_logit_list
from ..messages import say
from ..recipe import recipe_error, toml_key
from .device import is_out_of_memory

if TYPE_CHECKING:
    from ..registry import Component

REPORT = "report this to the plugin's author"


def describe(value: Any) -> str:
    """``a tensor of shape [2, 3]``, ``a float``: what a component returned, for a message."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if value is None:
        return "None"
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def scalar_loss(value: Any, where: str, part: str = "") -> Tensor:
    """``value`` if it is a scalar tensor; else a :class:`PluginError` saying what came back.

    Called on every loss of every step: the message (``where`` + ``part``) is built only on failure.
    """
    if isinstance(value, Tensor) and value.dim() == 0:
        return value
    raise PluginError(f"{where}{part} returned {describe(value)}, not a scalar tensor (a loss reduces over "
                      f"the batch, e.g. with .mean()); {REPORT}")


def check_generator_output(output: Any, target: Tensor, where: str, out_channels: int) -> None:
    """G must return the target's shape, dtype and device: the losses compare the two element
    by element (a float64 output failed in backward, one on another device in a metric)."""
    if isinstance(output, Tensor) and output.shape == target.shape:
        wider = output.dtype == torch.float64 and target.dtype != torch.float64  # backward fails on the mix
        if output.is_floating_point() and not wider and output.device == target.device:
            return
        raise PluginError(f"{where} returned {output.dtype} on {output.device} for an input of {target.dtype} on "
                          f"{target.device}; a generator returns its input's dtype on its device; {REPORT}")
    raise PluginError(f"{where} returned {describe(output)} for a target of shape {list(target.shape)}; "
                      f"a generator must return the target's shape (batch, {out_channels} channels, "
                      f"the input's height and width); {REPORT}")


def check_discriminator_output(output: Any, where: str) -> None:
    """D must return logits as a tensor or a list of them, which every adversarial loss takes."""
    try:
        logits = as_logit_list(output)
    except TypeError:
        logits = []
    if logits and all(isinstance(o, Tensor) for o in logits):
        return
    raise PluginError(f"{where} returned {describe(output)}; a discriminator returns a tensor of logits, "
                      f"or a list of them (one per scale); {REPORT}")


def check_discriminator_features(output: Any, where: str) -> None:
    """``D(x, return_features=True)`` returns ``(logits, features)``, features a list of
    tensors, which a feature-matching loss compares layer by layer: otherwise that loss's
    plugin was blamed for the discriminator's output."""
    if isinstance(output, (tuple, list)) and len(output) == 2:
        check_discriminator_output(output[0], f"{where} with return_features=True (its logits)")
        features = output[1]
        if isinstance(features, (list, tuple)) and features and all(isinstance(f, Tensor) for f in features):
            return
        got = describe(features)
    else:
        got = describe(output)
    raise PluginError(f"{where} with return_features=True returned {got}; a discriminator returns (logits, features) "
                      f"then, features a list of tensors (one per layer), which a feature-matching loss compares "
                      f"layer by layer; {REPORT}")


def check_metric_values(values: Any, name: str, batch: int, plugin: str = "",
                        device: torch.device | None = None) -> None:
    """A metric returns one value per image: a tensor of shape ``[batch]`` (or a dict of them),
    on the images' ``device`` where given. ``plugin`` follows the name in the error
    (`` (plugin 'x')``) where nothing else names it."""
    if isinstance(values, dict):
        for key, value in values.items():
            check_metric_values(value, f"{name}.{key}", batch, plugin, device)
        return
    if isinstance(values, Tensor) and values.dim() == 1 and values.shape[0] == batch:
        if device is None or values.device == device:
            return
        raise PluginError(f"metric '{name}'{plugin} returned its values on {values.device} for images on {device}; a "
                          f"metric returns one value per image on the images' device; {REPORT}")
    raise PluginError(f"metric '{name}'{plugin} returned {describe(values)} for a batch of {batch} image(s); a metric "
                      f"returns one value per image (shape [{batch}]), which i2i averages; {REPORT}")


def check_task_pair(pair: Any, clean: Tensor, task: Any, where: str) -> tuple[Tensor, Tensor]:
    """``make_pair`` returns ``(input, target)``: ``[B, C, H, W]`` tensors of the batch's dtype on
    its device, ``target`` with the task's ``out_channels`` (and ``input`` with ``in_channels``
    when it is an image, of the target's height and width: evaluation, translate and a
    conditional D take a generator's output at its input's size; both may differ from the
    batch's). Checked on the dry run, so the task is named rather than the generator it feeds."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise PluginError(f"{where}: make_pair returned {describe(pair)}; it returns (input, target), two tensors; {REPORT}")
    for role, value, channels in (("input", pair[0], task.in_channels), ("target", pair[1], task.out_channels)):
        if role == "input" and not task.input_is_image:
            if not isinstance(value, Tensor) or value.device != clean.device or value.shape[:1] != clean.shape[:1]:
                raise PluginError(f"{where}: make_pair's input is {describe(value)}; expected a tensor with the batch's "
                                  f"{clean.shape[0]} rows on {clean.device}; {REPORT}")
            continue
        fits = (isinstance(value, Tensor) and value.dim() == 4 and list(value.shape[:2]) == [clean.shape[0], channels]
                and value.dtype == clean.dtype and value.device == clean.device)
        if not fits:
            got = f"{describe(value)} ({value.dtype} on {value.device})" if isinstance(value, Tensor) else describe(value)
            raise PluginError(f"{where}: make_pair's {role} is {got} for a batch of {list(clean.shape)}; expected "
                              f"[{clean.shape[0]}, {channels}, H, W] ({clean.dtype} on {clean.device}): the batch's "
                              f"size, dtype and device, and the task's {'in' if role == 'input' else 'out'}_channels; "
                              f"{REPORT}")
    if task.input_is_image and pair[0].shape[-2:] != pair[1].shape[-2:]:
        (h, w), (th, tw) = pair[0].shape[-2:], pair[1].shape[-2:]
        raise PluginError(f"{where}: make_pair's input is {h}x{w} px and its target {th}x{tw}; i2i's generators, "
                          "evaluation and translate keep an image's size, so a task that changes it (super-resolution) "
                          "gives the generator its input resized to the target's size (torch.nn.functional.interpolate); "
                          f"{REPORT}")
    return pair[0], pair[1]


def _check_defines_make_pair(task: Any, where: str) -> None:
    """A task class without its own ``make_pair`` (a misspelt ``make_pairs``, say) would fail
    with the base class's bare NotImplementedError."""
    from ..task import Task

    if getattr(type(task), "make_pair", None) is Task.make_pair:
        near = [name for name in vars(type(task)) if "pair" in name.lower()]
        hint = f" (it has {near[0]!r}; the method is make_pair)" if near else ""
        raise PluginError(f"{where}: the task does not define make_pair(self, clean, generator){hint}; {REPORT}")


def check_prepared(input: Any, images: Tensor, task: Any, where: str) -> None:
    """``prepare`` turns ``[B, 3, H, W]`` RGB images into the generator's ``[B, in_channels, H, W]``
    input (what ``i2i translate`` feeds the network), keeping their size, or enlarging it by the
    task's ``output_scale``: translations are written at that size."""
    scale = output_scale(task, where)
    b, _, h, w = images.shape
    if task.input_is_image and not (isinstance(input, Tensor) and input.dim() == 4 and input.shape[1] == task.in_channels
                                    and input.shape[0] == b and tuple(input.shape[-2:]) == (h * scale, w * scale)):
        size = "height and width" if scale == 1 else f"height and width times the task's output_scale, {scale}"
        raise PluginError(f"{where}: prepare returned {describe(input)} for images of shape {list(images.shape)}; "
                          f"expected [{b}, {task.in_channels}, {h * scale}, {w * scale}] (the task's in_channels, the "
                          f"images' batch, {size}); {REPORT}")


def output_scale(task: Any, where: str) -> int:
    """The task's ``output_scale``, checked: a whole number, 1 or more."""
    scale = getattr(task, "output_scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise PluginError(f"{where}: output_scale = {scale!r}; it is how many times larger than its input a translation "
                          f"is, a whole number (1 when the sizes are the same); {REPORT}")
    return scale


def _check_input_image(task: Any, input: Tensor, where: str) -> None:
    """Sample grids put ``input_image(input)`` beside the outputs: it must be an image of 1 or 3
    channels at the input's size (a 4-channel inpainting input failed at the first evaluation)."""
    if not task.input_is_image:
        return
    try:
        image = task.input_image(input)
    except Exception as exc:
        raise_plugin_failure(exc, f"{where}: input_image failed on an input of shape {list(input.shape)}: ")
    fits = (isinstance(image, Tensor) and image.dim() == 4 and image.shape[0] == input.shape[0]
            and image.shape[1] in (1, 3) and image.shape[-2:] == input.shape[-2:])
    if not fits:
        raise PluginError(f"{where}: input_image returned {describe(image)} for an input of shape {list(input.shape)}; "
                          "it returns the input as images for the sample grids: [batch, 1 or 3 channels, the input's "
                          f"height and width] in [0, 1] (override it when the input has other channels); {REPORT}")


def _check_pairs_repeat(task: Any, images: Tensor, pair: tuple[Tensor, Tensor], where: str) -> None:
    """Warn when ``make_pair`` gives other pairs for two generators seeded alike: it draws its
    randomness from torch's or numpy's global streams, so validation degradations (and so every
    score, and which checkpoint is best) change from one evaluation to the next."""
    device = images.device
    given = images.clone()
    first = task.make_pair(given, torch.Generator(device=device).manual_seed(1))
    if not torch.equal(given, images):  # the training batch (and the next make_pair's) would be changed under it
        raise PluginError(f"{where}: make_pair changed the clean batch it was given in place (an in-place operation such "
                          "as clean.mul_() on its argument); it returns a new pair and leaves clean as it was; "
                          f"{REPORT}")
    second = task.make_pair(images.clone(), torch.Generator(device=device).manual_seed(1))
    same = all(torch.equal(a, b) for a, b in zip(first, second) if isinstance(a, Tensor) and isinstance(b, Tensor))
    if not same:
        say(f"i2i: warning: {where}: make_pair gave two different pairs for generators seeded alike, so it draws its "
            "randomness elsewhere (torch's or numpy's global streams) and validation scores change from one "
            "evaluation to the next; draw it from the generator it is given (torch.randn(..., generator=generator, "
            f"device=clean.device)); {REPORT}")


#: How far past [-1, 1] a task's target may reach before a warning: a network in the usual range
#: (ending in tanh) could never produce it
TARGET_REACH = 1.5


def check_baselines(task: Any, input: Tensor, target: Tensor, where: str) -> None:
    """``baselines(input, target_image)`` returns ``{name: image}``: images like the target image
    (its shape, floats in [0, 1]), each scored against it as the model's output is. A baseline
    still in the task's own value range ([-1, 1]) printed as a real, if dreadful, score."""
    target_image = _checked_to_image(task, target.float(), input, where)
    low, high = float(target_image.min()), float(target_image.max())
    if low < -1e-3 or high > 1 + 1e-3:  # metrics would score nonsense, and translate write black or white
        raise PluginError(f"{where}: to_image gave the target as values from {low:.3g} to {high:.3g}; it gives images in "
                          "[0, 1] for metrics and files (a [-1, 1] target goes through (x + 1) / 2); " + REPORT)
    t_low, t_high = float(target.min()), float(target.max())
    if t_low < -TARGET_REACH or t_high > TARGET_REACH:
        say(f"i2i: warning: {where}: make_pair's target holds values from {t_low:.3g} to {t_high:.3g}, where generators "
            "end in tanh ([-1, 1]) and losses compare in that range; a [0, 1] image goes to the networks as x * 2 - 1 "
            f"(a 0-255 one divided by 255 first); {REPORT}")
    try:
        images = task.baselines(input, target_image)
    except Exception as exc:
        raise_plugin_failure(exc, f"{where}: baselines failed on an input of shape {list(input.shape)}: ")
    check_baselines_given(images, target_image, where)
    for name, image in images.items():
        low, high = float(image.min()), float(image.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise PluginError(f"{where}: baseline '{name}' holds values from {low:.3g} to {high:.3g}; baselines are "
                              "images in [0, 1], as to_image gives (an input in [-1, 1] goes through input_image or "
                              f"(x + 1) / 2 first); {REPORT}")


def _checked_to_image(task: Any, target: Tensor, input: Tensor, where: str) -> Tensor:
    """``to_image(target)``: images ``[batch, 1 or 3, H, W]`` (floats) at the target's size, which
    metrics, baselines and written files all take (a None was an AttributeError in i2i)."""
    try:
        image = task.to_image(target, input)
    except Exception as exc:
        raise_plugin_failure(exc, f"{where}: to_image failed on a target of shape {list(target.shape)}: ")
    b, _, h, w = target.shape
    if not (isinstance(image, Tensor) and image.dim() == 4 and image.is_floating_point() and image.shape[0] == b
            and image.shape[1] in (1, 3) and tuple(image.shape[-2:]) == (h, w)):
        raise PluginError(f"{where}: to_image returned {describe(image)} for a target of shape {list(target.shape)}; "
                          f"it returns images for metrics and files: [{b}, 1 or 3 channels, {h}, {w}], floats in "
                          f"[0, 1]; {REPORT}")
    return image


def check_baselines_given(images: Any, target_image: Tensor, where: str) -> None:
    """What ``baselines`` returned is ``{name: image}``, each image like ``target_image``
    (checked on the dry run, and at each evaluation, where a size only some images get wrong
    would otherwise be blamed on the metric comparing it)."""
    if not isinstance(images, dict) or not all(isinstance(name, str) for name in images):
        raise PluginError(f"{where}: baselines returned {describe(images)}; it returns {{name: image}}, a dict of "
                          f"images to score as the model's output is ({{}} for none); {REPORT}")
    for name in images:
        if name in ("model", "target images"):  # i2i eval's own rows: the table would hold two of them
            raise PluginError(f"{where}: a baseline named '{name}', which i2i eval's table calls a row of its own; name it "
                              f"otherwise; {REPORT}")
    for name, image in images.items():
        if not (isinstance(image, Tensor) and image.shape == target_image.shape and image.is_floating_point()):
            got = (f"a {str(image.dtype).removeprefix('torch.')} tensor of shape {list(image.shape)}"
                   if isinstance(image, Tensor) else describe(image))  # uint8 of the right shape: its dtype is the fault
            raise PluginError(f"{where}: baseline '{name}' is {got}; expected the target image's shape "
                              f"{list(target_image.shape)}, floats in [0, 1] (what to_image gives for the target: when "
                              f"that shape is the wrong one, to_image is what to fix); {REPORT}")


def _check_pair_details(task: Any, input: Tensor, target: Tensor) -> None:
    """``pair_details`` on two pairs, as ``i2i eval --per-image`` calls it: one value for the
    whole batch (a 0-d tensor) passed a one-image check and failed only at a later eval."""
    from .evaluate import task_pair_details  # evaluate imports this module

    task_pair_details(task, *(torch.cat([t, t.flip(-1)]) for t in (input, target)))


def _check_prepare(task: Any, images: Tensor, where: str) -> None:
    """What ``i2i translate`` will do with the task, tried on the dry run: a task that cannot
    translate user images (``prepare`` not implemented) is left alone."""
    if not task.input_is_image:
        return
    user_image = images[:, :task.image_channels]  # one half of a side-by-side pair: translate reads single images
    rgb = user_image.expand(-1, 3, -1, -1) if user_image.shape[1] == 1 else user_image
    output_scale(task, where)  # before prepare, which may enlarge by it: 0 or None would fail inside torch
    try:
        input = task.prepare(rgb)
    except NotImplementedError:
        return
    except Exception as exc:
        raise_plugin_failure(exc, f"{where}: prepare failed on images of shape {list(rgb.shape)}: ")
    check_prepared(input, rgb, task, where)


def check_metrics(recipe: Any, metrics: dict[str, Any], task: Any, fake: Tensor, input: Tensor, target: Tensor) -> None:
    """Each metric on the dry run's image, as evaluation calls it: a metric that raises or breaks
    its contract is reported before the first step, not at the end of training."""
    from .evaluate import call_metric, claim_keys, flatten_metric, summarize_metrics  # evaluate imports this module
    # two images (the dry run's and its mirror image), so a metric that averages over the batch
    # is told now rather than at the first evaluation of more than one image
    fake, input, target = (torch.cat([t, t.flip(-1)]) for t in (fake, input, target))
    output_image, target_image = task.to_image(fake.float(), input), task.to_image(target, input)
    means: dict[str, float] = {}
    given: dict[str, str] = {}
    for name, metric in metrics.items():
        where = metric_where(recipe, name)
        try:
            values = call_metric(metric, output_image, target_image, input)
        except Exception as exc:
            raise_plugin_failure(exc, f"{where} failed on images of shape {list(output_image.shape)}: ")
        try:
            check_metric_values(values, name, output_image.shape[0], device=output_image.device)
        except PluginError as exc:  # "metric 'x' returned ...": where names the metric already
            text, own = str(exc), f"metric {name!r} "
            raise PluginError(f"{where} {text[len(own):]}" if text.startswith(own) else f"{where}: {text}") from None
        pairs = flatten_metric(values, name)
        try:
            claim_keys(given, [key for key, _ in pairs], name)
        except PluginError as exc:
            raise PluginError(f"{recipe.source}: {exc}") from None
        means.update((key, float(value.detach().float().mean())) for key, value in pairs)
    # what summarize derives, from the dry run's own means (made-up ones could divide by zero)
    try:
        summarized = set(summarize_metrics(metrics, means))
    except PluginError as exc:
        raise PluginError(f"{recipe.source}: {exc}") from exc.__cause__
    from .evaluate import task_pair_details

    clashing = sorted(set(task_pair_details(task, input, target)) & summarized)
    if clashing:  # --per-image's columns: two of that name
        raise PluginError(f"{contract_where(recipe, 'task')}: pair_details gives '{clashing[0]}', which a metric gives too, "
                          f"so i2i eval --per-image would hold two columns of that name; name it otherwise; {REPORT}")
    # the best checkpoint follows main_metric: one that no metric gives would never be written
    if task.main_metric not in summarized:
        raise PluginError(f"{contract_where(recipe, 'task')}: main_metric = '{task.main_metric}', which none of the task's "
                          f"metrics gives ({', '.join(sorted(summarized))}); so no best checkpoint could be kept; {REPORT}")
    chosen = recipe["eval"]["best_metric"] if isinstance(recipe, dict) and "eval" in recipe else ""
    if chosen and chosen not in summarized:
        hint = did_you_mean(chosen, sorted(summarized)) or f" (the metrics give {', '.join(sorted(summarized))})"
        raise recipe_error(recipe, f"eval.best_metric = '{chosen}': none of the run's metrics gives it{hint}; add its "
                                   "metric to eval.metrics, or name one of theirs")
    if chosen.endswith("_target"):  # colourfulness_target: the validation images' own, the same at every evaluation
        others = sorted(name for name in summarized if not name.endswith("_target"))
        raise recipe_error(recipe, f"eval.best_metric = '{chosen}': a value of the validation images themselves, the "
                                   "same at every evaluation, so the first checkpoint would stay the best; name a score "
                                   f"of the outputs ({', '.join(others)})")
    # a misspelt name here would keep the worst checkpoint as the best, without a word
    for name in task.lower_is_better:
        if name not in summarized:
            hint = did_you_mean(name, sorted(summarized)) or f" (they give {', '.join(sorted(summarized))})"
            raise PluginError(f"{contract_where(recipe, 'task')}: lower_is_better names '{name}', which none of the "
                              f"task's metrics gives{hint}; {REPORT}")


@torch.no_grad()
def dry_run(recipe: Any, nets: Any, device: torch.device, metrics: dict[str, Any] | None = None,
            features: bool = False) -> None:
    """Put one batch-1 image of ``data.size`` px through the task, G and D, in eval mode
    (``features``: D with ``return_features=True`` too, for a feature-matching loss).

    Run before training so that a network that does not fit the task is reported before any
    step, with the recipe table to blame. ``nets`` holds ``task``, ``G``, ``D`` and
    ``conditional`` (see ``components.Networks``). Leaves no trace: eval mode (batch-norm
    statistics are not updated), no gradients, and the random streams are restored afterwards.
    Losses are not called here (one may count its calls); each loss value is checked where the
    step uses it.
    """
    size = recipe["data"]["size"]
    devices = [device] if device.type == "cuda" else []
    modules = [net for net in (nets.G, nets.D) if net is not None]
    modes = [net.training for net in modules]
    _refuse_sizes_beyond_host_memory(recipe, nets.task.clean_channels, device)
    with torch.random.fork_rng(devices=devices), _size_fits(recipe, device):
        rng = torch.Generator(device=device).manual_seed(0)
        images = torch.rand(1, nets.task.clean_channels, size, size, generator=rng, device=device)
        for net in modules:
            net.eval()
        try:
            task_where = contract_where(recipe, "task")
            _check_defines_make_pair(nets.task, task_where)
            try:
                pair = nets.task.make_pair(images, rng)
            except Exception as exc:
                raise_plugin_failure(exc, f"{task_where}: make_pair failed on a batch of shape {list(images.shape)}: ")
            input, target = check_task_pair(pair, images, nets.task, task_where)
            if target.shape[-2:] != images.shape[-2:]:  # a size the recipe and the run's header do not say
                (h, w), (th, tw) = images.shape[-2:], target.shape[-2:]
                say(f"i2i: warning: {task_where}: make_pair turns {h}x{w} px crops (data.size = {size}) into {th}x{tw} "
                    "px pairs, so the networks train at that size, while evaluation and translate give them images at "
                    "their own size; if this is not meant, make_pair keeps the clean batch's size")
            _check_pairs_repeat(nets.task, images, pair, task_where)
            _check_input_image(nets.task, input, task_where)  # before baselines, which may build on it
            check_baselines(nets.task, input, target, task_where)
            _check_pair_details(nets.task, input, target)
            _check_prepare(nets.task, images, task_where)
            where = contract_where(recipe, "generator")
            try:
                fake = _forward_generator(nets.G, input, target, where, nets.task.out_channels)
            except PluginError as exc:
                if nets.task.input_is_image and tuple(input.shape[-2:]) != tuple(images.shape[-2:]):
                    # the task resized the crop: a generator that needs its multiple fails on what make_pair made
                    said = str(exc).split("; report this")[0].split(": ", 1)[-1]  # the generator's part, once
                    raise PluginError(f"{task_where}: make_pair turned a {size}x{size} crop into a "
                                      f"{input.shape[-1]}x{input.shape[-2]} input, and then {said}; a task keeps the "
                                      "crop's size (the networks are sized for data.size) unless it means to change "
                                      "it; report this to the plugin's author") from exc.__cause__
                raise
            if metrics:
                check_metrics(recipe, metrics, nets.task, fake, input, target)
            if nets.D is not None:
                where = contract_where(recipe, "discriminator")
                d_in = torch.cat([input, fake], dim=1) if nets.conditional else fake
                check_discriminator_output(_forward(nets.D, d_in, where), where)
                if features:
                    check_discriminator_features(_forward(nets.D, d_in, where, return_features=True), where)
        finally:
            for net, mode in zip(modules, modes):
                net.train(mode)


#: Floats per pixel that checking the networks on one image holds at its peak: measured for
#: i2i's own networks (unet_small's dry run peaked at 12.9 GB for one 8192 px image, about 48
#: floats a pixel); the estimate behind refusing a ``data.size`` that memory cannot hold.
FLOATS_PER_PIXEL = 48


def available_host_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux), else ``None``."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _refuse_sizes_beyond_host_memory(recipe: Any, channels: int, device: torch.device) -> None:
    """On the CPU, Linux grants allocations it cannot back and then kills the process: a
    mistyped ``data.size`` (25600 for 256) would end as "Killed", so sizes that cannot fit are
    refused here, by an estimate of what checking the networks on one image needs."""
    if device.type != "cpu":
        return  # a GPU's allocator refuses in time; _size_fits reports it
    available = available_host_bytes()
    size = recipe["data"]["size"]
    needed = size * size * 4 * max(FLOATS_PER_PIXEL, 4 * channels)
    if available is not None and needed > available:
        raise recipe_error(recipe, f"data.size = {size}: one {size}x{size} px image would need about "
                                   f"{needed / 2**30:.1f} GB to check the networks on (i2i's own networks take about "
                                   f"{4 * FLOATS_PER_PIXEL} bytes a pixel), and {available / 2**30:.1f} GB of memory is "
                                   f"free; lower data.size")


def refuse_batch_beyond_memory(recipe: Any, device: torch.device) -> None:
    """A ``train.batch_size`` whose crops alone could not fit in the training device's memory
    (a stray digit, 10000000 for 1000), refused before the data pipeline plans it: it would
    otherwise take all memory until the system kills the process. The estimate is a lower
    bound (the networks' activations on the batch, as the dry run measures them)."""
    batch, size = recipe["train"]["batch_size"], recipe["data"]["size"]
    if device.type == "cuda":
        available = torch.cuda.get_device_properties(device).total_memory
    elif device.type == "cpu":
        available = available_host_bytes()
    else:
        return
    needed = batch * size * size * 4 * FLOATS_PER_PIXEL
    if available is not None and needed > available >= needed // batch:  # one crop too many: data.size's error
        raise recipe_error(recipe, f"train.batch_size = {batch}: {batch} crops of {size}x{size} px need at least "
                                   f"{needed / 2**30:,.1f} GB to train on, and {device} has {available / 2**30:.1f} GB "
                                   f"{'free' if device.type == 'cpu' else 'in all'}; lower train.batch_size (or data.size)",
                           also=("data.size",))  # a --set data.size=8192 is the news, not the file's batch size


@contextlib.contextmanager
def _size_fits(recipe: Any, device: torch.device) -> Iterator[None]:
    """Running out of memory on one image of ``data.size`` px is the recipe's size, not a plugin's
    fault: one line naming the key (a traceback from the allocator before)."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        size = recipe["data"]["size"]
        raise recipe_error(recipe, f"data.size = {size}: one {size}x{size} px image does not fit in the memory of "
                                   f"{device} (checking the networks on it ran out); lower data.size") from None


def raise_plugin_failure(exc: Exception, lead: str, error: type[PluginError] = PluginError) -> NoReturn:
    """Raise what a plugin's code raised as one line: ``lead`` (which names the component), the
    exception's first line, and who to tell. Running out of memory passes unchanged: its own
    handlers name the settings to lower."""
    if is_out_of_memory(exc):
        raise exc
    where = "" if show_traceback() else " (I2I_TRACEBACK=1 shows where)"  # set: the traceback follows
    raise error(f"{lead}{exception_line(exc)}; {REPORT}{where}") from exc


def _forward_generator(G: torch.nn.Module, input: Tensor, target: Tensor, where: str, out_channels: int) -> Tensor:
    """G's output, checked. A task may wrap the plugin's generator (a residual denoiser returns
    ``input - net(input)``); then what the plugin's network returned is checked as well, since a
    wrong shape or dtype would otherwise surface as the wrapper's arithmetic failing, or as an
    output that depends on no weight."""
    untouched = input.clone()
    fake = _forward_generator_once(G, input, target, where, out_channels)
    same = torch.equal(untouched, input) or (input.is_floating_point() and untouched.shape == input.shape
                                               and torch.allclose(untouched, input, rtol=0, atol=0, equal_nan=True))
    if not same:
        raise PluginError(f"{where} changed its input in place (an in-place operation such as x.mul_() or "
                          "relu(inplace=True) on the tensor it was given), which the losses, the discriminator and "
                          f"the baselines then read as the input; a generator returns a new tensor; {REPORT}")
    return fake


def _forward_generator_once(G: torch.nn.Module, input: Tensor, target: Tensor, where: str, out_channels: int) -> Tensor:
    unwrapped = getattr(G, "i2i_unwrapped", None)
    if unwrapped is None:
        fake = _forward(G, input, where)
        check_generator_output(fake, target, where, out_channels)
        return fake
    returned: list[Any] = []
    handle = unwrapped.register_forward_hook(lambda module, args, output: returned.append(output))
    try:
        try:
            fake = G(input)
        except Exception as exc:
            if returned:  # the wrapper failed on what the network gave it: that is the plugin's problem
                check_generator_output(returned[0], target, where, out_channels)
            raise_plugin_failure(exc, f"{where} failed on an input of shape {list(input.shape)}: ")
    finally:
        handle.remove()
    if returned and not (isinstance(returned[0], Tensor) and returned[0].is_floating_point()):
        check_generator_output(returned[0], target, where, out_channels)
    check_generator_output(fake, target, where, out_channels)
    return fake


def _forward(net: Any, input: Tensor, where: str, **options: Any) -> Any:
    """``net(input)``; an exception (a layer that does not fit the task's channels or size) is
    reported with the component and the input's shape."""
    try:
        return net(input, **options)
    except Exception as exc:
        raise_plugin_failure(exc, f"{where} failed on an input of shape {list(input.shape)}: ")


def check_declared_channels(recipe: Any, task: Any) -> None:
    """The channel counts a task declares, checked when it is built, before the networks built
    from them (for training, ``i2i translate`` and ``i2i eval`` alike): ``image_channels = 2``
    was a data loader's traceback, ``in_channels = "3"`` a generator's plugin blamed for it."""
    from .infer import is_whole_number

    def refuse(text: str) -> PluginError:
        return PluginError(f"{contract_where(recipe, 'task')}: {text}; {REPORT}")

    if task.image_channels not in (1, 3) or isinstance(task.image_channels, bool):
        raise refuse(f"image_channels = {task.image_channels!r}; images are read with 1 (grey) or 3 (RGB) channels")
    if not isinstance(task.side_by_side, bool):
        raise refuse(f"side_by_side = {task.side_by_side!r}; it is true or false")
    for name in ("in_channels", "out_channels"):
        value = getattr(task, name, None)
        if not is_whole_number(value, 1):
            raise refuse(f"{name} = {value!r}; it is the generator's {name[:-9]}put channels, a whole number (1 or more)")


def check_declared_sizes(recipe: Any, G: torch.nn.Module) -> None:
    """The size multiple a generator declares, checked when it is built: a ``size_multiple = 0``
    was a ZeroDivisionError, ``2.5`` was read as 2 by translate."""
    from .infer import is_whole_number, size_multiple_owner

    owner = size_multiple_owner(G)
    if owner is not None and not is_whole_number(owner.size_multiple, 1):
        raise PluginError(f"{contract_where(recipe, 'generator')}: size_multiple = {owner.size_multiple!r}; it is the "
                          f"whole number (1 or more) that the height and width of its input must divide by; {REPORT}")


@contextlib.contextmanager
def generator_named(recipe: Any) -> Iterator[None]:
    """A :class:`GeneratorFailure` from running the generator (``the generator (X) failed on
    ...``) names the recipe's generator and its plugin, as errors at training time do."""
    try:
        yield
    except GeneratorFailure as exc:
        raise PluginError(f"{contract_where(recipe, 'generator')}: {exc}") from exc.__cause__


def contract_where(recipe: Any, section: str) -> str:
    """``recipe.toml: generator.name = 'unet' (plugin 'nets')``: a component, for messages."""
    from ..plugins import registry

    name = recipe[section]["name"]
    return f"{recipe.source}: {section}.name = '{name}' (plugin '{registry().get(section + 's', name).plugin}')"


def find_metric(recipe: Any, name: str) -> Component:
    """The metric ``name`` means in ``recipe``. One its task lists (and ``eval.metrics`` does
    not) is, where several plugins provide the bare name, the task's own plugin's: a task names
    its metrics as its plugin registers them, and another plugin installed later must not make
    the task's runs fail to score or resume."""
    from ..plugins import registry

    reg = registry()
    prefer = None if name in recipe["eval"]["metrics"] else reg.get("tasks", recipe["task"]["name"]).plugin
    return reg.get("metrics", name, prefer=prefer)


def metric_where(recipe: Any, name: str) -> str:
    """``recipe.toml: eval.metrics 'lpips' (plugin 'x')``, or the task that lists it: a metric, for messages."""
    plugin = find_metric(recipe, name).plugin
    if name in recipe["eval"]["metrics"]:
        return f"{recipe.source}: eval.metrics '{name}' (plugin '{plugin}')"
    return f"{recipe.source}: metric '{name}' of task.name = '{recipe['task']['name']}' (plugin '{plugin}')"


def loss_where(recipe: Any, label: str) -> str:
    """``recipe.toml: losses.l1 ('charbonnier', plugin 'losses')``: a loss term, for messages."""
    from ..plugins import registry

    name = recipe["losses"][label]["name"]
    return f"{recipe.source}: {toml_key('losses', label)} ('{name}', plugin '{registry().get('losses', name).plugin}')"
