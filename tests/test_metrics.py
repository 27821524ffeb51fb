"""The built-in metrics against hand-computed values; one value per image, never batch-pooled."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from i2i.plugins import registry


def build(name: str, **options):
    return registry().build("metrics", name, **options)


def test_psnr_of_a_known_mse_and_per_image_average():
    target = torch.full((2, 3, 8, 8), 0.5)
    output = target.clone()
    output[1] += 0.1  # MSE 0.01 -> 20 dB; the first image is perfect -> capped at 100 dB
    values = build("psnr")(output, target)
    assert values.shape == (2,)
    assert values.tolist() == pytest.approx([100.0, 20.0], rel=1e-5)
    pooled = 10 * math.log10(1 / 0.005)  # what kornia's batch-pooled psnr would say
    assert values.mean().item() == pytest.approx(60.0, rel=1e-5) and values.mean().item() != pytest.approx(pooled)


def test_psnr_accepts_half_precision():
    target = torch.full((1, 1, 4, 4), 0.25)
    values = build("psnr")((target + 0.1).half(), target.half())
    assert values.dtype == torch.float32
    assert values.item() == pytest.approx(20.0, abs=0.05)  # 0.35 is not exact in float16


def constant(values, channels: int = 1, size: int = 16) -> torch.Tensor:
    return torch.tensor(values).reshape(-1, 1, 1, 1).expand(-1, channels, size, size).contiguous()


def reference_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Wang et al.'s SSIM: 11x11 Gaussian (sigma 1.5), 'valid' region, data range 1, per image."""
    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    c = x.shape[1]
    window = (g[:, None] * g[None, :]).expand(c, 1, 11, 11)
    x, y = x.double(), y.double()

    def blur(t):
        return F.conv2d(t, window, groups=c)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def test_ssim_identical_is_one_and_matches_the_reference_per_image():
    torch.manual_seed(0)
    ssim = build("ssim")
    x = torch.rand(2, 3, 24, 20)
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    y[1] = torch.rand(3, 24, 20)  # one close pair, one unrelated pair: two different values
    values = ssim(y, x)
    assert values.shape == (2,)
    assert values.tolist() == pytest.approx(reference_ssim(y, x).tolist(), abs=1e-5)
    assert values[0] > 0.5 > values[1]


def test_ssim_of_flat_images_closed_form_also_below_window_size():
    # sigma = 0: SSIM = (2 a b + c1) / (a^2 + b^2 + c1), c1 = 0.01^2.
    c1 = 0.01**2
    expected = [(2 * a * b + c1) / (a * a + b * b + c1) for a, b in ((0.2, 0.6), (0.5, 0.5))]
    for size in (16, 8, 4, 1):  # below the window: the padded map; below 6 px: a smaller window
        values = build("ssim")(constant([0.2, 0.5], size=size), constant([0.6, 0.5], size=size))
        assert values.tolist() == pytest.approx(expected, rel=1e-4)


def test_mae_per_image():
    output = torch.tensor([[[[0.0, 0.5], [1.0, 1.0]]], [[[0.2, 0.2], [0.2, 0.2]]]])
    assert build("mae")(output, torch.zeros_like(output)).tolist() == pytest.approx([2.5 / 4, 0.2])


# A 2x2 image (0-255): red, green / blue, white.
PIXELS = [[(255, 0, 0), (0, 255, 0)], [(0, 0, 255), (255, 255, 255)]]


def image_of(pixels) -> torch.Tensor:
    return torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1)[None] / 255


def test_colourfulness_of_a_hand_built_image():
    # rg = R - G: 255, -255, 0, 0 (mean 0); yb = (R + G) / 2 - B: 127.5, 127.5, -255, 0 (mean 0).
    signed = math.sqrt((255**2 + 255**2) / 4 + (127.5**2 + 127.5**2 + 255**2) / 4) + 0.3 * 0.0
    # |rg|: 255, 255, 0, 0 (mean 127.5, var 127.5^2); |yb|: 127.5, 127.5, 255, 0 (mean 127.5, var 127.5^2 / 2).
    absolute = math.sqrt(127.5**2 + 127.5**2 / 2) + 0.3 * math.sqrt(2 * 127.5**2)
    red = image_of([[(255, 0, 0)] * 2] * 2)  # rg 255, yb 127.5 everywhere: no spread
    flat_red = 0.3 * math.sqrt(255**2 + 127.5**2)
    image = image_of(PIXELS)
    output, target = torch.cat([image, red]), torch.cat([red, red])
    values = build("colourfulness")(output, target)
    assert set(values) == {"colourfulness", "colourfulness_target"}
    assert values["colourfulness"].tolist() == pytest.approx([signed, flat_red], rel=1e-5)
    assert values["colourfulness_target"].tolist() == pytest.approx([flat_red, flat_red], rel=1e-5)
    abs_values = build("colourfulness_abs")(output, target)
    assert set(abs_values) == {"colourfulness_abs", "colourfulness_abs_target"}
    assert abs_values["colourfulness_abs"].tolist() == pytest.approx([absolute, flat_red], rel=1e-5)


