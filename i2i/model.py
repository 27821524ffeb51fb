"""A trained translator: load a run directory, apply it to tensors, images and files."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import Tensor, nn

from .engine import checkpoint as ckpt
from .engine.contracts import (check_declared_channels, check_declared_sizes, check_prepared, contract_where, generator_named,
                               raise_plugin_failure)
from .engine.device import caller_autocast_off, global_state_kept, resolve_device
from .engine.evaluate import remember_task_label
from .engine.infer import AUTO_OVERLAP, run_any_size
from .errors import CheckpointError, PluginError, UserError
from .plugins import registry
from .paths import user_path
from .recipe import Recipe, build_component, component_error, load_recipe, note_changed_run_plugins

if TYPE_CHECKING:
    from PIL import Image


class _EvalModeWhileTranslating:
    """The generator in eval mode while any thread translates with it, its own mode back once the
    last one is done: a program that set ``model.generator.train()`` (to fine-tune it) got
    dropout's random outputs and batch norm's running statistics overwritten by every
    translation, and with several threads one put the train mode back under another's forward."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._modes: list[tuple[nn.Module, bool]] = []

    @contextlib.contextmanager
    def __call__(self, generator: nn.Module) -> Iterator[None]:
        with self._lock:
            if self._active == 0:
                self._modes = [(module, module.training) for module in generator.modules() if module.training]
                if self._modes:
                    generator.eval()
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    for module, mode in self._modes:
                        module.training = mode
                    self._modes = []


