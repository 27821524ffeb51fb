"""GAN-health warnings: each problem is named once, after it persists, on stderr even when quiet."""

import pytest

import i2i
from i2i.engine.health import HealthMonitor
from helpers import make_photos, tiny_recipe

HEALTHY = {"d_acc_real": 0.7, "d_acc_fake": 0.6, "grad_norm_g": 1.0, "grad_norm_d": 0.5, "diversity": 0.8}


def logs(monitor, values, count, start=0):
    """Feed ``count`` logged steps of ``values``; return the warnings, in order."""
    found = []
    for step in range(start, start + count):
        found += monitor.check(step, {**HEALTHY, **values})
    return found


def test_a_winning_discriminator_is_named_once_after_five_logs_in_a_row():
    monitor = HealthMonitor()
    assert logs(monitor, {"d_acc_real": 0.99, "d_acc_fake": 0.99}, HealthMonitor.PATIENCE - 1) == []
    assert logs(monitor, {}, 1) == []  # a healthy log breaks the streak
    assert logs(monitor, {"d_acc_real": 0.99, "d_acc_fake": 0.99}, HealthMonitor.PATIENCE - 1) == []
    warnings = logs(monitor, {"d_acc_real": 0.99, "d_acc_fake": 0.99}, 10)
    assert len(warnings) == 1 and "discriminator tells real from fake" in warnings[0] and "train.d.lr" in warnings[0]


def test_exploding_gradients_are_named_at_once_and_per_network():
    monitor = HealthMonitor()
    warnings = logs(monitor, {"grad_norm_d": float("inf")}, 3)
    assert len(warnings) == 1 and "discriminator gradients are exploding" in warnings[0]
    assert "train.d.clip_grad_norm" in warnings[0]
    warnings = logs(monitor, {"grad_norm_g": 3e4}, 1)
    assert len(warnings) == 1 and "generator gradients are exploding" in warnings[0]


def test_vanishing_gradients_and_collapse_are_named_once_they_persist():
    monitor = HealthMonitor()
    warnings = logs(monitor, {"grad_norm_g": 1e-9, "diversity": 0.01}, HealthMonitor.PATIENCE + 3)
    assert len(warnings) == 2
    assert "generator gradients have vanished" in warnings[0] and "mode collapse" in warnings[1]


def test_health_warnings_reach_stderr_in_a_quiet_run(tmp_path, monkeypatch, capsys):
    photos = make_photos(tmp_path / "photos")
    monkeypatch.setattr(HealthMonitor, "PATIENCE", 1)
    # a stuck discriminator: every logged step reports it perfect
    monkeypatch.setattr(HealthMonitor, "check", _with_perfect_d(HealthMonitor.check))
    i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 4}), quiet=True)
    out, err = capsys.readouterr()
    assert err.count("i2i: warning: step 2: the discriminator tells real from fake almost perfectly") == 1
    assert "discriminator" not in out


def _with_perfect_d(check):
    def perfect(self, step, values):
        return check(self, step, {**values, "d_acc_real": 1.0, "d_acc_fake": 1.0})
    return perfect


@pytest.mark.parametrize("has_discriminator", [True, False])
def test_exploding_generator_gradients_name_the_discriminators_rate_only_when_there_is_one(has_discriminator):
    """G's adversarial gradient comes back through D, so a train.d.lr too high shows as G's
    gradients exploding; the hint named only train.g.lr."""
    values = {"grad_norm_g": 3e4, **({"lr_d": 2e-4} if has_discriminator else {})}
    warnings = logs(HealthMonitor(), values, 1)
    assert len(warnings) == 1 and "lower train.g.lr" in warnings[0]
    assert ("train.d.lr" in warnings[0]) is has_discriminator
