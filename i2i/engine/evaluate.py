"""Validation: the task's metrics for the generator and for the task's baselines."""

from __future__ import annotations

import contextlib
import weakref
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor, nn

from ..errors import PluginError, naming_images
from ..losses import takes_input
from .contracts import check_metric_values, raise_plugin_failure
from .device import autocast
from .infer import run_any_size

if TYPE_CHECKING:
    from ..data import ImageData
    from ..recipe import Recipe
    from ..task import Task
    from .distributed import DistContext

SAMPLE_IMAGES = 4


class EvaluationAbandoned(Exception):
    """A stop was asked for (Ctrl-C, SIGTERM) while a training run scored its validation
    images: the rest of them are not scored, so the checkpoint is written before a scheduler's
    grace period (often 10 to 30 s) runs out and it kills the process. ``begun``: whether any
    batch was scored (a stop asked for just before the evaluation leaves it unstarted)."""

    def __init__(self, begun: bool = True) -> None:
        super().__init__()
        self.begun = begun


@dataclass
class ScoredBatch:
    """One evaluated batch, for whoever wants more than the means (``i2i eval --per-image``,
    ``--save-images``): images as the metrics saw them (``[B, C, H, W]`` in [0, 1]; ``input``
    is None when the task's input is not an image) and each image's scores."""

    names: list[str]
    input: Tensor | None
    output: Tensor
    target: Tensor
    scores: dict[str, Tensor]
    baseline_scores: dict[str, dict[str, Tensor]]
    #: the task's ``pair_details`` of each image (a blind denoiser's noise level)
    details: dict[str, Tensor] = field(default_factory=dict)
    #: bits per channel the images were read at: 16 for a folder holding deeper files than 8-bit
    bits: int = 8


class _Declared:
    """A metric with the ``lower_is_better`` its factory declared, for a metric that cannot hold
    the attribute itself (a bound method); calls, signature and other attributes are its own."""

    def __init__(self, metric: Any, lower_is_better: Any) -> None:
        self.__wrapped__ = metric  # what inspect.signature reads (a parameter named input)
        self.lower_is_better = lower_is_better

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # summarize, and any attribute of the metric
        return getattr(self.__dict__["__wrapped__"], name)


def lower_is_better(name: str, task: Task, metrics: dict[str, Any]) -> bool:
    """Whether a lower ``name`` (a metric's value, or a key one gives) is better: the task's
    ``lower_is_better`` lists it, or a metric declares it with ``lower_is_better``: ``True``
    for the metric's own name, or the keys that are (``("delta_colourfulness",)``)."""
    if name in task.lower_is_better:
        return True
    for metric_name, metric in metrics.items():
        declared = getattr(metric, "lower_is_better", False)
        if declared is True and metric_name == name:
            return True
        if isinstance(declared, (tuple, list, set, frozenset)) and name in declared:
            return True
    return False


def build_metrics(task: Task, names: list[str] | tuple[str, ...], recipe: Recipe | None = None) -> dict[str, Any]:
    """The metric functions of the task's ``metrics`` and the recipe's ``eval.metrics``, by name.

    Built when a run starts, so a task that lists a metric no plugin provides fails before any
    training step, naming the task, rather than at the first evaluation.
    """
    from ..errors import PluginError, UnknownComponentError, UserError, exception_line
    from ..plugins import registry
    from .contracts import contract_where, find_metric, metric_where

    reg = registry()
    metrics = {}
    for attribute, example in (("metrics", "('psnr', 'ssim')"), ("lower_is_better", "('mae',), or () when higher is better")):
        value = getattr(task, attribute, ())
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, set, frozenset)) or \
                not all(isinstance(m, str) for m in value):
            where = contract_where(recipe, "task") if recipe is not None else f"task {type(task).__name__}"
            raise PluginError(f"{where}: the task's {attribute} = {value!r}; it is a tuple of metric names, "
                              f"e.g. {example}; report this to the task plugin's author")
    for name in dict.fromkeys([*task.metrics, *names]):
        try:
            component = find_metric(recipe, name) if recipe is not None else reg.get("metrics", name)
            metrics[name] = component.build()
            declared = getattr(component.factory, "lower_is_better", None)  # said on a factory function
            if declared is not None and not hasattr(metrics[name], "lower_is_better"):
                metrics[name] = _Declared(metrics[name], declared)
        except UnknownComponentError as exc:
            if name not in task.metrics:
                if recipe is None:
                    raise
                from ..recipe import missing_run_plugins  # a run's eval.metrics: which plugin brings it back

                hint = missing_run_plugins(recipe.source) if recipe.source.endswith(".toml") else ""
                raise type(exc)(f"{recipe.source}: eval.metrics: {exc}{f'; {hint}' if hint else ''}") from None
            where = contract_where(recipe, "task") if recipe is not None else f"task {type(task).__name__}"
            raise PluginError(f"{where}: the task's metrics include {exc}; report this to the task plugin's author") from None
        except UserError:
            raise
        except Exception as exc:  # a factory that raises, e.g. the metric function registered in its place
            where = metric_where(recipe, name) if recipe is not None else f"metric '{name}'"
            raise PluginError(f"{where}: building it raised {exception_line(exc)} (register a factory that returns "
                              "the metric function); report this to the plugin's author") from exc
    return metrics


