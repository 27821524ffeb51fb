"""Recipe loading: the closed schema, overrides, component options and clear errors."""

import re
import shlex
import shutil
from pathlib import Path

import pytest

import i2i
from i2i.errors import RecipeError, UnknownComponentError
from i2i.recipe import dumps_toml, load_recipe, parse_override

ROOT_RECIPES = Path(__file__).resolve().parent.parent / "recipes"

BASE = """
[task]
name = "gray2color"
[data]
size = 32
[generator]
name = "unet_small"
[losses.l1]
weight = 10.0
[train]
steps = 5
"""


def write(tmp_path, text, name="r.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text, overrides=()):
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, text), overrides)
    return str(info.value)


def test_defaults_filled_and_loss_name_defaults_to_label(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE))
    assert recipe["train"]["steps"] == 5
    assert recipe["train"]["batch_size"] == 1
    assert recipe["data"]["source"] == "sample"
    assert recipe["losses"]["l1"]["name"] == "l1"
    assert recipe["train"]["g"]["betas"] == [0.5, 0.999]
    assert "discriminator" not in recipe
    # component options are filled from what the component declares
    assert recipe["generator"]["width"] == i2i.registry().get("generators", "unet_small").options["width"].default


def test_unknown_key_suggests_the_right_one(tmp_path):
    message = error_of(tmp_path, BASE.replace("steps = 5", "stpes = 5"))
    assert message == f"{tmp_path / 'r.toml'}: train.stpes: unknown key (did you mean 'steps'?)"


def test_unknown_section(tmp_path):
    assert "trian: unknown section (did you mean 'train'?)" in error_of(tmp_path, BASE + "[trian]\nsteps = 1\n")


def test_wrong_type_and_range(tmp_path):
    assert "train.steps = 'five': expected an integer" in error_of(tmp_path, BASE.replace("steps = 5", 'steps = "five"'))
    assert "train.steps = 0: expected an integer from 1 to 1000000000000" in error_of(tmp_path, BASE.replace("steps = 5", "steps = 0"))
    assert "train.steps = 1000000000000000: expected an integer from 1 to" in error_of(tmp_path, BASE, ["train.steps=1000000000000000"])
    assert "train.d_steps = 1000000: expected an integer from 1 to 100" in error_of(tmp_path, BASE, ["train.d_steps=1000000"])
    assert "train.device = 'gpu'" in error_of(tmp_path, BASE + "", ["train.device='gpu'"])
    assert "train.precision = 'fp8': expected 'auto' | 'fp32' | 'bf16' | 'fp16'" in error_of(tmp_path, BASE, ["train.precision=fp8"])


def test_toml_syntax_error_names_line_and_column(tmp_path):
    message = error_of(tmp_path, "[task]\nname = \n")
    assert message.startswith(f"{tmp_path / 'r.toml'}: line 2, column")
    assert "TOML syntax error" in message


