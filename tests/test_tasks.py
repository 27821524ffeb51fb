"""The built-in tasks: channel counts, value scalings, Lab round trips, noise, baselines."""

from __future__ import annotations

import math
import pytest
import torch
from kornia.color import lab_to_rgb, rgb_to_grayscale, rgb_to_lab
from torch import nn

from i2i.errors import RecipeError
from i2i.options import validate_options
from i2i.plugins import registry


def build(name: str, **options):
    return registry().build("tasks", name, **options)


def smooth_images(batch: int = 2, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth gradients in [0, 1]: what a blur can denoise well."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    c = torch.rand(batch, channels, 3, 1, 1, generator=g)
    return (0.2 + 0.3 * c[:, :, 0] + 0.25 * c[:, :, 1] * xx + 0.25 * c[:, :, 2] * yy).clamp(0, 1)


@pytest.mark.parametrize(
    "name, options, channels",
    [
        ("gray2color", {}, (3, 1, 2)),
        ("gray2color", {"space": "rgb"}, (3, 1, 3)),
        ("denoise", {}, (3, 3, 3)),
        ("denoise", {"channels": 1}, (1, 1, 1)),
        ("dejpeg", {}, (3, 3, 3)),
        ("dejpeg", {"channels": 1, "quality": [5, 50]}, (1, 1, 1)),
        ("deblur", {}, (3, 3, 3)),
        ("deblur", {"channels": 1, "sigma": [0.0, 4.0], "noise": 2.55}, (1, 1, 1)),
        ("color2gray", {}, (3, 3, 1)),
        ("paired", {}, (3, 3, 3)),
        ("paired", {"direction": "BtoA", "input_channels": 1}, (3, 1, 3)),
    ],
)
def test_channels_and_shapes(name, options, channels):
    task = build(name, **options)
    assert (task.image_channels, task.in_channels, task.out_channels) == channels
    clean = torch.rand(2, task.clean_channels, 8, 12)
    input, target = task.make_pair(clean, torch.Generator().manual_seed(0))
    assert input.shape == (2, task.in_channels, 8, 12) and target.shape == (2, task.out_channels, 8, 12)
    assert input.abs().max() <= 1.0001 or name == "denoise" or options.get("noise")  # noisy inputs are not clipped
    assert target.abs().max() <= 1.0001
    out = task.to_image(torch.zeros_like(target), input)
    assert out.shape[0] == 2 and out.shape[-2:] == (8, 12) and 0 <= out.min() and out.max() <= 1
    assert 0 <= task.input_image(input).min() and task.input_image(input).max() <= 1
    user = task.prepare(torch.rand(2, 3, 8, 12))
    assert user.shape == (2, task.in_channels, 8, 12)
    for image in task.baselines(input, task.to_image(target, input)).values():
        assert image.shape == out.shape and 0 <= image.min() and image.max() <= 1


@pytest.mark.parametrize("space", ["lab", "rgb"])
def test_gray2color_target_round_trips_to_the_original_rgb(space):
    task = build("gray2color", space=space)
    rgb = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    input, target = task.make_pair(rgb)
    torch.testing.assert_close(task.to_image(target, input), rgb, atol=1e-3, rtol=0)


def test_gray2color_scalings_and_metrics():
    task = build("gray2color")
    rgb = torch.rand(2, 3, 8, 8)
    input, target = task.make_pair(rgb)
    lab = rgb_to_lab(rgb)
    torch.testing.assert_close(input, lab[:, :1] / 50 - 1)
    torch.testing.assert_close(target, lab[:, 1:] / 110)
    assert task.metrics == ("psnr", "ssim", "colourfulness") and task.main_metric == "psnr"


def test_gray2color_grey_copy_baseline_is_the_grey_image():
    task = build("gray2color")
    grey = torch.rand(2, 1, 8, 8).expand(-1, 3, -1, -1)
    input, target = task.make_pair(grey)
    base = task.baselines(input, task.to_image(target, input))
    assert list(base) == ["grey copy"]
    torch.testing.assert_close(base["grey copy"], grey, atol=1e-3, rtol=0)
    torch.testing.assert_close(task.input_image(input), grey, atol=1e-3, rtol=0)


def test_gray2color_prepare_uses_lightness_of_grey_or_colour_images():
    task = build("gray2color")
    colour = torch.rand(2, 3, 8, 8)
    lab = rgb_to_lab(colour)
    grey = lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], 1))  # same L, no colour
    expected, _ = task.make_pair(colour)
    for image in (colour, grey, grey[:, :1]):
        torch.testing.assert_close(task.prepare(image), expected, atol=2e-4, rtol=0)


