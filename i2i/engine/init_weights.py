"""``train.init_from``: a new run that starts from an earlier run's weights (fine-tuning).

The source is an i2i run folder (its latest checkpoint, as ``i2i translate`` takes), one of its
``checkpoints/step_N`` folders, or a run made by ``i2i import-weights``. The generator takes the
weights the source translates with (its EMA copy when it kept one) and must match this recipe's
generator exactly; the discriminator takes the source's when it has one that fits, and starts
from its initialisation otherwise (said in a note). Optimiser state, step count, schedules and
random streams start afresh: this is a new run, numbered from step 0. A resumed run continues
from its own checkpoint and never reads ``train.init_from`` again, so the source may be moved
or deleted once the run has saved one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, UserError
from ..messages import collected
from ..paths import user_path
from ..recipe import Recipe, recipe_error
from . import checkpoint as ckpt

KEY = "train.init_from"


@dataclass
class InitialWeights:
    """What a run was started from, for its ``run.json`` and the first lines it prints."""

    checkpoint: Path
    step: int
    generator_file: str
    discriminator_file: str | None  # None: D starts from its initialisation
    notes: list[str]

    def record(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "step": self.step, "generator": self.generator_file,
                "discriminator": self.discriminator_file}


def pin_init_from(recipe: Recipe) -> None:
    """A relative ``train.init_from`` (relative to the working directory, as data folders are)
    or one under ``~`` is saved absolute, so the run's recipe means the same from anywhere."""
    value = recipe["train"]["init_from"]
    if value and user_path(value, KEY).exists():
        recipe["train"]["init_from"] = os.path.abspath(user_path(value, KEY))


def load_initial_weights(recipe: Recipe, G: nn.Module, D: nn.Module | None) -> InitialWeights | None:
    """Copy ``train.init_from``'s weights into ``G`` (and ``D`` where they fit); None when the
    recipe sets none. A source that is missing, damaged or holds another generator is a
    :class:`RecipeError` naming the key, before any step."""
    value = recipe["train"]["init_from"]
    if not value:
        return None
    shown = f'{KEY} = "{value}"'
    folder = user_path(value, KEY)
    checkpoint, state, notes = _source_checkpoint(recipe, shown, folder)
    source = _source_recipe(checkpoint)
    notes += _task_notes(checkpoint, source, recipe)
    g_file = checkpoint / "generator_ema.safetensors"
    if not g_file.is_file():
        g_file = checkpoint / "generator.safetensors"
    tensors = _weights(recipe, shown, g_file)
    problem = ckpt.state_mismatch(G.state_dict(), tensors)
    if problem:
        raise recipe_error(recipe, f"{shown}: its generator does not fit this recipe's generator "
                                   f"'{recipe['generator']['name']}' ({problem}){_fit_hint(source, recipe, G, tensors)}",
                           also=("generator", "task"))
    _copy_into(G, tensors)
    differing = _differences(source, recipe, "generator") if _same_name(source, recipe, "generator") else ""
    if differing:  # the same shapes, another network all the same (an output layer, a padding)
        notes.append(f"{shown}: the weights fit, but that run trained {differing}, and this recipe's generator "
                     "differs there: set the same to fine-tune the network it trained")
    d_file = None
    if D is not None:
        found = checkpoint / "discriminator.safetensors"
        if not found.is_file():
            notes.append(f"{shown}: {checkpoint} holds no discriminator weights, so the discriminator starts from its "
                         "initialisation")
        else:
            d_tensors = _weights(recipe, shown, found)
            d_problem = ckpt.state_mismatch(D.state_dict(), d_tensors)
            if d_problem:
                notes.append(f"{shown}: its discriminator does not fit this recipe's ({d_problem}), so the "
                             "discriminator starts from its initialisation")
            else:
                _copy_into(D, d_tensors)
                d_file = found.name
    step = state.get("step")
    return InitialWeights(Path(os.path.abspath(checkpoint)), step if isinstance(step, int) else 0, g_file.name, d_file, notes)


def _source_checkpoint(recipe: Recipe, shown: str, folder: Path) -> tuple[Path, dict, list[str]]:
    """The checkpoint ``folder`` names, its state and the notes finding it gave (a damaged
    LATEST, say), which the caller shows once however many processes read it."""
    store = ckpt.CheckpointStore(folder)
    if (folder / "recipe.toml").is_file() and store.pointer("LATEST") is None and store.newest_complete() is None:
        raise recipe_error(recipe, f"{shown}: that run has no checkpoint yet (it is still training, or stopped before "
                                   "its first); start from it once it has saved one")
    if folder.is_file() and folder.name in ("LATEST", "BEST") and folder.parent.name == "checkpoints":
        named = folder.read_text(errors="replace").strip()
        hint = f" (checkpoints/{named})" if named else ""
        raise recipe_error(recipe, f"{shown}: a pointer file; give the checkpoint folder it names{hint} or the run folder")
    with collected() as notes:
        try:
            checkpoint = ckpt.find_checkpoint(folder)
            state = ckpt.read_state(checkpoint)
        except CheckpointError as exc:
            reason = _without_path(str(exc), str(folder))
            asks = "" if "give " in reason else "; give an i2i run folder or one of its checkpoints/step_N folders"
            where = (f" (a relative path starts from the working directory, {os.getcwd()})"
                     if not folder.is_absolute() and not folder.exists() else "")
            raise recipe_error(recipe, f"{shown}: {reason}{where}{asks}") from None
    return checkpoint, state, [note.removeprefix("i2i: note: ") for note in notes]


