"""Building what a recipe names (the task, the networks, the loss terms) and the checks a run
makes on them before its first step. ``i2i validate`` runs the same checks on the CPU, so a
recipe that validates is one that starts."""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..callbacks import BUILT_BY_PLUGINS, check_event_signatures
from ..errors import PluginError, RecipeError, UserError, exception_line
from ..losses import (AdversarialLoss, FeatureMatchingLoss, ReconstructionLoss, Regularizer, positional_names,
                      takes_any_positional, takes_input, takes_named,
                      unmet_parameters)
from ..messages import say
from ..plugins import registry
from ..recipe import MAX_PIXELS, Recipe, blamed_on_recipe, build_component, component_error, recipe_error, toml_key
from .contracts import contract_where, dry_run, loss_where, raise_plugin_failure, refuse_batch_beyond_memory, scalar_loss
from .device import dtype_name
from .evaluate import build_metrics, check_scoring_crop
from .infer import is_whole_number, size_multiple
from .init_weights import load_initial_weights


class LossTerm:
    """A recipe loss term: its label, weight and the loss object (of one of the loss kinds).

    ``where`` names the recipe table and the plugin, for the error when the loss returns
    anything but a scalar tensor (checked on every call: a type and shape test, no sync).
    """

    def __init__(self, label: str, weight: float, loss: nn.Module, where: str = "", recipe: Recipe | None = None) -> None:
        self.label, self.weight, self.loss, self.where = label, weight, loss, where or toml_key("losses", label)
        self.recipe = recipe  # names its file (or --set) in a mistake the loss finds in its options
        self._called = False  # its first call is watched for a warning (see compute)
        # a reconstruction loss that declares `input` is also given the generator's input
        self.wants_input = isinstance(loss, ReconstructionLoss) and takes_input(loss.forward)
        unmet = unmet_parameters(loss.forward, 2) if isinstance(loss, ReconstructionLoss) else []
        if unmet:
            raise PluginError(f"{self.where}: its forward needs {', '.join(repr(n) for n in unmet)}, which i2i never "
                              "passes: a reconstruction loss is called as forward(fake, target), plus input=... (the "
                              "generator's input, an inpainting mask among its channels, say) when it declares a "
                              "parameter named input; report this to the plugin's author")
        # a relativistic GAN's G half also takes D's logits on the real pair, given by name
        self.wants_real = isinstance(loss, AdversarialLoss) and takes_named(loss.g_loss, "d_real", after=1)
        if isinstance(loss, AdversarialLoss):
            for method, passed, given, call in ((loss.g_loss, 1, "d_real", "g_loss(d_fake), plus d_real=... when it "
                                                 "declares a parameter named d_real (a relativistic loss)"),
                                                (loss.d_loss, 2, "", "d_loss(d_real, d_fake)")):
                unmet = unmet_parameters(method, passed, given)
                names = positional_names(method)
                problem = ""
                if method.__name__ == "g_loss" and names is not None and names[:2] == ["d_real", "d_fake"]:
                    problem = "takes D's logits in the other order: declare g_loss(self, d_fake, d_real)"
                elif names is not None and len(names) < passed and not takes_any_positional(method):
                    problem = f"takes {len(names)} positional argument(s)"
                elif unmet:
                    problem = f"needs {', '.join(repr(n) for n in unmet)}, which i2i never passes"
                if problem:
                    raise PluginError(f"{self.where}: its {method.__name__} {problem}; an adversarial loss is called "
                                      f"as {call}; report this to the plugin's author")

    def weighted(self, value: Any, scale: float = 1.0, part: str = "") -> Tensor:
        """``weight * scale * value``, once ``value`` is known to be a scalar tensor."""
        return self.weight * scale * scalar_loss(value, self.where, part)

    def compute(self, method: Any, *args: Any, scale: float = 1.0, part: str = "", **inputs: Any) -> Tensor:
        """``weighted(method(*args, **inputs))``; an exception raised inside the plugin's loss is one
        line naming the term (``part``: which method), not a traceback from the middle of the step."""
        try:
            if self._called:
                value = method(*args, **inputs)
            else:  # a loss returning float(tensor) drew torch's warning, placed in i2i, before i2i's own error
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
                    value = method(*args, **inputs)
                self._called = True
        except UserError as exc:  # the loss's options do not fit its inputs (an SSIM window larger than the crop)
            raise (exc if self.recipe is None else component_error(self.recipe, toml_key("losses", self.label), exc)) from None
        except Exception as exc:
            raise_plugin_failure(exc, f"{self.where}{part} raised ")
        weighted = self.weighted(value, scale, part)
        expected = _device_of(args)
        if expected is not None and value.device != expected:  # an attribute, no sync; would fail later, far from here
            raise PluginError(f"{self.where}{part} returned a tensor on {value.device} for inputs on {expected}; a loss "
                              "computes on its inputs' device (make constants with device=x.device); report this to "
                              "the plugin's author")
        if not value.requires_grad:  # an attribute, no sync: detached or integer, it would train nothing
            raise PluginError(f"{self.where}{part} returned a {dtype_name(value.dtype)} tensor that carries "
                              "no gradient (detached, an integer, or not computed from its inputs), so it trains "
                              "nothing; report this to the plugin's author")
        return weighted