def test_colourfulness_of_grey_images_is_zero():
    grey = torch.rand(2, 1, 4, 4)
    metric = build("colourfulness")
    assert metric(grey, grey)["colourfulness"].tolist() == [0.0, 0.0]
    assert metric(grey.expand(-1, 3, -1, -1), grey.expand(-1, 3, -1, -1))["colourfulness"].tolist() == pytest.approx(
        [0.0, 0.0], abs=1e-4
    )


def test_colourfulness_summarize_adds_delta_cf():
    metric = build("colourfulness")
    assert metric.summarize({"colourfulness": 31.6, "colourfulness_target": 38.21}) == {
        "delta_colourfulness": pytest.approx(6.61)
    }
    assert metric.summarize({"psnr": 20.0}) == {}
    abs_metric = build("colourfulness_abs")
    assert abs_metric.summarize({"colourfulness_abs": 2.0, "colourfulness_abs_target": 1.0}) == {
        "delta_colourfulness_abs": 1.0
    }


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError):
        build("psnr")(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def test_every_registered_metric_gives_one_value_per_image():
    torch.manual_seed(0)
    output, target = torch.rand(3, 3, 12, 12), torch.rand(3, 3, 12, 12)
    for component in registry().components("metrics"):
        assert component.description and not component.open_ended
        values = component.build()(output, target)
        for value in (values.values() if isinstance(values, dict) else [values]):
            assert value.shape == (3,) and torch.isfinite(value).all()


def pinned_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A 37 x 53 colour image and a distorted copy, built without random numbers."""
    yy, xx = torch.meshgrid(torch.arange(37.0, dtype=torch.float64), torch.arange(53.0, dtype=torch.float64), indexing="ij")
    x = torch.stack([0.5 + 0.4 * torch.sin(xx / 3 + k) * torch.cos(yy / 5) for k in range(3)])
    y = (x + 0.08 * torch.sin(xx * 1.7 + yy * 2.3 + torch.arange(3.0, dtype=torch.float64)[:, None, None])).clamp(0, 1)
    return x[None], y[None]


def test_psnr_and_ssim_match_scikit_image_on_an_odd_sized_image():
    # skimage.metrics 0.26 on the same arrays: peak_signal_noise_ratio(x, y, data_range=1) and
    # structural_similarity(x, y, data_range=1, channel_axis=0, gaussian_weights=True,
    # sigma=1.5, use_sample_covariance=False), Wang et al.'s settings
    x, y = pinned_pair()
    for dtype in (torch.float64, torch.float32):
        assert build("psnr")(y.to(dtype), x.to(dtype)).item() == pytest.approx(24.94853565223371, abs=1e-4)
        assert build("ssim")(y.to(dtype), x.to(dtype)).item() == pytest.approx(0.8553776476129841, abs=1e-5)
    assert build("ssim")(y[:, :1], x[:, :1]).item() == pytest.approx(0.8551740867270534, abs=1e-5)


def test_eval_scores_whole_odd_sized_images_when_asked_and_says_which(tmp_path):
    # `i2i eval --data` used the run's eval.crop (256 px in the shipped recipes) without saying
    # so: a test set's numbers were those of centre crops, not the whole images papers score
    import i2i
    from i2i.cli import format_table
    from i2i.evaluation import evaluate_run
    from helpers import TINY_G2C, make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos", count=3)
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", TINY_G2C, train={"steps": 1}, eval={"crop": 16}), quiet=True)
    test_set = make_photos(tmp_path / "test", count=1, size=(37, 29), seed=1)
    cropped = evaluate_run(run.run_dir, data_dir=test_set, device="cpu")
    whole = evaluate_run(run.run_dir, data_dir=test_set, device="cpu", crop=0)
    assert (cropped["crop"], whole["crop"]) == (16, 0) and whole["images"] == 1
    assert "centre 16 x 16 px crops" in format_table(cropped) and "whole images" in format_table(whole)
    # the whole image, scored as papers do: the model's output on all 37 x 29 px against the photo
    from PIL import Image
    import numpy as np

    photo = torch.from_numpy(np.array(Image.open(test_set / "photo_0.png"))).permute(2, 0, 1)[None].float() / 255
    model = i2i.load(run.run_dir, device="cpu")
    with torch.no_grad():
        output = model(photo)
    assert output.shape == photo.shape
    assert whole["metrics"]["psnr"] == pytest.approx(build("psnr")(output, photo).item(), abs=1e-3)
    assert whole["metrics"]["ssim"] == pytest.approx(build("ssim")(output, photo).item(), abs=1e-4)
    assert cropped["metrics"]["psnr"] != pytest.approx(whole["metrics"]["psnr"], abs=1e-3)
    # images the crop does not fit: the header said "centre 40 x 40 px crops" of a 37 x 29 photo
    assert "whole images, all within the 40 px crop" in format_table(evaluate_run(run.run_dir, data_dir=test_set,
                                                                                  device="cpu", crop=40))
    make_photos(tmp_path / "large", count=1, size=(64, 64), seed=2)
    shutil.copy(tmp_path / "large" / "photo_0.png", test_set / "large.png")
    mixed = format_table(evaluate_run(run.run_dir, data_dir=test_set, device="cpu", crop=32))
    assert "centre 32 x 32 px crops; 1 image(s) smaller than 32 px on a side, cropped only to fit" in mixed
    with pytest.raises(ValueError, match="crop = 3: expected 0 \\(whole images\\) or an integer from 8"):
        evaluate_run(run.run_dir, data_dir=test_set, device="cpu", crop=3)  # no SSIM window fits


def test_an_images_validation_noise_depends_on_its_file_name_alone():
    """Seeded per batch, the noise (and the score) moved with eval.batch_size and the other files;
    seeded with the run's seed and the path under --data, two models (or two --data levels) scored
    one test set on different noise."""
    from i2i.engine.evaluate import validation_pairs

    task = registry().build("tasks", "denoise")
    clean = torch.rand(3, 3, 16, 16)
    names = ["a.png", "sub/b.png", "c.jpg"]
    together, _ = validation_pairs(task, clean, names)
    alone, _ = validation_pairs(task, clean[1:2], names[1:2])
    assert torch.equal(together[1:2], alone)
    assert not torch.equal(together[0], together[2])  # each image its own noise
    again, _ = validation_pairs(task, clean.double(), names)  # the cache's dtype is not the noise's
    assert torch.equal(again, together)
    from_above, _ = validation_pairs(task, clean[1:2], ["test/sub/b.png"])  # --data one folder higher
    assert torch.equal(from_above, alone)


def test_eval_numbers_do_not_depend_on_eval_batch_size(tmp_path):
    import i2i
    from i2i.evaluation import evaluate_run
    from helpers import TINY_GAN, make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos", count=8)
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", TINY_GAN, train={"steps": 1}, data={"val_fraction": 0.5},
                                eval={"batch_size": 1}), quiet=True)
    one = evaluate_run(run.run_dir, device="cpu")
    from i2i.recipe import dumps_toml, read_toml

    saved = read_toml(run.run_dir / "recipe.toml")
    saved["eval"]["batch_size"] = 4
    (run.run_dir / "recipe.toml").write_text(dumps_toml(saved))
    four = evaluate_run(run.run_dir, device="cpu")
    assert one["images"] == four["images"] == 4
    assert four["metrics"] == pytest.approx(one["metrics"], rel=1e-5)
    for name, values in one["baselines"].items():  # the noisy input and the best blur, chosen per image
        assert four["baselines"][name] == pytest.approx(values, rel=1e-5), name


def test_whole_image_eval_does_not_resize_as_training_crops_are(tmp_path):
    """`--crop 0` with the run's data.resize = 24 scored the test images resampled to 24 px."""
    import i2i
    from i2i.cli import format_table
    from i2i.evaluation import evaluate_run
    from helpers import TINY_G2C, make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos", count=3)
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", TINY_G2C, train={"steps": 1}, data={"resize": 24},
                                eval={"crop": 16}), quiet=True)
    test_set = make_photos(tmp_path / "test", count=1, size=(37, 29), seed=1)
    whole = evaluate_run(run.run_dir, data_dir=test_set, device="cpu", crop=0)
    cropped = evaluate_run(run.run_dir, data_dir=test_set, device="cpu")
    assert whole["resize"] == 0 and "; whole images)" in format_table(whole) and "resized" not in format_table(whole)
    assert cropped["resize"] == 24 and "resized to 24 px on the shorter side (data.resize), then centre 16 x 16" in format_table(cropped)
    from PIL import Image
    import numpy as np

    photo = torch.from_numpy(np.array(Image.open(test_set / "photo_0.png"))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        output = i2i.load(run.run_dir, device="cpu")(photo)
    assert whole["metrics"]["psnr"] == pytest.approx(build("psnr")(output, photo).item(), abs=1e-3)


def test_eval_scores_a_blind_denoiser_at_one_noise_level_when_told(tmp_path):
    """A blind denoiser (task.sigma = [0, 55]) could only be scored at a random sigma per image."""
    import i2i
    from click.testing import CliRunner
    from i2i.cli import cli
    from helpers import make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos", count=6)
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", task={"name": "denoise", "sigma": [0, 55]}, train={"steps": 1}),
                    quiet=True).run_dir
    runner = CliRunner()
    at = {sigma: runner.invoke(cli, ["eval", str(run), "--set", f"task.sigma={sigma}", "--json"]) for sigma in (25, 50)}
    import json

    scored = {sigma: json.loads(result.output) for sigma, result in at.items()}
    assert scored[25]["overrides"] == ["task.sigma=25"]
    noisy = {sigma: s["baselines"]["noisy input"]["psnr"] for sigma, s in scored.items()}
    assert 19.5 < noisy[25] < 21.5 and 13.5 < noisy[50] < 15.5  # about 20.2 and 14.2 dB: one level each
    table = runner.invoke(cli, ["eval", str(run), "--set", "task.sigma=25"]).output
    assert table.splitlines()[0].endswith(", task.sigma=25")
    capped = json.loads(runner.invoke(cli, ["eval", str(run), "--data", str(photos), "--set", "eval.max_images=2", "--json"]).output)
    assert capped["images"] == 2  # a --data folder is scored whole unless --set caps it
    assert set(capped) == {"metrics", "baselines", "images", "checkpoint", "step", "task", "run_dir", "source", "crop",
                           "resize", "scored_crop", "smaller_than_crop", "within_crop", "overrides", "precision"}  # as the README lists
    assert capped["overrides"] == ["eval.max_images=2"] and capped["task"] == "denoise"
    for bad, says in [("train.steps=4", "scoring a run changes only the task's options"),
                      ("sigma=25", "the rest are the run's (did you mean --set task.sigma=25?)"),
                      ("eval.max_imgs=2", "the rest are the run's (did you mean 'eval.max_images'?)"),
                      ("eval.crop=0", "the rest are the run's (use --crop 0)"),
                      ("task.residual=false", "changes the network the run trained"),
                      ("eval.metrics=['nope']", "--set eval.metrics=['nope']: eval.metrics: unknown metric 'nope'")]:
        refused = runner.invoke(cli, ["eval", str(run), "--set", bad])
        assert refused.exit_code == 2 and says in refused.output and "Traceback" not in refused.output


