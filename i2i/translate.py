"""``i2i translate``: apply a model to files and folders, keeping sizes and names."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data.encode import ALPHA_FORMATS, DEEP_FORMATS, SAVE_FORMATS  # noqa: F401 - SAVE_FORMATS was defined here
from .engine.cpu_threads import NoThreadGovernor, ThreadGovernor
from .engine.device import is_out_of_memory
from .errors import WRITE_TROUBLE, UserError, called_from_the_command_line, named_as_arguments, naming_images
from .messages import is_terminal, say
from .paths import user_path

if TYPE_CHECKING:
    from .data.decode import DecodedImage
    from .model import Model


@dataclass
class TranslateReport:
    """What a translation did. ``seconds`` splits the main loop's time: waiting for decoded
    images, running the network (up to its results on the host), waiting for writes.
    ``flattened`` counts inputs with an alpha channel written in a format without one (JPEG),
    ``reduced`` inputs deeper than 8 bits written in an 8-bit format (JPEG, WebP),
    ``pair_shaped`` inputs twice as wide as high given to a model trained on A|B files (a whole
    pair, where the network takes the input image alone)."""

    written: int = 0
    skipped: int = 0
    already_there: int = 0
    flattened: int = 0
    reduced: int = 0
    pair_shaped: int = 0
    outputs: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "network": 0.0, "write": 0.0})


@contextlib.contextmanager
def host_threads_for(device: torch.device, note: Callable[[str], None] = print) -> Iterator[ThreadGovernor | NoThreadGovernor]:
    """torch's host threads while translating. While the network runs on a GPU, one: torch's
    intra-op thread pool on the host only fights the
    decoding and encoding threads for the cores: its CPU work here (stacking a batch, copying
    results) is small. An H100 translating 256 px photos to PNG spent 95 % of its time in this
    fight (103 img/s); with one thread, 181 img/s. On the CPU the network needs the threads, as
    many as other programs leave free (see engine/cpu_threads.py; ``note`` says when that is
    fewer); call ``after_step`` per batch."""
    if device.type == "cpu":
        governor = ThreadGovernor("auto", note=note, work="translating", fixed_by="OMP_NUM_THREADS={}")
        try:
            yield governor
        finally:
            governor.close()
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield NoThreadGovernor()
    finally:
        torch.set_num_threads(before)


def io_workers(device: torch.device, fmt: str = "png") -> int:
    """How many threads decode and encode files beside the network.

    Decoding and PNG encoding run in worker threads (PIL releases the GIL while it works), so
    the network is not left waiting on files: on a GPU, writing 256 px PNGs one after the other
    took over 90 % of the time. Beside a GPU the cores have nothing else to do, so up to 16
    workers; on the CPU the network needs them, so up to 8, one core left to the main loop.
    JPEGs beside a GPU get 4: encoding one takes about 0.2 ms, mostly Python holding the GIL, so
    15 such threads kept the main loop waiting for the GIL before the network's kernel launches
    (an H200, 512 photos of 256 px: 4 workers 619 img/s, 8 519, 15 418-477, 2 443; for PNGs 15
    were fastest). ``benchmarks/bench_translate.py`` repeats its passes with other counts."""
    most = 16 if device.type != "cpu" else 8
    if fmt == "jpg" and device.type != "cpu":
        most = 4
    return max(1, min(most, (os.cpu_count() or 2) - 1))


def output_paths(inputs: list[tuple[Path, Path]], out_dir: Path, fmt: str) -> list[Path]:
    """``out_dir/<path relative to the given folder>/<stem>.<fmt>`` for each (root, file)."""
    paths = []
    for root, file in inputs:
        rel = file.relative_to(root).parent if root != file else Path()
        paths.append(out_dir / rel / f"{file.stem}.{fmt}")
    return paths


def _decode(file: Path) -> DecodedImage | str:
    """The image as RGB ``[3, H, W]`` (uint8, or uint16 for a deep file) with its alpha and bit
    depth, or why it cannot be read."""
    from .data import UnreadableImageError
    from .data.decode import decode_full

    try:
        return decode_full(file, 3)
    except UnreadableImageError as exc:
        return exc.reason


def output_pixels(image: torch.Tensor, alpha: np.ndarray | None, fmt: str) -> np.ndarray:
    """A translated ``[H, W, C]`` image (uint8, or int32 holding 16-bit values) as the array
    written in ``fmt``: uint8 or uint16, with the input's alpha channel appended where ``fmt``
    holds one. The image comes contiguous in that layout (see ``flush``): Pillow would copy a
    strided one with ``tobytes`` first (0.36 ms per 256 px image on the project's CPU, and
    two threads did it no faster than one)."""
    from .data.encode import with_alpha

    pixels = image.numpy()
    if pixels.dtype != np.uint8:
        pixels = pixels.astype(np.uint16)
    if alpha is not None and fmt in ALPHA_FORMATS:
        pixels = with_alpha(pixels, alpha)
    return pixels


def _write(image: torch.Tensor, alpha: np.ndarray | None, target: Path, fmt: str) -> None:
    """Save atomically: a temporary name, then a rename, so no half-written file is left."""
    from .data.encode import save_image, temporary_beside

    # two translations writing one folder, in two processes or two threads of one, do not share it
    tmp = temporary_beside(target, f"tmp-{os.getpid()}-{threading.get_native_id()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        save_image(output_pixels(image, alpha, fmt), tmp, fmt)
        tmp.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if exc.errno in WRITE_TROUBLE:  # the disk, not the user: exit status 1, as for a run
            raise OSError(exc.errno, exc.strerror, str(target)) from None
        raise UserError(f"{target}: cannot write ({exc.strerror or exc})") from None
    except ValueError as exc:  # what the format cannot hold: WebP's 16383 px a side, JPEG's 65535
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UserError(f"{target}: cannot write ({exc}); try another --format") from None


def _refuse_names_too_long(pairs: list[tuple[Path, Path]], targets: list[Path]) -> None:
    """An output name past the file system's limit (a 251-letter stem given ``.webp``) stopped
    the translation part-way, at that file, on every rerun: refused before any work."""
    from .data.encode import name_too_long, too_long_said

    too_long = [(file, target) for (_, file), target in zip(pairs, targets) if name_too_long(target.name)]
    if too_long:
        file, target = too_long[0]
        more = f" (and {len(too_long) - 1} more)" if len(too_long) > 1 else ""
        raise UserError(f"{file}: its output name, {too_long_said(target.name)}{more}; shorten the input's name (or "
                        "use a shorter --format)")


def names_ignore_case(folder: Path) -> bool:
    """Whether the file system ``folder`` is (or would be made) on takes ``A.png`` and ``a.png``
    as one file (macOS's and Windows's do by default): an empty probe file is made in the nearest
    existing folder and looked up with its name's case changed. False when nothing can be made
    there (nothing will be written there either)."""
    import tempfile

    existing = folder
    while not existing.is_dir() and existing.parent != existing:
        existing = existing.parent
    try:
        handle, probe = tempfile.mkstemp(prefix="i2i-case-probe-", dir=existing)
    except OSError:
        return False
    try:
        os.close(handle)
        probe_path = Path(probe)
        return probe_path.with_name(probe_path.name.upper()).exists()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


def _refuse_file_folder_clashes(pairs: list[tuple[Path, Path]], targets: list[Path], out_dir: Path) -> None:
    """Before any work: an output file whose name another output needs as a folder (``x.jpg``
    gives ``x.png``, beside a folder ``x.png/`` of inputs), or that is a folder already, would
    fail at its write after the others were translated."""
    files = {target: file for (_, file), target in zip(pairs, targets)}
    for (_, file), target in zip(pairs, targets):
        for folder in target.parents:
            if folder == out_dir or out_dir not in folder.parents:
                break
            if folder in files:
                raise UserError(f"{files[folder]} and {file}: one would be written to {folder} and the other inside a "
                                f"folder of that name; rename one, or translate them on their own into another --out")
        try:
            is_dir = target.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            raise UserError(f"{target}: is a folder, where {file}'s translation would be written; choose another --out "
                            "or --format")


def _refuse_writing_among_the_inputs(inputs: list[Path], pairs: list[tuple[Path, Path]], out_dir: Path) -> None:
    """Translations written into a folder that holds images being translated (a folder given, a
    subfolder of one, the folder of a file given) sit among its photos: the next ``i2i eval
    --data`` of it scored them as pairs, and the marker i2i leaves in an output folder hid its
    own photos from every later search. A folder above one being translated (``--out photos``
    for ``photos/sub``) mixes them with the photos around it alike."""
    from .data.sources import find_images, is_output_folder

    out = out_dir.resolve()
    # realpath, not resolve(): a loop of links among the files is skipped later as unreadable, and
    # resolve() raised on it, stopping the whole folder
    holding = ({Path(os.path.realpath(file)).parent for _, file in pairs}
               | {item.resolve() for item in inputs if item.is_dir()})
    inside = any(item.is_dir() and item.resolve() in out.parents for item in inputs)
    # a subfolder of one being translated is left out of its search: photos of its own would be
    # neither translated nor, once the outputs' marker is there, ever searched again
    if inside and out.is_dir() and not is_output_folder(out) and find_images(out):
        holding.add(out)
    if out in holding:
        raise UserError(f"--out {out_dir}: it holds images being translated, so their translations would sit among "
                        "them and be read as photos by the next i2i run, eval or translate of it; choose another --out "
                        f"(a new folder, such as {out_dir / 'translated'}, is left out of those)")
    above = next((item for item in inputs if out in item.resolve().parents), None)
    if above is not None:
        raise UserError(f"--out {out_dir}: it holds {above}, which is being translated, so the translations would sit "
                        "among the photos there and be read as photos by the next i2i run, eval or translate of it; "
                        "choose a new folder outside it, or inside the one being translated")


def _refuse_sizes_the_format_cannot_hold(pairs: list[tuple[Path, Path]], fmt: str, scale: int = 1) -> None:
    """Before any work: an output wider or taller than ``fmt`` can store (a WebP panorama past
    16383 px) would otherwise fail at its write, after the others were translated. Outputs
    are the inputs' size times the task's ``scale``, so the headers tell."""
    from .data.decode import UnreadableImageError, probe_size
    from .data.encode import SIDE_LIMITS

    limit = SIDE_LIMITS.get(fmt)
    if limit is None:
        return
    too_large = []
    for _, file in pairs:
        try:
            size = probe_size(file)
        except UnreadableImageError:  # reported with the other unreadable files, when its turn comes
            continue
        if max(size) * scale > limit:
            too_large.append((file, size))
    if too_large:
        (file, (height, width)), more = too_large[0], len(too_large) - 1
        others = f" (and {more} more)" if more else ""
        size = f"{width} x {height} px" + (f" is {width * scale} x {height * scale} px once enlarged {scale} times,"
                                           if scale > 1 else " is")
        raise UserError(f"{file}: {size} larger than {fmt} can store ({limit} px a side){others}; use --format png or tif")


def _readable_header(path: Path) -> bool:
    """Whether an image's header reads (its pixels are read later, when it is translated)."""
    from .data.decode import UnreadableImageError, probe_size

    try:
        probe_size(path)
    except UnreadableImageError:
        return False
    return True


