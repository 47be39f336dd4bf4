"""One import package (issue 22, item 1): installed, the project is ``impactflow.*`` and nothing
else at the top level of site-packages (tests/e2e/test_own_data.py installs it non-editable next
to a user's own ``models`` package and runs it). Here: the packaging list covers the tree, and no
code imports the folders under their bare names (in a checkout that would load a second copy of
each module beside ``impactflow.<name>``)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("flows", "tasks", "models", "audits", "data_contracts")
BARE = re.compile(r"""(?:^|[;"'(])\s*(?:from|import)\s+(?:flows|tasks|models|audits|data_contracts)(?:[\s.,;]|$)""")
BARE_MODULE_FLAG = re.compile(r"""["']-m["'],\s*["'](?:flows|tasks|models|audits|data_contracts)\.""")


def test_every_folder_of_the_packages_is_packaged_under_impactflow():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert config["package-dir"] == {"impactflow": "impactflow", **{f"impactflow.{f}": f for f in FOLDERS}}
    tree = {"impactflow"}
    for folder in FOLDERS:
        for path in [ROOT / folder, *(ROOT / folder).rglob("*")]:
            if path.is_dir() and path.name != "__pycache__" and any(p.is_file() for p in path.iterdir()):
                tree.add("impactflow." + ".".join(path.relative_to(ROOT).parts))
    assert sorted(config["packages"]) == sorted(tree)


def test_no_code_imports_a_folder_by_its_bare_name():
    offences = []
    for path in sorted(ROOT.rglob("*.py")):
        if any(part in (".venv", ".ci-venv", ".git", "build", "site") for part in path.relative_to(ROOT).parts):
            continue
        if path == Path(__file__).resolve():  # the examples of the check below
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "old layout on purpose" in line:  # a test of what the old layout left behind
                continue
            if BARE.search(line) or BARE_MODULE_FLAG.search(line):
                offences.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offences, "\n".join(offences)


def test_the_check_sees_a_bare_import():
    assert BARE.search("from models.base import Family") and BARE.search('code = "import sys; import tasks.x"')
    assert BARE_MODULE_FLAG.search('[sys.executable, "-m", "flows.cli"]')
    assert not BARE.search("from impactflow.models.base import Family")
    assert not BARE.search("# `import models` is the user's package")
