"""The training step replayed as one CUDA graph (``train.cuda_graphs``).

At small batches a GAN step on a GPU is bound by Python launching its several hundred kernels
one by one (about 14 ms per pix2pix step on an H100 whatever the image size), not by the GPU.
Captured once as a CUDA graph, the whole step (G forward, D step, G step, EMA update) is
launched with one call.

Capture needs a step that does the same thing with the same memory every time, and the trainer
provides one:

- the batch is copied into static input buffers; the data pipeline stays outside the graph
  (its crop plan is drawn on the host);
- loss sums, first-bad-step markers, logged extras and the step number are device tensors
  updated in place, and the extras (gradient norms, D accuracy) are computed every step;
- the learning rates live in device tensors that the schedule fills before each replay, and
  the optimisers are ``capturable``;
- autocast's weight-cast cache is off (its entries would outlive the capture).

With ``train.compile`` the compiled (fused) kernels are what is captured: on an H100 that was
8-11 % faster than the uncompiled graph (2026-11-28, ``benchmarks/RESULTS.md``).

What cannot run that way keeps the eager step: see :func:`graph_blocker`. A step that fails
to capture (a plugin loss that reads a value back to the host, say) is warned about once and
the run continues eagerly.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .trainer import Trainer

#: eager steps before capture: cuDNN picks its algorithms and the optimisers create their state
WARMUP_STEPS = 3

#: how a step is captured: ``capture(step_fn) -> replay``. CUDA graphs on a GPU; tests pass
#: a stand-in that runs the step under a host-sync guard instead.
Capture = Callable[[Callable[[], None]], Callable[[], None]]


def graph_blocker(trainer: "Trainer") -> str | None:
    """Why this run cannot replay its step as a CUDA graph, or None if it can."""
    cfg = trainer.train_cfg
    if trainer.device.type != "cuda":
        return f"needs a CUDA GPU (this run is on {trainer.device.type})"
    if trainer.dist.world_size > 1:
        return "not with several processes (torchrun): each step's gradient all-reduce runs outside a graph"
    if trainer.scalers is not None:
        return "not with train.precision = 'fp16' (its loss scaler checks for overflow on the host every step); use 'bf16'"
    if cfg["on_nonfinite"] == "skip":
        return "not with train.on_nonfinite = 'skip' (it reads the loss back to the host every step)"
    if trainer.regularizers:
        return f"not with the regularizer loss '{trainer.regularizers[0].label}' (it runs only on some steps)"
    if cfg["d_steps"] > 1 and trainer.D is not None:
        return "not with train.d_steps > 1"
    return None


def cuda_capture(step: Callable[[], None]) -> Callable[[], None]:
    """Capture ``step`` as a CUDA graph and return its replay."""
    graph = torch.cuda.CUDAGraph()
    # thread_local: a data-loader thread touching CUDA meanwhile does not break the capture
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        step()
    return graph.replay


class GraphedStep:
    """Runs ``trainer.step_on(input, target)`` as a replayed graph once warmed up.

    The first :data:`WARMUP_STEPS` calls run eagerly (on a side stream on CUDA, as capture
    requires); the next is captured and replayed; every later call copies the batch into the
    static buffers and replays. If capture fails, the trainer is told (``graphs_failed``) and
    runs eagerly from then on.
    """

    def __init__(self, trainer: "Trainer", capture: Capture = cuda_capture) -> None:
        self.trainer = trainer
        self.capture = capture
        self.warmed = 0
        self.replay: Callable[[], None] | None = None
        self._static: tuple[Tensor, Tensor] | None = None
        # graphed steps are the adversarial ones (the trainer runs g_warmup_steps eagerly)
        self._adversarial = trainer.D is not None

    def __call__(self, input: Tensor, target: Tensor) -> None:
        if self.replay is not None:
            self._static[0].copy_(input)
            self._static[1].copy_(target)
            self.replay()
        elif self.warmed < WARMUP_STEPS:
            with _side_stream(input.device):
                self.trainer.step_on(input, target, self._adversarial)
            self.warmed += 1
        else:
            self._capture_and_run(input, target)

    def _capture_and_run(self, input: Tensor, target: Tensor) -> None:
        trainer = self.trainer
        static = (input.clone(), target.clone())
        plain_groups = _make_capturable(trainer.optimizers())
        try:
            replay = self.capture(lambda: trainer.step_on(*static, self._adversarial))
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager steps
            from .device import is_out_of_memory

            if is_out_of_memory(exc):
                raise
            _restore(plain_groups)
            first_line = (str(exc).strip().splitlines() or [""])[0]
            trainer.graphs_failed(f"{type(exc).__name__}: {first_line}")
            trainer.step_on(input, target, self._adversarial)
            return
        self._static, self.replay = static, replay
        replay()  # capture records the step without running it


def _make_capturable(optimizers: list[torch.optim.Optimizer]) -> list[tuple[dict, Any, bool]]:
    """Learning rates into device tensors (set by the schedule between replays), capturable on."""
    saved = []
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            saved.append((group, group["lr"], group.get("capturable", False)))
            device = group["params"][0].device
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
            group["capturable"] = True
    return saved


def _restore(saved: list[tuple[dict, Any, bool]]) -> None:
    for group, lr, capturable in saved:
        group["lr"], group["capturable"] = float(lr), capturable


@contextlib.contextmanager
def _side_stream(device: torch.device):
    """Warm-up steps before capture run on a side stream (torch.cuda.graph's documented recipe)."""
    if device.type != "cuda":
        yield
        return
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream(device).wait_stream(side)
