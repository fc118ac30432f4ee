"""Repository hygiene: README's commands are what CI runs; the code is lint-clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_quick_start_has_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    run, test = commands
    assert "python -m vitalcore" in run and "pytest" in test
    assert test in (ROOT / ".ci" / "run").read_text()


def _ruff() -> str | None:
    beside = Path(sys.executable).with_name("ruff")  # the environment's own ruff first
    return str(beside) if beside.exists() else shutil.which("ruff")


@pytest.mark.skipif(_ruff() is None, reason="ruff not installed (pip install '.[test]')")
def test_ruff_clean():
    dirs = [d for d in ("src", "tests", "benchmarks", "examples", "fuzz") if (ROOT / d).is_dir()]
    out = subprocess.run([_ruff(), "check", *dirs], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_generated_c_or_binaries_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    bad = [f for f in tracked.stdout.splitlines() if f.endswith((".so", ".o")) or
           (f.endswith(".c") and f.startswith("src/vitalcore/_ext/"))]
    assert not bad
