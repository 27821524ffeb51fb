"""The GAN training contract, in one file a reader can follow.

One step (``train_step``)::

    clean           = data.next_batch()                     # on the device already
    input, target   = task.make_pair(clean, noise_rng)
    fake            = G(input)
    d_step(input, fake.detach(), target)                    # train.d_steps per G step
    g_step(input, fake, target)                             # D frozen; adversarial terms
                                                            # join after train.g_warmup_steps
    ema.update(G)

Without a ``[discriminator]`` the same loop trains G alone on its reconstruction losses.
Losses are summed on the device and read back only every ``output.log_every`` steps, so the
loop never waits for the device.

Under distributed training (``DistContext``, see ``distributed.py``) G and D run wrapped in
DistributedDataParallel, so each backward averages gradients over the ranks; the G step
runs the plain, frozen D (there is no D gradient to share there). Rank 0 alone writes logs,
samples and checkpoints; logged values are means over ranks.

``d_step`` and ``g_step`` are plain methods: subclass the Trainer, or steer a run from a
callback, without editing this file.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .. import __version__
from ..callbacks import callback_states, load_callback_states, warn_unknown_events
from ..errors import (CheckpointWriteError, PluginError, SecondInterrupt, StopRequested, TrainingStopped, UserError,
                      exception_line, scoring_hint, shell_path)
from ..losses import as_logit_list
from ..messages import one_line, say
from ..options import changed_keys
from ..recipe import Recipe, blamed_on_recipe, recipe_error
from . import checkpoint as ckpt
from .components import (LossTerm, build_loss_terms, build_networks, check_crop_size, crop_size_note, load_loss_buffers,
                         loss_buffers, usable_output_scale)
from .cpu_threads import NoThreadGovernor, ThreadGovernor
from .contracts import (check_generator_output, check_task_pair, contract_where, dry_run, generator_named,
                        raise_plugin_failure, refuse_batch_beyond_memory)
from .cuda_graph import GraphedStep, graph_blocker
from .device import allow_tf32, autocast, is_out_of_memory, resolve_device, resolve_precision
from .distributed import DistContext, is_comm_failure
from .evaluate import EvaluationAbandoned, build_metrics, check_scoring_crop, lower_is_better
from .health import HealthMonitor
from .host_memory import freed_memory_kept
from .init_weights import load_initial_weights
from .optim import build_optimizer, load_state, lr_factor, portable_state, set_lr
from .report import MetricsLog, Progress, TensorBoard, save_grid

if TYPE_CHECKING:
    from ..data.sources import RecordedSplit

#: the key under which a non-finite generator output is tracked beside the loss terms' ones
GENERATOR_OUTPUT = "g_output"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device


#: The "validation files" scoring setting of a run validating on every file it recorded
ALL_RECORDED = "all recorded"

class Trainer:
    """Builds everything a recipe names and runs the training loop."""

    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path,
        *,
        dist: DistContext | None = None,
        callbacks: list[Any] | None = None,
        quiet: bool = False,
        split: RecordedSplit | None = None,
        resuming: bool = False,
    ) -> None:
        """``split``: a resumed run's recorded train/validation files (see :class:`~i2i.data.ImageData`);
        ``resuming``: its checkpoint is loaded next, so ``train.init_from`` is not read."""
        self.recipe, self.run_dir = recipe, Path(run_dir)
        self.dist = dist or DistContext.single()
        self.train_cfg, self.out_cfg, self.eval_cfg = recipe["train"], recipe["output"], recipe["eval"]
        self.total_steps = self.train_cfg["steps"]
        self.step = 0
        self.seed = self.train_cfg["seed"]
        self.stop_requested = False
        self.stop_reason: str | None = None  # a callback's TrainingStopped("why"), said in the stop's message
        self._unscored_step = -1  # the step whose evaluation a stop request cut short
        self.finish_reason: str | None = None  # a callback's finish_early("why"): the run ends as finished
        self._finish_asked = False
        self._reasons_shared = False  # the ranks' stop and finish reasons, gathered once they agree to end
        self.finished_early = False  # the run ended, finished, before train.steps (finish_early)
        self._grey_validation_checked = False  # whether the first evaluation looked for grey targets (a colouriser's)
        self._scored_step = -1  # the step last evaluated (checkpointed: a resume's finish_early need not score it again)
        self.lr_scale = {"g": 1.0, "d": 1.0}  # a callback's scale_lr: on top of the recipe's schedule, checkpointed
        self._lr_scale_changed = False
        self.callbacks = list(callbacks or [])
        warn_unknown_events(self.callbacks)
        self.quiet = quiet
        self.best: dict[str, Any] = {}
        self.best_not_comparable = ""  # after a resume: how its best's scoring settings differ from the run's
        self.retired_best: dict[str, Any] = {}  # that best, kept under its own pointer
        self.last_metrics: dict[str, float] = {}
        self.last_baselines: dict[str, dict[str, float]] = {}
        self.health = HealthMonitor()
        self._evaluating = False  # where an out-of-memory error struck: its message differs

        seed_everything(self.seed + self.dist.rank)
        with blamed_on_recipe(recipe):
            self.device = self.dist.device if self.dist.device is not None else resolve_device(self.train_cfg["device"])
            self.dtype = resolve_precision(self.train_cfg["precision"], self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            allow_tf32()

        refuse_batch_beyond_memory(recipe, self.device)
        nets = build_networks(recipe, self.device)
        self.task, self.G, self.D, self.conditional = nets.task, nets.G, nets.D, nets.conditional
        check_crop_size(recipe, nets)
        size_note = crop_size_note(recipe, nets)
        if size_note is not None and self.dist.is_main:
            say(f"i2i: note: {size_note}")
        # train.init_from: a new run fine-tuning earlier weights (before the EMA copies G)
        self.initial_weights = None if resuming else load_initial_weights(recipe, self.G, self.D)
        seed_everything(self.seed + self.dist.rank)
        terms = build_loss_terms(recipe, self.D, self.device)
        self.recon, self.adversarial = terms.recon, terms.adversarial
        self.regularizers, self.feature_matching = terms.regularizers, terms.feature_matching
        self._g_loss_wants_real = any(term.wants_real for term in self.adversarial)  # a relativistic G half
        self.metric_functions = build_metrics(self.task, self.eval_cfg["metrics"], recipe)
        check_scoring_crop(recipe, self.metric_functions, usable_output_scale(self.task))
        # a task, network or metric that breaks its contract fails here, before any step
        dry_run(recipe, nets, self.device, self.metric_functions, features=bool(self.feature_matching))

        channels_last = self.train_cfg["channels_last"]
        self.channels_last = channels_last is True or (channels_last == "auto" and self.device.type == "cuda")
        if self.channels_last:
            self.G.to(memory_format=torch.channels_last)
            if self.D is not None:
                self.D.to(memory_format=torch.channels_last)
        if self.train_cfg["sync_bn"] and self.dist.world_size == 1:
            gpus = "" if self.device.type == "cuda" else ", each on a CUDA GPU (it is refused on the CPU)"
            say("i2i: note: train.sync_bn = true has no effect in one process: it synchronises batch norm across the "
                f"processes of i2i run --nproc N (or torchrun){gpus}")
        if self.train_cfg["sync_bn"] and self.dist.world_size > 1:
            check_sync_bn(recipe, self.device, self.dist.world_size)
            self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            if self.D is not None:
                self.D = nn.SyncBatchNorm.convert_sync_batchnorm(self.D)

        self.opt_g = build_optimizer(self.G.parameters(), self.train_cfg["g"], self.device)
        self.opt_d = build_optimizer(self.D.parameters(), self.train_cfg["d"], self.device) if self.D is not None else None
        self.ema: nn.Module | None = None
        if self.train_cfg["ema"] > 0:
            self.ema = copy.deepcopy(self.G).eval().requires_grad_(False)
            span = round(1 / (1 - self.train_cfg["ema"]))
            # the usual decays (0.999, 0.9999) on a short run: scored and kept near the initial weights
            if span >= 100 and self.total_steps < span and self.dist.is_main and not self.train_cfg["ema_warmup"]:
                say(f"i2i: warning: train.ema = {self.train_cfg['ema']} averages G's weights over about {span} steps, "
                    f"more than this run's {self.total_steps}: the weights evaluated, kept as BEST and translated "
                    f"would still be mostly the initial ones; set train.ema_warmup = true, or "
                    + (f"train.ema to at most {1 - 10 / self.total_steps:.3g} (a tenth of the run) or 0"
                       if self.total_steps > 10 else "train.ema = 0 for a run this short"))
        # fp16 loss scaling, one scaler per network: each is updated once per its own step (as
        # PyTorch's pattern of one update per optimiser iteration expects), and an overflow in
        # D's gradients does not halve G's scale.
        self.scalers: dict[str, torch.amp.GradScaler] | None = None
        if self.dtype == torch.float16:
            self.scalers = {"g": torch.amp.GradScaler(self.device.type)}
            if self.opt_d is not None:
                self.scalers["d"] = torch.amp.GradScaler(self.device.type)

        # who to name when a component's code fails during a step (the dry run saw it in eval mode only)
        self._where = {section: contract_where(recipe, section) for section in ("task", "generator", "discriminator")
                       if section != "discriminator" or self.D is not None}
        # The networks the step runs (DDP- and compile-wrapped where asked); the plain modules
        # above are what checkpoints hold.
        # D_frozen is the D of the G step: the plain module, because D's parameters take no
        # gradient there and a DDP-wrapped D would expect a gradient all-reduce that never comes.
        self.G_run, self.D_run = self.dist.wrap(self.G), (self.dist.wrap(self.D) if self.D is not None else None)
        self.D_frozen = self.D
        if self.train_cfg["compile"]:
            # dynamic=False: a step's shapes never change, and torch's default made a program's
            # second run with another crop or batch compile shape-generic kernels, slower to build
            # (benchmarks/RESULTS.md, 2026-11-29) and to run
            _import_cpp_builder_quietly(self.device)
            self.G_run = torch.compile(self.G_run, dynamic=False)
            if self.D_run is not None:
                compiled = torch.compile(self.D_run, dynamic=False)
                self.D_frozen = compiled if self.D_run is self.D else torch.compile(self.D, dynamic=False)
                self.D_run = compiled

        from ..data import ImageData
        from ..data.sources import name_files

        with blamed_on_recipe(recipe):  # the recipe file, or the --set (data.source=/nowhere) the folder came from
            self.data = ImageData(
                recipe["data"], channels=self.task.image_channels, device=self.device, seed=self.seed,
                rank=self.dist.rank, world_size=self.dist.world_size, find_grey=self.task.learns_colour, split=split,
                side_by_side=self.task.side_by_side, scored_multiple=usable_output_scale(self.task),
            )
        if self.dist.is_main:
            for line in self.data.split_note.splitlines():  # training's changes, then validation's
                say(line)
        grey = self.data.grey_train_files
        if grey and len(grey) == len(self.data.train_files) and not self.dist.is_distributed:
            # a folder of old black-and-white photos given to train on, to colourise them: it would learn grey
            raise recipe_error(recipe, f"data.source = {recipe['data']['source']!r}: none of its {len(grey)} training "
                                       f"images shows colour, and task {recipe['task']['name']!r} learns colour from "
                                       "colour photos; train on colour photos (or \"sample\"), then give your grey ones "
                                       "to i2i translate")
        if grey and self.dist.is_main:
            say(f"i2i: warning: {len(grey)} of {len(self.data.train_files)} training images show no colour "
                f"({name_files(grey)}); task {recipe['task']['name']!r} learns colour from its photos, and "
                "these teach it grey: remove them from data.source")
        self.noise_rng = torch.Generator(device=self.device)
        self.noise_rng.manual_seed(self.seed * 1000 + 17 + self.dist.rank)
        self.acc: dict[str, Tensor] = {}
        # per term, the steps it was added on: a term absent from some steps of a log window (the
        # adversarial one as g_warmup_steps ends, one skipped under on_nonfinite = "skip") is
        # averaged over its own steps, not diluted by the others
        self.acc_steps: dict[str, Tensor] = {}
        self.bad_step: dict[str, Tensor] = {}
        # the first step of the log window whose generator output held NaN or infinite values:
        # then the generator, not a loss, is named when the run stops (-1: none)
        self._bad_output = torch.full((), -1, dtype=torch.long, device=self.device)
        self.acc_count = 0
        self.extras: dict[str, Tensor] = {}
        self._step_number = torch.zeros((), dtype=torch.long, device=self.device)  # step + 1, on the device
        self._logging_step = False
        self._saved_step = -1  # the step of the last checkpoint on disk: written by this process, or resumed from
        self.step_begun = 0  # the step train_step last started: a failure in it, or in the events after it
        # output.checkpoint_minutes: when the last checkpoint was written (or the run started),
        # on a clock tests can replace, and whether the ranks agreed that one is due
        self.clock = time.monotonic
        self._saved_at = self.clock()
        self._checkpoint_due = False
        self._recorded_unreadable_val: set[str] = set()  # validation files marked undecodable in split.json
        # train.on_nonfinite = 'skip': optimiser updates skipped so far, and as of the last log
        self.skipped_updates = {"g": 0, "d": 0}
        self._skips_logged = dict(self.skipped_updates)
        self._skipped_terms: set[str] = set()  # the loss terms that were non-finite since the last log
        self.resumed_at: int | None = None  # the step of the checkpoint this run continued from
        self._autocast_cache = True
        self.graphs: GraphedStep | None = None
        self.graphs_failure: str | None = None  # why capture failed, if it did
        self._setup_graphs(recipe)

    # -- construction helpers -----------------------------------------------------------------
    def _setup_graphs(self, recipe: Recipe) -> None:
        """``train.cuda_graphs``: 'auto' replays the step as a CUDA graph where it can, true insists."""
        wanted = self.train_cfg["cuda_graphs"]
        if wanted is False:
            return
        blocker = graph_blocker(self)
        if blocker is not None:
            if wanted is True:
                raise recipe_error(recipe, f"train.cuda_graphs = true: {blocker}; set it to 'auto' or false")
            return
        self.use_graphs(GraphedStep(self))

    def use_graphs(self, graphs: GraphedStep) -> None:
        """Run steps through ``graphs`` from now on (tests pass one with a stand-in capture)."""
        self.graphs = graphs
        self._autocast_cache = False

    def graphs_failed(self, reason: str) -> None:
        """Capture failed: say so once and go on with eager steps."""
        if self.dist.is_main:
            say(f"i2i: warning: CUDA graphs off, the step could not be captured ({reason}); training continues without them")
        self.graphs = None
        self.graphs_failure = reason
        self._autocast_cache = True

    def loss_terms(self) -> list[LossTerm]:
        """Every loss term of the recipe, whatever its kind."""
        return [*self.recon, *self.adversarial, *self.regularizers, *self.feature_matching]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.opt_g, self.opt_d) if o is not None]

    @property
    def _want_extras(self) -> bool:
        """Gradient norms and D accuracy: on logging steps, and on every step of a graphed run
        (a graph cannot skip them on some steps)."""
        return self._logging_step or self.graphs is not None

    def _reset_accumulators(self) -> None:
        """Zero the loss sums in place (a captured step keeps adding into the same tensors)."""
        for value in (*self.acc.values(), *self.acc_steps.values()):
            value.zero_()
        for bad in (*self.bad_step.values(), self._bad_output):
            bad.fill_(-1)
        self.acc_count = 0

    # -- the step -------------------------------------------------------------------------------
    def d_input(self, input: Tensor, output: Tensor) -> Tensor:
        """What D sees: the output, concatenated with the input for a conditional D."""
        return torch.cat([input, output], dim=1) if self.conditional else output

    def generate(self, input: Tensor) -> Tensor:
        with autocast(self.device, self.dtype, self._autocast_cache):
            return self.plugin_call("generator", self.G_run, input)

    def plugin_call(self, section: str, fn: Any, input: Tensor, *args: Any, **kwargs: Any) -> Any:
        """``fn(input, ...)``, a task's or network's own code: what it raises during a step is
        one line naming the recipe table and plugin (the dry run tried it in eval mode only)."""
        try:
            return fn(input, *args, **kwargs)
        except Exception as exc:
            if self.dist.is_distributed and is_comm_failure(exc):  # a lost rank (DDP's forward syncs): not the plugin
                raise
            raise_plugin_failure(exc, f"{self._where[section]} failed at step {self.step + 1} (training) on a batch of "
                                      f"shape {list(input.shape)}: ")

    def train_step(self) -> None:
        """One generator step and ``train.d_steps`` discriminator steps."""
        self.step_begun = self.step + 1
        self._logging_step = (self.step + 1) % self.out_cfg["log_every"] == 0 or self.step + 1 == self.total_steps
        set_lr(self.opt_g, self.train_cfg["g"]["lr"],
               lr_factor(self.step, self.total_steps, self.train_cfg["g"]) * self.lr_scale["g"])
        if self.opt_d is not None:
            set_lr(self.opt_d, self.train_cfg["d"]["lr"],
                   lr_factor(self.step, self.total_steps, self.train_cfg["d"]) * self.lr_scale["d"])
        self._step_number.fill_(self.step + 1)
        # train.on_nonfinite = 'skip' (eager, one host sync per step already): a skipped update left
        # the batch-norm statistics its forward had made of the bad values, and the checkpoints
        # then held them, which no resume would open; the buffers are put back as they were
        before = self._buffers_kept() if self.train_cfg["on_nonfinite"] == "skip" else None
        skipped_before = sum(self.skipped_updates.values())

        batch_size = self.train_cfg["batch_size"]
        if self.D is not None:
            for extra in range(self.train_cfg["d_steps"] - 1):  # extra D steps see fresh batches
                extra_in, extra_target = self.make_pair(self.data.next_batch(batch_size))
                with torch.no_grad():
                    extra_fake = self.generate(extra_in)
                self.d_step(extra_in, extra_fake, extra_target, extra)

        input, target = self.make_pair(self.data.next_batch(batch_size))
        adversarial = self.D is not None and self.step >= self.train_cfg["g_warmup_steps"]
        if self.graphs is not None and (adversarial or self.D is None):
            self.graphs(input, target)  # the same step_on, replayed as one CUDA graph
        else:
            self.step_on(input, target, adversarial)
        if before is not None and sum(self.skipped_updates.values()) > skipped_before:  # no sync on steps that skip nothing
            self._restore_nonfinite_buffers(before)
        self.acc_count += 1

    def _buffers_kept(self) -> list[tuple[Tensor, Tensor]]:
        """Each floating-point buffer of the networks (G, D, EMA G: batch-norm statistics, say),
        with a copy of its value now."""
        nets = [net for net in (self.G, self.D, self.ema) if net is not None]
        return [(b, b.detach().clone()) for net in nets for b in net.buffers() if b.is_floating_point()]

    def _restore_nonfinite_buffers(self, kept: list[tuple[Tensor, Tensor]]) -> None:
        """Put back the buffers that went NaN or infinite this step (one host sync)."""
        if not kept or bool(torch.stack([torch.isfinite(b).all() for b, _ in kept]).all()):
            return
        with torch.no_grad():
            for buffer, value in kept:
                if not bool(torch.isfinite(buffer).all()):
                    buffer.copy_(value)

    def make_pair(self, clean: Tensor) -> tuple[Tensor, Tensor]:
        """The task's (input, target) for a training batch, in the networks' memory format.

        Why: an input in the other layout is copied at every convolution that reads it, and a
        D input concatenated from both layouts comes out in neither (on an H100 at batch 64
        these copies took 0.8 of a pix2pix step's 29 ms).
        """
        pair = self.plugin_call("task", self.task.make_pair, clean, self.noise_rng)
        # types, shapes, dtypes and devices: attributes, no sync. The dry run saw one image; a task
        # can break at the training batch size, and the generator was blamed for what it was fed
        input, target = check_task_pair(pair, clean, self.task, f"{self._where['task']} at step {self.step + 1} "
                                                               f"(training, a batch of {clean.shape[0]})")
        if self.channels_last:
            input, target = (t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
                             for t in (input, target))
        return input, target

    def step_on(self, input: Tensor, target: Tensor, adversarial: bool) -> None:
        """G forward, D step, G step and EMA update on one batch: what a CUDA graph captures."""
        fake = self.generate(input)
        if not isinstance(fake, Tensor) or fake.shape != target.shape:  # metadata, no sync; the dry run saw eval mode only
            check_generator_output(fake, target, f"{contract_where(self.recipe, 'generator')} at step {self.step + 1} "
                                                 "(training mode)", self.task.out_channels)
        if not fake.requires_grad:  # an attribute, no sync; backward would fail with torch's riddle
            raise PluginError(f"{contract_where(self.recipe, 'generator')} returned an output that does not depend on "
                              "any trainable parameter (detached, made under torch.no_grad, or from frozen weights), "
                              "so it cannot learn; report this to the plugin's author")
        if self.train_cfg["on_nonfinite"] != "skip":  # on the device, read with the losses
            bad = self._bad_output
            bad.copy_(torch.where((bad < 0) & ~torch.isfinite(fake.detach()).all(), self._step_number, bad))
        if self.D is not None:
            self.d_step(input, fake.detach(), target)
        self.g_step(input, fake, target, adversarial)
        if self.ema is not None:
            self.update_ema()
        if self._want_extras and fake.shape[0] > 1 and self.task.input_is_image:
            spread = fake.detach().float().std(dim=0).mean()
            self.extras["diversity"] = spread / target.float().std(dim=0).mean().clamp_min(1e-8)

    def d_step(self, input: Tensor, fake: Tensor, target: Tensor, index: int | None = None) -> None:
        """Update D on a real pair and a fake pair (``fake`` is already detached). ``index``: which
        of this step's ``train.d_steps`` D steps this is (default: the last, beside G's step);
        lazy regularisers count D steps, so ``every`` means the same whatever ``d_steps``."""
        d_steps = self.train_cfg["d_steps"]
        d_step_number = self.step * d_steps + (d_steps - 1 if index is None else index)
        real_in, fake_in = self.d_input(input, target), self.d_input(input, fake)
        terms: dict[str, Tensor] = {}
        with autocast(self.device, self.dtype, self._autocast_cache):
            d_real = as_logit_list(self.plugin_call("discriminator", self.D_run, real_in))
            d_fake = as_logit_list(self.plugin_call("discriminator", self.D_run, fake_in))
            for term in self.adversarial:
                terms[term.label] = term.compute(term.loss.d_loss, d_real, d_fake, part=" (d_loss)")
        for term in self.regularizers:  # in fp32, for stable second-order gradients
            every = max(1, int(getattr(term.loss, "every", 1)))
            if d_step_number % every == 0:
                discriminator = lambda x: [o.float() for o in as_logit_list(self.D_run(x))]  # noqa: E731
                terms[term.label] = term.compute(term.loss, discriminator, real_in, fake_in, scale=every)
        # a lazy regulariser's resting steps count towards its mean: it stands for every step
        resting = [term.label for term in self.regularizers if term.label not in terms]
        self._backward_and_step(terms, self.opt_d, self.D, self.train_cfg["d"], "d", resting)
        if self._want_extras:
            threshold = float(getattr(self.adversarial[0].loss, "decision_threshold", 0.0))
            self.extras["d_acc_real"] = torch.stack([(o.detach().float() > threshold).float().mean() for o in d_real]).mean()
            self.extras["d_acc_fake"] = torch.stack([(o.detach().float() < threshold).float().mean() for o in d_fake]).mean()

    def g_step(self, input: Tensor, fake: Tensor, target: Tensor, adversarial: bool) -> None:
        """Update G on its reconstruction terms and, once warmed up, the adversarial ones (D frozen)."""
        terms: dict[str, Tensor] = {}
        if self.D is not None:
            self.D.requires_grad_(False)
        try:
            with autocast(self.device, self.dtype, self._autocast_cache):
                for term in self.recon:
                    extra = {"input": input} if term.wants_input else {}
                    terms[term.label] = term.compute(term.loss, fake, target, **extra)
                if adversarial:
                    fake_in = self.d_input(input, fake)
                    real_logits = None  # D on the real pair: for feature matching, or a relativistic G half
                    if self.feature_matching:
                        logits, fake_features = self.plugin_call("discriminator", self.D_frozen, fake_in, return_features=True)
                        with torch.no_grad():
                            real_logits, real_features = self.plugin_call("discriminator", self.D_frozen,
                                                                          self.d_input(input, target), return_features=True)
                        for term in self.feature_matching:
                            terms[term.label] = term.compute(term.loss, real_features, fake_features)
                    else:
                        logits = self.plugin_call("discriminator", self.D_frozen, fake_in)
                    logits = as_logit_list(logits)
                    if real_logits is None and self._g_loss_wants_real:
                        with torch.no_grad():
                            real_logits = self.plugin_call("discriminator", self.D_frozen, self.d_input(input, target))
                    for term in self.adversarial:
                        extra = {"d_real": as_logit_list(real_logits)} if term.wants_real else {}
                        terms[term.label] = term.compute(term.loss.g_loss, logits, part=" (g_loss)", **extra)
            self._backward_and_step(terms, self.opt_g, self.G, self.train_cfg["g"], "g")
        finally:
            if self.D is not None:
                self.D.requires_grad_(True)

    def _backward_and_step(self, terms: dict[str, Tensor], optimizer, net: nn.Module, cfg: dict, which: str,
                           resting: list[str] | tuple[str, ...] = ()) -> None:
        total = torch.stack([t.float() for t in terms.values()]).sum()
        scaler = self.scalers[which] if self.scalers is not None else None
        if scaler is not None:
            scaler.scale(total).backward()
        else:
            total.backward()
        clip = cfg["clip_grad_norm"]
        if clip > 0 or self._want_extras:
            if scaler is not None:
                scaler.unscale_(optimizer)
            params = [p for p in net.parameters() if p.grad is not None]
            if params:
                norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"), foreach=True)
                if self._want_extras:
                    self.extras[f"grad_norm_{which}"] = norm
        skip = False
        if self.train_cfg["on_nonfinite"] == "skip":
            # the one host sync, only in skip mode; all ranks skip together (their gradients
            # were averaged, so a non-finite loss on one rank poisons every rank's step)
            skip = self.dist.agree(not bool(torch.isfinite(total)))
            if skip:  # which terms, for the warning at the next log (a sync only on skipped steps)
                self.skipped_updates[which] += 1
                for label, value in terms.items():
                    if not bool(torch.isfinite(value).all()):
                        self._skipped_terms.add(f"'{label}'")
        if not skip:
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
        # Release the gradients now rather than before the next backward: the steps in between
        # (the other network's step, the next G forward) then run without them in memory.
        optimizer.zero_grad(set_to_none=True)
        self._accumulate(which, terms, skip, resting)

    def _accumulate(self, which: str, terms: dict[str, Tensor], skipped: bool, resting: list[str] | tuple[str, ...] = ()) -> None:
        """Add this step's terms to the log window's sums, and count the step for each; a
        skipped update adds nothing. ``resting``: lazy regularisers not computed this step,
        counted with a value of 0."""
        if skipped:
            return
        # train.d_steps D steps per G step: their mean, so d_ losses compare across settings
        share = 1.0 / self.train_cfg["d_steps"] if which == "d" else 1.0
        for label in [*terms, *resting]:
            key = f"{which}_{label}"
            if key not in self.acc:
                self.acc[key] = torch.zeros((), device=self.device)
                self.acc_steps[key] = torch.zeros((), device=self.device)
                self.bad_step[key] = torch.full((), -1, dtype=torch.long, device=self.device)
            self.acc_steps[key] += share
            if label not in terms:
                continue
            value = terms[label].detach().float()
            self.acc[key] += value * share if share != 1.0 else value
            bad = self.bad_step[key]
            bad.copy_(torch.where((bad < 0) & ~torch.isfinite(value), self._step_number, bad))

    @torch.no_grad()
    def update_ema(self) -> None:
        """EMA of G's weights (buffers such as batch-norm statistics are copied).

        With ``train.ema_warmup`` the decay at step ``t`` (counted from 0) is
        ``min(ema, (1 + t) / (10 + t))``, TensorFlow's ``num_updates`` form: 0.1 at the first
        step, 0.9 by the 81st, ``ema`` from about ``(10 * ema - 1) / (1 - ema)`` steps on. It is
        computed on the device from the step number, so a CUDA graph replays it and a resumed
        run continues it."""
        decay = self.train_cfg["ema"]
        ema_params = list(self.ema.parameters())
        params = list(self.G.parameters())
        if self.train_cfg["ema_warmup"]:
            step = self._step_number.to(torch.float32) - 1
            kept = torch.clamp((1 + step) / (10 + step), max=decay)
            torch._foreach_mul_(ema_params, kept)
            torch._foreach_add_(ema_params, torch._foreach_mul(params, 1 - kept))
        else:
            torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for ema_buf, buf in zip(self.ema.buffers(), self.G.buffers()):
            ema_buf.copy_(buf)

    @property
    def first_step_unsaved(self) -> bool:
        """Whether the run is still in its first step (or the events after it) and has no
        checkpoint, none written here and none resumed from: its folder holds nothing to resume."""
        return self.step_begun <= 1 and self._saved_step < 0  # a resumed run's is its checkpoint's step

    # -- the loop -------------------------------------------------------------------------------
    def request_stop(self, reason: str | None = None) -> None:
        """Finish the current step, write a checkpoint and stop (SIGINT/SIGTERM do this).
        ``reason``, when given, is said in the stop's message (the first reason given wins).

        Under distributed training the ranks agree on the request before every step, so a
        request on any one rank (a signal, or a callback on rank 0) stops them all at the same
        step, one step later at most.
        """
        if reason and self.stop_reason is None:
            self.stop_reason = reason
        self.stop_requested = True

    def finish_early(self, reason: str = "") -> None:
        """End the run as finished after the current step (early stopping): that step is scored
        and checkpointed as a run's last step is, the run's status is ``finished`` (``i2i run``
        exits 0, ``i2i.train`` returns its :class:`i2i.Run`), and ``reason`` is said in its
        summary. A later resume trains on towards ``train.steps``. Any thread may call it; on
        several ranks, a call on one ends them all after the same step."""
        if not isinstance(reason, str):
            raise TypeError(f"finish_early's reason is a str, not {type(reason).__name__}")
        if self.finish_reason is None:
            self.finish_reason = one_line(reason)  # said in the run's one summary line
        self._finish_asked = True

    def scale_lr(self, factor: float, which: str = "both") -> None:
        """Multiply the learning rate of G, D or both (``which``: ``"g"``, ``"d"``, ``"both"``) by
        ``factor`` from the next step on, on top of the recipe's schedule (a plateau's drop:
        ``trainer.scale_lr(0.1)``). Scales multiply; checkpoints keep them, so a resumed run
        goes on at the scaled rate. Any thread may call it; on several ranks, rank 0's scale
        reaches every rank before the same step."""
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"scale_lr's factor = {factor!r}: expected a number above 0 (0.1 for a tenfold drop)")
        if which not in ("g", "d", "both"):
            raise ValueError(f"scale_lr's which = {which!r}: expected 'g', 'd' or 'both'")
        if which == "d" and self.opt_d is None:
            raise ValueError("scale_lr(which='d'): this run has no discriminator to scale the learning rate of")
        for net in ("g", "d") if which == "both" else (which,):
            self.lr_scale[net] *= float(factor)
        self._lr_scale_changed = True

    def _should_stop(self) -> bool:
        """This rank's stop request, agreed across ranks (a tiny gloo all-reduce per step), and
        with it whether ``output.checkpoint_minutes`` have passed on any rank's clock, so that
        every rank writes the timed checkpoint after the same step.

        ``stop_requested`` is only ever set here, never cleared: a signal handler sets it at any
        moment, most often while this rank waits in the all-reduce, and assigning the agreed
        ``False`` back over it lost the request (the run then trained to the end)."""
        minutes = self.out_cfg["checkpoint_minutes"]
        due = minutes > 0 and self.clock() - self._saved_at >= 60 * minutes
        stop, self._checkpoint_due, finish, rescaled = self.dist.agree_each(
            (self.stop_requested, due, self._finish_asked, self._lr_scale_changed))
        if stop:
            self.stop_requested = True
        if finish:
            self._finish_asked = True
        if rescaled and self.dist.is_distributed:  # a callback's scale_lr ran on rank 0 alone: its scale for all
            self.lr_scale = dict(self.dist.all_gather_object(self.lr_scale)[0])
        self._lr_scale_changed = False
        if (stop or finish) and self.dist.is_distributed and not self._reasons_shared:
            # the rank asked (a thread of rank 1's, say) may not be rank 0, which says why the run ended
            self._reasons_shared = True
            reasons = self.dist.all_gather_object((self.stop_reason, self.finish_reason))
            self.stop_reason = self.stop_reason or next((said for said, _ in reasons if said), None)
            self.finish_reason = self.finish_reason or next((said for _, said in reasons if said), None)
        return stop or finish

    def fit(self) -> str:
        """Train to ``train.steps``; returns ``finished`` or raises :class:`TrainingStopped`."""
        self.G.train()
        if self.D is not None:
            self.D.train()
        main = self.dist.is_main
        self._saved_at = self.clock()
        self.log = MetricsLog(self.run_dir / "metrics.jsonl", self.resumed_at) if main else None
        self.tb = TensorBoard(self.run_dir, self.out_cfg["tensorboard"], self.resumed_at) if main else None
        self.progress = Progress(self.out_cfg["progress"], self.total_steps, self.step, enabled=main and not self.quiet)
        self._emit("on_run_start", self)
        status = "failed"
        try:
            if main:
                callback_states(self.callbacks)  # a state_dict that cannot be kept is told now, not at the first checkpoint
            every_eval, every_ckpt, every_sample = self.eval_cfg["every"], self.out_cfg["checkpoint_every"], self.out_cfg["sample_every"]
            # on the CPU, steps reuse the memory the previous step freed (see host_memory.py) and
            # use fewer threads while other programs keep cores busy (see cpu_threads.py)
            on_cpu = self.device.type == "cpu"
            with freed_memory_kept() if on_cpu else contextlib.nullcontext(), \
                    contextlib.closing(self._thread_governor()) as threads:
                while self.step < self.total_steps and not self._should_stop():
                    try:
                        self.train_step()
                    except PluginError as exc:  # a plugin's code that failed on this batch, not on the checked one
                        self._place_in_run(exc)
                        raise
                    self.step += 1
                    threads.after_step()
                    self.progress.update(self.step)
                    last = self.step == self.total_steps
                    if self._logging_step:
                        self.log_step()
                    evaluated = False
                    if last or (every_eval and self.step % every_eval == 0):
                        self._evaluate_guarded()
                        evaluated = True
                    if every_sample and self.step % every_sample == 0 and not evaluated and not self.stop_requested:
                        self.write_samples()
                    if self._saved_step != self.step and (last or evaluated or (every_ckpt and self.step % every_ckpt == 0)
                                                          or self._checkpoint_due):
                        self.save_checkpoint()
            if self._finish_asked and self.step == 0:  # asked before any step: as a stop, nothing kept
                self.stop_requested = True
                self.stop_reason = self.stop_reason or self.finish_reason or None
            if self._finish_asked and not self.stop_requested and self.step < self.total_steps:
                # finished early: the step a callback ended the run at is scored and saved as a last step is
                # (a stop that cuts that scoring short ends it as one at the last step does: stopped, unscored)
                self.finished_early = True
                if self._scored_step != self.step:
                    self._evaluate_guarded()
                if self._saved_step != self.step:  # before logging, as for a stop (see below)
                    self.save_checkpoint()
                if self.acc_count:
                    self.log_step()
            if self.stop_requested and self.step < self.total_steps and not self.finished_early:
                status = "interrupted"
                if self.step == 0 and self.resumed_at is None:  # nothing trained: the run leaves no folder
                    why = f" ({self.stop_reason})" if self.stop_reason else ""
                    stopped = StopRequested(f"stopped before the first step{why}; nothing was trained, so nothing was "
                                            "kept", None, 0)  # no folder is kept to resume
                    stopped.nothing_trained = True
                    raise stopped
                # the checkpoint first: it keeps the steps not yet logged, which the stop's log line
                # below would reset, so a resumed run's next logged means match an uninterrupted one's
                if self._saved_step != self.step:
                    self.save_checkpoint()
                if self.acc_count:  # not logged at this step yet (a stop asked from on_log was)
                    self.log_step()
                why = f" ({self.stop_reason})" if self.stop_reason else ""
                raise StopRequested(
                    f"stopped at step {self.step}/{self.total_steps}{why}; checkpoint saved. "
                    f"Resume with: i2i run --resume {shell_path(self.run_dir)}"
                    f"{f' --nproc {self.dist.world_size} (or as many processes under your launcher)' if self.dist.world_size > 1 else ''}"
                    f" (Python: i2i.train(None, resume={str(self.run_dir)!r}))", self.run_dir, self.step
                )
            if self.stop_requested and self._unscored_step == self.step:  # the last step's scoring cut short
                status = "interrupted"
                reason = self.stop_reason or (self.finish_reason if self.finished_early else None)
                why = f" ({reason})" if reason else ""
                raise StopRequested(
                    f"stopped at step {self.step}/{self.total_steps}{why} during its final evaluation, so the run has "
                    f"no final scores; its weights are saved, and i2i eval {shell_path(self.run_dir)} scores them "
                    + ("(a resume trains on towards train.steps)" if self.finished_early else
                       "(a resume has no step left to train)"),
                    self.run_dir, self.step)
            status = "finished"
            return status
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise self._out_of_memory() from None
        finally:
            self.progress.close()
            self._end_callbacks(status)
            if self.log is not None:
                self.log.close()
            if self.tb is not None:
                self.tb.close()

    def _evaluate_guarded(self) -> None:
        """:meth:`evaluate`, saving the weights when it cannot finish (abandoned by a stop
        request, interrupted twice, failed), so no step trained is lost to a scoring failure."""
        try:
            self.evaluate()
        except EvaluationAbandoned as abandoned:
            self._evaluating = False
            self._unscored_step = self.step
            self._save_unscored_weights(abandoned.begun)
        except KeyboardInterrupt:  # Ctrl-C twice while scoring: not the training before it too
            self._save_after_failed_evaluation(tell=False)
            raise
        except Exception as exc:
            if getattr(exc, "i2i_sample_grid", False):  # scored and logged; only writing its grid failed
                if self._saved_step != self.step and not self.dist.is_distributed:
                    self.save_checkpoint()  # its own error (a full disk, a moved folder) is then the one said
                exc.i2i_run_trained = self.step >= self.total_steps and self._saved_step == self.step  # type: ignore[attr-defined]
                raise
            from_callback = getattr(exc, "i2i_callback", None)  # on_evaluate raised, not the evaluation
            self._save_after_failed_evaluation(tell=from_callback is None)
            if from_callback is not None:
                self._describe_callback_failure(exc, *from_callback)
            raise

    def _thread_governor(self) -> ThreadGovernor | NoThreadGovernor:
        """``train.threads`` on the CPU; nothing to govern on a GPU."""
        if self.device.type != "cpu":
            return NoThreadGovernor()
        return ThreadGovernor(self.train_cfg["threads"], note=self.progress.warn)

    def _out_of_memory(self) -> UserError:
        """Running out of memory is a matter of settings: say which ones, not a traceback."""
        if self._evaluating:
            return UserError(
                f"out of memory on {self.device} evaluating after step {self.step} (eval.batch_size = "
                f"{self.eval_cfg['batch_size']}, eval.crop = {self.eval_cfg['crop']}); lower eval.batch_size or eval.crop"
            )
        hint = "lower train.batch_size or data.size"
        if self.device.type == "cuda" and self.dtype == torch.float32:
            hint += ", or set train.precision = \"bf16\""
        return UserError(
            f"out of memory on {self.device} at step {self.step + 1} (train.batch_size = "
            f"{self.train_cfg['batch_size']}, data.size = {self.recipe['data']['size']}, generator "
            f"'{self.recipe['generator']['name']}'); {hint}"
        )

    def _emit(self, event: str, *args: Any) -> None:
        """Call ``event`` on every callback. A callback that raises :class:`TrainingStopped`
        asks for a stop (as ``request_stop()`` does: the step ends, a checkpoint is written);
        any other exception stops the run, with a note naming the callback and the last
        checkpoint."""
        if not self.dist.is_main and event != "on_run_start":
            return
        for callback in self.callbacks:
            try:
                getattr(callback, event, lambda *a: None)(*args)
            except TrainingStopped as exc:  # its message, when the callback gave one, says why
                given = str(exc)
                self.request_stop(given if given and given != TrainingStopped().args[0] else None)
            except SecondInterrupt:  # the user's second Ctrl-C landed in a callback: not the callback's doing
                raise
            except BaseException as exc:  # KeyboardInterrupt and SystemExit from a callback too
                self._describe_callback_failure(exc, callback, event)
                raise

    def _place_in_run(self, exc: PluginError) -> None:
        """Add to ``exc``'s message the step it failed at and where the run resumes from: a
        plugin that passed the checks before training can still fail on a later batch. The
        same exception goes on, with its cause and traceback (``I2I_TRACEBACK=1``)."""
        if self.first_step_unsaved or not exc.args:
            return  # the folder is removed (see engine/run.py): nothing to resume
        saved = self._saved_step
        where = (f"its last checkpoint is at step {saved}: i2i run --resume {shell_path(self.run_dir)} once "
                 "the plugin is fixed") if saved >= 0 else f"no checkpoint was written yet, so {self.run_dir} holds only its logs"
        exc.args = (f"{exc.args[0]} (at step {self.step + 1}; {where})", *exc.args[1:])

    def _describe_callback_failure(self, exc: BaseException, callback: Any, event: str) -> None:
        """Note on ``exc`` which callback raised it and where the run can resume from; again
        after a checkpoint written since (the step's weights, saved after a failed evaluation)."""
        note = self._callback_failure_note(callback, event)
        if hasattr(exc, "add_note"):  # Python 3.11+
            notes = getattr(exc, "__notes__", [])
            if getattr(exc, "i2i_callback", None) is not None and notes:
                notes[-1] = note
            else:
                exc.add_note(note)
        exc.i2i_callback = (callback, event)
        # the command line prints this line, not the traceback (KeyboardInterrupt and SystemExit too)
        exc.i2i_callback_failure = (f"callback {type(callback).__name__}.{event} ({_callback_origin(callback)}) failed "
                                    f"at step {self.step}: {exception_line(exc)}; {note.split('; ', 1)[1]}")

    def _callback_failure_note(self, callback: Any, event: str) -> str:
        saved = self._saved_step  # this run's last checkpoint: written here, or resumed from
        if saved >= self.total_steps:  # on_run_end after the last step: nothing is left to resume
            return (f"i2i: raised by callback {type(callback).__name__}.{event} at step {self.step}; the run had finished "
                    f"and its checkpoint at step {saved} is complete: i2i translate {shell_path(self.run_dir)} ...")
        resume = (f"its last checkpoint is at step {saved}: i2i run --resume {shell_path(self.run_dir)} "
                  f"(Python: i2i.train(None, resume={str(self.run_dir)!r}))") if saved >= 0 else "it has no checkpoint yet"
        if self.first_step_unsaved:
            resume = "it has no checkpoint, so its folder is removed"  # as train() does: nothing there to resume
        return f"i2i: raised by callback {type(callback).__name__}.{event} at step {self.step}; {resume}"

    def _end_callbacks(self, status: str) -> None:
        """``on_run_end`` for every callback. While an exception already ends the run (any
        ``status`` but ``finished``), one raised here is printed, not raised: it would hide the
        error that ended the run."""
        try:
            self._emit("on_run_end", self, status, dict(self.last_metrics))
        except Exception as exc:
            if status == "finished":
                raise
            say(f"i2i: warning: a callback's on_run_end failed while the run was ending on an error: {exception_line(exc)}")

    def read_accumulators(self) -> dict[str, float]:
        """Average the accumulated losses and health figures: the one read-back per log.

        Values are means over the ranks, and a non-finite loss on any rank stops every rank
        at the same (earliest) step; every rank calls this at the same steps.
        """
        summed = list(self.acc) if self.acc_count else []  # no step since the last read: no losses to report
        # gradient norms, D accuracy, diversity: of the last step, unless it did not compute them
        # (an eager step off the log cadence, read early by a stop); then they would be stale
        extras = self.extras if self._want_extras else {}
        keys = summed + list(extras)
        if not keys:
            return {}
        stacked = torch.stack([self.acc[k] for k in summed] + [extras[k].float() for k in extras]
                              + [self.acc_steps[k] for k in summed])
        bad_keys = [*self.bad_step, GENERATOR_OUTPUT]
        bad = torch.stack([*self.bad_step.values(), self._bad_output])
        if self.dist.is_distributed:
            stacked = self.dist.all_reduce_sum(stacked) / self.dist.world_size
            # earliest bad step over ranks; -1 (none) must not win the min
            never = torch.iinfo(torch.long).max
            bad = self.dist.all_reduce_min(torch.where(bad < 0, torch.full_like(bad, never), bad))
            bad = torch.where(bad == never, torch.full_like(bad, -1), bad)
        values = stacked.cpu().tolist()
        values, counts = values[:len(keys)], dict(zip(summed, values[len(keys):]))  # counts: alike on every rank
        bad_steps = bad.cpu().tolist()
        # a term is averaged over the steps it was added on; one added on none (every step of
        # the window skipped) has no mean to show
        out = {k: (v / counts[k] if k in summed else v) for k, v in zip(keys, values) if k not in summed or counts[k] > 0}
        # the earliest term to go bad is the cause; at that step, a generator output gone bad before
        # any loss saw it
        bad = [(step, key != GENERATOR_OUTPUT, key) for key, step in zip(bad_keys, bad_steps) if step >= 0]
        if bad:
            step, _, key = min(bad)
            self._nonfinite(key, step)
        return out

    def _refuse_nonfinite_weights(self) -> None:
        """Never write a checkpoint whose weights hold NaN or infinite values (a damaged
        optimiser state can put them there before any loss shows it): stop, keeping the last
        good one. One host sync per checkpoint."""
        for net_name, net in (("generator", self.G), ("discriminator", self.D)):
            params = [p.detach() for p in net.parameters()] if net is not None else []
            if params and not bool(torch.stack([p.isfinite().all() for p in params]).all()):
                latest = ckpt.CheckpointStore(self.run_dir).pointer("LATEST")
                kept = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
                raise TrainingStopped(f"the {net_name}'s weights became NaN or infinite by step {self.step}, so they were "
                                      f"not saved; stopped, {kept}", self.run_dir, self._saved_step if latest else None)

    def _nonfinite(self, key: str, step: int) -> None:
        latest = ckpt.CheckpointStore(self.run_dir).pointer("LATEST")
        kept = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
        if key == GENERATOR_OUTPUT:
            self._nonfinite_output(step, kept, latest)
        which, label = key.split("_", 1)
        net = "generator" if which == "g" else "discriminator"
        through_d = which == "g" and label in {term.label for term in (*self.adversarial, *self.feature_matching)}
        if step == 1 and self.resumed_at is None and through_d:
            # D was updated earlier in this step: its learning rate may well be the cause
            stopped = TrainingStopped(
                f"loss '{label}' ({net} step{self._loss_plugin(label)}) was NaN or infinite at the first step, after "
                "the discriminator's first update: lower train.d.lr or set train.d.clip_grad_norm (or the loss gives "
                "NaN or infinite values on these images); nothing was kept")
            stopped.nothing_trained = True
            raise stopped
        if step == 1 and self.resumed_at is None:
            # before any weight changed: no learning rate or clipping is to blame, and nothing
            # trained is worth a folder (the run removes it, as for other first-step failures)
            stopped = TrainingStopped(
                f"loss '{label}' ({net} step{self._loss_plugin(label)}) was NaN or infinite at the first step, before any "
                f"weight had changed, so the learning rate is not the cause: the loss, or the {net} feeding it, gives "
                "NaN or infinite values on these images; nothing was kept")
            stopped.nothing_trained = True
            raise stopped
        # a generator-step term that goes through D blows up as often from D's weights as from G's
        lower = ("train.g.lr or train.d.lr (this loss goes through the discriminator), set train.g.clip_grad_norm or "
                 "train.d.clip_grad_norm" if through_d else f"train.{which}.lr, set train.{which}.clip_grad_norm")
        raise TrainingStopped(
            f"loss '{label}' ({net} step{self._loss_plugin(label)}) became NaN or infinite at step {step}; stopped, "
            f"{kept}. Lower {lower}, or set train.on_nonfinite = 'skip' "
            "(a loss that gives NaN on some inputs, a log of 0 say, is for its plugin's author to fix)",
            self.run_dir, self._saved_step if latest else None,
        )

    def _nonfinite_output(self, step: int, kept: str, latest: str | None) -> None:
        """The generator's own output went NaN or infinite: name it and its plugin, not a loss."""
        named = contract_where(self.recipe, "generator")
        where = named[named.rindex("generator.name = "):]  # generator.name = 'x' (plugin 'y'), without the file
        if step == 1 and self.resumed_at is None:
            stopped = TrainingStopped(
                f"the generator ({where}) gave NaN or infinite values at the first step, before any weight had changed, "
                "so the learning rate is not the cause: it cannot take these inputs, or it has a bug for its plugin's "
                "author to fix; nothing was kept")
            stopped.nothing_trained = True
            raise stopped
        raise TrainingStopped(
            f"the generator's output ({where}) became NaN or infinite at step {step}; stopped, {kept}. Lower "
            "train.g.lr, or set train.g.clip_grad_norm, if its weights grew out of range; a generator that does so with "
            "finite weights is for its plugin's author to fix", self.run_dir, self._saved_step if latest else None)

    def _loss_plugin(self, label: str) -> str:
        """``, 'charbonnier' of plugin 'losses'`` for a loss term's label, when the recipe names it."""
        from ..plugins import registry

        try:
            name = self.recipe["losses"][label]["name"]
            return f", '{name}' of plugin '{registry().get('losses', name).plugin}'"
        except (KeyError, TypeError, UserError):
            return ""

    def log_step(self) -> None:
        values = self.read_accumulators()
        self._reset_accumulators()
        values["lr_g"] = float(self.opt_g.param_groups[0]["lr"])  # the same on every rank
        if self.opt_d is not None:
            values["lr_d"] = float(self.opt_d.param_groups[0]["lr"])
        if not self.dist.is_main:
            return
        self.log.write({"type": "train", "step": self.step, **values})
        self.tb.scalars(self.step, values, "train/")
        self.progress.log(self.step, values)
        new_skips = {k: n - self._skips_logged[k] for k, n in self.skipped_updates.items() if n > self._skips_logged[k]}
        if new_skips:  # train.on_nonfinite = 'skip' keeps going; say so rather than train on quietly
            self._skips_logged = dict(self.skipped_updates)
            which = " and ".join(f"{n} {'generator' if k == 'g' else 'discriminator'}" for k, n in new_skips.items())
            terms = ", ".join(sorted(self._skipped_terms)) or "their total"
            self._skipped_terms.clear()
            self.progress.warn(f"i2i: warning: step {self.step}: {which} update(s) skipped since the last log: loss "
                               f"{terms} was NaN or infinite (train.on_nonfinite = 'skip'); a run that skips most of its "
                               "steps learns nothing")
        for warning in self.health.check(self.step, values):
            self.progress.warn(f"i2i: warning: {warning}")
        self._emit("on_log", self, self.step, values)

    # -- evaluation -----------------------------------------------------------------------------
    @property
    def eval_generator(self) -> nn.Module:
        """The generator used for evaluation, samples and export: the EMA copy when enabled."""
        return self.ema if self.ema is not None else self.G

    @torch.inference_mode()
    def _save_after_failed_evaluation(self, tell: bool = True) -> None:
        """An evaluation that fails (a metric that breaks on some validation image, memory) must
        not cost the training before it: the weights are checkpointed first. Single process
        only: the other ranks may not have failed, and a checkpoint is a collective. ``tell``:
        print the note that the evaluation failed (not for a callback's ``on_evaluate``)."""
        if self._saved_step == self.step or self.dist.is_distributed:
            return
        try:
            self.save_checkpoint()
        except Exception as exc:  # the evaluation's error is the one to report
            say(f"i2i: warning: could not save the weights after the evaluation failed: {exception_line(exc)}")
            return
        if not tell:
            return
        run = shell_path(self.run_dir)
        say(f"i2i: note: the evaluation at step {self.step} failed (see below); the weights trained so far are "
            f"saved: once the cause is fixed, i2i eval {run} scores them and i2i run --resume {run} continues")

    def _save_unscored_weights(self, begun: bool = True) -> None:
        """A stop asked for while scoring skips the rest of the scoring (see
        :class:`EvaluationAbandoned`); the weights it was scoring are checkpointed at once. A
        second Ctrl-C during that write lets it finish first, as one during the scoring does:
        no checkpoint holds these weights yet (it quit with none written, the note said saved)."""
        try:
            self.save_checkpoint()
        except KeyboardInterrupt:
            self._save_after_failed_evaluation(tell=False)
            raise
        what = "was cut short by the stop request" if begun else "was not run, as a stop was asked for before it"
        self.progress.warn(f"i2i: note: the evaluation at step {self.step} {what}, so step {self.step} has no validation "
                           "score and the best checkpoint stays as it was; its weights are saved, and "
                           f"{scoring_hint(self.run_dir)} scores them")

    def evaluate(self) -> dict[str, float]:
        """The task's metrics on the validation images, and the same metrics for its baselines."""
        from .evaluate import evaluate_generator

        if not self.data.val_files:
            return {}
        self.read_accumulators()  # never evaluate (or save) after a non-finite loss
        self.dist.sync_buffers(self.eval_generator)  # one model: rank 0's batch-norm statistics
        self._evaluating = True  # stays set if it fails, for the out-of-memory message
        grey = None
        if self.task.learns_colour and self.dist.is_main and not self._grey_validation_checked:
            from ..evaluation import GreyTargets  # the first evaluation only: it reads the targets back

            grey = GreyTargets()
        with generator_named(self.recipe):
            metrics, baselines, first, scored = evaluate_generator(
                self.eval_generator, self.task, self.data, self.metric_functions, self.eval_cfg,
                device=self.device, dtype=self.dtype, dist=self.dist, on_batch=grey,
                abandon=None if self.dist.is_distributed else (lambda: self.stop_requested),
            )
        self._evaluating = False
        if grey is not None:
            self._grey_validation_checked = True
            if grey.names:  # black-and-white photos to validate a colouriser on: the best would be the greyest
                from ..data.sources import name_files

                share = "all" if len(grey.names) == scored else f"{len(grey.names)} of {scored}"
                self.progress.warn(
                    f"i2i: warning: {share} validation images show no colour ({name_files(grey.names)}), and task "
                    f"{self.recipe['task']['name']!r} is scored on its output's colours against theirs: their scores "
                    "(the grey copy's near-perfect ones too) say nothing of colouring, yet the best checkpoint is "
                    "chosen by them; validate on colour photos (data.val_source)")
        self._scored_step = self.step
        unrecorded = set(self.data.unreadable_val_names) - self._recorded_unreadable_val
        if self.dist.is_main and unrecorded:  # split.json is read and rewritten only when one is new
            from ..data.sources import record_unreadable_val

            record_unreadable_val(self.run_dir, self.data.unreadable_val_names)
            self._recorded_unreadable_val |= unrecorded
        if not scored and self.dist.is_main:  # every validation file's pixels failed to decode
            self.progress.warn(f"i2i: warning: step {self.step}: none of the {len(self.data.val_files)} validation image(s) "
                               "could be decoded (see the warning above), so this run has no validation score and "
                               "keeps no best checkpoint; replace them or set data.val_source")
        self.last_metrics, self.last_baselines = metrics, baselines
        broken = [name for name, value in metrics.items() if not math.isfinite(value)]
        main, lower = self.best_metric, self.best_is_lower
        if broken and self.dist.is_main:  # a metric's bug, or outputs gone NaN: not a score to keep quiet about
            lost = (f"; {main} picks the best checkpoint, which this evaluation cannot move" if main in broken else "")
            self.progress.warn(f"i2i: warning: step {self.step}: metric(s) {', '.join(broken)} gave NaN or infinite "
                               f"values on the validation images{lost}")
        if main in metrics:
            value = metrics[main]
            previous = self.best.get("value")
            if previous is None or (value < previous if lower else value > previous):
                self.best = {"metric": main, "value": value, "step": self.step, "scored_with": self.scoring_settings(),
                             "pending": True}
        if self.dist.is_main:
            self.log.write({"type": "eval", "step": self.step, "metrics": metrics, "baselines": baselines})
            self.tb.scalars(self.step, metrics, "eval/")
            for name, values in baselines.items():
                self.tb.scalars(self.step, values, f"baseline/{name}/")
            self.progress.message(f"step {self.step}: eval " + summary_line(metrics, baselines, main))
            self._emit("on_evaluate", self, self.step, dict(metrics))  # a copy: the run's scores stay its own
        if first is not None and self.dist.is_main:  # last: a grid that fails to write (a full disk) loses no score
            try:
                self._save_grid(first)
            except (OSError, CheckpointWriteError) as exc:
                exc.i2i_sample_grid = True  # type: ignore[union-attr]  # scored and logged: only the grid failed
                raise
        return metrics

    @torch.inference_mode()
    def write_samples(self) -> None:
        from .evaluate import sample_columns

        if not self.dist.is_main:
            return
        with generator_named(self.recipe):
            columns = sample_columns(self.eval_generator, self.task, self.data, self.eval_cfg, self.device, self.dtype,
                                     self.train_cfg["batch_size"])
        self._save_grid(columns)

    def _save_grid(self, columns: list[Tensor]) -> None:
        if not self.run_dir.is_dir():  # as a checkpoint says it, not a traceback
            raise ckpt.run_folder_gone(self.run_dir, f"the sample grid of step {self.step}")
        save_grid(self.run_dir / "samples" / f"step_{self.step:07d}.png", columns)

    # -- checkpoints ----------------------------------------------------------------------------
    def _rank_state(self) -> dict[str, Any]:
        """This rank's own random streams and data position (each rank draws its own)."""
        data_tree, data_tensors = ckpt.split_state(self.data.state_dict(), "data")
        rng = {"torch_cpu": torch.get_rng_state(), "noise": self.noise_rng.get_state().cpu(), **data_tensors}
        if self.device.type == "cuda":
            if self.dist.is_distributed:
                rng["torch_cuda"] = torch.cuda.get_rng_state(self.device)
            else:
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    rng[f"torch_cuda_{i}"] = s
        return {"rng": rng, "data": data_tree, "python_random": _python_state(random.getstate()),
                "log_window": self._log_window()}

    def _log_window(self) -> dict[str, Any]:
        """The loss sums of the steps since the last log, so that a run resumed from this
        checkpoint logs the same means at its next log as an uninterrupted run."""
        sums = torch.stack([*self.acc.values(), *self.acc_steps.values()]).cpu().tolist() if self.acc else []
        return {"steps": self.acc_count, "sums": dict(zip(self.acc, sums)), "term_steps": dict(zip(self.acc, sums[len(self.acc):]))}

    def _restore_log_window(self, window: dict[str, Any] | None) -> None:
        if not window:
            return
        self.acc = {k: torch.tensor(v, dtype=torch.float32, device=self.device) for k, v in window["sums"].items()}
        term_steps = window.get("term_steps", {})  # older checkpoints: every term on every step
        self.acc_steps = {k: torch.tensor(float(term_steps.get(k, window["steps"])), dtype=torch.float32, device=self.device)
                          for k in self.acc}
        self.bad_step = {k: torch.full((), -1, dtype=torch.long, device=self.device) for k in self.acc}
        self.acc_count = int(window["steps"])

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint (rank 0), with every rank's random streams and data position."""
        if self.acc_count:  # losses not read since the last log: stop on a NaN among them before saving
            self.read_accumulators()
        self._refuse_nonfinite_weights()
        ranks = self.dist.all_gather_object(self._rank_state())
        if not self.dist.is_main:
            self.dist.barrier()
            self._saved_step, self._saved_at = self.step, self.clock()
            return None
        files = {"generator.safetensors": ckpt.TensorFile(self.G.state_dict())}
        if self.ema is not None:
            files["generator_ema.safetensors"] = ckpt.TensorFile(self.ema.state_dict())
        if self.D is not None:
            files["discriminator.safetensors"] = ckpt.TensorFile(self.D.state_dict())
        buffers = loss_buffers(self.loss_terms())
        if buffers:
            files["losses.safetensors"] = ckpt.TensorFile(buffers)
        state: dict[str, Any] = {
            "format": ckpt.FORMAT, "i2i_version": __version__, "checksums": ckpt.CHECKSUMS, "step": self.step,
            "total_steps": self.total_steps, "best": {k: v for k, v in self.best.items() if k != "pending"},
            "python_random": ranks[0]["python_random"], "log_window": ranks[0]["log_window"],
            "metrics": self.last_metrics, "baselines": self.last_baselines,
            # the task options these weights were trained under: a resume may change them (a
            # denoiser's sigma, an upscaler's scale), and the run's recipe.toml keeps only the last
            "task": json.loads(json.dumps(dict(self.recipe["task"]))),
            "lr_scale": dict(self.lr_scale), "scored_step": self._scored_step,
        }
        state_failure = None
        try:
            state["callbacks"] = callback_states(self.callbacks)
        except PluginError as exc:  # the weights first: a callback's bug must not cost the steps trained
            state["callbacks"], state_failure = {}, exc
        optimizers = {"g": self.opt_g, "d": self.opt_d}
        for name, optimizer in optimizers.items():
            if optimizer is None:
                continue
            tree, tensors = ckpt.split_state(portable_state(optimizer))
            state[f"optim_{name}"] = tree
            files[f"optim_{name}.safetensors"] = ckpt.TensorFile(tensors)
        if self.scalers is not None:
            state["scalers"] = {name: scaler.state_dict() for name, scaler in self.scalers.items()}
        state["data"] = ranks[0]["data"]
        rng = dict(ranks[0]["rng"])
        if self.dist.is_distributed:  # rank r's tensors as "rank{r}.<name>"; rank 0's unprefixed
            state["world_size"] = self.dist.world_size
            state["ranks"] = {str(r): {"data": each["data"], "python_random": each["python_random"], "log_window": each["log_window"]}
                              for r, each in enumerate(ranks) if r > 0}
            for r, each in enumerate(ranks[1:], start=1):
                rng.update({f"rank{r}.{name}": tensor for name, tensor in each["rng"].items()})
        files["rng.safetensors"] = ckpt.TensorFile(rng)
        files["state.json"] = _json_bytes(state)
        best = bool(self.best.pop("pending", False))
        try:
            self.log.sync()  # the records of the steps this checkpoint holds are on disk before it is
            path = ckpt.CheckpointStore(self.run_dir).write(self.step, files, keep=self.out_cfg["keep"], best=best)
            self._saved_step, self._saved_at = self.step, self.clock()  # written: not before, or a failed write counted
            self._emit("on_checkpoint", self, self.step, path)
        finally:  # a failed write or a callback that raises must not leave the other ranks waiting here
            self.dist.barrier()
        if state_failure is not None:
            raise PluginError(f"{state_failure} (at step {self.step}, whose checkpoint {path.name} is saved without the "
                              f"callbacks' state; resume with: i2i run --resume {shell_path(self.run_dir)})")
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything a checkpoint holds, so training continues bit for bit. A file
        whose contents are not what i2i wrote (a key or a tensor missing) is one line."""
        try:
            self._load_checkpoint(path)
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            from ..errors import CheckpointError

            raise CheckpointError(f"{path}: damaged checkpoint ({exception_line(exc)}); resume from an older one by "
                                  f"naming it in {path.parent / 'LATEST'} (e.g. echo step_N > LATEST)") from None

    def _load_checkpoint(self, path: Path) -> None:
        state = ckpt.read_state(path)
        ckpt.refuse_resuming_imported(path, state)
        network, overrides = "the recipe's network", getattr(self.recipe, "overrides", ())
        ckpt.load_weights(self.G, path / "generator.safetensors", network, overrides)
        ema_file = path / "generator_ema.safetensors"
        if self.ema is not None:
            ckpt.load_weights(self.ema, ema_file if ema_file.exists() else path / "generator.safetensors", network, overrides)
        if self.dist.is_main and (self.ema is not None) != ema_file.exists():  # train.ema turned on or off by the resume
            say(f"i2i: note: train.ema = {self.train_cfg['ema']}: " + (
                f"{path.name} kept no average, so it starts from the generator's weights at step {state.get('step')}"
                if self.ema is not None else
                f"the average {path.name} kept is left out from here on; evaluation, samples and translations use the "
                "generator's own weights"))
        if self.D is not None:
            ckpt.load_weights(self.D, path / "discriminator.safetensors", network, overrides)
        if (path / "losses.safetensors").is_file():
            load_loss_buffers(self.loss_terms(), ckpt.read_tensors(path / "losses.safetensors"))
        for name, optimizer in {"g": self.opt_g, "d": self.opt_d}.items():
            if optimizer is None or f"optim_{name}" not in state:
                continue
            tensors = ckpt.read_tensors(path / f"optim_{name}.safetensors")
            ckpt.refuse_nonfinite(tensors, path / f"optim_{name}.safetensors")
            load_state(optimizer, ckpt.join_state(state[f"optim_{name}"], tensors))
        if self.scalers is not None:
            for name, scaler in self.scalers.items():
                saved = state.get("scalers", {}).get(name, state.get("scaler"))  # "scaler": one shared (older checkpoints)
                if saved is not None:
                    scaler.load_state_dict(saved)
        self._load_rank_state(state, ckpt.read_tensors(path / "rng.safetensors"))
        self.step = self.resumed_at = self._saved_step = int(state["step"])  # a stop before the next step keeps it as is
        self.best = dict(state.get("best") or {})
        self.best_not_comparable = self.changed_scoring(self.best)
        self.retired_best = self.best if self.best_not_comparable else {}
        if self.best_not_comparable:  # its score says nothing about this resume's: the best is chosen again
            self.best = {}
        self.last_metrics = state.get("metrics") or {}
        self.last_baselines = state.get("baselines") or {}
        self.lr_scale = {"g": 1.0, "d": 1.0, **{k: float(v) for k, v in (state.get("lr_scale") or {}).items()}}
        self._scored_step = int(state.get("scored_step", -1))
        load_callback_states(self.callbacks, state.get("callbacks") or {})

    def scoring_settings(self) -> dict[str, Any]:
        """What a validation score depends on besides the weights: the task's options (its
        noise, say), the crop, how many images, their resize. A best scored under other
        settings cannot be compared with a score under these."""
        settings = {**{f"task.{key}": value for key, value in self.recipe["task"].items()},
                    "eval.crop": self.eval_cfg["crop"], "eval.max_images": self.eval_cfg["max_images"],
                    "data.resize": self.recipe["data"]["resize"],
                    "validation files": getattr(getattr(self, "data", None), "val_kept", "") or ALL_RECORDED}
        return json.loads(json.dumps(settings))  # as state.json gives it back: lists, not tuples

    @property
    def best_metric(self) -> str:
        """The metric that picks the best checkpoint: ``eval.best_metric``, else the task's main one."""
        return self.eval_cfg.get("best_metric") or self.task.main_metric

    @property
    def best_is_lower(self) -> bool:
        """Whether a lower :attr:`best_metric` is better (see :func:`~.evaluate.lower_is_better`)."""
        return lower_is_better(self.best_metric, self.task, getattr(self, "metric_functions", {}))

    def changed_scoring(self, best: dict[str, Any]) -> str:
        """How the settings a resumed run's best was scored under differ from this run's
        (``"eval.crop = 64 then, 0 now"``, or another metric picking it), or ``""``: the same,
        or not recorded (older runs)."""
        chosen_by = best.get("metric")
        if isinstance(chosen_by, str) and "step" in best and chosen_by != self.best_metric:
            return f"the best was chosen by {chosen_by} then, by {self.best_metric} now (eval.best_metric)"
        then = best.get("scored_with")
        if not isinstance(then, dict) or "step" not in best:
            return ""
        then = {"validation files": ALL_RECORDED, **then}  # recorded before a resume could lose any
        now = self.scoring_settings()
        return "; ".join(f"{key} = {then.get(key, '(unset)')!r} then, {now.get(key, '(unset)')!r} now"
                         for key in changed_keys(then, now))

    def _load_rank_state(self, state: dict[str, Any], rng: dict[str, Tensor]) -> None:
        """Restore this rank's random streams and data position from its own saved copy.

        A rank the checkpoint has no copy for (more processes than when it was written)
        keeps its freshly seeded streams and continues from rank 0's data position.
        """
        rank, written_by = self.dist.rank, int(state.get("world_size", 1))
        if written_by != self.dist.world_size and self.dist.is_main:
            per = self.train_cfg["batch_size"]
            say(f"i2i: warning: the checkpoint was written by {written_by} process(es), now there are "
                f"{self.dist.world_size}; so each step now trains on {per * self.dist.world_size} image(s) "
                f"(train.batch_size = {per} per process) where it trained on {per * written_by}, at the same learning "
                "rates, and each rank's data shard and random streams differ from an uninterrupted run")
        saved = state.get("ranks", {}).get(str(rank)) if rank > 0 else state
        if saved is None:
            self.data.load_state_dict(ckpt.join_state(state["data"], rng))
            return
        if rank > 0:
            prefix = f"rank{rank}."
            rng = {k[len(prefix):]: v for k, v in rng.items() if k.startswith(prefix)}
        torch.set_rng_state(rng["torch_cpu"])
        self.noise_rng.set_state(rng["noise"].to(self.noise_rng.get_state().device))
        if torch.cuda.is_available() and self.device.type == "cuda":
            if "torch_cuda" in rng:
                torch.cuda.set_rng_state(rng["torch_cuda"], self.device)
            names = sorted((k for k in rng if k.startswith("torch_cuda_")), key=lambda k: int(k.rsplit("_", 1)[1]))
            cuda_states = [rng[k] for k in names]
            if cuda_states:
                torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
        self.data.load_state_dict(ckpt.join_state(saved["data"], rng))
        random.setstate(_python_state_back(saved["python_random"]))
        self._restore_log_window(saved.get("log_window"))