class Model:
    """A task and its trained generator (the EMA weights when the run kept an EMA).

    ``model(images)`` takes RGB batches ``[B, 3, H, W]`` (or one image ``[3, H, W]``; grey
    with 1 channel) as floats in [0, 1] or uint8 in [0, 255] (any H and W: they are padded to
    the network's multiple and cropped back) and returns float images in [0, 1] (1 channel for
    a task with grey outputs). A noisy float input may stray outside [0, 1]; NaN, infinite
    values and values above 3 (a 0-255 image given as floats) are refused. Images above
    about 4 megapixels are translated in overlapping 1024 px tiles to bound memory; ``tile=0``
    turns that off, ``tile=N`` forces N px tiles.

    Attributes: ``task`` (the task plugin), ``generator`` (the torch module, eval mode),
    ``recipe`` (the run's resolved recipe), ``checkpoint`` (the folder loaded) and ``device``.
    """

    def __init__(self, task: Any, generator: nn.Module, recipe: dict, checkpoint: Path, device: torch.device) -> None:
        self.task, self.generator, self.recipe, self.checkpoint, self.device = task, generator, recipe, checkpoint, device
        self._in_eval_mode = _EvalModeWhileTranslating()

    def __repr__(self) -> str:
        return (f"i2i.Model(task={self.recipe['task']['name']!r}, generator={self.recipe['generator']['name']!r}, "
                f"checkpoint='{self.checkpoint}', device='{self.device}')")

    @torch.no_grad()  # not inference_mode: its outputs could not be a training target or be edited in place
    @caller_autocast_off()  # the run's own precision, the same numbers inside a caller's torch.autocast
    def __call__(self, images: Tensor, *, tile: int | str = "auto", overlap: int = AUTO_OVERLAP) -> Tensor:
        if not isinstance(images, Tensor):
            raise TypeError(f"model(images) takes a tensor [B, 3, H, W], not {type(images).__name__}; "
                            "for a file, a PIL image or a numpy array use model.translate(...)")
        if images.is_meta:
            raise ValueError("model(images) takes a tensor with values; this one is on the meta device")
        if images.dim() == 3 and images.shape[0] not in (1, 3) and images.shape[-1] in (1, 3, 4):
            raise ValueError(f"model(images) takes channels first, [3, H, W], got shape {list(images.shape)} (channels "
                             "last, as numpy and PIL hold images): use images.permute(2, 0, 1), or model.translate(array)")
        if images.dim() == 3:
            return self(images[None], tile=tile, overlap=overlap)[0]
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"model(images) takes [B, 3, H, W] or [3, H, W] (or 1 grey channel), "
                             f"got shape {list(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"model(images) takes float images in [0, 1] or uint8 ones in [0, 255], not {images.dtype}")
        if images.numel() == 0:
            raise ValueError(f"model(images) got an empty batch of shape {list(images.shape)}")
        if images.is_floating_point():
            low = _check_float_range(images)
            if low < -0.5 and not getattr(self, "_told_of_negative_values", False):
                self._told_of_negative_values = True  # once per model: a loop over a folder would repeat it
                from .messages import say

                say(f"i2i: warning: model(images) takes float images in [0, 1], and these go down to {low:.3g}, as "
                    "images scaled to [-1, 1] do; if they are, give (images + 1) / 2 (a noisy image strays a little "
                    "below 0; then this is nothing)")
        # ordinary tensors out even inside the caller's inference_mode, as the README promises:
        # a result that will be edited in place or fed to training must not be an inference tensor
        with torch.inference_mode(False), torch.no_grad():
            return self._translate_batch(images, tile, overlap)

    def _translate_batch(self, images: Tensor, tile: int | str, overlap: int) -> Tensor:
        scale = 255.0 if images.dtype == torch.uint8 else 1.0
        device, dtype = self._weights_place()
        images = images.to(device, torch.float32) / scale
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        try:
            input = self.task.prepare(images)
        except NotImplementedError:
            raise PluginError(f"{contract_where(self.recipe, 'task')} cannot translate user images (its prepare() is not "
                              "implemented): a run of this task can be evaluated, not applied to photos") from None
        check_prepared(input, images, self.task, contract_where(self.recipe, "task"))
        del images  # a float copy of the whole photo: 12 bytes a pixel not held through the network
        with generator_named(self.recipe), self._in_eval_mode(self.generator):  # the generator's size contract, named
            output = run_any_size(self.generator, input.to(dtype) if input.is_floating_point() else input, tile, overlap)
        # images in [0, 1], as promised: a plugin's to_image need not clamp (a residual output
        # overshooting white came back as 1.117), and files are written clamped anyway
        return self.task.to_image(output.float(), input).clamp_(0, 1)

    def _weights_place(self) -> tuple[torch.device, torch.dtype]:
        """Where and in what precision the generator's weights are now: a program may have moved
        it (``model.generator.cuda()``) or cast it (``.half()``, ``.bfloat16()``) after loading;
        inputs follow it, and outputs come back as float32."""
        weights = next((p for p in self.generator.parameters() if p.is_floating_point()), None)
        return (weights.device, weights.dtype) if weights is not None else (self.device, torch.float32)

    def translate(self, image: Any, *, tile: int | str = "auto", keep_alpha: bool = True) -> Image.Image:
        """Translate a path, a PIL image or a uint8 numpy array (H x W grey, or H x W x 3 or 4
        RGB(A)); returns an 8-bit PIL image of the same size (``scale`` times it for ``superres``), as
        ``i2i translate`` writes it.

        The network sees the image as training reads images (transparency composited onto
        white); the result is RGB (L for a task with grey outputs), with the input's alpha
        channel appended unchanged (RGBA or LA) when it has one: palette transparency, LA,
        RGBA. ``keep_alpha=False`` leaves the alpha out, giving exactly the image earlier
        versions returned (``result.convert("RGB")`` does the same). A 16-bit file or ``I;16``
        image is given to the network at full precision, but the result has 8 bits per
        channel (a 16-bit alpha too): PIL has no 16-bit colour mode. For 16-bit results use
        ``i2i translate`` (or :func:`i2i.translate.translate_files`), or ``model(tensor)``,
        whose floats lose nothing.
        """
        if not isinstance(keep_alpha, bool):  # keep_alpha="no" would be taken as True
            raise TypeError(f"keep_alpha is True or False, not {keep_alpha!r}")
        import numpy as np
        from PIL import Image

        from .data import to_pil, to_uint8
        from .data.decode import decode_full, pil_to_decoded
        from .data.encode import with_alpha

        if isinstance(image, np.ndarray):
            if image.ndim == 3 and image.shape[2] == 1:
                image = image[..., 0]
            grey16 = image.dtype == np.uint16 and image.ndim == 2  # PIL's I;16: read at full precision
            if not grey16 and (image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4))):
                hint = ("; for 16-bit colour use model(torch.from_numpy(a.astype('float32') / 65535).permute(2, 0, 1))"
                        if image.dtype == np.uint16 else "")
                raise ValueError(f"model.translate takes a uint8 array of H x W or H x W x 3 (or 4), or a uint16 "
                                 f"H x W one, got {image.dtype} of shape {list(image.shape)}{hint}")
            image = Image.fromarray(image)
        if isinstance(image, Image.Image):
            decoded = pil_to_decoded(image, 3)
        elif isinstance(image, (str, os.PathLike)):
            image = user_path(image)  # "~/photo.jpg", as the shell would expand it
            if not Path(image).exists():  # what Python's own file functions raise, not "cannot decode"
                raise FileNotFoundError(errno.ENOENT, "model.translate: no such file", str(image))
            if Path(image).is_dir():
                raise IsADirectoryError(errno.EISDIR, "model.translate takes one image, not a folder (i2i.translate."
                                        "translate_files and i2i translate take folders)", str(image))
            decoded = decode_full(Path(image), 3)
        else:
            hint = "; for a tensor use model(tensor)" if isinstance(image, Tensor) else ""
            raise TypeError(f"model.translate takes a path, a PIL image or a uint8 numpy array, not {type(image).__name__}{hint}")
        pixels = decoded.pixels
        if pixels.numel() == 0:
            raise ValueError(f"model.translate got an empty image ({pixels.shape[-1]} x {pixels.shape[-2]} pixels)")
        output = self(pixels.float() / 65535 if pixels.dtype == torch.uint16 else pixels, tile=tile)
        if not keep_alpha or decoded.alpha is None:
            return to_pil(output)
        pixels = with_alpha(to_uint8(output).cpu().permute(1, 2, 0).numpy(), decoded.alpha)
        mode = "LA" if pixels.shape[2] == 2 else "RGBA"
        return Image.fromarray(pixels, mode=mode)


