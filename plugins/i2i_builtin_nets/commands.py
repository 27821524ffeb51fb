"""``i2i import-weights``: turn a reference ``latest_net_G.pth`` into an i2i run directory."""

from __future__ import annotations

from pathlib import Path

import click

import i2i


def import_reference_run(checkpoint: str | Path, task: str, out: str | Path, task_options: dict | None = None) -> Path:
    """Convert a reference pix2pix/CycleGAN generator checkpoint into a run directory.

    The run works with ``i2i translate``, ``i2i eval`` and ``i2i.load``. The task must match the
    checkpoint's channels (e.g. ``gray2color``: 1 -> 2, the reference's colorization model;
    ``paired``: 3 -> 3, a pix2pix or CycleGAN generator; ``denoise``: 3 -> 3, whose net then
    outputs the clean image, so ``residual = false``).
    The file is read with ``torch.load(weights_only=True)``: no code in it is executed.
    """
    from .reference import convert_reference_state_dict, detect_reference_architecture, read_reference_checkpoint

    path = Path(checkpoint)
    state = read_reference_checkpoint(path)
    try:
        name, options = detect_reference_architecture(state)
    except i2i.UserError as exc:
        raise i2i.UserError(f"{path}: {exc}") from None
    options = dict(options)
    in_ch, out_ch = options.pop("in_channels"), options.pop("out_channels")
    task_table = {"name": task, **(task_options or {})}
    if task == "denoise":
        task_table.setdefault("residual", False)  # the reference nets output the clean image
        if in_ch in (1, 3):  # other counts: the channel check below says what the weights map
            task_table.setdefault("channels", in_ch)
    try:  # the task's options are checked as a recipe's would be (an unknown one, a wrong type)
        recipe = i2i.load_recipe({"task": task_table, "generator": {"name": name, **options}, "losses": {"l1": {}}})
    except i2i.UserError as exc:  # there is no recipe: name the option the user gave
        text = str(exc).removeprefix("<recipe>: ")
        given = next((key for key in (task_options or {}) if text.startswith((f"task.{key}:", f"task.{key} "))), None)
        if given is not None:  # the --set that gave it
            value = task_options[given]
            text = f"--set {given}={value!r}: {text}" if isinstance(value, str) else f"--set {given}={value}: {text}"
        raise type(exc)(f"--task {task}: {text.removeprefix('task.name: ')}" if text.startswith("task.name: ") else text) from None
    built = i2i.registry().build("tasks", task, **{k: v for k, v in recipe["task"].items() if k != "name"})
    if (built.in_channels, built.out_channels) != (in_ch, out_ch):
        chosen = " (channels set from the weights' input)" if task == "denoise" and "channels" not in (task_options or {}) else ""
        fitting = _tasks_mapping(in_ch, out_ch)
        choose = f"tasks that map {in_ch} -> {out_ch}: {', '.join(fitting)}" if fitting else \
            f"no installed task maps {in_ch} -> {out_ch}"
        if task in fitting and task_options:  # the user's --set made the task another mapping
            given = " ".join(f"--set {key}={value!r}" if isinstance(value, str) else f"--set {key}={value}" for key, value in task_options.items())
            choose = f"'{task}' with its default options does: leave out {given}"
        raise i2i.UserError(
            f"{path}: the generator maps {in_ch} -> {out_ch} channels but task '{task}' needs "
            f"{built.in_channels} -> {built.out_channels}{chosen}; {choose}"
        )
    try:
        weights = convert_reference_state_dict(state, name, options)
    except i2i.UserError as exc:
        raise i2i.UserError(f"{path}: {exc}") from None
    # a reference run that diverged saved NaN weights: its run would not open (i2i refuses them)
    broken = next((key for key, tensor in weights.items() if tensor.is_floating_point() and not tensor.isfinite().all()), None)
    if broken is not None:
        raise i2i.UserError(f"{path}: {broken} holds NaN or infinite values (the reference run diverged before this save?); "
                            "import an earlier epoch's weights (<epoch>_net_G.pth)")
    return i2i.create_run_from_weights(recipe, weights, out, note=f"imported from {path}")