def _python_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_back(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def check_sync_bn(recipe: Recipe, device: torch.device, world_size: int) -> None:
    """``train.sync_bn`` across several processes needs CUDA (checked by ``i2i run --nproc``
    before it starts them, and by each process)."""
    if recipe["train"]["sync_bn"] and world_size > 1 and device.type != "cuda":
        raise recipe_error(recipe, "train.sync_bn: synchronised batch norm needs CUDA GPUs; set train.sync_bn = false "
                                   "on the CPU")


def _import_cpp_builder_quietly(device: torch.device) -> None:
    """Import torch's C++ builder, which ``torch.compile`` on the CPU uses, without its warning
    "No CUDA runtime is found" (said on a machine with a CUDA toolkit but no GPU): a CPU run
    compiling its step is no mistake. Its logger's level is put back after."""
    if device.type != "cpu" or "torch.utils.cpp_extension" in sys.modules:
        return
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        logger.setLevel(level)


def _json_bytes(data: dict) -> bytes:
    import json

    return json.dumps(data, indent=1, allow_nan=True).encode()


def summary_line(metrics: dict[str, float], baselines: dict[str, dict[str, float]], main: str) -> str:
    """``psnr 24.10 (grey copy 22.90)  ssim 0.91 (grey copy 0.90)`` for the terminal."""
    parts = []
    for name, value in metrics.items():
        # a value of the targets themselves (colourfulness_target) is no model's: no baseline beside it
        of_targets = name.endswith("_target") and name.removesuffix("_target") in metrics
        base = "" if of_targets else ", ".join(f"{b} {vals[name]:.4g}" for b, vals in baselines.items() if name in vals)
        parts.append(f"{name} {value:.4g}" + (f" ({base})" if base else ""))
    return "  ".join(parts) if parts else "no validation images"


def _callback_origin(callback: Any) -> str:
    """``plugin 'x'`` for a callback a plugin registered (by its class), else ``from <module>``."""
    from ..plugins import registry

    for component in registry().components("callbacks"):
        if component.factory is type(callback):
            return f"plugin '{component.plugin}'"
    return f"from {type(callback).__module__}"
