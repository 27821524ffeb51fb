"""Resuming a run whose data folder changed: the validation files stay the recorded ones."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import i2i
from i2i.data import ImageData
from i2i.data.sources import SPLIT_FILE, RecordedSplit, apply_recorded_split, scan_folder
from i2i.engine.checkpoint import find_checkpoint
from i2i.errors import UserError
from helpers import make_photos, tiny_recipe
from plugin_env import run_i2i


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("originals"))


@pytest.fixture(scope="module")
def others(tmp_path_factory):
    """Six other photos with the same names as ``originals``: another folder of the same count."""
    return make_photos(tmp_path_factory.mktemp("others"), seed=9)


@pytest.fixture
def photos(originals, tmp_path):
    """A folder of its own for each test, to change."""
    return shutil.copytree(originals, tmp_path / "photos")


def start(photos, tmp_path, steps=2, **sections):
    return i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": steps}, **sections), quiet=True)


def recorded(run_dir):
    return json.loads((run_dir / SPLIT_FILE).read_text())


class Files(i2i.Callback):
    """Which files the resumed run trains and validates on."""

    def on_run_start(self, trainer):
        self.train = sorted(p.name for p in trainer.data.train_files)
        self.val = sorted(p.name for p in trainer.data.val_files)


def weights(run_dir):
    return load_file(find_checkpoint(run_dir) / "generator.safetensors")


def test_a_run_records_its_split_by_name_and_size(photos, tmp_path):
    run = start(photos, tmp_path)
    record = recorded(run.run_dir)
    assert record["val_from"] == "data.source"
    assert len(record["val"]) == 2 and len(record["train"]) == 4  # val_fraction 0.34 of 6
    assert set(record["train"]) | set(record["val"]) == {f"photo_{i}.png" for i in range(6)}
    assert all(size == (photos / name).stat().st_size for part in ("train", "val") for name, size in record[part].items())


def test_an_added_photo_is_left_out_and_the_run_continues_exactly(photos, originals, others, tmp_path, capsys):
    straight = i2i.train(tiny_recipe(originals, tmp_path / "straight", train={"steps": 4}), quiet=True)
    run = start(photos, tmp_path)
    before = recorded(run.run_dir)
    shutil.copy(others / "photo_0.png", photos / "a_new_photo.png")  # first in file order: the split would move
    capsys.readouterr()
    files = Files()
    resumed = i2i.train(None, resume=run.run_dir, overrides=["train.steps=4"], callbacks=[files], quiet=True)
    assert resumed.step == 4
    err = capsys.readouterr().err
    assert err.count("i2i: warning:") == 1, err
    assert (f"i2i: warning: {run.run_dir}: data.source: 1 file(s) added since the run started; it goes on with the "
            "4 training and 2 validation file(s) it recorded; added files are not used (start a new run to train on them)") in err
    assert "a_new_photo.png" not in files.train + files.val
    assert files.train == sorted(before["train"]) and files.val == sorted(before["val"])
    assert recorded(run.run_dir) == before  # the record is the run's start, not rewritten
    for key, value in weights(straight.run_dir).items():  # the same files, the same sequence
        assert torch.equal(value, weights(run.run_dir)[key]), key


def test_removed_and_changed_training_photos_are_counted_in_one_warning(photos, others, tmp_path, capsys):
    run = start(photos, tmp_path)
    train = sorted(recorded(run.run_dir)["train"])
    (photos / train[0]).unlink()
    shutil.copy(others / "photo_5.png", photos / train[1])  # another photo under the same name
    capsys.readouterr()
    files = Files()
    i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], callbacks=[files], quiet=True)
    err = capsys.readouterr().err
    assert err.count("i2i: warning:") == 1, err  # not also the checkpoint's 'trained on 4 training images'
    assert ("data.source: 1 training file(s) removed, 1 training file(s) changed since the run started; it goes on "
            "with the 3 training and 2 validation file(s) it recorded that remain; the data order differs from the "
            "original run; changed files are used as they are now") in err
    assert files.train == train[1:]


def test_a_missing_validation_photo_is_left_out_and_the_best_chosen_again(photos, tmp_path, capsys):
    """A deleted validation photo used to make the run unresumable: all its training was lost
    to a user who tidied a folder. It goes on scoring the rest, as a changed scoring setting."""
    run = start(photos, tmp_path)
    val = sorted(recorded(run.run_dir)["val"])
    kept = (photos / val[0]).read_bytes()
    (photos / val[0]).unlink()
    capsys.readouterr()
    files = Files()
    assert i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], callbacks=[files], quiet=True).step == 3
    err = capsys.readouterr().err
    assert (f"i2i: warning: {run.run_dir}: 1 of the run's 2 validation file(s) are missing or changed in data.source = "
            f'"{photos}" (first: {val[0]}, missing); it validates on the 1 of the 2 recorded from here on, so its '
            "scores are not comparable with earlier ones (restore the files to score as before)") in err
    assert ("validation files = 'all recorded' then, '1 of the 2 recorded' now), so its score cannot be compared "
            "with this resume's: the best is chosen again") in err
    assert files.val == val[1:]
    assert (run.run_dir / "checkpoints" / "BEST-until-step_0000002").is_file()
    assert json.loads((find_checkpoint(run.run_dir) / "state.json").read_text())["best"]["step"] == 3
    # restored, the files score as before: the best scored on all of them counts again
    (photos / val[0]).write_bytes(kept)
    i2i.train(None, resume=run.run_dir, overrides=["train.steps=4"], quiet=True)
    assert "step_0000002 (psnr " in capsys.readouterr().err  # "... was scored under this resume's settings"


def test_validation_photos_all_gone_or_changed_stop_the_resume_with_one_line(photos, tmp_path):
    run = start(photos, tmp_path)
    val = sorted(recorded(run.run_dir)["val"])
    (photos / val[0]).unlink()
    (photos / val[1]).write_bytes(b"not an image")  # and one that no longer reads
    proc = run_i2i(["run", "--resume", str(run.run_dir), "--set", "train.steps=3"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"i2i: error: {run.run_dir}: 2 of the run's 2 validation file(s) are missing or changed in data.source = "
        f'"{photos}" (first: {val[0]}, missing), so none is left to score it on: restore them, or start a new run '
        "(train.init_from starts one from this run's weights)")
    assert json.loads((find_checkpoint(run.run_dir) / "state.json").read_text())["step"] == 2  # nothing trained
    shutil.copy(photos / sorted(recorded(run.run_dir)["train"])[0], photos / val[0])
    with pytest.raises(UserError, match=rf"2 of the run's 2 validation file\(s\) are missing or changed .* \(first: {val[0]}, changed: \d+ bytes then, \d+ now\)"):
        i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True)


def test_another_folder_with_as_many_photos_is_refused_and_a_moved_one_resumes(photos, others, tmp_path, capsys, monkeypatch):
    run = start(photos, tmp_path)
    first_val = sorted(recorded(run.run_dir)["val"])[0]
    with pytest.raises(UserError, match=rf"^{run.run_dir}: 2 of the run's 2 validation file\(s\) are missing or changed in "
                                        rf"data.source = \"{others}\" \(first: {first_val}, changed: "):
        i2i.train(None, resume=run.run_dir, overrides=["train.steps=3", f"data.source={others}"], quiet=True)
    moved = photos.rename(tmp_path / "moved")
    with pytest.raises(UserError, match=rf'^data.source = "{photos}": no such folder; if the run\'s images moved: '
                                        rf"i2i run --resume {run.run_dir} --set \"data.source='NEW_PLACE'\" \(quoted, so a "
                                        rf"path with spaces works\)$"):
        i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True)
    # a --set naming a folder that is not there is that --set's mistake, not the run's images moved
    with pytest.raises(UserError, match=r'^overrides data.source=/nowhere: data.source = "/nowhere": no such folder$'):
        i2i.train(None, resume=run.run_dir, overrides=["train.steps=3", "data.source=/nowhere"], quiet=True)
    from i2i.evaluation import evaluate_run

    with pytest.raises(UserError, match=rf'^data.source = "{photos}": no such folder; if the run\'s images moved, set '
                                        rf"data.source in {run.run_dir / 'recipe.toml'} to their new place"):
        evaluate_run(run.run_dir, device="cpu")
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # the new place given relative to here: recorded as an absolute path, as a new run's
    i2i.train(None, resume=run.run_dir, overrides=["train.steps=3", f"data.source={moved.name}"], quiet=True)
    assert "warning" not in capsys.readouterr().err
    assert i2i.load_recipe(run.run_dir / "recipe.toml")["data"]["source"] == str(moved)


def test_a_run_without_its_record_resumes_while_its_folder_is_unchanged_and_gets_one(photos, others, tmp_path, capsys):
    """Drawn again from the same folder, the split is the run's (a changed folder is refused:
    see test_a_split_drawn_again_after_the_folder_changed_is_refused)."""
    run = start(photos, tmp_path)
    before = recorded(run.run_dir)
    (run.run_dir / SPLIT_FILE).unlink()  # as a run written by an older i2i, or a file deleted by hand
    capsys.readouterr()
    assert i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True).step == 3
    assert "error" not in capsys.readouterr().err
    assert recorded(run.run_dir) == before  # drawn again alike, and kept from now on


def test_a_separate_validation_folder_is_kept_too(originals, others, tmp_path, capsys):
    train, val = shutil.copytree(originals, tmp_path / "train"), shutil.copytree(others, tmp_path / "val")
    run = start(train, tmp_path, data={"val_source": str(val)})
    record = recorded(run.run_dir)
    assert record["val_from"] == "data.val_source" and len(record["train"]) == len(record["val"]) == 6
    shutil.copy(originals / "photo_0.png", val / "extra.png")
    shutil.copy(originals / "photo_0.png", train / "extra.png")
    capsys.readouterr()
    files = Files()
    i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], callbacks=[files], quiet=True)
    assert "data.source: 1 file(s) added; data.val_source: 1 file(s) added since the run started" in capsys.readouterr().err
    assert "extra.png" not in files.train + files.val and len(files.val) == 6
    (val / "photo_3.png").unlink()
    capsys.readouterr()
    i2i.train(None, resume=run.run_dir, overrides=["train.steps=4"], callbacks=[files], quiet=True)
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith(f"i2i: warning: {run.run_dir}: data.source: 1 file(s) added") for line in lines), lines
    assert f'i2i: warning: {run.run_dir}: 1 of the run\'s 6 validation file(s) are missing or changed in data.val_source = "{val}" (first: photo_3.png, missing); it validates on the 5 of the 6 recorded' in "\n".join(lines)
    assert len(files.val) == 5 and "photo_3.png" not in files.val
    with pytest.raises(UserError, match="the run validates on the images of data.val_source, now empty"):
        i2i.train(None, resume=run.run_dir, overrides=["train.steps=5", "data.val_source=''"], quiet=True)


def test_recorded_split_of_the_sample_photos_round_trips():
    cfg = {"source": "sample", "val_source": "", "val_fraction": 0.2, "size": 16, "cache_gb": 0.0, "workers": 0,
           "upscale_small": False, "resize": 0, "flip": True, "rotate": False}
    drawn = ImageData(cfg, channels=3, device="cpu", seed=4)
    record = RecordedSplit.from_json(json.loads(json.dumps(drawn.recorded_split().to_json())), "runs/x")
    assert len(record.val) == 1 and len(record.train) == 5
    kept = ImageData(cfg, channels=3, device="cpu", seed=0, split=record)  # another seed: the record decides
    assert kept.val_files == drawn.val_files and kept.train_files == drawn.train_files and kept.split_note == ""


def test_no_file_ever_changes_sides(tmp_path):
    folder = make_photos(tmp_path / "many", count=10, size=(20, 18))
    files, _ = scan_folder(str(folder), "data.source")
    record = RecordedSplit.of(files[:7], files[7:], val_separate=False)
    for name in ("photo_0.png", "photo_4.png"):
        (folder / name).unlink()
    make_photos(tmp_path / "new", count=3, size=(20, 18), seed=2)
    for i in range(3):
        shutil.copy(tmp_path / "new" / f"photo_{i}.png", folder / f"added_{i}.png")
    now, _ = scan_folder(str(folder), "data.source")
    train, val, note, kept = apply_recorded_split(record, now, None, {"source": str(folder), "val_source": ""})
    assert [f.name for f in val] == [f.name for f in files[7:]]
    assert {f.name for f in train} == {f.name for f in files[:7]} - {"photo_0.png", "photo_4.png"}
    assert "3 file(s) added, 2 training file(s) removed" in note and kept == ""


def test_eval_scores_the_recorded_validation_files(photos, others, tmp_path, capsys):
    from i2i.evaluation import evaluate_run

    run = start(photos, tmp_path)
    shutil.copy(others / "photo_0.png", photos / "a_new_photo.png")  # drawn again, the split would move
    result = evaluate_run(run.run_dir, device="cpu")
    assert result["images"] == 2 and result["metrics"] == pytest.approx(run.metrics)
    (photos / sorted(recorded(run.run_dir)["val"])[1]).unlink()  # scored on the one left, with a warning
    capsys.readouterr()
    assert evaluate_run(run.run_dir, device="cpu")["images"] == 1
    assert "1 of the run's 2 validation file(s) are missing or changed" in capsys.readouterr().err


def test_eval_needs_only_the_recorded_validation_files(photos, tmp_path):
    from i2i.evaluation import evaluate_run

    run = start(photos, tmp_path)
    for name in recorded(run.run_dir)["train"]:  # training photos archived after the run: eval still scores it
        (photos / name).unlink()
    result = evaluate_run(run.run_dir, device="cpu")
    assert result["images"] == 2 and result["metrics"] == pytest.approx(run.metrics)


@pytest.mark.parametrize("matrix_units", [True, False])
def test_eval_scores_under_the_precision_the_run_evaluated_with(photos, tmp_path, monkeypatch, matrix_units):
    """`auto` is bf16 on an AMX (or AVX-512 BF16) CPU: the run's own evaluations ran under it, and `i2i eval` on the
    same machine must give the same numbers, not fp32's slightly different ones."""
    from i2i.evaluation import evaluate_run, run_precision

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: matrix_units, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    run = start(photos, tmp_path)
    result = evaluate_run(run.run_dir, device="cpu")
    assert result["precision"] == ("bfloat16" if matrix_units else "float32")
    assert result["metrics"] == pytest.approx(run.metrics, rel=1e-6)
    # a GPU run trained in fp16 is scored in fp32 on the CPU, which cannot run fp16
    assert run_precision({"train": {"precision": "fp16"}}, torch.device("cpu")) == torch.float32


