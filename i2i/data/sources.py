"""Where images come from: the shipped samples or a folder, checked, and split into train/val.

Folders are searched recursively in sorted order (so the same folder always gives the same
list on every machine); hidden files and folders (names starting with ``.``, such as macOS's
``.DS_Store`` and ``._photo.jpg``) are skipped, and symbolic links to folders are followed once.
For training and ``eval --data`` a file reached twice (a symbolic link to another image of the
folder) counts once, so it cannot land in both the training and the validation split. Image
files of kinds i2i does not read (HEIC, RAW, GIF, ...) are named in one note rather than
silently left out. Relative folders are relative to the working directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..errors import WRITE_TROUBLE, UserError
from ..messages import say
from ..paths import user_path
from .decode import IMAGE_KINDS, UnreadableImageError, decode_image, is_image_file, probe_image

#: The value of ``data.source`` that means the photos shipped with i2i.
SAMPLE = "sample"

#: Suffixes of image files that i2i does not read (phones' HEIC/AVIF, cameras' RAW, GIF, ...):
#: a folder of them gets a note naming them, where other files (sidecars, notes) pass silently.
OTHER_IMAGE_SUFFIXES = frozenset(
    ".heic .heif .avif .jxl .gif .dng .cr2 .cr3 .nef .nrw .arw .raf .orf .rw2 .pef .srw .psd .jp2 .tga .ico .ppm .pgm .pbm".split()
)


@dataclass(frozen=True)
class ImageFile:
    """A readable image file: its path, a display name (path under its folder) and upright size
    (of each half, for a file holding a pair side by side: ``side_by_side``; ``partner``: the
    file of the same name in ``data.pair_source`` that holds its pair's other image; ``deep``:
    it, or its partner, holds more than 8 bits per channel that i2i reads, see
    :func:`~i2i.data.decode.probe_image`)."""

    path: Path
    name: str
    height: int
    width: int
    side_by_side: bool = False
    partner: Path | None = None
    deep: bool = False


def sample_folder() -> Path:
    """The folder of sample photos installed with i2i (see its LICENSE.md)."""
    return Path(__file__).resolve().parent / "samples"


def find_images(folder: str | Path, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden names skipped); may be empty.

    Subfolders that are (or link to) one of ``exclude`` are not searched: ``translate`` leaves
    out its own output folder, so a second run does not translate the first one's results.
    Raises :class:`~i2i.errors.UserError` when ``folder`` does not exist.
    """
    return survey_folder(folder, exclude).images


@dataclass(frozen=True)
class FolderContents:
    """What one walk of a folder found: the images i2i reads, in :func:`find_images` order, and
    ``other_kinds``, e.g. ``"3 .heic, 1 .gif"``: image files of kinds it does not read
    (:data:`OTHER_IMAGE_SUFFIXES`), most common first (``""`` when there are none)."""

    images: list[Path]
    other_kinds: str
    run_folders: list[Path] = field(default_factory=list)  # i2i run and output folders inside, not searched
    unsearched: list[Path] = field(default_factory=list)  # subfolders that could not be listed (permissions)


def no_such_path(item: Path) -> UserError:
    """The error for a path given on the command line that is not there: a broken symbolic link
    or a loop of them is named as such (``exists()`` is false for both, and "no such file"
    sent users looking for a file they could see in ``ls``)."""
    if item.is_symlink():
        try:
            os.stat(item)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return UserError(f"{item}: a loop of symbolic links (it leads back to itself); give the file or folder itself")
        return UserError(f"{item}: a symbolic link to {os.readlink(item)}, which is not there")
    return UserError(f"{item}: no such file or folder")


def survey_folder(folder: str | Path, exclude: Iterable[str | Path] = ()) -> FolderContents:
    """Walk ``folder`` once (as :func:`find_images` describes) for both the images i2i reads and
    the image files it leaves out, so a large folder is not listed twice."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    images: list[Path] = []
    kinds: Counter[str] = Counter()
    run_folders: list[Path] = []
    unsearched: list[Path] = []
    for path in _walk(folder, exclude, run_folders, unsearched):
        if is_image_file(path):
            images.append(path)
        elif path.suffix.lower() in OTHER_IMAGE_SUFFIXES:
            kinds[path.suffix.lower()] += 1
    images.sort(key=lambda p: p.relative_to(folder).parts)
    return FolderContents(images, ", ".join(f"{count} {suffix}" for suffix, count in kinds.most_common()), run_folders,
                          unsearched)


def _walk(folder: Path, exclude: Iterable[str | Path] = (), run_folders: list[Path] | None = None,
          unsearched: list[Path] | None = None) -> Iterator[Path]:
    """Every non-hidden file under ``folder``, following links to folders once. i2i's own run
    and output folders inside it are not searched (their sample grids and translations are no
    photos: a run with ``data.source = "."`` would train the next one on them); they are added
    to ``run_folders``. Subfolders that cannot be listed (no permission) are added to
    ``unsearched``."""

    def not_listed(exc: OSError) -> None:
        if unsearched is not None and exc.filename is not None:
            unsearched.append(Path(exc.filename))

    # the folders inside it, by their real paths: a link to one of them (or to an ancestor, a
    # loop) is not followed, so its files are reached, and named, under their own folder. Listed
    # only once a link to a folder is met: most collections have none
    inside: set[str] | None = None
    top = os.path.realpath(folder)
    seen = {top, *(os.path.realpath(p) for p in exclude)}
    for root, dirs, files in os.walk(folder, followlinks=True, onerror=not_listed):
        keep = []
        for name in sorted(dirs):
            real = os.path.realpath(os.path.join(root, name))
            if os.path.islink(os.path.join(root, name)):
                if inside is None:
                    inside = {os.path.realpath(path) for path, _, _ in os.walk(folder)}
                if real in inside or top.startswith(real + os.sep):
                    continue
            if not name.startswith(".") and real not in seen:  # `seen` stops symlink cycles
                seen.add(real)
                try:
                    output = is_output_folder(Path(root, name))
                except OSError:  # its contents cannot be looked at (no permission): os.walk says so below
                    output = False
                if output:
                    if run_folders is not None:
                        run_folders.append(Path(root, name))
                    continue
                keep.append(name)
        dirs[:] = keep
        yield from (Path(root, name) for name in sorted(files) if not name.startswith("."))


T = TypeVar("T")


def one_per_file(items: Iterable[T], path_of: Callable[[T], Path] = lambda item: item,
                 found_in_folder: Callable[[T], bool] = lambda item: False) -> list[T]:
    """``items`` with each file reached twice (through a symbolic link, or named and found in
    its folder) kept once, in the first one's place: as found in a folder where it was
    (``found_in_folder``), and under its own name rather than a link's (``photo.jpg`` and a link
    ``best_of_2024.jpg`` to it translate to ``photo.png``), whatever order they came in."""
    kept: dict[str, T] = {}
    for item in items:
        real = os.path.realpath(path_of(item))
        if real not in kept:
            kept[real] = item
            continue
        old = kept[real]
        if found_in_folder(item) != found_in_folder(old):
            better = found_in_folder(item)
        else:
            better = path_of(old).is_symlink() and not path_of(item).is_symlink()
        if better:
            kept[real] = item
    return list(kept.values())


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a folder i2i wrote for a run (it holds ``run.json`` and ``recipe.toml``)."""
    return (path / "run.json").is_file() and (path / "recipe.toml").is_file()


