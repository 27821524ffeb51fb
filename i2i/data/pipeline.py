"""Training batches and validation batches, on the training device.

Sampling order is a pure function of ``(seed, rank, sample number)``: sample ``k`` comes from
epoch ``k // N`` at position ``k % N``, and each epoch draws, from a CPU ``torch.Generator``
seeded with ``(seed, rank, epoch)``, a permutation of the ``N`` training files (every file once
per epoch) and four uniform numbers per position (crop top, crop left, flip, rotation). So:

* the whole data state is one integer, the number of samples drawn, and a resume continues
  the exact same sequence however far the loader had prefetched;
* the cached and the streaming paths give identical batches, so a resume on a machine where
  the cache no longer fits still sees the same data;
* the batch size may change between calls without changing which samples come next.

Pixels stay uint8 until the last moment: crops are cut on the device (cached) or in loader
workers (streaming), flipped/rotated on the device with per-sample masks, then converted to
float in [0, 1]. No call reads a value back from the device. A set of images (training, or
validation) holding a file deeper than 8 bits per channel (16-bit PNG, 16- or 32-bit grey
TIFF) is read at 16 bits instead, every file of it: uint16 values, kept as the same bits in an
int16 tensor on the device (CUDA has few uint16 kernels; int16 has them all), twice the memory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from kornia.geometry.transform import hflip
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from ..messages import say
from ..recipe import resize_problem
from .decode import UnreadableImageError, decode_sample, fit_image, fitted_size, looks_grey
from .sources import (ImageFile, RecordedSplit, apply_recorded_split, check_enough_for_processes, check_sizes,
                      pair_folders, recorded_val_files, report_skipped, scan_folder, split_files, warn_copies_across_split, warn_enlarged,
                      warn_validating_on_training_files)

GB = 1e9


def _mix(*parts: int | str) -> int:
    """A 63-bit seed from several integers, stable across runs, platforms and Python versions."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True)
class Plan:
    """What to cut for each sample of a batch (CPU tensors, one entry per sample)."""

    index: torch.Tensor  # long: which training image
    top: torch.Tensor  # long: crop offsets
    left: torch.Tensor
    flip: torch.Tensor  # bool: mirror horizontally
    rot: torch.Tensor  # long: quarter turns counter-clockwise, 0-3