def test_a_hand_edited_record_with_a_file_on_both_sides_is_refused(photos, tmp_path):
    run = start(photos, tmp_path)
    record = recorded(run.run_dir)
    name, size = next(iter(record["val"].items()))
    record["train"][name] = size  # which side it belongs to cannot be told any more
    (run.run_dir / SPLIT_FILE).write_text(json.dumps(record))
    with pytest.raises(UserError, match=rf"split.json: cannot be read as the run's train/validation split \({name} is listed "
                                        r"as both a training and a validation file\); restore it, or start a new run"):
        i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True)


def test_a_validation_file_that_never_decoded_may_be_deleted(originals, others, tmp_path, capsys):
    """Its header read, its pixels did not (skipped with a warning at every evaluation): once
    deleted, it used to stop every resume and ``i2i eval`` until it was put back."""
    train, val = shutil.copytree(originals, tmp_path / "train"), shutil.copytree(others, tmp_path / "val")
    whole = (val / "photo_5.png").read_bytes()
    (val / "photo_5.png").write_bytes(whole[: len(whole) // 2])  # header fine, pixels cut off
    run = start(train, tmp_path, data={"val_source": str(val)})
    assert "skipped 1 unreadable validation file(s)" in capsys.readouterr().err
    assert recorded(run.run_dir)["val_unreadable"] == ["photo_5.png"]
    (val / "photo_5.png").unlink()
    resumed = i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True)
    assert resumed.step == 3 and "psnr" in resumed.metrics  # scored on the five that decode
    (val / "photo_4.png").unlink()  # one that was scored is counted among the five scored
    capsys.readouterr()
    i2i.train(None, resume=run.run_dir, overrides=["train.steps=4"], quiet=True)
    assert ("1 of the run's 5 validation file(s) are missing or changed in data.val_source" in capsys.readouterr().err)


def test_a_training_file_that_never_decoded_may_be_deleted(originals, tmp_path, capsys):
    """Skipped with a warning when the run started (its header read, its pixels did not), it
    never trained: deleting it, as that warning suggests, is no change to the run's data."""
    photos = shutil.copytree(originals, tmp_path / "photos")
    drawn = start(photos, tmp_path / "probe")  # which files train, under this seed
    broken = sorted(recorded(drawn.run_dir)["train"])[0]
    whole = (photos / broken).read_bytes()
    (photos / broken).write_bytes(whole[: len(whole) // 2])  # header fine, pixels cut off
    capsys.readouterr()
    run = start(photos, tmp_path)
    assert "skipped 1 unreadable file(s)" in capsys.readouterr().err
    assert recorded(run.run_dir)["train_unreadable"] == [broken]
    (photos / broken).unlink()
    files = Files()
    resumed = i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], callbacks=[files], quiet=True)
    assert resumed.step == 3 and "i2i: warning:" not in capsys.readouterr().err
    assert len(files.train) == 3 and broken not in files.train


def test_an_undecodable_validation_file_is_recorded_once_not_at_every_evaluation(originals, others, tmp_path, monkeypatch):
    import i2i.data.sources as sources

    train, val = shutil.copytree(originals, tmp_path / "train"), shutil.copytree(others, tmp_path / "val")
    whole = (val / "photo_5.png").read_bytes()
    (val / "photo_5.png").write_bytes(whole[: len(whole) // 2])
    writes = []
    record = sources.record_unreadable_val
    monkeypatch.setattr(sources, "record_unreadable_val", lambda run_dir, names: (writes.append(list(names)), record(run_dir, names)))
    run = start(train, tmp_path, steps=3, data={"val_source": str(val)}, eval={"every": 1})
    assert writes == [["photo_5.png"]]
    assert recorded(run.run_dir)["val_unreadable"] == ["photo_5.png"]


def test_eval_of_a_run_too_small_to_hold_any_image_out_says_so(tmp_path):
    from i2i.evaluation import evaluate_run

    one = make_photos(tmp_path / "one", count=1)
    run = start(one, tmp_path, steps=1)
    with pytest.raises(UserError, match=r"the run has no validation images \(data.val_fraction = 0.34 of its few images "
                                        r"held out none\); pass data_dir=DIR"):
        evaluate_run(run.run_dir)


def test_a_resume_that_changes_the_task_says_so(tmp_path, capsys):
    """--set task.direction=AtoB on a BtoA run went on silently: the network that learned B to A
    was trained on A to B from then on."""
    from helpers import make_pairs, tiny_recipe

    pairs = make_pairs(tmp_path / "pairs", count=4, size=(24, 20))
    recipe = tiny_recipe(pairs, tmp_path / "run", data={"val_fraction": 0.25}, train={"steps": 1})
    recipe["task"] = {"name": "paired", "direction": "BtoA"}
    i2i.train(recipe, quiet=True)
    capsys.readouterr()
    i2i.train(None, resume=tmp_path / "run", overrides=["train.steps=2", "task.direction=AtoB"], quiet=True)
    assert ("i2i: note: task.direction = 'AtoB' (was 'BtoA'): the checkpoint's networks were trained for 'BtoA', and "
            "go on from their weights under the changed task") in capsys.readouterr().err


def test_a_run_on_pairs_across_two_folders_trains_resumes_and_scores(tmp_path):
    """Real noisy/clean pairs kept as two folders (a denoising benchmark's layout): trained with
    data.pair_source, resumed from its record, scored on a test set with --pair-data."""
    import numpy as np
    from PIL import Image

    clean = make_photos(tmp_path / "clean", count=5, size=(32, 28))
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    rng = np.random.default_rng(0)
    for path in sorted(clean.glob("*.png")):
        pixels = np.asarray(Image.open(path)).astype(float) + rng.normal(0, 20, (28, 32, 3))
        Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8)).save(noisy / path.name)
    recipe = tiny_recipe(noisy, tmp_path / "run", data={"pair_source": str(clean), "val_fraction": 0.4},
                         train={"steps": 2}, eval={"crop": 0})
    recipe["task"] = {"name": "paired"}
    recipe_file = tmp_path / "pairs.toml"
    recipe_file.write_text(i2i.recipe.dumps_toml(recipe))
    assert run_i2i(["validate", str(recipe_file)]).returncode == 0
    wrong = run_i2i(["validate", str(recipe_file), "--set", "task.name=denoise"])
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "task.name = \"paired\"" in wrong.stderr
    assert run_i2i(["run", str(recipe_file)]).returncode == 0
    resumed = run_i2i(["run", "--resume", str(tmp_path / "run"), "--set", "train.steps=4"])
    assert resumed.returncode == 0, resumed.stderr
    # the noisy copies score as the noise they carry: the input copy's PSNR is that of sigma 20
    result = json.loads(run_i2i(["eval", str(tmp_path / "run"), "--data", str(noisy), "--pair-data", str(clean),
                                 "--json"]).stdout)
    assert result["images"] == 5 and result["step"] == 4
    assert 21 < result["baselines"]["input copy"]["psnr"] < 23.5  # 20 log10(255 / 20) = 22.1, less clipping's share
    alone = run_i2i(["eval", str(tmp_path / "run"), "--data", str(noisy)])
    assert alone.returncode == 2 and alone.stderr.count("\n") == 1 and "--pair-data DIR" in alone.stderr


def test_relative_pair_folders_are_saved_absolute_and_a_lost_partner_is_named(tmp_path, monkeypatch):
    """data.pair_source stayed relative in the run's recipe: scored from another folder, the run
    read another clean/ of the same names, silently; a validation image whose pair went
    missing was blamed on the noisy file as 'unreadable'."""
    make_photos(tmp_path / "noisy", count=4, size=(24, 20))
    make_photos(tmp_path / "clean", count=4, size=(24, 20), seed=1)
    monkeypatch.chdir(tmp_path)
    recipe = tiny_recipe("noisy", tmp_path / "run", data={"pair_source": "clean", "val_fraction": 0.25},
                         train={"steps": 1})
    recipe["task"] = {"name": "paired"}
    i2i.train(recipe, quiet=True)
    saved = i2i.load_recipe(tmp_path / "run" / "recipe.toml")
    assert saved["data"]["pair_source"] == str(tmp_path / "clean") and saved["data"]["source"] == str(tmp_path / "noisy")
    (val,) = json.loads((tmp_path / "run" / SPLIT_FILE).read_text())["val"]
    (tmp_path / "clean" / val).unlink()
    from i2i.evaluation import evaluate_run

    with pytest.raises(UserError, match=rf"first: {val}, no file {val[:-4]}\.\* in data.pair_source = .* to pair it with"):
        evaluate_run(tmp_path / "run")


class TintTask(i2i.Task):
    """Darkens the target by ``tint``; None (the default) leaves it as it is."""

    in_channels = 3
    out_channels = 3

    def __init__(self, tint: float | None = None) -> None:
        self.tint = tint or 0.0

    def make_pair(self, clean, generator=None):
        return clean * 2 - 1, clean * (1 - self.tint) * 2 - 1

    def prepare(self, image):
        return image * 2 - 1


def test_a_task_option_left_at_a_none_default_is_named_as_the_default_not_none(tmp_path, capsys):
    """An option whose default is None is left out of the run's recipe.toml (a rerun gets it
    from the plugin again); set on resume, the note said 'was None' and 'trained for None'."""
    from helpers import TINY_G2C, make_photos, tiny_recipe

    plugin = type("TintPlugin", (), {"register_tasks": i2i.hookimpl(lambda register: register("tint", TintTask))})
    assert i2i.register_plugin(plugin, "tint_plugin").status == "loaded"
    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 1})
    recipe["task"] = {"name": "tint"}
    i2i.train(recipe, quiet=True)
    capsys.readouterr()
    i2i.train(None, resume=tmp_path / "run", overrides=["train.steps=2", "task.tint=0.5"], quiet=True)
    assert ("i2i: note: task.tint = 0.5 (was unset, the task's default): the checkpoint's networks were "
            "trained for the task's default, and go on from their weights under the changed task") in capsys.readouterr().err


