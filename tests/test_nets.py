"""The built-in networks (plugins/i2i_builtin_nets), loaded through the registry as users do.

Parameter counts were measured on the reference code (junyanz/pytorch-CycleGAN-and-pix2pix
@2a7afba, ``models/networks.py``); the reference's checkpoint keys are in
``tests/fixtures/reference_keys/``. Big networks are built once and never run at full size.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
import torch
from torch import nn

import i2i
from i2i.plugins import registry

FIXTURES = Path(__file__).parent / "fixtures" / "reference_keys"
PLUGIN = Path(__file__).parents[1] / "plugins" / "i2i_builtin_nets"


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def G(name: str, *args, **options) -> nn.Module:
    return registry().build("generators", name, *args, **options)


def D(name: str, *args, **options) -> nn.Module:
    return registry().build("discriminators", name, *args, **options)


# -- the reference networks ------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, channels, parameters, size_multiple, dropouts",
    [
        ("unet_256", (3, 3), 54_413_955, 256, 3),
        ("unet_128", (3, 3), 41_828_995, 128, 2),
        ("unet_128", (1, 2), 41_824_898, 128, 2),  # Lab colourisation: L in, ab out
        ("resnet_9blocks", (3, 3), 11_378_179, 4, 0),
        ("resnet_6blocks", (3, 3), 7_837_699, 4, 0),
    ],
)
def test_generators_match_the_reference(name, channels, parameters, size_multiple, dropouts):
    net = G(name, *channels)
    assert count(net) == parameters
    assert net.size_multiple == size_multiple
    # the reference's pix2pix U-Nets drop out in their depth - 5 middle blocks
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == dropouts


def test_resnet_defaults_are_cyclegan():
    net = G("resnet_6blocks", 3, 3, width=8)
    assert any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert any(isinstance(m, nn.ReflectionPad2d) for m in net.model[10].conv_block)


@pytest.mark.parametrize(
    "name, options, parameters",
    [("patchgan", {}, 2_768_705), ("patchgan", {"n_layers": 3, "norm": "batch"}, 2_768_705), ("pixelgan", {}, 9_024)],
)
def test_discriminators_match_the_reference(name, options, parameters):
    assert count(D(name, 6, **options)) == parameters


def test_patchgan_gives_a_30x30_grid_for_256_px():
    net = D("patchgan", 6).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 6, 256, 256))
    assert out.shape == (1, 1, 30, 30)


# -- generator shapes and behaviour ----------------------------------------------------------
@pytest.mark.parametrize(
    "name, channels, options, size",
    [
        ("unet_small", (1, 2), {}, (32, 64)),
        ("unet", (3, 3), {"depth": 3, "width": 4, "output": "identity"}, (16, 24)),
        ("unet", (3, 1), {"depth": 1, "width": 4}, (6, 2)),
        ("unet", (3, 3), {"depth": 6, "width": 2, "norm": "instance", "dropout": True}, (128, 64)),
        ("resnet", (3, 2), {"blocks": 2, "width": 4, "padding": "zero", "dropout": True}, (20, 28)),
        ("resnet", (1, 3), {"blocks": 1, "width": 4, "padding": "replicate", "norm": "none"}, (8, 12)),
        ("dncnn", (3, 3), {"depth": 4, "width": 8}, (15, 17)),
        ("dncnn", (1, 3), {"depth": 3, "width": 8, "residual": False}, (9, 5)),
        ("ffdnet", (3, 3), {"depth": 4, "width": 8}, (16, 18)),
        ("ffdnet", (1, 3), {"depth": 3, "width": 8, "residual": False, "scale": 4}, (8, 12)),
    ],
)
def test_generator_output_shapes(name, channels, options, size):
    net = G(name, *channels, **options)
    assert size[0] % net.size_multiple == 0 and size[1] % net.size_multiple == 0
    out = net(torch.rand(2, channels[0], *size) * 2 - 1)
    assert out.shape == (2, channels[1], *size)
    if options.get("output", "tanh") == "tanh" and name not in ("dncnn", "ffdnet"):
        assert out.abs().max() <= 1


def test_unet_small_is_small():
    net = G("unet_small", 1, 2)
    assert net.size_multiple == 32 and count(net) < 5_000_000
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())


def test_dncnn_subtracts_its_prediction():
    net = G("dncnn", 3, 3, depth=5, width=8)
    assert net.subtracts_residual is True and net.size_multiple == 1
    with torch.no_grad():
        net.body[-1].weight.zero_()  # predicts no noise: the input comes back unchanged
    x = torch.randn(2, 3, 10, 12)
    torch.testing.assert_close(net(x), x)
    plain = G("dncnn", 3, 3, depth=5, width=8, residual=False)
    assert not getattr(plain, "subtracts_residual", False)
    with torch.no_grad():
        plain.body[-1].weight.zero_()
    assert plain(x).abs().max() == 0
    with pytest.raises(i2i.UserError, match="residual"):
        G("dncnn", 1, 3)


def test_ffdnet_folds_pixels_and_subtracts_its_prediction():
    net = G("ffdnet", 3, 3, depth=4, width=8)
    assert net.subtracts_residual is True and net.size_multiple == 2
    # the stack runs on 2x2-folded pixels: 12 channels in, 12 out, at half resolution
    assert net.body[0].in_channels == 12 and net.body[-1].out_channels == 12
    with torch.no_grad():
        net.body[-1].weight.zero_()
    x = torch.randn(2, 3, 10, 12)
    torch.testing.assert_close(net(x), x)
    # a quarter of DnCNN's compute per pixel at the same width and depth
    dn = G("dncnn", 3, 3, depth=4, width=8)
    assert sum(p.numel() for p in net.parameters()) < 2 * sum(p.numel() for p in dn.parameters())
    with pytest.raises(ValueError, match="multiples of 2"):
        net(torch.randn(1, 3, 9, 12))
    with pytest.raises(i2i.UserError, match="residual"):
        G("ffdnet", 1, 3)


def test_bad_values_from_python_are_user_errors():
    with pytest.raises(i2i.UserError, match="depth"):
        G("unet", 3, 3, depth=0)
    with pytest.raises(i2i.UserError, match="norm"):
        G("unet", 3, 3, depth=2, width=4, norm="group")
    with pytest.raises(i2i.UserError, match="padding"):
        G("resnet", 3, 3, blocks=1, width=4, padding="circular")


# -- initialisation --------------------------------------------------------------------------
def test_init_options_give_different_weights():
    weights = {}
    for init in ("normal", "xavier", "kaiming", "orthogonal"):
        torch.manual_seed(0)
        net = G("unet", 3, 3, depth=3, width=8, init=init)
        weights[init] = net.model.model[0].weight.detach().clone()
    inits = list(weights)
    for i, a in enumerate(inits):
        for b in inits[i + 1:]:
            assert not torch.allclose(weights[a], weights[b]), (a, b)
    assert weights["normal"].std() == pytest.approx(0.02, rel=0.2)

    torch.manual_seed(0)
    net = G("unet", 3, 3, depth=4, width=16, init_gain=0.05)
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    scales = torch.cat([m.weight.detach() for m in bn])
    assert scales.mean() == pytest.approx(1.0, abs=0.02) and scales.std() == pytest.approx(0.05, rel=0.3)
    assert all((m.bias == 0).all() for m in bn)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None]
    assert convs and all((m.bias == 0).all() for m in convs)


# -- discriminators --------------------------------------------------------------------------
def test_patchgan_features_and_spectral_norm():
    net = D("patchgan", 4, n_layers=2, width=8, spectral_norm=True, norm="instance")
    x = torch.randn(2, 4, 40, 40)
    logits = net(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 1, 8, 8)
    out, features = net(x, return_features=True)
    assert isinstance(out, list) and len(out) == 1
    torch.testing.assert_close(out[0], logits)
    assert [f.shape[1] for f in features] == [8, 16, 32]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    with pytest.raises(i2i.UserError, match="at least 12 px"):
        net(torch.randn(1, 4, 11, 40))


def test_pixelgan_judges_every_pixel():
    net = D("pixelgan", 5, width=8)
    out = net(torch.randn(2, 5, 7, 9))
    assert out.shape == (2, 1, 7, 9)
    logits, features = net(torch.randn(2, 5, 7, 9), return_features=True)
    assert len(logits) == 1 and len(features) == 2


def test_multiscale_returns_one_output_per_scale():
    net = D("multiscale", 6, scales=3, n_layers=2, width=8)
    x = torch.randn(2, 6, 64, 48)
    out = net(x)
    assert isinstance(out, list) and len(out) == 3
    # pix2pixHD pads its 4x4 convolutions by 2: a stride-2 one maps h to h // 2 + 1, a stride-1 one to h + 1
    # (pix2pix's padding of 1 gave (14, 10), (6, 4), (2, 1) here)
    assert [o.shape[-2:] for o in out] == [(19, 15), (11, 9), (7, 6)]
    logits, features = net(x, return_features=True)
    assert len(logits) == 3 and len(features) == 3 * 3
    for a, b in zip(logits, out):
        torch.testing.assert_close(a, b)
    with pytest.raises(i2i.UserError, match="multiscale"):
        net(torch.randn(1, 6, 32, 64))


# -- registration ----------------------------------------------------------------------------
def test_options_and_aliases_are_in_the_registry():
    reg = registry()
    unet = reg.get("generators", "unet")
    assert unet.plugin == "nets"
    options = unet.options
    assert set(options) == {"depth", "width", "norm", "dropout", "output", "init", "init_gain"}
    assert typing.get_args(options["norm"].annotation) == ("batch", "instance", "none")
    assert options["depth"].default == 8 and options["init_gain"].default == 0.02
    assert unet.description.startswith("pix2pix U-Net")
    assert reg.get("generators", "unet_128").options["depth"].default == 7
    assert reg.get("generators", "unet_256").options["dropout"].default is True
    assert reg.get("generators", "resnet_6blocks").options["blocks"].default == 6
    for name in ("resnet", "dncnn"):
        assert {"width", "norm", "init", "init_gain"} <= set(reg.get("generators", name).options)
    for name in ("patchgan", "pixelgan", "multiscale"):
        d = reg.get("discriminators", name)
        assert {"width", "norm", "spectral_norm", "init"} <= set(d.options)
    # every option is documented in the factory's docstring
    for kind in ("generators", "discriminators"):
        for component in reg.components(kind):
            if component.plugin == "nets":
                for option in component.options:
                    assert f"{option}:" in component.doc, (component.name, option)


def test_plugin_uses_only_the_public_api():
    for path in PLUGIN.glob("*.py"):
        text = path.read_text()
        assert "from i2i." not in text and "import i2i." not in text, path.name


# -- reference checkpoints -------------------------------------------------------------------
def reference_state_dict(fixture: str, seed: int = 0) -> tuple[dict, dict[str, torch.Tensor]]:
    """Random weights with exactly the reference's keys and shapes (as its state_dict())."""
    data = json.loads((FIXTURES / fixture).read_text())
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in data["keys"].items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        else:
            sd[key] = torch.randn(shape, generator=g) if shape else torch.randn((), generator=g)
    return data, sd


