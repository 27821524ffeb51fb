"""fp16 loss scaling: one scaler per network, each updated once per its own step, checkpointed.

fp16 needs a GPU, so these tests drive the same code path on the CPU with CPU loss scalers
(torch.amp.GradScaler("cpu")) put in place of the ones a GPU run builds.
"""

import json

import pytest
import torch

from i2i.engine.checkpoint import find_checkpoint
from i2i.engine.trainer import Trainer
from i2i.recipe import load_recipe
from helpers import make_photos, rewrite_checkpoint_file, tiny_recipe


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


def _trainer(photos, out, steps):
    recipe = load_recipe(tiny_recipe(photos, out, train={"steps": steps, "ema": 0.0}), [])
    run_dir = out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(recipe, run_dir, quiet=True)
    assert trainer.scalers is None  # fp32 on the CPU: no loss scaling
    # every update without an overflow doubles the scale, so the scale counts the updates
    trainer.scalers = {"g": torch.amp.GradScaler("cpu", init_scale=2.0**4, growth_interval=1),
                       "d": torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=1)}
    return trainer


def test_each_network_has_its_own_loss_scale_updated_once_per_step(photos, tmp_path):
    trainer = _trainer(photos, tmp_path, steps=3)
    trainer.fit()
    assert trainer.step == 3
    # one update per step for each network (a shared scaler would have been updated six times)
    assert trainer.scalers["g"].get_scale() == 2.0 ** (4 + 3)
    assert trainer.scalers["d"].get_scale() == 2.0 ** (8 + 3)
    assert all(torch.isfinite(p).all() for p in trainer.G.parameters())


def test_loss_scales_are_checkpointed_and_restored(photos, tmp_path):
    trainer = _trainer(photos, tmp_path, steps=2)
    trainer.fit()
    checkpoint = find_checkpoint(tmp_path / "run")
    saved = json.loads((checkpoint / "state.json").read_text())["scalers"]
    assert saved["g"]["scale"] == 2.0**6 and saved["d"]["scale"] == 2.0**10

    resumed = _trainer(photos, tmp_path, steps=4)
    resumed.load_checkpoint(checkpoint)
    assert resumed.scalers["g"].get_scale() == 2.0**6 and resumed.scalers["d"].get_scale() == 2.0**10


def test_a_checkpoint_with_one_shared_scaler_restores_both(photos, tmp_path):
    trainer = _trainer(photos, tmp_path, steps=1)
    trainer.fit()
    checkpoint = find_checkpoint(tmp_path / "run")
    state = json.loads((checkpoint / "state.json").read_text())
    state["scaler"] = state.pop("scalers")["g"]  # as checkpoints before per-network scalers held it
    rewrite_checkpoint_file(checkpoint / "state.json", json.dumps(state))

    resumed = _trainer(photos, tmp_path, steps=4)
    resumed.load_checkpoint(checkpoint)
    assert resumed.scalers["g"].get_scale() == resumed.scalers["d"].get_scale() == 2.0**5