#: The hidden file that marks a folder i2i wrote images into (``i2i translate --out``, ``i2i eval
#: --save-images``): inside a folder searched for photos it is left out, as a run folder is, so a
#: second translation of ``photos/`` does not translate the first one's ``photos/out/`` again.
OUTPUTS_MARKER = ".i2i-outputs"


def holds_photos(folder: Path) -> Path | None:
    """The first image file in ``folder`` or its subfolders that i2i did not write (none in a
    folder marked as outputs, or in a run folder), or None. Stops at the first."""
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if (here / OUTPUTS_MARKER).is_file() or is_run_folder(here):
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found = next((here / name for name in files if is_image_file(here / name)), None)
        if found is not None:
            return found
    return None


def mark_as_outputs(folder: Path, instead: str) -> None:
    """Make ``folder`` (and its parents) and mark it as :data:`OUTPUTS_MARKER` says, unless it
    already holds photos that are not i2i's: marked, they would be left out of every later search
    (``i2i translate --out ~/Pictures`` hid the user's whole picture folder), so a note says the
    folder stays unmarked instead. A full disk is an ``OSError`` naming the folder (exit status
    1, as for an output); another failure a :class:`UserError` ending with ``instead``
    (``choose another --out``)."""
    marker = folder / OUTPUTS_MARKER
    made = [path for path in (folder, *folder.parents) if not os.path.lexists(path)]  # what mkdir will make
    try:
        folder.mkdir(parents=True, exist_ok=True)
        photo = None if made or marker.exists() else holds_photos(folder)
        if photo is not None:
            say(f"i2i: note: {folder} already holds images i2i did not write ({photo.relative_to(folder)}, ...), so it "
                "is not marked as an outputs folder: a later search of a folder around it for photos takes these "
                "outputs for photos too (an --out of their own avoids that)")
        elif not marker.exists():
            marker.write_text("i2i wrote the images in this folder; searching a folder above it for photos leaves it out.\n")
    except OSError as exc:
        for path in made:  # deepest first: an empty folder left behind failed every rerun the same way
            with contextlib.suppress(OSError):
                path.rmdir()
        if exc.errno in WRITE_TROUBLE:  # the disk, not the user
            raise OSError(exc.errno, exc.strerror, str(folder)) from None
        from ..paths import umask_hint

        raise UserError(f"{folder}: cannot write in it ({exc.strerror or exc}){umask_hint() if made else ''}; "
                        f"{instead}") from None


def outputs_folder_holding(folder: Path) -> Path | None:
    """The folder marked as i2i's outputs (:data:`OUTPUTS_MARKER`) that ``folder`` is or lies
    in, or None: an album's subfolder of a translated archive holds outputs as much as its top."""
    try:
        here = folder.resolve()
    except (OSError, RuntimeError):
        return None
    for candidate in (here, *here.parents):
        if (candidate / OUTPUTS_MARKER).is_file():
            return candidate
    return None


def outputs_warning(given: str, folder: Path, again: str) -> str:
    """The warning for a folder of i2i's outputs given as photos (``""`` for any other folder):
    ``again`` says what it leads to ("translated again", "not photos")."""
    marked = outputs_folder_holding(folder)
    if marked is None:
        return ""
    where = "holds images i2i wrote" if marked == folder.resolve() else f"is inside {marked}, which holds images i2i wrote"
    return (f"i2i: warning: {given} {where} (i2i translate's --out or i2i eval's --save-images; its {OUTPUTS_MARKER} "
            f"file says so): a model's outputs, {again}; give the photos' own folder unless this is what you meant")


def is_output_folder(path: Path) -> bool:
    """Whether ``path`` holds what i2i wrote: a run, or images it translated or saved."""
    return is_run_folder(path) or (path / OUTPUTS_MARKER).is_file()


def print_unsearched_warning(where: str, unsearched: list[Path]) -> None:
    """The warning naming the subfolders of ``where`` that could not be listed (their images
    are left out); nothing when there are none."""
    if not unsearched:
        return
    shown = ", ".join(str(p) for p in unsearched[:3]) + (f" and {len(unsearched) - 3} more" if len(unsearched) > 3 else "")
    say(f"i2i: warning: {where}: {len(unsearched)} subfolder(s) could not be searched, as this user may not list them "
        f"(permission denied): {shown}; any images in them are left out")


def print_run_folders_note(where: str, run_folders: list[Path]) -> None:
    """The note on stderr naming the run folders inside ``where`` that were not searched;
    nothing when there are none."""
    if not run_folders:
        return
    shown = ", ".join(str(p) for p in run_folders[:3]) + (f" and {len(run_folders) - 3} more" if len(run_folders) > 3 else "")
    say(f"i2i: note: {where}: {len(run_folders)} i2i run or output folder(s) inside it not searched ({shown}): their sample "
        "grids and outputs are no photos")


#: The subfolders of the reference pix2pix's (aligned) and CycleGAN's (unaligned) data sets
SPLIT_FOLDERS = ("train", "val", "test")
UNPAIRED_FOLDERS = ("trainA", "trainB", "testA", "testB")


def _same_names(one: Path, other: Path) -> bool:
    """Whether two folders' files (directly inside) mostly share their names' stems: pairs kept
    in two folders, as ``data.pair_source`` reads them."""
    try:
        stems = [{entry.stem for entry in folder.iterdir() if entry.is_file()} for folder in (one, other)]
    except OSError:
        return False
    return bool(stems[0]) and len(stems[0] & stems[1]) * 2 >= max(len(stems[0]), len(stems[1]))