def test_a_run_scoring_whole_images_logs_what_i2i_eval_reports_despite_data_resize(tmp_path):
    """eval.crop = 0 with data.resize (recipes/pix2pix.toml): the run's validation resized the
    images and i2i eval did not, so the logged scores, and the best checkpoint chosen by them,
    were not the ones i2i eval gave."""
    import i2i
    from i2i.evaluation import evaluate_run
    from helpers import TINY_G2C, make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos", count=3, size=(40, 32))
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", TINY_G2C, data={"resize": 24, "val_fraction": 0.34},
                                train={"steps": 2}, eval={"crop": 0}), quiet=True)
    again = evaluate_run(run.run_dir, device="cpu")
    assert again["metrics"] == pytest.approx(run.metrics, abs=1e-4)
    assert again["baselines"]["grey copy"] == pytest.approx(run.baselines["grey copy"], abs=1e-4)


def test_the_runs_summary_shows_no_baseline_beside_a_value_of_the_targets():
    """'colourfulness_target 79.9 (grey copy 79.9)': the targets' own colourfulness has no baseline."""
    from i2i.engine.trainer import summary_line

    metrics = {"colourfulness": 73.1, "colourfulness_target": 79.9, "delta_colourfulness": 6.8}
    baselines = {"grey copy": {"colourfulness": 0.0, "colourfulness_target": 79.9, "delta_colourfulness": 79.9}}
    assert summary_line(metrics, baselines, "psnr") == ("colourfulness 73.1 (grey copy 0)  colourfulness_target 79.9  "
                                                        "delta_colourfulness 6.8 (grey copy 79.9)")


