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


@pytest.fixture(autouse=True)
def _i2i_logger_as_a_new_process_has_it():
    """A test (or a README snippet) that routes i2i's notes into logging or raises its level
    leaves the next test's messages on stderr, where it reads them."""
    import logging

    from i2i import messages

    logger = logging.getLogger("i2i")
    yield
    logger.handlers[:] = [messages.STDERR_HANDLER]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.filters[:] = []  # to_your_logging's, which leaves out the command line's "i2i: note:"
