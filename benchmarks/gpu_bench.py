"""The whole GPU measurement in one go (about 6-8 minutes on one H100/H200).

Sections, in order of importance, each skipped with a note when the time budget (``--budget``
seconds) runs out:

1. the card: name, torch/CUDA versions, measured bf16 matmul rate (8192^3, TFLOP/s);
2. ``check``: the CUDA-graphed step against the eager one, same seed, deterministic cuDNN,
   fp32: largest weight difference after 12 steps, beside the largest weight change;
3. ``rows``: i2i at the CPU benchmark's rows (``bench_train.PRESETS``) in process through the
   engine's ``Trainer`` with its CUDA defaults (bf16 autocast, cudnn.benchmark), plus
   ``train.channels_last``, once eager (``train.cuda_graphs = false``) and once graphed
   (the default): img/s, ms/step, peak GPU memory;
   ``host``: at batch 1, the host's time per graphed step against the wall time, and the
   host's time for the parts before the replay (data, the task's pair, Lab conversions);
   ``refstep`` (with ``--reference``): the reference's own step (``set_input`` +
   ``optimize_parameters``) in process on the same card, before and after i2i's graphed step
   at the same rows: a ratio that start-up cannot blur (whole processes on the device machine
   varied by more than their training time);
4. ``recipes``: whether each shipped recipe's step captures as a graph on the GPU;
5. ``process``: whole ``i2i run`` processes (short/long difference, as on the CPU), with the
   reference's ``train.py`` on the same card beside them (if ``--reference`` is given);
6. ``translate``: ``i2i translate`` of 256 px photos: the decode/network/write split;
7. ``large``: 256 px pix2pix at batch 32, 64, 128 and 256: img/s and model-FLOP utilisation
   (MFU = img/s * 86.9 GFLOP / measured bf16 matmul rate; 86.9 GFLOP per image per pix2pix
   training step at 256 px, convolutions only), graphed and eager;
8. ``breakdown``: where the large-batch step's device time goes, for the MFU gap: the torch
   profiler over a few eager steps of unet_256 at batch 64, the device time summed by kind
   (convolutions forward and backward, normalisation, element-wise, optimiser, copies) and the
   costliest operator/shape pairs, and the TFLOP/s the convolutions alone reach;
9. with ``--compile``: ``train.compile = true`` at 256 px, batch 64 (compiling takes a minute or two);
10. ``fusion``: ``train.compile = true`` with the step replayed as a CUDA graph: fused
    kernels, launched at once: first (budget permitting) the graphed compiled step against the
    eager compiled one, as in ``check`` (``--no-fusion-check`` leaves it out); then the rows
    ``--fusion-rows`` names, in its order (default: batch 4 and 64 at 256 px, then the others).
    Each configuration compiles afresh (``torch._dynamo.reset()``), as in a process of its own.

Writes everything to ``--json`` as it goes. ``benchmarks/run_gpu.sh`` installs what the
device machine lacks and calls this.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import PRESETS, Preset, i2i_command, i2i_recipe, load_size, reference_command  # noqa: E402
from common import (json_file, median, non_negative_int, positive_float, positive_int, reference_checkout,  # noqa: E402
                    run_measured, write_images)

PIX2PIX_GFLOP_256 = 86.9  # per image per training step, convolutions only (G fwd+bwd, D 3 fwd + 2 bwd)

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
    recipe_file = scratch / "recipe.toml"
    recipe_file.write_text(i2i_recipe(p, data_dir))
    return trainer_for(recipe_file, scratch, ["train.steps=1000000", *overrides])


def trainer_for(recipe_file: Path, scratch: Path, overrides: list[str]):
    """The engine's ``Trainer`` for a recipe file on DEVICE, in training mode: (trainer, run_dir)."""
    from i2i.engine.trainer import Trainer
    from i2i.recipe import load_recipe

    recipe = load_recipe(recipe_file, [f'train.device="{DEVICE}"', *overrides])
    run_dir = Path(tempfile.mkdtemp(dir=scratch, prefix="run-"))
    trainer = Trainer(recipe, run_dir, quiet=True)
    trainer.G.train()
    if trainer.D is not None:
        trainer.D.train()
    return trainer, run_dir


