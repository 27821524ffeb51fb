"""Using a trained model: i2i translate, i2i eval, i2i.load, import-weights."""

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import i2i
from helpers import TINY_G2C, TINY_GAN, make_photos, make_transparent_images, tiny_recipe
from plugin_env import ROOT, run_i2i

def written_in(folder):
    """The files translate wrote into ``folder``, less the mark that says i2i wrote them."""
    from i2i.data.sources import OUTPUTS_MARKER

    return sorted(p.name for p in folder.iterdir() if p.name != OUTPUTS_MARKER)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def g2c_run(photos, tmp_path_factory):
    recipe = {**TINY_G2C, "data": {**TINY_G2C["data"], "source": str(photos)}, "output": {**TINY_G2C["output"], "dir": str(tmp_path_factory.mktemp("runs") / "g2c")}}
    from i2i import plugins

    plugins.reset()
    return i2i.train(recipe, quiet=True).run_dir


@pytest.fixture
def odd_inputs(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (37, 29), (200, 30, 60)).save(folder / "odd.jpg")
    Image.new("L", (23, 41), 128).save(folder / "sub" / "grey.png")
    Image.new("RGBA", (18, 18), (10, 200, 10, 128)).save(folder / "alpha.png")
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def test_translate_keeps_sizes_names_and_never_overwrites(g2c_run, odd_inputs, tmp_path):
    out = tmp_path / "out"
    result = run_i2i(["translate", str(g2c_run), str(odd_inputs), "--out", str(out)])
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable file(s): " in result.stderr and "broken.png" in result.stderr
    sizes = {p.relative_to(out).as_posix(): Image.open(p).size for p in out.rglob("*.png")}
    assert sizes == {"odd.png": (37, 29), "sub/grey.png": (23, 41), "alpha.png": (18, 18)}
    assert "wrote 3 image(s)" in result.stdout
    before = (out / "odd.png").read_bytes()
    again = run_i2i(["translate", str(g2c_run), str(odd_inputs / "odd.jpg"), "--out", str(out)])
    assert again.returncode == 2 and "odd.png: already exists" in again.stderr and again.stderr.count("\n") == 1
    inputs = {p: p.read_bytes() for p in odd_inputs.rglob("*") if p.is_file()}
    into_itself = run_i2i(["translate", str(g2c_run), str(odd_inputs), "--out", str(odd_inputs), "--overwrite"])
    assert into_itself.returncode == 2 and into_itself.stderr == (
        f"i2i: error: --out {odd_inputs}: it holds images being translated, so their translations would sit among "
        "them and be read as photos by the next i2i run, eval or translate of it; choose another --out (a new folder, "
        f"such as {odd_inputs / 'translated'}, is left out of those)\n")
    # a file's own folder too: translations beside the photos were scored as pairs by the next eval --data
    beside = run_i2i(["translate", str(g2c_run), str(odd_inputs / "odd.jpg"), "--out", str(odd_inputs)])
    assert beside.returncode == 2 and "it holds images being translated" in beside.stderr
    inside = run_i2i(["translate", str(g2c_run), str(odd_inputs), "--out", str(odd_inputs / "translated")])
    assert inside.returncode == 0 and (odd_inputs / "translated" / "odd.png").is_file()
    shutil.rmtree(odd_inputs / "translated")
    # a subfolder being translated through its parent: its photo was hidden by the outputs' marker
    below = run_i2i(["translate", str(g2c_run), str(odd_inputs), "--out", str(odd_inputs / "sub")])
    assert below.returncode == 2 and f"--out {odd_inputs / 'sub'}: it holds images being translated" in below.stderr
    # a folder above the one translated: the translations would land among the photos there
    above = run_i2i(["translate", str(g2c_run), str(odd_inputs / "sub"), "--out", str(odd_inputs)])
    assert above.returncode == 2 and f"it holds {odd_inputs / 'sub'}, which is being translated" in above.stderr
    assert {p: p.read_bytes() for p in odd_inputs.rglob("*") if p.is_file()} == inputs
    nothing = run_i2i(["translate", str(g2c_run), str(odd_inputs / "broken.png"), "--out", str(tmp_path / "none")])
    assert nothing.returncode == 2 and nothing.stderr.count("\n") == 1
    assert "none of the input files could be read as an image: " in nothing.stderr and "broken.png" in nothing.stderr
    assert "(give jpg" not in nothing.stderr  # it is a .png already: the format is not what is wrong
    assert (out / "odd.png").read_bytes() == before
    forced = run_i2i(["translate", str(g2c_run), str(odd_inputs / "odd.jpg"), "--out", str(out), "--overwrite", "--format", "jpg"])
    assert forced.returncode == 0 and Image.open(out / "odd.jpg").size == (37, 29)


def test_translate_errors_are_one_line(tmp_path, g2c_run):
    missing = run_i2i(["translate", str(tmp_path / "nope"), str(tmp_path), "--out", str(tmp_path / "o")])
    assert missing.returncode == 2 and "no such run directory" in missing.stderr and missing.stderr.count("\n") == 1
    no_input = run_i2i(["translate", str(g2c_run), str(tmp_path / "none.png"), "--out", str(tmp_path / "o")])
    assert no_input.returncode == 2 and "none.png: no such file or folder" in no_input.stderr
    # ls shows these, so "no such file" sent users looking for the wrong thing
    (tmp_path / "loop1.png").symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(tmp_path / "loop1.png")
    (tmp_path / "broken.png").symlink_to(tmp_path / "gone.png")
    for name, said in [("loop1.png", "a loop of symbolic links (it leads back to itself); give the file or folder itself"),
                       ("broken.png", f"a symbolic link to {tmp_path / 'gone.png'}, which is not there")]:
        linked = run_i2i(["translate", str(g2c_run), str(tmp_path / name), "--out", str(tmp_path / "o")])
        assert linked.returncode == 2 and linked.stderr == f"i2i: error: {tmp_path / name}: {said}\n"


def test_gray2color_uses_luminance_of_grey_and_colour_inputs(g2c_run):
    model = i2i.load(g2c_run)
    from kornia.color import lab_to_rgb, rgb_to_lab

    rgb = torch.rand(1, 3, 24, 40)
    lightness = rgb_to_lab(rgb)[:, :1]
    grey = lab_to_rgb(torch.cat([lightness, torch.zeros(1, 2, 24, 40)], 1)).clamp(0, 1)  # same L, no colour
    out_rgb, out_grey = model(rgb), model(grey[:, :1])  # a 1-channel grey batch is accepted too
    assert out_rgb.shape == out_grey.shape == (1, 3, 24, 40) and 0 <= out_rgb.min() and out_rgb.max() <= 1
    assert (out_rgb - out_grey).abs().max() < 2e-2


def test_api_load_call_and_translate(g2c_run, odd_inputs):
    model = i2i.load(g2c_run)
    assert isinstance(model.generator, torch.nn.Module) and not model.generator.training
    image = model.translate(odd_inputs / "odd.jpg")
    assert image.size == (37, 29) and image.mode == "RGB"
    assert model.translate(Image.new("L", (20, 12), 90)).size == (20, 12)


def test_translate_out_of_memory_says_what_to_lower(odd_inputs, tmp_path):
    from i2i.translate import translate_files

    class OutOfMemory:
        device = torch.device("cpu")

        def __call__(self, batch, tile):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    with pytest.raises(i2i.UserError, match=r"out of memory on cpu translating 1 image\(s\) of 37x29 px at once; "
                                            r"lower batch_size or tile"):  # the Python call's spelling
        translate_files(OutOfMemory(), [odd_inputs / "odd.jpg"], tmp_path / "out", progress=False)


