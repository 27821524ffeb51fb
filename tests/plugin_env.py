"""Helpers to "install" plugin distributions into a temporary folder and run i2i there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_distribution(site: Path, dist: str, version: str, entry_points: dict[str, str], files: dict[str, str]) -> None:
    """Write module files and a ``*.dist-info`` with an ``i2i`` entry-point group into ``site``."""
    for rel, text in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[i2i]\n{lines}\n")


def run_i2i(args: list[str], site: Path | None = None, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run ``python -m i2i ARGS`` in a subprocess that sees the plugins in ``site``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("I2I_")}
    if site is not None:
        environ["PYTHONPATH"] = os.pathsep.join([str(site), environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "i2i", *args], capture_output=True, text=True, cwd=cwd, env=environ, timeout=timeout)


def doc_files(markdown: Path) -> dict[str, str]:
    """The fenced code blocks preceded by ``<!-- file: PATH -->`` in a Markdown file."""
    text = markdown.read_text()
    return {m[1]: m[2] for m in re.finditer(r"<!-- file: (\S+) -->\s*```\w*\n(.*?)```", text, re.S)}