class Planner:
    """Draws :class:`Plan` s as a pure function of the sample numbers (see the module docstring)."""

    def __init__(self, sizes: list[tuple[int, int]], size: int, seed: int, rank: int, flip: bool, rotate: bool):
        self.sizes = torch.tensor(sizes, dtype=torch.long).reshape(-1, 2)
        self.size, self.seed, self.rank = size, seed, rank
        self.flip, self.rotate = flip, rotate
        self._epochs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _epoch(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if epoch not in self._epochs:
            if len(self._epochs) > 4:
                self._epochs.clear()
            generator = torch.Generator().manual_seed(_mix(self.seed, self.rank, epoch))
            count = len(self.sizes)
            self._epochs[epoch] = (torch.randperm(count, generator=generator), torch.rand(count, 4, generator=generator))
        return self._epochs[epoch]

    def plan(self, start: int, count: int) -> Plan:
        """The plan for samples ``start .. start + count - 1``."""
        total = len(self.sizes)
        indices, uniforms = [], []
        k, end = start, start + count
        while k < end:
            epoch, position = divmod(k, total)
            take = min(total - position, end - k)
            perm, uniform = self._epoch(epoch)
            indices.append(perm[position:position + take])
            uniforms.append(uniform[position:position + take])
            k += take
        index, u = torch.cat(indices), torch.cat(uniforms)
        room = self.sizes[index] - self.size + 1  # valid offsets per side
        top = (u[:, 0] * room[:, 0]).long().clamp_(max=room[:, 0] - 1)
        left = (u[:, 1] * room[:, 1]).long().clamp_(max=room[:, 1] - 1)
        flip = (u[:, 2] < 0.5) if self.flip else torch.zeros(count, dtype=torch.bool)
        rot = (u[:, 3] * 4).long().clamp_(max=3) if self.rotate else torch.zeros(count, dtype=torch.long)
        return Plan(index, top, left, flip, rot)


class ImageData:
    """The data pipeline the engine uses: training crops, validation images, resumable state.

    :param data: the recipe's resolved ``[data]`` table (every key of ``SCHEMA["data"]``).
    :param channels: 1 or 3, the task's ``image_channels``.
    :param side_by_side: the task's: each file holds a pair side by side, delivered as both
        halves stacked (``2 * channels`` channels; see :attr:`i2i.Task.side_by_side`).
    :param device: where batches are delivered (and the cache lives).
    :param seed: ``train.seed``; fixes the train/val split, the order, crops and flips.
    :param rank, world_size: for distributed training each rank keeps the training files
        ``files[rank::world_size]`` (so a rank's cache holds only its shard) and draws its own
        sequence from them, seeded with its rank; all ranks share the train/val split, and
        ``val_batches(..., shard=True)`` gives each rank every ``world_size``-th validation batch.
    :param find_grey: note which cached training images show no colour (a colouriser asks; the
        check reads every pixel once, so other tasks skip it).
    :param split: a resumed run's recorded split: its files are taken from it rather than drawn
        again (see :func:`~i2i.data.sources.apply_recorded_split`; ``split_note`` says what changed).

    Attributes: ``train_files`` / ``val_files`` (paths, this rank's share / all validation
    files), ``split_note`` (a warning line when a recorded ``split`` no longer matches the
    folder's files, else ``""``), ``val_kept`` (``"3 of the 4 recorded"`` when a resumed run's
    validation files lost some, else ``""``), ``cached`` (decoded training images live on ``device``; otherwise a
    ``DataLoader`` with ``data.workers`` processes streams crops from the files),
    ``grey_train_files`` (with ``find_grey``, cached training images that show no colour, see
    :func:`~i2i.data.decode.looks_grey`; empty when streaming, as nothing is decoded up front).

    The cache is used when the decoded training images (a byte per value, two for 16-bit
    images, see the module docstring; upscaled where asked) take at
    most ``data.cache_gb`` GB (10^9 bytes), and on CUDA at most half of the free memory.
    Validation crops join the cache when they fit in what is left; otherwise they are decoded
    at every evaluation.
    """

    #: what the warning about validation files whose pixels do not decode calls them
    _val_files_called = "validation file(s)"
    #: for ``i2i eval --data``: the files its scan skipped, named in one warning with those whose
    #: pixels then fail to decode (a truncated JPEG), after the scoring
    _skipped_before_scoring: list[Path] = []
    unreadable_at_last_scoring = 0

    train_files: list[Path]
    val_files: list[Path]
    cached: bool

    def __init__(self, data: dict[str, Any], *, channels: int, device: torch.device | str, seed: int,
                 rank: int = 0, world_size: int = 1, find_grey: bool = False, split: RecordedSplit | None = None,
                 side_by_side: bool = False, scored_multiple: int = 1):
        self._configure(channels, device, seed, rank, size=data["size"], cache_gb=data["cache_gb"],
                        workers=data["workers"], upscale=data["upscale_small"], resize=data["resize"],
                        world_size=world_size, side_by_side=side_by_side, scored_multiple=scored_multiple)
        self._find_grey = find_grey and channels > 1
        problem = resize_problem(self._resize, self.size)  # for a [data] table that skipped load_recipe
        if problem:
            raise UserError(problem)
        pairs, val_pairs = pair_folders(data, side_by_side)
        source, skipped = self._scan(data["source"], "data.source", quiet=rank != 0, pairs=pairs)
        if not self._upscale and not self._resize and split is None:
            check_sizes(source, self.size)  # all of data.source, so the verdict does not depend on the split
        separate = None
        if data["val_source"]:
            separate, skipped_val = self._scan(data["val_source"], "data.val_source", quiet=rank != 0, pairs=val_pairs)
            skipped += skipped_val
            if rank == 0:
                warn_validating_on_training_files(data["source"], data["val_source"])
        if split is not None:
            train, val, self.split_note, self.val_kept = apply_recorded_split(split, source, separate, data,
                                                                              self._reasons)
            if not self._upscale and not self._resize:  # the files in use: added ones are left out
                in_use = set(train).union(val if separate is None else ())
                check_sizes([f for f in source if f in in_use], self.size)
        elif separate is not None:
            train, val = source, separate
        else:
            train, val = split_files(source, data["val_fraction"], seed)
        self._split = (train, val, separate is not None)
        if split is None and rank == 0:  # a new run: its validation files are chosen now
            warn_copies_across_split(train, val)
            warn_enlarged(train, self._resize, self.size if self._upscale else 0)
            if not val and data["val_fraction"] > 0:  # said now, not found out from a run without a score
                say(f"i2i: warning: data.val_fraction = {data['val_fraction']} of {data['source']}'s {len(source)} "
                    "image(s) holds out none, so this run is not validated (no scores, no best checkpoint); add "
                    "photos, raise data.val_fraction, or give data.val_source")
        check_enough_for_processes(len(train), data["source"], world_size)
        shard = train[rank::world_size]
        undecoded = self._set_train(shard, flip=data["flip"], rotate=data["rotate"])
        skipped += undecoded
        # every rank's files together, less this rank's that never decoded: what a resume with
        # another number of processes compares (its shards differ, its photos need not)
        self._all_train = len(train) - (len(shard) - len(self._train))
        self._set_val(val)
        if rank == 0:
            undecodable = set(skipped)  # header read, pixels not: counted as images they were not
            note_deep_images([f for f in train if f.path not in undecodable], val)
            report_skipped(skipped, "unreadable or unpaired file(s)" if pairs or val_pairs else "unreadable file(s)",
                           self._reasons)
        elif undecoded:  # rank 0 speaks for the folder's scan, which every rank shares; a shard's files only its rank reads
            report_skipped(undecoded, f"unreadable file(s) of rank {rank}'s share", self._reasons)

    @classmethod
    def for_evaluation(cls, folder: str | Path, *, channels: int, device: torch.device | str,
                       cache_gb: float = 4.0, resize: int = 0, side_by_side: bool = False,
                       pair_folder: str | Path | None = None, scored_multiple: int = 1) -> "ImageData":
        """Every readable image of ``folder`` as validation images (for ``i2i eval --data``),
        resized as the run's ``data.resize`` says; ``pair_folder`` (``--pair-data``) holds each
        one's pair under its name, as ``data.pair_source`` does for training.

        The result has no training images: use only :meth:`val_batches` and ``val_files``.
        """
        self = cls.__new__(cls)
        self._configure(channels, device, 0, 0, size=8, cache_gb=cache_gb, workers=0, upscale=False, resize=resize,
                        side_by_side=side_by_side, scored_multiple=scored_multiple)
        val, skipped = self._scan(str(folder), "--data",
                                  pairs=(str(pair_folder), "--pair-data") if pair_folder is not None else None)
        self._set_train([], flip=False, rotate=False)
        self._set_val(val)
        # no validation split here: the folder being scored
        self._val_files_called = f"{'or unpaired ' if pair_folder is not None else ''}file(s) of {folder}"
        self._skipped_before_scoring = list(skipped)
        return self

    @classmethod
    def for_recorded_validation(cls, data: dict[str, Any], split: RecordedSplit, *, channels: int,
                                device: torch.device | str, side_by_side: bool = False,
                                scored_multiple: int = 1) -> "ImageData":
        """A run's recorded validation files (``i2i eval RUN``), as its training evaluated them
        (see :func:`~i2i.data.sources.recorded_val_files`), without its training files: those
        may be gone since, and decoding them all would only cost time and memory.

        The result has no training images: use only :meth:`val_batches` and ``val_files``.
        """
        self = cls.__new__(cls)
        self._configure(channels, device, 0, 0, size=data["size"], cache_gb=data["cache_gb"], workers=0,
                        upscale=data["upscale_small"], resize=data["resize"], side_by_side=side_by_side,
                        scored_multiple=scored_multiple)
        pairs, val_pairs = pair_folders(data, side_by_side)
        separate = self._scan(data["val_source"], "data.val_source", quiet=True, pairs=val_pairs)[0] \
            if data["val_source"] else None
        source = [] if separate is not None else self._scan(data["source"], "data.source", quiet=True, pairs=pairs)[0]
        val, self.val_kept, note = recorded_val_files(split, source, separate, data, self._reasons)
        if note:
            say(note)
        self._split = ([], val, separate is not None)
        self._set_train([], flip=False, rotate=False)
        self._set_val(val)
        return self

    # -- construction -----------------------------------------------------------------------------
    def _configure(self, channels: int, device: torch.device | str, seed: int, rank: int, *,
                   size: int, cache_gb: float, workers: int, upscale: bool, resize: int = 0,
                   world_size: int = 1, side_by_side: bool = False, scored_multiple: int = 1) -> None:
        # the channels delivered (both halves of a side-by-side pair), and how a file is read
        self.channels, self.device = channels * (2 if side_by_side else 1), torch.device(device)
        self._partners: dict[Path, Path] = {}  # data.pair_source: each file's pair, filled as folders are scanned
        self._read = functools.partial(decode_sample, channels=channels, side_by_side=side_by_side,
                                       partners=self._partners)
        self._side_by_side = side_by_side
        # a super-resolution task's scale: validation images lose their last rows and columns down to
        # a multiple of it, as the SR benchmarks' "modcrop" does, so no edge the input lacks is scored
        self._scored_multiple = max(1, int(scored_multiple))
        self.seed, self.rank, self.world_size, self.size = seed, rank, world_size, size
        self._cache_bytes, self._workers, self._upscale, self._resize = int(cache_gb * GB), workers, upscale, resize
        self._workers_noted = False
        self._samples = 0  # samples drawn so far: the whole sampling state
        self._all_train = 0
        self._images: list[torch.Tensor] = []
        self._stream: Iterator[torch.Tensor] | None = None
        self._stream_key: tuple[int, int] | None = None  # (next sample, batch size) the stream is at
        self._stream_warned: set[int] = set()  # training files found undecodable while streaming, warned about
        self._val_cache: dict[tuple[int, int], torch.Tensor] = {}
        self._val_cache_crop: int | None = None
        self._deep_train = self._deep_val = False  # whether each set is read at 16 bits
        self._unreadable_val: set[Path] = set()
        self.undecodable_train_names: list[str] = []  # this rank's training files whose pixels failed to decode
        self._reasons: dict[Path, str] = {}  # why each skipped file could not be read, for the warnings
        self.grey_train_files: list[Path] = []
        self.files_changed_since_checkpoint = False  # set by load_state_dict
        self._find_grey = False
        self.split_note = ""
        self.val_kept = ""
        self._split: tuple[list[ImageFile], list[ImageFile], bool] = ([], [], False)

    def _scan(self, value: str, key: str, quiet: bool = False,
              pairs: tuple[str, str] | None = None) -> tuple[list[ImageFile], list[Path]]:
        files, skipped = scan_folder(value, key, self._reasons, quiet, side_by_side=self._side_by_side, pairs=pairs)
        self._partners.update((file.path, file.partner) for file in files if file.partner is not None)
        return files, skipped

    def _set_train(self, files: list[ImageFile], *, flip: bool, rotate: bool) -> list[Path]:
        """Keep the training files, decode them into the cache when it fits; returns unreadable ones."""
        sizes = [self._train_size(f) for f in files]
        self._deep_train = any(f.deep for f in files)
        needed = sum(self.channels * h * w for h, w in sizes) * (2 if self._deep_train else 1)
        self.cached = bool(files) and needed <= self._cache_bytes and needed <= self._device_room()
        failed: list[Path] = []
        if self.cached:
            self._images, files, sizes, failed = self._decode_all(files)
            if not files:
                which = "training images" if self.world_size == 1 else f"training images of rank {self.rank}'s share"
                fewer = ("" if self.world_size == 1 else "; add readable images, or train with fewer processes, so "
                         "that each has one")
                raise UserError(f"{failed[0]}: none of the {which} can be decoded ({len(failed)} tried; "
                                f"this one: {self._reasons.get(failed[0], 'unreadable')}){fewer}")
        self._train = files
        self._cache_left = self._cache_bytes - sum(t.numel() * t.element_size() for t in self._images)
        self.train_files = [f.path for f in files]
        self._planner = Planner(sizes, self.size, self.seed, self.rank, flip, rotate)
        self._flip, self._rotate = flip, rotate
        return failed

    def _set_val(self, files: list[ImageFile]) -> None:
        self._val = files
        self._deep_val = any(f.deep for f in files)
        self.val_files = [f.path for f in files]

    @property
    def val_bits(self) -> int:
        """Bits per channel the validation images are read at: 16 when one of them is deeper
        than 8 bits (all of them are then read at 16), else 8."""
        return 16 if self._deep_val else 8

    @property
    def unreadable_val_names(self) -> list[str]:
        """The recorded names (relative to their folder) of the validation files whose pixels
        failed to decode so far."""
        return [f.name for f in self._val if f.path in self._unreadable_val]

    def recorded_split(self, undecodable_train: Iterable[str] | None = None) -> RecordedSplit:
        """Which files the run trains (every rank's) and validates on, for the run's record;
        ``undecodable_train``: the training files every rank failed to decode (default: this
        rank's, :attr:`undecodable_train_names`).

        Reads each file's size (one ``stat`` per file), so only the process that writes it asks.
        """
        names = self.undecodable_train_names if undecodable_train is None else undecodable_train
        return RecordedSplit.of(*self._split, train_unreadable=names)

    def _train_size(self, file: ImageFile) -> tuple[int, int]:
        return fitted_size(file.height, file.width, size=self.size, resize=self._resize, upscale=self._upscale)

    def _val_size(self, file: ImageFile, crop: int) -> tuple[int, int]:
        """Validation images are resized as training images are, never upscaled; whole ones
        (``crop = 0``) are scored at their own size, as ``i2i eval`` and benchmarks score them."""
        return fitted_size(file.height, file.width, size=self.size, resize=self._val_resize(crop))

    def _scored_length(self, length: int, crop: int) -> int:
        """A validation image's side once centre-cropped to ``crop`` and cut down to a multiple of
        the task's scale (a side shorter than it is kept whole)."""
        length = _cropped(length, crop)
        multiple = self._scored_multiple
        return length - length % multiple if length >= multiple else length

    def scored_crop(self, crop: int) -> int:
        """The side of the ``crop`` x ``crop`` crops validation scores, cut to the task's scale
        as the images are (a 2x upscaler scores a crop of 65 as 64; 0 stays 0, whole images)."""
        return self._scored_length(crop, crop)

    def _val_resize(self, crop: int) -> int:
        return self._resize if crop > 0 else 0

    def _device_room(self) -> float:
        if self.device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.device)
            return free / 2
        return float("inf")

    def _decode_train(self, file: ImageFile) -> tuple[torch.Tensor, bool] | None:
        """The fitted image (uint8, or uint16 for a deep set) and whether it looks grey, or None
        when it cannot be decoded."""
        try:
            image = self._read(file.path, deep=self._deep_train)
            image = fit_image(image, size=self.size, resize=self._resize, upscale=self._upscale)
        except UnreadableImageError as exc:
            self._reasons[file.path] = exc.reason
            return None
        return image, self._find_grey and looks_grey(image)

    def _decode_all(self, files: list[ImageFile]) -> tuple[list[torch.Tensor], list[ImageFile], list[tuple[int, int]], list[Path]]:
        """Decode in threads (Pillow releases the GIL), keeping file order."""
        with ThreadPoolExecutor(max_workers=max(1, self._workers)) as pool:
            decoded = list(pool.map(self._decode_train, files))
        images, kept, sizes, failed = [], [], [], []
        for file, result in zip(files, decoded):
            if result is None:
                failed.append(file.path)
                self.undecodable_train_names.append(file.name)
                continue
            image, grey = result
            if grey:
                self.grey_train_files.append(file.path)
            images.append(_storable(image).to(self.device))
            kept.append(file)
            sizes.append((image.shape[-2], image.shape[-1]))
        return images, kept, sizes, failed

    # -- training batches ---------------------------------------------------------------------------
    def next_batch(self, batch_size: int) -> torch.Tensor:
        """The next ``batch_size`` random crops: float32 ``[B, C, size, size]`` in [0, 1] on the device."""
        if not self._train:
            raise RuntimeError("this ImageData has no training images (it was made for evaluation)")
        plan = self._planner.plan(self._samples, batch_size)
        if self.cached:
            crops = self._cut(plan)
        else:
            crops = self._next_streamed(batch_size)
        self._samples += batch_size
        return _to_unit(self._augment(crops, plan))

    def preview_batch(self, batch_size: int) -> torch.Tensor:
        """The first ``batch_size`` samples of the sequence, without advancing it (for sample grids)."""
        plan = self._planner.plan(0, batch_size)
        if self.cached:
            crops = self._cut(plan)
        else:
            dataset = self._crop_dataset()
            try:
                crops = torch.stack([dataset[item][0] for item in _items(plan)]).to(self.device)
            except NoDecodableImages:
                raise self._none_decodable() from None
        return _to_unit(self._augment(crops, plan))

    def _cut(self, plan: Plan) -> torch.Tensor:
        size = self.size
        return torch.stack([
            self._images[i][:, t:t + size, left:left + size]
            for i, t, left in zip(plan.index.tolist(), plan.top.tolist(), plan.left.tolist())
        ])

    def _augment(self, batch: torch.Tensor, plan: Plan) -> torch.Tensor:
        """Per-sample flips and quarter turns on the device; decisions come from the CPU plan."""
        if plan.flip.any():
            mask = plan.flip.to(self.device, non_blocking=True).view(-1, 1, 1, 1)
            batch = torch.where(mask, hflip(batch), batch)
        if plan.rot.any():
            turns = plan.rot.to(self.device, non_blocking=True).view(-1, 1, 1, 1)
            rotated = batch
            for k in range(1, 4):
                if (plan.rot == k).any():
                    rotated = torch.where(turns == k, torch.rot90(batch, k, dims=(-2, -1)), rotated)
            batch = rotated
        return batch

    def _next_streamed(self, batch_size: int) -> torch.Tensor:
        if self._stream_key != (self._samples, batch_size):
            with warnings.catch_warnings():  # more workers than cores: said once in _loader, in one line
                warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
                self._stream = iter(self._loader(self._samples, batch_size))
        try:
            batch, failed = next(self._stream)
        except NoDecodableImages:
            raise self._none_decodable() from None
        self._stream_key = (self._samples + batch_size, batch_size)
        for index in set(failed.tolist()) - {-1} - self._stream_warned:  # on the host: no device sync
            self._stream_warned.add(index)
            path = self._train[index].path
            try:
                self._read(path)
                why = ""
            except UnreadableImageError as exc:
                why = f" ({exc.reason})"
            say(f"i2i: warning: {path}: cannot be decoded{why}; using the next training image instead")
        return batch.to(self.device, non_blocking=True)

    def _none_decodable(self) -> UserError:
        """The streamed pipeline's twin of the cached one's error: no training file decodes."""
        first = self._train[0].path
        try:
            self._read(first)
            why = "unreadable"
        except UnreadableImageError as exc:
            why = exc.reason
        return UserError(f"{first}: none of the training images can be decoded ({len(self._train)} tried; this one: {why})")

    def _crop_dataset(self) -> "_CropDataset":
        read = functools.partial(self._read, deep=self._deep_train)
        return _CropDataset([f.path for f in self._train], read, self.size, self._resize, self._upscale)

    def _loader(self, start: int, batch_size: int) -> DataLoader:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if self._workers > cores and not self._workers_noted:  # said once, in i2i's words, not torch's
            self._workers_noted = True
            say(f"i2i: note: data.workers = {self._workers} is more than the {cores} core(s) this process may use: the "
                "loading processes take turns on them; fewer may load faster")
        return DataLoader(
            self._crop_dataset(),
            batch_sampler=_PlanSampler(self._planner, start, batch_size),
            num_workers=self._workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init,
            # an explicit context: left to itself, the loader would fix the process's default
            # start method, and an embedding program could no longer choose its own
            multiprocessing_context=(multiprocessing.get_context(multiprocessing.get_all_start_methods()[0])
                                     if self._workers > 0 else None),
            # The loader seeds its workers from this generator, not the global RNG, so creating
            # a loader never changes the engine's random numbers.
            generator=torch.Generator().manual_seed(_mix(self.seed, self.rank, "loader")),
        )

    # -- validation -----------------------------------------------------------------------------------
    def val_batches(self, crop: int, batch_size: int, max_images: int = 0, *,
                    shard: bool = False) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Validation images in file order as ``(float [B, C, h, w] in [0, 1] on the device, names)``.

        Each image is centre-cropped to ``min(crop, h)`` x ``min(crop, w)`` (``crop = 0``: whole
        image); consecutive images of equal size share a batch of at most ``batch_size``.
        ``max_images > 0`` uses only the first that many files. Names are paths relative to
        the validation folder. Deterministic; unreadable files are skipped with a warning.
        ``shard=True``: only this rank's batches (see :meth:`indexed_val_batches`).
        """
        for _index, batch, names in self.indexed_val_batches(crop, batch_size, max_images, shard=shard):
            yield batch, names

    def indexed_val_batches(self, crop: int, batch_size: int, max_images: int = 0, *,
                            shard: bool = False) -> Iterator[tuple[int, torch.Tensor, list[str]]]:
        """:meth:`val_batches` with each batch's number in :meth:`val_plan`.

        With ``shard=True`` a rank gets the batches ``rank::world_size`` of the plan, so the
        ranks of a distributed run evaluate disjoint batches that together are exactly the
        batches of a single process (validation noise is drawn per image, from its name, so it is
        the same whichever rank evaluates it).
        """
        files = self._val_in_use(max_images)
        cacheable = self._val_cacheable(crop)
        failed: list[Path] = []
        for number, indices in enumerate(self.val_plan(crop, batch_size, max_images)):
            if shard and number % self.world_size != self.rank:
                continue
            images: list[torch.Tensor] = []
            names: list[str] = []
            for i in indices:
                image = self._val_image(i, files[i], crop, cacheable)
                if image is None:
                    if files[i].path not in self._unreadable_val:
                        self._unreadable_val.add(files[i].path)
                        failed.append(files[i].path)
                    continue
                if images and image.shape != images[0].shape:  # header and pixels disagree: split
                    yield number, self._val_stack(images), names
                    images, names = [], []
                images.append(image)
                names.append(files[i].name)
            if images:
                yield number, self._val_stack(images), names
        failed, self._skipped_before_scoring = sorted({*self._skipped_before_scoring, *failed}), []
        self.unreadable_at_last_scoring = len(failed)  # what "none of N could be decoded" counts
        report_skipped(failed, f"unreadable {self._val_files_called}", self._reasons)

    def val_fit_in_crop(self, crop: int, max_images: int = 0) -> tuple[int, int]:
        """``(smaller, within)``: how many validation images are narrower or shorter than
        ``crop`` (so they are not cropped to crop x crop), and how many fit inside it whole."""
        if crop <= 0:
            return 0, 0
        files = self._val_in_use(max_images)
        sizes = [self._val_size(file, crop) for file in files]
        return sum(min(size) < crop for size in sizes), sum(max(size) <= crop for size in sizes)

    def val_names(self, max_images: int = 0) -> list[str]:
        """The names (relative to their folder) of the validation files an evaluation with
        ``max_images`` scores, in order; the names its batches carry."""
        return [file.name for file in self._val_in_use(max_images)]

    def val_plan(self, crop: int, batch_size: int, max_images: int = 0) -> list[list[int]]:
        """The validation batches as lists of file indices, from the files' upright sizes.

        Planned without decoding, so every rank of a distributed run agrees on the batches.
        """
        files = self._val_in_use(max_images)
        plan: list[list[int]] = []
        shape: tuple[int, int] | None = None
        for i, file in enumerate(files):
            height, width = self._val_size(file, crop)
            this = (self._scored_length(height, crop), self._scored_length(width, crop))
            if not plan or this != shape or len(plan[-1]) >= batch_size:
                plan.append([])
                shape = this
            plan[-1].append(i)
        return plan

    def _val_in_use(self, max_images: int) -> list[ImageFile]:
        """The validation files an evaluation scores: the first ``max_images`` (0: all)."""
        return self._val[:max_images] if max_images > 0 else self._val

    def _val_cacheable(self, crop: int) -> bool:
        if not self.cached and self._train:
            return False
        if self._val_cache_crop != crop:
            self._val_cache.clear()
            self._val_cache_crop = crop
        needed = sum(self.channels * self._scored_length(h, crop) * self._scored_length(w, crop)
                     for h, w in (self._val_size(file, crop) for file in self._val))
        needed *= 2 if self._deep_val else 1
        return needed <= self._cache_left and needed <= self._device_room()

    def _val_image(self, i: int, file: ImageFile, crop: int, cacheable: bool) -> torch.Tensor | None:
        key = (crop, i)
        if key in self._val_cache:
            return self._val_cache[key]
        try:
            image = fit_image(self._read(file.path, deep=self._deep_val), size=self.size, resize=self._val_resize(crop))
        except UnreadableImageError as exc:
            self._reasons[file.path] = exc.reason
            return None
        image = _centre_crop(image, crop)
        height, width = (self._scored_length(length, 0) for length in image.shape[-2:])
        image = _storable(image[..., :height, :width])
        if cacheable:
            image = image.to(self.device)
            self._val_cache[key] = image
        return image

    def _val_stack(self, images: list[torch.Tensor]) -> torch.Tensor:
        return _to_unit(torch.stack(images).to(self.device, non_blocking=True))

    # -- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        """What a checkpoint needs to continue the same sequence: plain ints (JSON-safe)."""
        return {"samples": self._samples, "train_files": len(self._train), "all_train_files": self._all_train}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; warns when the training files changed since."""
        self._samples = int(state["samples"])
        self._stream, self._stream_key = None, None
        # all ranks' files together (this rank's shard in older checkpoints): a resume with another
        # number of processes has other shards, not other photos
        key, now = ("all_train_files", self._all_train) if "all_train_files" in state else ("train_files", len(self._train))
        changed = int(state.get(key, now)) != now
        self.files_changed_since_checkpoint = changed
        if changed and self.rank == 0 and not self.split_note:  # a split_note has said what changed
            say(f"i2i: warning: the checkpoint was trained on {int(state[key])} training images, "
                f"now there are {now}; the data order differs from the original run")

    def close(self) -> None:
        """Stop streaming workers now rather than when garbage-collected."""
        self._stream, self._stream_key = None, None


