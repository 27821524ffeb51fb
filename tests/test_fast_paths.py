"""The fast paths compute what the plain ones compute (no timing assertions here).

channels_last, fused Adam, bf16 autocast and torch.compile are speed options: each must give
the same training signal as the default path, within the tolerance of its arithmetic.
Keeping freed host memory during CPU training is checked by what it does: page faults and
resident memory.
Benchmarks live in benchmarks/ (see benchmarks/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import i2i
from helpers import TINY_GAN, make_photos, page_faults_to_touch, tiny_recipe
from i2i.engine.optim import build_optimizer


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


def _nets(seed: int = 0):
    """A small pix2pix pair (U-Net with batch norm, conditional PatchGAN), in training mode."""
    reg = i2i.registry()
    torch.manual_seed(seed)
    g = reg.build("generators", "unet", 3, 3, depth=4, width=8, dropout=False).train()
    d = reg.build("discriminators", "patchgan", 6, n_layers=2, width=8).train()
    return g, d


def _pix2pix_grads(g, d, x, y, memory_format=torch.contiguous_format):
    """One pix2pix generator loss (LSGAN + 100 L1) and the gradients of G and D."""
    g, d = g.to(memory_format=memory_format), d.to(memory_format=memory_format)
    x, y = x.contiguous(memory_format=memory_format), y.contiguous(memory_format=memory_format)
    fake = g(x)
    logits = d(torch.cat([x, fake], 1))
    loss = ((logits - 1) ** 2).mean() + 100 * (fake - y).abs().mean()
    loss.backward()
    grads = {f"g.{n}": p.grad.clone() for n, p in g.named_parameters()}
    grads.update({f"d.{n}": p.grad.clone() for n, p in d.named_parameters()})
    return fake.detach().contiguous(), loss.detach(), grads


def _assert_grads_close(got: dict, expected: dict, rtol: float) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        scale = expected[name].abs().max().clamp_min(1e-12)
        err = (got[name] - expected[name]).abs().max() / scale
        assert err < rtol, f"{name}: relative error {err:.2e}"


def test_channels_last_training_forward_backward_matches_contiguous():
    """Training mode (batch statistics), through G and D, forward and every gradient."""
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    fake, loss, grads = _pix2pix_grads(*_nets(), x, y)
    fake_cl, loss_cl, grads_cl = _pix2pix_grads(*_nets(), x, y, torch.channels_last)
    torch.testing.assert_close(fake_cl, fake, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss_cl, loss, rtol=1e-5, atol=1e-6)
    _assert_grads_close(grads_cl, grads, rtol=1e-3)


def _logged_losses(run_dir) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith(("g_", "d_"))} for r in records if r["type"] == "train"]


def test_engine_step_with_channels_last_matches_default(photos, tmp_path):
    """The engine's own step (task, data, D step, G step, fused Adam) in both memory formats:
    the same logged losses, step by step, and nearly the same weights after three steps."""
    base = {"steps": 3, "batch_size": 2}
    out = {"log_every": 1}
    gen = {"dropout": False}  # dropout masks are drawn in memory order, so they differ by format
    plain = i2i.train(tiny_recipe(photos, tmp_path / "plain", train=base, output=out, generator=gen), quiet=True)
    fast = i2i.train(tiny_recipe(photos, tmp_path / "cl", train={**base, "channels_last": True}, output=out,
                                 generator=gen), quiet=True)
    weights = [w for w in fast.generator.parameters() if w.dim() == 4 and w.shape[1] > 1 and w.shape[2] > 1]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in weights)
    # the default, channels_last = 'auto', keeps the CPU's faster default layout
    assert all(w.is_contiguous() for w in plain.generator.parameters())
    a, b = _logged_losses(plain.run_dir), _logged_losses(fast.run_dir)
    assert len(a) == len(b) == 3
    for step_a, step_b in zip(a, b):
        assert step_a.keys() == step_b.keys()
        for key in step_a:
            assert step_b[key] == pytest.approx(step_a[key], rel=1e-3, abs=1e-5), key
    # Adam's first updates are about lr * sign(grad): a gradient that is ~0 may flip sign
    # between formats, so allow a few learning rates of difference per weight.
    lr = TINY_GAN["train"].get("g", {}).get("lr", 2e-4)
    for (name, p), q in zip(plain.generator.state_dict().items(), fast.generator.state_dict().values()):
        if p.is_floating_point():
            assert (p - q).abs().max() <= 6 * lr + 1e-4 * p.abs().max(), name


def test_fused_adam_matches_the_plain_loop():
    """The engine's optimiser (fused kernels) against torch's per-tensor Adam, same gradients."""
    cfg = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "weight_decay": 0.0}
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in ((64, 3, 4, 4), (64,), (7, 5))]
    ref_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fused = build_optimizer(params, cfg, torch.device("cpu"))
    assert fused.defaults.get("fused"), "the engine should use fused Adam on the CPU"
    plain = torch.optim.Adam(ref_params, lr=2e-4, betas=(0.5, 0.999), foreach=False)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        for p, q in zip(params, ref_params):
            grad = torch.randn(p.shape, generator=g)
            p.grad, q.grad = grad.clone(), grad.clone()
        fused.step()
        plain.step()
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-7)


def test_bf16_autocast_forward_backward_is_close_to_fp32():
    """bf16 autocast on the CPU: the same outputs and gradient directions, to bf16's precision."""
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    fake, loss, grads = _pix2pix_grads(*_nets(), x, y)
    g, d = _nets()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake_bf = g(x)
        logits = d(torch.cat([x, fake_bf], 1))
        loss_bf = ((logits.float() - 1) ** 2).mean() + 100 * (fake_bf.float() - y).abs().mean()
    loss_bf.backward()
    assert (fake_bf.float() - fake).abs().max() < 0.05
    assert loss_bf.item() == pytest.approx(loss.item(), rel=0.02)
    for name, p in [*(("g." + n, p) for n, p in g.named_parameters()), *(("d." + n, p) for n, p in d.named_parameters())]:
        ref = grads[name].flatten()
        cos = torch.nn.functional.cosine_similarity(p.grad.float().flatten(), ref, dim=0)
        assert cos > 0.95, f"{name}: cosine {cos:.3f}"


