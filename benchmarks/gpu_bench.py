"""The whole GPU measurement in one go (about 5-8 minutes on one H100/H200).

Sections, each skipped with a note when the time budget (``--budget`` seconds) runs out:

1. the card: name, torch/CUDA versions, measured bf16 matmul rate (8192^3, TFLOP/s);
2. i2i at the CPU benchmark's rows (``bench_train.PRESETS``) in process, through the engine's
   ``Trainer`` on CUDA with its defaults there (bf16 autocast, cudnn.benchmark) plus
   ``train.channels_last = true``: img/s, ms/step, peak GPU memory; then (2b, ``graphs``) the
   same step captured as one CUDA graph at three of those rows, to measure what graphs would
   buy where kernel launches bound the step (``graphed_rate``; not an engine feature yet);
3. 256 px pix2pix at batch 32 and 64: img/s and model-FLOP utilisation
   (MFU = img/s * 86.9 GFLOP / measured bf16 matmul rate; 86.9 GFLOP per image per pix2pix
   training step at 256 px, from FIELD-NOTES), with fp32 and no-channels_last variants;
4. whole ``i2i run`` processes (short/long difference, as on the CPU) for unet256 batch 1 and 32;
5. ``i2i translate`` of 256 px photos on the GPU: the decode/network/write split;
6. the reference's ``train.py`` on the same card (if ``--reference`` is given): short/long
   difference at unet256 batch 1, unet128 batch 4 and unet256 batch 32;
7. with ``--compile``: ``train.compile = true`` at 256 px, batch 32 and 1.

Writes everything to ``--json`` as it goes. ``benchmarks/run_gpu.sh`` installs what the
device machine lacks and calls this.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import PRESETS, Preset, i2i_command, i2i_recipe, load_size, reference_command  # noqa: E402
from common import median, run_measured, write_images  # noqa: E402

PIX2PIX_GFLOP_256 = 86.9  # per image per training step (G fwd+bwd, D 3 fwd + 2 bwd), FIELD-NOTES

START = time.perf_counter()


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = START + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def log(*parts) -> None:
    print(f"[{time.perf_counter() - START:6.1f}s]", *parts, flush=True)


def matmul_tflops(dtype_name: str = "bfloat16", n: int = 8192, iters: int = 10) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        a @ b
    stop.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(stop) / 1000 / iters
    return 2 * n**3 / seconds / 1e12


DEVICE = "cuda"  # --device cpu: a smoke test of this script on a machine without a GPU


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def build_trainer(p: Preset, data_dir: Path, scratch: Path, overrides: list[str]):
    """The engine's ``Trainer`` for preset ``p`` on DEVICE, in training mode: (trainer, run_dir)."""
    from i2i.engine.trainer import Trainer
    from i2i.recipe import load_recipe

    recipe_file = scratch / "recipe.toml"
    recipe_file.write_text(i2i_recipe(p, data_dir))
    recipe = load_recipe(recipe_file, ["train.steps=1000000", f'train.device="{DEVICE}"', *overrides])
    run_dir = Path(tempfile.mkdtemp(dir=scratch, prefix="run-"))
    trainer = Trainer(recipe, run_dir, quiet=True)
    trainer.G.train()
    if trainer.D is not None:
        trainer.D.train()
    return trainer, run_dir


def time_steps(step, batch: int, seconds: float, max_steps: int) -> dict:
    """Steady-state rate of ``step()``: at least 10 calls, then until ``seconds`` have passed
    (checked every 10 calls, one device sync each), synchronised at both ends."""
    import torch

    sync()
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    steps = 0
    while steps < max_steps:
        for _ in range(10):
            step()
        steps += 10
        sync()
        if time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    return {
        "img_per_s": steps * batch / elapsed, "step_ms": 1000 * elapsed / steps, "steps": steps,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if DEVICE == "cuda" else None,
    }


def release(trainer, run_dir: Path) -> None:
    import torch

    del trainer
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    shutil.rmtree(run_dir, ignore_errors=True)