# -- streaming ----------------------------------------------------------------------------------------
def _items(plan: Plan) -> list[tuple[int, int, int]]:
    return list(zip(plan.index.tolist(), plan.top.tolist(), plan.left.tolist()))


class _PlanSampler:
    """Endless batches of ``(image index, top, left)`` from sample ``start`` on (main process)."""

    def __init__(self, planner: Planner, start: int, batch_size: int):
        self.planner, self.start, self.batch_size = planner, start, batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        k = self.start
        while True:
            yield _items(self.planner.plan(k, self.batch_size))
            k += self.batch_size


class _CropDataset(Dataset):
    """Decodes one file per item and cuts the planned crop (runs in loader workers)."""

    def __init__(self, files: list[Path], read: Callable[[Path], torch.Tensor], size: int, resize: int, upscale: bool):
        self.files, self.read, self.size, self.resize, self.upscale = files, read, size, resize, upscale

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        """The crop, and the index of a file that could not be decoded on the way (-1: none),
        for the main process to warn about once: each worker process has its own memory, so a
        warning here would come once per worker."""
        index, top, left = item
        image, failed = self._decode(index)
        size = self.size
        top = min(top, image.shape[-2] - size)
        left = min(left, image.shape[-1] - size)
        # clone: a view would ship the whole decoded image back through shared memory
        return _storable(image[:, top:top + size, left:left + size].clone()), failed

    def _decode(self, index: int) -> tuple[torch.Tensor, int]:
        """The image, resized or upscaled where asked, and the index of the first file that
        could not be decoded (-1: none): such a file is replaced by the next one."""
        failed = -1
        for step in range(len(self.files)):
            at = (index + step) % len(self.files)
            try:
                image = fit_image(self.read(self.files[at]), size=self.size, resize=self.resize, upscale=self.upscale)
            except UnreadableImageError:
                failed = at if failed < 0 else failed
                continue
            if min(image.shape[-2:]) < self.size:  # a file replaced by a smaller one since the scan
                image = fit_image(image, size=self.size, upscale=True)
            return image, failed
        raise NoDecodableImages("none of the training images can be decoded any more")


