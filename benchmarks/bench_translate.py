"""``i2i translate`` on a folder of 256 px photos: is it bound by the network, or by decoding and
writing? Trains a model for one step (the weights do not matter for speed), then translates
``--images`` synthetic photos with ``i2i.translate.translate_files`` and prints its report's
split of the time (``seconds`` = decode / network / write) and images/s.

    python benchmarks/bench_translate.py --generator unet_256 --images 16 --batch-size 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import json_file, positive_int, write_images  # noqa: E402


@contextlib.contextmanager
def _temporarily(get, set_, value):
    """``set_(value)`` for the block, then the setting ``get()`` returned before."""
    before = get()
    set_(value)
    try:
        yield
    finally:
        set_(before)


#: host settings the translate passes can be repeated under (``run(variants=...)``)
VARIANTS = {
    "as_is": contextlib.nullcontext,
    # CPython's GIL switch interval (default 5 ms): how long a thread waiting for the GIL waits
    # before asking the holder to let go
    "switch_0.5ms": lambda: _temporarily(sys.getswitchinterval, sys.setswitchinterval, 0.0005),
    "switch_0.1ms": lambda: _temporarily(sys.getswitchinterval, sys.setswitchinterval, 0.0001),
    "torch_threads_1": lambda: _temporarily(_torch().get_num_threads, _torch().set_num_threads, 1),
    # other decoding/encoding thread counts: a JPEG is encoded in about 0.2 ms, mostly Python
    # holding the GIL, so 15 such threads kept the main loop waiting for the GIL before each of
    # the network's kernel launches (measured on an H200, 2026-11-29; i2i now gives JPEGs 4)
    **{f"workers_{n}": (lambda n=n: _io_workers_set_to(n)) for n in (2, 4, 8)},
}


def _io_workers_set_to(n: int):
    import i2i.translate as translate

    return _temporarily(lambda: translate.io_workers, lambda f: setattr(translate, "io_workers", f),
                        lambda device, fmt="png": n)


def _torch():
    import torch

    return torch


def network_only(model, batch_size: int, size: int, batches: int) -> dict:
    """ms per batch of what translate's network phase does (uint8 batch from the host, the
    model, 8-bit results back), without files or threads, as it is and with speed settings
    tried one on top of the other; restores the model afterwards."""
    import contextlib

    import torch

    from i2i.data import to_uint8

    host = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    cuda = model.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def timed(autocast: bool) -> float:
        ctx = torch.autocast(model.device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        for rep in range(2):  # the first warms up (cuDNN's search, allocator)
            sync()
            start = time.perf_counter()
            with ctx:
                for _ in range(batches):
                    to_uint8(model(host.to(model.device, non_blocking=True))).cpu()
            sync()
        return round(1000 * (time.perf_counter() - start) / batches, 2)

    benchmark, net = torch.backends.cudnn.benchmark, model.generator
    out = {"batches": batches, "as_is_ms": timed(False)}
    try:
        torch.backends.cudnn.benchmark = True
        out["cudnn_benchmark_ms"] = timed(False)
        net.to(memory_format=torch.channels_last)
        out["plus_channels_last_ms"] = timed(False)
        out["plus_bf16_autocast_ms"] = timed(True)
        net.to(memory_format=torch.contiguous_format)
        if cuda:
            out["fp32_cuda_graph_ms"] = graphed(model, host, batches)
    finally:
        torch.backends.cudnn.benchmark = benchmark
        net.to(memory_format=torch.contiguous_format)
    return out


def graphed(model, host, batches: int) -> float:
    """ms per batch with the generator's forward (fp32, as translate runs it) replayed as one
    CUDA graph: the network's floor once its kernel launches cost nothing on the host, and how
    little the main loop would then need the GIL."""
    import torch

    from i2i.data import to_uint8

    net = model.generator
    static_in = host.to(model.device).float().div(255)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):
            net(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_out = net(static_in)
    for rep in range(2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(batches):
            static_in.copy_(host.to(model.device, non_blocking=True)).div_(255)
            graph.replay()
            to_uint8(static_out).cpu()
        torch.cuda.synchronize()
    return round(1000 * (time.perf_counter() - start) / batches, 2)


#: ``--format``: what ``i2i translate`` writes (i2i.data.encode.SAVE_FORMATS, with its other spellings)
FORMATS = ("png", "jpg", "jpeg", "webp", "tif", "tiff")


def training_size(generator: str) -> int:
    """The crop of the one training step: 64 px, or the generator's multiple above that (256 for
    unet_256, 128 for unet_128), read from the network built on the meta device (no memory)."""
    import torch

    import i2i
    from i2i.engine.infer import size_multiple

    with torch.device("meta"):
        multiple = size_multiple(i2i.registry("generators")[generator].build(3, 3))
    return -(-64 // multiple) * multiple


def run(generator: str = "unet_256", images: int = 16, size: int = 256, batch_size: int = 4, device: str = "cpu",
        fmt: str = "png", task: str = "denoise", repeats: int = 1, network_probe: bool = False,
        variants: tuple[str, ...] = ()) -> dict:
    import torch

    import i2i
    from i2i.translate import translate_files

    scratch = Path(tempfile.mkdtemp(prefix="i2i-translate-"))
    try:
        photos = write_images(scratch / "photos", images, size, seed=3, fmt="png")
        train_size = training_size(generator)
        train_data = write_images(scratch / "train", 2, train_size, seed=4)
        task_cfg = {"name": "denoise", "sigma": 25.0, "residual": False} if task == "denoise" else {"name": task}
        recipe = {
            "task": task_cfg,
            "data": {"source": str(train_data), "size": train_size, "val_fraction": 0.0},
            "generator": {"name": generator},
            "losses": {"l1": {"weight": 1.0}},
            "train": {"steps": 1, "device": device},
            "output": {"dir": str(scratch / "run"), "tensorboard": False, "progress": "none"},
        }
        run_dir = i2i.train(recipe, quiet=True).run_dir
        model = i2i.load(run_dir, device=device)
        reports = []
        for r in range(repeats + 1):  # the first pass warms up (cudnn autotuning, allocator)
            out = scratch / f"out{r}"
            start = time.perf_counter()
            report = translate_files(model, [photos], out, batch_size=batch_size, fmt=fmt, progress=False)
            wall = time.perf_counter() - start
            reports.append({"wall_s": round(wall, 3), **{k: round(v, 3) for k, v in report.seconds.items()},
                            "written": report.written})
            shutil.rmtree(out, ignore_errors=True)
        timed = reports[1:]
        best = min(timed, key=lambda r: r["wall_s"])
        total = sum(best[k] for k in ("decode", "network", "write"))
        result = {
            "generator": generator, "task": task, "images": images, "size": size, "batch_size": batch_size,
            "device": str(model.device), "torch_threads": torch.get_num_threads(), "format": fmt,
            "warmup_pass": reports[0], "timed_passes": timed,
            "img_per_s": images / best["wall_s"],
            "share": {k: round(best[k] / total, 3) for k in ("decode", "network", "write")},
        }
        if network_probe:
            result["network_only"] = network_only(model, batch_size, size, max(2, images // batch_size))
        for name in variants:  # the same passes under other host settings (see VARIANTS)
            runs = []
            for r in range(2):
                out = scratch / f"variant-{name}-{r}"
                with VARIANTS[name]():
                    start = time.perf_counter()
                    report = translate_files(model, [photos], out, batch_size=batch_size, fmt=fmt, progress=False)
                    wall = time.perf_counter() - start
                runs.append({"wall_s": round(wall, 3), **{k: round(v, 3) for k, v in report.seconds.items()}})
                shutil.rmtree(out, ignore_errors=True)
            result.setdefault("variants", {})[name] = {**runs[-1], "img_per_s": round(images / runs[-1]["wall_s"], 1)}
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="unet_256", help="an i2i generator (i2i list generators)")
    ap.add_argument("--task", default="denoise", choices=["denoise", "gray2color"])
    ap.add_argument("--images", type=positive_int, default=16)
    ap.add_argument("--size", type=positive_int, default=256)
    ap.add_argument("--batch-size", type=positive_int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--format", default="png", type=str.lower, choices=FORMATS)
    ap.add_argument("--repeats", type=positive_int, default=1)
    ap.add_argument("--json", type=json_file)
    args = ap.parse_args(argv)
    import i2i

    generators = sorted(i2i.registry("generators"))
    if args.generator not in generators:
        ap.error(f"argument --generator: {args.generator!r}: no such generator here; expected one of {', '.join(generators)}")
    try:
        result = run(args.generator, args.images, args.size, args.batch_size, args.device, args.format, args.task,
                     args.repeats)
    except i2i.UserError as exc:  # what i2i refuses (a --device it lacks, a generator the task cannot train)
        raise SystemExit(f"bench_translate: {exc}") from None
    best = min(result["timed_passes"], key=lambda r: r["wall_s"])
    print(f"translate {args.images} x {args.size} px with {args.generator} on {result['device']} (batch {args.batch_size}): "
          f"{result['img_per_s']:.2f} img/s; decode {best['decode']:.2f} s, network {best['network']:.2f} s, "
          f"write {best['write']:.2f} s (shares {result['share']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