def print_reference_layout_note(key: str, value: str, folder: Path, side_by_side: bool = False, quiet: bool = False) -> None:
    """A note when ``folder`` is laid out as the reference's data sets are (``train/``, ``val/``,
    ``test/``; or CycleGAN's ``trainA/``, ``trainB/``): searched with its subfolders, they would
    all be pooled, the reference's split lost. Nothing otherwise. A CycleGAN data set given to a
    ``side_by_side`` task is an error (even when ``quiet``): its single photos would be cut in
    half as pairs."""
    try:
        names = {entry.name for entry in folder.iterdir() if entry.is_dir()}
    except OSError:
        return
    splits = [name for name in SPLIT_FOLDERS if name in names]
    unpaired = [name for name in UNPAIRED_FOLDERS if name in names]
    where = f'{key} = "{value}"'
    two_folders = [name for name in ("A", "B") if name in names]
    if len(two_folders) == 2 and side_by_side and not splits:
        a, b = Path(value) / "A", Path(value) / "B"
        use = (f"score them with --data {a} --pair-data {b}" if key == "--data" else
               f'set data.source = "{a}" and data.pair_source = "{b}" (their train/ folders, when they have them)')
        raise UserError(f"{where} holds the folders A and B: the reference's two-folder layout, each file a single photo "
                        f"with its pair under the same name in the other folder, while this task reads files that hold a "
                        f"pair side by side (A|B); {use}")
    if len(unpaired) >= 2 and side_by_side:
        paired = _same_names(folder / "trainA", folder / "trainB") or _same_names(folder / "testA", folder / "testB")
        half = "train" if _same_names(folder / "trainA", folder / "trainB") else "test"
        a, b = Path(value) / f"{half}A", Path(value) / f"{half}B"
        if paired:  # pairs kept in two folders under the same names, CycleGAN's folder names or not
            use = (f"score them with --data {a} --pair-data {b}" if key == "--data" else
                   f'set data.source = "{a}" and data.pair_source = "{b}"')
            tail = f"; its {half}A and {half}B hold the same file names, so if they are pairs, {use}"
        else:
            tail = "; i2i does not train CycleGAN's unpaired setting"
        raise UserError(f"{where} holds {', '.join(unpaired)}: an unpaired (CycleGAN) data set, whose files are single "
                        f"photos, and this task reads files that hold a pair side by side (A|B){tail}")
    if quiet:
        return
    if len(unpaired) >= 2:
        say(f"i2i: note: {where} holds {', '.join(unpaired)}: an unpaired (CycleGAN) data set, which i2i does not "
            "train on as such: every image in them is taken as one photo")
    elif "train" in splits and len(splits) >= 2:
        held = "val" if "val" in splits else "test"
        inside = f'"{Path(value) / "train"}"'
        advice = (f'its images are scored together; for one split, pass e.g. --data {Path(value) / "test"}' if key == "--data"
                  else f'all are searched for training images (and without data.val_source, split again by '
                       f'data.val_fraction); for the data set\'s own split, set data.source = {inside} and '
                       f'data.val_source = "{Path(value) / held}"')
        say(f"i2i: note: {where} holds the subfolders {', '.join(splits)}, as the reference's data sets do: {advice}")


def not_read_note(other_kinds: Iterable[str]) -> str:
    """A hint for a message from :attr:`FolderContents.other_kinds` of one or more folders:
    which image files i2i left out, and what to do."""
    other = _joined_kinds(other_kinds)
    return f"; not read: {other} file(s) (convert them to one of these)" if other else ""


def print_not_read_note(where: str, other_kinds: Iterable[str]) -> None:
    """The note on stderr, when images were found, naming the image files i2i left out of
    ``where`` (a folder, or the recipe key that names it); nothing when there are none."""
    other = _joined_kinds(other_kinds)
    if other:
        say(f"i2i: note: {where}: {other} file(s) not read; i2i reads {IMAGE_KINDS} (convert them to use them)")


def _joined_kinds(other_kinds: Iterable[str]) -> str:
    """The left-out kinds of several folders (``"2 .heic, 1 .gif"`` each) as one list."""
    return ", ".join(kinds for kinds in other_kinds if kinds)


#: A recipe's data folders: where images are, and where their pairs' other images are
DATA_FOLDERS = ("source", "pair_source", "val_source", "val_pair_source")


def missing_data_folder(data: Mapping[str, str]) -> str | None:
    """``source``, ``pair_source``, ``val_source`` or ``val_pair_source``: the first of a
    recipe's data folders that is no longer there (a run's photos moved or renamed since), or None."""
    for key in DATA_FOLDERS:
        value = data.get(key, "")
        if value not in ("", SAMPLE) and not user_path(value, f"data.{key}").exists():
            return key
    return None


def _samples_hold_no_pairs(key: str, pairs: tuple[str, str] | None = None) -> UserError:
    """The shipped photos given to a task that reads pairs: they have no partner in ``pairs``'
    folder, and cut in halves as A|B files they are nonsense."""
    if pairs is not None:
        return UserError(f'{key} = "{SAMPLE}": the photos shipped with i2i have no pairs in {pairs[1]} = '
                         f'"{pairs[0]}"; give the folder of the pairs\' input-side images')
    score = "" if key == "--data" else " (to score a run: i2i eval RUN --data DIR)"
    return UserError(f'{key} = "{SAMPLE}": the photos shipped with i2i are single photos, and this task reads '
                     f"files that hold a pair side by side (A|B); give a folder of such files{score}")


def resolve_data_folders(data: Mapping[str, str], side_by_side: bool | None = None) -> None:
    """Check that a recipe's data folders (``data.source``, and the others when given) are
    there and hold an image file (by its name; the images are not read), as a run will need
    them, and that its pair folders go with a task that reads pairs (``side_by_side``, when
    known); the error names the key."""
    pairs = dict(zip(("source", "val_source"), pair_folders(data, side_by_side)))
    folders = {}
    for key in DATA_FOLDERS:
        if data.get(key) or key == "source":  # an empty source is refused, an empty other one means none
            if key in ("source", "val_source") and data[key] == SAMPLE and (side_by_side or pairs.get(key)):
                raise _samples_hold_no_pairs(f"data.{key}", pairs.get(key))  # as the run will: validate passed it
            folder = folders[key] = resolve_folder(data[key], f"data.{key}")
            # stops at the first image: a folder's name check, not a scan (i2i validate said an
            # empty folder was fine, and the run then refused it)
            if not any(is_image_file(path) for path in _walk(folder)):
                left_out = survey_folder(folder).run_folders  # said here: validate prints no note of them
                also = (f"; {len(left_out)} i2i run or output folder(s) inside it were left out ({left_out[0]})"
                        if left_out else "")
                raise UserError(f'data.{key} = "{data[key]}": no images in this folder or its subfolders '
                                f'({IMAGE_KINDS}){also}')
            if side_by_side and key in ("source", "val_source") and pairs.get(key) is None:  # A/ and B/ inside: refused
                print_reference_layout_note(f"data.{key}", data[key], folder, side_by_side=True, quiet=True)
    for key, paired in pairs.items():
        if paired is not None and key in folders:
            _refuse_self_pairing(folders[paired[1].removeprefix("data.")], folders[key], paired, f"data.{key}", data[key])


