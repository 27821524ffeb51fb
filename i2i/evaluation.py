"""``i2i eval``: score a trained run on its validation images or on a folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .engine import checkpoint as ckpt
from .engine.distributed import DistContext
from .data.sources import without_suffix
from .engine.contracts import generator_named
from .engine.components import usable_output_scale
from .engine.evaluate import build_metrics, evaluate_generator, scoring_crop_problem, task_label
from .errors import WRITE_TROUBLE, RecipeError, UserError, did_you_mean, named_as_arguments
from .messages import say
from .paths import user_path
from .recipe import override_list

if TYPE_CHECKING:
    import torch

    from .engine.evaluate import ScoredBatch
    from .model import Model
    from .task import Task


#: What ``i2i eval --set`` may change: how images are degraded and scored, not the network.
EVAL_KEYS = ("eval.batch_size", "eval.max_images", "eval.metrics")


#: ``i2i eval``'s options as :func:`evaluate_run`'s arguments, for its messages to Python callers
PYTHON_SPELLING = {"--data": "data_dir", "--checkpoint": "which", "--device": "device", "--crop": "crop",
                   "--set": "overrides", "--save-images": "save_images", "--pair-data": "pair_dir"}


def evaluate_run(run_dir: str | Path, *, data_dir: str | Path | None = None, which: str = "latest", device: str = "auto",
                 crop: int | None = None, overrides: list[str] | tuple[str, ...] = (), per_image: bool = False,
                 save_images: str | Path | None = None, pair_dir: str | Path | None = None) -> dict:
    """The task's metrics and baselines for a run's generator (EMA weights when kept).

    Without ``data_dir`` the run's own validation split is used (the same files, as its
    ``split.json`` records them where it has one; the same validation noise and the same ``eval.max_images`` cap as during training, so the numbers
    match the run's log); with it, every image in that folder (a test set is scored whole). Each image is
    scored on its centre ``crop`` x ``crop`` px (the run's ``eval.crop`` unless given; 0 =
    the whole image, as published benchmarks score, never resized), which the result's ``crop``
    says; ``resize`` says whether the run's ``data.resize`` resized the images before the crop.
    ``overrides`` (``--set``) change the task's options (a blind denoiser scored at one
    ``task.sigma``) or :data:`EVAL_KEYS`, as the result's ``overrides`` records. ``pair_dir``
    holds, under the same names, the other image of each pair in ``data_dir`` (a run trained
    with ``data.pair_source``).

    Returns ``{"metrics": {name: value}, "baselines": {baseline: {name: value}}, ...}`` (the
    JSON ``i2i eval --json`` prints). ``per_image=True`` adds ``"per_image"``: one
    ``{"file", "metrics", "baselines"}`` per scored image, in file order (the means are their
    averages), with ``"details"`` where the task gives some (:meth:`i2i.Task.pair_details`). ``save_images`` (a new or empty folder) receives each scored image's
    ``input/``, ``output/`` and ``target/`` as 8-bit PNGs, named after the file. A mistake in the
    run, data or overrides is a :class:`UserError` worded with these arguments; an argument of
    the wrong type a ``TypeError``.
    """
    overrides = override_list(overrides)
    if crop is not None and (not isinstance(crop, int) or isinstance(crop, bool)):
        raise TypeError(f"crop is a whole number of pixels (0 = whole images) or None, not {crop!r}")
    if crop_problem(crop):
        raise ValueError(f"crop = {crop_problem(crop)}")
    if not isinstance(per_image, bool):
        raise TypeError(f"per_image is True or False, not {per_image!r}")
    if pair_dir is not None and not isinstance(pair_dir, (str, Path)):
        raise TypeError(f"pair_dir is a folder (a str or Path) or None, not {type(pair_dir).__name__}")
    if save_images is not None and not isinstance(save_images, (str, Path)):
        raise TypeError(f"save_images is a folder (a str or Path) or None, not {type(save_images).__name__}")
    with named_as_arguments(PYTHON_SPELLING):
        saver = ImageSaver(user_path(save_images, "save_images")) if save_images is not None else None
        return _evaluate_run(run_dir, data_dir=data_dir, which=which, device=device, crop=crop, overrides=overrides,
                             per_image=per_image, saver=saver, pair_dir=pair_dir)


class GreyTargets:
    """The scored images that show no colour (:func:`~i2i.data.decode.looks_grey`'s test on
    the 8-bit target), for a colourising task, whose scores on them mean nothing."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, batch: "ScoredBatch") -> None:
        from .data.decode import looks_grey, to_uint8

        for name, target in zip(batch.names, batch.target):
            if looks_grey(to_uint8(target)):
                self.names.append(name)