def _device_of(args: tuple) -> torch.device | None:
    """The device of the first tensor among a loss's arguments (or in a list of them: logits)."""
    for arg in args:
        for item in arg if isinstance(arg, (list, tuple)) else (arg,):
            if isinstance(item, Tensor):
                return item.device
    return None


@dataclass
class Networks:
    """The task and the networks it implies; ``conditional``: D also sees the input."""

    task: Any
    G: nn.Module
    D: nn.Module | None
    conditional: bool


@dataclass
class LossTerms:
    """The recipe's loss terms, by where the engine uses them."""

    recon: list[LossTerm] = field(default_factory=list)
    adversarial: list[LossTerm] = field(default_factory=list)
    regularizers: list[LossTerm] = field(default_factory=list)
    feature_matching: list[LossTerm] = field(default_factory=list)


def build_networks(recipe: Recipe, device: torch.device) -> Networks:
    """The task, then G and D with the channels it implies (never hard-coded), on ``device``."""
    from ..model import build_task_and_generator

    reg = registry()
    task, G = build_task_and_generator(recipe, seed=recipe["train"]["seed"])  # identical initial weights on every rank
    G = G.to(device)
    D, conditional = None, False
    if recipe.has_discriminator:
        conditional = bool(recipe["discriminator"]["conditional"]) and task.input_is_image
        d_in = task.out_channels + (task.in_channels if conditional else 0)
        D = build_component(reg, "discriminators", recipe, "discriminator", d_in).to(device)
    _check_declared_min_size(recipe, D)
    for section, network in (("generator", G), ("discriminator", D)):
        _refuse_nothing_to_train(recipe, section, network)
    return Networks(task, G, D, conditional)


def _refuse_nothing_to_train(recipe: Recipe, section: str, network: nn.Module | None) -> None:
    """A network without trainable parameters: its optimiser failed with torch's "empty
    parameter list" traceback at the start of training, after validate had passed it."""
    if network is None or any(p.requires_grad for p in network.parameters()):
        return
    has = "only frozen parameters" if any(True for _ in network.parameters()) else "no parameters"
    raise PluginError(f"{contract_where(recipe, section)} built a network with {has}, so there is nothing to train "
                      "(layers kept in a plain list or dict are not registered: use nn.ModuleList or nn.ModuleDict); "
                      "report this to the plugin's author")


def _check_declared_min_size(recipe: Recipe, D: nn.Module | None) -> None:
    """The discriminator's ``min_size``, checked where it is read (see :func:`check_declared_sizes`)."""
    if D is not None and hasattr(D, "min_size") and not is_whole_number(D.min_size):
        raise PluginError(f"{contract_where(recipe, 'discriminator')}: min_size = {D.min_size!r}; it is the smallest "
                          "height and width it takes, a whole number of pixels; report this to the plugin's author")