class NoDecodableImages(RuntimeError):
    """Raised in a loader worker when no training file decodes (all damaged or deleted since the
    scan, which reads headers only); the main process turns it into one line."""


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # decoding is per-process; threads would only fight over cores


def _storable(image: torch.Tensor) -> torch.Tensor:
    """How pixels travel and are cached: uint8 as it is, uint16 as the same bits in int16, a
    type every device has kernels for (flips, turns and ``where`` only move the bits)."""
    return image.view(torch.int16) if image.dtype == torch.uint16 else image


def _to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """Stored pixels (see :func:`_storable`) as float in [0, 1]."""
    if pixels.dtype == torch.int16:
        return pixels.to(torch.int32).bitwise_and_(0xFFFF).float().div_(65535)
    return pixels.float().div_(255)


def note_deep_images(train: list[ImageFile], val: list[ImageFile]) -> None:
    """Say once which set is read at 16 bits, and why its cache takes twice the memory."""
    deep = [f for f in (*train, *val) if f.deep]
    if not deep:
        return
    sets = [words for words, files in (("the training images are read", train), ("the validation images are scored", val))
            if any(f.deep for f in files)]
    example = deep[0].path
    if deep[0].partner is not None:  # a pair across two folders: the deep one may be either
        from .decode import probe_image

        with contextlib.suppress(Exception):
            if not probe_image(example, upright=True)[2]:
                example = deep[0].partner
    say(f"i2i: note: {len(deep)} of the {len(train) + len(val)} images have more than 8 bits per channel (e.g. "
        f"{example}), so {' and '.join(sets)} at 16 bits, taking two bytes per value in memory")


def _cropped(length: int, crop: int) -> int:
    return min(crop, length) if crop > 0 else length


def _centre_crop(image: torch.Tensor, crop: int) -> torch.Tensor:
    if crop <= 0:
        return image
    height, width = image.shape[-2:]
    h, w = min(crop, height), min(crop, width)
    top, left = (height - h) // 2, (width - w) // 2
    return image[:, top:top + h, left:left + w].clone()