class ImageSaver:
    """Writes each scored image's input, output and target into ``<folder>/input|output|target/``
    under the file's path with ``.png`` for its extension (files whose stems clash, ``a.jpg`` and
    ``a.png``, keep theirs: ``a.jpg.png``), so the three folders line up file for file for
    another tool's scoring or a side-by-side look: 8-bit PNGs, 16-bit ones when the scored
    images were read at 16 bits (a folder holding deeper files than 8-bit). The folder must be
    new or empty: nothing already there is replaced."""

    def __init__(self, folder: Path) -> None:
        from .data.decode import folder_blocked
        from .data.sources import OUTPUTS_MARKER

        blocked = folder_blocked(folder)
        if blocked:
            raise UserError(f"{folder}: {blocked}, not a folder for --save-images; give a new folder")
        if folder.is_dir() and any(path.name != OUTPUTS_MARKER for path in folder.iterdir()):  # (an earlier eval's mark)
            raise UserError(f"{folder}: the --save-images folder is not empty; give a new or empty folder (i2i eval "
                            "replaces no file)")
        self.folder = folder
        self._clashing: set[str] = set()
        self._marked = False

    def refuse_inside(self, folders: list[Path]) -> None:
        """The saved images must not land in a folder being scored: the next evaluation of it
        would score them too (and pair them with each other)."""
        mine = self.folder.resolve()
        for folder in folders:
            if mine == folder.resolve() or folder.resolve() in mine.parents:
                raise UserError(f"{self.folder}: the --save-images folder is inside {folder}, which is scored: a later "
                                "evaluation would score the saved images too; give a folder outside it")

    def expect(self, names: list[str]) -> None:
        """The names of the files to be scored, so each gets its own output name before the
        first is written: clashing stems keep their extension (``a.jpg.png``), and a name
        taken even so (``a.png`` beside ``a.png.png``) gets ``-2``, ``-3``..."""
        stems = [without_suffix(name) for name in names]
        self._clashing = {stem for stem in stems if stems.count(stem) > 1}
        taken: set[str] = set()
        self._names: dict[str, str] = {}
        for name, stem in zip(names, stems):
            out = name.replace("\\", "/") if stem in self._clashing else stem
            base, number = out, 2
            while out.lower() in taken:
                out, number = f"{base}-{number}", number + 1
            taken.add(out.lower())
            self._names[name] = out
        self._refuse_names_too_long()

    def _refuse_names_too_long(self) -> None:
        """A saved name past the file system's limit stopped the scoring part-way and left the
        folder, no longer empty, refused by the rerun: said before any scoring instead."""
        from .data.encode import name_too_long, too_long_said

        for name, out in self._names.items():
            saved = f"{out.rsplit('/', 1)[-1]}.png"
            if name_too_long(saved):
                raise UserError(f"--save-images: {name}: its saved name, {too_long_said(saved)}; shorten the file's "
                                "name, or score without --save-images")

    def __call__(self, batch: "ScoredBatch") -> None:
        from .data.encode import save_image, temporary_beside

        if not self._marked:  # so that searching a folder above it for photos leaves the saved images out
            from .data.sources import mark_as_outputs

            mark_as_outputs(self.folder, "give --save-images another folder")
            self._marked = True
        for i, name in enumerate(batch.names):
            stem = self._names.get(name) or without_suffix(name)
            for role, images in (("input", batch.input), ("output", batch.output), ("target", batch.target)):
                if images is None:
                    continue
                path = self.folder / role / f"{stem}.png"
                peak, dtype = (65535, "uint16") if batch.bits > 8 else (255, "uint8")  # 16-bit read, 16-bit PNG
                pixels = (images[i].float().clamp(0, 1) * peak).round().permute(1, 2, 0).cpu().numpy().astype(dtype)
                tmp = temporary_beside(path, "tmp")
                try:  # whole or not at all: a full disk leaves no truncated PNG
                    path.parent.mkdir(parents=True, exist_ok=True)
                    save_image(pixels, tmp, "png")
                    tmp.replace(path)
                except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP mid-write: no half-written PNG is left
                    tmp.unlink(missing_ok=True)
                    raise
                except OSError as exc:
                    tmp.unlink(missing_ok=True)
                    if exc.errno in WRITE_TROUBLE:  # the disk, not the user: exit status 1
                        raise OSError(exc.errno, exc.strerror, str(path)) from None
                    raise UserError(f"{path}: cannot write it ({exc.strerror or exc}); give --save-images another folder") from None