def check_crop_size(recipe: Recipe, nets: Networks) -> None:
    """Refuse a ``data.size`` the networks cannot take now, not as a traceback at step 1; the
    sizes suggested suit both networks (a multiple for G that D also takes)."""
    size = recipe["data"]["size"]
    multiple = size_multiple(nets.G) if nets.task.input_is_image else 1
    d_min = getattr(nets.D, "min_size", 0)
    upper = -(-max(size, d_min) // multiple) * multiple  # the smallest size above both limits
    if size % multiple:
        scale = usable_output_scale(nets.task)  # sizes a super-resolution's scale divides too, which crop_size_note asks for
        step = math.lcm(multiple, scale)
        lower, upper = size // step * step, -(-max(size, d_min) // step) * step
        hint = f"use {lower} or {upper}" if lower >= max(8, d_min) else f"use {upper}"
        if lower < max(8, d_min) and upper > MAX_PIXELS:  # a U-Net of depth 15 or 16: no crop size fits it
            hint = f"no data.size (at most {MAX_PIXELS}) is one; lower the generator's depth"
        also = f" (multiples of the task's scale, {scale}, too)" if step != multiple else ""
        name = str(recipe["generator"]["name"])
        depth = (size & -size).bit_length() - 1  # the deepest U-Net whose multiple, 2 ** depth, divides the size
        if size < multiple and name.split(":")[-1].startswith("unet") and hint.startswith("use") and depth >= 2:
            # pix2pix's unet_256 on small images of one's own: "use 256" alone meant enlarging them 8 times
            hint += (f"; or keep {size} px with a shallower U-Net: generator.name = 'unet' with generator.depth = "
                     f"{depth} takes multiples of {2 ** depth}")
        raise recipe_error(recipe, f"data.size = {size}: generator '{name}' needs a "
                                   f"multiple of {multiple}; {hint}{also}", also=("generator.name", "generator.depth"))
    if size < d_min:
        fewer = [key for key in ("n_layers", "scales") if hasattr(nets.D, key)]  # what makes it need less
        lower_them = f" or lower {' or '.join(f'discriminator.{key}' for key in fewer)}" if fewer else ""
        raise recipe_error(recipe, f"data.size = {size}: discriminator '{recipe['discriminator']['name']}' "
                                   f"needs at least {d_min} px; raise data.size (to {upper}){lower_them}",
                           also=("discriminator.name", "discriminator.n_layers", "discriminator.scales"))


def usable_output_scale(task: Any) -> int:
    """``task``'s ``output_scale``, 1 when it has none usable (its checks say why elsewhere)."""
    scale = getattr(task, "output_scale", 1)
    return int(scale) if is_whole_number(scale, 1) else 1


def crop_size_note(recipe: Recipe, nets: Networks) -> str | None:
    """A ``data.size`` that is no multiple of the task's ``output_scale`` (a 3x super-resolution
    on 64 px crops): each crop's shrunk input covers only part of it, and the rest of the
    input is filled in. Allowed, but said, with the sizes that use every pixel."""
    scale, size = usable_output_scale(nets.task), recipe["data"]["size"]
    if size % scale == 0:
        return None
    step = math.lcm(scale, size_multiple(nets.G) if nets.task.input_is_image else 1)
    lower, upper = size // step * step, -(-size // step) * step
    sizes = f"{lower} or {upper}" if lower >= max(8, getattr(nets.D, "min_size", 0)) else f"{upper}"
    return (f"data.size = {size} is no multiple of the task's scale, {scale}: the shrunk input of each crop covers "
            f"{size // scale * scale} px of its {size}, and its last {size % scale} row(s) and column(s) are filled "
            f"in; {sizes} would use every pixel")


def build_loss_terms(recipe: Recipe, discriminator: nn.Module | None, device: torch.device) -> LossTerms:
    """The loss terms, sorted by kind; a set of terms that cannot train is a recipe error."""
    has_discriminator = discriminator is not None
    reg, terms = registry(), LossTerms()
    for label, term_cfg in recipe["losses"].items():
        loss = build_component(reg, "losses", recipe, toml_key("losses", label))
        term = LossTerm(label, float(term_cfg["weight"]), loss.to(device) if isinstance(loss, nn.Module) else loss,
                        loss_where(recipe, label), recipe)
        _warn_untrained_parameters(term)
        if isinstance(loss, AdversarialLoss):
            terms.adversarial.append(term)
        elif isinstance(loss, Regularizer):
            terms.regularizers.append(term)
        elif isinstance(loss, FeatureMatchingLoss):
            terms.feature_matching.append(term)
        elif isinstance(loss, ReconstructionLoss):
            terms.recon.append(term)
        else:
            raise PluginError(f"{loss_where(recipe, label)}: its factory built a {type(loss).__name__}, which is none of "
                              "i2i's loss kinds (i2i.ReconstructionLoss, AdversarialLoss, FeatureMatchingLoss, Regularizer); "
                              "report this to the plugin's author")
    gan_terms = terms.adversarial + terms.regularizers + terms.feature_matching
    if not has_discriminator and gan_terms:
        raise recipe_error(recipe, f"{toml_key('losses', gan_terms[0].label)}: needs a discriminator; add a [discriminator] table or remove this loss")
    if has_discriminator and not terms.adversarial:
        raise recipe_error(recipe, "discriminator: no adversarial loss to train it; add e.g. [losses.gan] name = 'vanilla'")
    if not terms.recon and not terms.adversarial:
        raise recipe_error(recipe, "losses: no loss for the generator; add e.g. [losses.l1] weight = 1.0")
    generators = terms.recon + terms.adversarial + terms.feature_matching
    if all(term.weight == 0 for term in generators):  # it would train for hours and learn nothing
        weights = ", ".join(f"{toml_key('losses', term.label, 'weight')} = 0" for term in generators)
        raise recipe_error(recipe, f"losses: {weights}: the generator would learn nothing; give one of them a weight "
                                   "above 0")
    if terms.feature_matching and not _takes_keyword(discriminator.forward, "return_features"):
        raise RecipeError(f"{terms.feature_matching[0].where}: needs the discriminator's features, and "
                          f"{contract_where(recipe, 'discriminator')} has no forward(x, return_features=True); "
                          "remove this loss or use a discriminator that has (patchgan, multiscale)")
    return terms


def _warn_untrained_parameters(term: LossTerm) -> None:
    """A loss's trainable parameters are never optimised (only G's and D's are), and computing
    their gradients costs every step: say so rather than let a learned weighting sit still."""
    if not isinstance(term.loss, nn.Module):
        return
    trainable = [name for name, p in term.loss.named_parameters() if p.requires_grad]
    if trainable:
        listed = ", ".join(f"'{n}'" for n in trainable[:3]) + (f" and {len(trainable) - 3} more" if len(trainable) > 3 else "")
        say(f"i2i: warning: {term.where}: has trainable parameters ({listed}), which i2i does not train: only the "
            "generator's and discriminator's weights are optimised, so they keep their initial values (a frozen "
            "network inside a loss says so with requires_grad_(False))")


def loss_buffers(terms: list[LossTerm]) -> dict[str, Tensor]:
    """The buffers of the loss terms that hold state (a running mean, a loss network's batch-norm
    statistics), as ``label.buffer`` names: a checkpoint keeps them so that a resumed run goes
    on exactly as an uninterrupted one. A loss's parameters are not kept: i2i never changes them."""
    out = {}
    for term in terms:
        if isinstance(term.loss, nn.Module):
            parameters = {name for name, _ in term.loss.named_parameters()}
            out.update((f"{term.label}.{name}", value) for name, value in term.loss.state_dict().items()
                       if name not in parameters and isinstance(value, Tensor))
    return out


def load_loss_buffers(terms: list[LossTerm], saved: dict[str, Tensor]) -> None:
    """Put :func:`loss_buffers` back, term by term; a term or buffer the checkpoint lacks (a loss
    added on resume, an older checkpoint) keeps what it was built with."""
    for term in terms:
        if not isinstance(term.loss, nn.Module):
            continue
        for name, value in term.loss.state_dict().items():
            kept = saved.get(f"{term.label}.{name}")
            if kept is not None and isinstance(value, Tensor) and kept.shape == value.shape:
                with torch.no_grad():
                    value.copy_(kept)


def _takes_keyword(function: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: assume it does
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def check_recipe(recipe: Recipe, resuming: bool = False) -> Networks:
    """What a run checks before its first step, short of reading data: ``i2i validate``.

    Builds the components on the CPU (no data, no optimisers), checks the crop size against
    them, loads ``train.init_from`` (unless ``resuming``: a resumed run never reads it), sorts
    the losses, puts one image through G and D and builds the metrics. Returns the networks it
    built (on the CPU), for checks that need the task; notes go to ``recipe.notes``.
    """
    from .device import resolve_device, resolve_precision

    # the device and precision a run would take here: 'cuda' on a machine without one fails now
    with blamed_on_recipe(recipe):
        training_device = resolve_device(recipe["train"]["device"])
        resolve_precision(recipe["train"]["precision"], training_device)
    if recipe["train"]["cuda_graphs"] is True and training_device.type != "cuda":
        raise recipe_error(recipe, f"train.cuda_graphs = true: needs a CUDA GPU (this run would be on "
                                   f"{training_device.type}); set it to 'auto' or false")
    refuse_batch_beyond_memory(recipe, training_device)
    device = torch.device("cpu")
    nets = build_networks(recipe, device)
    check_crop_size(recipe, nets)
    initial = None if resuming else load_initial_weights(recipe, nets.G, nets.D)  # train.init_from: there, and fits G
    notes = [crop_size_note(recipe, nets), *(initial.notes if initial is not None else ())]
    recipe.notes.extend(note for note in notes if note is not None and note not in recipe.notes)
    terms = build_loss_terms(recipe, nets.D, device)
    metrics = build_metrics(nets.task, recipe["eval"]["metrics"], recipe)
    check_scoring_crop(recipe, metrics, usable_output_scale(nets.task))
    dry_run(recipe, nets, device, metrics, features=bool(terms.feature_matching))
    build_callbacks(recipe)
    return nets


def _callback_identity(component: Any) -> tuple:
    """What makes two registered callbacks the same one: its plugin, factory and defaults (the
    names of one registration and its aliases share them)."""
    return component.plugin, id(component.factory), repr(sorted(component.defaults.items()))


def build_callbacks(recipe: Recipe) -> list[Any]:
    """The callbacks of ``train.callbacks`` and the ``autoload`` ones, built. A factory that
    raises is one line naming the callback and its plugin (its ``UserError``, a mistake in
    what it was given, names the recipe's key)."""
    reg = registry()
    listed = list(recipe["train"]["callbacks"])
    # each autoloaded factory once, by its plugin-qualified name: another plugin's callback of the
    # same name, or the factory's own aliases, must not fail or double it; nor may listing it
    seen = set()
    for name in listed:
        with contextlib.suppress(UserError):  # reported where it is built, below
            component = reg.get("callbacks", name)
            seen.add(_callback_identity(component))
    autoloaded = []
    for component in reg.components("callbacks"):
        key = _callback_identity(component)
        if getattr(component.factory, "autoload", False) and key not in seen:
            seen.add(key)
            autoloaded.append(component.qualified_name)
    built = []
    for name in [*listed, *autoloaded]:
        where = f"{recipe.source}: train.callbacks '{name}'" if name in listed else f"autoloaded callback '{name}'"
        try:
            callback = reg.build("callbacks", name)
        except UserError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        except Exception as exc:  # a bug in the plugin's factory
            plugin = reg.get("callbacks", name).plugin
            raise PluginError(f"{where} (plugin '{plugin}'): building it raised {exception_line(exc)}; report this to "
                              "the plugin's author (I2I_TRACEBACK=1 shows where)") from exc
        try:  # an event that cannot take its arguments: the plugin's mistake, told before the run
            check_event_signatures(callback)
        except TypeError as exc:
            plugin = reg.get("callbacks", name).plugin
            raise PluginError(f"{where} (plugin '{plugin}'): {exc}; report this to the plugin's author") from None
        with contextlib.suppress(TypeError):  # (an object without weak references: told as a program's)
            BUILT_BY_PLUGINS.add(callback)
        built.append(callback)
    return built
