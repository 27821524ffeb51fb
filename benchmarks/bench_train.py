"""Training throughput of i2i (whole ``i2i run`` processes) and, optionally, of the reference.

Each measurement is the difference between a short run (``--warmup`` steps) and a long one
(``--warmup + --steps`` steps) of the same configuration, so process start-up, data decoding,
the final evaluation and checkpoint cancel out:

    img/s = steps * batch / (t_long - t_short)

and the ratio to the reference is the median over repeats of the ratio of side-by-side rates.

Runs are interleaved (i2i short, reference short, i2i long, reference long, per repeat) so both
see the same machine conditions. Memory: ``max_rss`` is ru_maxrss from wait4 (the largest
single process), ``tree_pss`` the sampled peak of the summed PSS over the process tree (the
main process plus any data-loader workers; shared pages are split, not double counted), both
from the long runs.

The presets reproduce the rows of the reference's published numbers (see ``PRESETS``):
pix2pix rows train i2i's ``denoise`` task with ``residual = false`` and ``sigma = 25``, so G
and D are exactly pix2pix's (3 -> 3 channels, conditional PatchGAN on 6 channels), with the
reference's loss (vanilla GAN + 100 * L1) and Adam(2e-4, betas 0.5/0.999). The reference
trains on an aligned A|B folder of the same synthetic images (A = B + noise).

Examples::

    python benchmarks/bench_train.py --preset unet256_b1 --warmup 3 --steps 15
    python benchmarks/bench_train.py --preset unet128_b4 --reference /tmp/pix2pix \\
        --ref-pythonpath /tmp/ref_site --json results.json
    python benchmarks/bench_train.py --preset unet128_b1 \\
        --variant 'cl:train.channels_last=true' --variant 'bf16:train.precision="bf16"' \\
        --variant 'threads1:env.OMP_NUM_THREADS=1' --variant 'stream:data.cache_gb=0'
    python benchmarks/bench_train.py --preset unet128_b1 --busy 1 --variant 'pinned:train.threads=2'

Variants: ``NAME:KEY=VALUE;KEY=VALUE...``: ``key=value`` recipe overrides, ``env.VAR=value``
environment (``NAME:`` alone: i2i's default configuration under another label).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (Measured, json_file, machine_info, median, non_negative_int, positive_int, python_versions,  # noqa: E402
                    reference_checkout, run_measured, unique_names, variant, wait_for_quiet, write_images)


@dataclass(frozen=True)
class Preset:
    generator: str
    size: int
    batch: int
    task: str = "pix2pix"  # the reference's model: pix2pix (3->3 paired; i2i's denoise, residual off) | colorization (L -> ab)
    norm: str = "batch"  # G and D normalisation (the reference's --norm)
    dropout: bool = True  # the reference's default (not --no_dropout) for pix2pix
    note: str = ""


PRESETS: dict[str, Preset] = {
    "unet256_b1": Preset("unet_256", 256, 1, note="pix2pix unet_256 + PatchGAN 256 px batch 1"),
    "unet256_b4": Preset("unet_256", 256, 4, note="pix2pix unet_256 + PatchGAN 256 px batch 4"),
    "unet128_b1": Preset("unet_128", 128, 1, note="pix2pix unet_128 + PatchGAN 128 px batch 1"),
    "unet128_b4": Preset("unet_128", 128, 4, note="pix2pix unet_128 + PatchGAN 128 px batch 4"),
    "color128_b1": Preset("unet_128", 128, 1, task="colorization", note="colourisation L->ab unet_128 + PatchGAN 128 px batch 1"),
    # Not the reference's CycleGAN row (two G, two D, cycle losses): the same resnet_9blocks G
    # trained paired (the reference's pix2pix model with --netG resnet_9blocks), instance norm.
    "resnet9_128_b1": Preset("resnet_9blocks", 128, 1, norm="instance", dropout=False,
                             note="paired resnet_9blocks (instance norm) + PatchGAN 128 px batch 1"),
}

#: the reference's published img/s on 2 cores (issue 6), for orientation in the output
PUBLISHED_REF = {"unet256_b1": "1.27-1.35", "unet256_b4": "1.76-1.80", "unet128_b1": "2.41-2.57",
                 "unet128_b4": "4.87-5.24", "color128_b1": "2.23-2.61"}


def load_size(size: int) -> int:
    """pix2pix's load size for a crop size (286 for 256): images are written at this size."""
    return round(size * 286 / 256)


