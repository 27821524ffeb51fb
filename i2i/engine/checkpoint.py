"""Checkpoints: safetensors for tensors, JSON for the rest, written atomically.

Layout of a run directory's ``checkpoints/``::

    step_000400/                 one complete checkpoint
        generator.safetensors    G (generator_ema.safetensors, discriminator.safetensors too)
        optim_g.safetensors      optimiser tensors; their non-tensor parts in state.json
        rng.safetensors          every random generator's state
        state.json               step, schedules, loss scalers, best metric, data order
        SHA256SUMS               each file's SHA-256 (``sha256sum -c SHA256SUMS`` checks them)
    LATEST, BEST                 the name of the newest / best complete checkpoint

A checkpoint is written into a temporary folder, each file fsynced, then renamed into place,
and only then do LATEST/BEST change (also by atomic rename), so a crash never leaves a
half-written checkpoint behind a pointer. Every file i2i reads back is checked against
SHA256SUMS, so bytes flipped on disk are named rather than trained on (checkpoints written
before i2i kept the sums load unchecked). Nothing is ever unpickled on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load

from ..errors import CheckpointError, CheckpointWriteError, shell_path
from ..messages import say
from ..paths import user_path

FORMAT = "i2i-checkpoint-1"


# -- atomic files -------------------------------------------------------------------------------
def write_atomic(path: Path, data: bytes | TensorFile) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    write_atomic_together({Path(path): data})


def write_atomic_together(files: dict[Path, bytes | TensorFile]) -> None:
    """Replace several files all or none, as far as a full disk goes: each is written to a
    temporary and synced first (what runs out of space), then all are renamed."""
    temporaries: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            temporaries.append((tmp, path))
            try:
                with open(tmp, "wb") as handle:
                    _write_content(handle, data)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                if exc.filename is None:  # a failed write() names no file: say which
                    raise OSError(exc.errno, exc.strerror, str(path)) from exc
                raise
        for tmp, path in temporaries:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temporaries:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    for folder in {path.parent for path in files}:
        _fsync_dir(folder)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
#: the order of safetensors' ``Dtype`` enum: its files list tensors by it (descending), then by name
_RANK = {name: i for i, name in enumerate(["BOOL", "U8", "I8", "I16", "F16", "BF16", "I32", "F32", "F64", "I64"])}


class TensorFile:
    """A safetensors file serialised while it is written, one tensor at a time.

    Why not ``safetensors.torch.save``: it builds the whole file as one ``bytes`` object from
    copies of the tensors, so a checkpoint of G, D and their Adam states briefly doubled the
    memory of training (+1.4 GB for unet_256 on the CPU), above the reference code's peak. The
    bytes are the same as ``safetensors.torch.save``'s (tested), so reading is unchanged.
    Tensors are read when the file is written: write before the next training step.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        unknown = {k: v.dtype for k, v in tensors.items() if v.dtype not in _DTYPES}
        if unknown:
            raise TypeError(f"cannot store tensors of dtype {unknown} in a checkpoint")
        self.tensors = {k: v.detach() for k, v in tensors.items()}
        self.order = sorted(self.tensors, key=lambda k: (-_RANK[_DTYPES[self.tensors[k].dtype]], k))

    def header(self) -> bytes:
        """The safetensors header: its length, then JSON of each tensor's dtype, shape and offsets."""
        meta, offset = {}, 0
        for key in self.order:
            t = self.tensors[key]
            size = t.numel() * t.element_size()
            meta[key] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
            offset += size
        raw = json.dumps(meta, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        return struct.pack("<Q", len(raw)) + raw

    def write_to(self, handle: BinaryIO) -> None:
        """Write the file, copying one tensor at a time to the CPU (the point of this class)."""
        handle.write(self.header())
        for key in self.order:
            t = self.tensors[key].to("cpu").contiguous()
            if t.numel():
                handle.write(t.reshape(-1).view(torch.uint8).numpy().data)

    def __bytes__(self) -> bytes:
        buffer = io.BytesIO()
        self.write_to(buffer)
        return buffer.getvalue()


class _HashingWriter:
    """Passes writes on to ``handle`` and hashes them: the sum costs no second read."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.digest = handle, hashlib.sha256()

    def write(self, chunk: bytes | memoryview) -> None:
        self.digest.update(chunk)
        self.handle.write(chunk)


def _write_content(handle: BinaryIO, data: bytes | TensorFile) -> str:
    """Write ``data``; returns the SHA-256 of what was written."""
    writer = _HashingWriter(handle)
    if isinstance(data, TensorFile):
        data.write_to(writer)  # type: ignore[arg-type]
    else:
        writer.write(data)
    return writer.digest.hexdigest()


#: the file in each checkpoint folder listing its files' SHA-256, in ``sha256sum``'s format
CHECKSUMS = "SHA256SUMS"


def _checksum_lines(sums: dict[str, str]) -> bytes:
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())).encode()


def verify_checksum(path: Path, data: bytes) -> None:
    """Refuse ``data``, read from ``path``, when its folder's SHA256SUMS gives another SHA-256:
    a bit flipped on disk that still parses (a weight changed, not made NaN) loaded without a
    word. A checkpoint from before the sums (no SHA256SUMS) is not checked; SHA256SUMS that
    does not list a file i2i reads is damaged itself (i2i lists every file it writes), so
    checking is not silently off; nor is it when SHA256SUMS is gone from a checkpoint whose
    state.json says it was written with one."""
    try:
        listed = (path.parent / CHECKSUMS).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        if _written_with_checksums(path.parent):
            raise CheckpointError(f"{path.parent / CHECKSUMS}: missing, though this checkpoint was written with it (its "
                                  f"state.json says so), so its files cannot be checked: it is damaged; {_EARLIER}") from None
        return
    except OSError as exc:
        raise CheckpointError(f"{path.parent / CHECKSUMS}: cannot be read ({exc.strerror or exc}); "
                              f"{_EARLIER}") from None
    expected = listed_checksums(listed).get(path.name)
    if expected is None:
        raise CheckpointError(f"{path.parent / CHECKSUMS}: lists no SHA-256 for {path.name}, as i2i writes one for "
                              f"each file: it is damaged (or was edited); {_EARLIER}")
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"{path}: its bytes do not match the SHA-256 that {CHECKSUMS} lists for it: the file (or "
                              f"{CHECKSUMS}) is damaged; {_EARLIER}")


def _written_with_checksums(folder: Path) -> bool:
    """Whether ``folder``'s state.json says SHA256SUMS was written beside it (every checkpoint
    since the field was added; older ones, without it, are read unchecked)."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("checksums") == CHECKSUMS