def test_a_recipe_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Notepad on Windows saves UTF-8 with a BOM; tomllib alone calls that a syntax error at line 1."""
    path = tmp_path / "notepad.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode("utf-8"))
    assert load_recipe(path) == load_recipe(write(tmp_path, BASE))


def test_a_recipe_saved_as_utf16_says_so(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(BASE, encoding="utf-16")  # Notepad's "Unicode", with its byte-order mark
    with pytest.raises(RecipeError, match="r.toml: UTF-16 text \\(its byte-order mark says so\\); save it as UTF-8"):
        load_recipe(path)


def test_a_windows_path_in_double_quotes_gets_a_hint(tmp_path):
    message = error_of(tmp_path, BASE.replace("size = 32", 'size = 32\nsource = "C:\\Users\\me\\photos"'))
    assert "TOML syntax error" in message
    assert message.endswith("write a Windows path in single quotes ('C:\\photos') or with forward slashes")
    recipe = load_recipe(write(tmp_path, BASE.replace("size = 32", "size = 32\nsource = 'C:\\Users\\me\\photos'")))
    assert recipe["data"]["source"] == "C:\\Users\\me\\photos"  # the hint's way works


def test_missing_required_tables(tmp_path):
    assert "generator.name: missing" in error_of(tmp_path, "[task]\nname = 'gray2color'\n")
    # the name written into another table: that key is the mistake to point at
    misplaced = "[task]\nname = 'gray2color'\n[data]\nsize = 32\ngenerator = 'unet_small'\n"
    assert error_of(tmp_path, misplaced).endswith(
        "data.generator = 'unet_small': [data] has no key generator; write [generator] name = 'unet_small'")


def test_unknown_component_suggests(tmp_path):
    with pytest.raises(UnknownComponentError) as info:
        load_recipe(write(tmp_path, BASE.replace('"unet_small"', '"unett"')))
    assert "generator.name: unknown generator 'unett' (did you mean 'unet'?); see 'i2i list generators'" in str(info.value)


def test_component_options_are_validated(tmp_path):
    assert "generator.dpeth: unknown option (did you mean 'depth'?)" in error_of(tmp_path, BASE, ["generator.dpeth=3"])
    # a slip of the table's own keys, which are no component's options
    assert "losses.l1.wieght: unknown option (did you mean 'weight'?); it takes no options (the table holds only its own name, weight)" \
        in error_of(tmp_path, BASE, ["losses.l1.wieght=3"])
    assert "generator.nmae: unknown option (did you mean 'name'?)" in error_of(tmp_path, BASE, ["generator.nmae=unet"])
    assert "generator.norm = 'group': expected 'batch' | 'instance' | 'none'" in error_of(tmp_path, BASE, ["generator.norm=group"])
    assert "losses.l1.weight = -1" in error_of(tmp_path, BASE, ["losses.l1.weight=-1"])


def test_overrides_are_toml_literals_or_bare_words(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE), ["train.steps=7", "generator.name='unet_128'", "data.size=64", "task.space=rgb",
                                                  "losses.gan.name=hinge", "discriminator.name=patchgan"])
    assert recipe["train"]["steps"] == 7
    assert recipe["generator"]["name"] == "unet_128"
    assert recipe["task"]["space"] == "rgb"
    assert recipe["losses"]["gan"]["name"] == "hinge"
    assert recipe.has_discriminator
    assert parse_override("train.g.betas=[0.9, 0.99]") == (["train", "g", "betas"], [0.9, 0.99])
    assert parse_override("data.source=/data/photos") == (["data", "source"], "/data/photos")
    assert parse_override("data.source=~/photos") == (["data", "source"], "~/photos")
    # a bare word is text for a text key, though TOML reads it as a date, a number or a boolean
    assert parse_override("output.dir=2024-01-01") == (["output", "dir"], "2024-01-01")
    assert parse_override("data.source=2024") == (["data", "source"], "2024")
    assert parse_override("output.dir=true") == (["output", "dir"], "true")
    assert parse_override("train.steps=2024") == (["train", "steps"], 2024)  # a number key keeps its number
    assert parse_override("output.dir='true'") == (["output", "dir"], "true")


def test_a_set_that_names_another_component_leaves_out_the_old_ones_options(tmp_path):
    """`--set generator.name=resnet_9blocks` kept unet_small's depth (refused, and blamed on the
    file), and `generator.name=unet_256` kept a narrow width: another network than its name says."""
    text = BASE.replace('name = "unet_small"', 'name = "unet_small"\nwidth = 16\ndepth = 3\nnorm = "instance"')
    recipe = load_recipe(write(tmp_path, text), ["generator.norm=batch", "generator.name=resnet_9blocks"])
    assert recipe["generator"]["width"] == 64 and recipe["generator"]["norm"] == "batch"  # the --set one is kept
    assert recipe.notes == ["--set generator.name=resnet_9blocks replaces generator 'unet_small', so the recipe's "
                            "options for it are left out: width = 16, depth = 3 (--set generator.OPTION=VALUE gives "
                            "one to the new one)"]
    same = load_recipe(write(tmp_path, text), ["generator.name=unet_small"])  # the same component: all kept
    assert same["generator"]["width"] == 16 and same.notes == []
    # qualified, as the error for a name two plugins register asks: still the same component
    qualified = load_recipe(write(tmp_path, text), ["generator.name=nets:unet_small"])
    assert qualified["generator"]["width"] == 16 and qualified.notes == []
    whole = load_recipe(write(tmp_path, text), ['generator={name="unet_small", depth=2}'])
    assert whole["generator"]["width"] != 16 and whole["generator"]["depth"] == 2
    assert whole.notes == ["--set generator={name=\"unet_small\", depth=2} replaces the recipe's whole [generator] table, "
                           "so these are left out: width = 16, norm = 'instance' (--set generator.KEY=VALUE changes one "
                           "key and keeps the rest)"]
    assert load_recipe(whole).notes == whole.notes  # checked again by i2i.train: still said


def test_bad_override_syntax(tmp_path):
    assert "expected dotted.key=VALUE" in error_of(tmp_path, BASE, ["train.steps"])
    assert "is not a TOML value (quote strings: output.dir='text')" in error_of(tmp_path, BASE, ["output.dir=my runs"])
    # strings inside a list or table: quoting the whole value, as the hint said, is refused next ("a list")
    assert error_of(tmp_path, BASE, ["eval.metrics=[mae, psnr]"]).endswith(
        "(quote the strings inside it: eval.metrics=['mae', 'psnr'])")
    assert error_of(tmp_path, BASE, ["discriminator={name=patchgan}"]).endswith(
        "(quote the strings inside it: discriminator={name='patchgan'})")
    assert error_of(tmp_path, BASE, ["train.steps=10**15"]).endswith("(write the number out, 1000000000000000: TOML "
                                                                     "has no arithmetic)")
    for typo in ("train.steps=", "train.steps==2", "train.g.lr=1e-3,2"):  # a number mistyped, not a string unquoted
        assert error_of(tmp_path, BASE, [typo]).endswith("(one value after '=', such as 500, 0.5, true or 'text')")
    # a value followed by more TOML on a new line: the rest was dropped without a word
    for override in ("train.steps=5\ntrain.seed=3", 'train.steps=5\n[output]\ndir="/tmp/elsewhere"'):
        assert "more than one TOML value after '='; give one --set per key" in error_of(tmp_path, BASE, [override])
    assert load_recipe(write(tmp_path, BASE), ['output.dir="""runs/a"""'])["output"]["dir"] == "runs/a"


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE), ["discriminator.name=patchgan", "losses.gan.name=vanilla"])
    again = load_recipe(write(tmp_path, dumps_toml(dict(recipe)), "again.toml"))
    assert dict(again) == dict(recipe)


def test_a_components_table_default_is_recorded_like_any_other(tmp_path):
    """A dict default was left out of the run's recipe.toml, so a rerun took whatever default
    the plugin had by then."""
    import types

    from torch import nn

    from i2i import plugins

    def tabled_net(in_channels: int, out_channels: int, *, widths: dict = {"inner": 4, "outer": [2, 3]}) -> nn.Module:
        return nn.Conv2d(in_channels, out_channels, 1)

    def register_generators(register):
        register("tabled", tabled_net)

    plugins.reset()
    try:
        i2i.register_plugin(types.SimpleNamespace(register_generators=i2i.hookimpl(register_generators)), "tables")
        recipe = load_recipe(write(tmp_path, BASE.replace('"unet_small"', '"tabled"')))
        assert recipe["generator"]["widths"] == {"inner": 4, "outer": [2, 3]}
        again = load_recipe(write(tmp_path, dumps_toml(dict(recipe)), "again.toml"))
        assert again["generator"]["widths"] == {"inner": 4, "outer": [2, 3]}
    finally:
        plugins.reset()


def test_api_accepts_a_dict():
    recipe = i2i.load_recipe({"task": {"name": "denoise"}, "generator": {"name": "dncnn", "depth": 5}, "losses": {"l2": {}}})
    assert recipe["generator"]["depth"] == 5
    assert recipe.source == "<recipe>"


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))


@pytest.mark.parametrize("recipe_file", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_recipe_trains(recipe_file, tmp_path):
    """Each recipe in recipes/ is valid and runs end to end (2 steps on small photos)."""
    from helpers import make_photos

    from i2i import plugins

    photos = make_photos(tmp_path / "photos", count=3, size=(72, 68))
    overrides = [f'data.source="{photos}"', 'data.val_source=""', "data.val_fraction=0.34", "train.steps=2", "train.batch_size=2",
                 'train.device="cpu"', "eval.crop=64", "eval.max_images=1", f'output.dir="{tmp_path / "run"}"',
                 'output.progress="none"', "output.tensorboard=false"]
    if "pair_source" in recipe_file.read_text():  # pairs across two folders: the same photos in another
        shutil.copytree(photos, tmp_path / "pairs")
        overrides += [f'data.pair_source="{tmp_path / "pairs"}"', 'data.val_pair_source=""', "data.size=64"]
    recipe = load_recipe(recipe_file, overrides)
    assert recipe_file.read_text().startswith("#"), "each recipe opens with a comment saying what it trains"
    plugins.reset()
    result = i2i.train(recipe, quiet=True)
    assert (result.run_dir / "checkpoints" / "LATEST").is_file()


def test_integers_given_for_float_options_reach_the_component_as_floats():
    """TOML writes 30 for 30.0; a factory that declared a float must not get an int (an int
    makes torch.full(shape, value) an integer tensor), and the saved recipe says 30.0."""
    recipe = load_recipe(str(Path(__file__).resolve().parents[1] / "recipes" / "denoise.toml"), ["task.sigma=30", "train.steps=3"])
    assert type(recipe["task"]["sigma"]) is float and type(recipe["train"]["steps"]) is int
    assert "sigma = 30.0" in dumps_toml(dict(recipe))
    blind = load_recipe(str(Path(__file__).resolve().parents[1] / "recipes" / "denoise.toml"), ["task.sigma=[0, 55]"])
    assert [type(v) for v in blind["task"]["sigma"]] == [float, float]


def test_a_batch_size_no_memory_could_hold_is_refused_by_name(tmp_path):
    """A stray digit in train.batch_size once took all memory until the kernel killed i2i."""
    from i2i.engine.components import check_recipe
    from helpers import TINY_G2C

    recipe = {**TINY_G2C, "train": {**TINY_G2C["train"], "batch_size": 10**11}, "output": {"dir": str(tmp_path / "run")}}
    message = r"^<recipe>: train.batch_size = 100000000000: 100000000000 crops of 16x16 px need at least [\d,.]+ GB to " \
              r"train on, and cpu has [\d.]+ GB free; lower train.batch_size \(or data.size\)$"
    with pytest.raises(RecipeError, match=message):
        check_recipe(load_recipe(recipe))  # i2i validate
    with pytest.raises(RecipeError, match=message):
        i2i.train(recipe, quiet=True)
    assert not (tmp_path / "run").exists()


def test_settings_the_recipe_makes_inert_get_a_note(tmp_path):
    """They were accepted and ignored without a word: a run that ignores a setting looks like one
    that used it."""
    gan = BASE + '[discriminator]\nname = "patchgan"\n[losses.gan]\nname = "lsgan"\n'
    recipe = load_recipe(write(tmp_path, gan), ["data.val_source=/photos/val", "data.val_fraction=0.1",
                                                 "train.d.schedule=cosine", "train.d.decay_start=0.8",
                                                 "losses.gan.weight=0", "train.g_warmup_steps=5",
                                                 "train.ema_warmup=true", "train.g.warmup_steps=20"])
    assert recipe.notes == [
        "data.val_fraction = 0.1 has no effect: data.val_source is set, so the run validates on that folder and "
        "trains on all of data.source",
        "train.g.warmup_steps = 20 is above train.steps = 5, so the learning rate never reaches train.g.lr = 0.0002 "
        "(it ends at 25% of it)",
        "train.d.decay_start = 0.8 has no effect under train.d.schedule = 'cosine' (only 'linear' decays from it)",
        "train.ema_warmup = true has no effect: train.ema is 0, so no EMA is kept; set train.ema (0.999, say) for one",
        "losses.gan.weight = 0: the term is still computed each step but trains nothing; leave [losses.gan] out to drop it",
        "train.g_warmup_steps = 5 is not below train.steps = 5, so the adversarial terms never join and the "
        "discriminator trains for nothing"]
    # the same settings where they act, and a run's recipe.toml (every default written out): no note
    assert load_recipe(write(tmp_path, gan), ["train.d.schedule=linear", "train.d.decay_start=0.8",
                                              "train.g_warmup_steps=4", "train.ema=0.99",
                                              "train.ema_warmup=true", "train.g.warmup_steps=4"]).notes == []
    # a linear schedule that never decays, and a decay_start inside the warm-up: both silent before
    assert load_recipe(write(tmp_path, gan), ["train.g.schedule=linear", "train.g.decay_start=1.0"]).notes == [
        "train.g.decay_start = 1.0 under train.g.schedule = 'linear' never decays: the learning rate stays constant, as "
        "schedule = 'constant' keeps it"]
    assert load_recipe(write(tmp_path, gan), ["train.steps=8", "train.g.schedule=linear", "train.g.warmup_steps=6",
                                              "train.g.decay_start=0.25"]).notes == [
        "train.g.decay_start = 0.25 falls inside the warm-up (train.g.warmup_steps = 6), so the linear decay starts "
        "only when the warm-up ends"]
    # equal: lr is reached at the last step (the note said "never", then "ends at 100%"); 1500 of 1501 is not 100 %
    assert load_recipe(write(tmp_path, gan), ["train.steps=4", "train.g.warmup_steps=4"]).notes == [
        "train.g.warmup_steps = 4 equals train.steps, so the learning rate reaches train.g.lr = 0.0002 only at the last "
        "step"]
    assert "(it ends at 99.9% of it)" in load_recipe(write(tmp_path, gan), ["train.steps=1500",
                                                                         "train.g.warmup_steps=1501"]).notes[0]
    saved = load_recipe(write(tmp_path, dumps_toml(dict(load_recipe(write(tmp_path, gan)))), "saved.toml"))
    assert saved.notes == []


@pytest.mark.parametrize("line, hint", [
    ("source = my photos  # the folder", 'a text value goes in quotes: source = "my photos"'),
    ("source = photos", 'a text value goes in quotes: source = "photos"'),
    ("flip = True", "TOML writes true and false in lower case: flip = true"),
    ("resize = -.5", "a TOML number needs a digit before its point: -0.5, not -.5"),
])
def test_a_bare_value_in_a_recipe_file_gets_a_hint_at_what_toml_wants(tmp_path, line, hint):
    """'TOML syntax error: Invalid value' alone left a user who wrote source = photos guessing."""
    recipe = write(tmp_path, BASE.replace("[data]\n", f"[data]\n{line}\n"))
    with pytest.raises(RecipeError, match=rf"^{re.escape(str(recipe))}: line \d+, column \d+: TOML syntax error: "
                                          rf"Invalid value; {re.escape(hint)}$"):
        load_recipe(recipe)


def test_discriminator_settings_without_a_discriminator_get_a_note(tmp_path):
    """A regression recipe (DnCNN) with a tuned train.d or d_steps trains exactly as without them:
    the note says so, rather than leaving the user to think the setting did something."""
    recipe = load_recipe(write(tmp_path, BASE), ["train.d.lr=1e-3", "train.d.betas=[0.9, 0.99]", "train.d_steps=2",
                                                 "train.d.warmup_steps=500"])
    assert recipe.notes == [
        "train.d.lr = 0.001, train.d.betas = [0.9, 0.99], train.d.warmup_steps = 500, train.d_steps = 2 have no "
        "effect: the recipe has no [discriminator], so only the generator trains (add one, e.g. [discriminator] "
        "name = 'patchgan', for a GAN)"]
    assert load_recipe(write(tmp_path, BASE), ["train.g_warmup_steps=3"]).notes == [
        "train.g_warmup_steps = 3 has no effect: the recipe has no [discriminator], so only the generator trains (add "
        "one, e.g. [discriminator] name = 'patchgan', for a GAN)"]
    # defaults, written out as a run's recipe.toml writes them, say nothing
    saved = dumps_toml(dict(load_recipe(write(tmp_path, BASE))))
    assert load_recipe(write(tmp_path, saved, "saved.toml")).notes == []
    gan = BASE + '[discriminator]\nname = "patchgan"\n[losses.gan]\nname = "lsgan"\n'
    assert load_recipe(write(tmp_path, gan), ["train.d.lr=1e-3", "train.d_steps=2"]).notes == []


def test_a_run_prints_the_recipes_notes_once(tmp_path, capsys):
    from helpers import make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos", count=3)
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 1}, data={"val_source": str(photos), "val_fraction": 0.5})
    i2i.train(i2i.load_recipe(recipe), quiet=True)
    assert capsys.readouterr().err.count("i2i: note: data.val_fraction = 0.5 has no effect: data.val_source is set") == 1


@pytest.mark.parametrize("override, hint", [
    ("data.batch_size=2", "(it belongs in train.batch_size or eval.batch_size)"),
    ("train.size=32", "(it belongs in data.size)"),
    ("train.lr=0.1", "(it belongs in train.g.lr and train.d.lr)"),
    ("train.g.lerning_rate=0.1", "(i2i's key is train.g.lr)"),
    ("train.epochs=3", "(i2i's key is train.steps = epochs x training images / train.batch_size)"),
    # the reference pix2pix's options, by the names its users type: close spellings meant otherwise
    ("data.load_size=286", "(the reference's --load_size is data.resize here)"),
    ("data.crop_size=256", "(the reference's --crop_size is data.size here)"),
    ("data.no_flip=true", "(the reference's --no_flip is data.flip = false here)"),
    ("train.print_freq=100", "(the reference's --print_freq is output.log_every, in steps here)"),
    ("data.dataset_mode='aligned'", "(the reference's --dataset_mode is task \"paired\": A|B files side by side "
                                    "(aligned), or data.pair_source folders; unaligned (CycleGAN) data is not trained by "
                                    "i2i here)"),
    ("train.norm='instance'", "(the reference's --norm is generator.norm and discriminator.norm (\"batch\", "
                              "\"instance\" or \"none\"; the reference sets both) here)"),
    ("output.name='x'", "(the reference's --name is the run's folder here: output.dir, or i2i run --out DIR)"),
    ("train.n_epochs=3", "(the reference's --n_epochs is train.steps = epochs x training images / train.batch_size here)"),
    ("output.out='x'", "(i2i's key is output.dir)"),
    ("data.sorce='x'", "(did you mean 'source'?)"),
    ("data.zzz=1", "([data] takes source, size, val_fraction, pair_source, val_source, val_pair_source, cache_gb, resize, upscale_small, flip, rotate, workers)"),
])
def test_an_unknown_key_says_where_it_belongs_or_what_the_table_takes(tmp_path, override, hint):
    key = override.split("=")[0]
    assert error_of(tmp_path, BASE, [override]).endswith(f"{key}: unknown key {hint}")


@pytest.mark.parametrize("override, said", [
    ("learning_rate=1e-3", "learning_rate: not a section; i2i's key is train.g.lr or train.d.lr"),
    ("epochs=3", "epochs: not a section; i2i's key is train.steps = epochs x training images / train.batch_size"),
    ("netG=unet_256", 'netG: not a section of i2i\'s recipes (the reference\'s --netG is generator.name, e.g. "unet_256", '
                      '"unet_128" or "resnet_9blocks" (pix2pix\'s ResNet: with generator.norm = "batch" and '
                      'generator.dropout = true, its defaults; the resnet presets are CycleGAN\'s) here)'),
    ("direction=BtoA", 'direction: not a section of i2i\'s recipes (the reference\'s --direction is task.direction = "AtoB" '
                       'or "BtoA" of task "paired" here)'),
    ("steps=3", "steps: not a section; it belongs in [train] (train.steps)"),
])
def test_another_tools_key_above_every_table_says_what_i2i_calls_it(tmp_path, override, said):
    """As the top line of a recipe, or a --set without a table, it was 'unknown section' alone."""
    assert error_of(tmp_path, BASE, [override]).endswith(said)


def test_a_set_reaches_keys_toml_quotes(tmp_path):
    """A recipe may label a loss term with a space or an accent ([losses."edge loss"]): --set
    refused every such key as not dotted.key=VALUE, so the term's weight could not be changed."""
    from helpers import TINY_G2C, tiny_recipe

    recipe = tiny_recipe(tmp_path, tmp_path / "run", base=TINY_G2C)
    recipe["losses"] = {"edge loss": {"name": "l1"}}
    path = tmp_path / "r.toml"
    path.write_text(dumps_toml(recipe))
    loaded = load_recipe(path, ['losses."edge loss".weight=3', "losses.'ré'.name=l1"])
    assert loaded["losses"]["edge loss"]["weight"] == 3.0 and loaded["losses"]["ré"]["name"] == "l1"
    with pytest.raises(RecipeError, match=r"""^--set losses.ré.weight=2: expected dotted.key=VALUE, e.g. --set """
                                          r"""train.steps=500; a key with spaces or other letters is quoted as in TOML"""):
        load_recipe(path, ["losses.ré.weight=2"])