# -- i2i ---------------------------------------------------------------------------------------------
def i2i_recipe(p: Preset, data_dir: Path) -> str:
    if p.task == "colorization":
        task = '[task]\nname = "gray2color"\n'
    else:
        task = '[task]\nname = "denoise"\nsigma = 25.0\nresidual = false\n'
    return f"""# written by benchmarks/bench_train.py
{task}
[data]
source = "{data_dir}"
size = {p.size}
val_fraction = 0.125

[generator]
name = "{p.generator}"
norm = "{p.norm}"
dropout = {str(p.dropout).lower()}

[discriminator]
name = "patchgan"
n_layers = 3
norm = "{p.norm}"

[losses.gan]
name = "vanilla"
weight = 1.0

[losses.l1]
weight = 100.0

[train]
steps = 1
batch_size = {p.batch}
device = "cpu"
seed = 0

[eval]
crop = {p.size}
batch_size = 1
max_images = 1

[output]
log_every = 1000000
tensorboard = false
progress = "none"
"""


def scratch_recipe(p: Preset, prefix: str) -> tuple[Path, Path]:
    """A scratch folder with 8 synthetic images and the i2i recipe for preset ``p``: (folder, recipe)."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        data = write_images(scratch / "data", 8, load_size(p.size), seed=1)
        recipe_file = scratch / "recipe.toml"
        recipe_file.write_text(i2i_recipe(p, data))
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return scratch, recipe_file


def i2i_command(python: str, recipe: Path, steps: int, out: Path, overrides: list[str]) -> list[str]:
    """``i2i run RECIPE --set train.steps=STEPS`` as a command line."""
    entry = ["-m", "i2i"]
    cmd = [python, *entry, "run", str(recipe), "--quiet", "--out", str(out), "--set", f"train.steps={steps}"]
    for o in overrides:
        cmd += ["--set", o]
    return cmd


# -- the reference -------------------------------------------------------------------------------------
def reference_command(python: str, p: Preset, dataroot: Path, steps: int, ckpt_dir: Path, threads: int) -> list[str]:
    model = ["--model", "colorization", "--dataset_mode", "colorization"] if p.task == "colorization" else [
        "--model", "pix2pix", "--dataset_mode", "aligned"]
    cmd = [python, "train.py", "--dataroot", str(dataroot), "--name", "bench", "--checkpoints_dir", str(ckpt_dir),
           *model, "--netG", p.generator, "--netD", "basic", "--norm", p.norm, "--gan_mode", "vanilla",
           "--lambda_L1", "100", "--batch_size", str(p.batch), "--load_size", str(load_size(p.size)),
           "--crop_size", str(p.size), "--n_epochs", "1", "--n_epochs_decay", "0",
           "--max_dataset_size", str(steps * p.batch), "--no_html", "--num_threads", str(threads)]
    if not p.dropout:
        cmd.append("--no_dropout")
    return cmd


# -- driver -----------------------------------------------------------------------------------------------
@dataclass
class Series:
    """All runs of one (preset, implementation/variant)."""

    name: str
    short: list[Measured] = field(default_factory=list)
    long: list[Measured] = field(default_factory=list)

    def summary(self, steps: int, batch: int) -> dict:
        diffs = [lg.seconds - sh.seconds for sh, lg in zip(self.short, self.long)]
        # a long run not slower than its short one (start-up noise above the timed steps) has no rate
        slower = [d for d in diffs if d > 0]
        return {
            "img_per_s": median([steps * batch / d for d in slower]) if slower else None,
            "img_per_s_all": [round(steps * batch / d, 3) if d > 0 else None for d in diffs],
            "step_ms": 1000 * median(slower) / steps if slower else None,
            "repeats_without_rate": len(diffs) - len(slower),
            "short_s": [round(m.seconds, 2) for m in self.short],
            "long_s": [round(m.seconds, 2) for m in self.long],
            "max_rss_mb": max((m.max_rss_mb for m in self.long), default=None),
            "tree_pss_mb": max((m.peak_tree_pss_mb for m in self.long), default=None),
            "foreign_load": [round(m.foreign, 3) for m in self.short + self.long],
        }


def parse_variant(text: str | tuple[str, list[str]]) -> tuple[str, list[str], dict[str, str]]:
    """``name:key=value;key=value``: recipe overrides, and ``env.VAR=value`` environment."""
    name, items = variant(text) if isinstance(text, str) else text
    overrides, env = [], {}
    for item in items:
        key, _, value = item.partition("=")
        if key.startswith("env."):
            env[key[4:]] = value
        else:
            overrides.append(item)
    return name, overrides, env


def check(m: Measured, what: str) -> Measured:
    if m.returncode != 0:
        sys.stderr.write(m.output[-4000:])
        raise SystemExit(f"bench_train: {what} failed with status {m.returncode}")
    return m


def measure(cmd: list[str], what: str, args, **kwargs) -> Measured:
    """Run once the machine is quiet; rerun (up to ``--retries``) when other processes took more
    than ``--max-foreign`` of the cores meanwhile, keeping the least disturbed run."""
    if args.busy:  # the load is the point: measure as it is
        return check(run_measured(cmd, **kwargs), what)
    best: Measured | None = None
    for attempt in range(args.retries + 1):
        load, waited = wait_for_quiet(args.quiet_threshold, args.max_wait)
        m = check(run_measured(cmd, **kwargs), what)
        if best is None or m.foreign < best.foreign:
            best = m
        if m.foreign <= args.max_foreign:
            break
        then = "again" if attempt < args.retries else "no retries left: keeping the least disturbed run"
        print(f"    ({what}: other processes used {100 * m.foreign:.0f}% of the cores; {then})", flush=True)
    return best


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", choices=sorted(PRESETS), help="repeatable (default: unet256_b1)")
    ap.add_argument("--warmup", type=positive_int, default=3, help="steps of the short run")
    ap.add_argument("--steps", type=positive_int, default=15, help="extra steps of the long run (the timed ones)")
    ap.add_argument("--repeats", type=positive_int, default=1, help="short/long pairs per configuration")
    ap.add_argument("--python", default=sys.executable, help="Python with i2i installed")
    ap.add_argument("--variant", action="append", default=[], type=variant,
                    help="extra i2i configuration 'name:key=value;env.VAR=value' (repeatable)")
    ap.add_argument("--no-default", action="store_true", help="skip i2i's default configuration")
    ap.add_argument("--no-i2i", action="store_true", help="measure only the reference")
    ap.add_argument("--reference", type=reference_checkout, help="checkout of junyanz/pytorch-CycleGAN-and-pix2pix (train.py)")
    ap.add_argument("--ref-python", default=sys.executable)
    ap.add_argument("--ref-pythonpath", default=os.environ.get("I2I_REF_PYTHONPATH", ""),
                    help="prepended to PYTHONPATH for the reference (its extra packages)")
    ap.add_argument("--ref-threads", type=non_negative_int, default=4, help="the reference's --num_threads (its default: 4)")
    ap.add_argument("--i2i-images", type=positive_int, default=8, help="synthetic images in i2i's data folder")
    ap.add_argument("--quiet-threshold", type=float, default=0.15,
                    help="before each run, wait until other processes use less than this share of the cores")
    ap.add_argument("--max-wait", type=float, default=90.0, help="seconds to wait for quiet at most")
    ap.add_argument("--max-foreign", type=float, default=0.10,
                    help="rerun a run during which other processes used more than this share of the cores")
    ap.add_argument("--retries", type=non_negative_int, default=3)
    ap.add_argument("--busy", type=non_negative_int, default=0,
                    help="keep this many cores busy with other processes throughout (a shared machine); "
                         "turns off the waits for quiet and the reruns")
    ap.add_argument("--json", type=json_file, help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    presets = args.preset or ["unet256_b1"]
    unique_names(ap, args.variant)
    if args.no_i2i and not args.reference:
        ap.error("argument --no-i2i: without --reference there is nothing to measure")
    if args.no_i2i and args.variant:
        ap.error("argument --variant: with --no-i2i no i2i variant runs; drop one of them")
    if args.no_default and not args.variant and not args.reference:
        ap.error("argument --no-default: without --variant or --reference there is nothing to measure")
    for option, python in (("--python", args.python), ("--ref-python", args.ref_python if args.reference else None)):
        if python is not None and shutil.which(python) is None:
            ap.error(f"argument {option}: {python}: no such program; expected a Python interpreter")

    configs: list[tuple[str, list[str], dict[str, str]]] = []
    if not args.no_i2i:
        if not args.no_default:
            configs.append(("i2i", [], {}))
        for v in args.variant:
            name, overrides, env = parse_variant(v)
            configs.append((f"i2i[{name}]", overrides, env))

    results: dict = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                     "versions": {"i2i_python": python_versions(args.python)},
                     "warmup": args.warmup, "steps": args.steps, "repeats": args.repeats, "rows": {}}
    if args.reference:
        results["versions"]["reference"] = str(args.reference)
    base_env = dict(os.environ)
    base_env.setdefault("PYTHONUNBUFFERED", "1")
    ref_env = dict(base_env)
    if args.ref_pythonpath:
        ref_env["PYTHONPATH"] = args.ref_pythonpath + (os.pathsep + ref_env["PYTHONPATH"] if ref_env.get("PYTHONPATH") else "")
    scratch = Path(tempfile.mkdtemp(prefix="i2i-bench-"))
    print(f"# scratch {scratch}\n# machine {json.dumps(results['machine'])}", flush=True)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    results["busy_cores"] = args.busy
    try:
        for name in presets:
            p = PRESETS[name]
            load = load_size(p.size)
            i2i_data = write_images(scratch / f"i2i-{load}", args.i2i_images, load, seed=1)
            recipe = scratch / f"{name}.toml"
            recipe.write_text(i2i_recipe(p, i2i_data))
            ref_root = None
            if args.reference:
                count = (args.warmup + args.steps) * p.batch
                ref_root = scratch / f"ref-{p.task}-{load}"
                sub = ref_root / "train"
                if not sub.exists() or len(list(sub.iterdir())) < count:
                    shutil.rmtree(ref_root, ignore_errors=True)
                    write_images(sub, count, load, seed=2, aligned=p.task != "colorization")
            series = {c[0]: Series(c[0]) for c in configs}
            if ref_root is not None:
                series["reference"] = Series("reference")
            print(f"\n## {name}: {p.note}", flush=True)
            for r in range(args.repeats):
                for phase, steps in (("short", args.warmup), ("long", args.warmup + args.steps)):
                    for label, overrides, env in configs:
                        out = scratch / "runs" / f"{name}-{label}-{r}-{phase}"
                        m = measure(i2i_command(args.python, recipe, steps, out, overrides), f"{label} {name} {phase}",
                                    args, env={**base_env, **env})
                        getattr(series[label], phase).append(m)
                        shutil.rmtree(out, ignore_errors=True)
                        print(f"  {label:>16} {phase:5} {steps:3d} steps {m.seconds:7.2f} s  rss {m.max_rss_mb:6.0f} MB  pss {m.peak_tree_pss_mb:6.0f} MB  other load {100 * m.foreign:3.0f}%", flush=True)
                    if ref_root is not None:
                        ckpt_dir = scratch / "ref-ckpt" / f"{name}-{r}-{phase}"
                        cmd = reference_command(args.ref_python, p, ref_root, steps, ckpt_dir, args.ref_threads)
                        m = measure(cmd, f"reference {name} {phase}", args, cwd=args.reference, env=ref_env)
                        series["reference"].__getattribute__(phase).append(m)
                        shutil.rmtree(ckpt_dir, ignore_errors=True)
                        print(f"  {'reference':>16} {phase:5} {steps:3d} steps {m.seconds:7.2f} s  rss {m.max_rss_mb:6.0f} MB  pss {m.peak_tree_pss_mb:6.0f} MB  other load {100 * m.foreign:3.0f}%", flush=True)
            row = {"preset": asdict(p), "published_reference_img_per_s": PUBLISHED_REF.get(name)}
            for label, s in series.items():
                row[label] = s.summary(args.steps, p.batch)
            if "reference" in row:
                # per repeat, i2i and the reference ran side by side: their ratio is steadier
                # than either rate when the machine's speed drifts between repeats
                for label in series:
                    if label == "reference" or not row["reference"]["img_per_s"]:
                        continue
                    pairs = [a / b for a, b in zip(row[label]["img_per_s_all"], row["reference"]["img_per_s_all"]) if a and b]
                    row[label]["ratio_per_repeat"] = [round(x, 3) for x in pairs]
                    row[label]["ratio"] = median(pairs) if pairs else None
                if "i2i" in row:
                    row["ratio"] = row["i2i"].get("ratio")
            results["rows"][name] = row
            for label in series:
                s = row[label]
                if s["img_per_s"] is None:
                    rate = "no rate: the long runs were not slower than the short ones (noise); raise --steps"
                else:
                    missing = s["repeats_without_rate"]
                    rate = f"{s['img_per_s']:.3f} img/s ({s['step_ms']:.0f} ms/step)" + (
                        f" from {args.repeats - missing} of {args.repeats} repeats (in the others the long run "
                        "was not slower than the short one)" if missing else "")
                print(f"  => {label:>16}: {rate}  max_rss {s['max_rss_mb']:.0f} MB  tree_pss {s['tree_pss_mb']:.0f} MB",
                      flush=True)
            for label in series:
                if row[label].get("ratio"):
                    print(f"  => {label}/reference: {row[label]['ratio']:.2f}x (per repeat {row[label]['ratio_per_repeat']})", flush=True)
            if args.json:  # after every row, so an interrupted run keeps what it measured
                args.json.write_text(json.dumps(results, indent=1, allow_nan=False))
    finally:
        for process in busy:
            process.kill()
            process.wait()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
