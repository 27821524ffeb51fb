"""The CUDA-graphed training step (``train.cuda_graphs``), exercised on the CPU.

CI has no GPU, so the real capture cannot run here. What these tests check is everything the
engine does to make its step capturable, with a stand-in capture that re-runs the step under a
guard instead of recording it:

- a graphed run trains exactly as the eager one (same weights, same logged losses);
- nothing in the captured step reads a value back to the host (that breaks a capture);
- the state a replayed step carries from one step to the next (loss sums, bad-step markers,
  learning rates) is updated in place, never replaced (a graph would keep writing the old one);
- a failed capture falls back to eager steps; checkpoints of a graphed run resume anywhere;
- ``train.cuda_graphs = true`` where a run cannot use graphs is a one-line recipe error.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import make_photos, tiny_recipe
from i2i.engine.cuda_graph import WARMUP_STEPS, GraphedStep, graph_blocker
from i2i.engine.trainer import Trainer
from i2i.errors import RecipeError
from i2i.recipe import load_recipe


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


@contextlib.contextmanager
def no_host_reads():
    """Make every Python-level read of a tensor's value an error, as it is during capture."""
    saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def refuse(name):
        def read(self, *args, **kwargs):
            raise AssertionError(f"the captured step calls Tensor.{name}: a host sync that breaks CUDA-graph capture")
        return read

    try:
        for name in HOST_READS:
            setattr(torch.Tensor, name, refuse(name))
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


