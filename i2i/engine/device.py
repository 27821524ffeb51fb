"""Choosing the device and the numeric precision of a run, and giving an embedding program its
global torch settings (random streams, backend flags, default dtype) back afterwards."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

from ..errors import UserError


@contextlib.contextmanager
def global_state_kept() -> Iterator[None]:
    """Training seeds torch's and Python's global random streams, sets cuDNN and TF32 flags for
    speed and works in float32 (whatever default dtype the caller set); a program that embeds
    i2i gets its own settings back when the call returns."""
    python_state, cpu_state = random.getstate(), torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    initial_seed = torch.initial_seed()  # what CUDA's streams start from when first used
    benchmark, tf32 = torch.backends.cudnn.benchmark, _tf32_settings()
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
        elif torch.cuda.is_initialized():  # first used by the run: as the caller's first use would have found them
            torch.cuda.manual_seed_all(initial_seed)
        torch.backends.cudnn.benchmark = benchmark
        _set_tf32(*tf32)


def _tf32_flags(api: str) -> tuple[tuple[object, str], ...]:
    """Where TF32 for CUDA matmuls and convolutions is set, in one of torch's two APIs."""
    backends = torch.backends
    if api == "allow_tf32":
        return (backends.cuda.matmul, "allow_tf32"), (backends.cudnn, "allow_tf32")
    return (backends.cuda.matmul, "fp32_precision"), (backends.cudnn.conv, "fp32_precision")


def _tf32_settings() -> tuple[str, tuple]:
    """TF32 for CUDA matmuls and convolutions, read in the API the program uses: torch >= 2.9's
    ``fp32_precision`` refuses to be read through the older ``allow_tf32`` flags once a program
    has set it (and the other way round)."""
    api = "allow_tf32"
    try:
        return api, tuple(getattr(owner, name) for owner, name in _tf32_flags(api))
    except RuntimeError:
        api = "fp32_precision"
        return api, tuple(getattr(owner, name) for owner, name in _tf32_flags(api))


def _set_tf32(api: str, values: tuple) -> None:
    """Set what :func:`_tf32_settings` read, in the same API, and only what differs (writing
    even an unchanged value through the older API would make torch refuse the newer one)."""
    for (owner, name), value in zip(_tf32_flags(api), values):
        if getattr(owner, name) != value:
            setattr(owner, name, value)


def allow_tf32() -> None:
    """TF32 for CUDA matmuls and convolutions (training on a GPU), in the API the program uses."""
    api, _ = _tf32_settings()
    _set_tf32(api, (True, True) if api == "allow_tf32" else ("tf32", "tf32"))


@contextlib.contextmanager
def caller_autocast_off() -> Iterator[None]:
    """Autocast off for the block: a run trains in its recipe's precision even when the caller
    is inside its own ``torch.autocast`` (the engine enables its own where the recipe says)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast("cpu", enabled=False))
        if torch.cuda.is_available():
            stack.enter_context(torch.autocast("cuda", enabled=False))
        yield


def resolve_device(name: str, local_rank: int | None = None, where: str = "train.device") -> torch.device:
    """``auto`` -> the local CUDA GPU (per rank under torchrun), else MPS, else the CPU.

    ``where`` names the setting in errors: ``train.device`` in a recipe, ``--device`` on the
    command line.
    """
    if not isinstance(name, (str, torch.device)):  # a program's None or 0: its type, not a device name, is wrong
        raise TypeError(f"{where} is a device name such as 'auto', 'cpu' or 'cuda:0' (or a torch.device), not "
                        f"{type(name).__name__} {name!r}")
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


def cpu_multiplies_bf16_in_hardware() -> bool:
    """Whether this CPU has bf16 dot-product instructions: Intel AMX (Xeon 4th generation on) or
    AVX-512 BF16 (AMD Zen 4 on, Intel Cooper Lake).

    oneDNN then runs bf16 convolutions on them, and a pix2pix training step under bf16 autocast
    took 1.0-2.4 times less time than in fp32 on an AMX Xeon and 1.04-1.43 times less on a Zen 4
    EPYC (``benchmarks/RESULTS.md``). CPUs without them (AVX2, AVX-512 alone) emulate bf16, so
    they keep fp32. False where this torch cannot tell.
    """
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except (RuntimeError, AttributeError):
            continue
    return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` = bf16 autocast on CUDA GPUs that support it and on CPUs with bf16 instructions
    (:func:`cpu_multiplies_bf16_in_hardware`), fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_multiplies_bf16_in_hardware():
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise UserError("train.precision = 'fp16' needs a GPU; use 'bf16' or 'fp32' on the CPU")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def dtype_name(dtype: torch.dtype) -> str:
    """``bfloat16`` for ``torch.bfloat16``: how run.json, ``i2i eval`` and messages name a precision."""
    return str(dtype).replace("torch.", "")


def autocast(device: torch.device, dtype: torch.dtype, cache: bool = True) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype``, or a no-op for fp32; on the CPU, weight-bound
    convolutions stay in fp32 inside it (:class:`WeightBoundConvolutionsInFp32`).

    ``cache=False`` turns off the cache of weights cast to ``dtype``, as CUDA-graph capture needs.
    """
    if dtype == torch.float32:
        return contextlib.nullcontext()
    if device.type == "cpu":
        context = _cpu_autocast(dtype, cache)
    else:
        context = torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache)
    return _cache_cleared_on_exit(context) if cache else context