def pair_folders(data: Mapping[str, str], side_by_side: bool | None = None) -> tuple[tuple[str, str] | None,
                                                                                    tuple[str, str] | None]:
    """``(pairs of data.source, pairs of data.val_source)``: each the ``(value, key)`` of the
    folder holding the other image of each pair, or None. A pair folder without its images'
    folder, a split folder half paired, or pair folders for a task that makes its own pairs
    (``side_by_side`` false) is a :class:`~i2i.errors.UserError`."""
    pair, val_pair = data.get("pair_source", ""), data.get("val_pair_source", "")
    if side_by_side is False and (pair or val_pair):
        key = "pair_source" if pair else "val_pair_source"
        raise UserError(f'data.{key} = "{data[key]}": this task makes its own pairs from single photos; folders of '
                        'ready pairs (noisy and clean photos, say) train with task.name = "paired"')
    if val_pair and not data["val_source"]:
        raise UserError(f'data.val_pair_source = "{val_pair}" without data.val_source: give the folder of the pairs\' '
                        "input-side images as data.val_source, or leave data.val_pair_source out")
    if data["val_source"] and bool(pair) != bool(val_pair):
        given, missing = ("pair_source", "val_pair_source") if pair else ("val_pair_source", "pair_source")
        raise UserError(f'data.{given} = "{data[given]}" and data.{missing} is not set: training and validation images '
                        "are both single files holding pairs side by side, or both paired across two folders; "
                        f"set data.{missing}")
    return ((pair, "data.pair_source") if pair else None,
            (val_pair, "data.val_pair_source") if val_pair else None)


def resolve_folder(value: str, key: str) -> Path:
    """The folder a recipe value names (``"sample"`` = the shipped photos), checked to exist."""
    if not value.strip():  # Path("") is the working directory: never what an empty value meant
        raise UserError(f'{key} = "{value}": empty; give a folder of images, or "{SAMPLE}" for the photos shipped with i2i')
    if value == SAMPLE:
        return sample_folder()
    folder = user_path(value, key)
    try:
        exists = folder.exists()
    except (OSError, RuntimeError) as exc:  # a name too long, a loop of links: named with its key
        from ..paths import path_problem, shortened_path

        problem = path_problem(exc)
        if problem is None:
            raise
        raise UserError(f'{key} = "{shortened_path(value)}": {problem.split(": ", 1)[-1]}') from None
    if not exists:
        relative = "" if folder.is_absolute() else f" (a relative folder starts from the working directory, {Path.cwd()})"
        samples = "" if "pair" in key else f', or "{SAMPLE}" for the photos shipped with i2i'
        if key == "data.val_source":  # a recipe's own validation folder (pix2pix.toml's facades/val) left behind
            samples += ", or \"\" to hold out part of data.source instead (--set \"data.val_source=''\")"
        raise UserError(f'{key} = "{value}": no such folder{relative}; give a folder of images{samples}')
    if not folder.is_dir():
        raise UserError(f'{key} = "{value}": is a file, not a folder; give the folder that holds the images')
    try:
        run_folder = is_run_folder(folder)
    except PermissionError:  # its run.json looked for: the folder itself is what may not be read
        raise UserError(f'{key} = "{value}": this user may not list this folder (permission denied); give your user '
                        "access to it, or another folder") from None
    if run_folder:  # one inside the folder is skipped with a note; the folder itself would train on grids
        raise UserError(f'{key} = "{value}": an i2i run folder, whose sample grids are no photos to train on; give the '
                        "folder that holds the images")
    return folder


def warn_validating_on_training_files(source: str, val_source: str) -> None:
    """One warning when ``data.val_source`` is ``data.source``'s folder, inside it or around it
    (folders are searched with their subfolders): the run would score itself on images it trains on."""
    train, val = (resolve_folder(v, k).resolve() for v, k in ((source, "data.source"), (val_source, "data.val_source")))
    if val in train.parents:  # the training folder inside the validation one: all of it is validated on
        say(f'i2i: warning: data.source = "{source}" is inside data.val_source = "{val_source}" (searched with its '
            "subfolders), so the run validates on every image it trains on and its scores say nothing about new "
            "photos; give data.val_source a folder of its own")
        return
    if val == train or train in val.parents:
        where = "is data.source's folder" if val == train else f'is inside data.source = "{source}" (searched with its subfolders)'
        say(f'i2i: warning: data.val_source = "{val_source}" {where}, so the run validates on images it trains on and '
            "its scores say nothing about new photos; move the validation images out, or leave data.val_source empty "
            "to hold out a share of data.source")


def scan_folder(value: str, key: str, reasons: dict[Path, str] | None = None,
                quiet: bool = False, side_by_side: bool = False,
                pairs: tuple[str, str] | None = None) -> tuple[list[ImageFile], list[Path]]:
    """``(readable, unreadable)`` image files of the folder a recipe value names; with
    ``side_by_side``, each file's size is that of its halves (see :attr:`i2i.Task.side_by_side`),
    unless ``pairs`` (``(value, key)`` of another folder) holds each pair's other image under the
    same name: then each file gets its ``partner`` there, of the same size (see
    :func:`match_partners`).

    Only headers are read (sizes), so this is fast even for large folders. A file reached a
    second time through a symbolic link is left out. Why each unreadable file cannot be read
    goes into ``reasons`` when given. Image files of kinds i2i does not read get one note on
    stderr, unless ``quiet`` (ranks other than 0). Raises :class:`~i2i.errors.UserError` naming ``key`` when the folder is missing or
    holds no readable image.
    """
    if pairs is not None:
        if value == SAMPLE:
            raise _samples_hold_no_pairs(key, pairs)
        side_by_side = False  # each file is one image, its partner the other
    if side_by_side and value == SAMPLE:  # cut in halves, they would train on nonsense
        raise _samples_hold_no_pairs(key)
    folder = resolve_folder(value, key)
    if value == SAMPLE and Path(SAMPLE).is_dir() and not quiet:
        say(f'i2i: note: {key} = "{SAMPLE}" means the photos shipped with i2i, not the folder ./{SAMPLE} here; '
            f'for that one, write "./{SAMPLE}"')
    inside = [user_path(*pairs)] if pairs is not None and pairs[0] not in ("", SAMPLE) else []
    contents = survey_folder(folder, exclude=[p for p in inside if p.is_dir()])  # a pair folder inside: B images, not A
    paths = contents.images
    if not quiet:
        print_run_folders_note(f'{key} = "{value}"', contents.run_folders)
        print_unsearched_warning(f'{key} = "{value}"', contents.unsearched)
        warning = outputs_warning(f'{key} = "{value}"', folder, "not photos")  # searched for, it is left out
        if warning:
            say(warning)
    print_reference_layout_note(key, value, folder, side_by_side, quiet)
    if not paths:
        unsearched = (f"; {len(contents.unsearched)} subfolder(s) this user may not list were not searched (permission "
                      f"denied), e.g. {contents.unsearched[0]}" if contents.unsearched else "")
        if contents.run_folders:  # said in the error too: a quiet caller (validate) printed no note
            unsearched += (f"; {len(contents.run_folders)} i2i run or output folder(s) inside it were left out "
                           f"({contents.run_folders[0]})")
        raise UserError(f'{key} = "{value}": no images in this folder or its subfolders ({IMAGE_KINDS})'
                        f'{not_read_note([contents.other_kinds])}{unsearched}')
    if not quiet:
        print_not_read_note(f'{key} = "{value}"', [contents.other_kinds])
    readable, unreadable = [], []
    why = reasons if reasons is not None else {}
    for path in one_per_file(paths):  # a link to an image already listed: the same photo twice
        try:
            height, width, deep = probe_image(path, upright=not side_by_side)  # a pair is cut as stored
        except UnreadableImageError as exc:
            unreadable.append(path)
            why[path] = exc.reason
            continue
        if side_by_side:
            if width < 2:
                unreadable.append(path)
                why[path] = f"{width} px wide, too narrow to hold two images side by side"
                continue
            width //= 2
        readable.append(ImageFile(path, path.relative_to(folder).as_posix(), height, width, side_by_side, deep=deep))
    if pairs is not None:
        readable = match_partners(readable, unreadable, why, pairs, key, value, quiet)
    if not readable:
        first = unreadable[0]
        raise UserError(f'{key} = "{value}": none of its {len(unreadable)} image files can be read '
                        f"(e.g. {first.name}: {why[first]})")
    if side_by_side and not quiet:
        warn_unlike_halves(f'{key} = "{value}"', readable, scoring=key == "--data")
    return readable, unreadable