def check_scoring_crop(recipe: Recipe, metrics: dict[str, Any], multiple: int = 1) -> None:
    """Refuse an ``eval.crop`` that a metric leaving out a border (``psnr_y_x8``: 8 px a side,
    as super-resolution papers score) keeps no pixel of: such a metric scores an image that
    small whole, so every score of the run would be another metric's under its name."""
    from ..recipe import recipe_error

    crop = recipe["eval"]["crop"]
    problem = scoring_crop_problem(crop, metrics, multiple)
    if problem:
        raise recipe_error(recipe, f"eval.crop = {crop}: {problem.replace('CROP', 'eval.crop')}",
                           also=("eval.metrics", "task.scale"))


def scoring_crop_problem(crop: int, metrics: dict[str, Any], multiple: int = 1) -> str | None:
    """Why a metric cannot score ``crop`` px crops as its name says (the recipe's ``eval.crop``
    or ``i2i eval --crop``), with ``CROP`` where the setting's name belongs; None when all can.
    ``multiple``: a super-resolution task's scale, which the crops are cut down to first."""
    scored = crop - crop % multiple if crop >= multiple else crop
    for name, metric in metrics.items():
        border = getattr(metric, "border", 0)
        if crop > 0 and isinstance(border, int) and 0 < border and scored <= 2 * border:
            cut = f" (cut to {scored} px, a multiple of the scale, {multiple})" if scored != crop else ""
            return (f"metric '{name}' leaves out {border} px a side, so it would score these crops{cut} whole; raise "
                    f"CROP above {2 * border + (multiple - 1 if multiple > 1 else 0)} (or 0, whole images)")
    return None


def call_metric(metric: Any, output: Tensor, target: Tensor, input: Tensor) -> Any:
    """``metric(output, target)``, and ``input=input`` (the generator's input) for a metric that
    declares it (see :func:`i2i.losses.takes_input`)."""
    return metric(output, target, input=input) if takes_input(metric) else metric(output, target)


def _score(metric: Any, name: str, output: Tensor, target: Tensor, input: Tensor) -> Any:
    """:func:`call_metric`; an exception from a plugin's metric is one line naming it."""
    from ..errors import UserError

    try:
        return call_metric(metric, output, target, input)
    except UserError:
        raise
    except Exception as exc:
        raise_plugin_failure(exc, f"metric '{name}'{_plugin_of(name)} failed on a validation batch of shape "
                                  f"{list(output.shape)}: ")


def _plugin_of(metric: str) -> str:
    """`` (plugin 'x')`` for a metric's error, as the dry run's errors name it."""
    from ..errors import UserError
    from ..plugins import registry

    try:
        return f" (plugin '{registry().get('metrics', metric).plugin}')"
    except UserError:
        return ""


def _batch_scores(metrics: dict[str, Any], output: Tensor, target: Tensor, input: Tensor) -> dict[str, Tensor]:
    """Every metric's per-image values on one batch, ``{key: float [B]}`` (a metric returning a
    dict gives one key per entry); a key two metrics give is an error (see :func:`claim_keys`)."""
    scores: dict[str, Tensor] = {}
    given: dict[str, str] = {}
    for name, metric in metrics.items():
        values = _score(metric, name, output, target, input)
        # once, for the whole (nested) result
        check_metric_values(values, name, output.shape[0], _plugin_of(name), output.device)
        pairs = flatten_metric(values, name)
        claim_keys(given, [key for key, _ in pairs], name)
        for key, value in pairs:
            scores[key] = value.detach().float().reshape(-1)
    return scores


def _add(sums: dict[str, Tensor], scores: dict[str, Tensor]) -> None:
    """Add a batch's per-image scores to running sums."""
    for key, value in scores.items():
        total = value.sum()
        sums[key] = sums[key] + total if key in sums else total