def test_cpu_autocast_keeps_weight_bound_convolutions_in_fp32():
    """Under i2i's CPU bf16 autocast, a convolution with fewer than FP32_BELOW_POSITIONS output
    positions runs in fp32 on the fp32 weight (no bf16 copy of it), larger ones in bf16; the
    results and gradients match fp32 to bf16's precision, through both kinds of layer."""
    from i2i.engine.device import FP32_BELOW_POSITIONS, autocast

    torch.manual_seed(0)
    down, up = torch.nn.Conv2d(8, 16, 4, 2, 1), torch.nn.ConvTranspose2d(16, 8, 4, 2, 1)
    cpu = torch.device("cpu")
    for size in (16, 32, 64, 128):
        x = torch.rand(2, 8, size, size, requires_grad=True)
        with autocast(cpu, torch.bfloat16):
            hidden = down(x)
            out = up(hidden)
        positions = 2 * (size // 2) ** 2
        assert hidden.dtype == (torch.float32 if positions < FP32_BELOW_POSITIONS else torch.bfloat16), size
        assert out.dtype == (torch.float32 if 4 * positions < FP32_BELOW_POSITIONS else torch.bfloat16), size
        out.float().square().mean().backward()
        grads = [x.grad.clone(), down.weight.grad.clone(), up.weight.grad.clone()]
        for t in (x, down.weight, up.weight):
            t.grad = None
        up(down(x)).square().mean().backward()
        torch.testing.assert_close(out.float(), up(down(x)), rtol=0.02, atol=0.02)
        for got, ref in zip(grads, [x.grad, down.weight.grad, up.weight.grad]):
            assert got.dtype == torch.float32
            assert torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0) > 0.99
        for t in (x, down.weight, up.weight):
            t.grad = None
    # outside i2i's autocast, and for weights a program cast itself, nothing changes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert down(torch.rand(1, 8, 16, 16)).dtype == torch.bfloat16
    with autocast(cpu, torch.bfloat16):
        assert down.bfloat16()(torch.rand(1, 8, 16, 16).bfloat16()).dtype == torch.bfloat16