def _refuse_self_pairing(folder: Path, source: Path, pairs: tuple[str, str], key: str, value: str) -> None:
    """A pair folder that is its images' own folder: each image would be its own partner."""
    pair_value, pair_key = pairs
    if folder.resolve() == source.resolve():
        # training would learn to copy its input; scoring would score a copy
        raise UserError(f'{pair_key} = "{pair_value}" is {key} = "{value}" itself: each image would pair with itself; '
                        "give the folder of the pairs' other images")


def match_partners(files: list[ImageFile], unreadable: list[Path], why: dict[Path, str], pairs: tuple[str, str],
                   key: str, value: str, quiet: bool = False) -> list[ImageFile]:
    """``files`` that have a partner in the pair folder: the file with the same path under it,
    extension aside (``sub/0001.png`` pairs with ``sub/0001.jpg``), readable and of the same
    upright size. Those without one join ``unreadable``, with why in ``why`` (so they are
    skipped with a warning, and none left is an error); files of the pair folder that pair with
    nothing get a note, unless ``quiet``."""
    pair_value, pair_key = pairs
    folder = resolve_folder(pair_value, pair_key)
    source = resolve_folder(value, key)
    where = f'{pair_key} = "{pair_value}"'
    _refuse_self_pairing(folder, source, pairs, key, value)
    contents = survey_folder(folder, exclude=[source])  # the images' own folder inside it: not partners
    by_stem: dict[str, list[Path]] = {}
    for path in one_per_file(contents.images):
        by_stem.setdefault(without_suffix(path.relative_to(folder).as_posix()), []).append(path)
    matched, used = [], set()
    listed: dict[Path, list[str]] = {}
    for file in files:
        stem = without_suffix(file.name)
        candidates = by_stem.get(stem, [])
        problem = ""
        if not candidates:
            unread = _other_kind_named(folder, stem, listed)
            problem = (f"its pair {unread} in {where} is of a kind i2i does not read ({IMAGE_KINDS})" if unread else
                       f"no file {stem}.* in {where} to pair it with")
        elif len(candidates) > 1:
            used.update(candidates)
            problem = f"several files could be its pair in {where} ({', '.join(p.name for p in candidates[:3])})"
        else:
            partner = candidates[0]
            used.add(partner)
            try:
                height, width, deep = probe_image(partner, upright=True)
            except UnreadableImageError as exc:
                problem = f"its pair {partner} cannot be read ({exc.reason})"
            else:
                if (height, width) != (file.height, file.width):
                    problem = (f"{file.width}x{file.height} px, its pair {partner} {width}x{height} px; a pair's two "
                               "images are the same size")
        if problem:
            unreadable.append(file.path)
            why[file.path] = problem
            continue
        matched.append(dataclasses.replace(file, partner=candidates[0], deep=file.deep or deep))
    if files and not matched:  # the pair folder is the likelier mistake: name it, not the images' folder
        first = files[0].path
        raise UserError(f'{where}: none of the {len(files)} images of {key} = "{value}" has its pair here '
                        f"(e.g. {first.name}: {why[first]})")
    lonely = [path for paths in by_stem.values() for path in paths if path not in used]
    if lonely and not quiet:
        say(f"i2i: note: {where}: {len(lonely)} file(s) pair with no image of {key} = \"{value}\" and are not "
            f"used ({name_files(sorted(lonely))})")
    return matched


def _other_kind_named(folder: Path, stem: str, listed: dict[Path, list[str]]) -> str:
    """A file of ``folder`` named ``stem`` with an extension i2i does not read (``u.heic``), or
    ``""``; each subfolder is listed once (``listed``)."""
    parent = (folder / stem).parent
    if parent not in listed:
        try:
            listed[parent] = sorted(os.listdir(parent))
        except OSError:
            listed[parent] = []
    name = stem.rsplit("/", 1)[-1]
    return next((entry for entry in listed[parent] if without_suffix(entry) == name and entry != name), "")


def without_suffix(name: str) -> str:
    """``sub/0001.png`` -> ``sub/0001``: what a file and its pair share (and the name i2i eval
    saves a scored file's images under)."""
    head, _, last = name.rpartition("/")
    stem = last.rsplit(".", 1)[0] if "." in last.lstrip(".") else last
    return f"{head}/{stem}" if head else stem


#: How far a pair's halves may be from the usual shape (width / height) before they look like
#: something else: a single photo among A|B files, whose "halves" are two halves of one photo (a
#: 4:3 photo among square pairs is 0.67, a 3:2 one 0.75). 1.15 named ordinary pairs of a set whose
#: photos vary from 4:3 to a little taller than wide, on every run.
UNLIKE_SHAPE = 1.3


#: Halves narrower than this (width / height) mean files about as wide as tall or taller: single
#: photos rather than A|B pairs, whose halves are each a whole picture (portrait pairs are 0.67+)
NARROW_HALVES = 0.6