#: what to do about a damaged checkpoint file (a checksum that differs, values i2i never saves)
_EARLIER = ("use an earlier checkpoint (give its folder, checkpoints/step_N, or name it in checkpoints/LATEST to resume "
            "from it)")


def listed_checksums(text: str) -> dict[str, str]:
    """``name -> SHA-256`` from SHA256SUMS' lines (``sha256sum``'s format: a ``*`` before a
    name marks binary mode)."""
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing, truncated or foreign file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file is missing")
    try:
        data = path.read_bytes()
        tensors = st_load(data)
    except (SafetensorError, ValueError, OSError, Exception) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason}); the checkpoint is truncated or not from i2i") from None
    verify_checksum(path, data)
    return tensors


def load_weights(module: torch.nn.Module, file: Path, network: str, overrides: Iterable[str] = ()) -> None:
    """Load a safetensors file into ``module``. Weights of another network are one line naming
    the first difference (torch's message starts with a header line only) and, when ``--set``
    overrides changed the network (``generator.*``, ``discriminator.*``, ``task.*``), those."""
    tensors = read_tensors(file)
    refuse_nonfinite(tensors, file)
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        detail = state_mismatch(module.state_dict(), tensors) or _torch_detail(exc)
        changed = [o for o in overrides if o.split("=", 1)[0].strip().split(".", 1)[0] in _NETWORK_SECTIONS]
        hint = (f"; the override(s) {', '.join(f'--set {o}' for o in changed)} may be why: resume without them"
                if changed else "")
        raise CheckpointError(f"{file}: does not match {network} ({detail}){hint}") from None


def refuse_nonfinite(tensors: dict[str, torch.Tensor], file: Path) -> None:
    """Weights or optimiser state holding NaN or infinite values: i2i never saves such (a
    checkpoint is refused first), so the file's bytes were damaged."""
    broken = next((key for key, tensor in tensors.items() if tensor.is_floating_point() and not tensor.isfinite().all()), None)
    if broken is not None:
        raise CheckpointError(f"{file}: {broken} holds NaN or infinite values, which i2i never saves: the file is damaged; "
                              f"{_EARLIER}")


#: recipe tables whose values shape the networks
_NETWORK_SECTIONS = ("generator", "discriminator", "task")