def train_steps(trainer, n: int = 1) -> None:
    """``n`` training steps, advancing the step counter as ``Trainer.fit`` does."""
    for _ in range(n):
        trainer.train_step()
        trainer.step += 1


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
    # Forget compiled code: the next configuration compiles for its own shapes, as in a process
    # of its own. Kept, a second shape recompiled torch.compile's graphs with dynamic shapes
    # (the "pow_by_natural" warnings of 2026-11-28: 85 s of warm-up, and kernels no user's run gets).
    torch._dynamo.reset()
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
    train_steps(trainer, warmup)
    sync()
    warm_s = time.perf_counter() - t_warm
    result = time_steps(lambda: train_steps(trainer), p.batch, seconds, max_steps)
    result.update(dtype=str(trainer.dtype).replace("torch.", ""), build_s=round(build_s, 2),
                  warmup_s=round(warm_s, 2), overrides=overrides, graphs=graph_state(trainer))
    release(trainer, run_dir)
    return result


def host_split(p: Preset, data_dir: Path, scratch: Path, overrides: list[str], *, warmup: int, steps: int) -> dict:
    """The host's time for ``steps`` (graphed) small-batch steps, without a sync, against the
    wall time until the device has finished them, and the host's time per call of the parts
    that run before the replay (10 calls each, after a sync). A host time well below the wall
    time means the GPU is the bound; equal times settle nothing (a host that runs ahead also
    blocks once CUDA's launch queue is full). The graph replayed alone, back to back, gives the
    GPU's own time per step: close to the wall time means the GPU is the bound."""
    trainer, run_dir = build_trainer(p, data_dir, scratch, overrides)
    train_steps(trainer, warmup)
    sync()
    start = time.perf_counter()
    train_steps(trainer, steps)
    host = time.perf_counter() - start
    sync()
    wall = time.perf_counter() - start
    out = {"steps": steps, "graphs": graph_state(trainer), "host_ms_per_step": round(1000 * host / steps, 3),
           "wall_ms_per_step": round(1000 * wall / steps, 3)}

    replay = getattr(trainer.graphs, "replay", None)
    if replay is not None:  # the graph alone, launched back to back: the GPU's own time per step
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            replay()
        sync()
        out["replay_only_ms_per_step"] = round(1000 * (time.perf_counter() - start) / steps, 3)

    def host_ms(fn) -> float:
        fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        ms = 1000 * (time.perf_counter() - t0) / 10
        sync()
        return round(ms, 3)

    clean = trainer.data.next_batch(p.batch)
    out["next_batch_host_ms"] = host_ms(lambda: trainer.data.next_batch(p.batch))
    out["make_pair_host_ms"] = host_ms(lambda: trainer.make_pair(clean))
    if getattr(trainer.task, "space", None) == "lab":
        from i2i_builtin_tasks.gray2color import rgb_to_lab
        from kornia.color import rgb_to_lab as kornia_rgb_to_lab

        out["kornia_rgb_to_lab_host_ms"] = host_ms(lambda: kornia_rgb_to_lab(clean))
        out["i2i_rgb_to_lab_host_ms"] = host_ms(lambda: rgb_to_lab(clean))
    release(trainer, run_dir)
    return out


def reference_step_rate(ref: Path, p: Preset, *, warmup: int, seconds: float) -> dict:
    """The reference's own training step, ``set_input`` + ``optimize_parameters`` as its
    train.py calls them, in process on DEVICE with a batch on the host (as its data loader
    hands it over), synchronised at both ends. Its data loading and start-up are left out, so a
    ratio against this rate understates i2i's lead rather than overstating it."""
    import torch
    from ab_reference_step import reference_model

    model, _ = reference_model(ref, p, device=DEVICE)
    cin, cout = (1, 2) if p.task == "colorization" else (3, 3)
    gen = torch.Generator().manual_seed(3)
    batch = {"A": torch.rand(p.batch, cin, p.size, p.size, generator=gen) * 2 - 1,
             "B": torch.rand(p.batch, cout, p.size, p.size, generator=gen) * 2 - 1,
             "A_paths": ["x"] * p.batch, "B_paths": ["x"] * p.batch}

    def step() -> None:
        model.set_input(batch)
        model.optimize_parameters()

    for _ in range(warmup):
        step()
    result = time_steps(step, p.batch, seconds, max_steps=4000)
    result.update(cudnn_benchmark=torch.backends.cudnn.benchmark, cudnn_tf32=torch.backends.cudnn.allow_tf32)
    del model
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return result