def claim_keys(given: dict[str, str], keys: list[str], name: str) -> None:
    """Record that metric ``name`` gives ``keys``; a key another metric (or this one, twice)
    already gives is an error: the two values would be added up into a wrong score, the best
    checkpoint's included."""
    for key in keys:
        if key in given:
            other = given[key]
            who = (f"metric '{name}'{_plugin_of(name)} gives '{key}' twice" if other == name else
                   f"metrics '{other}'{_plugin_of(other)} and '{name}'{_plugin_of(name)} both give '{key}'")
            raise PluginError(f"{who}: each value a metric returns needs its own name (a dict's keys name them); "
                              "leave one of the metrics out of eval.metrics, or report this to the plugin's author")
        given[key] = name


def flatten_metric(values: Any, name: str) -> list[tuple[str, Tensor]]:
    """(name, tensor) pairs of a metric's result; a dict's values are named by their keys."""
    if not isinstance(values, dict):
        return [(name, values)]
    return [pair for key, value in values.items() for pair in flatten_metric(value, key)]


def image_seed(name: str) -> int:
    """The seed of one validation image's randomness (its noise): from the file's name alone
    (not its folders), so it is the same whichever batch, rank or folder level the image is
    in, and whichever run scores it: two models compared on a test set see the same noise."""
    file_name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return (7920 + 1_000_003 * zlib.crc32(file_name.encode("utf-8", "surrogatepass"))) % 2**63


def validation_pairs(task: Task, clean: Tensor, names: list[str]) -> tuple[Tensor, Tensor]:
    """The task's ``(input, target)`` for validation images, each drawn on the CPU from its own
    :func:`image_seed`. Seeded per batch on the device, a score moved with ``eval.batch_size``,
    with the other files of the folder and between the CPU and a GPU (0.17 dB of the noisy
    baseline at sigma 25)."""
    from ..errors import UserError
    from .contracts import check_task_pair

    rng = torch.Generator()
    on_cpu = clean.float().cpu()
    inputs, targets = [], []
    for i, name in enumerate(names):
        rng.manual_seed(image_seed(name))
        image = on_cpu[i:i + 1]
        where = f"{task_label(task)}, validation image {name} ({image.shape[-1]}x{image.shape[-2]} px)"
        try:
            pair = task.make_pair(image, rng)
        except UserError as exc:  # the task's own word on an image it cannot take: which image
            raise UserError(f"{name}: {exc}") from None
        except Exception as exc:
            raise_plugin_failure(exc, f"{where}: make_pair failed: ")
        input, target = check_task_pair(pair, image, task, where)  # a size that only some images get wrong
        inputs.append(input)
        targets.append(target)
    return torch.cat(inputs).to(clean.device), torch.cat(targets).to(clean.device)


def given_pairs(task: Task, pairs: Tensor, names: list[str]) -> tuple[Tensor, Tensor]:
    """``(input, target)`` from pairs made elsewhere (``i2i eval --data DEGRADED --pair-data
    CLEAN`` for a task that degrades photos itself: real noisy photos and their clean ones):
    ``pairs`` holds each degraded image and its clean one side by side in channels. The input
    is the degraded image as ``i2i translate`` prepares a user's photo; the target, the clean
    one as the task's ``make_pair`` makes its target (the input it would draw is not used)."""
    half = pairs.shape[1] // 2
    degraded, clean = pairs[:, :half].float(), pairs[:, half:]
    rgb = degraded.expand(-1, 3, -1, -1) if degraded.shape[1] == 1 else degraded
    input = task.prepare(rgb)
    _, target = validation_pairs(task, clean, names)
    return input.to(target.dtype), target


#: task object -> how messages name it, for errors raised where no recipe is at hand
_TASK_LABELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def remember_task_label(task: Task, recipe: Any) -> None:
    """Name ``task`` as its recipe does (``runs/x/recipe.toml: task.name = 'inpaint' (plugin
    'i2i_inpaint')``, for a third party's task) in the errors of evaluation, which is not given the recipe."""
    from .contracts import contract_where

    with contextlib.suppress(TypeError):  # a task object that takes no weak reference keeps its class name
        _TASK_LABELS[task] = contract_where(recipe, "task")


def task_label(task: Task) -> str:
    """How errors name a task: as its recipe does, else ``task Inpaint (i2i_inpaint.tasks)``."""
    with contextlib.suppress(TypeError):
        if task in _TASK_LABELS:
            return _TASK_LABELS[task]
    return f"task {type(task).__name__} ({type(task).__module__})"


