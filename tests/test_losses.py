"""The built-in loss terms against their closed forms, on tiny hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import i2i
from i2i.errors import RecipeError
from i2i.plugins import registry


def build(name: str, **options):
    return registry().build("losses", name, **options)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


D_REAL = torch.tensor([2.0, -1.0])
D_FAKE = torch.tensor([0.5, -3.0])

# (name, D loss, G loss) written out from i2i's loss table for D_REAL and D_FAKE.
CLOSED_FORMS = [
    (
        "vanilla",
        (softplus(-2.0) + softplus(1.0)) / 2 + (softplus(0.5) + softplus(-3.0)) / 2,
        (softplus(-0.5) + softplus(3.0)) / 2,
    ),
    ("lsgan", ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + (0.5**2 + 3.0**2) / 2, ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2),
    ("wgan", (0.5 - 3.0) / 2 - (2.0 - 1.0) / 2, -(0.5 - 3.0) / 2),
    ("hinge", (max(0, 1 - 2) + max(0, 1 + 1)) / 2 + (max(0, 1 + 0.5) + max(0, 1 - 3)) / 2, -(0.5 - 3.0) / 2),
]


@pytest.mark.parametrize("name, d_expected, g_expected", CLOSED_FORMS)
def test_adversarial_closed_forms(name, d_expected, g_expected):
    loss = build(name)
    assert isinstance(loss, i2i.AdversarialLoss)
    assert loss.d_loss([D_REAL], [D_FAKE]).item() == pytest.approx(d_expected, rel=1e-6)
    assert loss.g_loss([D_FAKE]).item() == pytest.approx(g_expected, rel=1e-6)


@pytest.mark.parametrize("name", ["vanilla", "lsgan", "wgan", "hinge"])
def test_adversarial_averages_over_scales(name):
    loss = build(name)
    coarse_real, coarse_fake = torch.tensor([[0.3, -0.7, 1.2]]), torch.tensor([[-2.0], [0.1]])
    both = loss.d_loss([D_REAL, coarse_real], [D_FAKE, coarse_fake])
    each = (loss.d_loss([D_REAL], [D_FAKE]) + loss.d_loss([coarse_real], [coarse_fake])) / 2
    assert both.item() == pytest.approx(each.item(), rel=1e-6)
    g_both = loss.g_loss([D_FAKE, coarse_fake])
    assert g_both.item() == pytest.approx(((loss.g_loss([D_FAKE]) + loss.g_loss([coarse_fake])) / 2).item(), rel=1e-6)
    assert loss.g_loss(D_FAKE).item() == pytest.approx(loss.g_loss([D_FAKE]).item())  # a bare tensor is one scale


def test_lsgan_decision_threshold_is_halfway_between_its_targets():
    assert build("lsgan").decision_threshold == 0.5
    assert build("vanilla").decision_threshold == 0.0


def test_adversarial_gradient_reaches_the_logits():
    d_fake = D_FAKE.clone().requires_grad_(True)
    build("lsgan").g_loss([d_fake]).backward()
    assert torch.allclose(d_fake.grad, (d_fake.detach() - 1))  # d/dx mean (x - 1)^2 over 2 items


class LinearD(nn.Module):
    """D(x) = sum(w * x) per image: its input gradient is w, whatever x."""

    def __init__(self, shape=(2, 3, 3)) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.arange(1.0, 1.0 + math.prod(shape)).reshape(1, *shape) / 10)

    def forward(self, x):
        return [(self.w * x).flatten(1).sum(1)]


class ConvD(nn.Module):
    """A tiny non-linear two-scale D, for comparison with a direct autograd computation."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(2, 1, 3)

    def forward(self, x):
        return [torch.tanh(self.conv(x)), torch.tanh(self.conv(F.avg_pool2d(x, 2)))]