def test_a_resume_changing_the_tasks_channels_is_refused_before_its_note_says_it_goes_on(tmp_path, capsys):
    """--set task.channels=1 on a colour run printed 'the networks go on from their weights
    under the changed task', then failed on the weights' shapes."""
    from helpers import TINY_G2C, make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos", count=3, size=(20, 20))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"steps": 1})
    recipe["task"] = {"name": "denoise", "sigma": 25}
    run = i2i.train(recipe, quiet=True)
    capsys.readouterr()
    with pytest.raises(i2i.RecipeError, match=r"^overrides task.channels=1: task.channels = 1: the checkpoint's networks "
                                              r"take 3 channel\(s\) in and give 3, and the task would now need 1 and 1; "
                                              r"train that in a new run"):
        i2i.train(None, resume=run.run_dir, overrides=["task.channels=1", "train.steps=2"], quiet=True)
    assert "go on from their weights" not in capsys.readouterr().err
    i2i.train(None, resume=run.run_dir, overrides=["task.sigma=30", "train.steps=2"], quiet=True)  # same channels: fine


@pytest.mark.parametrize("damage", [b"", b"garbage\n", b"\xff\xfe{", b"[1, 2]"])
def test_a_damaged_split_record_is_set_aside_and_the_split_drawn_again(photos, tmp_path, capsys, damage):
    """An empty or garbled split.json (a crash, a disk error) stopped every resume and i2i eval
    of a run whose checkpoints were intact: 'restore it, or start a new run'."""
    from i2i.evaluation import evaluate_run

    run = start(photos, tmp_path)
    first = recorded(run.run_dir)
    path = run.run_dir / SPLIT_FILE
    path.write_bytes(damage)
    capsys.readouterr()
    assert evaluate_run(run.run_dir, device="cpu")["metrics"] == pytest.approx(run.metrics, rel=1e-6)
    err = capsys.readouterr().err
    assert f"i2i: warning: {path}: cannot be read (" in err and "moved to split.json.unreadable" in err
    assert (run.run_dir / "split.json.unreadable").read_bytes() == damage
    resumed = i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True)
    assert resumed.step == 3 and recorded(run.run_dir) == first  # drawn again: the same files, recorded anew
    path.write_bytes(b"damaged again")  # the first damaged copy stays
    evaluate_run(run.run_dir, device="cpu")
    assert (run.run_dir / "split.json.unreadable").read_bytes() == damage
    assert (run.run_dir / "split.json.unreadable-2").read_bytes() == b"damaged again"