def task_baselines(task: Task, input: Tensor, target_image: Tensor) -> dict[str, Tensor]:
    """``task.baselines``; one that raises, or gives images unlike the target's, is one line
    naming the task rather than a traceback or a metric's failure."""
    from .contracts import check_baselines_given

    try:
        images = task.baselines(input, target_image)
    except Exception as exc:
        raise_plugin_failure(exc, f"{task_label(task)}: baselines failed on an input of shape {list(input.shape)}: ")
    check_baselines_given(images, target_image, task_label(task))
    return images


def task_pair_details(task: Task, input: Tensor, target: Tensor) -> dict[str, Tensor]:
    """``task.pair_details``, each value checked to be one number per image: a plugin's
    mistake is one line naming the task."""
    try:
        details = task.pair_details(input, target)
    except Exception as exc:
        raise_plugin_failure(exc, f"{task_label(task)}: pair_details failed on an input of shape {list(input.shape)}: ")
    if not isinstance(details, dict):
        raise PluginError(f"{task_label(task)}: pair_details returned {type(details).__name__}; expected a dict of "
                          "{name: tensor of one value per image}")
    batch = input.shape[0]
    for name, value in details.items():
        if not (isinstance(name, str) and isinstance(value, Tensor) and value.numel() == batch):
            shape = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise PluginError(f"{task_label(task)}: pair_details gave {name!r}: {shape} for {batch} image(s); expected "
                              "a tensor of one value per image under a name")
    return {name: value.detach().float().reshape(batch) for name, value in details.items()}


def _agreed_keys(local: list[tuple[str, str]], dist) -> list[tuple[str, str]]:
    """The union of every rank's (group, metric) keys, in first-seen order.

    A rank may have evaluated no batch (fewer batches than ranks), so it cannot know the
    metric names on its own; every rank must still add the same tensors in the same order.
    """
    if not getattr(dist, "is_distributed", False):
        return local
    seen: dict[tuple[str, str], None] = {}
    for keys in dist.all_gather_object(local):
        for key in keys:
            seen[tuple(key)] = None
    return list(seen)


def _read(groups: dict[str, dict[str, Tensor]], count: Tensor, dist, device: torch.device) -> tuple[dict[str, dict[str, float]], int]:
    """Means over all ranks' images, and how many images: one all-reduce of every sum and the count."""
    local = [(group, name) for group, sums in groups.items() for name in sums]
    keys = _agreed_keys(local, dist)
    if not keys:
        return {}, 0
    zero = torch.zeros((), device=device)
    stacked = torch.stack([groups.get(g, {}).get(n, zero).to(device) for g, n in keys] + [count.float()])
    values = dist.all_reduce_sum(stacked).cpu().tolist()
    total = max(1.0, values[-1])
    out: dict[str, dict[str, float]] = {}
    for (group, name), value in zip(keys, values[:-1]):
        out.setdefault(group, {})[name] = value / total
    return out, round(values[-1])


def summarize_metrics(metrics: dict[str, Any], means: dict[str, float]) -> dict[str, float]:
    """``means`` with what each metric's optional ``summarize(means) -> {name: number}`` derives
    from them. A ``summarize`` that raises or returns anything else is a one-line
    :class:`~i2i.errors.PluginError` naming the metric."""
    from ..errors import PluginError, UserError

    out = dict(means)
    for name, metric in metrics.items():
        summarize = getattr(metric, "summarize", None)
        if summarize is None:
            continue
        try:
            derived = summarize(dict(out))
        except UserError:
            raise
        except Exception as exc:
            shown = ", ".join(f"{key}={value:.4g}" for key, value in list(out.items())[:6])
            raise_plugin_failure(exc, f"metric '{name}'{_plugin_of(name)}: summarize failed on the means {{{shown}}}: ")
        contract = "it returns {name: number} for the values it derives from the means; report this to the plugin's author"
        if not isinstance(derived, dict):
            raise PluginError(f"metric '{name}'{_plugin_of(name)}: summarize returned {type(derived).__name__}; {contract}")
        for key, value in derived.items():
            number = value.item() if isinstance(value, Tensor) and value.numel() == 1 else value
            if not isinstance(key, str) or not isinstance(number, (int, float)) or isinstance(number, bool):
                raise PluginError(f"metric '{name}'{_plugin_of(name)}: summarize returned a dict whose {key!r} is "
                                  f"{type(value).__name__}; {contract}")
            out[key] = float(number)
    return out