class PerImageScores:
    """Each scored image's metrics and baselines, in file order (``i2i eval --per-image``)."""

    def __init__(self, metrics: dict) -> None:
        self.metrics = metrics
        self.rows: list[dict] = []

    def __call__(self, batch: "ScoredBatch") -> None:
        from .engine.evaluate import summarize_metrics

        scores = {key: value.cpu().tolist() for key, value in batch.scores.items()}
        baselines = {base: {key: value.cpu().tolist() for key, value in values.items()}
                     for base, values in batch.baseline_scores.items()}
        details = {key: value.cpu().tolist() for key, value in batch.details.items()}
        for i, name in enumerate(batch.names):
            self.rows.append({
                "file": name,
                "metrics": summarize_metrics(self.metrics, {key: values[i] for key, values in scores.items()}),
                "baselines": {base: summarize_metrics(self.metrics, {key: v[i] for key, v in values.items()})
                              for base, values in baselines.items()},
                **({"details": {key: values[i] for key, values in details.items()}} if details else {}),
            })


def _evaluate_run(run_dir: str | Path, *, data_dir: str | Path | None, which: str, device: str, crop: int | None,
                  overrides: list[str], per_image: bool, saver: ImageSaver | None, pair_dir: str | Path | None) -> dict:
    import torch

    from .data import ImageData
    from .engine.device import dtype_name
    from .model import load

    model = load(run_dir, device=device, which=which)
    recipe, task = model.recipe, model.task
    if overrides:
        recipe, task = _overridden(model, list(overrides))
    problem = crop_problem(crop)
    if problem:
        raise UserError(f"crop = {problem}")
    whole = (recipe["eval"]["crop"] if crop is None else crop) == 0
    # whole images are scored at their own size, as benchmarks do: not resized as the run's
    # data.resize resizes training crops (that resampled a test set, unsaid, up or down)
    data_cfg = {**recipe["data"], "resize": 0} if whole else recipe["data"]
    _check_pair_dir(data_dir, pair_dir, recipe)
    pairs_given = _scores_given_pairs(task, pair_dir)  # a denoiser on real noisy photos and their clean ones
    if data_dir is not None:
        data = ImageData.for_evaluation(data_dir, channels=task.image_channels, device=model.device,
                                        resize=data_cfg["resize"], side_by_side=task.side_by_side or pairs_given,
                                        pair_folder=pair_dir, scored_multiple=usable_output_scale(task))
        source = f"{data_dir} with its pairs in {pair_dir}" if pairs_given else str(data_dir)
    else:
        from .data.sources import RecordedSplit, missing_data_folder

        run = ckpt.run_dir_of(model.checkpoint)
        folder_key = missing_data_folder(recipe["data"])
        if folder_key is not None:
            raise UserError(f'data.{folder_key} = "{recipe["data"][folder_key]}": no such folder; if the run\'s images '
                            f"moved, set data.{folder_key} in {run / 'recipe.toml'} to their new place (or score a "
                            "folder with --data DIR)")
        split = RecordedSplit.read(run)  # the files it validated on, as it trains
        if split is not None:  # those alone: its training files need not be there any more
            data = ImageData.for_recorded_validation(data_cfg, split, channels=task.image_channels,
                                                     device=model.device, side_by_side=task.side_by_side,
                                                     scored_multiple=usable_output_scale(task))
        else:  # a run from before split.json: the split is drawn again from the folder
            data = ImageData(data_cfg, channels=task.image_channels, device=model.device,
                             seed=recipe["train"]["seed"], side_by_side=task.side_by_side,
                             scored_multiple=usable_output_scale(task))
        val_source = recipe["data"]["val_source"]
        source = val_source if val_source else f"validation split of {recipe['data']['source']}"
    if not data.val_files:
        fraction = recipe["data"]["val_fraction"]
        why = (f"data.val_fraction = {fraction}" if fraction == 0 else
               f"data.val_fraction = {fraction} of its few images held out none")
        raise UserError(f"{run_dir}: the run has no validation images ({why}); pass --data DIR")
    eval_cfg = dict(recipe["eval"])
    if crop is not None:
        eval_cfg["crop"] = crop
    if data_dir is not None and not any(o.split("=", 1)[0].strip() == "eval.max_images" for o in overrides):
        eval_cfg["max_images"] = 0  # the run's cap keeps training-time evaluation short, not a test set
    metrics = build_metrics(task, recipe["eval"]["metrics"], recipe)
    problem = scoring_crop_problem(eval_cfg["crop"], metrics, usable_output_scale(task))  # --crop, or a --set's metric
    if problem:
        given = f"--crop {crop}" if crop is not None else f"the run's eval.crop = {eval_cfg['crop']}"
        raise UserError(f"{given}: {problem.replace('CROP', '--crop')}")
    dtype = run_precision(recipe, model.device)
    rows = PerImageScores(metrics) if per_image else None
    if saver is not None:
        scored = [data_dir, pair_dir] if data_dir is not None else \
            [recipe["data"].get(key, "") for key in ("source", "pair_source", "val_source", "val_pair_source")]
        saver.refuse_inside([Path(folder) for folder in scored if folder and folder != "sample"])
        saver.expect(data.val_names(eval_cfg["max_images"]))
    grey = GreyTargets() if task.learns_colour else None
    listeners = [f for f in (rows, saver, grey) if f is not None]
    with torch.inference_mode(), generator_named(recipe):
        values, baselines, _, images = evaluate_generator(
            model.generator, task, data, metrics, eval_cfg, device=model.device,
            dtype=dtype, dist=DistContext.single(),
            on_batch=(lambda batch: [listen(batch) for listen in listeners]) if listeners else None,
            pairs_given=pairs_given,
        )
    if not images:
        where = data_dir if data_dir is not None else source if recipe["data"]["val_source"] else f"the {source}"
        limit = eval_cfg["max_images"]
        tried = max(min(len(data.val_files), limit) if limit else len(data.val_files), data.unreadable_at_last_scoring)
        raise UserError(f"no readable images in {where}: none of the {tried} image file(s) evaluated could be decoded")
    if grey is not None and grey.names:
        from .data.sources import name_files

        share = "all" if len(grey.names) == images else f"{len(grey.names)} of {images}"
        say(f"i2i: warning: {share} scored images show no colour ({name_files(grey.names)}), and task "
            f"{recipe['task']['name']!r} is scored on its output's colours against theirs: a grey image's scores (its "
            "grey copy's near-perfect ones too) say nothing of colouring; score colour photos")
    smaller, within = data.val_fit_in_crop(eval_cfg["crop"], eval_cfg["max_images"])
    state = ckpt.read_state(model.checkpoint)
    return {"task": recipe["task"]["name"], "run_dir": os.path.abspath(run_dir), "checkpoint": str(model.checkpoint),
            "step": state.get("step", 0), "source": source, "crop": eval_cfg["crop"], "scored_crop": data.scored_crop(eval_cfg["crop"]),
            "resize": data_cfg["resize"],
            "smaller_than_crop": smaller, "within_crop": within,
            "overrides": list(overrides),
            "precision": dtype_name(dtype), "images": images,
            "metrics": values, "baselines": baselines, **({"per_image": rows.rows} if rows is not None else {})}