def _compile_works() -> str | None:
    """Why torch.compile cannot be tested here, or None."""
    if os.environ.get("I2I_TEST_COMPILE") != "1":
        return ("torch.compile of even a tiny U-Net takes about a minute on a 2-core CPU (C++ codegen); "
                "set I2I_TEST_COMPILE=1 to run it")
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        return "no C++ compiler for inductor's CPU code"
    return None


@pytest.mark.skipif(_compile_works() is not None, reason=_compile_works() or "")
def test_torch_compile_matches_eager():
    g, _ = _nets()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.manual_seed(0)
    expected = g(x)
    expected.square().mean().backward()
    eager_grads = {n: p.grad.clone() for n, p in g.named_parameters()}
    g.zero_grad(set_to_none=True)
    compiled = torch.compile(g)
    got = compiled(x)
    got.square().mean().backward()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    _assert_grads_close({n: p.grad for n, p in g.named_parameters()}, eager_grads, rtol=1e-3)


def test_compiling_on_the_cpu_does_not_warn_of_a_missing_cuda_runtime():
    """train.compile on a CPU machine with a CUDA toolkit (but no GPU) printed torch's "No CUDA
    runtime is found, using CUDA_HOME=..." when inductor first imported its C++ builder; the
    builder's logger is left at the level it had."""
    import subprocess
    import sys

    code = ("import logging, sys, torch\n"
            "from i2i.engine.trainer import _import_cpp_builder_quietly\n"
            "_import_cpp_builder_quietly(torch.device('cpu'))\n"
            "assert 'torch.utils.cpp_extension' in sys.modules\n"
            "assert logging.getLogger('torch.utils.cpp_extension').level == logging.NOTSET\n")
    environment = {**os.environ, "CUDA_HOME": str(Path(__file__).parent)}  # a toolkit's folder, as far as torch asks
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "No CUDA runtime" not in done.stderr


def _resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_training_keeps_freed_memory_for_reuse_and_gives_it_back_afterwards():
    """What makes CPU steps faster: freed 64 MB buffers come back without 16384 page faults each."""
    from i2i.engine.host_memory import freed_memory_kept

    pages = 64 * 256  # 4 kB pages in 64 MB
    with freed_memory_kept() as kept:
        if not kept:
            pytest.skip("needs glibc on Linux")
        faults = [page_faults_to_touch(64) for _ in range(8)]
        # the first few map pages (the heap grows to its high-water mark), then they are reused
        assert sum(faults[-3:]) < pages // 10, faults
        before = _resident_mb()
        page_faults_to_touch(256)
        assert _resident_mb() - before > 128  # freed, but kept
    assert _resident_mb() - before < 64  # given back when training ends


def test_keeping_freed_memory_can_be_turned_off():
    """With I2I_KEEP_FREED_MEMORY=0 glibc behaves as usual: each large buffer is mapped afresh."""
    import subprocess
    import sys

    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from helpers import page_faults_to_touch\n"
        "from i2i.engine.host_memory import freed_memory_kept\n"
        "with freed_memory_kept() as kept:\n"
        "    print(kept, sum(page_faults_to_touch(64) for _ in range(6)))\n"
    )
    env = {**os.environ, "I2I_KEEP_FREED_MEMORY": "0"}
    kept, faults = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                  check=True).stdout.split()
    assert kept == "False" and int(faults) > 5 * 64 * 256