def test_a_quoted_loss_label_is_spelt_as_toml_and_its_set_is_blamed(tmp_path):
    """'losses.edge loss.weight' was blamed on the file though a --set gave it, and a label
    with a dot ([losses."a.b"]) was a KeyError traceback when its loss was built."""
    from helpers import TINY_G2C, make_photos, tiny_recipe

    from i2i.engine.components import check_recipe

    photos = make_photos(tmp_path / "photos", count=2, size=(24, 24))
    path = tmp_path / "r.toml"
    path.write_text(dumps_toml(tiny_recipe(photos, tmp_path / "run", base=TINY_G2C)))
    with pytest.raises(RecipeError, match=r'^--set losses."edge loss".weight=-1: losses."edge loss".weight = -1: '
                                          r'expected a number >= 0'):
        load_recipe(path, ['losses."edge loss".name=l2', 'losses."edge loss".weight=-1'])
    dotted = load_recipe(path, ['losses."a.b".name=l2', 'losses."a.b".weight=2'])
    check_recipe(dotted)  # builds every loss term
    assert dotted["losses"]["a.b"] == {"name": "l2", "weight": 2.0}
    with pytest.raises(RecipeError, match=r'^--set losses."a.b".weight=-1: losses."a.b".weight = -1'):
        load_recipe(path, ['losses."a.b".weight=-1'])