def _check_pair_dir(data_dir: str | Path | None, pair_dir: str | Path | None, recipe: dict) -> None:
    """``--pair-data`` goes with ``--data``, for a task that reads pairs; a run trained on pairs
    across two folders scores a test set of such pairs (its photos alone would be cut in half)."""
    if pair_dir is None:
        if data_dir is not None and recipe["data"].get("pair_source"):
            raise UserError(f'{data_dir}: the run trained on pairs across two folders (data.pair_source = '
                            f'"{recipe["data"]["pair_source"]}"); give the folder of the test pairs\' other images as '
                            "--pair-data DIR too")
        return
    if data_dir is None:
        raise UserError(f"{pair_dir}: --pair-data goes with --data DIR, the folder of the pairs' input-side images")

def _scores_given_pairs(task: "Task", pair_dir: str | Path | None) -> bool:
    """Whether ``--pair-data`` gives a task that makes its own pairs ready ones to score on
    (real noisy photos and their clean ones): their inputs are prepared as ``i2i translate``
    prepares a photo, which needs a task that translates photos at their own size."""
    from .task import takes_photos

    if pair_dir is None or task.side_by_side:
        return False
    if not takes_photos(task):
        raise UserError(f"{pair_dir}: task '{task_label(task)}' makes its own pairs and cannot take a photo as its "
                        "input (it has no prepare), so it cannot be scored on pairs made elsewhere; leave --pair-data out")
    if usable_output_scale(task) != 1:
        raise UserError(f"{pair_dir}: a super-resolution model's input is smaller than its target, which --data and "
                        "--pair-data cannot give; translate the small images and score the outputs against the large "
                        "ones with your own code, or leave --pair-data out to score on images it shrinks itself")
    return True


