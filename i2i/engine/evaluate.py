"""Validation: the task's metrics for the generator and for the task's baselines."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import Tensor, nn

from .device import autocast
from .infer import run_generator

SAMPLE_IMAGES = 4


def _add(sums: dict[str, Tensor], values: Any, name: str) -> None:
    """Add per-image metric values (a tensor, or a dict of tensors) to running sums."""
    if isinstance(values, dict):
        for key, value in values.items():
            _add(sums, value, key)
        return
    value = values.detach().float().reshape(-1).sum()
    sums[name] = sums[name] + value if name in sums else value


def _read(sums: dict[str, Tensor], count: Tensor, dist) -> dict[str, float]:
    if not sums:
        return {}
    keys = list(sums)
    stacked = dist.all_reduce_sum(torch.stack([sums[k] for k in keys] + [count.float()]))
    values = stacked.cpu().tolist()
    total = max(1.0, values[-1])
    return {k: v / total for k, v in zip(keys, values[:-1])}


def _summarize(metrics: dict[str, Any], means: dict[str, float]) -> dict[str, float]:
    out = dict(means)
    for metric in metrics.values():
        summarize = getattr(metric, "summarize", None)
        if summarize is not None:
            out.update(summarize(out))
    return out


def evaluate_generator(
    generator: nn.Module, task, data, metrics: dict[str, Any], eval_cfg: dict, *,
    device: torch.device, dtype: torch.dtype, seed: int, dist,
) -> tuple[dict[str, float], dict[str, dict[str, float]], list[Tensor] | None]:
    """Average each metric over the validation images (per image, then the mean).

    Validation noise comes from a generator seeded the same way at every evaluation, so the
    numbers of two evaluations (or two runs) are comparable. Returns (metrics, baselines,
    sample columns of the first batch).
    """
    was_training = generator.training
    generator.eval()
    rng = torch.Generator(device=device)
    rng.manual_seed(seed * 7919 + 1)
    sums: dict[str, Tensor] = {}
    base_sums: dict[str, dict[str, Tensor]] = defaultdict(dict)
    count = torch.zeros((), device=device)
    first = None
    try:
        for clean, _names in data.val_batches(eval_cfg["crop"], eval_cfg["batch_size"], eval_cfg["max_images"]):
            input, target = task.make_pair(clean, rng)
            with autocast(device, dtype):
                fake = run_generator(generator, input)
            fake = fake.float()
            output_image = task.to_image(fake, input)
            target_image = task.to_image(target, input)
            for name, metric in metrics.items():
                _add(sums, metric(output_image, target_image), name)
            for base_name, base_image in task.baselines(input, target_image).items():
                for name, metric in metrics.items():
                    _add(base_sums[base_name], metric(base_image, target_image), name)
            count += clean.shape[0]
            if first is None:
                first = _columns(task, input, output_image, target_image)
    finally:
        generator.train(was_training)
    means = _summarize(metrics, _read(sums, count, dist))
    baselines = {name: _summarize(metrics, _read(s, count, dist)) for name, s in base_sums.items()}
    return means, baselines, first


def _columns(task, input: Tensor, output: Tensor, target: Tensor) -> list[Tensor]:
    n = SAMPLE_IMAGES
    cols = [output[:n], target[:n]]
    if task.input_is_image:
        cols.insert(0, task.input_image(input[:n]))
    return cols


def sample_columns(generator, task, data, eval_cfg, device, dtype, seed, batch_size) -> list[Tensor]:
    """(input | output | target) columns for a sample grid, on fixed validation images."""
    was_training = generator.training
    generator.eval()
    rng = torch.Generator(device=device)
    rng.manual_seed(seed * 7919 + 1)
    try:
        if data.val_files:
            clean, _ = next(iter(data.val_batches(eval_cfg["crop"], SAMPLE_IMAGES, SAMPLE_IMAGES)))
        else:
            clean = data.preview_batch(batch_size)
        input, target = task.make_pair(clean, rng)
        with autocast(device, dtype):
            fake = run_generator(generator, input).float()
        return _columns(task, input, task.to_image(fake, input), task.to_image(target, input))
    finally:
        generator.train(was_training)