def direct_input_gradient(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    total = sum(o.sum() for o in d(x))
    return torch.autograd.grad(total, x, create_graph=True)[0]


def test_r1_linear_d_closed_form_and_gradient_to_d():
    d = LinearD()
    r1 = build("r1")
    assert isinstance(r1, i2i.Regularizer) and (r1.gamma, r1.every) == (10.0, 16)
    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    penalty = r1(d, real, fake)
    w_sq = d.w.detach().square().sum()
    assert penalty.item() == pytest.approx((10.0 / 2 * w_sq).item(), rel=1e-6)
    penalty.backward()  # create_graph: d/dw (gamma / 2) ||w||^2 = gamma * w
    assert torch.allclose(d.w.grad, 10.0 * d.w.detach())
    assert real.grad is None  # the images are detached


def test_r1_matches_direct_autograd_on_a_multiscale_d():
    d, real = ConvD(), torch.randn(3, 2, 8, 8)
    grad = direct_input_gradient(d, real)
    expected = 2.5 / 2 * grad.square().sum(dim=(1, 2, 3)).mean()
    got = build("r1", gamma=2.5, every=4)(d, real, torch.randn_like(real))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    got.backward()
    assert d.conv.weight.grad is not None and d.conv.weight.grad.abs().sum() > 0


def test_gp_linear_d_closed_form():
    d = LinearD()
    norm = d.w.detach().norm().item()
    real, fake = torch.randn(5, 2, 3, 3), torch.randn(5, 2, 3, 3)
    gp = build("gp")
    assert isinstance(gp, i2i.Regularizer) and (gp.every, gp.target) == (1, 1.0)
    assert gp(d, real, fake).item() == pytest.approx((norm - 1) ** 2, rel=1e-5)
    assert build("gp", target=2.0)(d, real, fake).item() == pytest.approx((norm - 2) ** 2, rel=1e-5)


def test_gp_matches_direct_autograd_with_the_global_rng():
    d, real, fake = ConvD(), torch.randn(3, 2, 8, 8), torch.randn(3, 2, 8, 8)
    torch.manual_seed(7)
    got = build("gp")(d, real, fake)
    torch.manual_seed(7)
    a = torch.rand(3, 1, 1, 1)
    grad = direct_input_gradient(d, a * real + (1 - a) * fake)
    expected = (grad.flatten(1).norm(dim=1) - 1).square().mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    got.backward()
    assert d.conv.weight.grad is not None


@pytest.mark.parametrize("name, options", [("r1", {"every": 0}), ("r1", {"gamma": -1.0}), ("gp", {"every": 0}),
                                           ("charbonnier", {"eps": 0.0}), ("ssim", {"window": 4}),
                                           ("ssim", {"data_range": 0.0})])
def test_bad_option_values_are_recipe_errors(name, options):
    with pytest.raises(RecipeError):
        build(name, **options)


FAKE = torch.tensor([[[[0.0, 1.0], [2.0, -1.0]]]])


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("l1", {}, (0 + 1 + 2 + 1) / 4),
        ("l2", {}, (0 + 1 + 4 + 1) / 4),
        ("charbonnier", {}, sum(math.sqrt(d * d + 1e-6) for d in (0, 1, 2, -1)) / 4),
        ("charbonnier", {"eps": 0.5}, sum(math.sqrt(d * d + 0.25) for d in (0, 1, 2, -1)) / 4),
    ],
)
def test_pixel_losses_closed_forms(name, options, expected):
    loss = build(name, **options)
    assert isinstance(loss, i2i.ReconstructionLoss)
    assert loss(FAKE, torch.zeros_like(FAKE)).item() == pytest.approx(expected, rel=1e-6)


def constant(values, size: int = 12) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1, 1, 1).expand(-1, 1, size, size).contiguous()


def test_ssim_loss_of_constant_images_closed_form():
    # Flat images: sigma = 0, so SSIM = (2 a b + c1) / (a^2 + b^2 + c1) with c1 = (0.01 * 2)^2.
    c1 = (0.01 * 2.0) ** 2
    a, b = 0.5, -0.25
    expected = 1 - (2 * a * b + c1) / (a * a + b * b + c1)
    loss = build("ssim")
    assert loss(constant([a]), constant([b])).item() == pytest.approx(expected, rel=1e-4)
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    assert loss(image, image).item() == pytest.approx(0.0, abs=1e-5)


def test_ssim_loss_is_one_minus_kornias_ssim_not_its_halved_loss():
    from kornia.losses import ssim_loss

    torch.manual_seed(0)
    fake, target = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    halved = ssim_loss(fake, target, 7, max_val=2.0)
    assert build("ssim", window=7)(fake, target).item() == pytest.approx(2 * halved.item(), rel=1e-5)