def test_translate_beside_a_gpu_runs_torch_on_one_host_thread():
    """With the network on a GPU, translate keeps torch's CPU thread pool to one thread (it only
    fought the decoding and encoding threads for the cores), and gives the caller's setting back,
    after an error too; on the CPU, where the network needs them, the threads stay."""
    from i2i.translate import host_threads_for

    callers = torch.get_num_threads()
    torch.set_num_threads(3)  # a setting that differs from one on any machine
    try:
        with host_threads_for(torch.device("cuda")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
        with pytest.raises(KeyError), host_threads_for(torch.device("cuda")):
            raise KeyError("a failing batch")
        assert torch.get_num_threads() == 3
        with host_threads_for(torch.device("cpu")):
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(callers)


def test_translate_hands_the_writers_pixels_in_file_order(g2c_run, odd_inputs, tmp_path, monkeypatch):
    """The writer threads get each output as one C-contiguous ``[H, W, C]`` array, laid out as
    the file stores it: a strided array would make Pillow copy it with ``tobytes`` first, a
    copy that two threads did no faster than one."""
    from i2i.data import encode
    from i2i.translate import translate_files

    seen, save = [], encode.save_image

    def recording_save(pixels, path, fmt):
        seen.append((pixels.shape, pixels.dtype, pixels.flags.c_contiguous))
        save(pixels, path, fmt)

    monkeypatch.setattr(encode, "save_image", recording_save)
    Image.fromarray(np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80).save(odd_inputs / "deep16.png")
    report = translate_files(i2i.load(g2c_run, device="cpu"), [odd_inputs], tmp_path / "out", progress=False)
    assert report.written == 4 and len(seen) == 4
    assert all(contiguous for _, _, contiguous in seen)
    assert {(shape, str(dtype)) for shape, dtype, _ in seen} == {
        ((29, 37, 3), "uint8"), ((41, 23, 3), "uint8"), ((18, 18, 4), "uint8"), ((24, 32, 3), "uint16")}
    assert Image.open(tmp_path / "out" / "odd.png").size == (37, 29)


def test_api_takes_uint8_numpy_and_pil_alike_and_refuses_other_inputs_clearly(g2c_run, tmp_path):
    model = i2i.load(g2c_run)
    pixels = np.random.default_rng(0).integers(0, 256, (18, 26, 3), dtype=np.uint8)
    as_uint8 = torch.from_numpy(pixels).permute(2, 0, 1)
    assert torch.equal(model(as_uint8), model(as_uint8.float() / 255))  # uint8 means 0-255
    Image.fromarray(pixels).save(tmp_path / "p.png")
    from_file = np.asarray(model.translate(tmp_path / "p.png"))
    assert np.array_equal(np.asarray(model.translate(pixels)), from_file)
    assert np.array_equal(np.asarray(model.translate(Image.fromarray(pixels))), from_file)
    # transparency is composited onto white for the network, as for files; the alpha comes back
    clear = np.zeros((18, 26, 4), dtype=np.uint8)
    white = np.full((18, 26, 3), 255, dtype=np.uint8)
    out_clear = np.asarray(model.translate(clear))
    assert out_clear.shape == (18, 26, 4) and not out_clear[..., 3].any()
    assert np.array_equal(out_clear[..., :3], np.asarray(model.translate(white)))
    assert np.array_equal(np.asarray(model.translate(clear, keep_alpha=False)), np.asarray(model.translate(white)))
    with pytest.raises(TypeError, match="use model.translate"):
        model(Image.fromarray(pixels))
    with pytest.raises(ValueError, match=r"got shape \[1, 4, 18, 26\]"):
        model(torch.rand(1, 4, 18, 26))
    with pytest.raises(ValueError, match="uint8 array"):
        model.translate(pixels.astype(np.float32))
    with pytest.raises(ValueError, match="which = 'worst': expected 'latest' or 'best'"):
        i2i.load(g2c_run, which="worst")
    with pytest.raises(TypeError, match="a recipe is a path to a TOML file or a dict, not int"):
        i2i.train(123)


def test_eval_prints_metrics_and_baselines(g2c_run, photos):
    table = run_i2i(["eval", str(g2c_run)])
    assert table.returncode == 0, table.stderr
    assert "grey copy" in table.stdout and "psnr" in table.stdout and "delta_colourfulness" in table.stdout
    # the photos' own colourfulness is one row, not a column repeated as each row's score
    header, *rows = table.stdout.splitlines()[1:]
    assert "colourfulness_target" not in header and rows[-1].startswith("target images")
    result = json.loads(run_i2i(["eval", str(g2c_run), "--data", str(photos), "--json"]).stdout)
    assert result["images"] == 6 and result["task"] == "gray2color"
    assert set(result["metrics"]) >= {"psnr", "ssim", "colourfulness", "colourfulness_target", "delta_colourfulness"}
    assert set(result["baselines"]) == {"grey copy"}


def test_eval_per_image_keeps_a_file_name_that_is_not_utf8_and_save_images_under_a_file_is_refused_first(
        g2c_run, photos, tmp_path):
    """A Latin-1 name (from an old zip) was a UnicodeEncodeError traceback once all was scored;
    --save-images afile/x failed only after the scoring, blaming a temporary file."""
    import os

    scored = tmp_path / "scored"
    scored.mkdir()
    latin1 = os.fsdecode(b"caf\xe9.png")  # the byte 0xe9 is no UTF-8: Python holds it as a lone surrogate
    shutil.copy(photos / "photo_0.png", scored / latin1)
    scores = tmp_path / "scores.csv"
    result = run_i2i(["eval", str(g2c_run), "--data", str(scored), "--per-image", str(scores)])
    assert result.returncode == 0, result.stderr
    assert scores.read_bytes().splitlines()[1].startswith(b"caf\xe9.png,")  # the name's own bytes
    (tmp_path / "afile").write_text("notes")
    refused = run_i2i(["eval", str(g2c_run), "--data", str(scored), "--save-images", str(tmp_path / "afile" / "x")])
    assert refused.returncode == 2
    assert refused.stderr == (f"i2i: error: {tmp_path / 'afile' / 'x'}: cannot be made: {tmp_path / 'afile'} is a file, "
                              "not a folder for --save-images; give a new folder\n")


def test_eval_writes_per_image_scores_and_the_scored_images(g2c_run, photos, tmp_path):
    import csv

    from i2i.evaluation import evaluate_run

    (photos_with_clash := tmp_path / "test").mkdir()
    for path in sorted(photos.glob("*.png"))[:3]:
        shutil.copy(path, photos_with_clash / path.name)
    shutil.copy(photos / "photo_0.png", tmp_path / "clash.png")
    Image.open(tmp_path / "clash.png").save(photos_with_clash / "photo_0.jpg", quality=95)  # same stem, other file
    scores, saved = tmp_path / "scores.csv", tmp_path / "saved"
    result = run_i2i(["eval", str(g2c_run), "--data", str(photos_with_clash), "--crop", "0", "--json",
                      "--per-image", str(scores), "--save-images", str(saved)])
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # the JSON alone on stdout; what was written is said on stderr
    assert "wrote the scores of 4 image(s)" in result.stderr and "of 4 image(s) to" in result.stderr
    with open(scores, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == [row["file"] for row in summary["per_image"]]
    assert sorted(row["file"] for row in rows) == ["photo_0.jpg", "photo_0.png", "photo_1.png", "photo_2.png"]
    for key in ("psnr", "ssim", "grey copy: psnr"):  # the means are the per-image scores' averages
        column = [float(row[key]) for row in rows]
        mean = summary["baselines"]["grey copy"]["psnr"] if key == "grey copy: psnr" else summary["metrics"][key]
        assert abs(sum(column) / len(column) - mean) < 1e-4
    assert len({row["psnr"] for row in rows}) == 4
    assert all(abs(float(row["delta_colourfulness"]) - abs(float(row["colourfulness"]) - float(row["colourfulness_target"])))
               < 1e-4 for row in rows)
    # three folders that line up file for file; photo_0.jpg and photo_0.png keep their extensions
    names = {"photo_0.png.png", "photo_0.jpg.png", "photo_1.png", "photo_2.png"}
    for role in ("input", "output", "target"):
        assert {p.name for p in (saved / role).iterdir()} == names
    target = np.asarray(Image.open(saved / "target" / "photo_1.png"))
    assert np.array_equal(target, np.asarray(Image.open(photos / "photo_1.png").convert("RGB")))  # --crop 0: whole
    seen = np.asarray(Image.open(saved / "input" / "photo_1.png")).astype(int)  # the lightness G sees, as grey
    assert seen.shape == target.shape and np.abs(seen - seen[..., :1]).max() <= 1 and seen.std() > 10
    assert Image.open(saved / "output" / "photo_1.png").size == Image.open(photos / "photo_1.png").size
    # marked as outputs: searching a folder above it for photos leaves the saved images out
    from i2i.data.sources import OUTPUTS_MARKER, survey_folder

    assert (saved / OUTPUTS_MARKER).is_file() and survey_folder(tmp_path).run_folders == [saved]
    # nothing is replaced: the CSV and a non-empty folder are refused before any scoring
    again = run_i2i(["eval", str(g2c_run), "--per-image", str(scores)])
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "the file exists" in again.stderr
    again = run_i2i(["eval", str(g2c_run), "--save-images", str(saved)])
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "not empty" in again.stderr
    # the Python API gives the same rows
    same = evaluate_run(g2c_run, data_dir=photos_with_clash, crop=0, per_image=True)
    assert [row["metrics"]["psnr"] for row in same["per_image"]] == [row["metrics"]["psnr"] for row in summary["per_image"]]
    with pytest.raises(i2i.UserError, match="saved: the save_images folder is not empty"):
        evaluate_run(g2c_run, save_images=saved)
    # not into a folder being scored, where the next evaluation would score them too; not one path for both
    inside = run_i2i(["eval", str(g2c_run), "--data", str(photos_with_clash), "--save-images",
                      str(photos_with_clash / "scored")])
    assert inside.returncode == 2 and inside.stderr.count("\n") == 1 and "inside" in inside.stderr
    assert not (photos_with_clash / "scored").exists()
    both = run_i2i(["eval", str(g2c_run), "--per-image", str(tmp_path / "x"), "--save-images", str(tmp_path / "x")])
    assert both.returncode == 2 and "given to both --per-image (a file) and --save-images" in both.stderr
    assert not (tmp_path / "x").exists()


def test_saved_noisy_inputs_are_the_ones_scored(photos, tmp_path):
    """A denoiser's saved inputs are the noisy images its scores came from (to 8-bit rounding),
    so another method can be run and scored on the very same noise."""
    import csv

    from i2i.evaluation import evaluate_run

    run = i2i.train({**TINY_GAN, "data": {**TINY_GAN["data"], "source": str(photos)},
                     "output": {**TINY_GAN["output"], "dir": str(tmp_path / "dn")}}, quiet=True)
    result = evaluate_run(run.run_dir, data_dir=photos, crop=0, per_image=True, save_images=tmp_path / "saved")
    for row in result["per_image"]:
        noisy = np.asarray(Image.open(tmp_path / "saved" / "input" / row["file"])).astype(float) / 255
        clean = np.asarray(Image.open(tmp_path / "saved" / "target" / row["file"])).astype(float) / 255
        assert np.array_equal(clean, np.asarray(Image.open(photos / row["file"])).astype(float) / 255)
        psnr = -10 * np.log10(np.mean((noisy - clean) ** 2))
        assert abs(psnr - row["baselines"]["noisy input"]["psnr"]) < 0.2  # rounded and clipped to 0-255
    assert all("details" not in row for row in result["per_image"])  # one noise level: nothing to tell apart
    # a blind evaluation: each row says the noise level its image got, in the CSV and the JSON
    blind = run_i2i(["eval", str(run.run_dir), "--data", str(photos), "--crop", "0", "--json", "--set",
                     "task.sigma=[5, 50]", "--per-image", str(tmp_path / "blind.csv")])
    assert blind.returncode == 0, blind.stderr
    with open(tmp_path / "blind.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:2] == ["file", "noise sigma"]
    sigmas = [float(row["noise sigma"]) for row in rows]
    assert all(4.5 < sigma < 52 for sigma in sigmas) and max(sigmas) - min(sigmas) > 1
    # the CSV gives float32's seven digits, the JSON the value widened to float64
    assert sigmas == pytest.approx([row["details"]["noise sigma"] for row in json.loads(blind.stdout)["per_image"]],
                                   rel=1e-6)


def test_short_training_beats_the_baseline(photos, tmp_path):
    run = i2i.train({
        "task": {"name": "denoise", "sigma": 50.0},
        "data": {"source": str(photos), "size": 24, "val_fraction": 0.34},
        "generator": {"name": "dncnn", "depth": 4, "width": 16},
        "losses": {"l1": {}},
        "train": {"steps": 150, "batch_size": 4, "device": "cpu", "g": {"lr": 5e-3, "betas": [0.9, 0.999]}},
        "eval": {"crop": 40},
        "output": {"dir": str(tmp_path / "dn"), "log_every": 30, "tensorboard": False},
    }, quiet=True)
    assert run.metrics["psnr"] > run.baselines["noisy input"]["psnr"] + 3


def test_an_imports_task_option_out_of_range_names_its_set(tmp_path):
    """'task.sigma = -1.0: expected ...' named neither the --set nor the command's option."""
    spec = json.loads((ROOT / "tests" / "fixtures" / "reference_keys" / "resnet_6blocks_3to3_instance.json").read_text())
    g = torch.Generator().manual_seed(0)
    torch.save({k: (torch.rand(v, generator=g) * 0.02 if v else torch.tensor(0)) for k, v in spec["keys"].items()},
               tmp_path / "latest_net_G.pth")
    for given in ("sigma=-1", "task.sigma=-1"):
        result = run_i2i(["import-weights", str(tmp_path / "latest_net_G.pth"), "--task", "denoise", "--set", given,
                          "--out", str(tmp_path / "run")])
        assert result.returncode == 2 and result.stderr.startswith(f"i2i: error: --set {given}: task.sigma = -1.0: "), \
            result.stderr
        assert not (tmp_path / "run").exists()


def test_import_reference_weights(tmp_path, odd_inputs):
    spec = json.loads((ROOT / "tests" / "fixtures" / "reference_keys" / "unet_128_1to2_batch.json").read_text())
    g = torch.Generator().manual_seed(0)
    state = {"module." + k: (torch.rand(v, generator=g) * 0.02 if v else torch.tensor(0)) for k, v in spec["keys"].items()}
    for k in state:
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(5)
        elif k.endswith("running_var"):
            state[k] = torch.ones_like(state[k])
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    result = run_i2i(["import-weights", str(path), "--task", "gray2color", "--out", str(tmp_path / "imported")])
    assert result.returncode == 0, result.stderr
    recipe = i2i.load_recipe(tmp_path / "imported" / "recipe.toml")
    assert recipe["generator"]["name"] == "unet" and recipe["generator"]["depth"] == 7
    # dropout leaves no weights: recorded as the reference's pix2pix trains, so that a fine-tuning
    # run told to match the import's settings trains with it; the command says what it recorded
    assert recipe["generator"]["dropout"] is True
    assert result.stdout == (f"i2i: imported {path} into {tmp_path / 'imported'}: generator unet (depth = 7, width = 64, "
                             "norm = 'batch', dropout = true) (dropout = true assumed: it leaves no weights, and the "
                             "reference's pix2pix trains with it); task gray2color (space = 'lab'; --set changes these)\n")
    model = i2i.load(tmp_path / "imported")
    first = dict(model.generator.named_parameters())["model.model.0.weight"]
    assert torch.equal(first, state["module.model.model.0.weight"])
    out = run_i2i(["translate", str(tmp_path / "imported"), str(odd_inputs / "odd.jpg"), "--out", str(tmp_path / "o")])
    assert out.returncode == 0, out.stderr
    wrong = run_i2i(["import-weights", str(path), "--task", "denoise", "--out", str(tmp_path / "x")])
    assert wrong.returncode == 2 and "1 -> 2 channels" in wrong.stderr and "tasks that map 1 -> 2: gray2color" in wrong.stderr
    rgb = run_i2i(["import-weights", str(path), "--task", "gray2color", "--set", "space=rgb", "--out", str(tmp_path / "r")])
    assert rgb.returncode == 2 and rgb.stderr.rstrip().endswith(
        "task 'gray2color' needs 1 -> 3; 'gray2color' with its default options does: leave out --set space='rgb'")
    typo = run_i2i(["import-weights", str(path), "--task", "gray2color", "--set", "task.spcae=lab", "--out", str(tmp_path / "t")])
    assert typo.returncode == 2 and typo.stderr.startswith("i2i: error: --set spcae='lab': task.spcae: unknown option")
    assert typo.stderr.count("\n") == 1
    assert not (tmp_path / "t").exists()
    unknown = run_i2i(["import-weights", str(path), "--task", "gray2colour", "--out", str(tmp_path / "u")])
    assert unknown.returncode == 2 and unknown.stderr.startswith("i2i: error: --task gray2colour: unknown task 'gray2colour'")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x04junk")
    bad = run_i2i(["import-weights", str(garbage), "--task", "gray2color", "--out", str(tmp_path / "y")])
    assert bad.returncode == 2 and "garbage.pth" in bad.stderr and bad.stderr.count("\n") == 1
    text = tmp_path / "notes.pth"
    text.write_text("hello world\n")
    foreign = run_i2i(["import-weights", str(text), "--task", "gray2color", "--out", str(tmp_path / "z")])
    assert foreign.returncode == 2 and foreign.stderr == (
        f"i2i: error: {text}: not a PyTorch checkpoint (files written by torch.save start with a zip or pickle header; "
        "this one starts with b'hell'); give the .pth file the reference saved\n")


class _Pointwise(torch.nn.Module):
    """A per-pixel network that needs H and W in multiples of 4: tiling must not change it."""

    size_multiple = 4

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x):
        assert x.shape[-2] % 4 == 0 and x.shape[-1] % 4 == 0
        return torch.tanh(self.conv(x))


def test_tiled_translation_blends_to_the_whole_image_result():
    from i2i.engine.infer import run_generator, run_tiled

    net = _Pointwise()
    x = torch.rand(2, 3, 70, 45)
    with torch.no_grad():
        whole = run_generator(net, x)
        for tile, overlap in ((32, 8), (30, 0), (16, 64), (128, 8)):
            tiled = run_tiled(net, x, tile, overlap)
            assert tiled.shape == (2, 2, 70, 45)
            torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_tile_auto_only_tiles_large_images():
    from i2i.engine.infer import AUTO_TILE, resolve_tile

    assert resolve_tile("auto", 1080, 1920) == 0
    assert resolve_tile("auto", 4000, 6000) == AUTO_TILE
    assert resolve_tile(0, 4000, 6000) == 0 and resolve_tile(256, 64, 64) == 256
    with pytest.raises(ValueError, match="tile"):
        resolve_tile(-3, 10, 10)


def test_translate_tile_option(g2c_run, tmp_path, capsys):
    src = tmp_path / "big.png"
    Image.effect_mandelbrot((90, 70), (-2, -1.2, 1, 1.2), 60).convert("RGB").save(src)
    outputs = {}
    for tile in ("0", "32"):
        out = tmp_path / f"out{tile}"
        result = run_i2i(["translate", str(g2c_run), str(src), "--out", str(out), "--tile", tile])
        assert result.returncode == 0, result.stderr
        outputs[tile] = torch.from_numpy(np.asarray(Image.open(out / "big.png"), dtype=np.float32))
        assert Image.open(out / "big.png").size == (90, 70)
    # tiles of 32 px (cross-faded over 16 px) give nearly the whole-image result
    assert (outputs["0"] - outputs["32"]).abs().mean() < 4
    model = i2i.load(g2c_run)
    assert model.translate(src, tile=32).size == (90, 70)
    # a side the generator cannot work in is raised to its multiple, and said (it was silent)
    raised = run_i2i(["translate", str(g2c_run), str(src), "--out", str(tmp_path / "out30"), "--tile", "30"])
    assert raised.returncode == 0 and ("i2i: note: --tile 30: generator 'unet' works in multiples of 4 px, "
                                       "so tiles are 28 px") in raised.stderr
    Image.new("RGB", (12, 10)).save(tmp_path / "small.png")
    below = run_i2i(["translate", str(g2c_run), str(tmp_path / "small.png"), "--out", str(tmp_path / "o3"), "--tile", "3"])
    assert "i2i: note: --tile 3: generator 'unet' works in multiples of 4 px, so tiles are 4 px" in below.stderr
    from i2i.translate import translate_files  # a program is told of its own argument

    capsys.readouterr()
    translate_files(model, tmp_path / "small.png", tmp_path / "o3py", tile=3, progress=False)
    assert "i2i: note: tile=3: generator 'unet' works in multiples of 4 px, so tiles are 4 px" in capsys.readouterr().err
    exact = run_i2i(["translate", str(g2c_run), str(src), "--out", str(tmp_path / "out28"), "--tile", "28"])
    assert exact.returncode == 0 and "--tile" not in exact.stderr
    assert (Image.open(tmp_path / "out30" / "big.png").tobytes() == Image.open(tmp_path / "out28" / "big.png").tobytes())
    bad = run_i2i(["translate", str(g2c_run), str(src), "--out", str(tmp_path / "x"), "--tile", "big"])
    assert bad.returncode == 2 and "--tile" in bad.stderr and "tile size in pixels" in bad.stderr


def _png_header_only(path, width, height):
    """A PNG whose header claims ``width x height`` px: enough for Pillow's size checks."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b""))


def _truncated_png(path):
    """A PNG whose header reads (right size) but whose pixel data stops half-way."""
    import io

    buffer = io.BytesIO()
    Image.effect_noise((48, 40), 64).convert("RGB").save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def test_translate_into_a_subfolder_of_the_input_leaves_its_outputs_out(g2c_run, tmp_path):
    folder = make_photos(tmp_path / "in", count=2, size=(24, 16))
    out = folder / "out"
    model = i2i.load(g2c_run, device="cpu")
    from i2i.translate import translate_files

    first = translate_files(model, [folder], out, progress=False)
    again = translate_files(model, [folder], out, overwrite=True, progress=False)
    assert first.written == again.written == 2
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == [
        "out/photo_0.png", "out/photo_1.png", "photo_0.png", "photo_1.png"]


def test_an_output_folder_name_too_long_for_the_file_system_is_one_line(g2c_run, tmp_path):
    folder = make_photos(tmp_path / "in", count=1, size=(24, 16))
    model = i2i.load(g2c_run, device="cpu")
    from i2i.translate import translate_files

    with pytest.raises(i2i.UserError, match=r"cannot be used as the output folder \(File name too long\); choose another out_dir"):
        translate_files(model, [folder], tmp_path / ("b" * 300), progress=False)


def test_translate_warning_counts_every_skipped_file_and_says_why(g2c_run, tmp_path, capsys):
    folder = make_photos(tmp_path / "in", count=1, size=(24, 16))
    _png_header_only(folder / "a_huge.png", 20000, 20000)
    for i in range(4):
        (folder / f"b_broken_{i}.png").write_bytes(b"not an image")
    from i2i.translate import translate_files

    report = translate_files(i2i.load(g2c_run, device="cpu"), [folder], tmp_path / "out", progress=False)
    err = capsys.readouterr().err.strip()
    assert report.written == 1 and report.skipped == 5 and err.count("\n") == 0
    assert err.startswith("i2i: warning: skipped 5 unreadable file(s): ")
    assert "a_huge.png (too large to decode (400,000,000 pixels" in err
    assert "b_broken_0.png (named .png but does not start as a PNG file does" in err
    assert err.endswith("b_broken_3.png (named .png but does not start as a PNG file does (damaged, or another kind of "
                        "file given that name))")  # every one named, up to ten


def test_eval_counts_the_images_it_scored_and_fails_when_none_decode(g2c_run, tmp_path):
    from i2i.evaluation import evaluate_run

    mixed = make_photos(tmp_path / "mixed", count=1)
    _truncated_png(mixed / "truncated.png")
    assert evaluate_run(g2c_run, data_dir=mixed, device="cpu")["images"] == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    _truncated_png(bad / "truncated.png")
    (bad / "zero.png").write_bytes(b"")  # skipped by the scan, before scoring: counted too
    result = run_i2i(["eval", str(g2c_run), "--data", str(bad)])
    assert result.returncode == 2 and result.stdout == ""
    assert (f"i2i: error: no readable images in {bad}: none of the 2 image file(s) evaluated could be decoded"
            in result.stderr.splitlines()[-1])


def test_eval_on_a_folder_scores_all_of_it_whatever_the_run_capped_its_validation_at(photos, tmp_path):
    """eval.max_images keeps training-time evaluation short; a test set given with --data is scored whole."""
    from helpers import tiny_recipe
    from i2i.evaluation import evaluate_run

    run = i2i.train(tiny_recipe(photos, tmp_path / "capped", base=TINY_G2C, eval={"max_images": 1}), quiet=True)
    assert evaluate_run(run.run_dir, device="cpu")["images"] == 1  # the run's own split: as in its log
    test_set = make_photos(tmp_path / "test_set", count=3, seed=5)
    assert evaluate_run(run.run_dir, data_dir=test_set, device="cpu")["images"] == 3


def test_translate_names_image_kinds_it_does_not_read_and_keeps_pillow_warnings_out(g2c_run, tmp_path):
    """A folder of HEIC/GIF files is not 'no images'; a mixed folder notes what it left out; a
    ~95-megapixel photo's header gives no raw DecompressionBombWarning with a source line."""
    folder = tmp_path / "phone"
    folder.mkdir()
    (folder / "IMG_0001.HEIC").write_bytes(b"ftypheic")
    Image.new("RGB", (20, 16), (200, 30, 60)).save(folder / "anim.gif")
    none = run_i2i(["translate", str(g2c_run), str(folder), "--out", str(tmp_path / "out")])
    assert none.returncode == 2 and none.stderr.count("\n") == 1
    assert "not read: 1 .heic, 1 .gif file(s) (convert them to one of these)" in none.stderr
    Image.new("RGB", (20, 16), (200, 30, 60)).save(folder / "photo.jpg")
    _png_header_only(folder / "panorama.png", 10000, 9500)  # above Pillow's warning size, below its error size
    mixed = run_i2i(["translate", str(g2c_run), str(folder), "--out", str(tmp_path / "out")])
    assert mixed.returncode == 0 and "Warning" not in mixed.stderr, mixed.stderr
    assert mixed.stderr.startswith(f"i2i: note: {folder}: 1 .heic, 1 .gif file(s) not read; i2i reads jpg")
    assert "panorama.png" in mixed.stderr and written_in(tmp_path / "out") == ["photo.png"]


def test_a_folder_of_translations_given_as_data_gets_a_warning(g2c_run, photos, tmp_path, capsys):
    """Inside a searched folder i2i's outputs are left out with a note; given as the data folder
    itself they were trained on and scored without a word."""
    from i2i.evaluation import evaluate_run
    from i2i.translate import translate_files

    translate_files(i2i.load(g2c_run), photos, tmp_path / "coloured", progress=False)
    capsys.readouterr()
    evaluate_run(g2c_run, data_dir=tmp_path / "coloured", crop=0)
    assert capsys.readouterr().err.count(f"holds images i2i wrote (i2i translate's --out or i2i eval's --save-images; "
                                         "its .i2i-outputs file says so): a model's outputs, not photos; give the "
                                         "photos' own folder unless this is what you meant") == 1
    i2i.train(tiny_recipe(tmp_path / "coloured", tmp_path / "run", train={"steps": 1}), quiet=True)  # a denoiser
    assert (f'i2i: warning: data.source = "{tmp_path / "coloured"}" holds images i2i wrote'
            in capsys.readouterr().err)
    evaluate_run(g2c_run, data_dir=photos, crop=0)
    assert "holds images i2i wrote" not in capsys.readouterr().err
    # one album of a translated archive: its subfolder holds outputs as much as its top
    album = tmp_path / "coloured" / "album"
    album.mkdir()
    for made in sorted((tmp_path / "coloured").glob("*.png"))[:2]:
        made.rename(album / made.name)
    evaluate_run(g2c_run, data_dir=album, crop=0)
    assert (f"{album}\" is inside {tmp_path / 'coloured'}, which holds images i2i wrote"
            in capsys.readouterr().err)
    translate_files(i2i.load(g2c_run), album, tmp_path / "again", progress=False)
    assert f"{album} is inside {tmp_path / 'coloured'}, which holds images i2i wrote" in capsys.readouterr().err


def test_a_loop_of_links_among_the_photos_is_skipped_and_the_rest_translated(g2c_run, tmp_path):
    """One looping link in an archive stopped the translation of the whole folder (resolving it
    raised); it is skipped and named as unreadable, as i2i run and eval do."""
    folder = tmp_path / "archive"
    folder.mkdir()
    Image.new("RGB", (20, 16), (200, 30, 60)).save(folder / "photo.jpg")
    (folder / "loopA.jpg").symlink_to(folder / "loopB")
    (folder / "loopB").symlink_to(folder / "loopA.jpg")
    done = run_i2i(["translate", str(g2c_run), str(folder), "--out", str(tmp_path / "out")])
    assert done.returncode == 0, done.stderr
    assert (f"skipped 1 unreadable file(s): {folder / 'loopA.jpg'} (a loop of symbolic links: a link that leads back "
            "to itself)") in done.stderr
    assert written_in(tmp_path / "out") == ["photo.png"]


def test_a_photo_with_damaged_exif_is_translated_without_pillows_raw_warnings(g2c_run, tmp_path):
    """Pillow's 'UserWarning: Tag data larger than file' came with its source line and no file
    name; the photo itself is read all the same."""
    import struct

    folder = tmp_path / "camera"
    folder.mkdir()
    # one IFD entry whose data lies past the end of the EXIF block
    ifd = struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x010F, 2, 1000, 9999)
    Image.new("RGB", (20, 16), (200, 30, 60)).save(folder / "damaged.jpg", exif=b"Exif\x00\x00" + ifd + bytes(4))
    with pytest.warns(UserWarning, match="Tag data larger than file"):  # what Pillow says of it
        Image.open(folder / "damaged.jpg").getexif()
    result = run_i2i(["translate", str(g2c_run), str(folder), "--out", str(tmp_path / "out")])
    assert result.returncode == 0 and "Warning" not in result.stderr and "warnings.warn" not in result.stderr, result.stderr
    assert written_in(tmp_path / "out") == ["damaged.png"]


def test_translate_refuses_two_inputs_with_one_output_name_before_writing(g2c_run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("photo.jpg", "photo.png", "scan.bmp", "scan.webp", "zebra.png"):
        Image.new("RGB", (20, 16), (200, 30, 60)).save(folder / name)
    # the folder given twice and one of its files by name: each file once, each clash once
    result = run_i2i(["translate", str(g2c_run), str(folder), str(folder / "zebra.png"), str(folder), "--out",
                      str(tmp_path / "out")])
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
    out = tmp_path / "out"
    assert result.stderr == (f"i2i: error: 2 group(s) of inputs would be written to the same file (outputs are named by "
                             f"file stem, in --format): {folder / 'photo.jpg'} and {folder / 'photo.png'} -> "
                             f"{out / 'photo.png'}; {folder / 'scan.bmp'} and {folder / 'scan.webp'} -> {out / 'scan.png'}; "
                             "rename one of each, or translate them on their own into another --out\n")


def test_names_differing_only_in_case_clash_where_the_file_system_ignores_case(g2c_run, tmp_path, monkeypatch):
    """On macOS's and Windows's file systems Photo.jpg's and photo.png's outputs are one file:
    the second translation silently replaced the first. Refused there as any clash is; this
    file system's own answer is asked, so on Linux both are written."""
    from click.testing import CliRunner

    import i2i.translate
    from i2i.cli import cli

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("Photo.jpg", "photo.png"):
        Image.new("RGB", (20, 16), (200, 30, 60)).save(folder / name)
    on_this_system = i2i.translate.names_ignore_case(tmp_path)
    assert on_this_system == (tmp_path / "IN").exists()  # the probe agrees with a plain look-up
    assert list(tmp_path.iterdir()) == [folder]  # and leaves nothing behind
    if not on_this_system:
        result = CliRunner().invoke(cli, ["translate", str(g2c_run), str(folder), "--out", str(tmp_path / "o"), "--quiet"])
        assert result.exit_code == 0, result.output
        assert written_in(tmp_path / "o") == ["Photo.png", "photo.png"]
    monkeypatch.setattr(i2i.translate, "names_ignore_case", lambda folder: True)
    result = CliRunner().invoke(cli, ["translate", str(g2c_run), str(folder), "--out", str(tmp_path / "o2")])
    assert result.exit_code == 2 and not (tmp_path / "o2").exists()
    assert result.output == (f"i2i: error: 1 group(s) of inputs would be written to the same file (outputs are named by "
                             "file stem, in --format, and names differing only in case are one file on the file system "
                             f"of --out): {folder / 'Photo.jpg'} and {folder / 'photo.png'} -> {tmp_path / 'o2' / 'Photo.png'}"
                             "; rename one of each, or translate them on their own into another --out\n")


def test_translate_refuses_an_output_file_named_as_an_output_folder_before_writing(g2c_run, tmp_path):
    folder = tmp_path / "in"
    (folder / "x.png").mkdir(parents=True)  # a folder of inputs whose name is x.jpg's output name
    Image.new("RGB", (20, 16), (200, 30, 60)).save(folder / "x.jpg")
    Image.new("RGB", (20, 16), (20, 30, 60)).save(folder / "x.png" / "a.png")
    out = tmp_path / "out"
    result = run_i2i(["translate", str(g2c_run), str(folder), "--out", str(out)])
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and not out.exists(), result.stderr
    assert str(folder / "x.jpg") in result.stderr and str(out / "x.png") in result.stderr
    # an output that is a folder already is not counted as done, nor replaced
    (out / "y.png").mkdir(parents=True)
    (folder / "x.png" / "a.png").unlink()
    (folder / "x.png").rmdir()
    Image.new("RGB", (20, 16), (20, 30, 60)).save(folder / "y.jpg")
    for flags in ([], ["--overwrite"], ["--skip-existing"]):
        again = run_i2i(["translate", str(g2c_run), str(folder), "--out", str(out), *flags])
        assert again.returncode == 2 and again.stderr.count("\n") == 1, (flags, again.stderr)
        assert f"{out / 'y.png'}: is a folder" in again.stderr and not (out / "x.png").exists()


def test_translate_refuses_an_image_wider_than_the_format_holds_before_writing(g2c_run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (20, 16), (200, 30, 60)).save(folder / "a_small.png")
    Image.new("RGB", (16390, 4), (200, 30, 60)).save(folder / "panorama.png")  # WebP stores 16383 px a side
    out = tmp_path / "out"
    result = run_i2i(["translate", str(g2c_run), str(folder), "--out", str(out), "--format", "webp"])
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and not out.exists(), result.stderr
    assert result.stderr == (f"i2i: error: {folder / 'panorama.png'}: 16390 x 4 px is larger than webp can store "
                             "(16383 px a side); use --format png or tif\n")


# -- what the output keeps of the input: alpha, bit depth ----------------------------------------------
def _old_translation(model, path):
    """What translate wrote before it kept alpha and 16 bits: the 8-bit RGB of the composited image."""
    from i2i.data import decode_image, to_pil

    return np.asarray(to_pil(model(decode_image(path, 3))))


def test_a_file_named_and_in_a_given_folder_goes_where_its_folder_puts_it_in_either_order(g2c_run, tmp_path):
    """It went to out/deeper/n.png or to out/n.png by the order of the arguments, so a rerun
    in the other order with --skip-existing translated it again."""
    from i2i.translate import translate_files

    model = i2i.load(g2c_run, device="cpu")
    make_photos(tmp_path / "in" / "deeper", count=1, size=(20, 16))
    folder, named = tmp_path / "in", tmp_path / "in" / "deeper" / "photo_0.png"
    for order, out in (([folder, named], "a"), ([named, folder], "b")):
        report = translate_files(model, order, tmp_path / out, progress=False)
        assert report.outputs == [tmp_path / out / "deeper" / "photo_0.png"]


def test_a_folder_whose_only_images_are_in_its_out_folder_says_so(g2c_run, tmp_path):
    from i2i.translate import translate_files

    make_photos(tmp_path / "in" / "done", count=1, size=(20, 16))
    with pytest.raises(i2i.UserError, match=rf"^no images found in {re.escape(str(tmp_path / 'in'))} .*; "
                                            rf"{re.escape(str(tmp_path / 'in' / 'done'))}, the out_dir folder inside it, "
                                            "is not searched"):
        translate_files(i2i.load(g2c_run, device="cpu"), tmp_path / "in", tmp_path / "in" / "done", progress=False)


@pytest.fixture
def alpha_inputs(tmp_path):
    folder = tmp_path / "alpha_in"
    _, alphas = make_transparent_images(folder, 20, 28, seed=3)
    return folder, alphas


def test_translate_keeps_the_inputs_alpha_where_the_format_holds_one(g2c_run, alpha_inputs, tmp_path):
    from i2i.translate import translate_files

    folder, alphas = alpha_inputs
    model = i2i.load(g2c_run, device="cpu")
    for fmt in ("png", "tif", "webp"):
        out = tmp_path / fmt
        report = translate_files(model, [folder], out, fmt=fmt, progress=False)
        assert report.written == 4 and report.flattened == 0
        for stem, alpha in alphas.items():
            image = Image.open(out / f"{stem}.{fmt}")
            assert image.mode == "RGBA" and image.size == (alpha.shape[1], alpha.shape[0]), (fmt, stem)
            assert np.array_equal(np.asarray(image)[..., 3], alpha), (fmt, stem)  # unchanged (WebP: lossless alpha)
            if fmt != "webp":  # shown over white, the colour is what the network made of the image over white
                rgb, a = np.asarray(image)[..., :3].astype(float), alpha[..., None].astype(float) / 255
                shown = a * rgb + (1 - a) * 255
                kept = (a > 0) & ((a == 1) | ((rgb > 0) & (rgb < 255)))  # not clipped where the white came out
                difference = np.abs(shown - _old_translation(model, folder / f"{stem}.png"))
                assert difference[np.broadcast_to(kept, difference.shape)].max() <= 1, (fmt, stem)
        assert Image.open(out / f"rgb.{fmt}").mode == "RGB"
    # 8-bit RGB inputs are written exactly as before
    assert np.array_equal(np.asarray(Image.open(tmp_path / "png" / "rgb.png")), _old_translation(model, folder / "rgb.png"))
    # the Python API gives what translate writes
    api = model.translate(folder / "rgba.png")
    assert api.mode == "RGBA" and np.array_equal(np.asarray(api), np.asarray(Image.open(tmp_path / "png" / "rgba.png")))
    assert model.translate(folder / "la.png").mode == "RGBA" and model.translate(folder / "rgb.png").mode == "RGB"
    assert np.array_equal(np.asarray(model.translate(folder / "rgba.png", keep_alpha=False)),
                          _old_translation(model, folder / "rgba.png"))


def test_translate_to_jpeg_composites_transparent_inputs_and_says_so_once(g2c_run, alpha_inputs, tmp_path, capsys):
    from i2i.translate import translate_files

    folder, alphas = alpha_inputs
    out = tmp_path / "jpg"
    result = run_i2i(["translate", str(g2c_run), str(folder), "--out", str(out), "--format", "jpg"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("i2i: note: --format jpg holds neither transparency nor 16 bits: 3 input(s) with "
                             "transparency are shown composited onto white (png, webp or tif keeps transparency)\n")
    for stem, alpha in alphas.items():
        image = Image.open(out / f"{stem}.jpg")
        assert image.mode == "RGB" and image.size == (alpha.shape[1], alpha.shape[0])
    translate_files(i2i.load(g2c_run, device="cpu"), [folder], tmp_path / "png", progress=False)
    assert capsys.readouterr().err == ""  # nothing lost, nothing to say


def test_translate_writes_16_bit_outputs_for_16_bit_inputs(g2c_run, tmp_path, capsys):
    from test_decode_encode import libpng, tiff_samples

    from i2i.data.decode import decode_full
    from i2i.data.encode import encode_png16
    from i2i.translate import translate_files

    folder = tmp_path / "deep"
    folder.mkdir()
    yy, xx = np.mgrid[0:24, 0:32]
    ramp = (xx * 2011 + yy * 37).astype(np.uint16)  # steps far finer than an 8-bit level (257)
    rgba16 = np.stack([ramp, 65535 - ramp, (ramp // 2 + 9000), (xx * 2047).astype(np.uint16)], -1)
    (folder / "rgb16.png").write_bytes(encode_png16(rgba16[..., :3]))
    (folder / "rgba16.png").write_bytes(encode_png16(rgba16))
    Image.fromarray(ramp).save(folder / "grey16.png")
    Image.fromarray(ramp).save(folder / "grey16_tiff.tif")
    Image.fromarray((ramp >> 8).astype(np.uint8)).save(folder / "grey8.png")
    model = i2i.load(g2c_run, device="cpu")
    report = translate_files(model, [folder], tmp_path / "png", progress=False)
    assert report.written == 5 and report.reduced == 0
    for stem in ("rgb16", "rgba16", "grey16", "grey16_tiff"):
        data = (tmp_path / "png" / f"{stem}.png").read_bytes()
        assert data[24] == 16 and data[25] == (6 if stem == "rgba16" else 2), stem  # 16-bit RGB(A) PNG
        pixels = libpng(data)
        decoded = decode_full(next(folder.glob(f"{stem}.*")), 3)
        full = (model(decoded.pixels.float() / 65535).clamp(0, 1) * 65535).round().permute(1, 2, 0).numpy()
        rgb = pixels[..., :3].astype(np.float64)
        if stem == "rgba16":  # shown over white, as the network saw it (see with_alpha)
            a = rgba16[..., 3:].astype(np.float64) / 65535
            kept = np.broadcast_to((a > 0) & ((a == 1) | ((rgb > 0) & (rgb < 65535))), rgb.shape)
            rgb, full = (a * rgb + (1 - a) * 65535)[kept], full[kept]
        assert np.abs(rgb - full).max() <= 1, stem  # the network's output, to 16 bits
        assert (pixels[..., :3] % 257).any(), stem  # not 8-bit values scaled up
    assert np.array_equal(libpng((tmp_path / "png" / "rgba16.png").read_bytes())[..., 3], rgba16[..., 3])
    assert (tmp_path / "png" / "grey8.png").read_bytes()[24] == 8  # an 8-bit input stays 8-bit
    # the network sees the 16-bit input at full precision, not rounded to 8 bits
    grey_out = libpng((tmp_path / "png" / "grey16.png").read_bytes()).astype(np.float64)
    rounded = (model(decode_full(folder / "grey16.png", 3).pixels.float().div(257).round().div(255)).clamp(0, 1) * 65535)
    assert np.abs(grey_out - rounded.round().permute(1, 2, 0).numpy()).max() > 16

    tif = translate_files(model, [folder / "rgba16.png", folder / "grey16_tiff.tif"], tmp_path / "tif", fmt="tif", progress=False)
    assert tif.written == 2
    samples = tiff_samples((tmp_path / "tif" / "rgba16.tif").read_bytes())
    assert samples.shape == (24, 32, 4) and np.array_equal(samples[..., 3], rgba16[..., 3])
    assert np.array_equal(samples, libpng((tmp_path / "png" / "rgba16.png").read_bytes()))
    grey_tif = tiff_samples((tmp_path / "tif" / "grey16_tiff.tif").read_bytes())
    assert np.array_equal(grey_tif, libpng((tmp_path / "png" / "grey16_tiff.png").read_bytes()))
    assert capsys.readouterr().err == ""

    translate_files(model, [folder / "rgba16.png"], tmp_path / "webp", fmt="webp", progress=False)
    # a program is told of its own argument, not of the command's --format
    assert capsys.readouterr().err == ("i2i: note: fmt='webp' holds 8 bits per channel: 1 input(s) with 16 bits per "
                                       "channel were written with 8 (png or tif keeps 16 bits)\n")
    image = Image.open(tmp_path / "webp" / "rgba16.webp")
    assert image.mode == "RGBA" and np.abs(np.asarray(image)[..., 3].astype(int) - rgba16[..., 3] / 257).max() <= 0.5


class _Quarters(torch.nn.Module):
    """Down and up by 4 without declaring size_multiple: sizes not a multiple of 4 shrink."""

    def __init__(self):
        super().__init__()
        self.down, self.up = torch.nn.Conv2d(3, 4, 4, stride=4), torch.nn.ConvTranspose2d(4, 3, 4, stride=4)

    def forward(self, x):
        return self.up(self.down(x))


def test_a_generator_that_changes_the_image_size_is_named_not_cropped_silently():
    from i2i.engine.infer import run_any_size

    net = _Quarters()
    with torch.no_grad():
        assert run_any_size(net, torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)
        with pytest.raises(i2i.PluginError, match=r"^the generator \(_Quarters\) returned 28x28 px for an input of "
                                                  r"30x30: a generator keeps its input's height and width"):
            run_any_size(net, torch.rand(1, 3, 30, 30))
        with pytest.raises(i2i.PluginError, match="returned 64x64 px for an input of 66x66"):
            run_any_size(net, torch.rand(1, 3, 66, 66), tile=66)


def test_a_run_folder_without_its_recipe_rebuilds_it_from_run_json_or_says_to_restore_it(g2c_run, tmp_path, capfd):
    """A recipe.toml deleted by hand: run.json records the recipe as i2i last wrote it, so
    load, eval, translate and resume write it back; without that record, the error says to restore it."""
    import shutil

    copy = shutil.copytree(g2c_run, tmp_path / "run")
    written = (copy / "recipe.toml").read_text()
    (copy / "recipe.toml").unlink()
    capfd.readouterr()
    model = i2i.load(copy)
    assert f"{copy / 'recipe.toml'} was missing; rebuilt from {copy / 'run.json'}" in capfd.readouterr().err
    assert (copy / "recipe.toml").read_text().split("\n", 1)[1] == written.split("\n", 1)[1]  # the header names its path
    assert model.task is not None
    (copy / "recipe.toml").unlink()
    (copy / "run.json").unlink()
    with pytest.raises(i2i.CheckpointError, match=r"run: no recipe.toml, which a run folder keeps beside checkpoints/ "
                                                  r"to rebuild its network from; restore it"):
        i2i.load(copy)
    checkpoint = next((copy / "checkpoints").glob("step_*"))  # a checkpoint folder given: where it looked
    with pytest.raises(i2i.CheckpointError, match=r"no recipe.toml in .*, two folders up"):
        i2i.load(checkpoint)


def test_api_mistakes_around_translate_point_the_right_way(g2c_run, tmp_path):
    import numpy as np

    from i2i.translate import translate_files

    model = i2i.load(g2c_run, device="cpu")
    with pytest.raises(ValueError, match=r"^model.translate got an empty image \(0 x 0 pixels\)"):
        model.translate(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(i2i.UserError, match=r"^no inputs given: pass image files or folders to translate"):
        translate_files(model, [], tmp_path / "o", progress=False)
    photo = make_photos(tmp_path / "in", count=1, size=(24, 16)) / "photo_0.png"
    (tmp_path / "afile.txt").write_text("notes")
    with pytest.raises(i2i.UserError, match=r"afile.txt: is a file, not a folder; choose another out_dir"):
        translate_files(model, [photo], tmp_path / "afile.txt", progress=False)
    with pytest.raises(i2i.UserError, match=r"^/dev/null: is a device, not a folder; choose another out_dir"):
        translate_files(model, [photo], "/dev/null", progress=False)  # it said "/dev/null/photo_0.png: File exists"
    # a file where a parent folder would be: said before any work, naming the file (it was the first write's error)
    with pytest.raises(i2i.UserError, match=rf"afile.txt/out: cannot be made: {re.escape(str(tmp_path))}/afile.txt is "
                                            r"a file, not a folder; choose another out_dir"):
        translate_files(model, [photo], tmp_path / "afile.txt" / "out", progress=False)
    with pytest.raises(TypeError, match=r"^inputs are image files and folders, as str or paths \(one alone too\), not "
                                        r"bytes b'photo.png'"):
        translate_files(model, [b"photo.png"], tmp_path / "o", progress=False)
    with pytest.raises(TypeError, match=r"^out_dir is the folder for the translated images, a str or path, not NoneType"):
        translate_files(model, [photo], None, progress=False)


def test_run_given_a_folder_says_how_to_continue_it(g2c_run, tmp_path):
    result = run_i2i(["run", str(g2c_run)])
    assert (result.returncode, result.stderr) == (
        2, f"i2i: error: {g2c_run}: a run folder, not a recipe file; to continue it: i2i run --resume {g2c_run}\n")


def test_import_weights_into_a_residual_denoiser_and_mismatches_say_what_differs(tmp_path):
    """residual = true wraps the network (its names gain 'net.'): importing a noise-predicting
    network failed on the prefix, though the weights are the network's own."""
    from safetensors.torch import load_file

    spec = json.loads((ROOT / "tests" / "fixtures" / "reference_keys" / "resnet_6blocks_3to3_instance.json").read_text())
    state = {k: (torch.rand(v) if v else torch.tensor(0)) for k, v in spec["keys"].items()}
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    wrapped = run_i2i(["import-weights", str(path), "--task", "denoise", "--set", "residual=true", "--out", str(tmp_path / "w")])
    assert wrapped.returncode == 0, wrapped.stderr
    saved = load_file(next((tmp_path / "w" / "checkpoints").glob("step_*")) / "generator.safetensors")
    first = next(k for k, v in state.items() if v.dim() == 4)
    assert torch.equal(saved[f"net.{first}"], state[first])  # the network's weights, inside the denoiser's wrapper
    convs = [k for k, v in state.items() if v.dim() == 4]
    del state[convs[len(convs) // 2]]  # one tensor short, inside a residual block
    torch.save(state, path)
    short = run_i2i(["import-weights", str(path), "--task", "denoise", "--out", str(tmp_path / "s")])
    assert short.returncode == 2 and short.stderr.count("\n") == 1
    assert short.stderr.startswith(f"i2i: error: {path}: reference weights do not fit resnet (")  # naming the file
    assert short.stderr.rstrip().endswith(f": missing {convs[len(convs) // 2]}")
    assert not (tmp_path / "s").exists()
    # weights of a reference run that diverged: refused at import, not a run that then cannot be opened
    state = {k: (torch.rand(v) if v else torch.tensor(0)) for k, v in spec["keys"].items()}
    state[first][0, 0, 0, 0] = float("nan")
    torch.save(state, path)
    diverged = run_i2i(["import-weights", str(path), "--task", "denoise", "--out", str(tmp_path / "n")])
    assert diverged.returncode == 2 and diverged.stderr == (
        f"i2i: error: {path}: {first} holds NaN or infinite values (the reference run diverged before this save?); "
        "import an earlier epoch's weights (<epoch>_net_G.pth)\n")
    assert not (tmp_path / "n").exists()


def test_a_cyclegan_generator_imports_as_a_paired_model(tmp_path, odd_inputs):
    """CycleGAN's latest_net_G_A.pth (3 -> 3) was importable only as a denoiser, which eval then
    scored against added noise; as 'paired' it translates the user's image as is."""
    spec = json.loads((ROOT / "tests" / "fixtures" / "reference_keys" / "resnet_6blocks_3to3_instance.json").read_text())
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(v, generator=g) * 0.02 if v else torch.tensor(0)) for k, v in spec["keys"].items()}
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(state, path)
    result = run_i2i(["import-weights", str(path), "--task", "paired", "--set", "direction=BtoA", "--out", str(tmp_path / "h2z")])
    assert result.returncode == 0, result.stderr
    assert i2i.load_recipe(tmp_path / "h2z" / "recipe.toml")["task"] == {
        "name": "paired", "direction": "BtoA", "input_channels": 3, "target_channels": 3, "residual": False}
    model = i2i.load(tmp_path / "h2z")
    image = torch.rand(1, 3, 20, 24, generator=g)
    with torch.no_grad():
        expected = ((model.generator(image * 2 - 1) + 1) / 2).clamp(0, 1)  # the reference's net on the image itself
    torch.testing.assert_close(model(image), expected)
    unpaired = run_i2i(["eval", str(tmp_path / "h2z")])  # an import records the sample photos, which hold no pairs
    assert unpaired.returncode == 2 and unpaired.stderr.count("\n") == 1 and "i2i eval RUN --data DIR" in unpaired.stderr


def test_import_weights_names_the_task_options_that_fit_a_generators_channels(tmp_path):
    """A 1 -> 3 generator (grey in, colour out) was 'mapped by no installed task', though
    paired with input_channels = 1 takes it."""
    net = i2i.registry().build("generators", "unet", 1, 3, depth=5, width=8)
    torch.save(net.state_dict(), tmp_path / "latest_net_G.pth")
    refused = run_i2i(["import-weights", str(tmp_path / "latest_net_G.pth"), "--task", "denoise", "--out", str(tmp_path / "x")])
    assert refused.returncode == 2 and refused.stderr.rstrip().endswith(
        "tasks that map 1 -> 3: paired (--set input_channels=1 --set target_channels=3)")
    taken = run_i2i(["import-weights", str(tmp_path / "latest_net_G.pth"), "--task", "paired", "--set", "input_channels=1",
                     "--out", str(tmp_path / "grey2colour")])
    assert taken.returncode == 0, taken.stderr


def test_a_translation_stopped_part_way_continues_with_skip_existing(g2c_run, photos, tmp_path, capsys):
    """Ctrl-C (or a full disk) left some outputs; rerunning refused them all, with no way to go on."""
    from i2i.translate import translate_files

    model = i2i.load(g2c_run)

    class InterruptedAfterOneBatch:
        device, calls = model.device, 0

        def __call__(self, batch, tile):
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt
            return model(batch, tile=tile)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        translate_files(InterruptedAfterOneBatch(), photos, out, batch_size=1, progress=False)
    assert len(list(out.glob("*.png"))) == 1
    assert (f"i2i: stopped after writing 1 image(s) to {out} (each written whole); the same call with skip_existing=True "
            "translates the rest") in capsys.readouterr().err
    result = run_i2i(["translate", str(g2c_run), str(photos), "--out", str(out)])
    assert result.returncode == 2 and "use --overwrite, --skip-existing (to finish a translation that stopped)" in result.stderr
    result = run_i2i(["translate", str(g2c_run), str(photos), "--out", str(out), "--skip-existing"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"i2i: wrote {len(list(photos.iterdir())) - 1} image(s) to {out}, left 1 already there"
    assert len(list(out.glob("*.png"))) == len(list(photos.iterdir()))


def test_ctrl_c_while_outputs_are_written_counts_every_file_written(g2c_run, photos, tmp_path, capsys, monkeypatch):
    """Ctrl-C while a batch's files were being written said up to a batch fewer images than
    the folder then held: the writes under way finish, and were not counted."""
    import os
    import signal

    import i2i.translate
    from i2i.translate import translate_files

    plain_write = i2i.translate._write

    def write_then_ctrl_c(*args):
        plain_write(*args)
        if args[2].stem == sorted(p.stem for p in photos.iterdir())[0]:
            os.kill(os.getpid(), signal.SIGINT)  # the main thread is waiting for writes, or translating

    monkeypatch.setattr(i2i.translate, "_write", write_then_ctrl_c)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        translate_files(i2i.load(g2c_run), photos, out, batch_size=2, progress=False)
    written = len(list(out.glob("*.png")))
    assert 1 <= written <= len(list(photos.iterdir()))  # however far the writes queued behind it had got
    assert f"i2i: stopped after writing {written} image(s) to {out}" in capsys.readouterr().err


def test_translate_refuses_an_empty_out_and_takes_format_spellings(g2c_run, odd_inputs, tmp_path):
    result = run_i2i(["translate", str(g2c_run), str(odd_inputs / "odd.jpg"), "--out", ""], cwd=tmp_path)
    assert result.returncode == 2 and "--out '': give the folder for the translated images" in result.stderr
    assert list(tmp_path.iterdir()) == [odd_inputs]  # nothing written into the current folder
    result = run_i2i(["translate", str(g2c_run), str(odd_inputs / "odd.jpg"), "--out", str(tmp_path / "o"), "--format", "JPEG"])
    assert result.returncode == 0, result.stderr
    assert written_in(tmp_path / "o") == ["odd.jpg"]


def test_saved_images_of_names_that_clash_twice_are_all_kept(g2c_run, tmp_path):
    """photo.jpg and photo.png keep their extensions, and photo.png.png then took the name
    photo.png's images had: one was overwritten without a word."""
    from i2i.evaluation import evaluate_run

    folder = tmp_path / "coll"
    folder.mkdir()
    for name, colour in (("photo.jpg", (200, 30, 30)), ("photo.png", (30, 200, 30)), ("photo.png.png", (30, 30, 200))):
        Image.new("RGB", (40, 40), colour).save(folder / name, format="PNG" if name.endswith("png") else "JPEG")
    evaluate_run(g2c_run, data_dir=folder, crop=0, save_images=tmp_path / "saved")
    targets = sorted((tmp_path / "saved" / "target").iterdir())
    assert len(targets) == 3
    assert {tuple(np.asarray(Image.open(t))[0, 0] // 100) for t in targets} == {(2, 0, 0), (0, 2, 0), (0, 0, 2)}


def test_names_at_the_file_systems_limit_are_written_and_those_past_it_refused_before_any_work(g2c_run, tmp_path):
    """A 255-byte output name is legal, but its hidden temporary name (a dot and a suffix more)
    was not: a traceback in eval --save-images, and translate stopped part-way at that file on
    every rerun. With --format webp the output name itself is too long."""
    from i2i.evaluation import evaluate_run
    from i2i.translate import translate_files

    model = i2i.load(g2c_run)
    folder = tmp_path / "in"
    folder.mkdir()
    longest = "a" * 251  # + ".png": 255 bytes, the limit
    Image.new("RGB", (20, 16), (200, 30, 60)).save(folder / f"{longest}.jpg")
    Image.new("RGB", (20, 16), (30, 60, 200)).save(folder / "short.jpg")
    assert translate_files(model, folder, tmp_path / "out", progress=False).written == 2
    assert sorted(os.listdir(tmp_path / "out")) == [".i2i-outputs", f"{longest}.png", "short.png"]
    with pytest.raises(i2i.UserError, match=rf"^{re.escape(str(folder / longest))}.jpg: its output name, a{{40}}\.\.\."
                                            r"a{15}\.webp, would be 256 bytes, past the 255 a file name may have; "
                                            r"shorten the input's name \(or use a shorter fmt\)$"):
        translate_files(model, folder, tmp_path / "webp", fmt="webp", progress=False)
    assert not (tmp_path / "webp").exists()
    evaluate_run(g2c_run, data_dir=folder, crop=0, save_images=tmp_path / "saved")
    assert sorted(os.listdir(tmp_path / "saved" / "input")) == [f"{longest}.png", "short.png"]
    # the same stem as .jpg and .png keeps its extension: 259 bytes, said before any scoring
    Image.new("RGB", (20, 16), (30, 200, 60)).save(folder / f"{longest}.png")
    with pytest.raises(i2i.UserError, match=r"^save_images: a{251}\.jpg: its saved name, .* would be 259 bytes, past "
                                            r"the 255 a file name may have; shorten the file's name, or score without "
                                            r"save_images$"):
        evaluate_run(g2c_run, data_dir=folder, crop=0, save_images=tmp_path / "saved-2")
    assert not (tmp_path / "saved-2").exists() or not any((tmp_path / "saved-2").iterdir())


def test_skip_existing_with_everything_done_succeeds_beside_an_unreadable_file(g2c_run, tmp_path):
    """A folder holding one broken file could not be finished: 'none of the input files could
    be read' once every readable one was done."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (20, 20), (90, 40, 10)).save(folder / "one.png")
    (folder / "zero.jpg").write_bytes(b"")
    assert run_i2i(["translate", str(g2c_run), str(folder), "--out", str(tmp_path / "o")]).returncode == 0
    again = run_i2i(["translate", str(g2c_run), str(folder), "--out", str(tmp_path / "o"), "--skip-existing"])
    assert again.returncode == 0, again.stderr
    assert "left 1 already there" in again.stdout + again.stderr and "zero.jpg" in again.stderr


def test_a_run_folder_given_as_input_is_refused_and_an_output_folder_warned_of(g2c_run, tmp_path):
    """RUN given twice translated the run's sample grids; a translation's own output folder was
    translated again without a word, where run and eval refuse or warn."""
    result = run_i2i(["translate", str(g2c_run), str(g2c_run), "--out", str(tmp_path / "o")])
    assert result.returncode == 2 and not (tmp_path / "o").exists()
    assert result.stderr == (f"i2i: error: {g2c_run}: an i2i run folder, whose sample grids are no photos to translate; "
                             "give the images, or the folder that holds them\n")
    photos = make_photos(tmp_path / "photos", count=1)
    assert run_i2i(["translate", str(g2c_run), str(photos), "--out", str(tmp_path / "first"), "--quiet"]).returncode == 0
    again = run_i2i(["translate", str(g2c_run), str(tmp_path / "first"), "--out", str(tmp_path / "second"), "--quiet"])
    assert again.returncode == 0 and f"i2i: warning: {tmp_path / 'first'} holds images i2i wrote" in again.stderr


def test_a_read_only_file_system_while_translating_is_not_told_to_wait_for_room(g2c_run, tmp_path, monkeypatch):
    import errno

    from click.testing import CliRunner

    from i2i.cli import cli
    from i2i.data import encode

    def read_only(pixels, path, fmt):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(encode, "save_image", read_only)
    Image.new("RGB", (20, 20), (90, 40, 10)).save(tmp_path / "one.png")
    result = CliRunner().invoke(cli, ["translate", str(g2c_run), str(tmp_path / "one.png"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "translates the rest once the file system can be written again" in result.output
    assert "room" not in result.output


def test_a_full_disk_while_translating_exits_1_as_for_a_run(g2c_run, tmp_path, monkeypatch):
    """It exited 2, the status of a user's mistake."""
    import errno

    from click.testing import CliRunner

    from i2i.cli import cli
    from i2i.data import encode

    def full(pixels, path, fmt):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(encode, "save_image", full)
    Image.new("RGB", (20, 20), (90, 40, 10)).save(tmp_path / "one.png")
    result = CliRunner().invoke(cli, ["translate", str(g2c_run), str(tmp_path / "one.png"), "--out", str(tmp_path / "o"),
                                      "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{tmp_path / 'o' / 'one.png'}: cannot write (No space left on device); free some space" in result.output
    assert written_in(tmp_path / "o") == []  # no partial file
    # full before the first output: the folder's mark cannot be written either, said the same way
    from pathlib import Path

    from i2i.data.sources import OUTPUTS_MARKER

    plain_write_text = Path.write_text

    def full_for_the_mark(path, *args, **kwargs):
        if path.name == OUTPUTS_MARKER:
            raise OSError(errno.ENOSPC, "No space left on device")
        return plain_write_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_for_the_mark)
    result = CliRunner().invoke(cli, ["translate", str(g2c_run), str(tmp_path / "one.png"), "--out", str(tmp_path / "o2"),
                                      "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{tmp_path / 'o2'}: cannot write (No space left on device); free some space" in result.output


def test_a_jpeg_artifact_remover_trains_and_takes_the_users_jpegs(photos, tmp_path):
    """dejpeg end to end: trained on clean photos, it translates a real JPEG file (of an odd
    size) to an image of that size, and its evaluation scores the JPEG input as the baseline."""
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, task={"name": "dejpeg", "quality": [10, 30]},
                         generator={"name": "unet", "depth": 2, "width": 4})
    run = i2i.train(recipe, quiet=True)
    assert set(run.metrics) >= {"psnr", "ssim"} and "jpeg input" in run.baselines
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (21, 35, 3), np.uint8)).save(tmp_path / "damaged.jpg", quality=15)
    result = run_i2i(["translate", str(run.run_dir), str(tmp_path / "damaged.jpg"), "--out", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out" / "damaged.png").size == (35, 21)
    # scored at one quality, as the README's table is: the JPEG input gets worse as quality falls
    scores = {}
    for quality in (10, 30):
        scored = run_i2i(["eval", str(run.run_dir), "--set", f"task.quality={quality}", "--json"])
        assert scored.returncode == 0, scored.stderr
        scores[quality] = json.loads(scored.stdout)["baselines"]["jpeg input"]["psnr"]
    assert scores[10] < scores[30]
    rows = run_i2i(["eval", str(run.run_dir), "--per-image", str(tmp_path / "rows.csv")])
    assert rows.returncode == 0, rows.stderr
    header, row = (tmp_path / "rows.csv").read_text().splitlines()[:2]
    assert header.startswith("file,jpeg quality,psnr") and 10 <= float(row.split(",")[1]) <= 30


def test_eval_of_a_16_bit_folder_scores_and_saves_at_16_bits(g2c_run, tmp_path):
    """Deep files were scored as their 8-bit rounding and saved as 8-bit PNGs: a target that
    varies by less than an 8-bit level came back flat."""
    from i2i.data.decode import decode_full
    from i2i.evaluation import evaluate_run
    from test_deep_images import deep_folder

    [array] = deep_folder(tmp_path / "deep", 1)
    evaluate_run(g2c_run, data_dir=tmp_path / "deep", crop=0, save_images=tmp_path / "saved")
    target = decode_full(tmp_path / "saved" / "target" / "deep_0.png", 3)  # Pillow would read it at 8 bits
    assert target.bits == 16
    # the Lab round trip of gray2color's target moves values by a level or so of 65535, not 257
    assert np.abs(target.pixels.permute(1, 2, 0).numpy().astype(int) - array.astype(int)).max() < 64
    output = decode_full(tmp_path / "saved" / "output" / "deep_0.png", 3).pixels.to(torch.int32)
    assert output.unique().numel() > 10


@pytest.mark.parametrize("direction, half", [("AtoB", "the left halves, for a run that is AtoB"),
                                             ("BtoA", "the right halves: the run is BtoA")])
def test_translating_whole_a_b_files_with_a_paired_model_gets_a_note(tmp_path, capsys, direction, half):
    """A pix2pix user gave translate the test set's A|B files and got translations of whole
    pairs, without a word; the network takes the input half alone."""
    from helpers import make_pairs
    from i2i.translate import translate_files

    pairs = make_pairs(tmp_path / "pairs", count=3, size=(16, 16))
    recipe = {**TINY_G2C, "task": {"name": "paired", "direction": direction},
              "data": {**TINY_G2C["data"], "source": str(pairs)}, "train": {**TINY_G2C["train"], "steps": 1},
              "output": {**TINY_G2C["output"], "dir": str(tmp_path / "run")}}
    model = i2i.load(i2i.train(recipe, quiet=True).run_dir)
    capsys.readouterr()
    translate_files(model, pairs, tmp_path / "whole", progress=False)
    assert capsys.readouterr().err == (f"i2i: note: 3 input(s) are twice as wide as high, like the A|B files this model "
                                       "was trained on; translate gives the network each file whole, as one input "
                                       f"image, so give it the input halves alone ({half})\n")
    halves = tmp_path / "halves"
    halves.mkdir()
    Image.open(next(pairs.iterdir())).crop((0, 0, 16, 16)).save(halves / "a.png")
    translate_files(model, halves, tmp_path / "out", progress=False)
    assert "twice as wide" not in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_written_is_not_left_behind(tmp_path, monkeypatch):
    """Under umask 277 translate made --out, could not write in it, and left it empty: every
    rerun then failed the same way, blaming the folder. The tests run as root, whom permissions
    do not stop, so the refusal is stood in for."""
    import os
    import pathlib

    from i2i.data.sources import mark_as_outputs

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "write_text", refused)
    before = os.umask(0o277)
    try:
        with pytest.raises(i2i.UserError) as info:
            mark_as_outputs(tmp_path / "out" / "deep", "choose another --out")
    finally:
        os.umask(before)
    assert not (tmp_path / "out").exists()
    assert str(info.value) == (f"{tmp_path / 'out' / 'deep'}: cannot write in it (Permission denied); this process's umask "
                               "(277) makes the folders it creates unwritable even to their owner: run with a umask such "
                               "as 022; choose another --out")


def test_an_out_folder_of_the_users_own_photos_is_not_hidden_from_later_searches(g2c_run, photos, tmp_path, capfd):
    """`--out ~/Pictures` marked the whole folder as i2i's outputs: its photos were left out of
    every later translate, eval and training run, with a note calling them outputs."""
    from i2i.data.sources import OUTPUTS_MARKER, scan_folder

    pictures = tmp_path / "library" / "Pictures"
    pictures.mkdir(parents=True)
    for photo in photos.glob("*.png"):
        shutil.copy(photo, pictures / f"holiday_{photo.name}")
    new = tmp_path / "library" / "fresh"
    assert run_i2i(["translate", str(g2c_run), str(photos / "photo_0.png"), "--out", str(pictures)]).returncode == 0
    assert run_i2i(["translate", str(g2c_run), str(photos / "photo_0.png"), "--out", str(new)]).returncode == 0
    assert not (pictures / OUTPUTS_MARKER).exists() and (new / OUTPUTS_MARKER).is_file()
    files, _ = scan_folder(str(tmp_path / "library"), "data.source")
    assert {f.path.parent.name for f in files} == {"Pictures"}  # the user's photos found, i2i's new folder not
    capfd.readouterr()
    from i2i.translate import translate_files

    translate_files(i2i.load(g2c_run), photos / "photo_1.png", pictures, progress=False)
    assert f"{pictures} already holds images i2i did not write (holiday_photo_" in capfd.readouterr().err


def test_a_photo_given_before_the_run_folder_says_the_run_comes_first(g2c_run, photos, tmp_path):
    result = run_i2i(["translate", str(photos / "photo_0.png"), str(g2c_run), "--out", str(tmp_path / "out")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"i2i: error: {photos / 'photo_0.png'}: a file, not a run folder; the run folder "
                                     f"comes first: i2i translate {g2c_run} {photos / 'photo_0.png'} ... --out "
                                     f"{tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()


def test_validate_names_the_output_folders_it_left_out_of_an_empty_data_folder(photos, tmp_path):
    """`i2i run` noted them; `i2i validate` said only 'no images in this folder or its subfolders'."""
    from i2i.data.sources import OUTPUTS_MARKER

    outputs = tmp_path / "library" / "translated"
    outputs.mkdir(parents=True)
    shutil.copy(photos / "photo_0.png", outputs)
    (outputs / OUTPUTS_MARKER).write_text("")
    result = run_i2i(["validate", str(ROOT / "recipes" / "gray2color.toml"), "--set", f"data.source={tmp_path / 'library'}"])
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"no images in this folder or its subfolders (jpg, jpeg, jpe, jfif, png, webp, "
                                          f"bmp, tif, tiff); 1 i2i run or output folder(s) inside it were left out "
                                          f"({outputs})")
