"""Every command docs/distributed.md shows parses as shown, and the launch it describes is the one i2i makes.

The real multi-process runs are in ``test_distributed.py``; here nothing starts a second process
except the rendezvous failure, which one process shows alone (a few seconds).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import i2i
from i2i.cli import cli
from i2i.engine import distributed
from i2i.engine.distributed import torchrun_command
from plugin_env import ROOT

DOC = (ROOT / "docs" / "distributed.md").read_text()


def bash_lines() -> list[str]:
    """The commands of the page's ``bash`` blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", DOC, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def i2i_args(words: list[str]) -> list[str]:
    """Parse ``i2i ARGS`` as the command line would (options, choices, subcommand); returns ARGS."""
    with click.Context(cli) as ctx:
        name, command, rest = cli.resolve_command(ctx, words)
        command.make_context(name, rest, parent=ctx)
    return words


def test_torchrun_commands_parse_and_run_i2i():
    from torch.distributed.run import get_args_parser

    commands = [line for line in bash_lines() if "torchrun" in line.split()[:2]]
    assert len(commands) == 2
    for line in commands:
        words = shlex.split(line)
        words = words[words.index("torchrun") + 1:]
        args = get_args_parser().parse_args(words)
        assert args.module and args.training_script == "i2i", line
        assert args.training_script_args[0] == "run"
        i2i_args(args.training_script_args)


def test_nproc_commands_start_the_documented_torchrun(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    shutil.copy(ROOT / "recipes" / "color2gray.toml", tmp_path / "recipe.toml")
    monkeypatch.chdir(tmp_path)
    launched = []
    monkeypatch.setattr(distributed, "run_local", lambda nproc, args: launched.append((nproc, args)) or 0)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_ID"):
        monkeypatch.delenv(name, raising=False)
    # the run the documented resume continues, stopped part-way: --nproc checks it has a
    # checkpoint and steps left to train before launching
    class StopAfterOneStep(i2i.Callback):
        def on_log(self, trainer, step, values):
            trainer.request_stop()

    with pytest.raises(i2i.TrainingStopped):
        i2i.train("recipes/gray2color.toml", out="runs/gray2color", quiet=True, callbacks=[StopAfterOneStep()],
                  overrides=["train.steps=3", "output.log_every=1", "data.size=32", "eval.crop=32", "eval.max_images=1",
                             "train.device='cpu'"])

    inline = re.findall(r"`(i2i run [^`]*--nproc [^`]*)`", DOC)
    commands = [line for line in bash_lines() if line.startswith("i2i ")] + inline
    assert len(commands) == 3
    for command in commands:
        words = shlex.split(command)[1:]
        result = CliRunner().invoke(cli, words)
        assert result.exit_code == 0, f"{command}\n{result.output}"
        nproc = int(words[words.index("--nproc") + 1])
        rest = words[:words.index("--nproc")] + words[words.index("--nproc") + 2:]
        assert launched.pop() == (nproc, rest)  # the same command minus --nproc, in N processes
        assert launched == []

    documented = re.search(r"`(python -m i2i\.engine\.torchrun [^`]*) -m i2i run \.\.\.`", DOC)[1].split()
    assert torchrun_command(4, ["run"], python="python")[:len(documented)] == [w.replace("N", "4") for w in documented]


def test_slurm_script_is_valid_bash_and_runs_i2i():
    script = re.search(r"```bash\n(#!/bin/bash\n.*?)```", DOC, re.S)[1]
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    runs = [line for line in script.splitlines() if line.strip().startswith("srun")]
    assert len(runs) == 2
    for line in runs:
        words = shlex.split(line.strip().replace('"$RUN"', "/shared/runs/gray2color"))
        assert words[words.index("python"):][:3] == ["python", "-m", "i2i"]
        i2i_args(words[words.index("python") + 3:])
    source = (ROOT / "i2i" / "engine" / "distributed.py").read_text()
    table = DOC.split("## Environment variables", 1)[1].split("##", 1)[0]
    for variable in re.findall(r"`([A-Z_]+)`", table):
        assert f'"{variable}"' in source or f"'{variable}'" in source, variable


def test_a_rank_that_cannot_join_says_where_in_one_line(tmp_path):
    """docs: 'Rendezvous fails after the same timeout with could not join the other N process(es) at
    MASTER_ADDR:MASTER_PORT'."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("I2I_", "SLURM_", "TORCHELASTIC_"))}
    env.update(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               I2I_DIST_TIMEOUT="1", I2I_LOAD_PLUGINS="")
    result = subprocess.run([sys.executable, "-m", "i2i", "run", str(ROOT / "recipes" / "color2gray.toml"),
                             "--set", "train.device='cpu'", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("i2i: error:")]
    assert errors == [f"i2i: error: rank 1: could not join the other 1 process(es) at 127.0.0.1:{port} within 1 s "
                      + errors[0].split(" within 1 s ", 1)[1]]
    assert "check MASTER_ADDR/MASTER_PORT" in errors[0]
    assert result.stderr.splitlines() == errors  # torch's C++ retry messages and stack frames held back
    assert not (tmp_path / "run").exists()