def _check_float_range(images: Tensor) -> float:
    """Refuse float images that are not [0, 1] images: NaN or infinite values, values above 3,
    which a 0-255 image given as floats has (the output would be all white, silently), or below
    -2, which an image normalised by a mean and std has where it is dark. Values a little below 0
    or above 1 pass: a noisy image for a denoiser strays there. Returns the lowest value."""
    low, high = (float(v) for v in torch.aminmax(images))  # one host sync per call
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("model(images) got NaN or infinite values")
    if high > 3.0:
        raise ValueError(f"model(images) takes float images in [0, 1], got values up to {high:.4g}: "
                         "divide a 0-255 image by 255, or pass it as uint8")
    if low < -2.0:
        raise ValueError(f"model(images) takes float images in [0, 1], got values down to {low:.4g}: undo a "
                         "normalisation first (images * std + mean)")
    return low


def build_task_and_generator(recipe: Recipe, seed: int | None = None) -> tuple[Any, nn.Module]:
    """The task a recipe names and its generator (fresh weights), wrapped as the task trains it.
    ``seed``: torch's global seed for the generator's initial weights (training's ``train.seed``,
    the same on every rank)."""
    reg = registry()
    task = build_component(reg, "tasks", recipe, "task")
    remember_task_label(task, recipe)
    check_declared_channels(recipe, task)
    if seed is not None:
        torch.manual_seed(seed)
    generator = build_component(reg, "generators", recipe, "generator", task.in_channels, task.out_channels)
    check_declared_sizes(recipe, generator)
    try:
        wrapped = task.wrap_generator(generator)
    except UserError as exc:  # the task refusing this generator under its options: the recipe's to change
        raise component_error(recipe, "task", exc) from None
    except Exception as exc:
        raise_plugin_failure(exc, f"{contract_where(recipe, 'task')}: wrap_generator failed: ")
    if not isinstance(wrapped, nn.Module):
        raise PluginError(f"{contract_where(recipe, 'task')}: wrap_generator returned {type(wrapped).__name__}; it "
                          "returns the generator, or a torch.nn.Module that wraps it; report this to the plugin's author")
    if wrapped is not generator:  # its own output is checked too (see engine/contracts.py), not as a submodule
        object.__setattr__(wrapped, "i2i_unwrapped", generator)
    return task, wrapped