#: ``i2i translate``'s options as :func:`translate_files` spells them, for its messages when a
#: program calls it
PYTHON_SPELLING = {"--overwrite": "overwrite=True", "--out": "out_dir", "--format": "fmt", "--batch-size": "batch_size",
                   "--tile": "tile", "--skip-existing": "skip_existing=True"}


def translate_files(model: Model, inputs: list[str | os.PathLike] | str | os.PathLike, out_dir: str | os.PathLike, *,
                    batch_size: int = 4, fmt: str = "png", overwrite: bool = False, progress: bool = True,
                    tile: int | str = "auto", skip_existing: bool = False) -> TranslateReport:
    """Translate every image found in ``inputs`` (files and folders, as paths or strings; one
    path alone too) into ``out_dir``; never replaces a file unless ``overwrite``.
    ``skip_existing`` leaves out the inputs whose output is already there, so a translation
    that stopped part-way continues (outputs are written whole or not at all).

    Folders are searched without ``out_dir`` (when it lies inside one), so translating into a
    subfolder of the input does not translate the earlier outputs again. A mistake is a
    :class:`UserError` that names this function's arguments (``i2i translate``'s options when
    the command line called it).
    """
    with named_as_arguments(PYTHON_SPELLING):
        return _translate_files(model, inputs, out_dir, batch_size=batch_size, fmt=fmt, overwrite=overwrite,
                                progress=progress, tile=tile, skip_existing=skip_existing)