def trainer_rate(p: Preset, data_dir: Path, scratch: Path, overrides: list[str], *, warmup: int, seconds: float,
                 max_steps: int = 400) -> dict:
    """Steady-state img/s of the engine's step, in process, synchronised at both ends."""
    t_build = time.perf_counter()
    trainer, run_dir = build_trainer(p, data_dir, scratch, overrides)
    build_s = time.perf_counter() - t_build
    t_warm = time.perf_counter()
    for _ in range(warmup):
        trainer.train_step()
        trainer.step += 1
    sync()
    warm_s = time.perf_counter() - t_warm

    def step() -> None:
        trainer.train_step()
        trainer.step += 1

    result = time_steps(step, p.batch, seconds, max_steps)
    result.update(dtype=str(trainer.dtype).replace("torch.", ""), build_s=round(build_s, 2),
                  warmup_s=round(warm_s, 2), overrides=overrides)
    release(trainer, run_dir)
    return result


def graphed_rate(p: Preset, data_dir: Path, scratch: Path, overrides: list[str], *, warmup: int, seconds: float,
                 max_steps: int = 4000) -> dict:
    """What CUDA graphs would buy, measured before building them into the engine.

    The engine's G forward, D step and G step are captured as one CUDA graph on static input
    and target buffers, then replayed each step after the next batch is copied in. Outside the
    graph, as they would have to stay: the data (its crop plan is made on the host), the LR
    schedule (a float would be baked into the graph) and the logging steps' extras. Under
    capture autocast's weight-cast cache must be off and the optimisers capturable. On the
    CPU (the smoke test) the same step runs eagerly instead of replaying.
    """
    import contextlib

    import torch

    import i2i.engine.trainer as trainer_module

    plain_autocast = trainer_module.autocast
    trainer_module.autocast = lambda device, dtype: (
        contextlib.nullcontext() if dtype == torch.float32
        else torch.autocast(device.type, dtype=dtype, cache_enabled=False))
    trainer, run_dir = build_trainer(p, data_dir, scratch, overrides)
    try:
        for optimizer in (trainer.opt_g, trainer.opt_d):
            for group in optimizer.param_groups:
                group["capturable"] = True
        trainer._logging_step = False

        def next_pair():
            return trainer.task.make_pair(trainer.data.next_batch(p.batch), trainer.noise_rng)

        static_input, static_target = (t.clone() for t in next_pair())

        def captured() -> None:
            fake = trainer.generate(static_input)
            trainer.d_step(static_input, fake.detach(), static_target)
            trainer.g_step(static_input, fake, static_target, True)

        t_warm = time.perf_counter()
        if DEVICE == "cuda":
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    captured()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                captured()
            replay = graph.replay
        else:
            for _ in range(warmup):
                captured()
            replay = captured
        sync()
        warm_s = time.perf_counter() - t_warm

        def step() -> None:
            input, target = next_pair()
            static_input.copy_(input)
            static_target.copy_(target)
            replay()

        result = time_steps(step, p.batch, seconds, max_steps)
        result.update(dtype=str(trainer.dtype).replace("torch.", ""), warmup_and_capture_s=round(warm_s, 2),
                      overrides=overrides, graphed=DEVICE == "cuda")
        return result
    finally:
        trainer_module.autocast = plain_autocast
        release(trainer, run_dir)


def process_rate(python: str, p: Preset, recipe: Path, scratch: Path, short: int, long: int, overrides: list[str]) -> dict:
    times = {}
    for label, steps in (("short", short), ("long", long)):
        out = scratch / f"proc-{label}"
        m = run_measured(i2i_command(python, recipe, steps, out, [f'train.device="{DEVICE}"', *overrides]))
        if m.returncode:
            raise RuntimeError(m.output[-3000:])
        times[label] = m.seconds
        shutil.rmtree(out, ignore_errors=True)
    d = times["long"] - times["short"]
    return {"img_per_s": (long - short) * p.batch / d, "short_s": times["short"], "long_s": times["long"],
            "steps": [short, long], "max_rss_mb": m.max_rss_mb}


