"""train.threads: CPU training gives torch fewer threads while other programs keep cores busy
(their spinning OpenMP threads otherwise wait on the core they lost), a fixed count when the
recipe says so, and the process's own count back afterwards."""

import os
import time

import pytest
import torch

import i2i
from i2i.engine import cpu_threads
from i2i.translate import translate_files
from i2i.engine.cpu_threads import CpuSample, ThreadGovernor, others_load, read_sample, threads_for
from helpers import TINY_G2C, make_photos, tiny_recipe


@pytest.fixture
def two_threads(monkeypatch):
    """A process that starts with torch on two threads and no OMP_NUM_THREADS (conftest pins it)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


class FakeMachine:
    """/proc/stat as a program sees it: others' load and this process's use, second by second."""

    def __init__(self):
        self.busy = self.own = self.at = 0.0

    def run(self, seconds: float, others: float, own: float) -> None:
        self.busy += seconds * (others + own)
        self.own += seconds * own
        self.at += seconds

    def sample(self) -> CpuSample:
        return CpuSample(self.busy, self.own, self.at)

    def clock(self) -> float:
        return self.at


def test_other_programs_load_is_what_the_cpus_did_beyond_this_process():
    before, after = CpuSample(10.0, 4.0, 100.0), CpuSample(30.0, 12.0, 110.0)
    assert others_load(before, after) == pytest.approx(1.2)  # 20 busy s, 8 ours, over 10 s
    assert others_load(after, after) == 0.0


@pytest.mark.parametrize("others, threads", [(0.0, 2), (0.3, 2), (0.6, 1), (1.0, 1), (2.0, 1)])
def test_two_cores_keep_two_threads_unless_half_a_core_or_more_is_taken(others, threads):
    assert threads_for(2, others, most=2) == threads


def test_never_more_threads_than_torch_chose_nor_fewer_than_one():
    assert threads_for(64, 0.0, most=32) == 32
    assert threads_for(64, 40.0, most=32) == 24
    assert threads_for(4, 9.0, most=4) == 1


def test_proc_stat_counts_only_the_cpus_the_process_may_use(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  900 0 300 5000 40 0 0 0 0 0\n"
                    "cpu0 100 0 50 2000 10 0 0 0 0 0\n"
                    "cpu1 200 10 60 1000 20 5 5 20 0 0\n"
                    "cpu2 600 0 190 2000 10 0 0 0 0 0\n"
                    "intr 12345\n")
    ticks = os.sysconf("SC_CLK_TCK")
    sample = read_sample({0, 1}, str(stat))
    assert sample.busy_s == pytest.approx((150 + 300) / ticks)  # idle and iowait left out; steal counted
    assert read_sample({0}, str(tmp_path / "missing")) is None


def test_threads_drop_while_another_program_is_busy_and_come_back_after(two_threads):
    machine, notes = FakeMachine(), []
    governor = ThreadGovernor("auto", note=notes.append, sample=machine.sample, cores=2, clock=machine.clock)
    assert governor.adapting

    machine.run(5, others=0.1, own=2.0)
    governor.after_step()
    assert torch.get_num_threads() == 2 and notes == []

    machine.run(5, others=0.7, own=1.3)  # a test suite on one core beside two spinning threads
    governor.after_step()
    assert torch.get_num_threads() == 1
    assert notes == ["i2i: note: other programs are using 0.7 of the 2 CPU cores; training on 1 thread "
                     "instead of 2 while they do (train.threads = 2 keeps 2)"]

    machine.run(5, others=1.0, own=1.0)
    governor.after_step()
    assert torch.get_num_threads() == 1

    machine.run(0.5, others=0.0, own=1.0)  # within the interval: no look, whatever happened
    governor.after_step()
    assert torch.get_num_threads() == 1

    machine.run(5, others=0.0, own=1.0)  # they finished
    governor.after_step()
    assert torch.get_num_threads() == 2 and len(notes) == 1

    machine.run(5, others=1.0, own=1.0)
    governor.after_step()
    governor.close()  # the process's own count back, and no more looks
    assert torch.get_num_threads() == 2 and not governor.adapting


def test_omp_num_threads_or_a_fixed_count_is_left_alone(two_threads, monkeypatch):
    machine = FakeMachine()
    fixed = ThreadGovernor(1, sample=machine.sample, cores=2)
    assert torch.get_num_threads() == 1 and not fixed.adapting
    fixed.close()
    assert torch.get_num_threads() == 2

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    chosen = ThreadGovernor("auto", sample=machine.sample, cores=2, clock=machine.clock)
    machine.run(5, others=2.0, own=0.5)
    chosen.after_step()
    assert not chosen.adapting and torch.get_num_threads() == 2

    # a value OpenMP ignores (with its own warning) fixed nothing: 'auto' stays on, and run.json said otherwise
    for ignored in ("abc", "0", "-1", "1.5"):
        monkeypatch.setenv("OMP_NUM_THREADS", ignored)
        assert ThreadGovernor("auto", sample=machine.sample, cores=2, clock=machine.clock).adapting, ignored


def test_a_machine_without_proc_stat_trains_on_torch_s_count(two_threads, monkeypatch):
    monkeypatch.setattr(cpu_threads, "read_sample", lambda cpus, path="/proc/stat": None)
    governor = ThreadGovernor("auto", cores=2)
    governor.after_step()
    assert not governor.adapting and torch.get_num_threads() == 2


class ThreadsSeen(i2i.Callback):
    def __init__(self):
        self.seen = []

    def on_log(self, trainer, step, values):
        self.seen.append(torch.get_num_threads())


def test_a_run_trains_on_train_threads_and_gives_the_count_back(two_threads, tmp_path):
    photos = make_photos(tmp_path / "photos", count=4, size=(32, 32))
    seen = ThreadsSeen()
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"threads": 1}, output={"log_every": 1})
    i2i.train(recipe, callbacks=[seen], quiet=True)
    assert seen.seen == [1, 1, 1]
    assert torch.get_num_threads() == 2


def test_a_fixed_thread_count_far_above_the_cores_is_warned_of(monkeypatch):
    """train.threads = 1000 on 2 cores ran two steps in over 40 s (25 steps a second by default)."""
    monkeypatch.setattr(cpu_threads, "watched_cpus", lambda: {0, 1})
    notes = []
    before = torch.get_num_threads()
    try:
        ThreadGovernor(1000, note=notes.append).close()
        ThreadGovernor(4, note=notes.append).close()  # a few more than the cores: no warning
    finally:
        torch.set_num_threads(before)
    assert len(notes) == 1 and notes[0].startswith("i2i: warning: train.threads = 1000 is more than the 2 core(s) this "
                                                   "process may use")


def test_train_threads_must_be_auto_or_a_positive_count(tmp_path):
    recipe = tiny_recipe(tmp_path, tmp_path / "run", base=TINY_G2C, train={"threads": 0})
    with pytest.raises(i2i.RecipeError, match=r"train\.threads.*'auto' or an integer >= 1"):
        i2i.train(recipe, quiet=True)


@pytest.fixture
def busy_machine(two_threads, monkeypatch):
    """/proc/stat reporting one core kept busy by another program; looks due at every step."""
    monkeypatch.setattr(cpu_threads, "FIRST_INTERVAL_S", 0.0)
    monkeypatch.setattr(cpu_threads, "INTERVAL_S", 0.0)

    def sample(cpus, path="/proc/stat"):
        own = os.times()
        now = time.monotonic()
        return CpuSample(own.user + own.system + 1.0 * now, own.user + own.system, now)

    monkeypatch.setattr(cpu_threads, "read_sample", sample)


def test_a_run_beside_a_busy_core_trains_on_one_thread_and_says_so(busy_machine, tmp_path, capsys):
    photos = make_photos(tmp_path / "photos", count=4, size=(32, 32))
    seen = ThreadsSeen()
    recipe = tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, output={"log_every": 1})
    i2i.train(recipe, callbacks=[seen], quiet=True)
    assert seen.seen == [1, 1, 1]
    assert torch.get_num_threads() == 2
    assert "other programs are using 1.0 of the" in capsys.readouterr().err


def test_translating_beside_a_busy_core_runs_on_one_thread(busy_machine, tmp_path, capsys):
    photos = make_photos(tmp_path / "photos", count=4, size=(32, 32))
    run = i2i.train(tiny_recipe(photos, tmp_path / "run", base=TINY_G2C, train={"threads": 2}), quiet=True)
    model = i2i.load(run.run_dir)
    seen = []
    model.generator.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    translate_files(model, photos, tmp_path / "out", batch_size=1, progress=False)
    assert seen[0] == 2 and set(seen[1:]) == {1}  # the first look comes after the first batch
    assert "translating on 1 thread instead of 2" in capsys.readouterr().err
    assert torch.get_num_threads() == 2
