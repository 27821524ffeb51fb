"""Choosing the device and the numeric precision of a run, and giving an embedding program its
global torch settings (random streams, backend flags, default dtype) back afterwards."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import torch

from ..errors import UserError


@contextlib.contextmanager
def global_state_kept() -> Iterator[None]:
    """Training seeds torch's and Python's global random streams, sets cuDNN and TF32 flags for
    speed and works in float32 (whatever default dtype the caller set); a program that embeds
    i2i gets its own settings back when the call returns."""
    python_state, cpu_state = random.getstate(), torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    backends = torch.backends
    flags = (backends.cudnn.benchmark, backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32)
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        random.setstate(python_state)
        torch.random.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        backends.cudnn.benchmark, backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = flags


def resolve_device(name: str, local_rank: int | None = None, where: str = "train.device") -> torch.device:
    """``auto`` -> the local CUDA GPU (per rank under torchrun), else MPS, else the CPU.

    ``where`` names the setting in errors: ``train.device`` in a recipe, ``--device`` on the
    command line.
    """
    if name == "auto":
        if torch.cuda.is_available():
            index = local_rank if local_rank is not None else torch.cuda.current_device()
            return torch.device("cuda", index % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"{where} = '{name}': not a device i2i can use; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{where} = '{name}': no CUDA GPU is available here; use 'auto' or 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"{where} = '{name}': only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"{where} = '{name}': MPS is not available here; use 'auto' or 'cpu'")
    return device


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX, Xeon 4th generation on).

    There oneDNN runs bf16 convolutions on the tile units, and a pix2pix training step under
    bf16 autocast took 1.0-2.4 times less time than in fp32 (``benchmarks/RESULTS.md``). CPUs
    without them (AVX2, or AVX-512 without AMX) emulate bf16 or were not measured, so they keep
    fp32. False where this torch cannot tell.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except (RuntimeError, AttributeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` = bf16 autocast on CUDA GPUs that support it and on CPUs with bf16 matrix units
    (:func:`cpu_has_bf16_matrix_units`), fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_has_bf16_matrix_units():
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise UserError("train.precision = 'fp16' needs a GPU; use 'bf16' or 'fp32' on the CPU")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype, cache: bool = True) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype``, or a no-op for fp32.

    ``cache=False`` turns off the cache of weights cast to ``dtype``, as CUDA-graph capture needs.
    """
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError``, or the CPU allocator's refusal (a plain ``RuntimeError``)."""
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "can't allocate memory" in str(exc)
