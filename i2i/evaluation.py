"""``i2i eval``: score a trained run on its validation images or on a folder."""

from __future__ import annotations

from pathlib import Path

from .engine import checkpoint as ckpt
from .engine.distributed import DistContext
from .engine.evaluate import build_metrics, evaluate_generator
from .errors import UserError


def evaluate_run(run_dir: str | Path, *, data_dir: str | Path | None = None, which: str = "latest", device: str = "auto",
                 crop: int | None = None) -> dict:
    """The task's metrics and baselines for a run's generator (EMA weights when kept).

    Without ``data_dir`` the run's own validation split is used (the same files, as its
    ``split.json`` records them where it has one; the same validation noise and the same ``eval.max_images`` cap as during training, so the numbers
    match the run's log); with it, every image in that folder (a test set is scored whole). Each image is
    scored on its centre ``crop`` x ``crop`` px (the run's ``eval.crop`` unless given; 0 =
    the whole image, as published benchmarks score), which the result's ``crop`` says.
    """
    import torch

    from .data import ImageData
    from .engine.device import dtype_name
    from .model import load

    model = load(run_dir, device=device, which=which)
    recipe = model.recipe
    if data_dir is not None:
        data = ImageData.for_evaluation(data_dir, channels=model.task.image_channels, device=model.device,
                                        resize=recipe["data"]["resize"])
        source = str(data_dir)
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
            data = ImageData.for_recorded_validation(recipe["data"], split, channels=model.task.image_channels,
                                                     device=model.device)
        else:  # a run from before split.json: the split is drawn again from the folder
            data = ImageData(recipe["data"], channels=model.task.image_channels, device=model.device,
                             seed=recipe["train"]["seed"])
        val_source = recipe["data"]["val_source"]
        source = val_source if val_source else f"validation split of {recipe['data']['source']}"
    if not data.val_files:
        fraction = recipe["data"]["val_fraction"]
        why = (f"data.val_fraction = {fraction}" if fraction == 0 else
               f"data.val_fraction = {fraction} of its few images held out none")
        raise UserError(f"{run_dir}: the run has no validation images ({why}); pass --data DIR")
    eval_cfg = dict(recipe["eval"])
    if crop is not None:
        if isinstance(crop, bool) or not isinstance(crop, int) or crop < 0:
            raise UserError(f"crop = {crop!r}: expected a number of pixels >= 0 (0 = whole images)")
        eval_cfg["crop"] = crop
    if data_dir is not None:
        eval_cfg["max_images"] = 0  # the run's cap keeps training-time evaluation short, not a test set
    metrics = build_metrics(model.task, recipe["eval"]["metrics"], recipe)
    dtype = run_precision(recipe, model.device)
    with torch.inference_mode():
        values, baselines, _, images = evaluate_generator(
            model.generator, model.task, data, metrics, eval_cfg, device=model.device,
            dtype=dtype, seed=recipe["train"]["seed"], dist=DistContext.single(),
        )
    if not images:
        where = data_dir if data_dir is not None else source if recipe["data"]["val_source"] else f"the {source}"
        limit = eval_cfg["max_images"]
        tried = min(len(data.val_files), limit) if limit else len(data.val_files)
        raise UserError(f"no readable images in {where}: none of the {tried} image file(s) evaluated could be decoded")
    state = ckpt.read_state(model.checkpoint)
    return {"task": recipe["task"]["name"], "run_dir": str(run_dir), "checkpoint": str(model.checkpoint),
            "step": state.get("step", 0), "source": source, "crop": eval_cfg["crop"],
            "precision": dtype_name(dtype), "images": images,
            "metrics": values, "baselines": baselines}


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