def reference_rate(python: str, ref: Path, p: Preset, scratch: Path, short: int, long: int, env: dict, threads: int) -> dict:
    root = scratch / f"ref-{p.task}-{p.size}-{p.batch}"
    write_images(root / "train", long * p.batch, load_size(p.size), seed=2, aligned=p.task != "colorization")
    times = {}
    for label, steps in (("short", short), ("long", long)):
        ckpt = scratch / f"refckpt-{label}"
        m = run_measured(reference_command(python, p, root, steps, ckpt, threads), cwd=ref, env=env)
        if m.returncode:
            raise RuntimeError(m.output[-3000:])
        times[label] = m.seconds
        shutil.rmtree(ckpt, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    d = times["long"] - times["short"]
    return {"img_per_s": (long - short) * p.batch / d, "short_s": times["short"], "long_s": times["long"],
            "steps": [short, long], "num_threads": threads}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=Path("gpu_results.json"))
    ap.add_argument("--budget", type=float, default=450, help="seconds for the whole measurement")
    ap.add_argument("--reference", type=Path, help="checkout of the reference (its train.py)")
    ap.add_argument("--ref-threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds per in-process configuration")
    ap.add_argument("--compile", action="store_true", help="last, also try train.compile at batch 32 and 1 (1-2 min each)")
    ap.add_argument("--device", default="cuda", help="cpu: smoke-test this script without a GPU (tiny settings)")
    ap.add_argument("--skip", action="append", default=[], help="section to skip: rows, graphs, large, process, translate, reference")
    args = ap.parse_args(argv)
    budget = Budget(args.budget)
    global DEVICE
    DEVICE = args.device

    import torch

    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "sections": {}}

    def save() -> None:
        args.json.write_text(json.dumps(results, indent=1))

    import kornia

    import i2i

    results["card"] = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                       "kornia": kornia.__version__, "i2i": i2i.__version__, "python": sys.version.split()[0],
                       "cpus": os.cpu_count()}
    if DEVICE == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("gpu_bench: no CUDA device")
        props = torch.cuda.get_device_properties(0)
        results["card"].update(name=props.name, memory_gb=round(props.total_memory / 1e9, 1), sms=props.multi_processor_count)
        rate = matmul_tflops()
    else:
        results["card"]["name"] = "cpu (smoke test)"
        rate = 1.0
    results["card"]["bf16_matmul_tflops"] = round(rate, 1)
    log(f"card {results['card']['name']}: bf16 matmul {rate:.0f} TFLOP/s; torch {torch.__version__}")
    save()

    smoke = DEVICE != "cuda"  # tiny settings, only to check that every section runs
    scratch = Path(tempfile.mkdtemp(prefix="i2i-gpu-"))
    data_dirs = {s: write_images(scratch / f"data-{s}", 8, load_size(s), seed=1) for s in (128, 256)}
    fast = ["train.channels_last=true"]  # bf16 autocast and cudnn.benchmark are the CUDA defaults

    def section(name: str, need: float):
        if name in args.skip:
            log(f"section {name}: skipped (--skip)")
            return False
        if budget.left() < need:
            results["sections"].setdefault(name, {})["skipped"] = f"time budget: {budget.left():.0f} s left, needs ~{need:.0f}"
            log(f"section {name}: skipped, {budget.left():.0f} s left")
            return False
        return True

    def guarded(name: str, key: str, fn):
        try:
            value = fn()
        except Exception as exc:  # one failing configuration must not lose the others
            value = {"error": f"{type(exc).__name__}: {str(exc)[-800:]}"}
            traceback.print_exc()
        results["sections"].setdefault(name, {})[key] = value
        save()
        return value

    # 2. the CPU rows on the GPU
    if section("rows", 60):
        for name in ("unet128_b1",) if smoke else ("unet256_b1", "unet256_b4", "unet128_b1", "unet128_b4", "color128_b1"):
            if budget.left() < 40:
                break
            p = PRESETS[name]
            r = guarded("rows", name, lambda: trainer_rate(p, data_dirs[p.size], scratch, fast, warmup=1 if smoke else 15, seconds=args.seconds))
            log(f"rows {name}: {r}")

    # 2b. the same step captured as one CUDA graph: what graphs would buy where launches bound it
    if section("graphs", 40):
        for name in ("unet128_b1",) if smoke else ("unet256_b1", "unet128_b1", "unet256_b4"):
            if budget.left() < 30:
                break
            p = PRESETS[name]
            r = guarded("graphs", name, lambda: graphed_rate(p, data_dirs[p.size], scratch, fast, warmup=1 if smoke else 5, seconds=args.seconds))
            eager = results["sections"].get("rows", {}).get(name, {})
            if "img_per_s" in r and "img_per_s" in eager:
                r["speedup_over_eager"] = r["img_per_s"] / eager["img_per_s"]
            log(f"graphs {name}: {r}")

    # 3. large batches, MFU and variants
    if section("large", 60):
        b1, b2 = (1, 2) if smoke else (32, 64)
        big = {b: Preset("unet_256", 256, b, note=f"pix2pix 256 px batch {b}") for b in (b1, b2)}
        variants = [("bf16_cl", b1, fast), ("bf16_cl", b2, fast), ("bf16", b1, []),
                    ("fp32_cl", b1, ['train.precision="fp32"', *fast])]
        for label, batch, overrides in variants:
            if budget.left() < (150 if "compile" in label else 40):
                break
            r = guarded("large", f"{label}_b{batch}",
                        lambda: trainer_rate(big[batch], data_dirs[256], scratch, overrides, warmup=1 if smoke else 10, seconds=args.seconds))
            if "img_per_s" in r:
                r["tflops"] = r["img_per_s"] * PIX2PIX_GFLOP_256 / 1000
                r["mfu"] = r["tflops"] / rate
            log(f"large {label} b{batch}: {r}")
        save()

    # 4. whole processes
    if section("process", 90):
        runs = (("unet128_b1", PRESETS["unet128_b1"], 1, 3),) if smoke else (
            ("unet256_b1", PRESETS["unet256_b1"], 20, 220), ("unet256_b32", Preset("unet_256", 256, 32), 10, 60))
        for name, p, short, long in runs:
            if budget.left() < 60:
                break
            recipe = scratch / f"{name}.toml"
            recipe.write_text(i2i_recipe(p, data_dirs[p.size]))
            r = guarded("process", name, lambda: process_rate(sys.executable, p, recipe, scratch, short, long, fast))
            log(f"process {name}: {r}")

    # 5. translate
    if section("translate", 40):
        from bench_translate import run as translate_run

        r = guarded("translate", "unet256_b16", lambda: translate_run("unet_256", 4 if smoke else 64, 256, 2 if smoke else 16, DEVICE, repeats=1 if smoke else 2))
        log(f"translate: {r.get('img_per_s')} img/s, share {r.get('share')}")

    # 6. the reference on the same card
    if args.reference and section("reference", 60):
        env = dict(os.environ)
        runs = (("unet128_b1", PRESETS["unet128_b1"], 1, 3),) if smoke else (
            ("unet256_b1", PRESETS["unet256_b1"], 20, 120), ("unet128_b4", PRESETS["unet128_b4"], 20, 120),
            ("unet256_b32", Preset("unet_256", 256, 32), 4, 16))
        for name, p, short, long in runs:
            if budget.left() < 60:
                break
            r = guarded("reference", name, lambda: reference_rate(sys.executable, args.reference, p, scratch, short, long, env, args.ref_threads))
            log(f"reference {name}: {r}")

    # 7. torch.compile at the large batch and at batch 1 (last: compiling costs a minute or two)
    if args.compile and section("compile", 120):
        for batch in (1, 2) if smoke else (32, 1):
            if budget.left() < 100:
                break
            p = Preset("unet_256", 256, batch, note=f"pix2pix 256 px batch {batch}, compiled")
            r = guarded("compile", f"bf16_cl_compile_b{batch}",
                        lambda: trainer_rate(p, data_dirs[256], scratch, [*fast, "train.compile=true"], warmup=2 if smoke else 12, seconds=args.seconds))
            if "img_per_s" in r:
                r["tflops"] = r["img_per_s"] * PIX2PIX_GFLOP_256 / 1000
                r["mfu"] = r["tflops"] / rate
            log(f"compile b{batch}: {r}")

    shutil.rmtree(scratch, ignore_errors=True)
    results["elapsed_s"] = round(time.perf_counter() - START, 1)
    save()
    log(f"done; results in {args.json}")
    return results


if __name__ == "__main__":
    main()