def state_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """The first difference between a network's state dict and a checkpoint's tensors, and how
    many more there are; empty when they match in keys and shapes."""
    differences = [f"size mismatch for {key}: checkpoint {list(found[key].shape)}, network {list(value.shape)}"
                   for key, value in expected.items() if key in found and found[key].shape != value.shape]
    differences += [f"missing key {key} (in the network, not in the checkpoint)" for key in expected if key not in found]
    differences += [f"unexpected key {key} (in the checkpoint, not in the network)" for key in found if key not in expected]
    if not differences:
        return ""
    more = len(differences) - 1
    return differences[0] + (f"; {more} more difference(s)" if more else "")


def _torch_detail(exc: RuntimeError) -> str:
    """The first line of ``load_state_dict``'s message that says something concrete."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    concrete = [line for line in lines if not line.startswith("Error(s) in loading state_dict")]
    return (concrete or lines or [type(exc).__name__])[0]


def read_json(path: Path) -> dict:
    """Load a JSON file of a checkpoint; a missing or truncated one is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file is missing")
    try:
        data = path.read_bytes()
        value = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); the checkpoint is truncated or not from i2i") from None
    verify_checksum(path, data)
    return value


# -- optimiser state ----------------------------------------------------------------------------
def split_state(state: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Replace tensors in a nested state dict by references, returning (json_part, tensors)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node
            return {"__tensor__": path}
        if isinstance(node, dict):
            return {"__dict__": [[_key_json(k), walk(v, f"{path}.{k}")] for k, v in node.items()]}
        if isinstance(node, (list, tuple)):
            return {"__list__" if isinstance(node, list) else "__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(node)]}
        return node

    return walk(state, prefix or "s"), tensors


def join_state(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state`."""
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__dict__" in node:
            return {_key_from_json(k): join_state(v, tensors) for k, v in node["__dict__"]}
        if "__list__" in node:
            return [join_state(v, tensors) for v in node["__list__"]]
        if "__tuple__" in node:
            return tuple(join_state(v, tensors) for v in node["__tuple__"])
    return node


def _key_json(key: Any) -> Any:
    return {"int": key} if isinstance(key, int) else key


def _key_from_json(key: Any) -> Any:
    return key["int"] if isinstance(key, dict) else key


def run_folder_gone(run_dir: Path, what: str) -> CheckpointWriteError:
    """The error for a run folder moved or deleted while its run trained, ``what`` (a checkpoint,
    a sample grid) not written: not made again there, which would split the run."""
    return CheckpointWriteError(f"{run_dir}: the run folder is gone (moved or deleted while the run trained), so "
                                f"{what} is not written; if it was moved, resume it where it is now: "
                                "i2i run --resume NEW_PLACE")


# -- checkpoint directories ---------------------------------------------------------------------
class CheckpointStore:
    """The ``checkpoints/`` folder of a run: writing, pointers, pruning, reading."""

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / "checkpoints"

    def write(self, step: int, files: dict[str, bytes | TensorFile], *, keep: int, best: bool) -> Path:
        """Write one checkpoint atomically; update LATEST (and BEST); prune old ones."""
        run_dir = self.root.parent
        if not run_dir.is_dir():  # made again here, it split the run: its recipe and log went with the move
            raise run_folder_gone(run_dir, "this checkpoint")
        self.root.mkdir(exist_ok=True)
        name = step_name(step)
        final = self.root / name
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            tmp.mkdir()
            sums = {}
            for filename, data in {**files, CHECKSUMS: b""}.items():
                with open(tmp / filename, "wb") as handle:  # the sums last: they list the others
                    sums[filename] = _write_content(handle, _checksum_lines(sums) if filename == CHECKSUMS else data)
                    handle.flush()
                    os.fsync(handle.fileno())
        except OSError as exc:  # a full disk, a quota, a folder made read-only mid-run
            shutil.rmtree(tmp, ignore_errors=True)
            kept = self.pointer("LATEST")
            raise CheckpointWriteError(
                f"{final}: cannot write this checkpoint ({exc.strerror or exc}); "
                + (f"the last one, {kept.name}, is intact" if kept else "no earlier checkpoint exists")
            ) from None
        _fsync_dir(tmp)
        old = None
        try:
            if final.exists():  # the same step written again: swapped by renames, removed only once replaced
                old = self.root / f".old-{name}-{os.getpid()}"
                os.replace(final, old)
            os.replace(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointWriteError(f"{final}: cannot put this checkpoint in place ({exc.strerror or exc})") from None
        _fsync_dir(self.root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        write_atomic(self.root / "LATEST", name.encode())
        if best:
            write_atomic(self.root / "BEST", name.encode())
        self.prune(keep)
        return final

    def pointer(self, which: str) -> Path | None:
        """The checkpoint LATEST or BEST names; None when the file is absent, empty or names
        no checkpoint folder."""
        name = self.pointer_text(which)
        if not is_step_name(name):
            return None
        target = self.root / name
        return target if target.is_dir() else None

    def pointer_text(self, which: str) -> str:
        """What the pointer file holds (stripped); empty when it is absent or unreadable."""
        try:
            return (self.root / which).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return ""

    def newest_complete(self) -> Path | None:
        """The newest ``step_*`` folder holding a state.json and generator weights.

        Folders only get a ``step_`` name once every file is written (see :meth:`write`), so
        this is what LATEST would name had it been written.
        """
        steps = checkpoint_folders(self.root)[::-1]
        return next((p for p in steps if (p / "state.json").is_file() and (p / "generator.safetensors").is_file()), None)

    def restore_swapped(self) -> None:
        """Finish the swap of a step written again (:meth:`write`) that a killed process left
        half done: its old copy ``.old-step_N-PID`` goes back in place when ``step_N`` is
        missing, and is removed when the new one is there. Only a process that writes the run
        calls this (its writes, its resume): a reader could land inside a live swap."""
        for old in self.root.glob(".old-step_*"):
            final = self.root / old.name[len(".old-"):].rsplit("-", 1)[0]
            with contextlib.suppress(OSError):  # a read-only run folder is read as it is
                if final.exists():
                    shutil.rmtree(old)
                else:
                    os.replace(old, final)

    def remove_own_partials(self) -> None:
        """Remove this process's unfinished checkpoint writes (a second Ctrl-C stopped one): each
        can be as large as a checkpoint, and a run with none finished was never resumed to clean
        them. Another process's are left alone: it may still be writing."""
        for partial in self.root.glob(f".tmp-step_*-{os.getpid()}"):
            shutil.rmtree(partial, ignore_errors=True)

    def prune(self, keep: int) -> None:
        """Keep the :meth:`protected` checkpoints and the ``keep`` newest others; remove the
        partial folders of writes a killed process never finished (each can be as large as a
        checkpoint, and a run on preemptible machines may be killed mid-write many times)."""
        for partial in self.root.glob(".tmp-step_*"):
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
        self.restore_swapped()
        protected = self.protected()
        others = [p for p in checkpoint_folders(self.root) if p.name not in protected]
        for old in others[: max(0, len(others) - keep)]:
            shutil.rmtree(old, ignore_errors=True)

    def protected(self) -> set[str]:
        """The checkpoints pruning never removes: LATEST's, BEST's, the best that LATEST's own
        record names (a BEST file deleted or replaced by hand must not cost the best weights),
        and those a retired pointer (``BEST-until-step_N``, see :meth:`retire_best`) names."""
        names = {self.pointer_text(pointer.name) for pointer in self.root.glob("BEST*")}
        latest = self.pointer("LATEST")
        if latest is not None:
            names.add(latest.name)
            with contextlib.suppress(CheckpointError, KeyError, AttributeError, TypeError, ValueError):
                names.add(step_name(int(read_state(latest)["best"]["step"])))
        return {name for name in names if name}

    def agree_best(self, best: dict, set_aside: Iterable[str] = ()) -> None:
        """Point BEST at the checkpoint a resumed run's record names as its best (``best``, as
        its state.json holds it), when that folder is there and BEST names another or none (a
        BEST deleted, edited, or left naming a checkpoint of steps this resume trains again)."""
        if "step" not in best:
            return
        name = step_name(int(best["step"]))
        before = self.pointer_text("BEST")
        if before == name or not (self.root / name).is_dir():
            return
        try:
            write_atomic(self.root / "BEST", name.encode())
        except OSError as exc:  # a folder in its place
            _note(f"{self.root / 'BEST'}: cannot point it at {name}, the run's best ({exc.strerror or exc}); "
                  f"i2i eval {self.root / name} scores that one")
            return
        was = (f"named {before}, set aside with the later checkpoints" if before in set(set_aside) else
               f"named {before[:60]}" if before else "was missing")
        _note(f"{self.root / 'BEST'} {was}; the run's record names {name} its best ({best.get('metric', 'score')} "
              f"{best.get('value', float('nan')):.4g}), so BEST names it again")

    def retire_best(self, until: str, best: dict) -> tuple[str, str]:
        """Keep the best that a resumed checkpoint's record names (``best``) under a pointer of
        its own, ``BEST-until-<until>`` (``-2``... when that exists), so its checkpoint is never
        pruned and i2i eval can still be pointed at it; BEST is removed, to be chosen again.
        Returns the checkpoint kept and the pointer's name (``""`` when the record names none
        that is here)."""
        name = step_name(int(best["step"])) if "step" in best else ""
        if (self.root / "BEST").is_file():
            (self.root / "BEST").unlink()
        if not name or not (self.root / name).is_dir():
            return "", ""
        pointer = self.root / f"BEST-until-{until}"
        number = 2
        while pointer.exists():  # an earlier retirement at this step: never replaced
            pointer = self.root / f"BEST-until-{until}-{number}"
            number += 1
        write_atomic(pointer, name.encode())
        return name, pointer.name

    def retired_bests(self) -> list[tuple[str, dict]]:
        """The retired bests (``BEST-until-*`` pointers, oldest first) as (pointer name, the
        best record of the checkpoint it names), where that checkpoint is here and its record
        names itself the best: a resume that scores as one of them did can take it back."""
        found = []
        for pointer in sorted(self.root.glob("BEST-until-*"), key=lambda p: p.stat().st_mtime_ns):
            name = self.pointer_text(pointer.name)
            if not name or not (self.root / name).is_dir():
                continue
            with contextlib.suppress(CheckpointError, OSError, KeyError, AttributeError, TypeError, ValueError):
                record = read_state(self.root / name)["best"]
                if step_name(int(record["step"])) == name:
                    found.append((pointer.name, dict(record)))
        return found

    def set_aside_later(self, checkpoint: Path) -> tuple[list[str], Path | None]:
        """Move the ``step_*`` folders later than ``checkpoint`` (which a resume trains from)
        into ``later-than-<its name>/``, so the steps trained again write no checkpoint over
        them: a LATEST pointed back by hand once replaced them, and the best among them, one by
        one. Returns their names and where they went."""
        later = [p for p in checkpoint_folders(self.root) if _step_of(p) > _step_of(checkpoint)]
        if not later:
            return [], None
        aside = self.root / f"later-than-{checkpoint.name}"
        number = 2
        while aside.exists():
            aside = self.root / f"later-than-{checkpoint.name}-{number}"
            number += 1
        aside.mkdir()
        for folder in later:
            os.replace(folder, aside / folder.name)
        moved = {p.name for p in later}
        for pointer in self.root.glob("BEST-until-*"):  # a retired best among them goes with them
            if pointer.is_file() and self.pointer_text(pointer.name) in moved:
                os.replace(pointer, aside / pointer.name)
        _fsync_dir(self.root)
        return [p.name for p in later], aside


def aside_path(path: Path) -> Path:
    """Where a damaged run file is set aside: ``NAME.unreadable``, or ``NAME.unreadable-2``, ...
    when an earlier one is there (a second damage must not replace the first's copy)."""
    aside, number = path.with_name(path.name + ".unreadable"), 2
    while aside.exists():
        aside, number = path.with_name(f"{path.name}.unreadable-{number}"), number + 1
    return aside


def set_aside(path: Path) -> str:
    """Move a damaged run file to :func:`aside_path`; says where, for the note about it (a
    read-only run folder leaves it as it is)."""
    aside = aside_path(path)
    try:
        path.replace(aside)
    except OSError:
        return "left as it is"
    return f"moved to {aside.name}"


def is_step_name(name: str) -> bool:
    """Whether ``name`` is a checkpoint folder's, ``step_`` and digits: a user's copy beside
    them (``step_0000010.bak``, ``step_5-good``) is theirs, never pruned nor moved."""
    return re.fullmatch(r"step_[0-9]+", name) is not None


def checkpoint_folders(root: Path) -> list[Path]:
    """The checkpoint folders in ``root``, oldest step first (by number: a step past 9,999,999
    has eight digits, which sort first as text)."""
    try:
        folders = [p for p in root.iterdir() if is_step_name(p.name) and p.is_dir()]
    except OSError:
        return []
    return sorted(folders, key=lambda p: int(p.name[len("step_"):]))


def refuse_resuming_imported(checkpoint: Path, state: dict | None = None) -> None:
    """An ``i2i import-weights`` run holds a generator's weights only: refused as a resume, with
    the fine-tuning that uses them (before its recipe's data is read: the import's placeholder
    ``data.source`` failed first, with a data error)."""
    if state is None:
        try:
            state = read_state(checkpoint)
        except (OSError, ValueError, CheckpointError):
            return  # damage is said where the checkpoint is loaded
    if isinstance(state, dict) and state.get("weights_only"):
        raise CheckpointError(f"{checkpoint}: holds imported weights only (no optimiser or data state), so it cannot be "
                              f"resumed; fine-tune them in a new run instead: i2i run RECIPE --set "
                              f"train.init_from={shell_path(run_dir_of(checkpoint))}")


def step_name(step: int) -> str:
    """A checkpoint folder's name: ``step_0000040``."""
    return f"step_{step:07d}"


def find_checkpoint(path: str | Path, which: str = "LATEST") -> Path:
    """Resolve a run directory or checkpoint directory to a checkpoint directory.

    ``best`` on a run without a BEST checkpoint uses the latest one, and a LATEST that is
    missing, empty or names a deleted folder falls back to the newest complete ``step_*``
    folder; both say so once on stderr, so a user knows which weights were used.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected the path of a run folder or a checkpoint folder, not {type(path).__name__}")
    path = user_path(path)  # "~/runs/x" from a program, as the shell would expand it
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    if path.name == "checkpoints" and (path.parent / "recipe.toml").is_file():  # the run's own checkpoints/ folder
        path = path.parent
    if path.is_file() and path.name in ("LATEST", "BEST") and path.parent.name == "checkpoints":  # a pointer
        named = CheckpointStore(path.parent.parent).pointer(path.name)
        shown = f"{named} for that checkpoint, or " if named is not None else ""
        raise CheckpointError(f"{path}: a pointer file; give {shown}the run folder {path.parent.parent}"
                              + (_best_said() if path.name == "BEST" else ""))
    if path.is_file():  # a file of a run (its recipe.toml) or of a checkpoint (generator.safetensors)
        folder = path.parent if (path.parent / "state.json").is_file() or (path.parent / "recipe.toml").is_file() else None
        kind = "a checkpoint" if folder is not None and (folder / "state.json").is_file() else "a run"
        raise CheckpointError(f"{path}: a file; give {kind}'s folder{f' ({folder})' if folder is not None else ''}"
                              if folder is not None else f"{path}: a file, not a run folder or a checkpoint folder")
    if (path / "state.json").is_file():
        if which.upper() == "BEST":  # one checkpoint has no best: say whose weights these are
            _note(f"{path} is one checkpoint, so 'best' does not apply: using it; for the run's best, give its "
                  f"run folder{f' ({path.parent.parent})' if path.parent.name == 'checkpoints' else ''}")
        return path
    store = CheckpointStore(path)
    best_damage = None
    if which.upper() == "BEST":
        best = store.pointer("BEST")
        best_damage = checkpoint_damage(best) if best is not None else None
        newest = store.pointer("LATEST") or store.newest_complete()
        recorded = _recorded_best(newest) if newest is not None else None
        if best is not None and best_damage is None and recorded not in (None, best) and checkpoint_damage(recorded) is None:
            _note(f"{path}: checkpoints/BEST names {best.name}, and the run's record names {recorded.name} its best (as a "
                  f"resume will point BEST again); using {recorded.name}")
            return recorded
        if best is not None and best_damage is None:
            return best
    latest = store.pointer("LATEST")
    found = latest or store.newest_complete()
    unnamed = _written_after_latest(store, latest)
    if unnamed is not None:
        _note(f"{store.root / 'LATEST'} names {latest.name}, but {unnamed.name} was written after it, complete (the "
              f"run stopped, killed say, before naming it there); using {unnamed.name}")
        found = unnamed
    if found is None:
        if not (path / "recipe.toml").is_file():
            held = checkpoint_folders(path)  # a resume's later-than-step_N/, say: checkpoints set aside
            hint = (f"; it holds checkpoints ({', '.join(p.name for p in held[-3:])}): give one of them, e.g. "
                    f"{held[-1]}" if held else "")
            raise CheckpointError(f"{path}: not an i2i run directory (no recipe.toml or checkpoints/){hint}")
        if (store.root / "LATEST").is_file():
            raise CheckpointError(f"{store.root / 'LATEST'}: {_pointer_problem(store, 'LATEST')}, and no other "
                                  f"complete step_* checkpoint is in {store.root}")
        if store.root.exists() and not store.root.is_dir():
            raise CheckpointError(f"{store.root}: a file where the run keeps its folder of checkpoints; move it away (a "
                                  "run with no checkpoint folder has no checkpoint to open)")
        from .run_lock import run_folder_locked

        with run_folder_locked(path):  # a run training now, in another process: said so, not "start it again"
            pass
        partial = sorted(store.root.glob(".tmp-step_*"))
        gone = not store.root.exists() and _logged_a_checkpoint(path)
        why = (f"its only one, {partial[-1].name}, was never finished (the process stopped while writing it)"
               if partial else f"{store.root} is gone, though its metrics.jsonl records checkpoints written: restore it "
               "from a copy if you have one" if gone else
               f"nothing in {store.root}: it is still training, or stopped before its first")
        raise CheckpointError(f"{path}: this run has no checkpoint{'' if gone else ' yet'} ({why}); to start it again: "
                              f"i2i run {shell_path(path / 'recipe.toml')} (Python: "
                              f"i2i.train({str(path / 'recipe.toml')!r})), which trains into a new folder beside "
                              f"it, as runs are never overwritten; {path} holds only its logs")
    if latest is None:
        problem = _pointer_problem(store, "LATEST") if (store.root / "LATEST").is_file() else "is missing"
        _note(f"{store.root / 'LATEST'} {problem}; using the newest complete checkpoint, {found.name}")
    damage = checkpoint_damage(found)
    if damage is not None:  # a disk error or a hand edit: the newest intact one beside it, rather than no run at all
        older = next((p for p in checkpoint_folders(store.root)[::-1]
                      if _step_of(p) < _step_of(found) and checkpoint_damage(p) is None), None)
        if older is None:
            raise CheckpointError(f"{found}: damaged ({damage}), and no older intact checkpoint is in {store.root}")
        _note(f"{found} is damaged ({damage}); using {older.name}, the newest intact checkpoint")
        found = older
    if which.upper() == "BEST":
        best_text = store.pointer_text("BEST")
        recorded = _recorded_best(found)
        gone = _recorded_best_name(found) if recorded is None else ""
        why = (f"checkpoints/BEST names {best_text}, which is damaged ({best_damage})" if best_damage else
               f"checkpoints/BEST names {best_text}, which is missing" if best_text else
               "checkpoints/BEST is missing" if recorded is not None else
               f"the best the run recorded, {gone}, is no longer in checkpoints/" if gone else
               "no validation score was saved yet")
        if recorded is not None and recorded != store.pointer("BEST") and checkpoint_damage(recorded) is None:
            _note(f"{path}: {why}; using {recorded.name}, the best that the latest checkpoint's record names")
            return recorded
        _note(f"{path} has no best checkpoint ({why}); using the latest, step {_step_of(found)}")
    return found


def _recorded_best(checkpoint: Path) -> Path | None:
    """The checkpoint folder a checkpoint's state.json names as the run's best, when it is there."""
    name = _recorded_best_name(checkpoint)
    best = checkpoint.parent / name if name else None
    return best if best is not None and best.is_dir() else None


def _recorded_best_name(checkpoint: Path) -> str:
    """The name of the checkpoint a checkpoint's state.json names as the run's best, or ``""``."""
    try:
        return step_name(int(read_state(checkpoint)["best"]["step"]))
    except (CheckpointError, KeyError, TypeError, ValueError):
        return ""


def _written_after_latest(store: CheckpointStore, latest: Path | None) -> Path | None:
    """A complete, intact checkpoint newer than the one LATEST names that was written after
    LATEST was (a run killed between a checkpoint's rename and LATEST's update: its steps were
    trained again, and the newer one moved aside as if the user had chosen the older); None
    when there is none. LATEST written after it (pointed back by hand) is left as it is."""
    newest = store.newest_complete()
    if latest is None or newest is None:
        return None
    steps = _step_of(newest), _step_of(latest)
    if not all(isinstance(step, int) for step in steps) or steps[0] <= steps[1]:
        return None
    try:
        if (newest / "state.json").stat().st_mtime_ns <= (store.root / "LATEST").stat().st_mtime_ns:
            return None
    except OSError:
        return None
    return newest if checkpoint_damage(newest) is None else None


def checkpoint_damage(checkpoint: Path) -> str | None:
    """What is wrong with a checkpoint folder's files, read no further than their headers
    (``state.json`` not an i2i state, a safetensors file truncated or not one), or None."""
    try:
        state = read_state(checkpoint)
    except CheckpointError as exc:  # the file named: 'state.json is missing', 'state.json: its bytes ...'
        said = str(exc).split(";")[0]
        for prefix, name in ((f"{checkpoint / 'state.json'}: ", "state.json: "), (f"{checkpoint / CHECKSUMS}: ",
                                                                                  f"{CHECKSUMS}: ")):
            said = said.replace(prefix, name)
        return said.replace("state.json: checkpoint file is missing", "state.json is missing")
    needed = ["generator.safetensors"]
    if not state.get("weights_only"):  # what a resume reads, as a truncated one of them is damage too
        needed += ["rng.safetensors", *(f"optim_{n}.safetensors" for n in "gd" if f"optim_{n}" in state),
                   *(["discriminator.safetensors"] if "optim_d" in state else [])]
    try:  # every file i2i wrote there (the EMA's weights, which a load would replace by G's unsaid)
        needed += [name for name in listed_checksums((checkpoint / CHECKSUMS).read_text(errors="replace"))
                   if name not in needed and name != "state.json"]
    except OSError:  # no sums (an older checkpoint), or unreadable: the read says so
        pass
    for name in needed:
        if not (checkpoint / name).is_file():
            return f"{name} is {'a folder, not a file' if (checkpoint / name).is_dir() else 'missing'}"
    for file in sorted(checkpoint.glob("*.safetensors")):
        problem = _safetensors_damage(file)
        if problem:
            return f"{file.name} {problem}"
    return None


def _safetensors_damage(path: Path) -> str | None:
    """Whether a safetensors file's header reads and its tensors' bytes are all there."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(9)
            length = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
            if len(head) == 9 and head[8:] != b"{":  # its header is JSON: bytes of another kind of file
                return "is not a safetensors file"
            if length < 0 or 8 + length > size:
                return "is truncated"
            handle.seek(8)
            header = json.loads(handle.read(length))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return "is not a readable safetensors file"
    return "is truncated" if 8 + length + end > size else None


def _logged_a_checkpoint(run_dir: Path) -> bool:
    """Whether the run's ``metrics.jsonl`` records an evaluation, which a checkpoint always
    follows: its checkpoints/ then existed, and a message saying it never had one would mislead."""
    try:
        with open(run_dir / "metrics.jsonl", encoding="utf-8", errors="replace") as handle:
            return any('"type": "eval"' in line for line in handle)
    except OSError:
        return False


def _pointer_problem(store: CheckpointStore, which: str) -> str:
    text = store.pointer_text(which)
    if not text:
        return "is empty"
    target = store.root / text
    if not target.exists():
        return f"names {text[:60]}, which does not exist"
    if target.is_dir() and not is_step_name(text):  # a copy of one (step_0000009.bak): give it as the checkpoint itself
        return (f"names {text[:60]}, which is not one of i2i's step_N folders (a copy of one is read when given as "
                f"the checkpoint itself: {target})")
    return f"names {text[:60]}, which is not a checkpoint folder"


def _step_of(checkpoint: Path) -> int | str:
    """The step a checkpoint holds (from its folder name, which always matches state.json)."""
    digits = checkpoint.name.removeprefix("step_")
    return int(digits) if digits.isdigit() else checkpoint.name


def _best_said() -> str:
    """How the user asks for a run's best checkpoint: an option, or ``i2i.load``'s argument."""
    from ..errors import called_from_the_command_line

    return " with --checkpoint best" if called_from_the_command_line() else ' (which="best")'


def _note(message: str) -> None:
    say(f"i2i: note: {message}")


def read_state(checkpoint: Path) -> dict:
    """A checkpoint's ``state.json``, refused unless its ``format`` is this i2i's :data:`FORMAT`."""
    checkpoint = Path(checkpoint)
    state = read_json(checkpoint / "state.json")
    if not isinstance(state, dict):
        raise CheckpointError(f"{Path(checkpoint) / 'state.json'}: not an i2i checkpoint's state (a JSON {type(state).__name__}, "
                              "not an object); the checkpoint is damaged")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{checkpoint / 'state.json'}: not an i2i checkpoint (format {state.get('format')!r}, expected {FORMAT!r})")
    return state


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint directory belongs to (``checkpoints/step_N``, or one a
    resume set aside in ``checkpoints/later-than-step_M/step_N``)."""
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name.startswith("later-than-") and checkpoint.parent.parent.name == "checkpoints":
        return checkpoint.parent.parent.parent
    return checkpoint.parent.parent