def test_tv_closed_form_ignores_target():
    # dy: |3 - 0|, |3 - 1| -> mean 2.5; dx: |1 - 0|, |3 - 3| -> mean 0.5; the second image is flat.
    fake = torch.cat([torch.tensor([[[[0.0, 1.0], [3.0, 3.0]]]]), torch.zeros(1, 1, 2, 2)])
    tv = build("tv")
    assert tv(fake, torch.randn_like(fake)).item() == pytest.approx((2.5 + 0.5 + 0) / 2)
    assert tv(fake, torch.zeros_like(fake)).item() == pytest.approx(1.5)


def test_feature_matching_mean_over_layers_and_only_g_learns():
    fm = build("feature_matching")
    assert isinstance(fm, i2i.FeatureMatchingLoss)
    real = [torch.ones(1, 2, 2, 2, requires_grad=True), torch.zeros(1, 3, requires_grad=True)]
    fake = [torch.zeros(1, 2, 2, 2, requires_grad=True), torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)]
    value = fm(real, fake)
    assert value.item() == pytest.approx((1.0 + 2.0) / 2)
    value.backward()
    assert real[0].grad is None and real[1].grad is None
    assert fake[0].grad is not None
    with pytest.raises(ValueError):
        fm(real, fake[:1])


def test_every_registered_loss_has_a_kind_and_a_description():
    names = {c.name for c in registry().components("losses")}
    assert {"vanilla", "lsgan", "wgan", "hinge", "r1", "gp", "l1", "l2", "charbonnier", "ssim", "tv",
            "feature_matching"} <= names
    for component in registry().components("losses"):
        assert component.description and not component.open_ended
        assert isinstance(component.build(), (i2i.ReconstructionLoss, i2i.AdversarialLoss, i2i.Regularizer,
                                              i2i.FeatureMatchingLoss))


def test_an_ssim_window_larger_than_the_crops_names_the_recipe_key(tmp_path):
    """It was blamed on the plugin (torch's padding error, 'report this to the plugin's author'),
    or, up to twice the crop, trained on reflected padding without a word."""
    from helpers import make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos", count=3)
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 1})
    recipe["losses"] = {**recipe["losses"], "ssim": {"window": 21}}
    with pytest.raises(RecipeError, match=r"^<recipe>: losses\.ssim\.window = 21: larger than the 16x16 px images it "
                                          r"compares; use an odd window up to 15"):
        i2i.train(recipe, quiet=True)
    assert not (tmp_path / "run").exists()


def test_only_losses_and_metrics_that_ask_for_the_input_get_it():
    """torch names a loss's prediction `input` (nn.L1Loss.forward(input, target)): such a
    two-argument loss was called with input= twice; a metric written as a module was never
    given the input it declared."""
    from torch import nn

    from i2i.losses import takes_input

    class TorchStyle(i2i.ReconstructionLoss):
        def forward(self, input, target):
            return (input - target).abs().mean()

    class Masked(i2i.ReconstructionLoss):
        def forward(self, fake, target, input):
            return fake.mean()

    class ModuleMetric(nn.Module):
        def forward(self, output, target, input=None):
            return output.mean((1, 2, 3))

    assert not takes_input(TorchStyle().forward) and not takes_input(nn.L1Loss())
    assert takes_input(Masked().forward) and takes_input(ModuleMetric())
    assert takes_input(lambda output, target, *, input: output) and not takes_input(lambda output, target: output)


def test_a_generator_every_loss_of_which_weighs_0_is_refused_before_training(tmp_path):
    """Each term got a note that it trained nothing, and the run trained for its whole length."""
    from helpers import TINY_GAN, make_photos, tiny_recipe

    recipe = tiny_recipe(make_photos(tmp_path / "photos", count=3, size=(16, 16)), tmp_path / "run", base=TINY_GAN)
    with pytest.raises(RecipeError, match=r"losses: losses.l1.weight = 0, losses.gan.weight = 0: the generator would "
                                          r"learn nothing; give one of them a weight above 0"):
        i2i.validate(recipe, overrides=["losses.gan.weight=0", "losses.l1.weight=0"])
    i2i.validate(recipe, overrides=["losses.l1.weight=0"])  # the adversarial term alone still trains it