def _translate_files(model: Model, inputs: list[str | os.PathLike] | str | os.PathLike, out_dir: str | os.PathLike, *,
                     batch_size: int, fmt: str, overwrite: bool, progress: bool, tile: int | str,
                     skip_existing: bool) -> TranslateReport:
    from .engine.infer import is_whole_number

    if isinstance(model, (str, os.PathLike)) or not callable(model):  # a run folder's path: 'str' has no 'device'
        raise TypeError(f"translate_files takes an i2i.Model (model = i2i.load(RUN_DIR)), not {type(model).__name__}")
    if not isinstance(fmt, str) or fmt.lower().replace("jpeg", "jpg").replace("tiff", "tif") not in SAVE_FORMATS:
        raise ValueError(f"fmt = {fmt!r}: expected one of {', '.join(map(repr, SAVE_FORMATS))}")
    fmt = fmt.lower().replace("jpeg", "jpg").replace("tiff", "tif")
    if not is_whole_number(batch_size, 1):
        raise ValueError(f"batch_size = {batch_size!r}: expected a whole number of images, 1 or more")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir is the folder for the translated images, a str or path, not {type(out_dir).__name__}")
    inputs = [inputs] if isinstance(inputs, bytes) or not hasattr(inputs, "__iter__") else list(inputs)  # a generator: once
    if not all(isinstance(item, (str, os.PathLike)) for item in inputs):
        odd = next(item for item in inputs if not isinstance(item, (str, os.PathLike)))
        raise TypeError(f"inputs are image files and folders, as str or paths (one alone too), not "
                        f"{type(odd).__name__} {odd!r:.60}")
    if not str(out_dir).strip():  # an unset shell variable: Path("") is the current folder
        raise UserError(f"--out {str(out_dir)!r}: give the folder for the translated images")
    if overwrite and skip_existing:
        raise UserError("--overwrite and --skip-existing contradict each other: give one")
    inputs = [user_path(item, "inputs") for item in inputs]  # ~ as the shell expands it (and the CLI's options)
    out_dir = user_path(out_dir, "out_dir")
    if not inputs:
        raise UserError("no inputs given: pass image files or folders to translate")
    _note_tile_side(model, tile)
    from .data.decode import folder_blocked

    blocked = folder_blocked(out_dir)  # a file, or /dev/null (which discards nothing it is given here)
    if blocked:
        raise UserError(f"{out_dir}: {blocked}, not a folder; choose another --out for the translated images")
    from .data import IMAGE_KINDS, to_uint8
    from .data.sources import (is_run_folder, mark_as_outputs, name_files, no_such_path, not_read_note, one_per_file,
                               outputs_warning, print_not_read_note,
                               print_run_folders_note, print_unsearched_warning, report_skipped,
                               survey_folder)

    pairs: list[tuple[Path, Path]] = []
    left_out: dict[Path, str] = {}  # per input folder, the image files i2i does not read ("2 .heic")
    for item in inputs:
        if not item.exists():
            raise no_such_path(item)
        if item.is_dir():
            if is_run_folder(item):  # RUN given twice, say: its sample grids are no photos to translate
                raise UserError(f"{item}: an i2i run folder, whose sample grids are no photos to translate; give the "
                                "images, or the folder that holds them")
            warning = outputs_warning(str(item), item, "translated again")
            if warning:
                say(warning)
            contents = survey_folder(item, exclude=[out_dir])
            pairs.extend((item, f) for f in contents.images)
            left_out[item] = contents.other_kinds
            print_run_folders_note(str(item), contents.run_folders)
            print_unsearched_warning(str(item), contents.unsearched)
        else:
            pairs.append((item, item))
    # a file reached twice (named and in its folder) is translated once, where its folder puts it
    # whatever the order they were given in (a rerun with --skip-existing finds it there)
    pairs = one_per_file(pairs, lambda pair: pair[1], found_in_folder=lambda pair: pair[0] != pair[1])
    if not pairs:
        out_inside = [item for item in inputs if item.is_dir() and item.resolve() in out_dir.resolve().parents]
        unsearched = f"; {out_dir}, the --out folder inside it, is not searched" if out_inside else ""
        raise UserError(f"no images found in {', '.join(str(i) for i in inputs)} ({IMAGE_KINDS})"
                        f"{not_read_note(left_out.values())}{unsearched}")
    print_not_read_note(", ".join(str(folder) for folder, kinds in left_out.items() if kinds), left_out.values())
    _refuse_writing_among_the_inputs(inputs, pairs, out_dir)
    targets = output_paths(pairs, out_dir, fmt)
    _refuse_file_folder_clashes(pairs, targets, out_dir)
    try:
        present = [_there(target) for target in targets]
    except OSError as exc:  # a name too long for the file system, say: before any work, as one line
        raise UserError(f"{out_dir}: cannot be used as the output folder ({exc.strerror or exc}); choose another --out") from None
    # an input that cannot be read is never written (a notes.png that is text, say): its output
    # replaces nothing, so only readable ones count below (their headers: read now, and cheap)
    present = [there and _readable_header(file) for (_, file), there in zip(pairs, present)]
    own = [file for (_, file), target, there in zip(pairs, targets, present)
           if there and target.exists() and target.samefile(file)]
    if own:  # even --overwrite must not replace an input
        more = f" (so would {len(own) - 1} more)" if len(own) > 1 else ""
        raise UserError(f"{own[0]}: would be replaced by its own translation{more}; choose another --out")
    _remove_abandoned_temporaries(targets)
    done = 0
    if skip_existing:
        done = sum(present)
        kept = [i for i, there in enumerate(present) if not there]
        pairs, targets, present = [pairs[i] for i in kept], [targets[i] for i in kept], [False] * len(kept)
    elif not overwrite:
        existing = [t for t, there in zip(targets, present) if there]
        if existing:
            raise UserError(f"{existing[0]}: already exists ({len(existing)} output file(s) would be replaced); use "
                            "--overwrite, --skip-existing (to finish a translation that stopped) or another --out")
    sharing: dict[str, list[Path]] = {}
    ignores_case = names_ignore_case(out_dir)  # macOS's and Windows's: Photo.png is photo.png
    for (_, file), target in zip(pairs, targets):
        sharing.setdefault(str(target).casefold() if ignores_case else str(target), []).append(file)
    named: dict[str, Path] = {}  # the name the first of a group's outputs would give the file
    for target in targets:
        named.setdefault(str(target).casefold() if ignores_case else str(target), target)
    # all of them in one message: renaming one pair at a time took a run each
    clashes = [f"{', '.join(map(str, files[:-1]))} and {files[-1]} -> {named[key]}"
               for key, files in sharing.items() if len(files) > 1]
    if clashes:
        more = f" (and {len(clashes) - 10} more)" if len(clashes) > 10 else ""
        case = ", and names differing only in case are one file on the file system of --out" if ignores_case else ""
        raise UserError(f"{len(clashes)} group(s) of inputs would be written to the same file (outputs are named by file "
                        f"stem, in --format{case}): {'; '.join(clashes[:10])}{more}; rename one of each, or translate "
                        "them on their own into another --out")
    _refuse_names_too_long(pairs, targets)
    # the files still to translate: --skip-existing reads no more
    _refuse_sizes_the_format_cannot_hold(pairs, fmt, getattr(getattr(model, "task", None), "output_scale", 1))

    report = TranslateReport(already_there=done)
    pairs_side_by_side = bool(getattr(getattr(model, "task", None), "side_by_side", False))
    if not pairs:  # skip_existing, and every output is there
        return report
    # marked with the first output, so a translation of a folder above it leaves these outputs
    # out (a folder that holds inputs was refused above, so every --out may be marked)
    marked = False

    def mark_once() -> None:
        nonlocal marked
        if not marked:
            mark_as_outputs(out_dir, "choose another --out")
            marked = True
    bar = None
    if progress and is_terminal(sys.stderr):
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), unit="img", file=sys.stderr)
    unreadable: dict[Path, str] = {}  # file -> why it could not be read
    pending: list[tuple[DecodedImage, Path]] = []
    workers = io_workers(model.device, fmt)
    window = max(2 * batch_size, 2 * workers)  # images decoded ahead, and writes pending: bounds the memory held
    writes: deque[Future] = deque()

    def wait_for_writes(keep: int) -> None:
        start = time.perf_counter()
        while len(writes) > keep:
            writes.popleft().result()
        report.seconds["write"] += time.perf_counter() - start

    written_lock = threading.Lock()

    def count_written(write: Future) -> None:
        """Counted once the file is there: Ctrl-C while a batch's writes were under way said
        fewer images than the folder then held (the pool finishes them before it stops)."""
        if not write.cancelled() and write.exception() is None:
            with written_lock:
                report.written += 1

    def deep(image: DecodedImage) -> bool:
        """Whether the output is written with 16 bits per channel."""
        return image.bits > 8 and fmt in DEEP_FORMATS

    def warn(text: str) -> None:
        say(text, above=bar)

    def flush() -> None:
        if not pending:
            return
        start = time.perf_counter()
        batch = torch.stack([image.pixels for image, _ in pending])
        if batch.dtype == torch.uint16:  # a deep input: floats here, as not every device casts uint16
            batch = batch.float().div_(65535)
        batch = batch.to(model.device, non_blocking=True)
        try:
            with naming_images("translating", [str(source_of[target]) for _, target in pending]):
                outputs = model(batch, tile=tile)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise UserError(f"out of memory on {model.device} translating {len(pending)} image(s) of "
                            f"{batch.shape[-1]}x{batch.shape[-2]} px at once; lower --batch-size or --tile") from None
        # 8-bit on the device: a quarter of the copy, and the writer threads only encode (torch
        # work in 8 threads at once fought over the CPU's cores: on an H100 writing took 64 %).
        # A batch is all 8-bit or all 16-bit outputs (see below); 16-bit values travel as int32,
        # which every device converts to (torch's uint16 is not supported everywhere).
        # Channels last, as files store pixels, before the copy: on a GPU that costs nothing and
        # spares each writer thread a strided copy (see output_pixels).
        if deep(pending[0][0]):
            outputs = outputs.float().clamp(0, 1).mul(65535).round().to(torch.int32)
        else:
            outputs = to_uint8(outputs)
        outputs = outputs.permute(0, 2, 3, 1).contiguous().cpu()  # waits for the device: the network's time ends here
        report.seconds["network"] += time.perf_counter() - start
        threads.after_step()
        mark_once()
        for out, (image, target) in zip(outputs, pending):
            writes.append(pool.submit(_write, out, image.alpha, target, fmt))
            writes[-1].add_done_callback(count_written)
            report.outputs.append(target)
        wait_for_writes(window)
        if bar is not None:
            bar.update(len(pending))
        pending.clear()

    with contextlib.ExitStack() as cleanup:
        cleanup.push(lambda kind, exc, tb: _say_how_far_on_interrupt(kind, report, out_dir, exc))  # runs last: writes done
        if bar is not None:  # closed however the loop ends, or an error prints into a half-drawn bar line
            cleanup.callback(bar.close)
        pool = cleanup.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="i2i-io"))
        threads = cleanup.enter_context(host_threads_for(model.device, note=warn))
        decodes: deque[tuple[Path, Path, Future]] = deque()
        todo = iter(zip(pairs, targets))
        source_of = {target: file for (_, file), target in zip(pairs, targets)}  # for a generator's failure

        def refill() -> None:
            for (_, file), target in todo:
                decodes.append((file, target, pool.submit(_decode, file)))
                if len(decodes) >= window:
                    break

        refill()
        while decodes:
            file, target, future = decodes.popleft()
            start = time.perf_counter()
            image = future.result()
            report.seconds["decode"] += time.perf_counter() - start
            refill()
            if isinstance(image, str):
                unreadable[file] = image
                report.skipped += 1
                continue
            report.flattened += int(image.alpha is not None and fmt not in ALPHA_FORMATS)
            report.reduced += int(image.bits > 8 and fmt not in DEEP_FORMATS)
            report.pair_shaped += int(pairs_side_by_side and image.pixels.shape[-1] == 2 * image.pixels.shape[-2])
            if pending:
                first = pending[0][0]
                if (image.pixels.shape != first.pixels.shape or image.pixels.dtype != first.pixels.dtype
                        or deep(image) != deep(first) or len(pending) >= batch_size):
                    flush()
            pending.append((image, target))
        flush()
        wait_for_writes(0)
    if unreadable and not report.written and not report.already_there:  # --skip-existing with the rest done is fine
        from .data.decode import IMAGE_EXTENSIONS

        # the format hint only where a file is not of a kind i2i reads (a PNG too large to decode already is one)
        kinds = "" if all(Path(p).suffix.lower() in IMAGE_EXTENSIONS for p in unreadable) else f" (give {IMAGE_KINDS} files)"
        raise UserError(f"none of the input files could be read as an image: {name_files(list(unreadable), unreadable)}"
                        f"{kinds}")
    report_skipped(list(unreadable), reasons=unreadable)
    note = format_note(report, fmt)
    if note:
        say(note)
    if report.pair_shaped:
        say(f"i2i: note: {report.pair_shaped} input(s) are twice as wide as high, like the A|B files this model was "
            "trained on; translate gives the network each file whole, as one input image, so give it the input "
            f"halves alone ({_input_half(model)})")
    return report