def test_a_set_that_makes_up_a_loss_table_is_a_recipe_error(tmp_path):
    """An override's misspelt label ('losses.L1') raised UnknownComponentError, which a program's
    'except i2i.RecipeError' did not catch, though no component name was wrong."""
    from helpers import TINY_G2C, make_photos, tiny_recipe

    path = tmp_path / "r.toml"
    path.write_text(dumps_toml(tiny_recipe(make_photos(tmp_path / "photos", count=2, size=(24, 24)), tmp_path / "run",
                                           base=TINY_G2C)))
    for override, said in (("losses.L1.weight=3", "the recipe has no [losses.L1]; did you mean the override losses.l1.weight=3?"),
                           ("losses.NEW.weight=1", "unknown loss 'NEW'")):
        with pytest.raises(RecipeError, match=re.escape(said)):
            i2i.load_recipe(path, overrides=[override])


def test_a_table_set_whole_is_blamed_on_its_set(tmp_path):
    """--set 'discriminator={name="patchgan"}' was blamed on the file: the recipe's table then
    also held the defaults validation filled in, so it no longer equalled the --set's value."""
    from helpers import TINY_G2C, make_photos, tiny_recipe

    from i2i.engine.components import check_recipe

    photos = make_photos(tmp_path / "photos", count=2, size=(40, 40))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, data={"size": 32})
    recipe.pop("discriminator", None)
    recipe["losses"] = {"l1": {"weight": 1.0}}
    path = tmp_path / "r.toml"
    path.write_text(dumps_toml(recipe))
    with pytest.raises(RecipeError, match=r'^--set discriminator=\{name="patchgan"\}: discriminator: no adversarial loss'):
        check_recipe(load_recipe(path, ['discriminator={name="patchgan"}']))