@contextlib.contextmanager
def _cache_cleared_on_exit(context: contextlib.AbstractContextManager) -> Iterator[None]:
    """``context``, then the cache of weights cast to the low precision emptied. torch empties
    it only when the outermost autocast exits: inside another one (a caller's, or
    :func:`caller_autocast_off` around a run) the next block would reuse copies of weights that
    the optimiser has changed since."""
    try:
        with context:
            yield
    finally:
        torch.clear_autocast_cache()


@contextlib.contextmanager
def _cpu_autocast(dtype: torch.dtype, cache: bool) -> Iterator[None]:
    with torch.autocast(device_type="cpu", dtype=dtype, cache_enabled=cache), WeightBoundConvolutionsInFp32():
        yield


#: A convolution with fewer output positions (batch x height x width) than this does fewer than
#: 2 x 512 FLOPs per weight: on the CPU it is bound by reading its weights, not by arithmetic.
FP32_BELOW_POSITIONS = 512


class WeightBoundConvolutionsInFp32(TorchFunctionMode):
    """Under CPU autocast, runs convolutions with few output positions in fp32.

    Why: autocast casts every weight to bf16 at each step (and its gradient back), which pays
    only where the arithmetic is large against the weight. A U-Net's 512-channel layers at 8 px
    and less are the opposite: most of its weights, little of its arithmetic. In the 2-core AMX
    machine's pix2pix steps, keeping them in fp32 took unet_128 at 128 px batch 1 from 258 to
    219 ms (fp32 alone: 242) and unet_256 at 256 px from 428 to 356 ms, and lowered the peak
    memory by 180-240 MB, the bf16 copies of those weights (``benchmarks/RESULTS.md``).
    """

    _CONVOLUTIONS = {torch.nn.functional.conv2d: False, torch.nn.functional.conv_transpose2d: True}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's protocol)
        kwargs = kwargs or {}
        transposed = self._CONVOLUTIONS.get(func)
        if transposed is not None and len(args) >= 2 and torch.is_autocast_enabled("cpu"):
            input, weight = args[0], args[1]
            if (isinstance(input, torch.Tensor) and input.dim() == 4 and isinstance(weight, torch.Tensor)
                    and weight.dtype == torch.float32
                    and _output_positions(input, args[3] if len(args) > 3 else kwargs.get("stride", 1), transposed)
                    < FP32_BELOW_POSITIONS):
                rest = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args[2:]]
                with torch.autocast(device_type="cpu", enabled=False):
                    return func(input.float(), weight, *rest, **kwargs)
        return func(*args, **kwargs)


def _output_positions(input: torch.Tensor, stride: int | tuple[int, ...], transposed: bool) -> int:
    """About batch x output height x output width (padding and kernel edges aside)."""
    sh, sw = (stride, stride) if isinstance(stride, int) else (stride[0], stride[-1])
    n, _, h, w = input.shape
    return n * h * w * sh * sw if transposed else n * h * w // max(1, sh * sw)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError``, or the CPU allocator's refusal (a plain ``RuntimeError``)."""
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "can't allocate memory" in str(exc)
