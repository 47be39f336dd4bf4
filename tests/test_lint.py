"""The habits of issue 22: ruff (lint and format) over the whole tree and mypy over the layers
that hold the logic (models/, audits/, data_contracts/), configured in pyproject.toml. They run
as processes, so they are marked e2e like `mkdocs build` (tests/test_docs.py): the full suite,
what CI runs, runs them; `ruff check . && ruff format --check . && mypy` runs them by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint_passes():
    r = _run("ruff", "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_is_applied():
    r = _run("ruff", "format", "--check", ".")
    assert r.returncode == 0, "run `ruff format .`:\n" + r.stdout + r.stderr


def test_mypy_passes_on_models_audits_and_data_contracts():
    r = _run("mypy")  # the folders: [tool.mypy] files in pyproject.toml
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found" in r.stdout


def test_the_checks_can_fail(tmp_path):
    """The same commands on a file with an unused import, bad formatting and a type error fail:
    the tests above would see a regression."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\ndef f(x: int) -> str:\n    return x\n", encoding="utf-8")
    assert _run("ruff", "check", "--no-cache", str(bad)).returncode == 1
    assert _run("ruff", "format", "--check", "--no-cache", str(bad)).returncode == 1
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", str(bad)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 1 and "Incompatible return value type" in r.stdout, r.stdout