def test_reference_unet_loads():
    from i2i_builtin_nets.reference import (
        convert_reference_state_dict, detect_reference_architecture, load_reference_generator,
    )

    data, sd = reference_state_dict("unet_128_1to2_batch.json")
    name, options = detect_reference_architecture(sd)
    assert (name, options) == ("unet", {"in_channels": 1, "out_channels": 2, "depth": 7, "width": 64, "norm": "batch",
                                        "dropout": True})  # assumed: dropout leaves no weights

    # saved from DataParallel, by a PyTorch without num_batches_tracked
    old = {"module." + k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert detect_reference_architecture(old) == (name, options)
    converted = convert_reference_state_dict(old, name, options)
    assert set(converted) == set(sd)
    # saved by a hand-written script: in a {"state_dict": ...} wrapper, from a torch.compile'd net
    compiled = {"state_dict": {"_orig_mod." + k: v for k, v in sd.items()}, "epoch": 3, "optimizer": {"lr": 2e-4}}
    assert detect_reference_architecture(compiled) == (name, options)
    assert set(convert_reference_state_dict(compiled, name, options)) == set(sd)

    net, name2, options2 = load_reference_generator(old)
    assert (name2, options2) == (name, options)
    assert count(net) == data["parameters"] == 41_824_898
    assert not net.training
    torch.testing.assert_close(net.model.model[0].weight, sd["model.model.0.weight"])  # first conv
    torch.testing.assert_close(net.model.model[3].weight, sd["model.model.3.weight"])  # last up conv
    bn = net.model.model[1].model[2]
    torch.testing.assert_close(bn.running_var, sd["model.model.1.model.2.running_var"])
    assert int(bn.num_batches_tracked) == 0


def test_reference_resnet_loads(tmp_path):
    from i2i_builtin_nets.reference import (
        convert_reference_state_dict, detect_reference_architecture, load_reference_generator,
    )

    data, sd = reference_state_dict("resnet_6blocks_3to3_instance.json", seed=1)
    name, options = detect_reference_architecture(sd)
    assert name == "resnet"
    assert options == {"in_channels": 3, "out_channels": 3, "blocks": 6, "width": 64, "norm": "instance",
                       "dropout": False, "padding": "reflect"}
    # old checkpoints kept instance-norm statistics; the reference drops them when loading
    sd["model.2.running_mean"] = torch.zeros(64)
    sd["model.2.running_var"] = torch.ones(64)
    converted = convert_reference_state_dict(sd, "resnet_6blocks", {"in_channels": 3, "out_channels": 3})
    net = G("resnet_6blocks", 3, 3)
    net.load_state_dict(converted, strict=True)
    assert count(net) == data["parameters"]
    torch.testing.assert_close(net.model[1].weight, sd["model.1.weight"])
    torch.testing.assert_close(net.model[12].conv_block[5].weight, sd["model.12.conv_block.5.weight"])

    path = tmp_path / "latest_net_G.pth"
    torch.save(sd, path)
    loaded, name2, options2 = load_reference_generator(path)
    assert (name2, options2) == (name, options)
    torch.testing.assert_close(loaded.model[-2].weight, sd[f"model.{len(net.model) - 2}.weight"])
    (tmp_path / "broken.pth").write_bytes(path.read_bytes()[:2000])  # cut short
    with pytest.raises(i2i.UserError, match=r"broken.pth: truncated or damaged \(its zip archive cannot be read: .*\); "
                                            "copy the file again$"):
        load_reference_generator(tmp_path / "broken.pth")
    (tmp_path / "notes.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(i2i.UserError, match=r"notes.pth: not a PyTorch checkpoint \(files written by torch.save start "
                                            r"with a zip or pickle header; this one starts with b'not '\)"):
        load_reference_generator(tmp_path / "notes.pth")


class _RunsCode:
    def __reduce__(self):
        return (exec, ("raise SystemExit('the checkpoint ran code')",))


def test_a_checkpoint_holding_code_is_refused_without_running_it(tmp_path):
    from i2i_builtin_nets.reference import load_reference_generator

    torch.save({"model.1.weight": torch.zeros(1), "hook": _RunsCode()}, tmp_path / "latest_net_G.pth")
    with pytest.raises(i2i.UserError) as info:
        load_reference_generator(tmp_path / "latest_net_G.pth")
    message = str(info.value)
    assert "holds pickled Python objects, not only tensors" in message and "(it refers to exec)" in message
    assert "weights_only=False" not in message and "\n" not in message  # no advice to run it anyway


def test_reference_errors_are_one_line():
    from i2i_builtin_nets.reference import convert_reference_state_dict, detect_reference_architecture

    with pytest.raises(i2i.UserError, match="discriminator"):
        detect_reference_architecture(D("patchgan", 6, width=4).state_dict())
    with pytest.raises(i2i.UserError, match="not a pix2pix/CycleGAN reference generator"):
        detect_reference_architecture({"encoder.weight": torch.zeros(1)})
    with pytest.raises(i2i.UserError, match="state dict"):
        detect_reference_architecture({"model": {"nested": 1}})
    sd = G("unet", 3, 3, depth=5, width=4, norm="batch").state_dict()
    with pytest.raises(i2i.UserError, match=r"has shape \(4, 3, 4, 4\), expected \(8, 3, 4, 4\)"):
        convert_reference_state_dict(sd, "unet", {"depth": 5, "width": 8})
    with pytest.raises(i2i.UserError, match="do not fit"):
        convert_reference_state_dict(sd, "unet", {"depth": 4, "width": 4})
    # a key renamed by hand (or another program's naming): missing and unexpected named together
    renamed = dict(sd)
    renamed["model.model.1.model.3.conv.weight"] = renamed.pop("model.model.1.model.3.model.1.weight")
    with pytest.raises(i2i.UserError, match=r"\(as read from the file's keys\): missing model\.model\.1\.model\.3\.model\."
                                            r"1\.weight, and the file has model\.model\.1\.model\.3\.conv\.weight, which "
                                            r"it does not expect$"):
        convert_reference_state_dict(renamed, "unet", {"depth": 5, "width": 4, "norm": "batch"})


def test_weights_that_are_no_reference_generator_are_told_apart():
    """A DnCNN from other code (3x3 convolutions named model.N) was taken for the reference's
    discriminator, and an empty file read 'first key is nothing'."""
    import i2i
    from i2i_builtin_nets.reference import detect_reference_architecture

    patchgan = {"model.0.weight": torch.zeros(64, 6, 4, 4), "model.0.bias": torch.zeros(64)}
    with pytest.raises(i2i.UserError, match=r"^this is a reference discriminator \(latest_net_D\.pth\), not a generator"):
        detect_reference_architecture(patchgan)
    dncnn = {f"model.{i}.weight": torch.zeros(64, 64, 3, 3) for i in range(0, 10, 2)}
    with pytest.raises(i2i.UserError, match=r"^not a pix2pix/CycleGAN reference generator: its first layer is a 3x3 "
                                            r"convolution, as in a plain stack of convolutions \(DnCNN, FFDNet"):
        detect_reference_architecture(dncnn)
    with pytest.raises(i2i.UserError, match=r"^holds no tensors"):
        detect_reference_architecture({})
    # the reference's pixel discriminator (define_D 'pixel': 1x1 convolutions under 'net.')
    pixel = {"net.0.weight": torch.zeros(64, 6, 1, 1), "net.0.bias": torch.zeros(64), "net.2.weight": torch.zeros(128, 64, 1, 1)}
    with pytest.raises(i2i.UserError, match=r"^this is a reference discriminator \(latest_net_D\.pth\), not a generator"):
        detect_reference_architecture(pixel)
    # batch norm saved without its statistics: said so, not taken for norm = 'none'
    sd = G("resnet_6blocks", 3, 3, norm="batch").state_dict()
    stripped = {key: value for key, value in sd.items() if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    with pytest.raises(i2i.UserError, match=r"^model.2.weight is a batch norm's weight, but its running_mean and "
                                            r"running_var are not in the file"):
        detect_reference_architecture(stripped)
