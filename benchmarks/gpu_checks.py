"""Two correctness checks that need a CUDA GPU, in one short call (about 2 minutes):

1. ``rng``: a program that seeds torch and then lets ``i2i.train`` be the first to use CUDA gets
   CUDA's random stream back as its seed gives it (compared with a fresh process);
2. ``compiled_graphs``: with ``train.compile = true`` the step replayed as a CUDA graph trains
   exactly as the compiled eager step (fp32, deterministic cuDNN, 12 steps, same seed).

    python benchmarks/gpu_checks.py --json OUT.json

Exits with status 1 when a check failed or could not run (no GPU, say).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import json_file  # noqa: E402

RNG_CODE = """
import json, sys, torch
torch.manual_seed(123)
if sys.argv[1] == "after_train":
    import i2i
    recipe = json.loads(sys.argv[2])
    i2i.train(recipe, quiet=True)
print(json.dumps(torch.randn(4, device=sys.argv[3]).tolist()))
"""


def rng_check(scratch: Path, device: str) -> dict:
    from bench_train import PRESETS, i2i_recipe
    from common import write_images

    import tomllib

    data = write_images(scratch / "rng-data", 4, 64, seed=1)
    recipe = tomllib.loads(i2i_recipe(PRESETS["unet128_b1"], data))
    recipe["generator"] = {"name": "unet", "depth": 2, "width": 4}
    recipe["data"]["size"] = 32
    recipe["train"].update(steps=2, device=device)
    recipe["output"] = {"dir": str(scratch / "rng-run"), "tensorboard": False}
    recipe["eval"] = {"crop": 32, "max_images": 1}
    runs = {}
    for label in ("fresh", "after_train"):
        done = subprocess.run([sys.executable, "-c", RNG_CODE, label, json.dumps(recipe), device], capture_output=True,
                              text=True)
        if done.returncode:
            return {"error": done.stderr[-1500:]}
        runs[label] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**runs, "equal": runs["fresh"] == runs["after_train"]}


def failures(results: dict, device: str) -> list[str]:
    """The checks that failed or could not run, each with why."""
    out = []
    rng = results.get("rng", {})
    if "error" in rng or not rng.get("equal"):
        out.append("rng: " + ("it did not run (see its error)" if "error" in rng else "the random values differ"))
    graphs = results.get("compiled_graphs")
    if device == "cuda" and graphs is not None:
        if "error" in graphs:
            out.append("compiled_graphs: it did not run (see its error)")
        elif graphs["graphs"] != "replayed":
            out.append(f"compiled_graphs: the step was not replayed as a graph ({graphs['graphs']})")
        elif graphs["max_abs_weight_diff"] > 1e-3 * graphs["max_abs_param_change"]:  # "exactly", up to rounding
            out.append(f"compiled_graphs: graphed weights differ by {graphs['max_abs_weight_diff']:.3g} "
                       f"(the weights moved by {graphs['max_abs_param_change']:.3g})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=json_file, default=Path("gpu_checks.json"))
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: smoke-test the first check's plumbing only")
    args = ap.parse_args()
    import gpu_bench
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_checks: no CUDA device; these checks need a GPU (--device cpu: the plumbing only)")
    gpu_bench.DEVICE = args.device
    scratch = Path(tempfile.mkdtemp(prefix="i2i-gpu-checks-"))
    try:
        results = run_checks(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    failed = failures(results, args.device)
    if failed:
        raise SystemExit("gpu_checks: failed: " + "; ".join(failed) + f" (see {args.json})")


def run_checks(args, scratch: Path) -> dict:
    import gpu_bench
    from bench_train import Preset
    from common import write_images

    results: dict = {}
    start = time.perf_counter()
    results["rng"] = rng_check(scratch, args.device)
    print(f"[{time.perf_counter() - start:6.1f}s] rng: {results['rng']}", flush=True)
    data = write_images(scratch / "data-128", 8, 143, seed=1)
    if args.device != "cuda":
        args.json.write_text(json.dumps(results, indent=1))
        return results
    try:
        results["compiled_graphs"] = gpu_bench.graph_agreement(Preset("unet_128", 128, 4, dropout=False), data, scratch, steps=12,
                                                               extra=("train.compile=true",))
    except Exception as exc:  # report, do not lose the first check
        results["compiled_graphs"] = {"error": f"{type(exc).__name__}: {str(exc)[-800:]}"}
    print(f"[{time.perf_counter() - start:6.1f}s] compiled_graphs: {results['compiled_graphs']}", flush=True)
    args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