def graph_state(trainer) -> str:
    """``replayed``, ``eager``, or why capture failed."""
    graphs = trainer.graphs
    if graphs is not None and graphs.replay is not None:
        return "replayed"
    return f"failed: {trainer.graphs_failure}" if trainer.graphs_failure else "eager"


def graph_agreement(p: Preset, data_dir: Path, scratch: Path, steps: int = 12, extra: tuple[str, ...] = ()) -> dict:
    """Train ``steps`` steps eagerly and graphed from the same seed with deterministic cuDNN
    in fp32: the graphed weights should equal the eager ones up to rounding."""
    import torch

    weights, states, losses = {}, {}, {}
    for label, graphs in (("eager", "false"), ("graphed", '"auto"')):
        trainer, run_dir = build_trainer(p, data_dir, scratch, ['train.precision="fp32"', f"train.cuda_graphs={graphs}", *extra])
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        before = {k: v.detach().float().cpu().clone() for k, v in trainer.G.state_dict().items()}
        train_steps(trainer, steps)
        sync()
        weights[label] = {k: v.detach().float().cpu().clone() for k, v in trainer.G.state_dict().items()}
        losses[label] = {k: float(v) / steps for k, v in trainer.acc.items()}
        states[label] = graph_state(trainer)
        release(trainer, run_dir)
    torch.backends.cudnn.deterministic = False
    diff = max((weights["graphed"][k] - weights["eager"][k]).abs().max().item() for k in before)
    params = [k for k in before if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    change = max((weights["eager"][k] - before[k]).abs().max().item() for k in params)
    return {"steps": steps, "max_abs_weight_diff": diff, "max_abs_param_change": change,
            "losses_eager": losses["eager"], "losses_graphed": losses["graphed"], "graphs": states["graphed"]}


def recipe_capture(recipe_path: Path, scratch: Path, steps: int = 6) -> dict:
    """Build a shipped recipe on the GPU and run a few steps: does its step capture?"""
    trainer, run_dir = trainer_for(recipe_path, scratch, [f"train.steps={steps}"])
    start = time.perf_counter()
    train_steps(trainer, steps)
    sync()
    result = {"graphs": graph_state(trainer), "seconds": round(time.perf_counter() - start, 2)}
    release(trainer, run_dir)
    return result


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
            "steps": [short, long], "max_rss_mb": m.max_rss_mb, "graphs_off_warning": "CUDA graphs off" in m.output}


def reference_rate(python: str, ref: Path, p: Preset, scratch: Path, short: int, long: int, env: dict, threads: int) -> dict:
    root = scratch / f"ref-{p.task}-{p.size}-{p.batch}"
    # its epoch is the folder: long * batch files, links to 32 written ones (writing them all
    # would take minutes of device time)
    unique = min(32, long * p.batch)
    write_images(root / "train", unique, load_size(p.size), seed=2, aligned=p.task != "colorization")
    written = sorted((root / "train").iterdir())
    for i in range(unique, long * p.batch):
        source = written[i % unique]
        (root / "train" / f"link{i:06d}{source.suffix}").symlink_to(source)
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


# Operator names to the kinds the breakdown sums; the first matching prefix wins, the rest is "other".
OP_KINDS = (
    ("convolution", ("aten::cudnn_convolution", "aten::convolution_backward", "aten::mkldnn_convolution",
                     "aten::_convolution", "aten::convolution", "aten::conv")),
    ("normalisation", ("aten::cudnn_batch_norm", "aten::native_batch_norm", "aten::batch_norm",
                       "aten::_batch_norm", "aten::instance_norm", "aten::native_group_norm")),
    ("optimiser", ("aten::_fused_adam", "aten::_foreach", "Optimizer.")),
    ("copies", ("aten::copy_", "aten::cat", "aten::_to_copy", "aten::contiguous", "aten::clone")),
    ("element-wise", ("aten::leaky_relu", "aten::relu", "aten::tanh", "aten::threshold", "aten::add", "aten::mul",
                      "aten::sub", "aten::div", "aten::abs", "aten::mean", "aten::sum", "aten::fill_", "aten::zero_",
                      "aten::binary_cross_entropy", "aten::mse_loss", "aten::l1_loss", "aten::where", "aten::sigmoid")),
)


def op_kind(name: str) -> str:
    for kind, prefixes in OP_KINDS:
        if name.startswith(prefixes):
            return kind
    return "other"