def warn_unlike_halves(where: str, files: list[ImageFile], scoring: bool = False) -> None:
    """Warn when most side-by-side files are no wider than tall (single photos, as the
    reference's separate A/ and B/ folders hold: cut in half, each trains as a pair), and about
    files whose halves are shaped unlike most (a single photo saved among the pairs trains as a
    left half mapped to a right half; nothing for fewer than 3)."""
    if not files:
        return
    ratios = sorted(f.width / f.height for f in files)
    usual = ratios[len(ratios) // 2]
    if usual < NARROW_HALVES:
        say(f"i2i: warning: {where}: its files are about {2 * usual:.2g}:1 (width:height), so each is cut into halves "
            f"of {usual:.2g}:1, yet a file holding a pair side by side (A|B) is about twice as wide as tall: these look "
            "like single photos; for pairs kept in two folders under the same names, "
            + ("give i2i eval --pair-data DIR, the folder of the other images, for a run trained so" if scoring else
               "set data.pair_source (and data.val_pair_source; --pair-data for i2i eval) to the folder of the other "
               "images"))
        return
    if len(files) < 3:
        return
    unlike = [f for f in files if not usual / UNLIKE_SHAPE <= f.width / f.height <= usual * UNLIKE_SHAPE]
    if unlike:
        shown = ", ".join(f"{f.name} ({f.width}x{f.height} px halves)" for f in unlike[:3])
        say(f"i2i: warning: {where}: {len(unlike)} file(s) are shaped unlike the other pairs, whose halves are about "
            f"{usual:.2g}:1 ({shown}{' ...' if len(unlike) > 3 else ''}); a single photo among A|B files is cut in "
            f"half and {'scored' if scoring else 'trained on'} as a pair")


#: How much data.resize may enlarge a training image before a warning says so
ENLARGED = 2.0


def warn_enlarged(files: list[ImageFile], resize: int, upscale_to: int = 0) -> None:
    """Warn when ``data.resize`` (or ``data.upscale_small``, to ``upscale_to`` = ``data.size``)
    enlarges training images more than :data:`ENLARGED` times: a recipe written for large photos
    (pix2pix's 286) silently blew up small ones, and trained at the recipe's size for hours on
    their blur."""
    target = resize or upscale_to
    if not target or not files:
        return
    enlarged = [f for f in files if target / min(f.height, f.width) > ENLARGED]
    if enlarged:
        smallest = min(enlarged, key=lambda f: min(f.height, f.width))
        factor = target / min(smallest.height, smallest.width)
        setting = f"data.resize = {resize}" if resize else f"data.upscale_small (to data.size = {upscale_to})"
        say(f"i2i: warning: {setting} enlarges {len(enlarged)} of {len(files)} training image(s) more than "
            f"{ENLARGED:g}x (the most: {smallest.name}, {smallest.width}x{smallest.height} px, {factor:.1f}x), so the "
            f"network trains on their blur; for images this small, lower {'data.resize and ' if resize else ''}data.size")


def check_sizes(files: Iterable[ImageFile], size: int) -> None:
    """Fail on images smaller than ``data.size`` on either side: the first one is named, and
    how many others there are, so a folder with many thumbnails is not fixed one run at a time."""
    small = [file for file in files if min(file.height, file.width) < size]
    if small:
        file = small[0]
        more = f" (so are {len(small) - 1} more images)" if len(small) > 1 else ""
        sized = f"each of its two halves, {file.width}x{file.height} px," if file.side_by_side else f"{file.width}x{file.height} px"
        raise UserError(
            f"{file.path}: {sized} is smaller than data.size = {size}{more}; "
            "use larger images, a smaller data.size, or data.upscale_small = true"
        )


def warn_copies_across_split(train: list[ImageFile], val: list[ImageFile]) -> None:
    """Warn when validation images are byte-for-byte copies of training images (a photo saved
    twice under two names): they are scored on what the network trained on. Only files of equal
    size are compared, so a folder without copies costs a stat per file; those are compared by
    a hash of their bytes, each file read once (a scanner's thousands of equal-sized BMPs took
    minutes compared pair by pair)."""
    by_size: dict[int, list[ImageFile]] = {}
    for file in train:
        by_size.setdefault(file_bytes(file), []).append(file)
    by_digest: dict[int, dict[bytes, list[ImageFile]]] = {}  # per size, filled on the first val file of that size
    copies = []
    for file in val:
        size = file_bytes(file)
        if size <= 0 or size not in by_size:
            continue
        if size not in by_digest:
            by_digest[size] = {}
            for other in by_size[size]:
                digest = _file_digest(other.path)
                if digest is not None:
                    by_digest[size].setdefault(digest, []).append(other)
        digest = _file_digest(file.path)
        for other in by_digest[size].get(digest, []) if digest is not None else []:
            with contextlib.suppress(OSError):
                if not os.path.samefile(file.path, other.path):  # a link to the same file is no copy
                    copies.append((file, other))
                    break
    if copies:
        shown = ", ".join(f"{v.name} = {t.name}" for v, t in copies[:3]) + (" ..." if len(copies) > 3 else "")
        say(f"i2i: warning: {len(copies)} validation image(s) are byte-for-byte copies of training images ({shown}), "
            "so their scores are of photos the network trained on; remove the copies for scores of new photos")


def _file_digest(path: str | Path) -> bytes | None:
    """The BLAKE2 hash of a file's bytes, or None when it cannot be read."""
    import hashlib

    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "blake2b").digest() if hasattr(hashlib, "file_digest") else \
                hashlib.blake2b(handle.read()).digest()
    except OSError:
        return None


def check_folders_for_processes(data: Mapping[str, Any], seed: int, world_size: int, side_by_side: bool = False) -> None:
    """The checks each of ``world_size`` new processes makes of a recipe's data folders, made
    once before they start (``i2i run --nproc``), so a mistake is one line rather than one per
    process and torchrun's report: a missing or empty folder, no readable image, images smaller
    than ``data.size``, fewer training images than processes. ``side_by_side``: the task's."""
    pairs, val_pairs = pair_folders(data, side_by_side)
    source, _ = scan_folder(data["source"], "data.source", quiet=True, side_by_side=side_by_side, pairs=pairs)
    if not data["upscale_small"] and not data["resize"]:
        check_sizes(source, data["size"])
    if data["val_source"]:
        scan_folder(data["val_source"], "data.val_source", quiet=True, side_by_side=side_by_side, pairs=val_pairs)
        train = source
    else:
        train, _ = split_files(source, data["val_fraction"], seed)
    check_enough_for_processes(len(train), data["source"], world_size)


def check_enough_for_processes(training_images: int, source: str, world_size: int) -> None:
    """Each process trains on its own share of the images, so it needs at least one."""
    if training_images < world_size:
        raise UserError(f'data.source = "{source}": {training_images} training image(s) cannot feed {world_size} '
                        "processes; add images or use fewer processes")


def split_files(files: list[ImageFile], val_fraction: float, seed: int) -> tuple[list[ImageFile], list[ImageFile]]:
    """Split by file into ``(train, val)``, the same way for the same seed and file list.

    The list is shuffled with ``random.Random(seed)`` and ``round(val_fraction * N)`` files are
    held out, but at least one when ``val_fraction > 0`` and ``N >= 2``, and never all of them.
    Both parts come back in file order.
    """
    count = len(files)
    n_val = math.floor(val_fraction * count + 0.5)
    if val_fraction > 0 and count >= 2:
        n_val = max(n_val, 1)
    n_val = min(n_val, count - 1)
    order = list(range(count))
    random.Random(seed).shuffle(order)
    held_out = set(order[:n_val])
    train = [f for i, f in enumerate(files) if i not in held_out]
    val = [f for i, f in enumerate(files) if i in held_out]
    return train, val