def test_numpy_float32_values_keep_the_number_written_not_its_binary_rounding(tmp_path):
    """np.float32(1e-3) reached the run's recipe.toml as 0.0010000000474974513."""
    import numpy as np

    from helpers import TINY_G2C, tiny_recipe

    recipe = tiny_recipe(tmp_path, tmp_path / "run", base=TINY_G2C)
    recipe["train"]["g"] = {"lr": np.float32(1e-3), "betas": np.array([0.5, 0.999], dtype=np.float32)}
    loaded = load_recipe(recipe)
    assert loaded["train"]["g"]["lr"] == 0.001 and loaded["train"]["g"]["betas"] == [0.5, 0.999]
    assert "lr = 0.001\n" in dumps_toml(dict(loaded))


@pytest.mark.parametrize("override, said", [
    ("generator.no_dropout=true", "generator.no_dropout: unknown option (the reference's --no_dropout is generator.dropout = "
                                  "false here); options:"),
    ("generator.ngf=64", "generator.ngf: unknown option (the reference's --ngf is generator.width here)"),
    ("losses.l1.lambda_L1=100", "losses.l1.lambda_L1: unknown option (the reference's --lambda_L1 is [losses.l1] weight "
                                "here); it takes no options (the table holds only its own name, weight)"),
    ("losses.l1.name=wgangp", "unknown loss 'wgangp' (the reference's wgangp is name = 'wgan': its pix2pix and CycleGAN "
                              "never add the gradient penalty; a [losses.gp] term with weight = 10 beside it does)"),
    ("pool_size=0", "pool_size: not a section of i2i's recipes (the reference's --pool_size has no counterpart here: i2i "
                    "keeps no image pool"),
    ("losses.lambda_L1=100", "losses.lambda_L1: expected a table, e.g. [losses.lambda_L1] weight = 1.0 (the reference's "
                             "--lambda_L1 is [losses.l1] weight here)"),
    ("train.device=-1", "train.device = -1: expected a string (the reference's --gpu_ids is train.device = 'cuda:N' here, "
                        "and its -1 'cpu')"),
    ("generator.netG=resnet_9blocks", "generator.netG: unknown option (the reference's --netG is generator.name, e.g. "
                                      "\"unet_256\", \"unet_128\" or \"resnet_9blocks\" (pix2pix's ResNet: with "
                                      "generator.norm = \"batch\" and generator.dropout = true, its defaults"),
    ("task.name=pix2pix", "unknown task 'pix2pix' (pix2pix's training on pairs is task 'paired'"),
])
def test_the_reference_pix2pix_options_and_names_say_what_to_write_instead(tmp_path, override, said):
    """A migrating user typing the reference's names read 'did you mean 'dropout'?' for
    no_dropout (the opposite) and 'wgan' for wgangp (which the reference defines a gradient
    penalty for, and never adds)."""
    from i2i.errors import UserError

    with pytest.raises(UserError) as info:
        load_recipe(write(tmp_path, BASE), [override])
    assert said in str(info.value)