def _note_task_changed_since(checkpoint: Path, state: dict, recipe: Recipe) -> None:
    """A checkpoint saved before a resume changed a task option (``--set task.scale=4`` on a 2x
    upscaler) is applied under the run's current options: say so, naming what it was trained for."""
    import json

    from .messages import say
    from .options import changed_keys, format_value

    trained = state.get("task")
    if not isinstance(trained, dict):  # checkpoints of earlier versions did not record it
        return
    now = json.loads(json.dumps(dict(recipe["task"])))
    changed = changed_keys(trained, now)
    if changed:
        def said(options: dict, key: str) -> str:  # an option a plugin version added, or left at a None default
            return f"task.{key} = {format_value(options[key])}" if key in options else f"task.{key} unset"

        then = ", ".join(said(trained, key) for key in changed)
        later = ", ".join(said(now, key) for key in changed)
        # a resume's --set may change an option, never the task: a name changed is an edit by hand
        how = ("restore it there to apply it as trained" if "name" in changed
               else "i2i eval --set task.KEY=VALUE scores it as trained")
        since = "the run's recipe.toml was edited by hand since" if "name" in changed else \
            "the run's recipe.toml has since been changed (by a resume's --set, or by hand)"
        say(f"i2i: note: {checkpoint.name} was trained with {then}, and {since} to {later}, which it is applied with "
            f"({how})")


def load(path: str | Path, *, device: str = "auto", which: str = "latest") -> Model:
    """Load a run directory (its ``latest`` or ``best`` checkpoint; ``best`` falls back to the
    latest, with a note on stderr, when the run has no best one yet) or a checkpoint directory.
    A run still training may prune the checkpoint a pointer named while it is read: then the
    pointer is read again."""
    if which not in ("latest", "best"):
        raise ValueError(f"which = {which!r}: expected 'latest' or 'best'")
    if isinstance(path, (str, os.PathLike)):
        path = user_path(path)
    for _ in range(2):
        checkpoint = ckpt.find_checkpoint(path, which)
        try:
            return _load_checkpoint(path, checkpoint, device)
        except CheckpointError:
            if checkpoint.is_dir() or Path(path).resolve() == checkpoint.resolve():
                raise  # damage, or a checkpoint folder given itself: not a pointer that moved on
    return _load_checkpoint(path, ckpt.find_checkpoint(path, which), device)  # a third try says what is wrong


def _load_checkpoint(path: str | Path, checkpoint: Path, device: str) -> Model:
    """:func:`load` of one checkpoint folder, found from ``path``."""
    state = ckpt.read_state(checkpoint)
    run_dir = ckpt.run_dir_of(checkpoint)
    recipe_path = run_dir / "recipe.toml"
    if not recipe_path.is_file():
        from .engine.run import rebuild_recipe_file

        if rebuild_recipe_file(run_dir):
            return _load_checkpoint(path, checkpoint, device)
        if Path(path).resolve() == run_dir.resolve():  # the run folder itself lost its recipe
            if recipe_path.is_dir():
                raise CheckpointError(f"{recipe_path}: a folder where the run keeps its recipe file, which rebuilds its "
                                      "network; move it away and restore the file (from a copy of the run, or the "
                                      "recipe it was trained with)")
            raise CheckpointError(f"{path}: no recipe.toml, which a run folder keeps beside checkpoints/ to rebuild its "
                                  "network from; restore it (from a copy of the run, or the recipe it was trained with)")
        raise CheckpointError(f"{checkpoint}: no recipe.toml in {run_dir.resolve()}, two folders up, to rebuild the network "
                              "from; load the run folder, or keep a checkpoint folder inside its run's checkpoints/")
    # applying the run needs its task and generator only: its callbacks steer training, and a
    # loss, discriminator or metric whose plugin is not here must not stop translation
    # (i2i eval builds the metrics itself, naming the plugin to install for one that is missing)
    recipe = load_recipe(recipe_path, ["train.callbacks=[]"], components=("tasks", "generators"))
    note_changed_run_plugins(recipe_path)
    _note_task_changed_since(checkpoint, state, recipe)
    with global_state_kept():  # float32 weights; the caller's random stream stays
        task, generator = build_task_and_generator(recipe)
    weights = checkpoint / "generator_ema.safetensors"
    if not weights.is_file():
        weights = checkpoint / "generator.safetensors"
    ckpt.load_weights(generator, weights, f"the network in {recipe_path}")
    dev = resolve_device(device, where="device")
    generator.to(dev).eval()
    return Model(task, generator, recipe, Path(os.path.abspath(checkpoint)), dev)  # still right after os.chdir