def _overridden(model: "Model", overrides: list[str]) -> tuple[dict, "Task"]:
    """The run's recipe with ``i2i eval --set``'s changes, and the task built from it. Refused: a
    key outside the task's options and :data:`EVAL_KEYS`, and a task option that changes the
    network (its channels, or how the task wraps it: ``task.residual``)."""
    from torch import nn

    from .plugins import registry
    from .recipe import build_component, load_recipe

    from .recipe import parse_override

    for override in overrides:
        parse_override(override)  # its syntax first (--set a, --set =1): as i2i run says it
        key = override.split("=", 1)[0].strip()
        if not ((key.startswith("task.") and key != "task.name") or key in EVAL_KEYS):
            bare = "." not in key and key in model.recipe["task"]  # --set sigma=25: a task option, unqualified
            close = did_you_mean(key, [*EVAL_KEYS, *(f"task.{option}" for option in model.recipe["task"] if option != "name")])
            hint = f" (did you mean --set task.{override.strip()}?)" if bare else close and f" ({close.strip(' ()')})"
            if key == "eval.crop":  # an option of its own
                hint = f" (use --crop {override.split('=', 1)[1].strip()})"
            if key == "task.name":  # not a near miss of another key: the task is the run's
                hint = " (a run is scored on the task it was trained for; another task needs a run of its own)"
            if key == "eval.best_metric":  # which checkpoint is best is the run's; eval scores the one given
                hint = " (eval scores one checkpoint: --checkpoint best is the one the run chose, step_N another)"
            raise RecipeError(f"--set {override}: scoring a run changes only the task's options (task.sigma, say) and "
                              f"{', '.join(EVAL_KEYS)}; the network, its data and the rest are the run's{hint}")
    recipe = load_recipe(ckpt.run_dir_of(model.checkpoint) / "recipe.toml", ["train.callbacks=[]", *overrides],
                         components=("tasks", "generators", "metrics"))  # a --set metric is named as such
    trained = model.recipe["task"].get("direction")
    if trained is not None and recipe["task"].get("direction") != trained:  # same channels: it scored backwards
        raise RecipeError(f"--set task.direction={recipe['task']['direction']}: the run learnt {trained}, so scored the "
                          "other way its network would be given the targets and compared with the inputs; a run of its "
                          "own learns the other direction")
    task = build_component(registry(), "tasks", recipe, "task")
    same = (task.in_channels, task.out_channels, task.clean_channels) == \
        (model.task.in_channels, model.task.out_channels, model.task.clean_channels)
    if not same or type(task.wrap_generator(nn.Identity())) is not type(model.task.wrap_generator(nn.Identity())):
        raise UserError(f"--set {' '.join(overrides)}: changes the network the run trained (its channels, or how the task "
                        "wraps it); scoring a run can change only how images are degraded and scored")
    return recipe, task