class StandInCapture:
    """``capture(step) -> replay`` as the engine calls it, but each replay re-runs the step,
    checking that it reads nothing back to the host and keeps its carried state in place."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.captures = 0
        self.replays = 0

    def carried(self) -> dict[str, int]:
        t = self.trainer
        ids = {f"acc.{k}": id(v) for k, v in t.acc.items()}
        ids.update({f"bad.{k}": id(v) for k, v in t.bad_step.items()})
        ids.update({f"steps.{k}": id(v) for k, v in t.acc_steps.items()})
        ids["step_number"] = id(t._step_number)
        for i, optimizer in enumerate(t.optimizers()):
            ids[f"lr{i}"] = id(optimizer.param_groups[0]["lr"])
        return ids

    def __call__(self, step):
        self.captures += 1
        assert all(isinstance(o.param_groups[0]["lr"], torch.Tensor) for o in self.trainer.optimizers())
        assert all(o.param_groups[0]["capturable"] for o in self.trainer.optimizers())

        def replay():
            before = self.carried()
            with no_host_reads():
                step()
            assert self.carried() == before, "a replayed step replaced state it carries between steps"
            self.replays += 1
        return replay


def _trainer(photos: Path, out: Path, **train) -> Trainer:
    """fp32, because the tests here expect the graphed step to match the eager one bit for bit.
    Under bf16 (precision `auto` on an AMX CPU) it matches only to bf16's precision: the eager
    step caches each weight's bf16 copy, a graph cannot, and a copy used twice sums its two
    gradients in bf16 before they reach the fp32 weight."""
    recipe = load_recipe(tiny_recipe(photos, out, train={"steps": 9, "precision": "fp32", **train}), [])
    run_dir = out / "run"
    run_dir.mkdir(parents=True)
    return Trainer(recipe, run_dir, quiet=True)


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    state = {f"G.{k}": v.clone() for k, v in trainer.G.state_dict().items()}
    state.update({f"D.{k}": v.clone() for k, v in trainer.D.state_dict().items()})
    state.update({f"ema.{k}": v.clone() for k, v in trainer.ema.state_dict().items()})
    return state


def _losses(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith(("g_", "d_", "lr_")) and not k.startswith("d_acc")}
            for r in rows if r["type"] == "train"]


@pytest.mark.parametrize("ema_warmup", [False, True])  # warm-up: the decay read from the device's step number
def test_graphed_step_trains_exactly_as_the_eager_step(photos, tmp_path, ema_warmup):
    eager = _trainer(photos, tmp_path / "eager", ema_warmup=ema_warmup)
    eager.fit()

    graphed = _trainer(photos, tmp_path / "graphed", ema_warmup=ema_warmup)
    capture = StandInCapture(graphed)
    graphed.use_graphs(GraphedStep(graphed, capture=capture))
    graphed.fit()

    assert capture.captures == 1 and capture.replays == 9 - WARMUP_STEPS
    assert graphed.graphs is not None and graphed.graphs_failure is None
    expected, got = _weights(eager), _weights(graphed)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    logged, expected_logged = _losses(graphed.run_dir), _losses(eager.run_dir)
    assert len(logged) == len(expected_logged) == 9 // 2 + 1
    for row, expected_row in zip(logged, expected_logged):
        assert row == pytest.approx(expected_row, rel=1e-5)


def test_graphed_step_without_a_discriminator_and_with_generator_warmup(photos, tmp_path):
    """A D-less recipe is graphed from its first steps; with g_warmup_steps the warm-up steps
    (reconstruction only) run eagerly and the adversarial ones are graphed."""
    for name, sections in {
        "no_d": dict(discriminator=None),
        "g_warmup": dict(train={"steps": 9, "g_warmup_steps": 4}),
    }.items():
        results = []
        for graphed in (False, True):
            recipe = tiny_recipe(photos, tmp_path / name / str(graphed), **sections)
            if name == "no_d":
                recipe["losses"] = {"l1": {"weight": 1.0}}
            recipe["train"]["steps"] = 9
            recipe["train"]["precision"] = "fp32"  # bit-for-bit, as in _trainer
            (tmp_path / name / str(graphed) / "run").mkdir(parents=True)
            trainer = Trainer(load_recipe(recipe, []), tmp_path / name / str(graphed) / "run", quiet=True)
            capture = StandInCapture(trainer)
            if graphed:
                trainer.use_graphs(GraphedStep(trainer, capture=capture))
            trainer.fit()
            results.append({k: v.clone() for k, v in trainer.G.state_dict().items()})
            if graphed:
                eager_steps = WARMUP_STEPS + (4 if name == "g_warmup" else 0)
                assert capture.captures == 1 and capture.replays == 9 - eager_steps, name
        for key in results[0]:
            torch.testing.assert_close(results[1][key], results[0][key], rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")


def test_graphed_run_logs_the_health_extras_of_the_last_step(photos, tmp_path):
    """Extras are computed on every graphed step, so a log sees the latest values."""
    trainer = _trainer(photos, tmp_path / "graphed")
    trainer.use_graphs(GraphedStep(trainer, capture=StandInCapture(trainer)))
    trainer.fit()
    rows = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["type"] == "train"][-1]
    assert {"grad_norm_g", "grad_norm_d", "d_acc_real", "d_acc_fake", "diversity"} <= last.keys()
    assert last["grad_norm_g"] > 0


def test_a_step_that_cannot_be_captured_falls_back_to_eager_steps(photos, tmp_path, capsys):
    eager = _trainer(photos, tmp_path / "eager")
    eager.fit()

    def failing_capture(step):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    trainer = _trainer(photos, tmp_path / "fallback")
    trainer.use_graphs(GraphedStep(trainer, capture=failing_capture))
    trainer.fit()
    err = capsys.readouterr().err
    assert "CUDA graphs off" in err and "operation not permitted when stream is capturing" in err
    assert "more detail" not in err
    assert trainer.graphs is None and trainer.graphs_failure.startswith("RuntimeError: operation not permitted")
    assert all(not o.param_groups[0]["capturable"] and isinstance(o.param_groups[0]["lr"], float)
               for o in trainer.optimizers())
    expected, got = _weights(eager), _weights(trainer)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_checkpoint_of_a_graphed_run_resumes_without_graphs(photos, tmp_path):
    from i2i.engine import checkpoint as ckpt

    trainer = _trainer(photos, tmp_path / "graphed", steps=6)
    trainer.use_graphs(GraphedStep(trainer, capture=StandInCapture(trainer)))
    trainer.fit()
    path = ckpt.find_checkpoint(trainer.run_dir)
    state = ckpt.read_state(path)
    for name in ("optim_g", "optim_d"):
        saved = ckpt.join_state(state[name], ckpt.read_tensors(path / f"{name}.safetensors"))
        group = saved["param_groups"][0]
        assert isinstance(group["lr"], float) and group["capturable"] is False

    resumed = _trainer(photos, tmp_path / "resumed", steps=8)
    resumed.load_checkpoint(path)
    assert resumed.step == 6
    resumed.fit()
    assert resumed.step == 8


def test_graph_blocker_names_settings_that_need_the_eager_step(photos, tmp_path):
    trainer = _trainer(photos, tmp_path)
    assert "needs a CUDA GPU" in graph_blocker(trainer)
    trainer.device = torch.device("cuda")  # only what the check reads; nothing runs
    assert graph_blocker(trainer) is None
    trainer.train_cfg = {**trainer.train_cfg, "on_nonfinite": "skip"}
    assert "on_nonfinite" in graph_blocker(trainer)
    trainer.train_cfg = {**trainer.train_cfg, "on_nonfinite": "stop", "d_steps": 2}
    assert "d_steps" in graph_blocker(trainer)
    trainer.train_cfg = {**trainer.train_cfg, "d_steps": 1, "compile": True}
    assert graph_blocker(trainer) is None  # the compiled kernels are captured (measured on an H100)


def test_cuda_graphs_true_on_the_cpu_is_a_one_line_recipe_error(photos, tmp_path):
    recipe = load_recipe(tiny_recipe(photos, tmp_path, train={"cuda_graphs": True}), [])
    (tmp_path / "run").mkdir()
    with pytest.raises(RecipeError, match=r"train.cuda_graphs = true: needs a CUDA GPU .*set it to 'auto' or false"):
        Trainer(recipe, tmp_path / "run", quiet=True)


def test_cuda_graphs_true_on_the_cpu_fails_the_command_without_a_traceback(photos, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'task = {{ name = "denoise" }}\ngenerator = {{ name = "unet_small" }}\nlosses.l1 = {{ weight = 1.0 }}\n'
                      f'[data]\nsource = "{photos}"\nsize = 32\n[train]\ndevice = "cpu"\ncuda_graphs = true\n')
    result = subprocess.run([sys.executable, "-m", "i2i", "run", str(recipe), "--out", str(tmp_path / "runs")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "train.cuda_graphs = true: needs a CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cuda_graphs_takes_true_false_or_auto(photos, tmp_path):
    with pytest.raises(RecipeError, match="train.cuda_graphs"):
        load_recipe(tiny_recipe(photos, tmp_path, train={"cuda_graphs": "yes"}), [])
    for value in (True, False, "auto"):
        assert load_recipe(tiny_recipe(photos, tmp_path, train={"cuda_graphs": value}), [])["train"]["cuda_graphs"] == value