def test_a_split_drawn_again_after_the_folder_changed_is_refused(photos, tmp_path):
    """Drawn again from a changed folder, the split put former validation images into training
    and the run went on, its scores compared with the old best."""
    folder = make_photos(tmp_path / "photos", count=6, size=(24, 24))
    run = i2i.train(tiny_recipe(folder, tmp_path / "run", train={"steps": 2}), quiet=True)
    make_photos(tmp_path / "more", count=9, size=(24, 24), seed=9)
    for extra in sorted((tmp_path / "more").iterdir())[6:]:
        shutil.copy(extra, folder / f"added_{extra.name}")
    (run.run_dir / SPLIT_FILE).write_text("x")
    with pytest.raises(UserError, match=r"split.json: it could not be read, and the training folder has changed since "
                                        r"the checkpoint, so the split drawn again is not the run's"):
        i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True)
    # the damaged file is set aside: the same command again found no split.json and drew a new split
    assert not (run.run_dir / SPLIT_FILE).exists()
    with pytest.raises(UserError, match=r"split.json: it could not be read, .* \(the damaged one is in "
                                        r"split.json.unreadable\)"):
        i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True)
    (run.run_dir / "split.json.unreadable").unlink()  # deleted outright: refused too
    with pytest.raises(UserError, match=r"split.json: missing, and the training folder has changed since the checkpoint"):
        i2i.train(None, resume=run.run_dir, overrides=["train.steps=3"], quiet=True)
    assert json.loads((find_checkpoint(run.run_dir) / "state.json").read_text())["step"] == 2


def test_a_data_folder_under_tilde_is_saved_absolute(photos, tmp_path, monkeypatch):
    """'~/data' was saved as it was: resumed or scored with another HOME (a batch job, another
    user), the run's photos were 'no such folder'."""
    home = tmp_path / "home"
    shutil.copytree(photos, home / "data")
    monkeypatch.setenv("HOME", str(home))
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 1}), overrides=["data.source=~/data"],
                    quiet=True)
    assert i2i.load_recipe(run.run_dir / "recipe.toml")["data"]["source"] == str(home / "data")
