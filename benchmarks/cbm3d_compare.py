"""CBM3D, the classical state of the art, on the same noisy validation images as a denoise run.

``i2i eval`` compares a denoiser with the noisy input and the best Gaussian blur; this script
adds CBM3D (the ``bm3d`` package, a benchmark-only dependency) on exactly the same images and
the same validation noise, so "how close to CBM3D" is answered side by side:

    pip install bm3d
    python benchmarks/cbm3d_compare.py runs/denoise-unet
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn


class CBM3D(nn.Module):
    """Stands in for a generator: noisy images on the task's [-1, 1] scale in, denoised out."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import bm3d
        import numpy as np

        out = []
        for image in x.float().cpu():
            noisy = ((image + 1) / 2).permute(1, 2, 0).numpy().astype(np.float64)
            if noisy.shape[2] == 3:
                clean = bm3d.bm3d_rgb(noisy, self.sigma / 255)
            else:
                clean = bm3d.bm3d(noisy[..., 0], self.sigma / 255)[..., None]
            out.append(torch.from_numpy(np.ascontiguousarray(clean)).float().permute(2, 0, 1))
        return torch.stack(out).to(x.device) * 2 - 1


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        import bm3d  # noqa: F401  (checked before any work: failing inside scoring read as a generator's fault)
    except ImportError:
        raise SystemExit("cbm3d_compare.py: needs the bm3d package, a benchmark-only dependency: pip install bm3d")

    from i2i.data import ImageData
    from i2i.engine.distributed import DistContext
    from i2i.engine.evaluate import evaluate_generator
    from i2i.evaluation import evaluate_run
    from i2i.model import load
    from i2i.plugins import registry

    result = evaluate_run(args.run_dir, device="cpu")
    model = load(args.run_dir, device="cpu")
    if model.recipe["task"]["name"] != "denoise" or model.task.sigma_lo != model.task.sigma_hi:
        raise SystemExit("cbm3d_compare: needs a run of the denoise task with one fixed sigma")
    recipe = model.recipe
    data = ImageData(recipe["data"], channels=model.task.image_channels, device=model.device, seed=recipe["train"]["seed"])
    metrics = {name: registry().build("metrics", name) for name in model.task.metrics}
    start = time.perf_counter()
    with torch.inference_mode():
        cbm3d, _, _, _ = evaluate_generator(CBM3D(model.task.sigma_lo), model.task, data, metrics, recipe["eval"],
                                         device=model.device, dtype=torch.float32, dist=DistContext.single())
    result["baselines"]["cbm3d"] = cbm3d
    result["cbm3d_seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{result['task']} on {result['images']} image(s) ({result['source']}), step {result['step']}")
        rows = {"model": result["metrics"], **result["baselines"]}
        names = list(result["metrics"])
        print(f"{'':24}" + "".join(f"{n:>10}" for n in names))
        for label, values in rows.items():
            print(f"{label:24}" + "".join(f"{values.get(n, float('nan')):10.4f}" for n in names))
    return result


if __name__ == "__main__":
    main()