def name_files(paths: list[Path], reasons: Mapping[Path, str] | None = None, shown: int = 3) -> str:
    """``a.png (why), b.png, c.png and 4 more``: the first few files of a list, for one line
    (never "and 1 more": that one is named instead)."""
    reasons = reasons or {}
    shown = shown + 1 if len(paths) == shown + 1 else shown
    names = ", ".join(f"{p} ({reasons[p]})" if reasons.get(p) else str(p) for p in paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def report_skipped(paths: list[Path], what: str = "unreadable file(s)", reasons: Mapping[Path, str] | None = None) -> None:
    """One warning line on stderr: how many files were skipped and the first ten names (with
    why each could not be read, where ``reasons`` says): the files a user has to fix or remove.
    Called at the end of each reading of a folder, it also counts the files whose remarks were
    not named one by one (:func:`~i2i.data.decode.say_remarks_left_out`)."""
    from .decode import say_remarks_left_out

    say_remarks_left_out()
    if not paths:
        return
    say(f"i2i: warning: skipped {len(paths)} {what}: {name_files(paths, reasons, shown=10)}")


def load_images_for_inference(paths: Iterable[str | Path], channels: int = 3) -> list[tuple[Path, torch.Tensor]]:
    """Decode files and folders (searched recursively) for ``translate`` / ``eval --data``.

    Returns ``(path, uint8 [channels, H, W])`` in order; unreadable files are skipped and
    reported once. Raises :class:`~i2i.errors.UserError` for a missing path or when nothing
    readable is found. Decodes everything up front: for many large files iterate
    :func:`find_images` and :func:`~i2i.data.decode.decode_image` instead.
    """
    files: list[Path] = []
    given = [Path(p) for p in paths]
    for item in given:
        if item.is_dir():
            files.extend(find_images(item))
        elif item.exists():
            files.append(item)
        else:
            raise no_such_path(item)
    images, unreadable = [], []
    for file in files:
        try:
            images.append((file, decode_image(file, channels)))
        except UnreadableImageError:
            unreadable.append(file)
    report_skipped(unreadable)
    if not images:
        where = ", ".join(str(p) for p in given)
        raise UserError(f"{where}: no readable images found ({IMAGE_KINDS})")
    return images


# -- the split a run recorded ----------------------------------------------------------------------
#: The file in a run directory that records which files the run trains and validates on.
SPLIT_FILE = "split.json"


def file_bytes(file: ImageFile) -> int:
    """The file's size in bytes (-1 when it is gone): with its name, what a recorded split
    compares; a hash would read every photo of a large folder at each start-up."""
    try:
        return os.stat(file.path).st_size
    except OSError:
        return -1


@dataclass(frozen=True)
class RecordedSplit:
    """Which files a run trains and validates on: names (relative to ``data.source``, and to
    ``data.val_source`` for validation files taken from there) with their sizes in bytes.

    A run writes it once, when it starts (``split.json`` in the run directory); a resumed run
    takes its files from it rather than drawing the split again (:func:`apply_recorded_split`),
    so a folder that changed since cannot move files between training and validation. Names
    are relative, so a run whose folder moved still resumes (``--set data.source=NEW_PLACE``).
    ``run`` is where it was read from, for messages.
    """

    train: dict[str, int]
    val: dict[str, int]
    val_separate: bool  # validation files come from data.val_source
    run: str = ""
    #: validation files whose pixels could not be decoded (found at an evaluation): they never
    #: counted, so one deleted since does not stop a resume or ``i2i eval``
    val_unreadable: frozenset[str] = frozenset()
    #: training files whose pixels could not be decoded when the run started (skipped with a
    #: warning): they never trained, so one deleted since is no change to warn about
    train_unreadable: frozenset[str] = frozenset()

    @classmethod
    def of(cls, train: Iterable[ImageFile], val: Iterable[ImageFile], val_separate: bool,
           train_unreadable: Iterable[str] = ()) -> RecordedSplit:
        return cls({f.name: file_bytes(f) for f in train}, {f.name: file_bytes(f) for f in val}, val_separate,
                   train_unreadable=frozenset(train_unreadable))

    def to_json(self) -> dict:
        return {"format": 1, "val_from": "data.val_source" if self.val_separate else "data.source",
                "train": self.train, "val": self.val,
                **({"val_unreadable": sorted(self.val_unreadable)} if self.val_unreadable else {}),
                **({"train_unreadable": sorted(self.train_unreadable)} if self.train_unreadable else {})}

    @classmethod
    def read(cls, run_dir: str | Path) -> RecordedSplit | None:
        """The record in ``run_dir``, or None for a run written before i2i kept one, or whose file
        was deleted (it resumes drawing the split again, refused when the training folder changed
        since the checkpoint). A file that is not JSON (empty or garbled by a
        crash or a disk error) is moved aside to ``split.json.unreadable``, with a warning, and the
        split drawn again too: it stopped every resume and ``i2i eval`` of intact checkpoints. A
        record that parses but cannot be one (a file on both sides) is a
        :class:`~i2i.errors.UserError`."""
        path = Path(run_dir) / SPLIT_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            _set_damaged_split_aside(path, exc)
            _REDRAWN.add(str(Path(run_dir).resolve()))
            return None
        try:
            return cls.from_json(data, str(run_dir))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{path}: cannot be read as the run's train/validation split ({exc}); "
                            "restore it, or start a new run") from None

    @classmethod
    def from_json(cls, data: dict, run: str) -> RecordedSplit:
        """Raises ``ValueError`` (or ``KeyError``, ``TypeError``) when ``data`` is not a split record."""
        if data.get("format") != 1 or data.get("val_from") not in ("data.source", "data.val_source"):
            raise ValueError("not a split record this i2i reads")
        train, val = ({str(k): int(v) for k, v in data[part].items()} for part in ("train", "val"))
        separate = data["val_from"] == "data.val_source"
        both = sorted(set(train) & set(val)) if not separate else []
        if both:  # a hand edit: which side it belongs to cannot be told
            raise ValueError(f"{both[0]} is listed as both a training and a validation file")
        return cls(train, val, separate, run, frozenset(str(name) for name in data.get("val_unreadable", [])),
                   frozenset(str(name) for name in data.get("train_unreadable", [])))


#: Runs whose damaged split.json :meth:`RecordedSplit.read` set aside in this process: their
#: split is drawn again, which is theirs only while their folders hold the same images
_REDRAWN: set[str] = set()