#: Task options that set the channels, tried beside a task's defaults (``paired``'s)
CHANNEL_OPTIONS = ("input_channels", "target_channels")


def _tasks_mapping(in_channels: int, out_channels: int) -> list[str]:
    """The installed tasks that map ``in_channels`` to ``out_channels``: with their default
    options, or with ``--set input_channels=N --set target_channels=M`` where they take those."""
    registry, names = i2i.registry(), []
    for name in registry.names("tasks"):
        tries = [({}, "")]
        if set(CHANNEL_OPTIONS) <= set(registry.get("tasks", name).options):
            tries.append((dict(zip(CHANNEL_OPTIONS, (in_channels, out_channels))),
                          f" (--set input_channels={in_channels} --set target_channels={out_channels})"))
        for options, how in tries:
            try:
                task = registry.build("tasks", name, **options)
            except Exception:  # noqa: BLE001 - a task that needs options, or not these: not a suggestion
                continue
            if (task.in_channels, task.out_channels) == (in_channels, out_channels):
                names.append(name + how)
                break
    return names


@click.command("import-weights")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--task", required=True, help="The task the model was trained for: gray2color, paired (pix2pix, CycleGAN), denoise, ...")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create (never overwritten).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Task options, e.g. --set sigma=50 (or --set task.sigma=50).")
def import_weights(checkpoint: str, task: str, out: str, overrides: tuple[str, ...]) -> None:
    """Bring a generator trained with the reference pix2pix/CycleGAN code into i2i.

    Reads CHECKPOINT (the reference's latest_net_G.pth, a plain state dict), detects the
    architecture (U-Net depth/width/norm, ResNet blocks), and writes a run directory that
    i2i translate, i2i eval and i2i.load accept.

    \b
    Example:
      i2i import-weights checkpoints/color_pix2pix/latest_net_G.pth --task gray2color --out runs/imported
      i2i translate runs/imported old_photos/ --out coloured/
    """
    options = {}
    for text in overrides:
        key, value = i2i.parse_override(text)
        if len(key) == 2 and key[0] == "task":  # the recipe's own spelling, task.sigma
            key = key[1:]
        if len(key) != 1:
            raise i2i.UserError(f"--set {text}: import-weights takes the task's options, e.g. --set sigma=50; "
                                f"'{'.'.join(key)}' is not one")
        options[key[0]] = value
    try:
        run_dir = import_reference_run(checkpoint, task, out, options)
    except i2i.UserError as exc:  # a task option's own check: name the --set it came from, as i2i run does
        said = str(exc)
        for text in reversed(overrides):
            named = f"task.{i2i.parse_override(text)[0][-1]} = "
            if not said.startswith("--set ") and named in said:
                raise i2i.UserError(f"--set {text.strip()}: {said[said.index(named):]}") from None
        raise
    click.echo(f"i2i: imported {checkpoint} into {run_dir}: {describe_import(run_dir)}")


def _as_in_a_recipe(value: object) -> str:
    """A recipe value as TOML spells it: ``false``, not Python's ``False``; strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def describe_import(run_dir: Path) -> str:
    """What an import found and recorded, from the run's recipe: the generator's settings (a
    U-Net's dropout assumed) and the task's, so that a wrong guess (AtoB for a BtoA model) shows
    before an evaluation scores it as broken."""
    recipe = i2i.load_recipe(Path(run_dir) / "recipe.toml")
    generator = dict(recipe["generator"])
    name = generator.pop("name")
    shown = ", ".join(f"{key} = {_as_in_a_recipe(value)}"
                      for key, value in generator.items() if key in ("depth", "blocks", "width", "norm", "dropout", "padding"))
    assumed = " (dropout = true assumed: it leaves no weights, and the reference's pix2pix trains with it)" \
        if name == "unet" else ""
    task = dict(recipe["task"])
    task_name = task.pop("name")
    task_shown = ", ".join(f"{key} = {_as_in_a_recipe(value)}" for key, value in task.items())
    task_part = f"task {task_name} ({task_shown}; --set changes these)" if task_shown else f"task {task_name}"
    return f"generator {name} ({shown}){assumed}; {task_part}"