def test_ssim_y_is_the_super_resolution_papers_ssim():
    """SSIM on the same Y as psnr_y, with the scale's border left out (BasicSR's calculate_ssim
    with test_y_channel and crop_border): SR tables report it beside PSNR on Y."""
    ssim, ssim_y, ssim_y_x4 = build("ssim"), build("ssim_y"), build("ssim_y_x4")
    g = torch.Generator().manual_seed(3)
    grey = torch.rand(2, 1, 32, 32, generator=g)
    noisy = (grey + 0.1 * torch.randn(grey.shape, generator=g)).clamp(0, 1)
    assert ssim_y(grey, noisy).tolist() == pytest.approx(ssim(grey, noisy).tolist(), abs=1e-5)  # grey: its own values
    # an error in blue alone barely moves Y (24.966 of 219 parts), one in green moves it five times as much
    base = torch.rand(1, 3, 32, 32, generator=g) * 0.5 + 0.25
    blue, green = base.clone(), base.clone()
    blue[:, 2] += 0.2 * torch.randn(32, 32, generator=g)
    green[:, 1] += 0.2 * torch.randn(32, 32, generator=g)
    assert 1 - ssim_y(base, green).item() > 5 * (1 - ssim_y(base, blue).item()) > 0
    # the border: damage within 4 px of the edge is left out at 4x, in the middle it is not
    edge, middle = base.clone(), base.clone()
    edge[..., :4, :] = 0
    middle[..., 14:18, 14:18] = 0
    assert ssim_y_x4(base, edge).item() == pytest.approx(1.0, abs=1e-6) and ssim_y(base, edge).item() < 0.95
    assert ssim_y_x4(base, middle).item() < 0.95


