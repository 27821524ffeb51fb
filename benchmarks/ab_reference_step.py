"""Compute-only A/B: the reference's ``optimize_parameters`` vs i2i's ``train_step``, interleaved
in one process (no data loading, no start-up: only the networks, losses and optimisers).

Imports the reference from ``--reference`` (a checkout of junyanz/pytorch-CycleGAN-and-pix2pix;
needs its imports importable, e.g. PYTHONPATH with dominate and a wandb stub, see README).
The reference's batches are fixed random tensors of the right shape; i2i draws its own
crops from its on-device cache (about 1 ms).

    PYTHONPATH=/tmp/ref_site:/tmp/ref_stub python benchmarks/ab_reference_step.py \\
        --reference /tmp/pix2pix --preset unet128_b1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import PRESETS, i2i_recipe, load_size  # noqa: E402
from common import (cpu_busy_seconds, json_file, median, non_negative_int, positive_int,  # noqa: E402
                    reference_checkout, wait_for_quiet, write_images)


def reference_model(ref: Path, p, fused: bool = False, device: str = "cpu"):
    """The reference's pix2pix/colorization model, built through its own option parser, on
    ``device`` (the reference itself puts its networks on cuda:0 whenever CUDA is available)."""
    sys.path.insert(0, str(ref))
    cwd, saved = os.getcwd(), sys.argv
    folder = tempfile.TemporaryDirectory(prefix="ref-")  # where it writes its options file
    os.chdir(folder.name)
    try:
        try:
            from options.train_options import TrainOptions
            from models import create_model
        except ImportError as exc:  # a user's setup, not a bug: main() says it in one line
            raise ImportError(f"{ref}: the reference does not import here: {exc} (give it its packages on "
                              "PYTHONPATH, see benchmarks/README.md)") from None

        model = "colorization" if p.task == "colorization" else "pix2pix"
        argv = ["train.py", "--dataroot", "unused", "--model", model, "--netG", p.generator, "--netD", "basic",
                "--norm", p.norm, "--gan_mode", "vanilla", "--batch_size", str(p.batch), "--crop_size", str(p.size),
                "--checkpoints_dir", "ckpt"]
        if not p.dropout:
            argv.append("--no_dropout")
        sys.argv = argv
        import io
        import contextlib

        with contextlib.redirect_stdout(io.StringIO()):
            opt = TrainOptions().parse()
            opt.device = __import__("torch").device("cuda:0" if device == "cuda" else device)
            m = create_model(opt)
            m.setup(opt)
    finally:
        sys.argv = saved
        os.chdir(cwd)
        folder.cleanup()
    if fused:  # what i2i's engine does differently: fused Adam
        import torch

        m.optimizer_G = torch.optim.Adam(m.netG.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999), fused=True)
        m.optimizer_D = torch.optim.Adam(m.netD.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999), fused=True)
    return m, opt


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=reference_checkout, required=True,
                    help="checkout of junyanz/pytorch-CycleGAN-and-pix2pix (train.py, options/)")
    ap.add_argument("--preset", default="unet128_b1", choices=sorted(PRESETS))
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="i2i recipe override")
    ap.add_argument("--fused-reference", action="store_true", help="also time the reference with fused Adam")
    ap.add_argument("--warmup", type=non_negative_int, default=2)
    ap.add_argument("--chunk", type=positive_int, default=3)
    ap.add_argument("--rounds", type=positive_int, default=4)
    ap.add_argument("--max-foreign", type=float, default=0.10)
    ap.add_argument("--json", type=json_file)
    args = ap.parse_args(argv)

    from i2i.engine.trainer import Trainer
    from i2i.errors import UserError
    from i2i.recipe import load_recipe

    p = PRESETS[args.preset]
    try:  # first: a reference that does not import is a one-line error, before any work
        ref, _ = reference_model(args.reference, p)
    except ImportError as exc:
        raise SystemExit(f"ab_reference_step: {exc}") from None
    scratch = Path(tempfile.mkdtemp(prefix="i2i-abref-"))
    try:
        data = write_images(scratch / "data", 8, load_size(p.size), seed=1)
        (scratch / "recipe.toml").write_text(i2i_recipe(p, data))
        try:
            recipe = load_recipe(scratch / "recipe.toml", ["train.steps=1000000", *args.overrides])
            trainer = Trainer(recipe, scratch / "run", quiet=True)
        except UserError as exc:  # a --set the recipe or the trainer refuses
            raise SystemExit(f"ab_reference_step: {exc}") from None
        trainer.G.train()
        trainer.D.train()
        return measure(args, p, trainer, ref)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure(args, p, trainer, ref) -> dict:
    """Warm up, then interleave rounds of ``--chunk`` steps of each side; prints and returns the rows."""
    import torch

    cin, cout = (1, 2) if p.task == "colorization" else (3, 3)
    batch = {"A": torch.rand(p.batch, cin, p.size, p.size) * 2 - 1, "B": torch.rand(p.batch, cout, p.size, p.size) * 2 - 1,
             "A_paths": ["x"] * p.batch, "B_paths": ["x"] * p.batch}
    ref.set_input(batch)
    runners = {"i2i": lambda: (trainer.train_step(), setattr(trainer, "step", trainer.step + 1)),
               "reference": ref.optimize_parameters}
    if args.fused_reference:
        ref_f, _ = reference_model(args.reference, p, fused=True)
        ref_f.set_input(batch)
        runners["reference+fused"] = ref_f.optimize_parameters
    times = {k: [] for k in runners}
    for fn in runners.values():
        for _ in range(args.warmup):
            fn()

    def own_cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    kept = dropped = 0
    while kept < args.rounds and dropped < 3 * args.rounds:
        wait_for_quiet(0.15, 60)
        busy0, cpu0, t0 = cpu_busy_seconds(), own_cpu(), time.perf_counter()
        got = {}
        for name, fn in runners.items():
            got[name] = []
            for _ in range(args.chunk):
                t = time.perf_counter()
                fn()
                got[name].append(time.perf_counter() - t)
        foreign = max(0.0, cpu_busy_seconds() - busy0 - (own_cpu() - cpu0)) / ((time.perf_counter() - t0) * (os.cpu_count() or 1))
        if foreign > args.max_foreign:
            dropped += 1
            print(f"  (round dropped: other processes used {100 * foreign:.0f}% of the cores)", flush=True)
            continue
        kept += 1
        for k, v in got.items():
            times[k].extend(v)
    out = {"preset": args.preset, "rounds": kept, "dropped": dropped, "threads": torch.get_num_threads(), "rows": {}}
    base = median(times["reference"]) if times["reference"] else float("nan")
    print(f"{args.preset}: compute-only step, {kept} rounds x {args.chunk} (dropped {dropped}), {torch.get_num_threads()} threads")
    for k, v in times.items():
        if not v:
            continue
        m = median(v)
        out["rows"][k] = {"step_ms": 1000 * m, "img_per_s": p.batch / m, "min_ms": 1000 * min(v), "vs_reference": base / m}
        print(f"  {k:>16}: {1000 * m:6.0f} ms/step (min {1000 * min(v):.0f})  {p.batch / m:5.2f} img/s  x{base / m:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