def _weights(recipe: Recipe, shown: str, file: Path) -> dict[str, torch.Tensor]:
    try:
        tensors = ckpt.read_tensors(file)
        ckpt.refuse_nonfinite(tensors, file)
    except CheckpointError as exc:
        reason = str(exc).split("; use an earlier checkpoint")[0]  # the resume's advice is not this run's
        raise recipe_error(recipe, f"{shown}: {reason}; start from another of its checkpoints "
                                   "(give its checkpoints/step_N folder)") from None
    return tensors


def _copy_into(module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        module.load_state_dict(tensors)


def _without_path(message: str, value: str) -> str:
    """A checkpoint error starts with the path, which the key's value already shows."""
    for prefix in (f"{value}: ", f"{os.path.expanduser(value)}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def _source_recipe(checkpoint: Path) -> dict | None:
    from ..recipe import read_toml

    path = ckpt.run_dir_of(checkpoint) / "recipe.toml"
    try:
        return read_toml(path)
    except (UserError, OSError):
        return None


def _differences(source: dict | None, recipe: Recipe, section: str) -> str:
    """The options of the source run's ``section`` table that this recipe sets otherwise, as
    ``generator.width = 32, ...`` (the source's values); empty when they agree. Options only one
    of the two tables names (another task's) are left out, and so is ``name`` for the task,
    which :func:`_task_notes` words."""
    from ..options import format_value

    theirs = source.get(section) if isinstance(source, dict) else None
    if not isinstance(theirs, dict) or (section == "task" and not _same_name(source, recipe, "task")):
        return ""
    ours = json.loads(json.dumps(dict(recipe[section])))
    if not _same_name(source, recipe, section):  # another component (a preset's options are its own): all of its table
        changed = list(theirs)
    else:
        changed = [key for key in theirs if key in ours and theirs[key] != ours[key]]
    return ", ".join(f"{section}.{key} = {format_value(theirs[key])}" for key in changed)


def _fit_hint(source: dict | None, recipe: Recipe, G: nn.Module, tensors: dict[str, torch.Tensor]) -> str:
    """What to set for the source's generator to fit: the wrapping a task adds (``task.residual``),
    the task's and generator's options that this recipe sets otherwise, or the other task the
    source was trained for (which decides the channels)."""
    from ..options import format_value

    ours = G.state_dict()
    wraps = _wrapper(ours, tensors)
    if wraps:  # the same network, under this task's wrapper
        residual = " (task.residual = false takes it plain)" if "residual" in recipe["task"] else ""
        return f"; this recipe's task wraps its generator ({wraps}.*) and that run's did not{residual}"
    wrapped = _wrapper(tensors, ours)
    if wrapped:
        residual = " (task.residual = true wraps it so)" if "residual" in recipe["task"] else ""
        return f"; that run's task wrapped its generator ({wrapped}.*) and this recipe's does not{residual}"
    generator = _differences(source, recipe, "generator")
    if not _same_name(source, recipe, "task"):
        with_generator = f", with {generator}" if generator else ""
        return f"; that run was trained for task.name = {format_value(source['task']['name'])}{with_generator}"
    listed = ", ".join(filter(None, (_differences(source, recipe, "task"), generator)))
    return f"; that run trained {listed}: set the same here" if listed else ""


def _same_name(source: dict | None, recipe: Recipe, section: str) -> bool:
    """Whether the source run's ``section`` names the component this recipe does (or does not
    say); ``plugin:name`` and ``name`` are the same one."""
    table = source.get(section) if isinstance(source, dict) else None
    name = table.get("name") if isinstance(table, dict) else None
    return name is None or str(name).split(":")[-1] == str(recipe[section]["name"]).split(":")[-1]


def _wrapper(outer: dict[str, torch.Tensor], inner: dict[str, torch.Tensor]) -> str | None:
    """The attribute under which ``outer``'s network holds ``inner``'s (``net``, as a residual
    task wraps its generator), when that is all that differs; else None."""
    prefixes = {key.split(".", 1)[0] for key in outer}
    if len(prefixes) != 1 or len(outer) != len(inner):
        return None
    prefix = prefixes.pop()
    fits = all(key.split(".", 1)[-1] in inner and inner[key.split(".", 1)[-1]].shape == value.shape
               for key, value in outer.items())
    return prefix if fits else None


def _task_notes(checkpoint: Path, source: dict | None, recipe: Recipe) -> list[str]:
    """Weights trained for another task may still fit (3 channels in and out): say so; and for
    the same task under other options (a pair task's direction turned round sets the network
    the opposite mapping to learn), which ones."""
    if _same_name(source, recipe, "task"):
        differing = _differences(source, recipe, "task")
        return [f"{KEY}: that run trained {differing}, and this run fine-tunes it with this recipe's task options"
                ] if differing else []
    return [f"{KEY}: {checkpoint} was trained for task {source['task']['name']!r}; this run fine-tunes it for task "
            f"{recipe['task']['name']!r}"]


def refuse_on_resume(overrides: list[str] | tuple[str, ...]) -> None:
    """``--set train.init_from=...`` on a resume would do nothing: the run goes on from its own
    checkpoint. Refused, so nobody believes the weights were swapped."""
    from ..errors import called_from_the_command_line

    given = [o for o in overrides if isinstance(o, str) and o.split("=", 1)[0].strip() == KEY]
    if given:
        instead = ("start a new run with this --set instead of --resume" if called_from_the_command_line() else
                   "start a new run, i2i.train(RECIPE, overrides=[...]), with this override instead of resume=")
        raise UserError(f"--set {given[0]}: {KEY} starts a new run from other weights; a resumed run continues from its "
                        f"own checkpoint; to fine-tune from it, {instead}")