def test_psnr_y_is_the_super_resolution_papers_psnr():
    """BT.601 studio-range luma (MATLAB's rgb2ycbcr), with the scale's border left out."""
    import math

    psnr, psnr_y, psnr_y_x4 = build("psnr"), build("psnr_y"), build("psnr_y_x4")
    grey = torch.rand(2, 1, 32, 32) * 0.8
    darker = grey * 0.9
    # grey images are scored on their own values, as BasicSR and the papers' scripts leave them
    # (taken as R = G = B, Y = 16/255 + 219/255 * grey read 1.32 dB above their tables)
    assert psnr_y(grey, darker).tolist() == pytest.approx(psnr(grey, darker).tolist(), abs=1e-4)
    # the same image in colour (R = G = B) has the studio range's compressed luma
    assert psnr_y(grey.expand(-1, 3, -1, -1), darker.expand(-1, 3, -1, -1)).tolist() == pytest.approx(
        (psnr(grey, darker) - 20 * math.log10(219 / 255)).tolist(), abs=1e-3)
    # a colour's weight in Y: an error in blue counts 24.966/128.553 of the same error in green
    base = torch.full((1, 3, 16, 16), 0.5)
    blue, green = base.clone(), base.clone()
    blue[:, 2] += 0.1
    green[:, 1] += 0.1
    assert (psnr_y(base, blue) - psnr_y(base, green)).item() == pytest.approx(-20 * math.log10(24.966 / 128.553), abs=1e-3)
    # the border: an error within 4 px of the edge is left out at 4x, one in the middle is not
    edge, middle = base.clone(), base.clone()
    edge[..., :4, :] = 0
    middle[..., 8, 8] = 0
    assert psnr_y_x4(base, edge).item() == 100.0 and psnr_y(base, edge).item() < 30
    assert psnr_y_x4(base, middle).item() < 50
    assert psnr_y_x4(base[..., :8, :8], edge[..., :8, :8]).item() < 30  # too small to keep a pixel: scored whole
