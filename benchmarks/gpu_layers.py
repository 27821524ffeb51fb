"""Do pix2pix's few-channel outer layers pay for padding their channels to 8? (one GPU, ~20 s)

At batch 64 the U-Net's first and last layers and PatchGAN's first and last layers have 1, 3 or 6
channels on one side, which tensor cores cannot fill. This times each such layer alone, forward
and backward, as the training step runs it (bf16 autocast, channels_last, cudnn.benchmark), once
as is and once with the thin side zero-padded to 8 channels (same result: the padding's weights
or outputs are dropped). Prints one JSON object; ``--device cpu`` only checks that it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import positive_int  # noqa: E402


def timed_ms(fn, device: str, iters: int) -> float:
    for _ in range(5):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / iters


def layer_case(layer: nn.Module, x: torch.Tensor, *, input_grad: bool, pad_in: int = 0, keep_out: int = 0):
    """One forward and backward of ``layer`` on ``x``; ``pad_in`` zero channels are appended to the
    input, and only the first ``keep_out`` output channels are kept (0: all)."""
    x = x.detach().requires_grad_(input_grad)

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            inp = F.pad(x, (0, 0, 0, 0, 0, pad_in)) if pad_in else x
            out = layer(inp)
            if keep_out:
                out = out[:, :keep_out]
            loss = out.float().square().mean()
        loss.backward()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batch", type=positive_int, default=64)
    ap.add_argument("--iters", type=positive_int, default=20)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_layers: no CUDA device (--device cpu only checks that it runs)")
    dev, b = args.device, args.batch
    size = 256 if dev == "cuda" else 32
    torch.backends.cudnn.benchmark = True
    cl = torch.channels_last

    def make(ctor, *shape):
        return ctor().to(dev, memory_format=cl), torch.randn(*shape, device=dev).contiguous(memory_format=cl)

    cases = {
        # name: (layer constructor as is, padded constructor, input shape, input needs grad, pad_in, keep_out)
        "G first conv 3->64": (lambda: nn.Conv2d(3, 64, 4, 2, 1), lambda: nn.Conv2d(8, 64, 4, 2, 1),
                               (b, 3, size, size), False, 5, 0),
        "G last convT 128->3": (lambda: nn.ConvTranspose2d(128, 3, 4, 2, 1), lambda: nn.ConvTranspose2d(128, 8, 4, 2, 1),
                                (b, 128, size // 2, size // 2), True, 0, 3),
        "D first conv 6->64": (lambda: nn.Conv2d(6, 64, 4, 2, 1), lambda: nn.Conv2d(8, 64, 4, 2, 1),
                               (b, 6, size, size), True, 2, 0),
        "D last conv 512->1": (lambda: nn.Conv2d(512, 1, 4, 1, 1), lambda: nn.Conv2d(512, 8, 4, 1, 1),
                               (b, 512, size // 8 - 1, size // 8 - 1), True, 0, 1),
    }
    results = {"device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", "batch": b, "size": size,
               "torch": torch.__version__}
    for name, (plain, padded, shape, grad, pad_in, keep_out) in cases.items():
        layer, x = make(plain, *shape)
        as_is = timed_ms(layer_case(layer, x, input_grad=grad), dev, args.iters)
        layer8, _ = make(padded, *shape)
        pad = timed_ms(layer_case(layer8, x, input_grad=grad, pad_in=pad_in, keep_out=keep_out), dev, args.iters)
        results[name] = {"as_is_ms": round(as_is, 3), "padded_to_8_ms": round(pad, 3)}
        print(name, results[name], flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
