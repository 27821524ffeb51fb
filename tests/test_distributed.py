"""Distributed training: 2 CPU processes (gloo) under torchrun, on tiny recipes.

Each torchrun launch costs ~15 s here (three Python processes importing torch on shared
cores), so one launch serves several checks. Run as a script, this file is the worker that
``test_two_ranks_match_one_process_with_twice_the_batch`` starts under torchrun.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import i2i
from helpers import make_photos, tiny_recipe
from i2i.cli import cli
from i2i.engine.checkpoint import find_checkpoint
from i2i.engine.distributed import DistContext, Launch, dist_timeout, launch_environment, torchrun_command
from i2i.errors import UserError

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
LAUNCH_TIMEOUT = 240

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()) or not Path("/proc").is_dir(),
    reason="needs torch.distributed with gloo, and /proc to find the worker processes",
)


# -- launching -------------------------------------------------------------------------------------
def clean_env() -> dict[str, str]:
    """The test environment minus i2i's settings and any launcher's variables, one thread per rank."""
    launcher = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("I2I_", "SLURM_", "TORCHELASTIC_")) and k not in launcher}
    env["OMP_NUM_THREADS"] = "1"
    return env


def torchrun(args: list[str], **kwargs) -> subprocess.Popen:
    """``torchrun --standalone --nproc-per-node 2 ARGS`` (ARGS: ``-m i2i ...`` or a script)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.Popen(command, cwd=ROOT, env=clean_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
    return out, err


def write_recipe(recipe: dict, path: Path) -> Path:
    from i2i.recipe import dumps_toml

    path.write_text(dumps_toml(recipe))
    return path


def worker_pid(parent: int, rank: int) -> int:
    """The pid of the torchrun worker of ``rank`` (a child of ``parent`` with RANK=rank)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and f"RANK={rank}".encode() in environ:
            return int(entry)
    raise AssertionError(f"no worker with RANK={rank} under pid {parent}")


def checkpoint_tensors(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    ckpt = find_checkpoint(run_dir)
    return {f.name: load_file(f) for f in sorted(ckpt.glob("*.safetensors"))}


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), count=8)


# -- the worker (this file run as a script under torchrun) ----------------------------------------
def worker(recipe_file: str, dump_dir: str, mode: str = "match") -> None:
    """Train the recipe, then save this rank's parameters as ``rank{R}.safetensors``; in mode
    ``finish_on_rank1``, rank 1 alone ends the run early, with a reason, after step 2."""
    if mode == "finish_on_rank1":
        i2i.train(json.loads(Path(recipe_file).read_text()), callbacks=[FinishOnRank1()])
        return
    seen = {}

    class Keep(i2i.Callback):
        def on_run_start(self, trainer):
            seen["trainer"] = trainer

    i2i.train(json.loads(Path(recipe_file).read_text()), callbacks=[Keep(), HalveAt2()], quiet=True)
    trainer = seen["trainer"]
    nets = {"G": trainer.G, "D": trainer.D, "ema": trainer.ema}
    params = {f"{name}.{key}": p.detach().contiguous() for name, net in nets.items() if net is not None
              for key, p in net.named_parameters()}
    save_file(params, str(Path(dump_dir) / f"rank{trainer.dist.rank}.safetensors"))


# -- 2 ranks x batch b == 1 process x batch 2b ------------------------------------------------------
def no_batch_norm_recipe(photos: Path, out: Path, batch_size: int) -> dict:
    """Deterministic pairs (gray2color), no batch norm, no dropout, fp32: the batch splits exactly
    (under bf16 autocast, precision `auto` on an AMX CPU, only to bf16's precision)."""
    recipe = tiny_recipe(photos, out, train={"steps": 4, "batch_size": batch_size, "precision": "fp32"}, eval={"batch_size": 1})
    recipe["task"] = {"name": "gray2color"}
    recipe["generator"].update(norm="none", dropout=False)
    recipe["discriminator"]["norm"] = "none"
    return recipe


class HalveAt2(i2i.Callback):
    """Halves the learning rates at step 2 from on_log, which only rank 0 calls: every rank
    must go on at the halved rate, or their weights part."""

    def on_log(self, trainer, step, values):
        if step == 2:
            trainer.scale_lr(0.5)


class FinishOnRank1(i2i.Callback):
    """Calls finish_early on rank 1 only, after its step 2 (as a thread of rank 1's may)."""

    def on_run_start(self, trainer):
        if trainer.dist.rank != 1:
            return
        step = trainer.train_step

        def step_then_finish():
            step()
            if trainer.step == 1:  # counted after train_step returns: this is step 2
                trainer.finish_early("rank 1 had enough")
        trainer.train_step = step_then_finish


class BothShards(i2i.Callback):
    """Feeds a single process what two ranks draw: rank 0's batch, then rank 1's."""

    def on_run_start(self, trainer):
        from i2i.data import ImageData

        shards = [ImageData(trainer.recipe["data"], channels=trainer.task.image_channels, device=trainer.device,
                            seed=trainer.seed, rank=rank, world_size=2) for rank in range(2)]
        trainer.data.next_batch = lambda n: torch.cat([shard.next_batch(n // 2) for shard in shards])


@needs_gloo
def test_two_ranks_match_one_process_with_twice_the_batch(photos, tmp_path):
    recipe_file = tmp_path / "two.json"
    recipe_file.write_text(json.dumps(no_batch_norm_recipe(photos, tmp_path / "two", batch_size=2)))
    proc = torchrun([str(HERE), "worker", str(recipe_file), str(tmp_path)])
    one = i2i.train(no_batch_norm_recipe(photos, tmp_path / "one", batch_size=4), callbacks=[BothShards(), HalveAt2()],
                    quiet=True)
    out, err = finish(proc)
    assert proc.returncode == 0, err

    # after training, both ranks hold the very same G, D and EMA parameters
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys() and any(k.startswith("D.") for k in rank0)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    # and the same weights as one process that saw both ranks' batches at once
    two, single = checkpoint_tensors(tmp_path / "two"), checkpoint_tensors(one.run_dir)
    for name in ("generator.safetensors", "generator_ema.safetensors", "discriminator.safetensors"):
        for key, value in single[name].items():
            torch.testing.assert_close(two[name][key], value, rtol=1e-4, atol=1e-6, msg=f"{name}:{key}")
    # validation is sharded over the ranks (3 images, one per batch) and summed: same numbers
    evals = [r for r in records(tmp_path / "two") if r["type"] == "eval"]
    assert len(evals) == 1
    assert evals[0]["metrics"] == pytest.approx(one.metrics, rel=1e-4)
    assert evals[0]["baselines"].keys() == one.baselines.keys()
    for name, values in one.baselines.items():
        assert evals[0]["baselines"][name] == pytest.approx(values, rel=1e-4), name


@needs_gloo
def test_a_finish_asked_on_rank_1_ends_every_rank_and_its_reason_is_said(photos, tmp_path):
    """Rank 0 prints the run's summary: a finish_early reason given on rank 1 was left out of it."""
    recipe_file = tmp_path / "r.json"
    recipe_file.write_text(json.dumps(tiny_recipe(photos, tmp_path / "run", train={"steps": 6},
                                                  output={"progress": "none"})))
    out, err = finish(torchrun([str(HERE), "worker", str(recipe_file), str(tmp_path), "finish_on_rank1"]))
    assert "i2i: finished 2 steps of 6, ended early (rank 1 had enough)" in out, out + err
    assert find_checkpoint(tmp_path / "run").name == "step_0000002"


# -- one set of run files; a dead rank; resume ------------------------------------------------------
@needs_gloo
def test_dead_rank_stops_the_run_and_resume_matches_an_uninterrupted_run(photos, tmp_path):
    steps = 16
    base = tiny_recipe(photos, tmp_path / "runs" / "straight", train={"steps": steps})

    # an uninterrupted run through `i2i run --nproc 2`
    straight = subprocess.run([sys.executable, "-m", "i2i", "run", str(write_recipe(base, tmp_path / "straight.toml")), "--nproc", "2"],
                              cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert straight.returncode == 0, straight.stderr
    run_dir = tmp_path / "runs" / "straight"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["straight"]  # one run directory
    assert straight.stdout.count("i2i: run directory:") == 1 and "2 processes (gloo)" in straight.stdout
    logged = records(run_dir)
    assert [r["step"] for r in logged if r["type"] == "train"] == list(range(2, steps + 1, 2))  # written once
    assert [r["step"] for r in logged if r["type"] == "eval"] == [steps]
    assert len(list((run_dir / "samples").glob("*.png"))) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["BEST", "LATEST", f"step_{steps:07d}"]
    assert len(json.loads((run_dir / "split.json").read_text())["train"]) == 5  # every rank's files, by rank 0
    saved = checkpoint_tensors(run_dir)
    assert {"rank1.noise", "rank1.torch_cpu", "noise", "torch_cpu"} <= set(saved["rng.safetensors"])
    assert not torch.equal(saved["rng.safetensors"]["noise"], saved["rng.safetensors"]["rank1.noise"])
    state = json.loads((find_checkpoint(run_dir) / "state.json").read_text())
    assert state["world_size"] == 2 and set(state["ranks"]) == {"1"}

    # a long run whose rank 1 is killed: the run ends, non-zero, with a message
    long = tiny_recipe(photos, tmp_path / "runs" / "killed", train={"steps": 100000},
                       output={"checkpoint_every": 2, "log_every": 1, "progress": "plain"})
    proc = torchrun(["-m", "i2i", "run", str(write_recipe(long, tmp_path / "long.toml"))])
    for line in proc.stdout:
        if line.startswith("step 3/"):  # the checkpoint of step 2 is complete
            break
    os.kill(worker_pid(proc.pid, 1), signal.SIGKILL)
    out, err = finish(proc)
    assert proc.returncode != 0
    assert "i2i: rank 0: lost contact with the other processes" in err and "i2i run --resume" in err, err[-3000:]
    killed = tmp_path / "runs" / "killed"
    reached = json.loads((find_checkpoint(killed) / "state.json").read_text())["step"]
    assert 2 <= reached < steps, "the run went too far before the kill landed"

    # resuming on 2 ranks restores each rank's own streams: bit for bit the uninterrupted run
    proc = torchrun(["-m", "i2i", "run", "--resume", str(killed), "--set", f"train.steps={steps}"])
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert f"resuming {killed} at step {reached}" in out
    resumed = checkpoint_tensors(killed)
    assert resumed.keys() == saved.keys()
    for name in saved:
        assert saved[name].keys() == resumed[name].keys(), name
        for key in saved[name]:
            assert torch.equal(saved[name][key], resumed[name][key]), f"{name}:{key} differs"
    assert records(killed)[-1]["metrics"] == records(run_dir)[-1]["metrics"]

    # the finished 2-process run resumed in one process: half the images per step, said in numbers
    per = i2i.load_recipe(base)["train"]["batch_size"]
    one = subprocess.run([sys.executable, "-m", "i2i", "run", "--resume", str(run_dir), "--set", f"train.steps={steps + 1}"],
                         cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert one.returncode == 0, one.stderr
    assert (f"the checkpoint was written by 2 process(es), now there are 1; so each step now trains on {per} image(s) "
            f"(train.batch_size = {per} per process) where it trained on {2 * per}, at the same learning rates") in one.stderr


# -- without processes ------------------------------------------------------------------------------
def test_launch_environment_torchrun_slurm_and_plain():
    assert launch_environment({}) == Launch()
    assert launch_environment({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == Launch(3, 8, 1, "torchrun")
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0"}
    assert launch_environment(slurm) == Launch(5, 8, 1, "slurm")
    assert launch_environment({**slurm, "SLURM_STEP_NUM_TASKS": "6"}).world_size == 6
    # torchrun inside an srun step: torchrun's variables win
    assert launch_environment({**slurm, "RANK": "0", "WORLD_SIZE": "2"}).launcher == "torchrun"
    # the batch script itself (no step): a plain process, not rank 0 of 8
    batch = {"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0"}
    assert launch_environment(batch) == Launch()
    with pytest.raises(UserError, match="not integers"):
        launch_environment({"RANK": "a", "WORLD_SIZE": "2"})
    # a copied command line: trained as the second rank of a one-process world
    with pytest.raises(UserError, match=r"RANK=1, WORLD_SIZE=1, LOCAL_RANK=0: expected 0 <= RANK < WORLD_SIZE"):
        launch_environment({"RANK": "1", "WORLD_SIZE": "1"})
    # half a launcher: each process trained a run of its own, as one process, without a word
    with pytest.raises(UserError, match=r"^WORLD_SIZE=2 is set but RANK is not, so each process would train a run of "
                                        r"its own; .* to train as one process, unset WORLD_SIZE$"):
        launch_environment({"WORLD_SIZE": "2"})
    assert launch_environment({"WORLD_SIZE": "1"}) == Launch()
    with pytest.raises(UserError, match=r"SLURM_PROCID=5, SLURM_NTASKS=4"):
        launch_environment({**slurm, "SLURM_STEP_NUM_TASKS": "4"})


def test_process_group_settings():
    assert dist_timeout({}) == 300 and dist_timeout({"I2I_DIST_TIMEOUT": "30"}) == 30
    with pytest.raises(UserError, match="I2I_DIST_TIMEOUT"):
        dist_timeout({"I2I_DIST_TIMEOUT": "0"})
    assert DistContext.from_environment("cpu", {}).world_size == 1  # no launcher: nothing to join
    with pytest.raises(UserError, match="MASTER_ADDR and MASTER_PORT not set"):
        DistContext.from_environment("cpu", {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_STEP_ID": "0"})
    assert torchrun_command(4, ["run", "r.toml", "--set", "train.steps=5"], python="py") == [
        "py", "-m", "i2i.engine.torchrun", "--standalone", "--nproc-per-node", "4", "-m", "i2i", "run", "r.toml",
        "--set", "train.steps=5"]


def test_nproc_is_refused_under_a_launcher(tmp_path):
    from click.testing import CliRunner

    from i2i.cli import cli

    result = CliRunner().invoke(cli, ["run", "r.toml", "--nproc", "2"], env={"RANK": "0", "WORLD_SIZE": "2"})
    assert result.exit_code == 2 and "--nproc starts its own processes" in result.output


def test_validation_shards_are_the_single_process_batches(photos):
    from i2i.data import ImageData

    cfg = dict(i2i.load_recipe(tiny_recipe(photos, Path("unused")))["data"])
    cfg.update(val_source=str(photos), workers=0)
    whole = ImageData(cfg, channels=3, device="cpu", seed=0)
    shards = [ImageData(cfg, channels=3, device="cpu", seed=0, rank=r, world_size=3) for r in range(3)]
    expected = [(n, names) for n, _, names in whole.indexed_val_batches(16, 3)]
    got = sorted((n, names) for shard in shards for n, _, names in shard.indexed_val_batches(16, 3, shard=True))
    assert got == expected and len(expected) == 3
    assert [n for n, _, _ in shards[1].indexed_val_batches(16, 3, shard=True)] == [1]
    assert sum(len(s.train_files) for s in shards) == len(whole.train_files)  # training files: disjoint shards


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(*sys.argv[2:])


def test_nproc_mistakes_are_one_line_before_any_process_starts(photos, tmp_path):
    """A crop the generator cannot take was printed by each rank, then torchrun's report (status 1)."""
    recipe = write_recipe(tiny_recipe(photos, tmp_path / "run"), tmp_path / "r.toml")
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    shutil.copy(next(photos.iterdir()), tmp_path / "one")
    for override, said in (("data.size=9", "needs a multiple of"), ("data.source=/nowhere/photos", "no such folder"),
                           (f"data.val_source={tmp_path / 'empty'}", "no images in this folder"),
                           (f"data.source={tmp_path / 'one'}", "1 training image(s) cannot feed 2 processes"),
                           ("train.sync_bn=true", "synchronised batch norm needs CUDA GPUs")):  # validate passes it
        result = CliRunner().invoke(cli, ["run", str(recipe), "--nproc", "2", "--set", override])
        assert result.exit_code == 2 and result.output.count("\n") == 1 and said in result.output, result.output
    assert not (tmp_path / "run").exists()
    # a resume of a run already trained to its steps: said once, with the --nproc to train longer with
    run_dir = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 1}), quiet=True).run_dir
    result = CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "--nproc", "2"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert f"already trained to step 1 of train.steps = 1; to train longer: i2i run --resume {run_dir} --nproc 2 " \
           "--set train.steps=N" in result.output
    # a run another process is training: one line before torchrun starts (a worker said it, then torchrun's
    # report, status 130); and a run folder that is not there is named as such, not as a missing recipe
    import fcntl
    import os

    held = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "--nproc", "2", "--set", "train.steps=2"])
    finally:
        os.close(held)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "another i2i process is training this run now" in result.output
    result = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path / "nope"), "--nproc", "2"])
    assert result.exit_code == 2 and result.output == f"i2i: error: {tmp_path / 'nope'}: no such run folder; pass the " \
                                                      "folder a run was written to\n"


@pytest.mark.parametrize("command", ["translate", "eval"])
def test_translate_and_eval_refuse_several_processes(tmp_path, command):
    """Under torchrun every rank did all the work, replacing each other's files in --out."""
    args = [command, str(tmp_path), *([str(tmp_path), "--out", str(tmp_path / "o")] if command == "translate" else [])]
    result = CliRunner().invoke(cli, args, env={"WORLD_SIZE": "2", "RANK": "0"})
    assert result.exit_code == 2 and f"i2i {command} runs as one process" in result.output


def test_resuming_with_another_number_of_processes_does_not_claim_the_photos_changed(photos, capsys):
    """Each rank compared its own shard's size with the checkpoint's (another shard's)."""
    from i2i.data import ImageData
    from i2i.recipe import SCHEMA

    cfg = {key: field.default for key, field in SCHEMA["data"].items()}
    cfg.update(source=str(photos), size=16, workers=0, val_fraction=0.0)
    two = ImageData(cfg, channels=3, device="cpu", seed=0, rank=0, world_size=2)
    one = ImageData(cfg, channels=3, device="cpu", seed=0)
    capsys.readouterr()
    one.load_state_dict(two.state_dict())
    assert "training images" not in capsys.readouterr().err


class SignalDuringAgreement(i2i.Callback):
    """A stop signal that arrives while the ranks agree on stopping (where a rank spends most of
    its waiting): the handler's request lands after this rank's flag went into the all-reduce."""

    def on_run_start(self, trainer):
        agree_each = trainer.dist.agree_each

        def agree_while_signalled(flags):
            agreed = agree_each(flags)
            if trainer.step == 2:
                trainer.request_stop()  # as the signal handler does, before the agreed flags come back
            return agreed

        trainer.dist.agree_each = agree_while_signalled


def test_a_stop_signalled_during_the_ranks_agreement_is_not_lost(photos, tmp_path):
    """The agreed 'no stop' was assigned over the handler's request: the run trained to the end
    (2 of 9 signalled `--nproc 2` runs here did)."""
    with pytest.raises(i2i.TrainingStopped, match="stopped at step 3/8; checkpoint saved"):
        i2i.train(tiny_recipe(photos, tmp_path / "run"), callbacks=[SignalDuringAgreement()], quiet=True)


#: Stands in for torchrun: starts two workers once told to ("go"), and waits for them. Rank 0
#: stops as asked on SIGTERM; rank 1 never gets to act on it (as inside torch's rendezvous).
FAKE_TORCHRUN = r"""
import os, subprocess, sys, time
from pathlib import Path

folder = Path(os.environ["I2I_NPROC_FOLDER"])
deadline = time.monotonic() + 60  # an interrupted test leaves no process behind
while not (folder / "go").exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.01)
WORKER = '''
import os, signal, sys, time
from i2i.engine.distributed import announce_worker, exit_status_for_launcher

def stop(signum, frame):
    if os.environ["RANK"] == "0":
        sys.exit(exit_status_for_launcher(1))

announce_worker()
signal.signal(signal.SIGTERM, stop)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(3)
'''
ranks = [subprocess.Popen([sys.executable, "-c", WORKER], env={**os.environ, "RANK": str(r)}) for r in range(2)]
sys.exit(max(abs(r.wait()) for r in ranks))
"""


def test_nproc_passes_signals_to_the_workers_and_ends_stragglers(monkeypatch, tmp_path, capfd):
    """The launcher's signal goes to each worker once it can take it (torchrun, told itself, killed
    workers still saving after 30 s and printed a traceback); a worker stopped as asked exits 0
    and leaves its status; one that cannot stop is ended a grace period after the first stopped."""
    import tempfile
    import threading

    from i2i.engine import distributed

    script = tmp_path / "fake_torchrun.py"
    script.write_text(FAKE_TORCHRUN)
    monkeypatch.setattr(distributed, "torchrun_command", lambda nproc, args: [sys.executable, str(script)])
    monkeypatch.setattr(distributed, "STOPPED_GRACE_S", 1.0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    before = signal.getsignal(signal.SIGTERM)

    def signal_then_start_the_workers():
        # once the launcher passes signals on (the default handler would end pytest)
        while signal.getsignal(signal.SIGTERM) is before or not (folders := list(tmp_path.glob("i2i-nproc-*"))):
            threading.Event().wait(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # a job scheduler ends the launcher before the workers are up
        (folders[0] / "go").write_text("")

    threading.Thread(target=signal_then_start_the_workers, daemon=True).start()
    assert distributed.run_local(2, ["run", "r.toml"]) == 1  # rank 0's status, not torchrun's
    assert "i2i: rank 1 had not stopped 1 s after the first rank did; ended" in capfd.readouterr().err
    assert not list(tmp_path.glob("i2i-nproc-*"))  # the launcher's folder is removed


class _Ranks:
    is_distributed = True
    is_main = False


class _StoppableTrainer:
    dist = _Ranks()
    asked = 0

    def request_stop(self):
        self.asked += 1


@pytest.mark.parametrize("launcher_folder, second_counts", [("set", True), ("", False)])
def test_a_second_ctrl_c_right_away_stops_nproc_workers_at_once(monkeypatch, launcher_folder, second_counts):
    """`--nproc` passes each Ctrl-C on once, so a second one within 2 s is a real second press (it
    was taken for torchrun's echo of the first and ignored); under torchrun run by hand it is the
    echo, and the run still finishes its step and saves."""
    from i2i.engine.distributed import LAUNCHER_FOLDER_VARIABLE
    from i2i.engine.run import _stop_on_signals
    from i2i.errors import SecondInterrupt

    monkeypatch.setenv(LAUNCHER_FOLDER_VARIABLE, launcher_folder)
    trainer = _StoppableTrainer()
    with _stop_on_signals(trainer):
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        assert trainer.asked == 1
        if second_counts:
            with pytest.raises(SecondInterrupt):
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        else:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    assert trainer.asked == 1


def test_the_launcher_folder_changes_nothing_outside_nproc(monkeypatch):
    """Under torchrun run by hand (no launcher folder) a stopped worker keeps its exit status and
    its signal handlers."""
    from i2i.engine.distributed import LAUNCHER_FOLDER_VARIABLE, announce_worker, exit_status_for_launcher

    monkeypatch.delenv(LAUNCHER_FOLDER_VARIABLE, raising=False)
    before = signal.getsignal(signal.SIGTERM)
    announce_worker()
    assert exit_status_for_launcher(1) == 1 and signal.getsignal(signal.SIGTERM) is before


@needs_gloo
def test_a_signalled_nproc_run_stops_with_a_checkpoint_and_i2is_lines_only(photos, tmp_path):
    """SIGTERM to `i2i run --nproc 2`: every worker finishes its step and rank 0 saves; torchrun's
    own warnings, its SignalException traceback and its failure report are gone."""
    recipe = tiny_recipe(photos, tmp_path / "run", train={"steps": 100000},
                         output={"log_every": 1, "progress": "plain", "checkpoint_every": 0})
    proc = subprocess.Popen([sys.executable, "-m", "i2i", "run", str(write_recipe(recipe, tmp_path / "r.toml")), "--nproc", "2"],
                            cwd=ROOT, env=clean_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stdout:
        if line.startswith("step 2/"):
            break
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc)
    assert proc.returncode == 1, err
    stopped = json.loads((find_checkpoint(tmp_path / "run") / "state.json").read_text())["step"]
    assert 2 <= stopped < 100000
    assert f"stopped at step {stopped}/100000; checkpoint saved" in err and "--nproc 2" in err
    for torchrun_noise in ("Traceback", "SignalException", "ChildFailedError", "closing signal"):
        assert torchrun_noise not in err
    # run.json records the command typed (the workers' own leave --nproc out) and how many processes trained
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["command"][-2:] == ["--nproc", "2"] and info["processes"] == 2


class TwoRanks:
    """A rank's view of a 2-process launch whose other rank was given ``theirs``."""

    is_distributed, rank = True, 0

    def __init__(self, theirs):
        self.theirs = theirs

    def all_gather_object(self, obj):
        return [obj, self.theirs]


def test_ranks_started_with_different_recipes_are_refused(photos, tmp_path):
    """Ranks started by hand with different --sets trained silently with different batch sizes."""
    from i2i.engine.run import RANK_OWN_KEYS, _check_ranks_agree, _flat
    from i2i.recipe import load_recipe

    def compared(recipe):
        return {key: value for key, value in _flat(recipe).items() if key not in RANK_OWN_KEYS}

    recipe = load_recipe(tiny_recipe(photos, tmp_path / "run"))
    mine = compared(recipe)
    theirs = compared(load_recipe(tiny_recipe(photos, tmp_path / "elsewhere", train={"batch_size": 8})))
    with pytest.raises(UserError, match=r"rank 1 was given another recipe than rank 0: train.batch_size = 8 there, 2 here"):
        _check_ranks_agree(TwoRanks((theirs, False)), recipe, None)
    with pytest.raises(UserError, match="rank 1 resumes a run and rank 0 does not"):
        _check_ranks_agree(TwoRanks((mine, True)), recipe, None)
    _check_ranks_agree(TwoRanks((mine, False)), recipe, None)  # the same recipe, another output folder: fine


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_torchrun_is_ended_when_the_nproc_launcher_is_killed(tmp_path):
    """`kill -9` of `i2i run --nproc` left torchrun and its workers training on, in a session of
    their own, out of sight; torchrun now gets SIGTERM, which it passes to the workers."""
    import threading
    import time

    parent = ("import subprocess, sys, time\n"
              "from i2i.engine.distributed import _terminated_with_parent\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True,\n"
              "                         preexec_fn=_terminated_with_parent)\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(120)\n")
    launcher = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    child = int(launcher.stdout.readline())
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return  # ended (and reaped by init)
        try:  # a zombie until init reaps it: ended all the same
            with open(f"/proc/{child}/stat") as stat:
                if stat.read().split()[2] == "Z":
                    return
        except FileNotFoundError:
            return
        threading.Event().wait(0.05)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the launcher's child outlived it")


def test_nproc_removes_the_folders_of_launchers_killed_with_sigkill(monkeypatch, tmp_path):
    """A launcher ended by kill -9 cannot remove its folder; the next one removes it, and leaves
    alone those of launchers still running."""
    import subprocess
    import tempfile

    from i2i.engine import distributed

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    killed = tmp_path / f"i2i-nproc-{ended.pid}-abc"
    running = tmp_path / f"i2i-nproc-{os.getpid()}-def"
    unrelated = tmp_path / "i2i-nproc-notapid"
    for folder in (killed, running, unrelated):
        folder.mkdir()
        (folder / "pid-rank0").write_text("1")
    distributed._remove_folders_of_ended_launchers()
    assert not killed.exists()
    assert running.exists() and unrelated.exists()


@needs_gloo
def test_nproc_fine_tunes_with_notes_said_once_and_resumes_without_the_source(photos, tmp_path):
    source = i2i.train(tiny_recipe(photos, tmp_path / "source", train={"steps": 2}), quiet=True).run_dir
    (find_checkpoint(source).parent / "LATEST").write_text("gone")  # a note: the newest complete one is used
    tuned = tiny_recipe(photos, tmp_path / "tuned", train={"steps": 2, "init_from": str(source)},
                        discriminator={"n_layers": 2})
    recipe = write_recipe(tuned, tmp_path / "tuned.toml")
    run = [sys.executable, "-m", "i2i", "run"]
    started = subprocess.run([*run, str(recipe), "--nproc", "2"], cwd=ROOT, env=clean_env(), capture_output=True,
                             text=True, timeout=LAUNCH_TIMEOUT)
    assert started.returncode == 0, started.stderr
    assert started.stderr.count("so the discriminator starts from its initialisation") == 1, started.stderr
    assert started.stderr.count("checkpoints/LATEST names") == 1, started.stderr
    shutil.rmtree(source)  # neither the launcher's checks nor the processes read it on a resume
    resumed = subprocess.run([*run, "--resume", str(tmp_path / "tuned"), "--nproc", "2", "--set", "train.steps=3"],
                             cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr


def test_the_line_after_a_second_ctrl_c_names_the_runs_processes(photos, tmp_path):
    """'resumes from step_N: i2i run --resume RUN' left out --nproc: followed, it resumed on one
    process, with other shards and random streams."""
    from i2i.engine.run import _what_resumes

    run_dir = i2i.train(tiny_recipe(photos, tmp_path / "run", train={"steps": 1}), quiet=True).run_dir
    assert _what_resumes(run_dir, 2) == (f"{run_dir} resumes from step_0000001: i2i run --resume {run_dir} --nproc 2 "
                                         "(or as many processes under your launcher)")
    assert _what_resumes(run_dir).endswith(f"i2i run --resume {run_dir}")


#: Stands in for torchrun whose workers have stopped and saved, then take their time to exit
#: (the interpreter's teardown); a worker that exits non-zero gets torchrun's traceback.
SLOW_EXIT_TORCHRUN = r'''
import os, subprocess, sys
WORKER = """
import signal, sys, time
from i2i.engine.distributed import announce_worker, exit_status_for_launcher

announce_worker()
signal.signal(signal.SIGTERM, lambda signum, frame: exit_status_for_launcher(1))  # saved; ignores more signals
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(0)
"""
ranks = [subprocess.Popen([sys.executable, "-c", WORKER], env={**os.environ, "RANK": str(r)}) for r in range(2)]
codes = [r.wait() for r in ranks]
if any(codes):
    print("Traceback (most recent call last): ChildFailedError", file=sys.stderr)
sys.exit(1 if any(codes) else 0)
'''


def test_a_second_ctrl_c_while_saved_workers_exit_ends_them_quietly(monkeypatch, tmp_path, capfd):
    """After 'checkpoint saved' the workers took seconds to exit, and a second Ctrl-C then ended
    them by SIGINT: torchrun's traceback and failure report, for a run whose checkpoint was fine."""
    import tempfile
    import threading
    import time

    from i2i.engine import distributed

    script = tmp_path / "slow_exit_torchrun.py"
    script.write_text(SLOW_EXIT_TORCHRUN)
    monkeypatch.setattr(distributed, "torchrun_command", lambda nproc, args: [sys.executable, str(script)])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = signal.getsignal(signal.SIGTERM)

    def files(kind):
        return [f for folder in tmp_path.glob("i2i-nproc-*") for f in folder.glob(f"{kind}-rank*")]

    def stop_then_press_again():
        while signal.getsignal(signal.SIGTERM) is before or len(files("pid")) < 2:
            threading.Event().wait(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # both workers save and leave their status
        while len(files("status")) < 2:
            threading.Event().wait(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=stop_then_press_again, daemon=True).start()
    start = time.monotonic()
    assert distributed.run_local(2, ["run", "r.toml"]) == 1  # stopped with a checkpoint, as the workers said
    assert time.monotonic() - start < 30  # not the workers' minute of exiting
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("exitcode, status, said", [
    (2, 2, ""),  # the worker printed its one-line error: its status is the command's, as in one process
    (-9, 1, "i2i: error: rank 1 was ended by SIGKILL without a word (the out-of-memory killer, or a kill from "
            "outside); the other ranks were stopped with it\n"),
])
def test_nproc_says_a_failed_worker_in_its_own_words_not_torchruns(monkeypatch, capfd, exitcode, status, said):
    """A rank's user error was followed by torchrun's traceback, failure report and 'closing
    signal' lines (some 40 lines), and the status was torchrun's 1 rather than the error's 2."""
    import torch.distributed.run
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from i2i.engine import torchrun

    def failed(argv):
        raise ChildFailedError("i2i", {1: ProcessFailure(local_rank=1, pid=123, exitcode=exitcode, error_file="")})

    monkeypatch.setattr(torch.distributed.run, "main", failed)
    assert torchrun.main(["--standalone"]) == status
    assert capfd.readouterr().err == said