def step_breakdown(p: Preset, data_dir: Path, scratch: Path, overrides: list[str], *, warmup: int, steps: int) -> dict:
    """Device (or, without CUDA, CPU) self time of ``steps`` eager training steps under the torch
    profiler, summed by operator kind, and the 12 costliest operator/input-shape pairs."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    trainer, run_dir = build_trainer(p, data_dir, scratch, overrides)
    train_steps(trainer, warmup)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities, record_shapes=True) as prof:
        train_steps(trainer, steps)
        sync()
    wall_ms = 1000 * (time.perf_counter() - start) / steps
    release(trainer, run_dir)
    attr = "self_device_time_total" if DEVICE == "cuda" else "self_cpu_time_total"

    def self_ms(event) -> float:
        value = getattr(event, attr, None)
        if value is None and DEVICE == "cuda":  # older torch
            value = event.self_cuda_time_total
        return value / 1000 / steps

    # Operators are host-side events whose self device time is that of the kernels they launched;
    # the kernels themselves are listed again as device-side events. Summing both would count
    # every kernel twice, so the kinds are summed over operators only, and the kernels reported apart.
    from torch.autograd import DeviceType

    averages = prof.key_averages()
    operators = [e for e in averages if getattr(e, "device_type", DeviceType.CPU) == DeviceType.CPU]
    kernels = [e for e in averages if getattr(e, "device_type", DeviceType.CPU) != DeviceType.CPU]
    kinds: dict[str, float] = {}
    for event in operators:
        kinds[op_kind(event.key)] = kinds.get(op_kind(event.key), 0.0) + self_ms(event)
    total = sum(kinds.values())
    by_shape = [e for e in prof.key_averages(group_by_input_shape=True)
                if getattr(e, "device_type", DeviceType.CPU) == DeviceType.CPU]
    top = sorted(by_shape, key=self_ms, reverse=True)[:40]
    kernel_ms = sum(self_ms(e) for e in kernels)
    conv_ms = kinds.get("convolution", 0.0)
    return {
        "steps": steps, "wall_ms_per_step_profiled": round(wall_ms, 2), "profiled_ms_per_step": round(total, 2),
        "kernel_ms_per_step": round(kernel_ms, 2), "kernels_per_step": sum(e.count for e in kernels) / steps,
        "ms_per_step_by_kind": {k: round(v, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "share_by_kind": {k: round(v / total, 3) for k, v in kinds.items()} if total else {},
        "convolution_tflops": round(p.batch * PIX2PIX_GFLOP_256 / conv_ms, 3) if conv_ms and p.size == 256 else None,
        "top": [{"op": e.key, "shapes": str(e.input_shapes)[:200], "ms_per_step": round(self_ms(e), 3),
                 "calls_per_step": e.count / steps} for e in top],
        "top_kernels": [{"kernel": e.key[:160], "ms_per_step": round(self_ms(e), 3), "calls_per_step": e.count / steps}
                        for e in sorted(kernels, key=self_ms, reverse=True)[:30]],
    }


#: the refstep section's rows (``--refstep-rows`` picks them)
REFSTEP_ROWS = ("unet256_b1", "unet256_b4", "unet128_b1", "unet128_b4", "color128_b1")

#: the fusion section's compiled rows (``--fusion-rows`` picks and orders them)
FUSION_ROWS = {
    "unet256_b4": PRESETS["unet256_b4"], "unet256_b64": Preset("unet_256", 256, 64, note="256 px batch 64"),
    "unet128_b4": PRESETS["unet128_b4"], "color128_b1": PRESETS["color128_b1"],
    "unet256_b1": PRESETS["unet256_b1"], "unet128_b1": PRESETS["unet128_b1"],
    "unet256_b128": Preset("unet_256", 256, 128, note="256 px batch 128"),
}

#: the sections, as --only and --skip name them
SECTIONS = ("check", "rows", "host", "refstep", "recipes", "process", "translate", "large", "breakdown", "compile", "fusion")


def section_name(text: str) -> str:
    if text not in SECTIONS:
        raise argparse.ArgumentTypeError(f"{text!r}: no such section; the sections: {', '.join(SECTIONS)}")
    return text


def device_name(text: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected cuda, cuda:N (a GPU's index) or cpu (a smoke test)")
    return text


def process_runs(text: str) -> list[tuple[str, int, int, int]]:
    """``--process-runs PRESET:SHORT:LONG:REFERENCE_LONG[,...]``."""
    runs = []
    for spec in filter(None, text.split(",")):
        parts = spec.split(":")
        try:
            name, short, long, ref_long = parts[0], *map(int, parts[1:])
            ok = name in PRESETS and 1 <= short < min(long, ref_long)
        except ValueError:  # not four parts, or a count that is no whole number
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError(
                f"{spec!r}: expected PRESET:SHORT:LONG:REFERENCE_LONG with a preset ({', '.join(sorted(PRESETS))}) "
                "and step counts 1 <= SHORT < LONG, REFERENCE_LONG, e.g. unet256_b1:20:620:620")
        runs.append((name, short, long, ref_long))
    return runs


def names_from(allowed, what: str):
    """A comma-separated list whose items are in ``allowed``."""
    def parse(text: str) -> list[str]:
        items = [item.strip().lower() for item in text.split(",") if item.strip()]
        for item in items:
            if item not in allowed:
                raise argparse.ArgumentTypeError(f"{item!r}: no such {what}; expected some of {', '.join(allowed)}")
        return items
    return parse


def main(argv: list[str] | None = None) -> dict:
    from bench_translate import FORMATS, VARIANTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=json_file, default=Path("gpu_results.json"))
    ap.add_argument("--budget", type=positive_float, default=450, help="seconds for the whole measurement")
    ap.add_argument("--reference", type=reference_checkout, help="checkout of the reference (its train.py)")
    ap.add_argument("--ref-threads", type=non_negative_int, default=4)
    ap.add_argument("--seconds", type=positive_float, default=2.5, help="timed seconds per in-process configuration")
    ap.add_argument("--compile", action="store_true", help="last, also try train.compile at batch 64 (1-2 min)")
    ap.add_argument("--device", default="cuda", type=device_name,
                    help="cuda, cuda:N, or cpu: smoke-test this script without a GPU (tiny settings)")
    ap.add_argument("--skip", action="append", default=[], type=section_name, help=f"section to skip: {', '.join(SECTIONS)}")
    ap.add_argument("--only", action="append", default=[], type=section_name, help="run only this section (repeatable)")
    ap.add_argument("--process-runs", default=[], type=process_runs,
                    help="process section: comma-separated PRESET:SHORT:LONG:REFERENCE_LONG step counts")
    ap.add_argument("--fusion-rows", default=list(FUSION_ROWS), type=names_from(tuple(FUSION_ROWS), "fusion row"),
                    help="the fusion section's compiled rows, in this order (comma-separated; default: "
                         f"{','.join(FUSION_ROWS)})")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile's mode for the fusion rows (e.g. max-autotune-no-cudagraphs; default: torch's)")
    ap.add_argument("--refstep-rows", default=list(REFSTEP_ROWS), type=names_from(REFSTEP_ROWS, "refstep row"),
                    help=f"the refstep section's rows (comma-separated; default: {','.join(REFSTEP_ROWS)})")
    ap.add_argument("--breakdown-batch", type=positive_int, default=64, help="the breakdown section's batch (256 px)")
    ap.add_argument("--breakdown-compile", action="store_true", help="profile the compiled step (train.compile = true)")
    ap.add_argument("--no-fusion-check", action="store_true",
                    help="skip the fusion section's compiled graphed-vs-eager check (gpu_checks.py has it too)")
    ap.add_argument("--translate-images", type=positive_int, default=64,
                    help="translate section: how many 256 px photos (a longer pass settles the split)")
    ap.add_argument("--translate-formats", default=["png"], type=names_from(FORMATS, "format"),
                    help="translate section: comma-separated output formats")
    ap.add_argument("--translate-variants", default=[], type=names_from(tuple(VARIANTS), "variant"),
                    help="translate section: comma-separated host settings to repeat the passes under (bench_translate.VARIANTS)")
    args = ap.parse_args(argv)
    budget = Budget(args.budget)
    global DEVICE
    DEVICE = args.device
    if DEVICE.startswith("cuda:"):  # one card of several: it alone is visible, here and in the processes started
        index, ids = int(DEVICE.split(":")[1]), os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = ids.split(",") if ids else None  # N counts among the cards already visible, if some are named
        os.environ["CUDA_VISIBLE_DEVICES"] = (ids[index] if index < len(ids) else "-1") if ids else str(index)
        DEVICE = "cuda"
    if "refstep" in args.only and not args.reference:
        ap.error("argument --only: the refstep section needs --reference")
    if "compile" in args.only and not args.compile:
        ap.error("argument --only: the compile section needs --compile")

    import torch

    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"gpu_bench: no CUDA device (--device {args.device})")

    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "sections": {}}

    def save() -> None:
        args.json.write_text(json.dumps(results, indent=1))

    import kornia

    import i2i

    results["card"] = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                       "kornia": kornia.__version__, "i2i": i2i.__version__, "python": sys.version.split()[0],
                       "cpus": os.cpu_count()}
    if DEVICE == "cuda":
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
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # also when a section's failure ends the process
    data_dirs = {s: write_images(scratch / f"data-{s}", 8, load_size(s), seed=1) for s in (128, 256)}
    fast = ["train.channels_last=true"]  # bf16 autocast and cudnn.benchmark are the CUDA defaults

    def section(name: str, need: float):
        if name in args.skip or (args.only and name not in args.only):
            log(f"section {name}: skipped (--skip or --only)")
            return False
        if budget.left() < need:
            results["sections"].setdefault(name, {})["skipped"] = f"time budget: {budget.left():.0f} s left, needs ~{need:.0f}"
            log(f"section {name}: skipped, {budget.left():.0f} s left")
            return False
        return True

    measured = []  # the configurations that gave a result

    def guarded(name: str, key: str, fn):
        try:
            value = fn()
            measured.append(f"{name}/{key}")
        except Exception as exc:  # one failing configuration must not lose the others
            value = {"error": f"{type(exc).__name__}: {str(exc)[-800:]}"}
            traceback.print_exc()
        results["sections"].setdefault(name, {})[key] = value
        save()
        return value

    # 2. the graphed step computes what the eager one does
    if section("check", 30):
        p = Preset("unet_128", 128, 4, dropout=False)
        r = guarded("check", "unet128_b4_fp32", lambda: graph_agreement(p, data_dirs[128], scratch, steps=4 if smoke else 12))
        log(f"check: {r}")

    # 3. the CPU rows on the GPU, eager and graphed
    if section("rows", 60):
        for name in ("unet128_b1",) if smoke else ("unet256_b1", "unet256_b4", "unet128_b1", "unet128_b4", "color128_b1"):
            if budget.left() < 40:
                break
            p = PRESETS[name]
            for label, graphs in (("eager", "false"), ("graphed", '"auto"')):
                r = guarded("rows", f"{name}_{label}", lambda: trainer_rate(
                    p, data_dirs[p.size], scratch, [*fast, f"train.cuda_graphs={graphs}"],
                    warmup=2 if smoke else 15, seconds=args.seconds))
                log(f"rows {name} {label}: {r}")
            eager, graphed = (results["sections"]["rows"].get(f"{name}_{k}", {}) for k in ("eager", "graphed"))
            if "img_per_s" in eager and "img_per_s" in graphed:
                graphed["speedup_over_eager"] = graphed["img_per_s"] / eager["img_per_s"]
        if not smoke and budget.left() > 40:  # does channels_last still pay once graphed, at batch 1?
            p = PRESETS["unet256_b1"]
            r = guarded("rows", "unet256_b1_graphed_contiguous", lambda: trainer_rate(
                p, data_dirs[256], scratch, [], warmup=15, seconds=args.seconds))
            log(f"rows unet256_b1 graphed, default memory format: {r}")
        save()

    # 3b. at batch 1, is the graphed step waiting on the host?
    if section("host", 20):
        for name in ("color128_b1", "unet128_b1", "unet256_b1"):
            p = PRESETS[name]
            r = guarded("host", name, lambda: host_split(p, data_dirs[p.size], scratch, fast, warmup=2 if smoke else 15,
                                                          steps=4 if smoke else 200))
            log(f"host {name}: {r}")

    # 3c. the reference's own step on the same card, before and after i2i's graphed step
    if args.reference and section("refstep", 40):
        for name in ("unet128_b1",) if smoke else args.refstep_rows:
            if budget.left() < 25:
                break
            p = PRESETS[name]
            warm = 2 if smoke else 10
            secs = 0.2 if smoke else 1.5
            before = guarded("refstep", f"{name}_reference", lambda: reference_step_rate(args.reference, p, warmup=warm, seconds=secs))
            mine = guarded("refstep", f"{name}_i2i_graphed", lambda: trainer_rate(
                p, data_dirs[p.size], scratch, fast, warmup=2 if smoke else 15, seconds=args.seconds))
            after = guarded("refstep", f"{name}_reference_again", lambda: reference_step_rate(args.reference, p, warmup=warm, seconds=secs))
            rates = [r["img_per_s"] for r in (before, after) if "img_per_s" in r]
            if rates and "img_per_s" in mine:
                mine["ratio_to_reference"] = mine["img_per_s"] / (sum(rates) / len(rates))
            log(f"refstep {name}: reference {[round(r, 1) for r in rates]} img/s, i2i {mine.get('img_per_s')}, "
                f"ratio {mine.get('ratio_to_reference')}")
        save()

    # 4. does each shipped recipe's step capture?
    if section("recipes", 30):
        for recipe_path in sorted(Path("recipes").glob("*.toml"))[: 1 if smoke else None]:
            r = guarded("recipes", recipe_path.name, lambda: recipe_capture(recipe_path, scratch, steps=6))
            log(f"recipes {recipe_path.name}: {r}")

    # 5. whole processes, i2i and the reference side by side
    if section("process", 90):
        env = dict(os.environ)
        runs = args.process_runs or (
            [("unet128_b1", 1, 6, 6)] if smoke else
            [("unet256_b1", 20, 620, 620), ("unet128_b4", 20, 320, 320), ("unet128_b1", 20, 620, 620)])
        for name, short, long, ref_long in runs:
            short, long, ref_long = int(short), int(long), int(ref_long)
            if budget.left() < 70:
                break
            p = PRESETS[name]
            recipe = scratch / f"{name}.toml"
            recipe.write_text(i2i_recipe(p, data_dirs[p.size]))
            r = guarded("process", f"i2i_{name}", lambda: process_rate(sys.executable, p, recipe, scratch, short, long, fast))
            log(f"process i2i {name}: {r}")
            if args.reference:
                ref = guarded("process", f"reference_{name}", lambda: reference_rate(
                    sys.executable, args.reference, p, scratch, short, ref_long, env, args.ref_threads))
                log(f"process reference {name}: {ref}")
                if "img_per_s" in r and "img_per_s" in ref:
                    r["ratio_to_reference"] = r["img_per_s"] / ref["img_per_s"]
                    log(f"process {name}: i2i / reference = {r['ratio_to_reference']:.2f}")
            save()

    # 6. translate
    if section("translate", 40):
        from bench_translate import run as translate_run

        for fmt in args.translate_formats:
            key = "unet256_b16" if fmt == "png" else f"unet256_b16_{fmt}"
            r = guarded("translate", key, lambda: translate_run(
                "unet_256", 4 if smoke else args.translate_images, 256, 2 if smoke else 16, DEVICE, fmt=fmt,
                repeats=1 if smoke else 2, network_probe=fmt == "png",
                variants=tuple(args.translate_variants)))
            log(f"translate {fmt}: {r.get('img_per_s')} img/s, share {r.get('share')}; network alone {r.get('network_only')}; "
                f"variants {r.get('variants')}")

    # 7. large batches, MFU
    if section("large", 40):
        b1, b2 = (1, 2) if smoke else (32, 64)
        b3, b4 = (4, 4) if smoke else (128, 256)
        big = {b: Preset("unet_256", 256, b, note=f"pix2pix 256 px batch {b}") for b in (b1, b2, b3, b4)}
        variants = [("bf16_cl_graphed", b2, fast), ("bf16_cl_graphed", b3, fast), ("bf16_cl_graphed", b1, fast),
                    ("bf16_cl_eager", b2, [*fast, "train.cuda_graphs=false"])]
        if not smoke:  # the largest batch's MFU, the goal's best case (batch >= 32)
            variants.append(("bf16_cl_graphed", b4, fast))
        for label, batch, overrides in variants:
            if budget.left() < 25:
                break
            r = guarded("large", f"{label}_b{batch}",
                        lambda: trainer_rate(big[batch], data_dirs[256], scratch, overrides, warmup=2 if smoke else 8, seconds=args.seconds))
            if "img_per_s" in r:
                r["tflops"] = r["img_per_s"] * PIX2PIX_GFLOP_256 / 1000
                r["mfu"] = r["tflops"] / rate
            log(f"large {label} b{batch}: {r}")
        save()

    # 8. where the large-batch step's device time goes (eager: a graph replay hides its kernels)
    if section("breakdown", 30):
        batch = 2 if smoke else args.breakdown_batch
        p = Preset("unet_256", 256, batch, note=f"pix2pix 256 px batch {batch}, profiled")
        compiled = ["train.compile=true"] if args.breakdown_compile else []
        key = f"bf16_cl_{'compiled_' if compiled else ''}eager_b{batch}"
        r = guarded("breakdown", key, lambda: step_breakdown(
            p, data_dirs[256], scratch, [*fast, "train.cuda_graphs=false", *compiled], warmup=2 if smoke else 8,
            steps=2 if smoke else 4))
        log(f"breakdown b{batch}: {json.dumps(r, indent=1)}")

    # 9. torch.compile at the large batch (last: compiling costs a minute or two)
    if args.compile and section("compile", 100):
        batch = 2 if smoke else 64
        p = Preset("unet_256", 256, batch, note=f"pix2pix 256 px batch {batch}, compiled")
        r = guarded("compile", f"bf16_cl_compile_b{batch}",
                    lambda: trainer_rate(p, data_dirs[256], scratch, [*fast, "train.compile=true"], warmup=2 if smoke else 10, seconds=args.seconds))
        if "img_per_s" in r:
            r["tflops"] = r["img_per_s"] * PIX2PIX_GFLOP_256 / 1000
            r["mfu"] = r["tflops"] / rate
        log(f"compile b{batch}: {r}")

    # 10. compiled (fused) kernels, replayed as one graph
    if section("fusion", 90):
        rows = [(name, FUSION_ROWS[name]) for name in args.fusion_rows]
        if smoke:
            rows = [("unet128_b1", PRESETS["unet128_b1"])]
        reference_rates = results["sections"].get("refstep", {})
        if not smoke and "bf16_cl_graphed_b64" not in results["sections"].get("large", {}):
            # the uncompiled graphed step at batch 64 in the same call, as the baseline
            p = FUSION_ROWS["unet256_b64"]
            r = guarded("fusion", "unet256_b64_graphed", lambda: trainer_rate(p, data_dirs[256], scratch, fast, warmup=8,
                                                                            seconds=args.seconds))
            if "img_per_s" in r:
                r["mfu"] = r["img_per_s"] * PIX2PIX_GFLOP_256 / 1000 / rate
            log(f"fusion baseline unet256_b64 graphed: {r}")
        if not smoke and not args.no_fusion_check and budget.left() > 120:  # does the graphed compiled step train as the eager one?
            check = Preset("unet_128", 128, 4, dropout=False)
            r = guarded("fusion", "check_unet128_b4_fp32", lambda: graph_agreement(
                check, data_dirs[128], scratch, steps=12, extra=("train.compile=true",)))
            log(f"fusion check: {r}")
        if args.compile_mode:  # the engine calls torch.compile(module, dynamic=False): add the mode to those calls
            import functools

            import torch
            torch.compile = functools.partial(torch.compile, mode=args.compile_mode)
        suffix = f"_{args.compile_mode}" if args.compile_mode else ""
        for name, p in rows:
            if budget.left() < 90:
                break
            r = guarded("fusion", f"{name}_compile_graphed{suffix}", lambda: trainer_rate(
                p, data_dirs[p.size], scratch, [*fast, "train.compile=true"], warmup=2 if smoke else 12, seconds=args.seconds))
            if "img_per_s" in r:
                if p.size == 256 and p.generator == "unet_256":
                    r["mfu"] = r["img_per_s"] * PIX2PIX_GFLOP_256 / 1000 / rate
                refs = [reference_rates.get(f"{name}_{k}", {}).get("img_per_s") for k in ("reference", "reference_again")]
                refs = [x for x in refs if x]
                if refs:
                    r["ratio_to_reference"] = r["img_per_s"] / (sum(refs) / len(refs))
            log(f"fusion {name}: {r}")
        save()

    shutil.rmtree(scratch, ignore_errors=True)
    results["elapsed_s"] = round(time.perf_counter() - START, 1)
    save()
    log(f"done; results in {args.json}")
    if not measured:
        raise SystemExit(f"gpu_bench: every section was skipped or failed; nothing measured (see {args.json})")
    return results


if __name__ == "__main__":
    main()