def _input_half(model: Model) -> str:
    """Which half of an A|B file a ``paired`` model takes as its input, in words."""
    direction = str(model.recipe.get("task", {}).get("direction", "AtoB"))
    return "the right halves: the run is BtoA" if direction == "BtoA" else "the left halves, for a run that is AtoB"


def _note_tile_side(model: Model, tile: int | str) -> None:
    """Say when ``--tile N`` is not the tile side used: tiles are a whole number of the
    generator's size multiple (at least one), and a smaller N was raised without a word."""
    from .engine.infer import is_whole_number, size_multiple, tile_side

    if isinstance(tile, str) or not is_whole_number(tile, 1):  # "auto", 0, or refused later with its own error
        return
    used = tile_side(model.generator, int(tile))
    if used != tile:
        multiple = size_multiple(model.generator)
        name = model.recipe["generator"]["name"]
        say(f"i2i: note: {_option('--tile', tile)}: generator {name!r} works in multiples of {multiple} px, so tiles are "
            f"{used} px")


def _say_how_far_on_interrupt(kind: type[BaseException] | None, report: TranslateReport, out_dir: Path,
                              exc: BaseException | None = None) -> None:
    """On Ctrl-C (or SIGTERM, SIGHUP: see the command), or a disk that filled up, once the writes
    under way have finished: how many outputs are complete, and how to go on from there."""
    full = isinstance(exc, OSError) and exc.errno in WRITE_TROUBLE
    if kind is not None and (issubclass(kind, KeyboardInterrupt) or full):
        how = "command with --skip-existing" if called_from_the_command_line() else "call with skip_existing=True"
        once = (" once the file system can be written again" if full and exc.errno == errno.EROFS  # type: ignore[union-attr]
                else " once there is room" if full else "")
        say(f"i2i: stopped after writing {report.written} image(s) to {out_dir} (each written whole); the same {how} "
            f"translates the rest{once}")