def test_ragan_is_esrgans_relativistic_average_loss_with_its_gradients():
    """Written out as BasicSR's ESRGAN model computes it: D's halves with the other side's mean
    detached, G's with D's real logits detached, each the mean of two BCE-with-logits terms."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    loss = build("ragan")
    real, fake = D_REAL.clone().requires_grad_(True), D_FAKE.clone().requires_grad_(True)
    d = loss.d_loss([real], [fake])
    expected = (bce(real - fake.mean().detach(), torch.ones(2)) + bce(fake - real.mean().detach(), torch.zeros(2))) / 2
    assert d.item() == pytest.approx(expected.item(), rel=1e-6)
    d.backward()
    real_ref, fake_ref = D_REAL.clone().requires_grad_(True), D_FAKE.clone().requires_grad_(True)
    ((bce(real_ref - fake_ref.mean().detach(), torch.ones(2)) + bce(fake_ref - real_ref.mean().detach(), torch.zeros(2))) / 2).backward()
    assert torch.allclose(real.grad, real_ref.grad) and torch.allclose(fake.grad, fake_ref.grad)
    real, fake = D_REAL.clone().requires_grad_(True), D_FAKE.clone().requires_grad_(True)
    g = loss.g_loss([fake], d_real=[real])
    g_expected = (bce(D_REAL - fake.mean(), torch.zeros(2)) + bce(fake - D_REAL.mean(), torch.ones(2))) / 2
    assert g.item() == pytest.approx(g_expected.item(), rel=1e-6)
    g.backward()
    assert real.grad is None and fake.grad is not None  # G's half trains G only


def test_a_relativistic_g_loss_gets_the_real_logits_and_an_unknown_parameter_is_refused_before_training(tmp_path):
    """g_loss(d_fake, d_real) passed i2i.validate and failed at step 1 with Python's 'missing
    d_real'; the engine now gives d_real to a g_loss that declares it, and refuses others."""
    from helpers import TINY_GAN, make_photos, tiny_recipe

    photos = make_photos(tmp_path / "photos", count=4, size=(32, 32))
    seen = []

    class Relativistic(i2i.AdversarialLoss):
        def d_loss(self, d_real, d_fake):
            return build("ragan").d_loss(d_real, d_fake)

        def g_loss(self, d_fake, d_real):
            seen.append((len(d_real), d_real[0].shape == d_fake[0].shape, d_real[0].requires_grad))
            return build("ragan").g_loss(d_fake, d_real)

    class NeedsMore(i2i.AdversarialLoss):
        def d_loss(self, d_real, d_fake):
            return d_fake[0].mean()

        def g_loss(self, d_fake, weights):
            return d_fake[0].mean()

    class Plugin:
        @i2i.hookimpl
        def register_losses(self, register):
            register("my_ragan", Relativistic)
            register("needs_more", NeedsMore)

    i2i.register_plugin(Plugin(), "relativistic-test")
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_GAN, train={"steps": 2})
    recipe["losses"] = {"l1": {"weight": 10.0}, "gan": {"name": "my_ragan", "weight": 1.0}}
    run = i2i.train(recipe, quiet=True)
    assert run.step == 2 and seen and all(s == (1, True, False) for s in seen)
    recipe["losses"]["gan"]["name"] = "needs_more"
    with pytest.raises(i2i.PluginError, match=r"losses.gan .*its g_loss needs 'weights', which i2i never passes; an "
                                              r"adversarial loss is called as g_loss\(d_fake\), plus d_real="):
        i2i.validate(recipe)

    class Swapped(NeedsMore):
        def g_loss(self, d_real, d_fake):
            return d_fake[0].mean()

    class TakesNothing(NeedsMore):
        def g_loss(self):
            return torch.zeros(())

    for name, loss, said in (("swapped", Swapped, r"takes D's logits in the other order: declare g_loss\(self, d_fake, "
                                                  r"d_real\)"),
                             ("takes_nothing", TakesNothing, r"its g_loss takes 0 positional argument\(s\); an adversarial loss is "
                                                             r"called as g_loss\(d_fake\)")):
        i2i.register_plugin(type("P", (), {"register_losses": i2i.hookimpl(
            lambda register, name=name, loss=loss: register(name, loss))}), f"{name}-plugin")
        recipe["losses"]["gan"]["name"] = name
        with pytest.raises(i2i.PluginError, match=said):
            i2i.validate(recipe)
