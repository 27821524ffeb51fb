"""Every command and snippet the README shows runs as shown (training made short)."""

import re
import shlex
import shutil
import types

import pytest

from helpers import make_pairs, make_photos
from plugin_env import ROOT, run_i2i

README = (ROOT / "README.md").read_text()
# Appended to every `i2i run` so the README's jobs finish in seconds; later --set wins.
FAST = ["--set", "train.steps=2", "--set", "train.batch_size=2", "--set", "eval.max_images=1", "--set", "eval.crop=64"]


def console_commands() -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", README, re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def expected_outputs() -> dict[str, str]:
    """Commands whose output the README shows right below them."""
    out = {}
    for block in re.findall(r"```console\n(.*?)```", README, re.S):
        lines = block.strip().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ ") and i + 1 < len(lines) and not lines[i + 1].startswith("$ "):
                out[line[2:]] = lines[i + 1]
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "recipes", work / "recipes")
    make_photos(work / "my_photos", count=2, size=(80, 72))  # above gray2color's 64 px crops: the README trains on them
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):  # the reference's facades, as A|B pairs
        make_pairs(work / "facades" / split, count=2, seed=seed)
    make_photos(work / "my_labels", count=2, size=(40, 36), seed=3)
    for side, seed in (("noisy", 4), ("clean", 5)):  # pairs across two folders (recipes/real-pairs.toml)
        make_photos(work / "pairs" / side, count=3, size=(150, 136), seed=seed)
        make_photos(work / "test" / side, count=2, size=(40, 36), seed=seed + 2)
    return work


def test_readme_shows_the_quick_start():
    commands = console_commands()
    assert commands[:3] == ['pip install -e ".[dev]"', "i2i run recipes/gray2color.toml", "pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in ci and "\npytest\n" in ci


def test_every_readme_command_runs(workdir):
    expected = expected_outputs()
    for command in console_commands():
        args = shlex.split(command)
        if args[0] in ("pip", "pytest"):
            continue  # what CI itself runs (.ci/run)
        assert args[0] == "i2i", command
        args = args[1:]
        if args[0] == "run":
            args += FAST
        result = run_i2i(args, cwd=workdir)
        if command in expected and expected[command].startswith("i2i: note: "):  # a note above what it prints
            assert result.returncode == 0 and result.stderr.strip() == expected[command], command
        elif command in expected:
            assert result.returncode == 2, command
            assert (result.stdout + result.stderr).strip() == expected[command]
        else:
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    assert len(list((workdir / "coloured").glob("*.png"))) == 2
    assert len(list((workdir / "my_facades").glob("*.png"))) == 2


def test_every_readme_python_snippet_runs(workdir, monkeypatch):
    import torch

    monkeypatch.chdir(workdir)
    from PIL import Image

    Image.new("RGB", (37, 29), (120, 80, 40)).save(workdir / "photo.jpg")
    Image.new("RGBA", (20, 16), (200, 30, 60, 128)).save(workdir / "logo.png")
    snippets = re.findall(r"```python\n(.*?)```", README, re.S)
    assert snippets
    for snippet in snippets:
        snippet = snippet.replace('"train.steps=20"', '"train.steps=2", "eval.max_images=1"')
        namespace = {"images": torch.rand(2, 3, 24, 40), "my_module": types.ModuleType("my_module")}
        exec(compile(snippet, "README.md", "exec"), namespace)
