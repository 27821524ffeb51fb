"""Shared test set-up: only i2i's own plugins load, and nothing waits on stdin."""

import os

# Installed third-party plugins must not change test results (see README, "Plugins").
os.environ["I2I_LOAD_PLUGINS"] = ""
os.environ.setdefault("I2I_STRICT_PLUGINS", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

# train.threads = 'auto' trains on fewer threads while other programs load the cores, which
# changes the last bits of the gradients; tests that compare runs bit for bit pin the count
# (tests/test_cpu_threads.py unpins it where it tests that behaviour).
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _fresh_plugins():
    """Each test sees the plugins as a new process would, and may register its own."""
    from i2i import plugins

    plugins.reset()
    yield
    plugins.reset()
