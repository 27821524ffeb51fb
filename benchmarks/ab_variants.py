"""Interleaved A/B of i2i speed options, in one process, for a noisy shared machine.

Builds one engine ``Trainer`` per variant (same recipe, different overrides), then runs
rounds: ``--chunk`` steps of each variant in turn, ``--rounds`` times, so that every variant
sees the same machine conditions. Reports the median step time per variant and its ratio to
the first. A variant is ``name:override;override;threads=N`` (``threads`` sets
``torch.set_num_threads`` for that variant's steps).

    python benchmarks/ab_variants.py --preset unet128_b1 \\
        --variant 'default:' --variant 'cl:train.channels_last=true' --variant 'bf16:train.precision="bf16"'
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import PRESETS, scratch_recipe  # noqa: E402
from common import (cpu_busy_seconds, json_file, median, non_negative_int, positive_int, unique_names,  # noqa: E402
                    variant, wait_for_quiet)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="unet128_b1", choices=sorted(PRESETS))
    ap.add_argument("--variant", action="append", default=[], type=variant,
                    help="'name:override;override;threads=N' (repeatable; default: one 'default:')")
    ap.add_argument("--warmup", type=non_negative_int, default=2)
    ap.add_argument("--chunk", type=positive_int, default=2, help="steps of one variant per round")
    ap.add_argument("--rounds", type=positive_int, default=5)
    ap.add_argument("--quiet", type=float, default=0.15,
                    help="before each round wait (up to --max-wait s) until other processes use less than this share of the cores")
    ap.add_argument("--max-wait", type=float, default=60.0)
    ap.add_argument("--max-foreign", type=float, default=0.10,
                    help="drop a round during which other processes used more than this share of the cores")
    ap.add_argument("--json", type=json_file)
    args = ap.parse_args(argv)
    unique_names(ap, args.variant)
    specs = []  # (name, recipe overrides, thread count or None)
    for name, items in args.variant or [("default", [])]:
        overrides, threads = [], None
        for item in items:
            if item.startswith("threads="):
                value = item.split("=", 1)[1].strip()
                if not value.isdigit() or int(value) < 1:
                    ap.error(f"argument --variant: variant {name!r}: threads={value}: expected a whole number of 1 or more")
                threads = int(value)
            else:
                overrides.append(item)
        specs.append((name, overrides, threads))

    import torch

    from i2i.engine.trainer import Trainer
    from i2i.errors import UserError
    from i2i.recipe import load_recipe

    p = PRESETS[args.preset]
    scratch, recipe_file = scratch_recipe(p, "i2i-ab-")
    try:
        default_threads = torch.get_num_threads()
        variants = []
        for name, overrides, threads in specs:
            try:
                recipe = load_recipe(recipe_file, ["train.steps=1000000", *overrides])
                trainer = Trainer(recipe, scratch / f"run-{name}", quiet=True)
            except UserError as exc:  # an override the recipe or the trainer refuses
                raise SystemExit(f"ab_variants: variant {name!r}: {exc}") from None
            trainer.G.train()
            if trainer.D is not None:
                trainer.D.train()
            variants.append({"name": name, "overrides": overrides, "threads": threads or default_threads,
                             "trainer": trainer, "times": []})
        return measure(args, p, variants, default_threads)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure(args, p, variants: list[dict], default_threads: int) -> dict:
    """Warm each variant up, then interleave rounds of ``--chunk`` steps; prints and returns the rows."""
    import os
    import resource

    import torch

    def own_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def steps(v, n):
        torch.set_num_threads(v["threads"])
        times = []
        for _ in range(n):
            t = time.perf_counter()
            v["trainer"].train_step()
            v["trainer"].step += 1
            times.append(time.perf_counter() - t)
        return times

    for v in variants:
        steps(v, args.warmup)
    kept = dropped = 0
    foreign_all = []
    while kept < args.rounds and dropped < 3 * args.rounds:
        wait_for_quiet(args.quiet, args.max_wait)
        busy0, cpu0, t0 = cpu_busy_seconds(), own_cpu(), time.perf_counter()
        round_times = [steps(v, args.chunk) for v in variants]
        foreign = max(0.0, (cpu_busy_seconds() - busy0) - (own_cpu() - cpu0)) / ((time.perf_counter() - t0) * (os.cpu_count() or 1))
        foreign_all.append(round(foreign, 3))
        if foreign > args.max_foreign:
            dropped += 1
            print(f"  (round dropped: other processes used {100 * foreign:.0f}% of the cores)", flush=True)
            continue
        kept += 1
        for v, ts in zip(variants, round_times):
            v["times"].extend(ts)
    if not kept:
        raise SystemExit("ab_variants: the machine was never quiet enough; raise --max-foreign")
    torch.set_num_threads(default_threads)
    base = median(variants[0]["times"])
    out = {"preset": args.preset, "batch": p.batch, "rounds": kept, "dropped_rounds": dropped, "chunk": args.chunk,
           "foreign_load_per_round": foreign_all, "variants": {}}
    print(f"{args.preset} (batch {p.batch}), {kept} rounds x {args.chunk} steps, interleaved ({dropped} disturbed rounds dropped):")
    for v in variants:
        m = median(v["times"])
        out["variants"][v["name"]] = {"step_ms": 1000 * m, "img_per_s": p.batch / m, "vs_first": base / m,
                                      "overrides": v["overrides"], "threads": v["threads"],
                                      "min_ms": 1000 * min(v["times"]), "max_ms": 1000 * max(v["times"])}
        print(f"  {v['name']:>12}: {1000 * m:7.0f} ms/step ({1000 * min(v['times']):.0f}-{1000 * max(v['times']):.0f})  "
              f"{p.batch / m:6.2f} img/s  x{base / m:.2f} vs {variants[0]['name']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
