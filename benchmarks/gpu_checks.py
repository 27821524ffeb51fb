"""Three correctness checks that need a CUDA GPU, in one short call (about 2-3 minutes):

1. ``rng``: a program that seeds torch and then lets ``i2i.train`` be the first to use CUDA gets
   CUDA's random stream back as its seed gives it (compared with a fresh process);
2. ``compiled_graphs``: with ``train.compile = true`` the step replayed as a CUDA graph trains
   exactly as the compiled eager step (fp32, deterministic cuDNN, 12 steps, same seed);
3. ``resume``: a run trained 4 steps, checkpointed and resumed for 4 more ends with the weights
   and Adam moments of a run trained 8 steps straight, on CUDA's defaults (channels_last, CUDA
   graphs; fp32, deterministic cuDNN). On the CPU a channels_last resume once paired each
   weight with another's moments (tests/test_fast_paths.py checks the fix there).

    python benchmarks/gpu_checks.py --json OUT.json [--only rng --only resume ...]

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


def resume_check(scratch: Path, device: str) -> dict:
    """8 steps straight against 4 + a resume for 4, in this process (the same cuDNN choices):
    the largest difference of each checkpoint file at step 8, beside how far training moved G."""
    import i2i
    import torch
    from bench_train import PRESETS, i2i_recipe
    from common import write_images
    from safetensors.torch import load_file

    import tomllib

    data = write_images(scratch / "resume-data", 8, 143, seed=1)
    base = tomllib.loads(i2i_recipe(PRESETS["unet128_b4"], data))
    base["generator"]["dropout"] = False  # dropout draws from CUDA's stream, which a resume does not restore
    base["train"].update(device=device, precision="fp32", seed=3)
    base["output"] = {"checkpoint_every": 4, "tensorboard": False, "log_every": 1000}
    deterministic = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    try:
        for name, steps in (("straight", 8), ("resumed", 4)):
            recipe = {**base, "train": {**base["train"], "steps": steps}, "output": {**base["output"], "dir": str(scratch / name)}}
            i2i.train(recipe, quiet=True)
        i2i.train(None, resume=scratch / "resumed", overrides=["train.steps=8"], quiet=True)
    finally:
        torch.backends.cudnn.deterministic = deterministic
    out: dict = {}
    for name in ("generator", "discriminator", "optim_g", "optim_d"):
        straight, resumed = (load_file(scratch / run / "checkpoints" / "step_0000008" / f"{name}.safetensors")
                             for run in ("straight", "resumed"))
        out[f"{name}_max_abs_diff"] = max((straight[k].float() - resumed[k].float()).abs().max().item() for k in straight)
    first = load_file(scratch / "straight" / "checkpoints" / "step_0000004" / "generator.safetensors")
    last = load_file(scratch / "straight" / "checkpoints" / "step_0000008" / "generator.safetensors")
    out["generator_change_steps_5_to_8"] = max((last[k].float() - first[k].float()).abs().max().item() for k in last
                                               if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    run = json.loads((scratch / "resumed" / "run.json").read_text())
    out["speed"] = run.get("speed")
    return out


def failures(results: dict, device: str) -> list[str]:
    """The checks that failed or could not run, each with why."""
    out = []
    rng = results.get("rng")
    if rng is not None and ("error" in rng or not rng.get("equal")):
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
    resume = results.get("resume")
    if resume is not None:
        if "error" in resume:
            out.append("resume: it did not run (see its error)")
        else:
            worst = max(v for k, v in resume.items() if k.endswith("_max_abs_diff"))
            if worst > 1e-3 * resume["generator_change_steps_5_to_8"]:
                out.append(f"resume: the resumed run's checkpoint differs by {worst:.3g} (training moved G by "
                           f"{resume['generator_change_steps_5_to_8']:.3g} in those steps)")
    return out


CHECKS = ("rng", "compiled_graphs", "resume")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=json_file, default=Path("gpu_checks.json"))
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: smoke-test the plumbing of rng and resume (compiled_graphs needs CUDA)")
    ap.add_argument("--only", action="append", choices=CHECKS, default=[], help="run only this check (repeatable)")
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
    chosen = args.only or list(CHECKS)

    def compiled_graphs() -> dict:
        data = write_images(scratch / "data-128", 8, 143, seed=1)
        return gpu_bench.graph_agreement(Preset("unet_128", 128, 4, dropout=False), data, scratch, steps=12,
                                         extra=("train.compile=true",))

    checks = {"rng": lambda: rng_check(scratch, args.device), "compiled_graphs": compiled_graphs,
              "resume": lambda: resume_check(scratch, args.device)}
    for name in chosen:
        if name == "compiled_graphs" and args.device != "cuda":
            continue
        try:
            results[name] = checks[name]()
        except Exception as exc:  # report, do not lose the other checks
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[-800:]}"}
        print(f"[{time.perf_counter() - start:6.1f}s] {name}: {results[name]}", flush=True)
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