def format_note(report: TranslateReport, fmt: str) -> str:
    """One note on what ``fmt`` could not keep of the inputs (``""`` when it kept everything)."""
    lost = []
    if report.flattened:
        lost.append(f"{report.flattened} input(s) with transparency are shown composited onto white")
    if report.reduced:
        lost.append(f"{report.reduced} input(s) with 16 bits per channel were written with 8")
    if not lost:
        return ""
    if report.flattened and report.reduced:
        keeps = "png or tif keeps both"
    else:
        keeps = "png, webp or tif keeps transparency" if report.flattened else "png or tif keeps 16 bits"
    holds = "neither transparency nor 16 bits" if fmt == "jpg" else "8 bits per channel"
    return f"i2i: note: {_option('--format', fmt)} holds {holds}: {'; '.join(lost)} ({keeps})"


def _option(flag: str, value: object) -> str:
    """``--tile 7`` in a note under the command line, ``tile=7`` for a program that called
    :func:`translate_files` (whose arguments :data:`PYTHON_SPELLING` names)."""
    return f"{flag} {value}" if called_from_the_command_line() else f"{PYTHON_SPELLING[flag]}={value!r}"


def _there(path: Path) -> bool:
    """Whether anything is at ``path``, a dangling symbolic link included (a user's file too,
    which writing would replace); an error other than its absence (a name too long) is raised."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _remove_abandoned_temporaries(targets: list[Path]) -> None:
    """Half-written outputs that a killed translation left (``.NAME.tmp-PID-THREAD``, of a process that
    is gone): removed before this one writes, so a rerun leaves none behind. Another running
    translation's are its own."""
    from .data.encode import temporary_beside

    for target in targets:
        pattern = temporary_beside(target, "tmp-*").name
        try:
            leftovers = list(target.parent.glob(pattern)) if target.parent.is_dir() else []
        except OSError:
            continue
        for leftover in leftovers:
            pid = leftover.name.rsplit("tmp-", 1)[-1].split("-", 1)[0]  # (older ones: .NAME.tmp-PID)
            if pid.isdigit() and not _process_alive(int(pid)):
                with contextlib.suppress(OSError):
                    leftover.unlink()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True
