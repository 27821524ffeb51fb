"""Recipes: TOML files that say what to train, checked against a closed schema.

:func:`load_recipe` is the way in: read the TOML, apply ``--set`` overrides, :func:`validate`
the fixed keys (their types and defaults are in :data:`SCHEMA`), then :func:`check_components`.
Component tables (``task``, ``generator``, ``discriminator``, each ``losses.<label>``) hold
``name`` plus options that the named component declares; those are checked once plugins are
loaded. An error names the file and key, or the ``--set`` the value came from.
:func:`build_component` builds what a table names; :func:`dumps_toml` writes the resolved
recipe a run saves.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import math
import numbers
import os
import re
import sys
import typing
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import (PluginError, RecipeError, UnknownComponentError, UserError, did_you_mean, exception_line,
                     shell_path)
from .messages import say
from .options import describe_type, format_value, matches_type, representable
from .paths import user_path

if TYPE_CHECKING:
    from .registry import Registry


@dataclass(frozen=True)
class Field:
    """A fixed recipe key: its type, default and an optional range check."""

    type: Any
    default: Any
    doc: str
    check: Callable[[Any], bool] | None = None
    expect: str = ""


def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


def _fraction(v):
    return 0 <= v < 1


def names_a_new_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` ends in a folder name of its own: ``.``, ``..`` and ``""`` name
    folders that already exist, and a run never writes into one."""
    return user_path(path, "output.dir").name not in ("", ".", "..")


#: What a run folder must be, for messages (output.dir and --out).
RUN_FOLDER_EXPECTED = "a name for the run's own new folder, e.g. 'runs/gray2color' (i2i never writes into an existing folder)"


