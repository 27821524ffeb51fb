"""The command line: help with examples, user errors as one line with exit status 2."""

import json
import os

import pytest
from click.testing import CliRunner

from i2i.cli import cli
from plugin_env import ROOT

RECIPE = str(ROOT / "recipes" / "color2gray.toml")


@pytest.fixture
def runner():
    from i2i.cli import _add_plugin_commands

    _add_plugin_commands()
    return CliRunner()


def invoke(runner, args):
    return runner.invoke(cli, args, catch_exceptions=False)


COMMANDS = ["run", "validate", "plugins", "list", "translate", "eval", "import-weights"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(runner, command):
    result = invoke(runner, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_validate_prints_the_resolved_recipe(runner, tmp_path):
    result = invoke(runner, ["validate", RECIPE, "--set", "train.steps=3"])
    assert result.exit_code == 0, result.output
    assert "[train]\nsteps = 3\n" in result.output and "[train.g]" in result.output


@pytest.mark.parametrize("args, message", [
    (["validate", "missing.toml"], "missing.toml: no such recipe file"),
    (["validate", "/dev/null"], "/dev/null: not a regular file; give the recipe's .toml file"),  # was "no such recipe file"
    (["validate", RECIPE, "--set", "train.batch_size=0"], "train.batch_size = 0: expected an integer >= 1"),
    (["validate", RECIPE, "--set", "data.size=big"], "data.size = 'big': expected an integer"),
    (["validate", RECIPE, "--set", "train.lr=0.1"], "train.lr: unknown key (it belongs in train.g.lr and train.d.lr)"),
    (["validate", RECIPE, "--set", "data.flip=nan"], "data.flip = nan: expected true or false"),  # not "a finite number"
    (["validate", RECIPE, "--set", "train.device=nan"], "train.device = 'nan': expected 'auto', 'cpu'"),
    (["validate", RECIPE, "--set", "eval.metrics=mae"],
     "eval.metrics = 'mae': expected a list of strings, as eval.metrics = ['mae']"),
    (["run"], "give a recipe file"),
    (["run", "--resume", "nowhere"], "nowhere: no such run folder; pass the folder a run was written to"),
    (["list", "generators", "zzz*"], None),
    (["validate", RECIPE, "--set", "train.steps=ten"], "--set train.steps=ten: train.steps = 'ten': expected an integer"),
    # a missing data folder: validate catches it too, and says where a relative one starts from
    (["validate", RECIPE, "--set", "data.source='../nowhere'"],
     "--set data.source='../nowhere': data.source = \"../nowhere\": no such folder (a relative folder starts from the "
     "working directory, "),
    (["validate", RECIPE, "--set", "generator=1"], "generator = 1: expected a table, e.g. [generator] name = ..."),
    (["validate", RECIPE, "--set", "train=5"], "train = 5: expected a table, e.g. [train] steps = ..."),  # no name there
    (["validate", RECIPE, "--set", 'eval.metrics=["pnsr"]'], "eval.metrics: unknown metric 'pnsr' (did you mean 'psnr'?)"),
    (["validate", RECIPE, "--set", 'train.callbacks=["nope"]'], "train.callbacks: unknown callback 'nope'"),
    (["run", RECIPE, "--set", "train.stpes=2", "--nproc", "2"], "train.stpes: unknown key (did you mean 'steps'?)"),
    (["run", "--resume", "runs/x", "--out", "elsewhere"], "--out does not apply to --resume"),
    (["translate", "runs/x", "photo.png", "--out", "o", "--device", "gpu"], "--device = 'gpu': not a device i2i can use"),
    (["eval", "runs/x", "--device", "cuda:x"], "--device = 'cuda:x': not a device i2i can use"),
    # a U-Net deeper than any crop can be: no size suggested beyond data.size's own limit, and the --set named
    (["validate", str(ROOT / "recipes" / "denoise-unet.toml"), "--set", "generator.depth=16"],
     "--set generator.depth=16: data.size = 64: generator 'unet' needs a multiple of 65536; no data.size (at most 16384) "
     "is one; lower the generator's depth"),
    # the shipped single photos for a task that reads pairs: i2i run refused them, validate passed them
    (["validate", str(ROOT / "recipes" / "pix2pix.toml"), "--set", "data.source=sample", "--set", "data.val_source=''"],
     'data.source = "sample": the photos shipped with i2i are single photos, and this task reads files that hold a '
     "pair side by side (A|B)"),
    (["validate", str(ROOT / "recipes" / "real-pairs.toml"), "--set", "data.source=sample", "--set", "data.val_source=''"],
     'data.source = "sample": the photos shipped with i2i have no pairs in data.pair_source = "pairs/clean"'),
    # what creating the run's folder refuses, validate refuses too (it passed what the run refused)
    (["validate", RECIPE, "--set", "output.dir=/dev/null"], "output.dir = '/dev/null': a device of that name is there"),
    # the reference's --epoch 20: a step is named by its checkpoint folder
    (["eval", "runs/x", "--checkpoint", "20"], "for the checkpoint of step 20, give its folder in place of the run: "
                                                "RUN/checkpoints/step_0000020"),
    (["validate", RECIPE, "--set", "data.resize=10"], "--set data.resize=10: data.resize = 10: smaller than data.size"),
    (["validate", RECIPE, "--set", "train.g.lr=nan"], "--set train.g.lr=nan: train.g.lr = nan: expected a finite number"),
    # a --set that brings in a table the file lacks is blamed, not the file
    (["validate", RECIPE, "--set", "losses.L1.weight=2"], "--set losses.L1.weight=2: the recipe has no [losses.L1]; did you mean --set losses.l1.weight=2?"),
    (["validate", RECIPE, "--set", "losses.NEW.weight=1"],
     "--set losses.NEW.weight=1: losses.NEW.name: unknown loss 'NEW' (a loss table that sets no name takes its label as "
     "the name); set name = 'l1' (or 'l2', 'charbonnier', 'ssim') in [losses.NEW]; see 'i2i list losses' (the recipe has "
     "no [losses.NEW]; this --set added it)"),
    (["validate", RECIPE, "--set", "losses.gan.name=lsgan", "--set", "losses.adv.weight=1"],
     "losses.adv.name: unknown loss 'adv' (a loss table that sets no name takes its label as the name); set name = "
     "'lsgan' (or 'vanilla', 'hinge') in [losses.adv]"),
    (["validate", RECIPE, "--set", 'losses.l1.name="nope"'], "--set losses.l1.name=\"nope\": losses.l1.name: unknown loss 'nope'"),
    (["validate", RECIPE, "--set", "data.workers=500"], "data.workers = 500: expected an integer from 0 to 64"),
    (["validate", RECIPE, "--set", "data.resize=100000"], "data.resize = 100000: expected an integer from 0 to 16384"),
    (["eval", "runs/x", "--crop", "3"], "Invalid value for '--crop': 3: expected 0 (whole images) or an integer from 8"),
    (["validate", RECIPE, "--set", "train.g.betas=[0.5,.999]"], "a TOML number needs a digit before its point: 0.999, not .999"),
    (["validate", RECIPE, "--set", "data.source=C:\\photos\\x"], "write a Windows path in single quotes, data.source='C:\\photos\\x'"),
    (["validate", RECIPE, "--set", "steps=5"], "--set steps=5: steps: not a section; it belongs in [train] (train.steps)"),
    (["validate", RECIPE, "--set", 'train.callbacks="x"'], "train.callbacks = 'x': expected a list of strings"),
    # what Click itself refuses: one line too, not its usage, hint, blank line and error
    (["eval", "runs/x", "--crop", "-1"], "Invalid value for '--crop': -1: expected 0 (whole images) or an integer from 8 to 16384 (i2i eval --help lists"),
    (["run", RECIPE, "--nproc", "two"], "Invalid value for '--nproc': 'two' is not a valid integer range (i2i run --help"),
    (["run", RECIPE, "--resum", "runs/x"], "No such option '--resum'. Did you mean '--resume'?"),
    (["evl"], "No such command 'evl'. Did you mean 'eval'?"),
    # a component's own error, from a table a --set changed, names that --set
    (["validate", str(ROOT / "recipes" / "gray2color.toml"), "--set", "generator.name=dncnn"],
     "--set generator.name=dncnn: [generator] dncnn: residual = true needs as many input as output channels"),
    # sizes suggested suit both networks: ffdnet's multiple of 2 and multiscale's 93 px
    (["validate", str(ROOT / "recipes" / "denoise.toml"), "--set", "data.size=93", "--set", "generator.name=ffdnet",
      "--set", 'discriminator={name="multiscale"}'], "generator 'ffdnet' needs a multiple of 2; use 94"),
    (["validate", str(ROOT / "recipes" / "denoise.toml"), "--set", "data.size=92", "--set", "generator.name=ffdnet",
      "--set", 'discriminator={name="multiscale"}'],
     "needs at least 93 px; raise data.size (to 94) or lower discriminator.n_layers or discriminator.scales"),
    # the targets' own colourfulness never changes: the first checkpoint would stay the best
    (["validate", str(ROOT / "recipes" / "gray2color.toml"), "--set", "eval.best_metric=colourfulness_target"],
     "eval.best_metric = 'colourfulness_target': a value of the validation images themselves, the same at every "
     "evaluation, so the first checkpoint would stay the best; name a score of the outputs (colourfulness, "
     "delta_colourfulness, psnr, ssim)"),
    # DnCNN subtracts its own prediction: task.residual = false alone would change nothing
    (["validate", str(ROOT / "recipes" / "denoise-dncnn.toml"), "--set", "task.residual=false"],
     "--set task.residual=false: task.residual = false: the generator subtracts its prediction from its input itself"),
    # a border-leaving metric that would score every crop whole
    (["validate", str(ROOT / "recipes" / "superres.toml"), "--set", "task.scale=4", "--set", "eval.crop=8"],
     "--set eval.crop=8: eval.crop = 8: metric 'psnr_y_x4' leaves out 4 px a side, so it would score these crops whole; "
     "raise eval.crop above 11"),
    # one the scale's modcrop cuts down that far: 8 px at 3x is scored as 6
    (["validate", str(ROOT / "recipes" / "superres.toml"), "--set", "task.scale=3", "--set", "eval.crop=8"],
     "metric 'psnr_y_x3' leaves out 3 px a side, so it would score these crops (cut to 6 px, a multiple of the scale, "
     "3) whole; raise eval.crop above 8"),
    (["--nope"], "No such option '--nope' (i2i --help lists what it takes)"),
    # the reference's command lines, typed as they were
    (["run", RECIPE, "--dataroot", "x"], "No such option '--dataroot'; the reference's --dataroot is data.source here "
                                         "(set with --set KEY=VALUE) (i2i run --help lists what it takes)"),
    (["run", RECIPE, "--model", "pix2pix"], "No such option '--model'; the reference's --model is task.name = \"paired\" "
                                            "for pix2pix"),
    (["run", RECIPE, "--continue_train"], "the reference's --continue_train is i2i run --resume RUN_DIR here (i2i run"),
    (["run", RECIPE, "--norm", "instance"], "No such option '--norm'; the reference's --norm is generator.norm and "
                                            "discriminator.norm"),  # not click's "Did you mean '--nproc'?"
    # test.py's options on the commands that apply a run: what they are there, not recipe keys
    (["eval", "run", "--dataroot", "x"], "No such option '--dataroot'; the reference's --dataroot is --data DIR here"),
    (["eval", "run", "--lambda_L1", "3"], "the reference's --lambda_L1 is [losses.l1] weight here (a training setting: "
                                          "in the recipe, or i2i run RECIPE --set KEY=VALUE)"),
    (["translate", "run", "x", "--out", "y", "--direction", "AtoB"],
     "the reference's --direction is the run's own task.direction here: translate applies the run as it was trained"),
    (["translate", "run", "x", "--out", "y", "--eval"], "the reference's --eval is always in effect here"),
    (["train"], "No such command 'train'; i2i run RECIPE trains (the reference's train.py)"),
    (["test"], "No such command 'test'; i2i translate RUN IMAGES --out DIR applies a model, and i2i eval RUN --data DIR "
               "scores it (the reference's test.py)"),
])
def test_user_errors_are_one_line_with_status_2(runner, args, message):
    result = runner.invoke(cli, args)
    if message is None:
        assert result.exit_code == 1 and "no generators match" in result.output  # nothing found, as grep says it
        return
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("i2i: error: ")


def test_a_run_folder_that_cannot_be_made_is_one_line(runner, tmp_path):
    (tmp_path / "a_file").write_text("in the way")
    result = runner.invoke(cli, ["run", RECIPE, "--out", str(tmp_path / "a_file" / "run")])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"i2i: error: {tmp_path / 'a_file' / 'run'}: cannot create the run folder here "
                                     f"({tmp_path / 'a_file'} is a file); pass --out (or set output.dir to) a folder you can write to")


def test_data_errors_name_the_folder(runner, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(cli, ["run", RECIPE, "--set", f"data.source='{empty}'", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and str(empty) in result.output and len(result.output.strip().splitlines()) == 1
    # validate says so too (it said the recipe was fine, and the run then refused it); a
    # non-image file and a hidden one do not count, an image in a subfolder does
    (empty / "notes.txt").write_text("x")
    (empty / ".hidden.png").write_bytes(b"")
    result = runner.invoke(cli, ["validate", RECIPE, "--set", f"data.source='{empty}'"])
    assert result.exit_code == 2 and result.output == (f"i2i: error: --set data.source='{empty}': data.source = \"{empty}\": "
                                                       "no images in this folder or its subfolders (jpg, jpeg, jpe, jfif, "
                                                       "png, webp, bmp, tif, tiff)\n")
    (empty / "sub").mkdir()
    (empty / "sub" / "a.png").write_bytes(b"not read by validate")
    assert runner.invoke(cli, ["validate", RECIPE, "--set", f"data.source='{empty}'"]).exit_code == 0


def test_a_pair_folder_mistake_names_the_pair_folders_set(runner, tmp_path):
    """Blamed on the --set of the images' folder, or on no --set at all, the user looked in the
    wrong place: the pair folder with no partners, or the validation pair folder left unset."""
    from helpers import make_photos

    make_photos(tmp_path / "a", count=3, size=(40, 40))
    make_photos(tmp_path / "b", count=3, size=(40, 40), seed=1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.png").write_bytes((tmp_path / "b" / sorted(p.name for p in (tmp_path / "b").iterdir())[0]).read_bytes())
    real_pairs = str(ROOT / "recipes" / "real-pairs.toml")
    base = ["run", real_pairs, "--out", str(tmp_path / "run"), "--set", "train.steps=1", "--set", f"data.source='{tmp_path / 'a'}'", "--set", "data.size=32", "--set", "data.resize=0"]
    result = runner.invoke(cli, [*base, "--set", f"data.pair_source='{tmp_path / 'other'}'"])
    assert result.exit_code == 2 and result.output.splitlines()[-1].startswith(f"i2i: error: --set data.pair_source='{tmp_path / 'other'}': "), result.output
    assert "none of the 3 images of data.source" in result.output and "has its pair here" in result.output
    result = runner.invoke(cli, [*base, "--set", f"data.pair_source='{tmp_path / 'b'}'", "--set", f"data.val_source='{tmp_path / 'a'}'"])
    assert result.exit_code == 2 and result.output.splitlines()[-1].startswith(f"i2i: error: --set data.pair_source='{tmp_path / 'b'}': data.pair_source = "), result.output
    assert result.output.strip().endswith("set data.val_pair_source")


@pytest.mark.parametrize("overrides, message", [
    (["data.size=40"], "data.size = 40: generator 'unet_small' needs a multiple of 32; use 32 or 64"),
    (["generator.name='unet_256'"], "data.size = 32: generator 'unet_256' needs a multiple of 256; use 256; or keep 32 "
                                    "px with a shallower U-Net: generator.name = 'unet' with generator.depth = 5 takes "
                                    "multiples of 32"),
    (["generator.name='dncnn'", "generator.residual=false", "discriminator.name='patchgan'", "discriminator.n_layers=4", "losses.gan.name='vanilla'"],
     "data.size = 32: discriminator 'patchgan' needs at least 48 px; raise data.size (to 48) or lower discriminator.n_layers"),
])
def test_a_crop_size_the_networks_cannot_take_is_refused_before_training(runner, tmp_path, overrides, message):
    out = tmp_path / "run"
    args = ["run", RECIPE, "--out", str(out), "--set", "train.device='cpu'", "--set", "train.steps=2"]
    for override in overrides:
        args += ["--set", override]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()  # the mistake leaves no empty run folder behind


@pytest.mark.parametrize("override, message", [
    ("generator.depth=0", "--set generator.depth=0: generator.depth = 0: expected an integer >= 1"),
    ("losses.l1.name='lsgann'", "losses.l1.name: unknown loss 'lsgann' (did you mean 'lsgan'?)"),
])
def test_a_component_refusing_its_options_names_the_recipe_and_table(runner, tmp_path, override, message):
    out = tmp_path / "run"
    result = runner.invoke(cli, ["run", RECIPE, "--set", override, "--set", "train.steps=1", "--set", "train.device='cpu'",
                                 "--set", "eval.max_images=1", "--quiet", "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and not out.exists()


def test_list_json_shows_options(runner):
    components = json.loads(invoke(runner, ["list", "generators", "unet*", "--json"]).output)
    unet = next(c for c in components if c["name"] == "unet_256")
    assert unet["plugin"] == "nets" and unet["options"]["depth"]["default"] == 8


def test_list_takes_a_kind_as_a_recipe_table_names_it(runner):
    singular = invoke(runner, ["list", "generator", "unet*", "--json"])
    assert singular.exit_code == 0 and singular.output == invoke(runner, ["list", "Generators", "unet*", "--json"]).output
    assert "unet_256" in singular.output


def test_list_marks_presets_and_leaves_out_options_a_recipe_cannot_give(runner):
    listed = invoke(runner, ["list", "generators", "unet_256"]).output
    assert listed.splitlines()[0].endswith("[a preset of unet]")
    metrics = invoke(runner, ["list", "metrics", "colourfulness*"]).output.splitlines()
    # a recipe names a metric without options: colourfulness's 'absolute = false' could not be set
    assert metrics[1].startswith("colourfulness_abs ") and metrics[1].endswith("[a preset of colourfulness]")
    assert metrics[2].strip() == "absolute = true  (true or false)" and len(metrics) == 3
    # nor a callback's options: train.callbacks names them only
    import i2i

    class Drop(i2i.Callback):
        def __init__(self, at: float = 0.5):
            self.at = at

    class DropPlugin:
        @i2i.hookimpl
        def register_callbacks(self, register):
            register("drop_lr", Drop)
            register("drop_lr_late", Drop, defaults={"at": 0.9})

    i2i.register_plugin(DropPlugin(), "drop-test")
    listed = invoke(runner, ["list", "callbacks", "drop_lr*"]).output.splitlines()
    assert [line.split()[0] for line in listed] == ["drop_lr", "drop_lr_late", "at"] and "0.9" in listed[2]


def test_list_marks_an_alias_as_the_same_component(runner):
    """A plugin's alias was listed as a component of its own, unlike a preset."""
    import i2i

    class Aliased:
        @i2i.hookimpl
        def register_losses(self, register):
            register("soft_l1", lambda: (lambda fake, target: (fake - target).abs().mean()), aliases=["smooth_l1_ish"])

    i2i.register_plugin(Aliased(), "aliased")
    listed = invoke(runner, ["list", "losses", "s*_l1*"]).output.splitlines()
    assert [line.split()[0] for line in listed] == ["smooth_l1_ish", "soft_l1"]
    assert listed[0].endswith("[the same as soft_l1]") and listed[1].endswith("[the same as smooth_l1_ish]")


def test_list_names_a_twin_whose_bare_name_is_a_builtins_by_its_plugin(runner):
    """A plugin's 'twin', also registered as 'l1' (which means i2i's l1 in a recipe), was
    listed as '[the same as l1]': i2i's l1, it read."""
    import i2i

    class Twin:
        @i2i.hookimpl
        def register_losses(self, register):
            register("twin_l1", lambda: (lambda fake, target: (fake - target).abs().mean()), aliases=["l1"])

    i2i.register_plugin(Twin(), "twin")
    listed = invoke(runner, ["list", "losses", "twin_l1"]).output.splitlines()
    assert listed[0].endswith("[the same as twin:l1]")


def test_list_of_one_component_shows_what_its_options_mean(runner):
    """The options' types and defaults alone did not say what sigma's units are."""
    one = invoke(runner, ["list", "tasks", "denoise"]).output
    assert "``sigma`` (number or [low, high], default 25): noise standard deviation on the 0-255" in one
    every = invoke(runner, ["list", "tasks"]).output
    assert "sigma = 25.0" in every and "standard deviation" not in every  # a listing of several stays short


def test_quiet_run_prints_only_where_it_went(runner, tmp_path):
    (tmp_path / "run").mkdir()  # taken: the run goes to run-2, which a note and the summary line tell
    (tmp_path / "run" / "notes.txt").write_text("a run's")
    result = invoke(runner, ["run", RECIPE, "--set", "train.steps=1", "--set", "train.device='cpu'", "--set", "data.size=32",
                             "--set", "eval.max_images=1", "--quiet", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == (f"i2i: note: {tmp_path / 'run'} already exists (runs are never overwritten); this one goes to "
                        f"{tmp_path / 'run-2'}")
    assert len(lines) == 2 and lines[1].startswith(f"i2i: finished at step 1 in {tmp_path / 'run-2'}: psnr ")


@pytest.mark.parametrize("recipe, override, message", [
    ("color2gray", "data.size=40", "--set data.size=40: data.size = 40: generator 'unet_small' needs a multiple of 32; use 32 or 64"),
    ("color2gray", "generator.width=100000000", "--set generator.width=100000000: generator.width = 100000000: expected an integer from 1 to 512"),
    # the file's data.size, made wrong by a --set of the network: that --set is named
    ("denoise", "generator.name=unet_128", "--set generator.name=unet_128: data.size = 64: generator 'unet_128' needs a multiple of 128"),
    ("gray2color", "discriminator.n_layers=6", "--set discriminator.n_layers=6: data.size = 64: discriminator 'patchgan' needs at least 192 px"),
    ("color2gray", "generator.depth=0", "--set generator.depth=0: generator.depth = 0: expected an integer >= 1"),
    ("color2gray", "generator.depth=100", "--set generator.depth=100: generator.depth = 100: expected an integer from 1 to 16"),
    ("gray2color", "losses.gan.name='l1'", "gray2color.toml: discriminator: no adversarial loss to train it"),
    # a size no machine's memory holds: one line, not the allocator's traceback or the kernel's kill
    ("color2gray", "data.size=16384", "--set data.size=16384: data.size = 16384: one 16384x16384 px image "
                                      "would need about 48.0 GB to check the networks on (i2i's own networks take "
                                      "about 192 bytes a pixel), and 8.0 GB of memory is free; lower data.size"),
])
def test_validate_refuses_what_run_would_refuse_before_its_first_step(runner, monkeypatch, recipe, override, message):
    from i2i.engine import contracts

    monkeypatch.setattr(contracts, "available_host_bytes", lambda: 8 * 2**30)  # a machine with 8 GB free
    result = runner.invoke(cli, ["validate", str(ROOT / "recipes" / f"{recipe}.toml"), "--set", override])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_ctrl_c_while_torch_loads_is_one_line_with_status_130(monkeypatch, capsys):
    """Ctrl-C in the second or two before a command runs (plugins and torch loading) ends
    like a Ctrl-C later on: one line and the shell's status for SIGINT, no traceback."""
    import i2i.cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(i2i.cli, "_add_plugin_commands", interrupted)
    monkeypatch.setattr("sys.argv", ["i2i", "list", "generators"])
    with pytest.raises(SystemExit) as exit_info:
        i2i.cli.main()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == "i2i: interrupted"


def test_importing_i2i_does_not_load_torch():
    """What lets the line above cover the torch import too: ``import i2i.cli`` (the console
    script's first step) must stay torch-free, with the torch-backed names still there on use."""
    import subprocess
    import sys

    code = ("import sys, i2i, i2i.cli; assert 'torch' not in sys.modules, 'torch loaded'; "
            "from i2i import Task; import i2i.losses; assert i2i.AdversarialLoss is i2i.losses.AdversarialLoss; "
            "assert Task.__module__ == 'i2i.task'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the messages of a machine without CUDA")
@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("setting, message", [
    ("train.cuda_graphs=true", "train.cuda_graphs = true: needs a CUDA GPU"),
    ("train.device=cuda", "train.device = 'cuda': no CUDA GPU is available here; use 'auto' or 'cpu'"),
    ("train.precision=fp16", "train.precision = 'fp16' needs a GPU; use 'bf16' or 'fp32' on the CPU"),
])
def test_settings_this_machine_cannot_run_name_their_set_in_validate_and_run(runner, tmp_path, command, setting, message):
    args = [command, RECIPE, "--set", setting] + (["--out", str(tmp_path / "run")] if command == "run" else [])
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"i2i: error: --set {setting}: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("closed", [">&-", "2>&-"])
def test_a_closed_stdout_or_stderr_is_no_failure(closed, tmp_path):
    """`i2i ... >&-` (a cron job) was a traceback with status 120, and `2>&-` a status of 120 for
    a command that worked."""
    import shlex
    import subprocess
    import sys

    command = f"{shlex.quote(sys.executable)} -m i2i validate {shlex.quote(RECIPE)} {closed}"
    result = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_a_name_the_locale_cannot_spell_is_one_line(tmp_path):
    """Under LC_ALL=C with UTF-8 mode off, a non-ASCII --out was a UnicodeEncodeError traceback
    from writing the run's recipe.toml."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUTF8": "0", "LC_ALL": "C", "LANG": "C"}
    encoding = subprocess.run([sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"], env=env,
                              capture_output=True, text=True).stdout.strip()
    if encoding.lower().replace("-", "") == "utf8":
        pytest.skip("this Python spells file names in UTF-8 even under LC_ALL=C")
    out = str(tmp_path).encode() + "/r\u00fcn".encode()  # the name as the file system would hand it over
    result = subprocess.run([sys.executable, "-m", "i2i", "run", RECIPE, "--set", "train.steps=1", "--out",
                             os.fsdecode(out)], env=env, capture_output=True, timeout=300, cwd=tmp_path)
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 2 and err.count("\n") == 1, err
    assert "is not text in this process's file-name encoding" in err and "PYTHONUTF8=1" in err
    assert not any(tmp_path.iterdir())  # no run folder left


def test_a_current_folder_deleted_under_the_shell_is_one_line(tmp_path):
    """torch cannot load from a deleted folder: every command, --version too, printed oneMKL's
    'FATAL ERROR: Cannot load libtorch_cpu.so' and nothing about the folder."""
    import shlex
    import subprocess
    import sys

    gone = tmp_path / "gone"
    script = f"mkdir {shlex.quote(str(gone))} && cd {shlex.quote(str(gone))} && rmdir {shlex.quote(str(gone))} && " \
             f"{shlex.quote(sys.executable)} -m i2i --version"
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == ("i2i: error: the current folder no longer exists (deleted or moved since the shell entered "
                             "it); cd to a folder that exists\n")


@pytest.mark.parametrize("args", [["validate", RECIPE], ["list", "generators", "--json"]])
def test_output_lost_to_a_full_disk_is_a_failure(args, tmp_path):
    """`i2i eval --json > scores.json` on a full disk left an empty file and exit status 0."""
    import subprocess
    import sys

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "i2i", *args], cwd=tmp_path, stdout=full, stderr=subprocess.PIPE,
                                text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr == ("i2i: error: the command's output could not be written to stdout (No space left on device); "
                             "it is incomplete\n")


def test_a_per_image_file_that_cannot_be_written_is_refused_before_scoring(runner, tmp_path, monkeypatch):
    """A read-only folder (a mount, say) said so only after every image had been scored. The
    tests run as root, whom chmod does not stop, so the file system's refusal is stood in for."""
    import errno
    import tempfile

    import i2i.evaluation

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    def not_reached(*args, **kwargs):
        raise AssertionError("scored before the CSV's folder was found unwritable")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(i2i.evaluation, "evaluate_run", not_reached)
    target = tmp_path / "scores.csv"
    result = runner.invoke(cli, ["eval", str(tmp_path), "--per-image", str(target)])
    assert result.exit_code == 2 and result.output == (
        f"i2i: error: --per-image {target}: cannot write in {tmp_path} (Read-only file system); "
        "give a file in a folder you can write to\n")


def test_suggested_commands_work_for_a_run_folder_named_with_a_leading_dash(runner, tmp_path, monkeypatch):
    """'try: i2i translate -dash IMAGE...' failed as the option '-d'; ./-dash is that folder."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["run", RECIPE, "--out", "-dash", "--set", "train.steps=1", "--set", "train.device='cpu'",
                                 "--set", "data.size=32", "--set", "eval.crop=32", "--set", "output.progress='none'"])
    assert result.exit_code == 0, result.output
    assert "try: i2i translate ./-dash IMAGE... --out OUT_DIR" in result.output
    assert runner.invoke(cli, ["eval", "./-dash"]).exit_code == 0


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("problem", ["empty", "run folder", "self-paired"])
def test_data_folder_mistakes_from_a_set_name_the_set_in_validate_and_run_alike(runner, tmp_path, monkeypatch, command,
                                                                               problem):
    """`i2i run` blamed the recipe file for an empty --set data.source (the run pins its data
    folders to absolute paths first, so the value no longer looked like the --set's), and
    `i2i validate` let a pair folder that is its images' own folder pass."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "pn").mkdir()
    Image.new("RGB", (40, 20), (10, 20, 30)).save(tmp_path / "pn" / "a.png")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "recipe.toml").write_text("")  # an i2i run folder: its recipe.toml and run.json
    (tmp_path / "old" / "run.json").write_text("{}")
    sets = {"empty": ["data.source=empty"], "run folder": ["data.source=old"],
            "self-paired": ["task.name=paired", "data.source=pn", "data.pair_source=pn"]}[problem]
    args = [command, str(ROOT / "recipes" / "denoise.toml"), *[a for s in sets for a in ("--set", s)]]
    result = runner.invoke(cli, args + (["--out", "run"] if command == "run" else []))
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]  # below a run's notes
    blamed = sets[-1]
    said = {"empty": "no images in this folder", "run folder": "an i2i run folder",
            "self-paired": "each image would pair with itself"}[problem]
    assert line.startswith(f"i2i: error: --set {blamed}: data.{blamed.split('=')[0].split('.')[1]} = ") and said in line
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import i2i
    from helpers import TINY_G2C, make_photos, tiny_recipe

    folder = tmp_path_factory.mktemp("tiny")
    photos = make_photos(folder / "photos", count=3, size=(24, 24))
    return i2i.train(tiny_recipe(photos, folder / "run", base=TINY_G2C, train={"steps": 1}), quiet=True).run_dir


def one_line_error(result, *, says: str) -> None:
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("i2i: error: ") and says in last, last


def test_paths_no_file_system_takes_are_one_line_wherever_given(runner, tiny_run, tmp_path, monkeypatch):
    """A name over 255 bytes, a loop of symbolic links and ~ of an unknown user were tracebacks
    from wherever the path was first used (import-weights blamed its plugin)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    from PIL import Image

    Image.new("RGB", (16, 16), (90, 40, 10)).save(tmp_path / "in" / "a.png")
    long = "A" * 300
    too_long = "a name in this path is longer than the file system allows"
    for args in (["validate", RECIPE, "--set", f"data.source={long}"], ["validate", f"{long}.toml"],
                 ["run", "--resume", long], ["eval", long], ["eval", str(tiny_run), "--data", long],
                 ["translate", long, "in", "--out", "o"], ["import-weights", f"{long}.pth", "--task", "color2gray",
                                                          "--out", "x"]):
        one_line_error(runner.invoke(cli, args), says=too_long)
    # a recipe's folder: its key and the --set named too
    named = runner.invoke(cli, ["validate", RECIPE, "--set", f"data.source={long}"])
    one_line_error(named, says='AAAA: data.source = "AAAA')
    assert named.output.startswith("i2i: error: --set data.source=AAAA")
    (tmp_path / "lA").symlink_to("lB")
    (tmp_path / "lB").symlink_to("lA")
    loop = "a loop of symbolic links"
    one_line_error(runner.invoke(cli, ["translate", str(tiny_run), "in", "--out", "lA/o"]), says=loop)
    one_line_error(runner.invoke(cli, ["eval", str(tiny_run), "--save-images", "lA/s"]), says=loop)
    nobody = "there is no user 'nobody_i2i' on this machine, so ~nobody_i2i names no home folder"
    one_line_error(runner.invoke(cli, ["validate", RECIPE, "--set", "data.source=~nobody_i2i/x"]), says=nobody)
    one_line_error(runner.invoke(cli, ["run", RECIPE, "--out", "~nobody_i2i/x"]), says=nobody)
    one_line_error(runner.invoke(cli, ["eval", str(tiny_run), "--data", "~nobody_i2i/x"]), says=nobody)


def test_a_tilde_in_an_output_option_is_the_home_folder_as_the_shell_would_make_it(runner, tiny_run, tmp_path,
                                                                                   monkeypatch):
    """--out=~/x reaches i2i unexpanded by the shell: translate made a folder named '~' here."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    from PIL import Image

    Image.new("RGB", (16, 16), (90, 40, 10)).save(work / "a.png")
    assert invoke(runner, ["translate", str(tiny_run), "a.png", "--out=~/coloured"]).exit_code == 0
    assert (home / "coloured" / "a.png").is_file() and not (work / "~").exists()
    assert invoke(runner, ["eval", str(tiny_run), "--per-image", "~/scores.csv"]).exit_code == 0
    assert (home / "scores.csv").is_file()


def test_a_symbolic_link_where_an_output_goes_is_never_replaced_unasked(runner, tiny_run, tmp_path, monkeypatch):
    """A dangling or looped link at --per-image's file, or at a translation's output, was
    replaced by the new file with status 0."""
    monkeypatch.chdir(tmp_path)
    from PIL import Image

    Image.new("RGB", (16, 16), (90, 40, 10)).save(tmp_path / "a.png")
    (tmp_path / "scores.csv").symlink_to(tmp_path / "nowhere.csv")
    one_line_error(runner.invoke(cli, ["eval", str(tiny_run), "--per-image", "scores.csv"]),
                   says="--per-image scores.csv: a symbolic link exists; give a new file name")
    assert (tmp_path / "scores.csv").is_symlink()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").symlink_to(tmp_path / "nowhere.png")
    one_line_error(runner.invoke(cli, ["translate", str(tiny_run), "a.png", "--out", "out"]),
                   says="a.png: already exists (1 output file(s) would be replaced); use --overwrite")
    assert (tmp_path / "out" / "a.png").is_symlink()


def test_a_very_long_value_is_cut_short_in_its_error(runner):
    """A --set of 5000 characters came back twice, in a 10 KB line."""
    result = runner.invoke(cli, ["validate", RECIPE, "--set", "train.steps=" + "A" * 5000])
    assert result.exit_code == 2 and len(result.output) < 600, len(result.output)
    assert result.output.startswith("i2i: error: --set train.steps=AAAA") and "A...A" in result.output
    assert result.output.rstrip().endswith("expected an integer")


def test_list_of_a_name_nothing_has_says_so_with_the_name_meant_and_status_1(runner):
    """'i2i list tasks denose' printed 'no tasks match' with status 0 and no suggestion."""
    result = runner.invoke(cli, ["list", "tasks", "denose"])
    assert result.exit_code == 1 and result.output == "i2i: no tasks match 'denose' (did you mean 'denoise'?)\n"
    # a name in other letters' case means that name, before a closer-spelt other one
    result = runner.invoke(cli, ["list", "generators", "UNET"])
    assert result.exit_code == 1 and result.output == "i2i: no generators match 'UNET' (did you mean 'unet'?)\n"
    result = runner.invoke(cli, ["list", "plugins"])
    assert result.exit_code == 2 and "i2i plugins lists the plugins and what each registers" in result.output
    result = runner.invoke(cli, ["list", "generatr"])
    assert result.exit_code == 2 and "'generatr' is not a kind of component (did you mean 'generator'?)" in result.output
    result = runner.invoke(cli, ["list"])  # Click's list of choices, one a line: one line here
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "Choose from: generators, discriminators" in \
        result.output


def test_sigterm_stops_translate_as_ctrl_c_does_and_a_rerun_clears_what_a_kill_left(runner, tiny_run, tmp_path,
                                                                                   monkeypatch):
    """SIGTERM (a scheduler) and SIGHUP (a closed terminal) killed translate silently, and a
    half-written temporary file that a kill left stayed after every rerun."""
    import os
    import signal

    from PIL import Image

    import i2i.translate

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        Image.new("RGB", (16, 16), (90, 40, 10)).save(tmp_path / "in" / f"{name}.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".c.png.tmp-999999999").write_bytes(b"half")  # a killed process's
    write, written = i2i.translate._write, []

    def write_then_terminate(image, alpha, target, fmt):
        write(image, alpha, target, fmt)
        written.append(target)
        if len(written) == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(i2i.translate, "_write", write_then_terminate)
    result = runner.invoke(cli, ["translate", str(tiny_run), "in", "--out", "out", "--batch-size", "1"])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert "i2i: stopped after writing" in result.output and "the same command with --skip-existing translates " \
        "the rest" in result.output
    assert not (tmp_path / "out" / ".c.png.tmp-999999999").exists()
    monkeypatch.setattr(i2i.translate, "_write", write)
    result = runner.invoke(cli, ["translate", str(tiny_run), "in", "--out", "out", "--skip-existing"])
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != ".i2i-outputs") == ["a.png", "b.png", "c.png"]


def test_an_evaluation_stopped_while_saving_images_says_what_it_saved_and_how_to_score_again(runner, tiny_run,
                                                                                            tmp_path, monkeypatch):
    """It said only 'interrupted', and the same command was then refused for the non-empty folder."""
    import os
    import signal

    import i2i.evaluation

    monkeypatch.chdir(tmp_path)
    save = i2i.evaluation.ImageSaver.__call__

    def save_then_terminate(self, batch):
        save(self, batch)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(i2i.evaluation.ImageSaver, "__call__", save_then_terminate)
    result = runner.invoke(cli, ["eval", str(tiny_run), "--save-images", "saved", "--per-image", "saved/scores.csv"])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert ("i2i: stopped with the inputs, outputs and targets of 1 image(s) saved in saved (each written whole) and no "
            "scores; to score again, delete that folder or give another --save-images") in result.output
    # stopped inside a PNG's write: its temporary file goes, and only images with all three PNGs count
    import i2i.data.encode

    monkeypatch.setattr(i2i.evaluation.ImageSaver, "__call__", save)
    encode, calls = i2i.data.encode.save_image, []

    def write_then_stop(pixels, path, fmt):
        calls.append(path)
        encode(pixels, path, fmt)
        if len(calls) == 2:  # the output's PNG, written to its temporary name
            raise KeyboardInterrupt

    monkeypatch.setattr(i2i.data.encode, "save_image", write_then_stop)
    result = runner.invoke(cli, ["eval", str(tiny_run), "--save-images", "again"])
    assert result.exit_code == 130 and not [p for p in (tmp_path / "again").rglob("*") if ".tmp" in p.name]
    assert "saved in again" not in result.output  # no image has all three of its PNGs
    one_line_error(runner.invoke(cli, ["eval", str(tiny_run), "--per-image", "-"]),
                   says="--per-image -: give a file name (the table of means goes to stdout")


def test_options_translate_and_eval_do_not_take_are_told_what_does_it(runner, tiny_run, tmp_path):
    """translate --set was offered --out or --quiet instead; eval --set task.name=... a near
    miss ('did you mean task.channels?') that cannot change either."""
    one_line_error(runner.invoke(cli, ["translate", str(tiny_run), str(tmp_path), "--out", str(tmp_path / "o"), "--set",
                                       "task.scale=4"]),
                   says="No such option '--set'; translate applies the run as it was trained (its task options "
                        "included); i2i eval RUN --set task.KEY=VALUE scores it under others")
    result = runner.invoke(cli, ["eval", str(tiny_run), "--set", "task.name=superres"])
    one_line_error(result, says="(a run is scored on the task it was trained for; another task needs a run of its own)")
    assert "did you mean" not in result.output


def test_list_json_of_a_name_nothing_has_is_an_empty_list_and_status_1(runner):
    result = runner.invoke(cli, ["list", "tasks", "debluur", "--json"])
    assert result.exit_code == 1 and result.output.startswith("[]\n")
    assert "no tasks match 'debluur' (did you mean 'deblur'?)" in result.output


def test_ctrl_c_while_the_interpreter_exits_after_a_command_is_no_traceback(tmp_path):
    """A second Ctrl-C that lands once the command is done, while torch's exit handlers run,
    printed a traceback from inside them. It now ends the process quietly, as interrupted."""
    import subprocess
    import sys

    code = ("import atexit, os, signal, sys, time\n"
            "def late_ctrl_c():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    for _ in range(10 ** 6): pass\n"  # the signal is handled between bytecodes
            "    print('exit handler finished without the interrupt', file=sys.stderr)\n"
            "atexit.register(late_ctrl_c)\n"  # registered first, so it runs after i2i's
            "sys.argv = ['i2i', 'list', 'tasks']\n"
            "from i2i.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr
    assert "gray2color" in done.stdout  # what the command printed is not lost
    assert done.returncode == 130, done.stderr


def test_a_file_this_user_may_not_read_is_one_line_with_no_traceback(runner, tmp_path, monkeypatch):
    """Its PermissionError was said in one line, but finding the run it belonged to looked into
    the same unreadable folder and raised a second traceback."""
    import os
    import pathlib

    locked = tmp_path / "locked"
    locked.mkdir()
    is_file = pathlib.Path.is_file

    def is_file_refused(self):
        if str(self).startswith(str(locked) + os.sep):
            raise PermissionError(13, "Permission denied", str(self))
        return is_file(self)

    monkeypatch.setattr(pathlib.Path, "is_file", is_file_refused)
    result = runner.invoke(cli, ["validate", str(locked / "r.toml")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"i2i: error: {locked}") and "Permission denied; give your user access to it" in \
        result.output and result.output.count("\n") == 1


@pytest.mark.parametrize("given, said", [
    ("a", "--set a: expected dotted.key=VALUE"),  # its syntax, as i2i run says it, not 'changes only the task's options'
    ("=1", "--set =1: expected dotted.key=VALUE"),
    ("eval.best_metric=ssim", "(eval scores one checkpoint: --checkpoint best is the one the run chose, step_N another)"),
])
def test_eval_set_mistakes_are_said_for_what_they_are(runner, tiny_run, given, said):
    result = runner.invoke(cli, ["eval", str(tiny_run), "--set", given])
    assert result.exit_code == 2 and said in result.output and result.output.count("\n") == 1, result.output


def test_resume_given_the_runs_recipe_file_names_the_run_folder(runner, tmp_path):
    """click said "Directory '...recipe.toml' is a file"."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.toml").write_text("")
    result = runner.invoke(cli, ["run", "--resume", str(tmp_path / "run" / "recipe.toml")])
    assert result.exit_code == 2
    assert (f"recipe.toml: is a file; pass the folder a run was written to (its parent, {tmp_path / 'run'}, if that is "
            "the run)") in result.output