def evaluate_generator(
    generator: nn.Module, task: Task, data: ImageData, metrics: dict[str, Any], eval_cfg: dict, *,
    device: torch.device, dtype: torch.dtype, dist: DistContext, on_batch: Callable[[ScoredBatch], None] | None = None,
    abandon: Callable[[], bool] | None = None, pairs_given: bool = False,
) -> tuple[dict[str, float], dict[str, dict[str, float]], list[Tensor] | None, int]:
    """Average each metric over the validation images (per image, then the mean).

    Validation noise is drawn per image from the image's file name (see
    :func:`validation_pairs`), the same at every evaluation, so the numbers of two evaluations
    (or two runs, or two batch sizes) are comparable. Under
    distributed training each rank evaluates its share of the batches (``dist``) and the sums
    are added across ranks, so the numbers are those of a single process (up to the order of
    floating-point additions). Returns (metrics, baselines, sample columns of the first batch
    or ``None`` on ranks that did not evaluate batch 0, the number of images scored: a file
    whose header reads but whose pixels do not is skipped, so it can be fewer than the files).
    ``on_batch`` is given each batch's images and per-image scores (``i2i eval --per-image``).
    ``abandon``, asked before each batch, raises :class:`EvaluationAbandoned` when it says so
    (single process only: a rank that left early would leave the others waiting for its sums).
    ``pairs_given``: ``data`` holds pairs made elsewhere, scored as :func:`given_pairs` says.
    """
    was_training = generator.training
    generator.eval()
    sums: dict[str, Tensor] = {}
    base_sums: dict[str, dict[str, Tensor]] = defaultdict(dict)
    count = torch.zeros((), device=device)
    first = None
    shard = bool(getattr(dist, "is_distributed", False))
    try:
        batches = data.indexed_val_batches(eval_cfg["crop"], eval_cfg["batch_size"], eval_cfg["max_images"], shard=shard)
        for number, clean, names in batches:
            if abandon is not None and abandon():
                raise EvaluationAbandoned(begun=number > 0)
            input, target = (given_pairs if pairs_given else validation_pairs)(task, clean, names)
            with autocast(device, dtype), naming_images("scoring", names):
                fake = run_any_size(generator, input)
            fake = fake.float()
            output_image = task.to_image(fake, input)
            target_image = task.to_image(target, input)
            scores = _batch_scores(metrics, output_image, target_image, input)
            _add(sums, scores)
            base_scores = {base_name: _batch_scores(metrics, base_image, target_image, input)
                           for base_name, base_image in task_baselines(task, input, target_image).items()}
            for base_name, values in base_scores.items():
                _add(base_sums[base_name], values)
            if on_batch is not None:
                on_batch(ScoredBatch(names, task.input_image(input) if task.input_is_image else None,
                                     output_image, target_image, scores, base_scores,
                                     task_pair_details(task, input, target), data.val_bits))
            count += clean.shape[0]
            if first is None and (number == 0 or not shard):
                first = _columns(task, input, output_image, target_image)
    finally:
        generator.train(was_training)
    groups = {"": sums, **{f"baseline:{name}": s for name, s in base_sums.items()}}
    read, images = _read(groups, count, dist, device)
    means = summarize_metrics(metrics, read.pop("", {}))
    baselines = {group.removeprefix("baseline:"): summarize_metrics(metrics, values) for group, values in read.items()}
    return means, baselines, first, images


def _columns(task, input: Tensor, output: Tensor, target: Tensor) -> list[Tensor]:
    n = SAMPLE_IMAGES
    cols = [output[:n], target[:n]]
    if task.input_is_image:
        cols.insert(0, task.input_image(input[:n]))
    return cols


def sample_columns(
    generator: nn.Module, task: Task, data: ImageData, eval_cfg: dict, device: torch.device, dtype: torch.dtype,
    batch_size: int,
) -> list[Tensor]:
    """(input | output | target) columns for a sample grid, on the same validation images and
    noise every time, so a run's grids show progress rather than different pictures.

    Without validation images (or when the first ones no longer decode), a preview batch of
    ``batch_size`` training crops is used.
    """
    was_training = generator.training
    generator.eval()
    try:
        first = next(iter(data.val_batches(eval_cfg["crop"], SAMPLE_IMAGES, SAMPLE_IMAGES)), None) if data.val_files else None
        if first is not None:
            clean, names = first
        else:  # no validation images, or the first ones no longer decode
            clean = data.preview_batch(batch_size)
            names = [f"preview {i}" for i in range(clean.shape[0])]
        input, target = validation_pairs(task, clean, names)
        with autocast(device, dtype), naming_images("scoring", names):
            fake = run_any_size(generator, input).float()
        return _columns(task, input, task.to_image(fake, input), task.to_image(target, input))
    finally:
        generator.train(was_training)