def run_precision(recipe: dict, device: "torch.device") -> "torch.dtype":
    """The precision the run's own evaluations used on ``device`` (``train.precision``, with
    ``auto`` resolved for it), so scores on the same machine match the run's log; fp32 where the
    device cannot run it (an fp16 run scored on the CPU)."""
    import torch

    from .engine.device import resolve_precision

    try:
        return resolve_precision(recipe["train"]["precision"], device)
    except UserError:
        return torch.float32


def crop_problem(crop: object) -> str | None:
    """What is wrong with an evaluation crop (``i2i eval --crop``), or None: SSIM needs a window
    that fits, and the recipe's ``eval.crop`` takes the same values."""
    from .recipe import SCHEMA

    field = SCHEMA["eval"]["crop"]
    if crop is None or (isinstance(crop, int) and not isinstance(crop, bool) and field.check(crop)):
        return None
    return f"{crop!r}: expected {field.expect}"


def check_csv_target(path: Path, save_images: Path | None = None) -> None:
    """``--per-image FILE`` before any scoring: a new file in an existing folder, or in the
    ``--save-images`` folder the scoring makes."""
    if str(path) == "-":  # stdout, to many tools: here the table goes there
        raise UserError("--per-image -: give a file name (the table of means goes to stdout; --json prints it as JSON)")
    if save_images is not None and path.parent.resolve() == save_images.resolve() and not save_images.exists():
        return  # made, new and empty, before the scores are written
    if os.path.lexists(path):  # a symbolic link too, dangling or looped: writing would replace it
        kind = "a symbolic link" if path.is_symlink() else "the file"
        raise UserError(f"--per-image {path}: {kind} exists; give a new file name (i2i eval replaces no file)")
    if not path.parent.is_dir():
        raise UserError(f"--per-image {path}: no such folder {path.parent}")
    import tempfile

    try:  # a read-only folder said so only after all the scoring was done
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".i2i-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"--per-image {path}: cannot write in {path.parent} ({exc.strerror or exc}); "
                        "give a file in a folder you can write to") from None


def write_per_image_csv(rows: list[dict], path: Path) -> None:
    """The per-image scores as CSV: ``file``, the task's details of the pair (a blind
    denoiser's ``noise sigma``), the model's metrics, then each baseline's as
    ``<baseline>: <metric>``; written whole or not at all."""
    import csv

    detail_keys = list(dict.fromkeys(key for row in rows for key in row.get("details", {})))
    metric_keys = list(dict.fromkeys(key for row in rows for key in row["metrics"]))
    base_keys = list(dict.fromkeys((base, key) for row in rows for base, values in row["baselines"].items()
                                   for key in values))
    from .data.encode import temporary_beside

    tmp = temporary_beside(path, f"tmp-{os.getpid()}")
    try:
        # surrogateescape: a file name that is not UTF-8 (Latin-1 from an old zip) keeps its bytes
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", *detail_keys, *metric_keys, *(f"{base}: {key}" for base, key in base_keys)])
            for row in rows:
                writer.writerow([row["file"], *(_detail_cell(row.get("details", {}).get(key)) for key in detail_keys),
                                 *(_cell(row["metrics"].get(key)) for key in metric_keys),
                                 *(_cell(row["baselines"].get(base, {}).get(key)) for base, key in base_keys)])
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"--per-image {path}: cannot write ({exc.strerror or exc})") from None


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _detail_cell(value: float | None) -> str:
    """A task's detail of a pair (a blur width of 1.05 px) as float32 holds it, without the
    digits its widening to float64 makes up (1.0499999523162842)."""
    return "" if value is None else format(float(value), ".7g")