def split_was_redrawn(run_dir: str | Path) -> bool:
    """Whether :meth:`RecordedSplit.read` found ``run_dir``'s split.json damaged and set it aside."""
    return str(Path(run_dir).resolve()) in _REDRAWN


def _set_damaged_split_aside(path: Path, exc: BaseException) -> None:
    from ..engine.checkpoint import set_aside

    kept = set_aside(path)
    problem = f"not JSON ({exc})" if isinstance(exc, json.JSONDecodeError) else str(exc) or type(exc).__name__
    say(f"i2i: warning: {path}: cannot be read ({problem}); {kept}, and the run's train/validation split is drawn "
        "again from train.seed and data.val_fraction, as the run drew it: the same files while its data folders hold "
        "the same images")


def record_unreadable_val(run_dir: str | Path, names: Iterable[str]) -> None:
    """Add validation files found undecodable to the run's ``split.json`` (see
    :attr:`RecordedSplit.val_unreadable`)."""
    from ..engine.checkpoint import write_atomic

    record = RecordedSplit.read(run_dir)
    if record is None or set(names) <= record.val_unreadable:
        return
    record = dataclasses.replace(record, val_unreadable=record.val_unreadable | frozenset(names))
    write_atomic(Path(run_dir) / SPLIT_FILE, (json.dumps(record.to_json(), indent=0) + "\n").encode())


def apply_recorded_split(record: RecordedSplit, source: list[ImageFile], val_source: list[ImageFile] | None,
                         data: Mapping[str, str], reasons: Mapping[Path, str] | None = None,
                         ) -> tuple[list[ImageFile], list[ImageFile], str, str]:
    """``(train, val, note, val_kept)``: the files of a resumed run, from its record and what its folders
    hold now (``source``: the readable files of ``data.source``; ``val_source``: those of
    ``data.val_source``, or None when the run splits ``data.source``; ``data``: the recipe's
    ``[data]`` table, for messages; ``reasons``: why files of the folders were skipped, e.g. a
    pair's other image gone).

    Validation keeps the recorded files that remain unchanged (see :func:`recorded_val_files`,
    which gives ``val_kept``). Training keeps the
    recorded files that remain (a changed one too: it was a training file all along); files
    added since go to neither part, so no file ever changes sides. ``note`` is one warning line
    counting what changed (``""`` when nothing did), two when validation lost files too.
    """
    run = record.run or "the run"
    val, val_kept, val_note = recorded_val_files(record, source, val_source, data, reasons)
    candidates = source if val_source is not None else [f for f in source if f.name not in record.val]
    train = [f for f in candidates if f.name in record.train]
    if not train:
        raise UserError(f'{run}: none of the run\'s {len(record.train)} training file(s) are left in data.source = '
                        f'"{data["source"]}"; restore them, or start a new run')
    # a training file that never decoded and is gone since was never trained on: not a removal
    kept = {f.name for f in train}
    added = len(candidates) - len(train)
    removed = sum(name not in kept and name not in record.train_unreadable for name in record.train)
    changed = sum(file_bytes(f) != record.train[f.name] for f in train)
    added_val = len(val_source) - len(val) if val_source is not None else 0
    changes = [f"{n} {what}" for n, what in ((added, "file(s) added"), (removed, "training file(s) removed"),
                                             (changed, "training file(s) changed")) if n]
    where = [f"data.source: {', '.join(changes)}"] if changes else []
    where += [f"data.val_source: {added_val} file(s) added"] if added_val else []
    if not where:
        return train, val, val_note, val_kept
    then = ["the data order differs from the original run"] if removed else []
    then += ["changed files are used as they are now"] if changed else []
    then += ["added files are not used (start a new run to train on them)"] if added or added_val else []
    note = (f"i2i: warning: {run}: {'; '.join(where)} since the run started; it goes on with the {len(train)} "
            f"training and {len(val)} validation file(s) it recorded{' that remain' if removed or val_note else ''}; "
            f"{'; '.join(then)}")
    return train, val, "\n".join(filter(None, (note, val_note))), val_kept


def recorded_val_files(record: RecordedSplit, source: list[ImageFile], val_source: list[ImageFile] | None,
                       data: Mapping[str, str], reasons: Mapping[Path, str] | None = None,
                       ) -> tuple[list[ImageFile], str, str]:
    """``(files, kept, note)``: the run's recorded validation files, from what its folders hold
    now (arguments as for :func:`apply_recorded_split`). ``i2i eval RUN`` needs these alone: the
    training files may have gone since.

    A recorded file that is missing, unreadable or changed (another size) is left out rather than
    stopping the run: a deleted validation photo must not cost the training done. ``kept`` is
    then ``"3 of the 4 recorded"`` (``""`` when all are there): the scores are no longer
    comparable with earlier ones, so it is one of the run's scoring settings and the best
    checkpoint is chosen again. ``note`` is a warning line naming the first such file and how many.
    None left is a :class:`~i2i.errors.UserError`."""
    run = record.run or "the run"
    if record.val_separate and val_source is None:
        raise UserError(f"{run}: the run validates on the images of data.val_source, now empty; a resumed run keeps its "
                        "validation images: set data.val_source to their folder, or start a new run")
    if not record.val_separate and val_source is not None:
        raise UserError(f'{run}: the run validates on images of data.source, now data.val_source = "{data["val_source"]}"; '
                        "a resumed run keeps its validation images: leave data.val_source empty, or start a new run")
    val_key = "val_source" if record.val_separate else "source"
    pool = val_source if val_source is not None else source
    by_name = {f.name: f for f in pool}
    problems = {}
    for name, size in record.val.items():
        if name in record.val_unreadable:  # never scored: gone, fixed or still broken, all the same
            continue
        file = by_name.get(name)
        if file is None:
            path = resolve_folder(data[val_key], f"data.{val_key}") / name
            problems[name] = (reasons or {}).get(path) or ("unreadable" if path.exists() else "missing")
        elif (now := file_bytes(file)) != size:
            problems[name] = f"changed: {size} bytes then, {now} now"
    files = [f for f in pool if f.name in record.val and f.name not in problems]  # an undecodable one still there is skipped, and said, again
    if not problems:
        return files, "", ""
    scored = len(record.val) - len(record.val_unreadable & set(record.val))  # what the run scored on
    name, why = next(iter(problems.items()))
    where = (f'{len(problems)} of the run\'s {scored} validation file(s) are missing or changed in data.{val_key} = '
             f'"{data[val_key]}" (first: {name}, {why})')
    if len(problems) >= scored:
        raise UserError(f"{run}: {where}, so none is left to score it on: restore them, or start a new run "
                        "(train.init_from starts one from this run's weights)")
    kept = f"{scored - len(problems)} of the {scored} recorded"
    return files, kept, (f"i2i: warning: {run}: {where}; it validates on the {kept} from here on, so its scores are "
                         "not comparable with earlier ones (restore the files to score as before)")
