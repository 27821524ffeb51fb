"""In-process look at one i2i training configuration: where a step's time and memory go.

Builds the engine's ``Trainer`` from the same recipe as ``bench_train.py`` and reports the
steady-state step time (median of ``--steps`` after ``--warmup``), its parts (data + pair,
G forward, D step, G step: each timed on its own call, so they sum to a bit more than a
step), and the resident memory after construction, after training and across a checkpoint.
No subprocesses, so the numbers exclude start-up; use ``bench_train.py`` for the
whole-process measure that the issue asks for.

    python benchmarks/profile_step.py --preset unet256_b1 --set train.channels_last=true
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import PRESETS, scratch_recipe  # noqa: E402
from common import median, non_negative_int, positive_int  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="unet256_b1", choices=sorted(PRESETS))
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override (repeatable)")
    ap.add_argument("--warmup", type=non_negative_int, default=2)
    ap.add_argument("--steps", type=positive_int, default=8)
    ap.add_argument("--parts", action="store_true", help="also time the parts of a step")
    ap.add_argument("--checkpoint", action="store_true", help="also measure a checkpoint's memory and time")
    args = ap.parse_args(argv)

    from i2i.errors import UserError
    from i2i.recipe import load_recipe

    p = PRESETS[args.preset]
    scratch, recipe_file = scratch_recipe(p, "i2i-prof-")
    try:
        profile(args, p, load_recipe(recipe_file, [f"train.steps={10**6}", *args.overrides]), scratch)
    except UserError as exc:  # a --set the recipe or the trainer refuses
        raise SystemExit(f"profile_step: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def profile(args, p, recipe, scratch: Path) -> None:
    import torch

    from i2i.engine.host_memory import freed_memory_kept
    from i2i.engine.trainer import Trainer

    print(f"{args.preset}: torch {torch.__version__}, {torch.get_num_threads()} threads, overrides {args.overrides}")
    print(f"rss at start {rss_mb():.0f} MB")
    trainer = Trainer(recipe, scratch / "run", quiet=True)
    trainer.G.train()
    if trainer.D is not None:
        trainer.D.train()
    print(f"rss after building the trainer {rss_mb():.0f} MB (G {sum(q.numel() for q in trainer.G.parameters()) / 1e6:.1f} M params, "
          f"D {sum(q.numel() for q in trainer.D.parameters()) / 1e6 if trainer.D is not None else 0:.1f} M)")

    # as Trainer.fit does on the CPU: keep freed memory for reuse while stepping
    memory_mode = contextlib.ExitStack()
    if trainer.device.type == "cpu":
        memory_mode.enter_context(freed_memory_kept())
    times = []
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        trainer.train_step()
        trainer.step += 1
        times.append(time.perf_counter() - t)
    steady = times[args.warmup:]
    step = median(steady)
    print(f"step {1000 * step:.0f} ms median (min {1000 * min(steady):.0f}, max {1000 * max(steady):.0f}) "
          f"= {p.batch / step:.2f} img/s; first steps {[round(1000 * x) for x in times[:args.warmup]]} ms")
    print(f"rss after training {rss_mb():.0f} MB, peak {peak_mb():.0f} MB")

    if args.parts:
        trainer._logging_step = False
        parts: dict[str, list[float]] = {"data+pair": [], "G forward": [], "D step": [], "G step": []}
        for _ in range(args.steps):
            t0 = time.perf_counter()
            input, target = trainer.task.make_pair(trainer.data.next_batch(p.batch), trainer.noise_rng)
            t1 = time.perf_counter()
            fake = trainer.generate(input)
            t2 = time.perf_counter()
            trainer.d_step(input, fake.detach(), target)
            t3 = time.perf_counter()
            trainer.g_step(input, fake, target, True)
            t4 = time.perf_counter()
            for k, a, b in (("data+pair", t0, t1), ("G forward", t1, t2), ("D step", t2, t3), ("G step", t3, t4)):
                parts[k].append(b - a)
        print("parts (median ms): " + ", ".join(f"{k} {1000 * median(v):.0f}" for k, v in parts.items()))
        # the optimiser steps alone (on zero gradients: the engine releases them after each step)
        for name, opt in (("G", trainer.opt_g), ("D", trainer.opt_d)):
            if opt is None:
                continue
            for group in opt.param_groups:
                for q in group["params"]:
                    q.grad = torch.zeros_like(q)
            ts = []
            for _ in range(3):
                t = time.perf_counter()
                opt.step()
                ts.append(time.perf_counter() - t)
            print(f"  Adam step {name}: {1000 * median(ts):.0f} ms ({type(opt).__name__}, fused={opt.defaults.get('fused')})")

    if args.checkpoint:
        before = peak_mb()
        t = time.perf_counter()
        trainer.save_checkpoint()
        print(f"checkpoint {time.perf_counter() - t:.2f} s; peak rss {before:.0f} -> {peak_mb():.0f} MB")
    memory_mode.close()


if __name__ == "__main__":
    main()