OPTIM = {
    "name": Field(Literal["adam", "adamw"], "adam", "optimiser"),
    "lr": Field(float, 2e-4, "learning rate", _positive, "a number > 0"),
    "betas": Field(tuple[float, float], [0.5, 0.999], "Adam betas (pix2pix uses 0.5, 0.999)",
                   lambda v: all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    "weight_decay": Field(float, 0.0, "weight decay (decoupled for adamw)", _non_negative, "a number >= 0"),
    "clip_grad_norm": Field(float, 0.0, "clip gradients to this total norm; 0 = off", _non_negative, "a number >= 0"),
    "schedule": Field(Literal["constant", "linear", "cosine"], "constant",
                      "learning-rate schedule after warm-up (linear = pix2pix's decay to 0)"),
    "decay_start": Field(float, 0.5, "linear: fraction of training after which the LR decays",
                         lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "warmup_steps": Field(int, 0, "steps of linear LR warm-up", _non_negative, "an integer >= 0"),
}

#: The largest crop or resize side: 16384 px is past any training crop in the field and still
#: far from the sizes that overflow torch's interpolation (a side of 10^5 px did)
MAX_PIXELS = 16384
#: DataLoader processes beyond a few per core only cost memory; hundreds were started, and
#: orphaned when the run was killed
MAX_WORKERS = 64
#: train.steps beyond any run (a schedule over 10**30 steps never moves); train.d_steps beyond
#: any GAN's (a million discriminator steps made step 1 last hours, a stop waiting on it)
MAX_STEPS = 10**12
MAX_D_STEPS = 100

SCHEMA: dict[str, dict[str, Field]] = {
    "task": {},
    "data": {
        "source": Field(str, "sample", "'sample' (photos shipped with i2i) or a folder of images",
                        lambda v: v.strip() != "", 'a folder of images, or "sample" for the photos shipped with i2i'),
        "size": Field(int, 256, "training crop size in pixels", lambda v: 8 <= v <= MAX_PIXELS, f"an integer from 8 to {MAX_PIXELS}"),
        "val_fraction": Field(float, 0.2, "share of the files held out for validation",
                              lambda v: 0 <= v < 1, "a number in [0, 1)"),
        "pair_source": Field(str, "", "for task 'paired': a folder holding each pair's other image under the name of its "
                                      "image in data.source ('' = pairs are A|B files)"),
        "val_source": Field(str, "", "a separate folder of validation images ('' = split data.source)"),
        "val_pair_source": Field(str, "", "data.pair_source for data.val_source"),
        "cache_gb": Field(float, 4.0, "decode into a uint8 cache on the device when it fits in this many GB",
                          _non_negative, "a number >= 0"),
        "resize": Field(int, 0, "scale each image so its shorter side is this many px before cropping "
                              "(the reference's load_size); 0 = keep each image's size", lambda v: 0 <= v <= MAX_PIXELS,
                        f"an integer from 0 to {MAX_PIXELS}"),
        "upscale_small": Field(bool, False, "upscale images smaller than data.size instead of failing"),
        "flip": Field(bool, True, "random horizontal flips"),
        "rotate": Field(bool, False, "random 90-degree rotations"),
        "workers": Field(int, 2, "DataLoader workers when streaming (no cache)", lambda v: 0 <= v <= MAX_WORKERS,
                         f"an integer from 0 to {MAX_WORKERS}"),
    },
    "generator": {},
    "discriminator": {
        "conditional": Field(bool, True, "D also sees the generator's input (pix2pix); ignored when the input is not an image"),
    },
    "losses": {},
    "train": {
        "steps": Field(int, 1000, "generator steps", lambda v: 1 <= v <= MAX_STEPS,
                       f"an integer from 1 to {MAX_STEPS} (a million steps a day for 2,700 years)"),
        "batch_size": Field(int, 1, "images per step (per process)", _positive, "an integer >= 1"),
        "device": Field(str, "auto", "auto | cpu | cuda | cuda:N | mps",
                        lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v) is not None,
                        "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
        "seed": Field(int, 0, "seed for weights, data order, crops and noise", lambda v: 0 <= v < 2**32,
                      "a whole number from 0 to 4294967295"),
        "precision": Field(Literal["auto", "fp32", "bf16", "fp16"], "auto",
                           "auto = bf16 autocast on CUDA GPUs that support it and on CPUs with AMX, else fp32"),
        "ema": Field(float, 0.0, "decay of an EMA copy of G used for evaluation and export; 0 = off",
                     _fraction, "a number in [0, 1)"),
        "ema_warmup": Field(bool, False, "let the EMA's decay grow as min(ema, (1 + step) / (10 + step)), so it "
                            "follows G early in the run rather than stay near the initial weights"),
        "d_steps": Field(int, 1, "discriminator steps per generator step", lambda v: 1 <= v <= MAX_D_STEPS,
                         f"an integer from 1 to {MAX_D_STEPS} (WGAN's critic takes 5)"),
        "g_warmup_steps": Field(int, 0, "steps of reconstruction losses only before the adversarial terms join",
                                _non_negative, "an integer >= 0"),
        "on_nonfinite": Field(Literal["stop", "skip"], "stop", "what to do when a loss is NaN or infinite"),
        "compile": Field(bool, False, "torch.compile the networks"),
        "channels_last": Field(Union[bool, Literal["auto"]], "auto",
                               "use the channels_last memory format: 'auto' = on CUDA GPUs (faster there), off on the CPU (slower there)"),
        "cuda_graphs": Field(Union[bool, Literal["auto"]], "auto",
                             "replay each training step as one CUDA graph: 'auto' = on CUDA where the run allows it"),
        "threads": Field(Union[int, Literal["auto"]], "auto",
                         "CPU threads when training on the CPU: 'auto' = torch's count, fewer while other programs keep cores busy",
                         lambda v: v == "auto" or v >= 1, "'auto' or an integer >= 1"),
        "sync_bn": Field(bool, False, "synchronise batch norm across processes"),
        "init_from": Field(str, "", "start from the weights of this run folder (its latest checkpoint) or "
                                    "checkpoints/step_N folder, to fine-tune it; '' = fresh weights"),
        "callbacks": Field(list[str], [], "callbacks to attach, by registered name"),
        "g": OPTIM,
        "d": OPTIM,
    },
    "eval": {
        "every": Field(int, 0, "evaluate every N steps (0 = only at the end)", _non_negative, "an integer >= 0"),
        "crop": Field(int, 256, "centre crop of validation images in px (0 = whole image)",
                      lambda v: v == 0 or 8 <= v <= MAX_PIXELS, f"0 (whole images) or an integer from 8 to {MAX_PIXELS}"),
        "batch_size": Field(int, 4, "validation batch size", _positive, "an integer >= 1"),
        "max_images": Field(int, 0, "evaluate at most this many validation images (0 = all)", _non_negative, "an integer >= 0"),
        "metrics": Field(list[str], [], "extra metrics beyond the task's own, by registered name"),
        "best_metric": Field(str, "", "the metric whose score picks the best checkpoint ('' = the task's main metric)"),
    },
    "output": {
        "dir": Field(str, "runs/run", "run directory; a new one is chosen if it exists", names_a_new_folder,
                     RUN_FOLDER_EXPECTED),
        "log_every": Field(int, 50, "log losses every N steps", _positive, "an integer >= 1"),
        "sample_every": Field(int, 0, "write a sample grid every N steps (0 = at evaluations)", _non_negative, "an integer >= 0"),
        "checkpoint_every": Field(int, 0, "write a checkpoint every N steps (0 = at evaluations and the end)", _non_negative, "an integer >= 0"),
        "checkpoint_minutes": Field(float, 10.0, "also write a checkpoint once this many minutes have passed since the last one (0 = off)",
                                    _non_negative, "a number of minutes >= 0"),
        "keep": Field(int, 2, "step checkpoints to keep besides 'latest' and 'best'", _non_negative, "an integer >= 0"),
        "tensorboard": Field(Union[bool, Literal["auto"]], "auto",
                             "write TensorBoard events: auto when tensorboard is installed; true says so when it is not"),
        "progress": Field(Literal["auto", "bar", "plain", "none"], "auto", "progress bar on a terminal, log lines otherwise"),
    },
}

COMPONENT_SECTIONS = {"task": "tasks", "generator": "generators", "discriminator": "discriminators"}
REQUIRED = ("task", "generator")


#: Added to where a Recipe came from once a program has changed it since it was loaded
EDITED = " (edited after load_recipe)"


class Recipe(dict):
    """A validated recipe: nested dicts, plus where it came from and the overrides applied."""

    source: str = "<dict>"
    overrides: list[str]
    #: What the overrides left out of the file (another component's options, a replaced table's
    #: keys): ``i2i run`` and ``i2i validate`` print them as notes
    notes: list[str]

    def __init__(self, data: dict, source: str = "<dict>", overrides: list[str] | None = None,
                 notes: list[str] | None = None):
        super().__init__(data)
        self.source = source
        self.overrides = list(overrides or [])
        self.notes = list(notes or [])
        self._as_loaded = copy.deepcopy(data)  # to tell a program's later edits from the file's values

    @property
    def has_discriminator(self) -> bool:
        """Whether the recipe trains a GAN; without a ``[discriminator]`` G trains alone."""
        return bool(self.get("discriminator", {}).get("name"))


# -- reading ------------------------------------------------------------------------------------
def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; syntax errors become one line with file, line and column."""
    if isinstance(path, str) and "\n" in path and not os.path.lexists(path) and "=" in path:  # load_recipe(text)
        raise RecipeError("load_recipe got TOML text where a path belongs: pass the path of the file, "
                          "or the text parsed into a dict (tomllib.loads(text))")
    path = Path(path)
    if path.is_dir():
        run_hint = (f"; a run's recipe is {path / 'recipe.toml'} (i2i run --resume {shell_path(path)} continues the run)"
                    if (path / "recipe.toml").is_file() else "")
        raise RecipeError(f"{path}: a folder, not a recipe file{run_hint}")
    if not path.is_file():
        if path.exists():  # a named pipe, a device: reading one could wait for ever, or never end
            raise RecipeError(f"{path}: not a regular file; give the recipe's .toml file")
        if path.is_symlink():  # exists() follows it: a link to nothing, or a loop of links
            raise RecipeError(f"{path}: a symbolic link to {os.readlink(path)}, which is not there (or leads back to "
                              "itself); give the recipe's .toml file")
        shown = repr(str(path)) if any(ord(c) < 32 for c in str(path)) else str(path)  # a newline: shown, not printed
        raise RecipeError(f"{shown}: no such recipe file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # Windows editors may write a BOM
        if "\x00" in text:  # UTF-16 without a byte-order mark decodes as UTF-8 with a NUL in every other place
            raise RecipeError(f"{path}: looks like UTF-16 text (NUL bytes between the characters); save it as UTF-8")
        return tomllib.loads(text)
    except UnicodeDecodeError as exc:
        if path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff"):  # Notepad's "Unicode": UTF-16 with a byte-order mark
            raise RecipeError(f"{path}: UTF-16 text (its byte-order mark says so); save it as UTF-8") from None
        raise RecipeError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    except RecursionError:  # arrays or tables nested thousands deep: Python's reader gives up
        raise RecipeError(f"{path}: TOML syntax error: values nested too deeply (arrays or inline tables inside one "
                          "another); a recipe's values nest at most a few levels") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if where:
            message = message[: where.start()].strip()
            line = text.splitlines()[int(where[1]) - 1] if int(where[1]) <= len(text.splitlines()) else ""
            if re.search(r'"[^"]*\\', line):  # C:\Users in double quotes: TOML reads \U as an escape
                message += "; write a Windows path in single quotes ('C:\\photos') or with forward slashes"
            bare = re.match(r"\s*([\w.\"'-]+)\s*=\s*([^\s\"'\[{#][^#]*?)\s*(#.*)?$", line)
            keyed = re.match(r"\s*([\w.\"'-]+)\s*=", line)
            if message == "Cannot overwrite a value" and keyed:  # size = 64, then size = 32 in one table
                message += f"; {keyed[1]} is given twice in its table (or a table names it again), and TOML takes each once"
            if re.match(r"\s*\[*\s*[^\]\"'=]*[^\x00-\x7f]", line) and message in (
                    "Invalid statement", "Expected ']' at the end of a table declaration",
                    "Expected ']]' at the end of an array declaration"):
                message += ("; a key or table name with letters beyond A-Z, digits, _ and - goes in quotes "
                            "(\"données\" = 1, [\"données\"]); i2i's own keys are all in English")
            if message == "Invalid value" and bare:  # source = photos: TOML has no unquoted strings
                value = bare[2]
                if value.lower() in ("true", "false"):
                    message += f"; TOML writes true and false in lower case: {bare[1]} = {value.lower()}"
                elif re.match(r"[-+]?\.\d", value):
                    sign = value[0] if value[0] in "+-" else ""
                    message += f"; a TOML number needs a digit before its point: {sign}0{value.lstrip('+-')}, not {value}"
                else:
                    message += f'; a text value goes in quotes: {bare[1]} = "{value}"'
            raise RecipeError(f"{path}: line {where[1]}, column {where[2]}: TOML syntax error: {message}") from None
        raise RecipeError(f"{path}: TOML syntax error: {message}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.steps=500`` -> (["train", "steps"], 500). VALUE is a TOML literal, or a bare word
    or path without spaces (``resnet_9blocks``, ``/data/photos``), taken as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    path = _key_path(key) if sep and key else None
    if path is None:
        quoting = ("; a key with spaces or other letters is quoted as in TOML, e.g. --set 'losses.\"my loss\".weight=2'"
                   if sep and key and re.search(r"[^A-Za-z0-9_.\-]", key) else "")
        raise RecipeError(f"--set {text}: expected dotted.key=VALUE, e.g. --set train.steps=500{quoting}")
    raw = raw.strip()
    try:
        parsed = tomllib.loads(f"v = {raw}")
        if len(parsed) != 1:  # "5\ntrain.seed=3": more TOML after the value, which was silently dropped
            raise RecipeError(f"--set {text!r}: more than one TOML value after '='; give one --set per key") from None
        value = parsed["v"]
    except tomllib.TOMLDecodeError:
        if re.fullmatch(_BARE_WORD, raw):
            value = raw  # a bare word or path such as resnet_9blocks or /data/photos: a string
        else:
            raise RecipeError(f"--set {text}: {raw!r} is not a TOML value ({_value_hint(key, raw)})") from None
    if not isinstance(value, str) and _fixed_field(path) is str and re.fullmatch(_BARE_WORD, raw):
        value = raw  # output.dir=2024-01-01 (a TOML date), data.source=inf: a bare word for a text key is text
    return path, value


#: What ``--set key=VALUE`` takes as a string without quotes: a bare word or path
_BARE_WORD = r"[\w./~][\w.:\-/~+@]*"


def _fixed_field(path: list[str]) -> Any:
    """The type of the fixed recipe key at ``path`` (``str`` for ``output.dir``), or None."""
    node: Any = SCHEMA
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node.type if isinstance(node, Field) else None


def _key_path(key: str) -> list[str] | None:
    """A dotted key as TOML reads it (``losses."my loss".weight`` is three keys, the second
    with a space: a recipe may name a loss term so), or None when it is not one."""
    try:
        node: Any = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        return None
    path = []
    while isinstance(node, dict) and len(node) == 1:
        part, node = next(iter(node.items()))
        path.append(part)
    return path if node == 0 and path else None


def _value_hint(key: str, raw: str) -> str:
    """What a --set VALUE that is not TOML most likely needs."""
    if re.search(r"(^|[\[,\s])[-+]?\.\d", raw):
        return "a TOML number needs a digit before its point: 0.999, not .999"
    if "\\" in raw:
        return f"write a Windows path in single quotes, {key}='{raw}', or with forward slashes"
    if raw.startswith(("[", "{")):  # [mae] or {name=patchgan}: the strings inside want their quotes
        quoted = re.sub(r"(?<=[\[{,=])(\s*)([A-Za-z_][\w./\-]*)(\s*)(?=[\]},]|$)",
                        lambda m: m[0] if m[2] in ("true", "false", "inf", "nan") else f"{m[1]}'{m[2]}'{m[3]}", raw)
        return f"quote the strings inside it: {key}={quoted}" if quoted != raw else "a TOML list [1, 2] or table {a = 1}"
    if "**" in raw or "^" in raw:  # 10**15: TOML has no arithmetic
        return "write the number out, 1000000000000000: TOML has no arithmetic"
    if raw == "" or re.fullmatch(r"[-+\d.eE_,=]+", raw):  # train.steps= or 2,3 or ==2: a number mistyped
        return "one value after '=', such as 500, 0.5, true or 'text'"
    return f"quote strings: {key}='text'"


def apply_overrides(data: dict, overrides: list[str], notes: list[str] | None = None) -> dict:
    """A copy of ``data`` with each ``--set dotted.key=VALUE`` applied, before validation (so an
    override is checked exactly as the file's own value would be).

    A ``--set`` that names another component (``generator.name=resnet_9blocks``) leaves out the
    file's options for the old one: they belong to it (a narrow U-Net's ``width = 32`` would make
    ``unet_256`` another network than the reference's), and the new one may not take them. Options
    given with ``--set`` are kept. What was left out, and whole tables a ``--set`` replaced, are
    added to ``notes``."""
    data = copy.deepcopy(data)
    parsed = [(text, *parse_override(text)) for text in overrides]
    set_keys = {tuple(path) for _, path, _ in parsed}
    for text, path, value in parsed:
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                dotted = ".".join(path[: i + 1])
                raise RecipeError(f"--set {text}: '{dotted}' is a value, not a table")
            node = child
        old = node.get(path[-1])
        if path[-1] == "name" and _is_component_table(path[:-1]) and isinstance(value, str):
            left_out = _options_of_another_component(node, path[:-1], value, set_keys)
            if left_out and notes is not None:
                notes.append(f"--set {text} replaces {'.'.join(path[:-1])} '{_component_name(node, path[:-1])}', so "
                             f"the recipe's options for it are left out: {_listed(left_out)} (--set "
                             f"{'.'.join(path[:-1])}.OPTION=VALUE gives one to the new one)")
        elif isinstance(old, dict) and isinstance(value, dict) and notes is not None:
            dropped = {key: old[key] for key in old if key not in value}
            if dropped:
                notes.append(f"--set {text} replaces the recipe's whole [{'.'.join(path)}] table, so these are left out: "
                             f"{_listed(dropped)} (--set {'.'.join(path)}.KEY=VALUE changes one key and keeps the rest)")
        node[path[-1]] = value
    return data


def _is_component_table(path: list[str]) -> bool:
    return (len(path) == 1 and path[0] in COMPONENT_SECTIONS) or (len(path) == 2 and path[0] == "losses")


def _component_name(table: dict, path: list[str]) -> str:
    return table.get("name", path[-1] if path[0] == "losses" else "")


def _options_of_another_component(table: dict, path: list[str], name: str, set_keys: set[tuple[str, ...]]) -> dict:
    """Remove from ``table`` (whose component is to become ``name``) the old component's options
    that no ``--set`` gave; returns them. ``plugin:name`` for the same bare name keeps them: it is
    how an ambiguous name is qualified, as its error asks."""
    old = str(_component_name(table, path))
    one_bare = ":" not in old or ":" not in name  # two different plugins' "a:x" and "b:x" are not the same
    if old == name or (one_bare and old.rsplit(":", 1)[-1] == name.rsplit(":", 1)[-1]):
        return {}
    fixed = table_keys(".".join(path))
    left_out = {key: table[key] for key in list(table) if key not in fixed and (*path, key) not in set_keys}
    for key in left_out:
        del table[key]
    return left_out


def _leave_out_a_swapped_components_options(data: dict, as_loaded: dict, notes: list[str]) -> None:
    """A program that edits a loaded :class:`Recipe`'s ``generator.name`` (or another
    component's) gets the new component's defaults, as ``--set generator.name=...`` does: the
    options loading filled in for the old one would otherwise build it under the new name (a
    narrow U-Net called ``unet_128``). Options the program set itself are kept."""
    from .plugins import registry

    tables = [([section], kind) for section, kind in COMPONENT_SECTIONS.items()]
    tables += [(["losses", label], "losses") for label in data.get("losses", {}) if isinstance(data["losses"], dict)]
    for path, kind in tables:
        table, before = _table_at(data, path), _table_at(as_loaded, path)
        if table is None or before is None or not isinstance(table.get("name"), str) or table.get("name") == before.get("name"):
            continue
        edited = {(*path, key) for key, value in table.items() if key not in before or before[key] != value}
        new_name, table["name"] = table["name"], before.get("name")  # as a --set finds it: the old name still there
        left_out = _options_of_another_component(table, path, new_name, edited)
        table["name"] = new_name
        try:  # the note names what differs from the new component's own defaults: the rest changes nothing
            defaults = {key: option.default for key, option in registry().get(kind, table["name"]).options.items()}
        except UserError:
            defaults = {}
        differing = {key: value for key, value in left_out.items() if key not in defaults or defaults[key] != value}
        if differing:
            notes.append(f"{'.'.join(path)}.name was changed from '{before.get('name')}' to '{table['name']}', so "
                         f"the options of '{before.get('name')}' are left out: {_listed(differing)} (one set "
                         f"along with the name is kept where it differs from the old value; to keep an equal one, give "
                         f"it as an override: overrides=['{'.'.join(path)}.OPTION=VALUE'])")


def _table_at(data: dict, path: list[str]) -> dict | None:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else None


def _listed(values: dict) -> str:
    return ", ".join(f"{key} = {format_value(value)}" for key, value in values.items())


def override_list(overrides: object) -> list[str]:
    """A Python caller's ``overrides``, checked: a list (or other iterable) of 'key=VALUE'
    strings; a string or a dict is a ``TypeError`` naming the right form."""
    if isinstance(overrides, Mapping):  # iterating it would give the keys alone
        example = [f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in list(overrides.items())[:1]] or ["train.steps=500"]
        raise TypeError(f"overrides is a list of 'dotted.key=VALUE' strings, not a dict: e.g. {example}")
    if not isinstance(overrides, (str, bytes)) and isinstance(overrides, Iterable):
        overrides = list(overrides)  # a generator is read once: the check below would use it up
    if isinstance(overrides, (str, bytes)) or not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise TypeError(f"overrides is a list of 'dotted.key=VALUE' strings, not {overrides!r}")
    return overrides


def load_recipe(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = (), *,
                components: Collection[str] | None = None) -> Recipe:
    """Read, override, validate and fill in defaults. Raises :class:`RecipeError`.

    ``components``: the kinds (``"tasks"``, ``"generators"``, ``"discriminators"``, ``"losses"``,
    ``"callbacks"``, ``"metrics"``) whose names are looked up and whose options are checked and
    filled in; all when None. Applying a trained run needs its task and generator only: a run
    whose loss plugin is gone can still translate."""
    earlier: list[str] = []
    notes: list[str] = []
    if isinstance(source, Recipe):  # checked again (its holder may have edited it), keeping where it came from
        data, where, earlier = _plain_values(copy.deepcopy(dict(source))), source.source, list(source.overrides)
        as_loaded = _plain_values(copy.deepcopy(dict(source._as_loaded)))
        if data != as_loaded and not where.endswith(EDITED):
            where += EDITED  # a mistake may be the program's edit, not the file's
        notes = list(source.notes)
        _leave_out_a_swapped_components_options(data, as_loaded, notes)
    elif isinstance(source, dict):
        data, where = _plain_values(copy.deepcopy(source)), "<recipe>"
    elif isinstance(source, (str, os.PathLike)):
        if os.fspath(source).startswith("~"):  # a program's "~/recipes/x.toml", as the shell would expand it
            source = user_path(source)
        data, where = read_toml(source), str(source)
    else:
        resume = "; to continue a run: i2i.train(None, resume=RUN_DIR)" if source is None else ""
        raise TypeError(f"a recipe is a path to a TOML file or a dict, not {type(source).__name__}{resume}")
    overrides = override_list(overrides)
    if isinstance(source, (str, os.PathLike)):
        data = _qualified_by_run(data, source)
    before_overrides = data
    data = apply_overrides(data, list(overrides), notes)
    overrides = [*earlier, *overrides]
    from .plugins import registry

    try:
        resolved = validate(data, where)
        check_components(resolved, registry(), where, components)
    except (RecipeError, UnknownComponentError) as exc:
        error = _blame_override(exc, where, overrides, data, before_overrides)
        # an unknown component, callback or metric of a saved run: which plugin brings it back
        unknown = isinstance(exc, UnknownComponentError) or "unknown " in str(exc)
        saved_run = unknown and isinstance(source, (str, os.PathLike))
        hint = missing_run_plugins(source) if saved_run else ""
        if hint:
            guess = getattr(exc, "guess", "")  # the run's record names the plugin: a guess at what was meant is noise
            raise type(error)(f"{str(error).replace(guess, '') if guess else error}; {hint}") from None
        # the saved recipe's own key (not a --set's) that another version of its plugin no longer takes
        hint = changed_run_plugins(source) if saved_run and not str(error).startswith("--set ") else ""
        raise (type(error)(f"{error}; {hint}") if hint else error) from None
    notes = list(dict.fromkeys([*notes, *inert_settings(resolved)]))  # a Recipe checked again says each once
    return Recipe(resolved, where, overrides, notes)


def inert_settings(recipe: Mapping[str, Any]) -> list[str]:
    """Settings changed from their defaults that the rest of the recipe makes do nothing, each
    as a note that says why: a run that quietly ignores a setting looks like one that used it."""
    notes = []
    data, train = recipe["data"], recipe["train"]
    has_d = bool(recipe.get("discriminator", {}).get("name"))
    if not has_d:
        def is_default(value: Any, default: Any) -> bool:
            return list(value) == list(default) if isinstance(value, (list, tuple)) else value == default

        changed = [f"train.d.{key} = {format_value(value)}" for key, value in train["d"].items()
                   if not is_default(value, OPTIM[key].default)]
        changed += [f"train.{key} = {train[key]}" for key in ("d_steps", "g_warmup_steps")
                    if train[key] != SCHEMA["train"][key].default]
        if changed:
            notes.append(f"{', '.join(changed)} {'has' if len(changed) == 1 else 'have'} no effect: the recipe has no "
                         "[discriminator], so only the generator trains (add one, e.g. [discriminator] name = "
                         "'patchgan', for a GAN)")
    if data["val_source"] and data["val_fraction"] != SCHEMA["data"]["val_fraction"].default:
        notes.append(f"data.val_fraction = {format_value(data['val_fraction'])} has no effect: data.val_source is set, "
                     "so the run validates on that folder and trains on all of data.source")
    for net in ("g", "d") if has_d else ("g",):
        optim = train[net]
        if optim["schedule"] != "linear" and optim["decay_start"] != OPTIM["decay_start"].default:
            notes.append(f"train.{net}.decay_start = {format_value(optim['decay_start'])} has no effect under "
                         f"train.{net}.schedule = '{optim['schedule']}' (only 'linear' decays from it)")
        if optim["schedule"] == "linear" and optim["decay_start"] >= 1.0:
            notes.append(f"train.{net}.decay_start = {format_value(optim['decay_start'])} under train.{net}.schedule = "
                         "'linear' never decays: the learning rate stays constant, as schedule = 'constant' keeps it")
        elif (optim["schedule"] == "linear" and optim["warmup_steps"] < train["steps"]
              and optim["warmup_steps"] > int(train["steps"] * optim["decay_start"])):
            notes.append(f"train.{net}.decay_start = {format_value(optim['decay_start'])} falls inside the warm-up "
                         f"(train.{net}.warmup_steps = {optim['warmup_steps']}), so the linear decay starts only when "
                         "the warm-up ends")
        if optim["warmup_steps"] > train["steps"]:
            share = train["steps"] / optim["warmup_steps"]
            ends = f"{share:.0%}" if share < 0.995 else f"{share:.1%}"  # 1500 of 1501 steps is no 100 %
            notes.append(f"train.{net}.warmup_steps = {optim['warmup_steps']} is above train.steps = {train['steps']}, "
                         f"so the learning rate never reaches train.{net}.lr = {format_value(optim['lr'])} (it ends at "
                         f"{ends} of it)")
        elif optim["warmup_steps"] == train["steps"] and train["steps"] > 1:
            notes.append(f"train.{net}.warmup_steps = {optim['warmup_steps']} equals train.steps, so the learning rate "
                         f"reaches train.{net}.lr = {format_value(optim['lr'])} only at the last step")
    if train["ema_warmup"] and train["ema"] == 0:
        notes.append("train.ema_warmup = true has no effect: train.ema is 0, so no EMA is kept; set train.ema (0.999, "
                     "say) for one")
    for label, term in recipe["losses"].items():
        if term["weight"] == 0:
            notes.append(f"{toml_key('losses', label, 'weight')} = 0: the term is still computed each step but trains "
                         f"nothing; leave [{toml_key('losses', label)}] out to drop it")
    if has_d and train["g_warmup_steps"] >= train["steps"]:
        notes.append(f"train.g_warmup_steps = {train['g_warmup_steps']} is not below train.steps = {train['steps']}, so "
                     "the adversarial terms never join and the discriminator trains for nothing")
    return notes


def _run_plugins(recipe_file: str | os.PathLike) -> dict[str, Any]:
    """What the ``run.json`` beside a run's saved recipe records of the plugins it was trained
    with (``{}`` for a recipe outside a run folder, or an unreadable record)."""
    import json

    info = Path(recipe_file).with_name("run.json")
    try:
        recorded = json.loads(info.read_text()).get("plugins", {}) if info.is_file() else {}
    except (OSError, ValueError, AttributeError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _qualified_by_run(data: dict, recipe_file: str | os.PathLike) -> dict:
    """A run's saved recipe with each bare component name that several loaded plugins now
    provide written as ``plugin:name``, for the plugin the run was trained with (its
    ``run.json`` says): installing an unrelated plugin that reuses a name must not make
    existing runs unusable, as a clash with a built-in name does not. Anything else is left
    as it is (and validated as usual)."""
    recorded = _run_plugins(recipe_file)
    used = {name for name, p in recorded.items() if isinstance(p, dict) and p.get("used", True)
            and p.get("status", "loaded") == "loaded"}
    if not used:
        return data
    from .plugins import host, registry
    from .registry import SINGULAR

    reg = registry()
    here = host().plugins
    gone = [name for name in used if not (name in here and here[name].status == "loaded")]

    def qualified(kind: str, name: Any) -> Any:
        if not isinstance(name, str) or ":" in name:
            return name
        entries = reg.providers(kind, name)
        strangers = [c for c in entries if not c.builtin and c.plugin not in used]
        if gone and entries and len(strangers) == len(entries):
            # the run's own plugin is gone and another one reuses the name: opened with it, the
            # run scored or translated with a network it never trained, without a word
            others = " and ".join(f"'{c.plugin}'" for c in strangers)
            raise UnknownComponentError(f"{recipe_file}: {SINGULAR[kind]} '{name}' is provided here only by plugin "
                                        f"{others}, which this run was not trained with; "
                                        f"{missing_run_plugins(recipe_file)}")
        if len(entries) < 2 or any(c.builtin for c in entries):
            return name
        trained_with = [c for c in entries if c.plugin in used]
        return trained_with[0].qualified_name if len(trained_with) == 1 else name

    data = copy.deepcopy(data)
    for section, kind in (("task", "tasks"), ("generator", "generators"), ("discriminator", "discriminators")):
        if isinstance(data.get(section), dict) and "name" in data[section]:
            data[section]["name"] = qualified(kind, data[section]["name"])
    for table in (data.get("losses") or {}).values() if isinstance(data.get("losses"), dict) else ():
        if isinstance(table, dict) and "name" in table:
            table["name"] = qualified("losses", table["name"])
    for section, key, kind in (("eval", "metrics", "metrics"), ("train", "callbacks", "callbacks")):
        names = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        if isinstance(names, list):
            data[section][key] = [qualified(kind, name) for name in names]
    return data


def missing_run_plugins(recipe_file: str | os.PathLike) -> str:
    """For a run's saved recipe: the plugins its ``run.json`` says it was trained with that are
    not loaded here, and how to install them (a run shared without its plugin fails this way)."""
    from .plugins import host

    recorded = _run_plugins(recipe_file)
    here = host().plugins
    # the plugins the run used (run.json says; older runs recorded every loaded one) that are not loaded here
    missing = [(name, p) for name, p in recorded.items() if isinstance(p, dict) and p.get("status", "loaded") == "loaded"
               and p.get("used", True) and not (name in here and here[name].status == "loaded")]
    failed = [(name, here[name]) for name, _ in missing if name in here and here[name].status == "failed"]
    if failed:  # installed, but broken here: pip install would change nothing
        name, info = failed[0]
        return (f"this run was trained with plugin '{name}', which is installed here but failed to load "
                f"({info.error}); see 'i2i plugins'")
    skipped = [name for name, _ in missing if name in here and here[name].status == "skipped"]
    if skipped:
        return f"this run was trained with plugin '{skipped[0]}', which I2I_LOAD_PLUGINS leaves out here"
    if not missing:
        return ""
    installs = [f"{p['distribution']}=={p['version']}" if p.get("version") else p["distribution"]
                for _, p in missing if p.get("distribution")]
    # a plugin without a distribution was registered in its program (i2i.register_plugin): pip cannot bring it
    registered = [f"i2i.register_plugin({p.get('module') or 'MODULE'}, {name!r})" for name, p in missing if not p.get("distribution")]
    ways = ([f"pip install {' '.join(installs)}"] if installs else []) + (
        [f"in Python, before loading it: {'; '.join(registered)}"] if registered else [])
    names = [f"'{name}'" for name, _ in missing]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    which = "plugin" if len(names) == 1 else "plugins"
    verb = "is" if len(names) == 1 else "are"
    return f"this run was trained with {which} {listed}, which {verb} not loaded here: {'; '.join(ways)}"


def _plugins_at_other_versions(recipe_file: str | os.PathLike) -> list[tuple[str, dict, Any]]:
    """The third-party plugins a run used that are loaded here at another version than it was
    trained with: (name, what run.json recorded, the loaded plugin's info)."""
    from .plugins import host

    recorded, here = _run_plugins(recipe_file), host().plugins
    return [(name, then, here[name]) for name, then in recorded.items()
            if isinstance(then, dict) and then.get("used", True) and then.get("version") and name in here
            and not here[name].builtin and here[name].version and here[name].version != then["version"]]


def _install_as_trained(recorded: dict) -> str:
    return f"pip install {recorded['distribution']}=={recorded['version']}" if recorded.get("distribution") else "install it"


def changed_run_plugins(recipe_file: str | os.PathLike) -> str:
    """For a run's saved recipe: the first third-party plugin it used that is loaded here at
    another version than it was trained with (a renamed option is then an unknown key in its
    recipe), as a hint; "" when there is none."""
    changed = _plugins_at_other_versions(recipe_file)
    if not changed:
        return ""
    name, then, now = changed[0]
    return (f"this run was trained with plugin '{name}' {then['version']}, and {now.version} is loaded here, whose "
            f"options may differ: {_install_as_trained(then)} to use the run as it was, or edit the run's recipe.toml "
            "to the new options")


def note_changed_run_plugins(recipe_file: str | os.PathLike) -> None:
    """A note on stderr when a run's plugins are loaded here at other versions than it was
    trained with: a version that only added an option (or changed a degradation) opens the run
    without an error, yet scores, translates or resumes it with other code."""
    for name, then, now in _plugins_at_other_versions(recipe_file):
        say(f"i2i: note: {Path(recipe_file).parent} was trained with plugin '{name}' {then['version']}, and "
            f"{now.version} is loaded here, whose components may behave otherwise; {_install_as_trained(then)} to "
            "use the run as it was")


def recipe_error(recipe: Recipe, text: str, also: tuple[str, ...] = ()) -> RecipeError:
    """A :class:`RecipeError` about ``text`` (which starts with the dotted key), naming the
    recipe file, or the ``--set`` the value came from. ``also``: other keys the mistake is
    about (a ``data.size`` the generator cannot take is as much ``generator.name``'s), whose
    ``--set`` is named when the first key's value is the file's."""
    error = _blame_override(RecipeError(f"{recipe.source}: {text}"), recipe.source, recipe.overrides, recipe)
    if str(error).startswith("--set "):
        return error
    for key in also:
        for override in reversed(recipe.overrides):
            path = parse_override(override)[0]
            if _path_of(key)[:len(path)] == path and _still_set(recipe, override):
                return RecipeError(f"--set {override.strip()}: {text}")
    return error


@contextlib.contextmanager
def blamed_on_recipe(recipe: Recipe, *, overrides_only: bool = False) -> Iterator[None]:
    """A :class:`UserError` about one of the recipe's keys (its text starts with the key, as
    ``train.device = 'cuda': ...`` does) names the recipe file, or the ``--set`` it came from
    (``overrides_only``: only a ``--set``; the error stays as it is for the file's own values)."""
    try:
        yield
    except UserError as exc:
        text = str(exc)
        if text.startswith((f"{recipe.source}:", "--set ")) or not re.match(r"[a-z_]+\.[\w.]+ = ", text):
            raise
        blamed = recipe_error(recipe, text)
        if overrides_only and not str(blamed).startswith("--set "):
            raise
        raise blamed from None


def _blame_override(exc: UserError, where: str, overrides: list[str] | tuple[str, ...], data: Any = None,
                    before: Mapping | None = None) -> UserError:
    """An error in a value that came from ``--set`` names that ``--set``, not the file (which
    may say something else entirely). With ``data``, only while the recipe still holds the
    override's value: one a program edited since (``recipe["train"]["steps"] = ...``) is the
    recipe's. With ``before`` (the recipe as it was before the overrides), an error anywhere in
    a table an override brought in is that override's too (``losses.new.name`` for ``--set
    losses.new.weight=1``: the file has no ``[losses.new]``)."""
    text = str(exc)
    if not text.startswith(f"{where}: "):
        return exc
    rest = text[len(where) + 2:]
    match = _DOTTED_KEY.match(rest.removeprefix("["))  # "[generator] dncnn: ...": a table's own error
    key = _path_of(match.group(0)) if match else []
    for override in reversed(overrides):
        path = parse_override(override)[0]
        # the error's key is the override's, inside it ('train.steps' for train.steps.x), or a
        # table the override made up ('nosuch' for --set nosuch.key=1)
        related = bool(key) and _one_inside_the_other(key, path)
        table = None
        if not related and before is not None:
            table = _table_made_up(before, override)
            related = table is not None and key[:len(table)] == table
        if related and (data is None or _still_set(data, override)):
            if table is not None:  # the override brought the table in: say so, with the likely one meant
                # a RecipeError, whatever the table's error was: the --set's made-up table is the mistake
                meant = _meant_table(before, table)
                if meant:
                    fixed = f"{toml_key(*meant, *path[len(table):])}={override.partition('=')[2].strip()}"
                    return RecipeError(f"--set {override.strip()}: the recipe has no [{toml_key(*table)}]; did you mean "
                                       f"--set {fixed}?")
                return RecipeError(f"--set {override.strip()}: {rest} (the recipe has no [{toml_key(*table)}]; this --set "
                                   "added it)")
            return type(exc)(f"--set {override.strip()}: {rest}")
    return exc


def _table_made_up(before: Mapping, override: str) -> list[str] | None:
    """The first table on the override's path that ``before`` lacks (the override created it),
    as a key path; None if the override only sets a value in tables that were there."""
    path, _ = parse_override(override)
    node: Any = before
    for i, part in enumerate(path[:-1]):
        if not isinstance(node, Mapping) or part not in node:
            return path[: i + 1]
        node = node[part]
    return None


def _meant_table(before: Mapping, table: list[str]) -> list[str] | None:
    """The table beside ``table`` (which an override made up) that was probably meant:
    ``losses.gan`` for ``losses.gann`` or ``losses.GAN``, when the recipe has it."""
    *parents, name = table
    node: Any = before
    for part in parents:
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    siblings = {key.lower(): key for key, value in node.items() if isinstance(value, Mapping)} if isinstance(node, Mapping) else {}
    close = difflib.get_close_matches(name.lower(), list(siblings), n=1, cutoff=0.6)
    return [*parents, siblings[close[0]]] if close else None


def _still_set(data: Any, override: str) -> bool:
    """Whether ``data`` holds the value ``override`` set (``1`` and ``1.0`` alike)."""
    path, value = parse_override(override)
    node = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return _holds(node, value)


def _holds(node: Any, value: Any) -> bool:
    """Whether a recipe's value is still ``value``, a ``--set``'s; a table set whole
    (``discriminator={name="patchgan"}``) still is while it holds those keys' values, beside
    the defaults validation filled in."""
    if isinstance(value, dict):
        return isinstance(node, Mapping) and all(key in node and _holds(node[key], v) for key, v in value.items())
    both_nan = isinstance(node, float) and isinstance(value, float) and node != node and value != value
    # a data folder a run pinned to its absolute path (see engine.run._pin_data_folders) is still the override's
    pinned = (isinstance(node, str) and isinstance(value, str) and bool(value) and os.path.isabs(node)
              and node == os.path.abspath(os.path.expanduser(value)))
    return node == value or both_nan or pinned  # nan never equals itself, and --set x=nan is still the override's


#: More numbers than any setting holds: an array this large given as a recipe value is images.
MAX_ARRAY_VALUES = 4096


def _plain_values(value: Any, path: str = "") -> Any:
    """Numpy (and other) scalars as the Python ``int``/``float``/``bool`` a TOML file would give:
    a dict recipe built by a sweep script may hold ``np.int64(500)`` steps or ``np.logspace``
    learning rates (``np.float64``, which the run's ``recipe.toml`` could not be written with),
    numpy arrays for lists, and a program ``pathlib.Path`` folders (``data.source``), which a
    TOML file spells as strings."""
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):  # TOML keys are strings; difflib's hints would choke on others
                raise RecipeError(f"<recipe>: {path + '.' if path else ''}{key!r}: a recipe's keys are strings "
                                  "(as in a TOML file), e.g. 'train' or 'steps'")
        return {key: _plain_values(v, f"{path}.{key}" if path else key) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_values(v, path) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value) in (bool, int, float, str):
        return value
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy scalars (np.float64 is a float) and arrays
        shape = tuple(getattr(value, "shape", ()))
        if math.prod(shape) > MAX_ARRAY_VALUES:  # images given in memory: gigabytes of lists, and of message
            kind = f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
            raise RecipeError(f"<recipe>: {path or 'the recipe'} = an array of shape {'x'.join(map(str, shape))} "
                              f"({kind}): a recipe holds settings, not images; i2i trains on image "
                              "files (save them into a folder and give its path as data.source)")
        if not hasattr(value.dtype, "kind") and getattr(value.dtype, "is_floating_point", False) \
                and value.dtype.itemsize < 8:  # a torch tensor: numpy's float32 and float16 know their shortest repr
            value = value.detach().cpu()
            value = (value.float() if str(value.dtype) == "torch.bfloat16" else value).numpy()
        if getattr(value.dtype, "kind", "") == "f" and value.dtype.itemsize < 8:
            # np.float32(1e-3) is 0.0010000000474974513 as a double: the number as written, 0.001,
            # is its shortest repr (numpy's str gives it, and float() reads it back)
            return float(str(value)) if value.ndim == 0 else [_plain_values(v, path) for v in value]
        return _plain_values(value.tolist())
    for plain in (bool, int, float, str):  # other subclasses (an IntEnum, np.str_): what TOML can write
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, numbers.Number) and hasattr(value, "item"):
        return value.item()
    return value


# -- validation ---------------------------------------------------------------------------------
def _check_fields(where: str, prefix: str, table: Any, fields: dict[str, Any], open_keys: bool) -> dict:
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: {prefix}: expected a table, got {format_value(table)}")
    out = {}
    for key, value in table.items():
        field = fields.get(key)
        dotted = f"{prefix}.{key}"
        if isinstance(field, dict):
            out[key] = _check_fields(where, dotted, value, field, open_keys=False)
            continue
        if field is None:
            if open_keys:
                out[key] = value
                continue
            raise RecipeError(f"{where}: {dotted}: unknown key{_unknown_key_hint(prefix, key, fields)}")
        _check_value(where, dotted, value, field)
        out[key] = value
    for key, field in fields.items():
        if key not in out:
            out[key] = _check_fields(where, f"{prefix}.{key}", {}, field, False) if isinstance(field, dict) else copy.deepcopy(field.default)
    return out


#: Names other tools give i2i's keys (pix2pix's options, common usage): the key they mean
KEY_SYNONYMS = {"learning_rate": "lr", "epochs": "steps", "iterations": "steps", "iters": "steps", "n_steps": "steps",
                "max_steps": "steps", "batch": "batch_size", "batchsize": "batch_size", "image_size": "size",
                "crop_size": "size", "img_size": "size", "load_size": "resize", "dataroot": "source", "data_dir": "source",
                "path": "source", "folder": "source", "out": "dir", "output_dir": "dir", "out_dir": "dir",
                "beta1": "betas", "num_threads": "workers", "pretrained": "init_from", "pretrain_network_g": "init_from",
                "init_weights": "init_from", "finetune_from": "init_from", "weights": "init_from"}


#: The reference pix2pix's options (lower-cased, without their dashes) that i2i spells another
#: way or splits across keys, and how to write them here: a migrating user types them as keys
#: and was pointed at a close spelling that means something else (load_size: "did you mean
#: 'size'?", no_flip: "'flip'?", the opposite). The README's table of the reference's options.
REFERENCE_OPTIONS = {
    "netg": 'generator.name, e.g. "unet_256", "unet_128" or "resnet_9blocks" (pix2pix\'s ResNet: with generator.norm = '
            '"batch" and generator.dropout = true, its defaults; the resnet presets are CycleGAN\'s)',
    "ngf": "generator.width",
    "netd": 'discriminator.name: "patchgan" for basic and n_layers, "pixelgan" for pixel',
    "ndf": "discriminator.width",
    "n_layers_d": "discriminator.n_layers",
    "no_dropout": "generator.dropout = false",
    "norm": 'generator.norm and discriminator.norm ("batch", "instance" or "none"; the reference sets both)',
    "no_flip": "data.flip = false",
    "direction": 'task.direction = "AtoB" or "BtoA" of task "paired"',
    "input_nc": 'task.input_channels of task "paired"',
    "output_nc": 'task.target_channels of task "paired"',
    "lambda_l1": "[losses.l1] weight",
    "gan_mode": '[losses.gan] name = "vanilla", "lsgan" or "wgan"; wgangp is "wgan" (the reference\'s pix2pix and '
                'CycleGAN never add its gradient penalty; a [losses.gp] term with weight = 10 does)',
    "n_epochs": "train.steps = epochs x training images / train.batch_size",
    "niter": "train.steps = epochs x training images / train.batch_size",
    "n_epochs_decay": 'train.g.schedule = "linear" with train.g.decay_start, and train.d alike, within train.steps',
    "niter_decay": 'train.g.schedule = "linear" with train.g.decay_start, and train.d alike, within train.steps',
    "lr_policy": 'train.g.schedule = "constant", "linear" or "cosine", and train.d alike',
    "beta1": "train.g.betas = [beta1, 0.999], and train.d alike",
    "load_size": "data.resize",
    "crop_size": "data.size",
    "dataroot": "data.source",
    "preprocess": "data.resize with data.size; data.resize = 0 crops only (training always crops to data.size: "
                  "its none, whole images of any size, has no counterpart; i2i eval and translate take whole images)",
    "print_freq": "output.log_every, in steps",
    "display_freq": "output.sample_every, in steps",
    "phase": "data.source = \"D/train\" and data.val_source = \"D/val\"; i2i eval RUN --data D/test",
    "num_test": "i2i eval RUN --set eval.max_images=N",
    "results_dir": "i2i eval RUN --save-images DIR, or i2i translate RUN IMAGES --out DIR",
    "checkpoints_dir": "output.dir, or i2i run --out DIR",
    "save_epoch_freq": "output.checkpoint_every, in steps",
    "continue_train": "i2i run --resume RUN_DIR",
    "epoch": "--checkpoint latest or best, or a checkpoint folder RUN_DIR/checkpoints/step_N given as the run",
    "which_epoch": "--checkpoint latest or best, or a checkpoint folder RUN_DIR/checkpoints/step_N given as the run",
    "gpu_ids": 'train.device = "cuda", "cuda:N" or "cpu" (its -1); several GPUs: i2i run --nproc N',
    "model": 'task.name = "paired" for pix2pix (i2i does not train CycleGAN\'s unpaired setting)',
    "dataset_mode": 'task "paired": A|B files side by side (aligned), or data.pair_source folders; unaligned '
                    "(CycleGAN) data is not trained by i2i",
    "pool_size": "nothing: i2i keeps no image pool (pix2pix's default, 0; CycleGAN's pool belongs to its unpaired "
                 "training)",
    "epoch_count": "i2i run --resume RUN_DIR, which goes on from the run's last step",
    "serial_batches": "nothing: i2i draws random crops of random images, seeded by train.seed",
    "lambda_identity": "nothing: CycleGAN's identity loss belongs to its unpaired training, which i2i does not do",
    "lambda_a": "nothing: CycleGAN's cycle loss belongs to its unpaired training, which i2i does not do",
    "lambda_b": "nothing: CycleGAN's cycle loss belongs to its unpaired training, which i2i does not do",
    "init_type": 'generator.init and discriminator.init ("normal", the default, "xavier", "kaiming", "orthogonal")',
}


def reference_option_hint(key: str, section: str = "") -> str:
    """`` (the reference's --netG is generator.name ... here)`` for a reference option used as a
    key (``output.name``: its ``--name``, the experiment's folder), else ``""``."""
    bare = key.lower().lstrip("-")
    if section == "output" and bare == "name":
        return " (the reference's --name is the run's folder here: output.dir, or i2i run --out DIR)"
    said = reference_option_text(key)
    return f" ({said})" if said else ""


def reference_option_text(key: str) -> str:
    """``the reference's --netG is generator.name ... here`` (or ``has no counterpart here: ...``)
    for one of :data:`REFERENCE_OPTIONS`, given as a recipe key or a command-line option; ``""``
    for any other name."""
    bare, spelled = key.lower().lstrip("-"), key.lstrip("-")
    meaning = REFERENCE_OPTIONS.get(bare)
    if meaning is None:
        return ""
    if meaning.startswith("nothing: "):
        return f"the reference's --{spelled} has no counterpart here: {meaning.removeprefix('nothing: ')}"
    return f"the reference's --{spelled} is {meaning} here"


def _schema_keys(fields: dict[str, Any] | None = None, prefix: str = "") -> list[str]:
    """Every fixed recipe key, dotted: ``data.size``, ``train.g.lr``..."""
    out = []
    for key, field in (SCHEMA if fields is None else fields).items():
        dotted = f"{prefix}.{key}" if prefix else key
        out.extend(_schema_keys(field, dotted) if isinstance(field, dict) else [dotted])
    return out


def _unknown_key_hint(prefix: str, key: str, fields: dict[str, Any]) -> str:
    """Where an unknown key probably belongs: a nested table (``train.lr``: ``train.g.lr``), a
    close spelling, another table (``data.batch_size``: ``train.batch_size``), the name i2i
    uses for another tool's option (``learning_rate``: ``lr``); else the table's keys."""
    nested = [f"{prefix}.{name}.{key}" for name, sub in fields.items() if isinstance(sub, dict) and key in sub]
    if nested:
        return f" (it belongs in {' and '.join(nested)})"
    reference = reference_option_hint(key, prefix)
    if reference:
        return reference
    close = did_you_mean(key, fields)
    if close:
        return close
    spelled = difflib.get_close_matches(key.lower(), list(KEY_SYNONYMS), n=1, cutoff=0.8)  # lerning_rate
    meant = KEY_SYNONYMS[spelled[0]] if spelled else key
    here = [f"{prefix}.{meant}"] if meant != key and meant in fields else []
    elsewhere = here or [dotted for dotted in _schema_keys() if dotted.rsplit(".", 1)[-1] == meant]
    if elsewhere:
        per_epoch = " = epochs x training images / train.batch_size" if "epoch" in key.lower() else ""
        return f" (i2i's key is {' or '.join(elsewhere)}{per_epoch})" if meant != key else f" (it belongs in {' or '.join(elsewhere)})"
    keys = [name for name, field in fields.items() if not isinstance(field, dict)]
    return f" ([{prefix}] takes {', '.join(keys)})" if keys else ""


def _check_value(where: str, dotted: str, value: Any, field: Field) -> None:
    if isinstance(value, float) and not math.isfinite(value) and matches_type(1.0, field.type):  # a number key
        raise RecipeError(f"{where}: {dotted} = {value}: expected a finite number")
    if not matches_type(value, field.type):
        hint = (" (the reference's --gpu_ids is train.device = 'cuda:N' here, and its -1 'cpu')"
                if dotted == "train.device" and isinstance(value, int) else "")
        if typing.get_origin(field.type) is list and not isinstance(value, list):  # one value where a list is due
            hint = f", as {dotted} = [{format_value(value)}]"
        raise RecipeError(f"{where}: {dotted} = {format_value(value)}: expected {describe_type(field.type)}{hint}")
    if field.check is not None and not field.check(value):
        raise RecipeError(f"{where}: {dotted} = {format_value(value)}: expected {field.expect}")


def _refuse_a_misspelt_name(where: str, section: str, table: Mapping[str, Any]) -> None:
    """A component table without ``name`` but with a key close to it (``[task] nam = ...``):
    that key is named, rather than only ``name`` as missing."""
    typo = next((key for key in table if isinstance(key, str) and key != "name" and did_you_mean(key, ["name"])), None)
    if typo is not None:
        raise RecipeError(f"{where}: {section}.{typo}: unknown key{did_you_mean(typo, ['name'])}")


def validate(data: dict, where: str = "<recipe>") -> dict:
    """Check the fixed keys and fill their defaults; component options are checked later."""
    for section in data:
        if section not in SCHEMA:
            homes = [name for name, fields in SCHEMA.items() if section in fields]
            if homes and not isinstance(data[section], dict):  # `steps = 5` above every table
                raise RecipeError(f"{where}: {section}: not a section; it belongs in [{homes[0]}] ({homes[0]}.{section})")
            reference = reference_option_hint(section)  # `netG = "unet_256"` above every table
            if reference:
                raise RecipeError(f"{where}: {section}: not a section of i2i's recipes{reference}")
            meant = KEY_SYNONYMS.get(section.lower())  # `learning_rate = 2e-4` above every table: another tool's name
            elsewhere = [dotted for dotted in _schema_keys() if meant and dotted.rsplit(".", 1)[-1] == meant]
            if elsewhere and not isinstance(data[section], dict):
                per_epoch = " = epochs x training images / train.batch_size" if "epoch" in section.lower() else ""
                raise RecipeError(f"{where}: {section}: not a section; i2i's key is {' or '.join(elsewhere)}{per_epoch}")
            raise RecipeError(f"{where}: {section}: unknown section{did_you_mean(section, SCHEMA)}; sections: {', '.join(SCHEMA)}")
    for section, table in data.items():
        if not isinstance(table, dict):
            fixed = [key for key, field in SCHEMA.get(section, {}).items() if not isinstance(field, dict)]
            example = ("[losses.l1] weight = 1.0" if section == "losses" else
                       f"[{section}] name = ..." if section in (*REQUIRED, "discriminator") or not fixed else
                       f"[{section}] {fixed[0]} = ...")  # [train] steps = ...: those tables name nothing
            raise RecipeError(f"{where}: {section} = {format_value(table)}: expected a table, e.g. {example}")
    for section in REQUIRED:
        if "name" not in data.get(section, {}):
            stray = [other for other, table in data.items() if other != section and section in table]
            if stray:  # `generator = "unet"` written under [data]: say where it went, not only what is missing
                value = format_value(data[stray[0]][section])
                raise RecipeError(f"{where}: {stray[0]}.{section} = {value}: [{stray[0]}] has no key {section}; "
                                  f"write [{section}] name = {value}")
            _refuse_a_misspelt_name(where, section, data.get(section, {}))
            raise RecipeError(f"{where}: {section}.name: missing; say which {section} to use, e.g. [{section}] name = ...")
    out: dict[str, Any] = {}
    for section, fields in SCHEMA.items():
        if section == "losses":
            out["losses"] = _check_losses(where, data.get("losses", {}))
            continue
        if section == "discriminator" and "discriminator" not in data:
            continue
        table = data.get(section, {})
        component = section in COMPONENT_SECTIONS
        out[section] = _check_fields(where, section, table, fields, open_keys=component)
        if component and not isinstance(out[section].get("name"), str):
            if "name" not in out[section]:
                _refuse_a_misspelt_name(where, section, table)
            raise RecipeError(f"{where}: {section}.name: expected a string naming a registered {section}")
    problem = resize_problem(out["data"]["resize"], out["data"]["size"])
    if problem:  # here, so that validate says so before any data is read
        raise RecipeError(f"{where}: {problem}")
    return out


def resize_problem(resize: int, size: int) -> str | None:
    """What is wrong with ``data.resize`` for crops of ``data.size`` px, or None."""
    if 0 < resize < size:
        return (f"data.resize = {resize}: smaller than data.size = {size}, so no crop would fit; "
                f"use 0 (keep each image's size) or at least {size}")
    return None


def _check_losses(where: str, losses: Any) -> dict:
    if not isinstance(losses, dict):
        raise RecipeError(f"{where}: losses: expected tables such as [losses.l1] weight = 100.0")
    out = {}
    for label, term in losses.items():
        if not isinstance(term, dict):
            raise RecipeError(f"{where}: {toml_key('losses', label)}: expected a table, e.g. [{toml_key('losses', label)}] "
                              f"weight = 1.0{reference_option_hint(label)}")
        term = dict(term)
        term.setdefault("name", label)
        term.setdefault("weight", 1.0)
        if not isinstance(term["name"], str):
            raise RecipeError(f"{where}: {toml_key('losses', label, 'name')} = {format_value(term['name'])}: expected a "
                              "string")
        _check_value(where, toml_key("losses", label, "weight"), term["weight"], Field(float, 1.0, "", _non_negative, "a number >= 0"))
        out[label] = term
    return out


def _loss_examples(label: str) -> str:
    """Loss names to suggest for a ``[losses.LABEL]`` table that names none: GAN objectives for a
    label that reads as one (``gan``, ``adv``), reconstruction losses otherwise."""
    adversarial = any(part in label.lower() for part in ("gan", "adv", "disc"))
    return "'lsgan' (or 'vanilla', 'hinge')" if adversarial else "'l1' (or 'l2', 'charbonnier', 'ssim')"


def check_components(recipe: dict, registry: Registry, where: str = "<recipe>",
                     components: Collection[str] | None = None) -> None:
    """Check each component name exists and its options are ones it declares; fill defaults.
    ``components``: only these kinds (all when None; see :func:`load_recipe`)."""
    tables = [(section, kind, recipe[section]) for section, kind in COMPONENT_SECTIONS.items() if section in recipe]
    tables += [(toml_key("losses", label), "losses", term) for label, term in recipe["losses"].items()]
    for prefix, kind, table in tables:
        if components is not None and kind not in components:
            continue
        try:
            component = registry.get(kind, table["name"])
        except UnknownComponentError as exc:
            label = prefix.split(".", 1)[1] if kind == "losses" else None
            if label is not None and table["name"] == label.strip('"'):  # no name given: the label stood for it
                raise UnknownComponentError(f"{where}: {prefix}.name: unknown loss '{table['name']}' (a loss table "
                                            "that sets no name takes its label as the name); set name = "
                                            f"{_loss_examples(label)} in [{prefix}]; see 'i2i list losses'") from None
            raise UnknownComponentError(f"{where}: {prefix}.name: {exc}", guess=exc.guess) from None
        except UserError as exc:  # an ambiguous name: the recipe's (or a --set's) to settle
            raise RecipeError(f"{where}: {prefix}.name: {exc}") from None
        options = component_options(table, prefix)
        from .options import as_declared, validate_options

        validate_options(f"{where}: {prefix}", options, component.options, open_ended=component.open_ended,
                         table_keys=table_keys(prefix), plugin=component.plugin)
        for key, option in component.options.items():
            if key in options:
                table[key] = as_declared(table[key], option.annotation)
            elif representable(option.default):
                table[key] = copy.deepcopy(option.default)
    for dotted, kind in (("train.callbacks", "callbacks"), ("eval.metrics", "metrics")):
        section, key = dotted.split(".")
        for name in recipe[section][key] if components is None or kind in components else ():
            try:
                registry.get(kind, name)
            except UserError as exc:
                raise RecipeError(f"{where}: {dotted}: {exc}") from None


def table_keys(section: str) -> set[str]:
    """The keys a component's recipe table keeps for itself, which are not the component's
    options: ``name``; a loss term's ``weight`` (``losses.<label>``); the section's schema
    fields (``discriminator.conditional``)."""
    return {"name"} | ({"weight"} if section.startswith("losses.") else set()) | set(SCHEMA.get(section, {}))


def component_options(table: dict, section: str) -> dict:
    """The options to pass to a component factory: its table less :func:`table_keys`."""
    fixed = table_keys(section)
    return {k: v for k, v in table.items() if k not in fixed}


def component_error(recipe: Recipe, section: str, exc: UserError) -> UserError:
    """A component's own :class:`UserError` (``depth = 0: ...``, raised building it or, for a
    loss, on its first images) with the recipe and the table in front, as the schema's errors
    have, or the ``--set`` the option came from."""
    text = str(exc)
    if text.startswith(f"{recipe.source}:") or text.startswith("--set "):
        return exc
    table: Any = recipe
    for part in _path_of(section):
        table = table[part]
    first = text.split(" ", 1)[0].rstrip(":")
    if first.startswith(f"{section}."):
        where = ""  # it already names the key
    elif first in table:
        where = f"{section}."  # "depth = 0: ..." -> "generator.depth = 0: ..."
    else:
        where = f"[{section}] "
    return _blame_override(RecipeError(f"{recipe.source}: {where}{text}"), recipe.source, recipe.overrides)


def build_component(registry: Registry, kind: str, recipe: Recipe, section: str, *args: Any) -> Any:
    """Build the component that the recipe's table ``section`` names (``generator``, ``losses.l1``).

    A factory's own checks (an option out of range, say) raise :class:`UserError`; they are
    re-raised with the recipe and the table in front, as the schema's errors are.
    """
    table: Any = recipe
    for part in _path_of(section):
        table = table[part]
    try:
        built = registry.build(kind, table["name"], *args, **component_options(table, section))
    except UserError as exc:
        raise component_error(recipe, section, exc) from None
    except Exception as exc:  # a bug in the plugin's factory, not in the recipe
        plugin = registry.get(kind, table["name"]).plugin
        failure = PluginError(f"{recipe.source}: {section}.name = '{table['name']}': plugin '{plugin}' failed to build "
                              f"it: {exception_line(exc)}; report this to the plugin's author (I2I_TRACEBACK=1 shows where)")
        raise _blame_override(failure, recipe.source, recipe.overrides, recipe) from exc  # a --set's table: where it came from
    expected = _built_type(kind)
    if expected is not None and not isinstance(built, expected[0]):
        plugin = registry.get(kind, table["name"]).plugin
        raise PluginError(f"{recipe.source}: {section}.name = '{table['name']}': plugin '{plugin}' built a "
                          f"{type(built).__name__}, not a {expected[1]}; report this to the plugin's author")
    return built


def _built_type(kind: str) -> tuple[type, str] | None:
    """What a factory of this kind must return, and its public name (losses are checked where
    their kind matters)."""
    if kind in ("generators", "discriminators"):
        from torch import nn

        return nn.Module, "torch.nn.Module"
    if kind == "tasks":
        from .task import Task

        return Task, "i2i.Task"
    return None


# -- writing ------------------------------------------------------------------------------------
def dumps_toml(data: dict) -> str:
    """Write nested dicts of TOML-able values (None values are left out)."""
    lines: list[str] = []

    def emit(table: dict, prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
        tables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{_key(key)} = {_toml_value(value)}")
        if prefix and (scalars or not tables):
            lines.append("")
        for key, value in tables.items():
            emit(value, f"{prefix}.{_key(key)}" if prefix else _key(key))

    emit(data, "")
    return "\n".join(lines).rstrip() + "\n"


def _key(key: str) -> str:
    """One key as TOML spells it: bare, or quoted (``"edge loss"``, ``"a.b"``)."""
    return key if re.fullmatch(r"[A-Za-z0-9_\-]+", key) else _toml_value(key)


def toml_key(*parts: str) -> str:
    """A dotted key as a recipe spells it, for messages and ``--set``: ``losses."edge loss".weight``
    (a loss label may hold a space or a dot, which a plain join would misread)."""
    return ".".join(_key(part) for part in parts)


#: A dotted TOML key at the start of a message: bare parts or double-quoted ones.
_DOTTED_KEY = re.compile(r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")(?:\.(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"))*')


def _path_of(key: str) -> list[str]:
    """The parts of a dotted key (``losses."a.b"`` is two), as TOML reads them."""
    return _key_path(key) or [key]


def _one_inside_the_other(a: list[str], b: list[str]) -> bool:
    """Whether two key paths are one, or one lies inside the other's table."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        import json

        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