def test_values_nested_thousands_deep_are_a_syntax_error_not_a_recursion_traceback(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("[train]\nsteps = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(RecipeError, match=r"deep.toml: TOML syntax error: values nested too deeply"):
        load_recipe(path)


def test_a_recipe_file_name_holding_a_newline_is_read_or_named_as_a_file(tmp_path):
    """It was taken for TOML text given to the Python API."""
    path = tmp_path / "new\nline.toml"
    shutil.copy(ROOT_RECIPES / "denoise.toml", path)
    assert load_recipe(str(path))["task"]["name"] == "denoise"
    with pytest.raises(RecipeError, match=r"^'.*nope\\nx.toml': no such recipe file$"):
        load_recipe(str(tmp_path / "nope\nx.toml"))
    with pytest.raises(RecipeError, match="load_recipe got TOML text where a path belongs"):
        load_recipe((ROOT_RECIPES / "denoise.toml").read_text())


def test_a_misspelt_name_key_is_named_with_the_key_meant(tmp_path):
    """[task] nam = ... said only that task.name was missing, and a --set discriminator.nam that
    a table needs a name; the key written is the one to fix."""
    path = tmp_path / "r.toml"
    path.write_text('[task]\nnaem = "denoise"\n[generator]\nname = "unet"\n')
    with pytest.raises(RecipeError, match=r"r.toml: task.naem: unknown key \(did you mean 'name'\?\)$"):
        load_recipe(path)
    with pytest.raises(RecipeError, match=r"^--set discriminator.nam=patchgan: discriminator.nam: unknown key \(did you "
                                          r"mean 'name'\?\)$"):
        load_recipe(ROOT_RECIPES / "color2gray.toml", overrides=["discriminator.nam=patchgan"])


@pytest.mark.parametrize("text, said", [
    ("[data]\nsize = 64\nsize = 32\n", r"line 3, column 10: TOML syntax error: Cannot overwrite a value; size is given "
                                       r"twice in its table"),
    ("[données]\nx = 1\n", r"line 1, column 6: .*; a key or table name with letters beyond A-Z, digits, _ and - goes in "
                           r"quotes"),
    ("[train]\nétapes = 3\n", r"line 2, column 1: TOML syntax error: Invalid statement; a key or table name with letters "
                              r"beyond"),
])
def test_toml_mistakes_tomllib_words_tersely_get_the_key_and_the_fix(tmp_path, text, said):
    path = tmp_path / "r.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError, match=said):
        load_recipe(path)


def recipe_comment_commands() -> list[tuple[str, str]]:
    """``(recipe, command)`` for each indented ``i2i ...`` command line a shipped recipe's
    comments show, its ``\\`` continuation lines joined."""
    commands = []
    for recipe_file in SHIPPED:
        lines = [line[1:].strip() for line in recipe_file.read_text().splitlines() if line.startswith("#   ")]
        command = ""
        for line in lines:
            if command or line.startswith("i2i "):
                command += line.removesuffix("\\").strip() + " "
                if not line.endswith("\\"):
                    commands.append((recipe_file.stem, command.strip()))
                    command = ""
    return commands


def test_the_run_commands_in_the_recipes_comments_are_valid(tmp_path):
    """Their 'scale it up' lines are what users copy; a key renamed or misspelt there failed
    only after they had set up a GPU machine. Each `i2i run`'s recipe and --sets load as
    `i2i validate` loads them, its folder of photos replaced by one that exists."""
    from helpers import make_photos
    from plugin_env import ROOT

    runs = [(name, shlex.split(command)) for name, command in recipe_comment_commands() if command.startswith("i2i run ")]
    assert len({name for name, _ in runs}) >= 8
    assert any("discriminator.n_layers=3" in args for _, args in runs)  # gray2color's pix2pix-like scale-up
    photos = make_photos(tmp_path / "photos", count=2, size=(20, 18))
    for name, args in runs:
        recipe_file, rest = args[2], args[3:]
        assert rest[::2] == ["--set"] * (len(rest) // 2), args
        # the data folders named (the user's photos, pix2pix's facades) replaced: a later --set wins
        load_recipe(ROOT / recipe_file, [*rest[1::2], f"data.source={photos}", "data.val_source=''"])