def test_denoise_noise_level_and_scaling():
    task = build("denoise", sigma=25.0)
    clean = torch.rand(4, 3, 64, 64)
    input, target = task.make_pair(clean, torch.Generator().manual_seed(0))
    torch.testing.assert_close(target, clean * 2 - 1)
    assert (input - target).std().item() == pytest.approx(25 / 255 * 2, rel=0.02)
    assert (input - target).mean().abs() < 2e-3
    assert task.metrics == ("psnr", "ssim")


def test_denoise_blind_sigma_is_drawn_per_image_within_range():
    task = build("denoise", sigma=[5.0, 50.0])
    clean = torch.full((16, 1, 32, 32), 0.5)
    input, target = task.make_pair(clean, torch.Generator().manual_seed(0))
    per_image = (input - target).flatten(1).std(1) * 255 / 2
    assert per_image.min() > 5 * 0.9 and per_image.max() < 50 * 1.1
    assert per_image.max() - per_image.min() > 15


def test_blind_denoise_details_give_each_pairs_drawn_sigma():
    task = build("denoise", sigma=[5.0, 50.0])
    clean = torch.rand(6, 3, 64, 64)
    input, target = task.make_pair(clean, torch.Generator().manual_seed(3))
    drawn = 5 + 45 * torch.rand((6, 1, 1, 1), generator=torch.Generator().manual_seed(3)).flatten()  # make_pair's draw
    measured = task.pair_details(input, target)["noise sigma"]
    assert measured.shape == (6,) and torch.allclose(measured, drawn, rtol=0.03)
    assert build("denoise", sigma=25).pair_details(input, target) == {}  # one level: no column to add