def test_leaving_the_training_loop_restores_the_malloc_settings_the_process_started_with():
    """A program that tuned glibc (MALLOC_MMAP_MAX_=0, a high trim threshold) keeps its tuning after training."""
    import subprocess
    import sys

    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from helpers import page_faults_to_touch\n"
        "from i2i.engine.host_memory import freed_memory_kept\n"
        "with freed_memory_kept() as kept:\n"
        "    page_faults_to_touch(64)\n"
        "page_faults_to_touch(64)\n"  # the heap grows to its high-water mark once
        "print(kept, sum(page_faults_to_touch(64) for _ in range(6)))\n"
    )

    def faults_after_training(**malloc_env: str) -> int:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        env.update(malloc_env)
        kept, faults = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout.split()
        if kept != "True":
            pytest.skip("needs glibc on Linux")
        return int(faults)

    pages = 64 * 256
    tuned = faults_after_training(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2**30))
    # the program's own setting: freed buffers come back without faults (one or two of the six
    # buffers may land on fresh pages, as the heap's layout allows; half at most), against six
    # without it
    assert tuned <= 3 * pages
    assert faults_after_training() > 5 * pages  # glibc's defaults: each buffer is mapped afresh again


def test_unet_skip_gradients_come_back_dense_in_channels_last():
    """The U-Net's skip concatenation hands each side a dense channels_last gradient (a strided
    channel slice sends batch norm's backward to its slow kernel on a GPU), with the same values."""
    from i2i_builtin_nets.unet import skip_concat

    cl = torch.channels_last
    skip = torch.randn(2, 4, 8, 8).contiguous(memory_format=cl).requires_grad_()
    inner = torch.randn(2, 6, 8, 8).contiguous(memory_format=cl).requires_grad_()
    out = skip_concat(skip, inner)
    torch.testing.assert_close(out, torch.cat([skip, inner], 1), rtol=0, atol=0)
    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    assert torch.equal(skip.grad, weight[:, :4]) and torch.equal(inner.grad, weight[:, 4:])
    for grad in (skip.grad, inner.grad):
        assert grad.is_contiguous(memory_format=cl) and not grad.is_contiguous()


def test_trainer_gives_the_networks_batches_in_their_memory_format(photos, tmp_path):
    """With channels_last on, the task's pairs reach G and D already in that layout (else every
    convolution reading them copies them); with it off, they are left as the task made them."""
    from i2i.engine.trainer import Trainer
    from i2i.recipe import load_recipe

    for flag in (True, False):
        recipe = load_recipe(tiny_recipe(photos, tmp_path / f"run-{flag}", train={"steps": 1, "channels_last": flag}))
        trainer = Trainer(recipe, tmp_path / f"run-{flag}", quiet=True)
        clean = trainer.data.next_batch(2)
        rng = trainer.noise_rng.get_state()  # the tiny recipe's task draws noise
        input, target = trainer.make_pair(clean)
        trainer.noise_rng.set_state(rng)
        expected_in, expected_target = trainer.task.make_pair(clean, trainer.noise_rng)
        torch.testing.assert_close(input, expected_in)
        torch.testing.assert_close(target, expected_target)
        for t in (input, target):
            assert t.is_contiguous(memory_format=torch.channels_last) == flag or t.shape[1] == 1


def test_a_channels_last_run_resumes_exactly(photos, tmp_path):
    """The checkpoint's Adam moments came back contiguous beside channels_last weights, and the
    fused kernel paired them by memory position: the resumed run drifted from its first step."""
    from safetensors.torch import load_file

    def recipe(out, steps):
        return tiny_recipe(photos, out, base=TINY_GAN, train={"steps": steps, "channels_last": True, "threads": 1,
                                                              "precision": "fp32"}, output={"checkpoint_every": 4})

    i2i.train(recipe(tmp_path / "straight", 8), quiet=True)
    i2i.train(recipe(tmp_path / "resumed", 4), quiet=True)
    i2i.train(None, resume=tmp_path / "resumed", overrides=["train.steps=8"], quiet=True)
    for name in ("generator", "discriminator", "optim_g", "optim_d"):
        straight = load_file(tmp_path / "straight" / "checkpoints" / "step_0000008" / f"{name}.safetensors")
        resumed = load_file(tmp_path / "resumed" / "checkpoints" / "step_0000008" / f"{name}.safetensors")
        assert all(torch.equal(straight[key], resumed[key]) for key in straight), name