def test_denoise_seeded_generator_repeats_noise():
    task = build("denoise", sigma=[0.0, 30.0])
    clean = torch.rand(2, 3, 8, 8)
    first, _ = task.make_pair(clean, torch.Generator().manual_seed(7))
    again, _ = task.make_pair(clean, torch.Generator().manual_seed(7))
    other, _ = task.make_pair(clean, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


class Zeros(nn.Module):
    size_multiple = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.zeros_like(x)


def test_denoise_residual_wrapper():
    net = Zeros()
    wrapped = build("denoise").wrap_generator(net)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(wrapped(x), x)
    assert wrapped.size_multiple == 8
    assert all(key.startswith("net.") for key in wrapped.state_dict())
    assert build("denoise").wrap_generator(wrapped) is wrapped  # never wrapped twice
    assert build("denoise", residual=False).wrap_generator(net) is net
    net.subtracts_residual = True  # e.g. DnCNN does the subtraction itself
    assert build("denoise").wrap_generator(net) is net


def test_denoise_prepare_takes_the_image_as_noisy_input():
    rgb = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(build("denoise").prepare(rgb), rgb * 2 - 1)
    torch.testing.assert_close(build("denoise", channels=1).prepare(rgb), rgb_to_grayscale(rgb) * 2 - 1)


def test_denoise_best_blur_beats_the_noisy_input_on_smooth_images():
    task = build("denoise", sigma=25.0)
    clean = smooth_images()
    input, target = task.make_pair(clean, torch.Generator().manual_seed(0))
    base = task.baselines(input, task.to_image(target, input))
    assert set(base) == {"noisy input", "best gaussian blur"}

    def psnr(image):
        return (10 * torch.log10(1 / (image - clean).pow(2).flatten(1).mean(1))).mean()

    assert psnr(base["best gaussian blur"]) >= psnr(base["noisy input"]) + 3


def test_denoise_best_blur_never_scores_below_the_noisy_input_at_low_noise():
    """At sigma 3 every blur of 0.5 px or more lost detail worth more than the noise it removed:
    the 'best a blur can do' scored 2 dB below the noisy input it is meant to improve on."""
    from i2i_builtin_tasks._common import psnr_per_image

    task = build("denoise", sigma=3.0)
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(3, 3, 32, 32, generator=g)  # detail at every pixel: no blur pays
    input, target = task.make_pair(clean, g)
    base = task.baselines(input, task.to_image(target, input))
    assert (psnr_per_image(base["best gaussian blur"], clean) >= psnr_per_image(base["noisy input"], clean)).all()


def test_color2gray_target_and_baseline():
    task = build("color2gray")
    rgb = torch.rand(2, 3, 8, 8)
    input, target = task.make_pair(rgb)
    torch.testing.assert_close(input, rgb * 2 - 1)
    torch.testing.assert_close(task.to_image(target, input), rgb_to_grayscale(rgb))
    base = task.baselines(input, task.to_image(target, input))
    torch.testing.assert_close(base["channel mean"], rgb.mean(1, keepdim=True))
    torch.testing.assert_close(task.prepare(rgb), input)


def test_registry_describes_tasks_and_their_options():
    reg = registry()
    expected = {"gray2color": {"space"}, "denoise": {"sigma", "channels", "residual", "levels"}, "color2gray": set(),
                "dejpeg": {"quality", "channels", "residual"}, "deblur": {"sigma", "noise", "channels", "residual"},
                "paired": {"direction", "input_channels", "target_channels", "residual"}}
    for name, options in expected.items():
        component = reg.get("tasks", name)
        assert component.description and not component.open_ended
        assert set(component.options) == options
        for option in options:
            assert f"``{option}``" in component.doc
    assert reg.get("tasks", "denoise").options["sigma"].default == 25.0


def test_options_are_validated():
    for name in ("gray2color", "denoise", "color2gray"):
        with pytest.raises(RecipeError, match="unknown option"):
            validate_options("task", {"sigmaa": 1}, registry().get("tasks", name).options)
    options = registry().get("tasks", "denoise").options
    validate_options("task", {"sigma": [5, 50], "channels": 1, "residual": False}, options)
    for bad in ({"sigma": "high"}, {"channels": 2}, {"residual": 1}):
        with pytest.raises(RecipeError):
            validate_options("task", bad, options)
    with pytest.raises(RecipeError):
        validate_options("task", {"space": "hsv"}, registry().get("tasks", "gray2color").options)
    for sigma in ([50.0, 5.0], [-1.0, 5.0], [1.0, 2.0, 3.0], 0.0, [0.0, 0.0], 1e9, [5.0, 300.0]):
        with pytest.raises(RecipeError, match="sigma"):
            build("denoise", sigma=sigma)
    assert build("denoise", sigma=255.0) is not None and build("denoise", sigma=[0.0, 55.0]) is not None
    # the 0-1 scale, a researcher's habit: named, with the 0-255 value meant
    with pytest.raises(RecipeError, match=r"task.sigma = 0.1: noise levels are on the 0-255 scale, where this is less "
                                          r"than one level; if you meant the 0-1 scale, write task.sigma = 25.5; for "
                                          r"16-bit images, give it in 16-bit levels: task.levels = 65535 and "
                                          r"task.sigma = 25.7$"):
        build("denoise", sigma=0.1)
    with pytest.raises(RecipeError, match=r"write task.sigma = \[0.0, 51.0\]; for 16-bit"):
        build("denoise", sigma=[0.0, 0.2])
    # noise below one 8-bit level, for 16-bit images: counted in 16-bit levels, the same noise
    deep, plain = build("denoise", sigma=[128.5, 6425.0], levels=65535), build("denoise", sigma=[0.5, 25.0])
    assert (deep.sigma_lo, deep.sigma_hi) == pytest.approx((plain.sigma_lo, plain.sigma_hi))
    clean = torch.rand(4, 3, 16, 16)
    pairs = [task.make_pair(clean, torch.Generator().manual_seed(3)) for task in (deep, plain)]
    assert torch.equal(pairs[0][0], pairs[1][0])
    assert deep.pair_details(*pairs[0])["noise sigma"] == pytest.approx(plain.pair_details(*pairs[1])["noise sigma"] * 257)
    for bad in ({"levels": 1000}, {"levels": 65535, "sigma": 70000.0}, {"levels": 65535, "sigma": 0.5}):
        with pytest.raises(RecipeError, match="task.levels|task.sigma"):
            build("denoise", **bad)
    with pytest.raises(RecipeError, match=r"expected a number or \[a number, a number\]"):  # as i2i list says
        validate_options("task", {"sigma": [15, 25, 50]}, options)


def test_colourisation_lab_conversion_is_kornias():
    """The colourisation task's own Lab conversion (fewer launches on a GPU) gives kornia's values,
    at the sRGB and Lab thresholds and the ends of the range too."""
    from kornia.color import rgb_to_lab as kornia_rgb_to_lab

    from i2i_builtin_tasks.gray2color import rgb_to_lab

    edges = torch.tensor([0.0, 0.04045, 0.0405, 0.0787, 0.08, 0.5, 1.0])
    rgb = torch.cat([torch.rand(2, 3, 8, 8).flatten(1), edges.repeat(2, 3, 1).flatten(1)], 1).view(2, 3, -1, 1)
    for dtype, tol in ((torch.float32, 2e-4), (torch.float64, 1e-9)):
        x = rgb.to(dtype)
        torch.testing.assert_close(rgb_to_lab(x), kornia_rgb_to_lab(x), rtol=0, atol=tol)
    torch.testing.assert_close(rgb_to_lab(rgb[0]), kornia_rgb_to_lab(rgb[0]), rtol=0, atol=2e-4)  # no batch dimension


def test_colourisation_pairs_copy_no_constants_from_the_host(monkeypatch):
    """After the first batch, making a colourisation pair creates no tensor from host data: on a
    GPU each such copy blocks until the device has caught up, once per training step."""
    task = build("gray2color")
    clean = torch.rand(2, 3, 16, 16)
    first = task.make_pair(clean)

    def from_host(*args, **kwargs):
        raise AssertionError("torch.tensor called while making a pair")

    monkeypatch.setattr(torch, "tensor", from_host)
    again = task.make_pair(clean)
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_paired_takes_input_and_target_from_the_halves_its_direction_names():
    """pix2pix's --direction: facades trains BtoA (labels to photos); a grey side is ITU-R 601."""
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    clean = torch.cat([a, b], dim=1)  # what the pipeline delivers for a side-by-side file
    input, target = build("paired").make_pair(clean)
    torch.testing.assert_close((input, target), (a * 2 - 1, b * 2 - 1))
    input, target = build("paired", direction="BtoA", target_channels=1).make_pair(clean)
    torch.testing.assert_close((input, target), (b * 2 - 1, rgb_to_grayscale(a) * 2 - 1))
    task = build("paired")
    torch.testing.assert_close(task.baselines(input, task.to_image(target, input))["input copy"], b)
    assert build("paired", input_channels=1).baselines(target, target) == {}  # grey in, colour out: no copy
    torch.testing.assert_close(build("paired").prepare(a), a * 2 - 1)  # translate: the user's image is an input half
    for bad in ({"direction": "AtoC"}, {"input_channels": 2}, {"target_channels": True}):
        with pytest.raises(RecipeError, match="task."):
            build("paired", **bad)
    # residual: the network predicts the difference, as the denoiser's does (real noisy/clean pairs)
    net = torch.nn.Conv2d(3, 3, 1)
    wrapped = build("paired", residual=True).wrap_generator(net)
    torch.testing.assert_close(wrapped(a), a - net(a))
    assert build("paired").wrap_generator(net) is net  # the reference's setting, its weights import as they are
    with pytest.raises(RecipeError, match=r"task.residual = true: .* task.input_channels \(1\) and task.target_channels "
                                          r"\(3\) must be equal"):
        build("paired", residual=True, input_channels=1)


def test_gray2color_converts_large_images_in_strips_to_the_same_result(monkeypatch):
    """Translation converts a large photo to L and back strip by strip (its whole-image
    temporaries took 4.8 GB for 24 megapixels); the images must be the ones the whole-image
    conversion gives, and training (gradients on) converts its batch whole."""
    from i2i_builtin_tasks import gray2color

    task = build("gray2color")
    photo, ab = torch.rand(2, 3, 37, 29), torch.rand(2, 2, 37, 29) * 2 - 1
    whole_l = task.prepare(photo)  # gradients on: one piece
    whole_rgb = task.to_image(ab, whole_l)
    calls = []
    convert = gray2color.rgb_to_lab
    monkeypatch.setattr(gray2color, "rgb_to_lab", lambda image: calls.append(image.shape[-2]) or convert(image))
    monkeypatch.setattr(gray2color, "STRIP_PIXELS", 2 * 29 * 5)  # strips of 5 rows
    with torch.no_grad():
        strips_l = task.prepare(photo)
        strips_rgb = task.to_image(ab, whole_l)
    assert calls == [5] * 7 + [2]
    torch.testing.assert_close(strips_l, whole_l, rtol=0, atol=1e-6)
    torch.testing.assert_close(strips_rgb, whole_rgb, rtol=0, atol=1e-6)
    calls.clear()
    task.prepare(photo)  # gradients on, as in training: one piece
    assert calls == [37]


def sample_crop(height: int = 80, width: int = 97, grey: bool = False):
    """A crop of a shipped photo (JPEG artifacts need real texture and edges to show)."""
    from PIL import Image

    from i2i.data import sample_folder

    image = Image.open(sample_folder() / "astronaut.png").convert("L" if grey else "RGB").crop((100, 40, 100 + width, 40 + height))
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return image, pixels.view(height, width, -1).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("grey", [False, True])
@pytest.mark.parametrize("quality", [10, 40])
def test_dejpeg_inputs_are_damaged_as_libjpeg_damages_them(grey, quality):
    """The training input is what saving the photo as a JPEG (Pillow, libjpeg) at that quality
    gives: as far from the clean photo, and close to it pixel for pixel, an odd size included."""
    import io

    from PIL import Image

    from i2i_builtin_tasks.jpeg_codec import jpeg_round_trip

    image, clean = sample_crop(grey=grey)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    saved = torch.frombuffer(bytearray(Image.open(buffer).tobytes()), dtype=torch.uint8)
    saved = saved.view(*clean.shape[-2:], -1).permute(2, 0, 1)[None].float() / 255
    ours = jpeg_round_trip(clean, torch.tensor([float(quality)]))

    def psnr(a, b):
        return float(-10 * torch.log10((a - b).square().mean()))

    assert ours.shape == clean.shape and torch.equal(ours, (ours * 255).round() / 255)  # 8-bit levels, as a file
    assert abs(psnr(ours, clean) - psnr(saved, clean)) < 0.2  # 0.05 dB at most, as measured
    assert psnr(ours, saved) > psnr(saved, clean) + 4  # 6 to 24 dB closer, as measured


@pytest.mark.parametrize("quality", [20, 95])
def test_dejpeg_keeps_grey_colours_grey_as_libjpeg_does(quality):
    """kornia centres the chroma planes on 127.5, JPEG on 128: a grey photo in RGB came back
    magenta (flat 100 as 99, 97, 99; Pillow gives 98, 98, 98), 9.6 dB off Pillow at quality 100."""
    import io

    from PIL import Image

    from i2i_builtin_tasks.jpeg_codec import jpeg_round_trip

    image, grey = sample_crop(grey=True)
    image = image.convert("RGB")
    clean = grey.expand(-1, 3, -1, -1)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    saved = torch.frombuffer(bytearray(Image.open(buffer).tobytes()), dtype=torch.uint8)
    saved = saved.view(*clean.shape[-2:], 3).permute(2, 0, 1)[None].float() / 255
    ours = jpeg_round_trip(clean, torch.tensor([float(quality)]))
    assert (ours - ours[:, 1:2]).abs().max() <= 1 / 255  # grey stays grey, to the rounding of one level
    assert (ours - ours[:, 1:2]).abs().mean() < 0.05 / 255

    def psnr(a, b):
        return float(-10 * torch.log10((a - b).square().mean()))

    assert abs(psnr(ours, clean) - psnr(saved, clean)) < 0.2


def test_dejpeg_pairs_draw_a_whole_quality_per_image_in_range_on_the_device():
    from i2i_builtin_tasks.jpeg_codec import jpeg_round_trip

    task = build("dejpeg", quality=[10, 12])
    _, photo = sample_crop(32, 32)
    clean = photo.repeat(6, 1, 1, 1)
    input, target = task.make_pair(clean, torch.Generator().manual_seed(3))
    assert torch.equal(target, clean * 2 - 1)
    candidates = {q: jpeg_round_trip(photo, torch.tensor([float(q)])) * 2 - 1 for q in (10, 11, 12)}
    drawn = [next(q for q, made in candidates.items() if torch.equal(made[0], image)) for image in input]
    assert len(set(drawn)) > 1  # per image, not per batch
    again, _ = task.make_pair(clean, torch.Generator().manual_seed(3))
    assert torch.equal(again, input)
    fixed, _ = build("dejpeg", quality=11).make_pair(clean[:2])
    assert torch.equal(fixed[1], candidates[11][0])
    grey = build("dejpeg", channels=1)
    assert grey.image_channels == grey.in_channels == grey.out_channels == 1
    assert grey.make_pair(torch.rand(2, 1, 8, 12))[0].shape == (2, 1, 8, 12)
    assert grey.prepare(torch.rand(2, 3, 8, 12)).shape == (2, 1, 8, 12)
    bf16, _ = task.make_pair(clean.bfloat16(), torch.Generator().manual_seed(3))
    assert bf16.dtype == torch.bfloat16


def test_dejpeg_pairs_copy_no_constants_from_the_host(monkeypatch):
    """As for colourisation: a host-to-device copy per step would stall a GPU's queue."""
    task = build("dejpeg", quality=[10, 40])
    clean = torch.rand(2, 3, 16, 16)
    first = task.make_pair(clean, torch.Generator().manual_seed(0))

    def from_host(*args, **kwargs):
        raise AssertionError("torch.tensor called while making a pair")

    monkeypatch.setattr(torch, "tensor", from_host)
    again = task.make_pair(clean, torch.Generator().manual_seed(0))
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_dejpeg_quality_is_checked():
    for quality in (0, 101, [40, 10], [0, 10], [10, 20, 30], True):
        with pytest.raises(RecipeError, match=r"task.quality = .*: expected"):
            build("dejpeg", quality=quality)
    with pytest.raises(RecipeError, match="quality"):
        validate_options("task", {"quality": 20.5}, registry().get("tasks", "dejpeg").options)
    assert build("dejpeg", quality=100).quality_hi == 100 and build("dejpeg", quality=[1, 100]).quality_lo == 1


def test_blind_dejpeg_details_give_each_pairs_drawn_quality():
    task = build("dejpeg", quality=[10, 40])
    _, photo = sample_crop(32, 40)
    clean = photo.repeat(5, 1, 1, 1)
    qualities = torch.tensor([10.0, 17.0, 25.0, 33.0, 40.0])
    from i2i_builtin_tasks.jpeg_codec import jpeg_round_trip

    input = jpeg_round_trip(clean, qualities) * 2 - 1
    assert torch.equal(task.pair_details(input, clean * 2 - 1)["jpeg quality"], qualities)
    assert build("dejpeg", quality=20).pair_details(input, clean * 2 - 1) == {}


def test_deblur_inputs_are_kornias_gaussian_blur_of_the_photo():
    from kornia.filters import gaussian_blur2d

    clean = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    input, target = build("deblur", sigma=1.5).make_pair(clean, torch.Generator().manual_seed(0))
    torch.testing.assert_close(target, clean * 2 - 1)
    expected = gaussian_blur2d(clean, 2 * 5 + 1, (1.5, 1.5), border_type="replicate")
    torch.testing.assert_close((input + 1) / 2, expected, atol=1e-6, rtol=0)
    # an image smaller than the kernel (a 3 x 2 icon among validation photos) still works
    tiny, _ = build("deblur", sigma=3.0).make_pair(torch.rand(1, 3, 3, 2), torch.Generator().manual_seed(0))
    assert tiny.shape == (1, 3, 3, 2) and tiny.isfinite().all()


def test_blind_deblur_draws_a_width_per_image_in_range_and_repeats_with_its_seed():
    """A range trains a blind model: each image its own width, the same for the same seed (the
    validation pairs are drawn per file from a generator seeded by its name)."""
    from kornia.filters import gaussian_blur2d

    task = build("deblur", sigma=[0.0, 4.0])
    clean = smooth_images(batch=6, size=32)
    clean = clean + 0.2 * (torch.rand(clean.shape, generator=torch.Generator().manual_seed(1)) - 0.5)  # detail to blur
    first, _ = task.make_pair(clean, torch.Generator().manual_seed(7))
    again, _ = task.make_pair(clean, torch.Generator().manual_seed(7))
    other, _ = task.make_pair(clean, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    # each image is the blur of one width in [0, 4]: found by a search over widths (0.05 px apart)
    widths = torch.linspace(0.001, 4.0, 81)
    blurs = torch.stack([gaussian_blur2d(clean, 25, torch.tensor([[float(w), float(w)]]).expand(6, 2),
                                         border_type="replicate") for w in widths])  # [widths, 6, 3, 32, 32]
    errors = (blurs - (first + 1) / 2).abs().flatten(2).max(2).values  # [widths, 6]
    assert (errors.min(0).values < 0.02).all()
    drawn = set(widths[errors.argmin(0)].tolist())
    assert len(drawn) > 3  # widths differ between images


def test_deblur_noise_is_added_after_the_blur_at_its_level():
    clean = torch.full((4, 3, 64, 64), 0.5)
    input, target = build("deblur", sigma=2.0, noise=5.1).make_pair(clean, torch.Generator().manual_seed(0))
    assert (input - target).std().item() == pytest.approx(5.1 / 255 * 2, rel=0.03)  # a flat image blurs to itself


def test_deblur_unsharp_mask_beats_the_blurred_input_and_options_are_checked():
    task = build("deblur", sigma=1.0)
    g = torch.Generator().manual_seed(0)
    clean = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=32, mode="bilinear")
    input, target = task.make_pair(clean, g)
    baselines = task.baselines(input, clean)
    assert list(baselines) == ["blurred input", "best unsharp mask"]
    from i2i_builtin_tasks._common import psnr_per_image

    assert (psnr_per_image(baselines["best unsharp mask"], clean) > psnr_per_image(baselines["blurred input"], clean)).all()

    # the amount is fitted, not picked from a short list: no amount on a fine grid does better
    from kornia.filters import gaussian_blur2d

    blurred = (input + 1) / 2
    found = psnr_per_image(baselines["best unsharp mask"], clean)
    for width in (0.5, 1.0, 1.5, 2.0, 3.0):
        soft = gaussian_blur2d(blurred, 2 * math.ceil(3 * width) + 1, (width, width), border_type="replicate")
        for amount in torch.arange(0, 12.01, 0.25).tolist():
            tried = psnr_per_image((blurred + amount * (blurred - soft)).clamp(0, 1), clean)
            assert (found >= tried - 0.02).all(), (width, amount, found, tried)
    for bad, said in ((0.0, "a blur width above 0"), (11.0, "at most 10"), ([3.0, 1.0], "0 <= low <= high"),
                      ([0.0, 0.0], "high above 0"), ("wide", "expected a blur width"), (float("nan"), "above 0")):
        with pytest.raises(RecipeError, match=rf"task.sigma = .*{said}"):
            build("deblur", sigma=bad)
    for bad, said in ((-1.0, "from 0 to 255"), (0.01, "if you meant the 0-1 scale, write task.noise = 2.55")):
        with pytest.raises(RecipeError, match=rf"task.noise = .*{said}"):
            build("deblur", noise=bad)


def test_a_deblur_run_trains_scores_against_its_baselines_and_translates(tmp_path):
    import i2i
    from helpers import TINY_GAN, make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos", count=3, size=(24, 24))
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_GAN, train={"steps": 2})
    recipe["task"] = {"name": "deblur", "sigma": [1.0, 2.0], "noise": 2.55}
    run = i2i.train(recipe, quiet=True)
    assert set(run.baselines) == {"blurred input", "best unsharp mask"} and "psnr" in run.metrics
    model = i2i.load(run.run_dir)
    assert model(torch.rand(1, 3, 13, 9)).shape == (1, 3, 13, 9)


def test_blind_deblur_details_give_each_pairs_drawn_width():
    task = build("deblur", sigma=[0.5, 3.0])
    clean = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    input, target = task.make_pair(clean, torch.Generator().manual_seed(4))
    drawn = 0.5 + 2.5 * torch.rand((5,), generator=torch.Generator().manual_seed(4))  # as make_pair draws them
    assert (task.pair_details(input, target)["blur sigma"] - drawn).abs().max() <= 0.026
    assert build("deblur", sigma=2.0).pair_details(input, target) == {}
