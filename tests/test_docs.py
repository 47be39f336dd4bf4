"""The documentation stays true to the repository: the README stays short, every relative link in
README.md and docs/*.md resolves (file and heading), the configuration reference equals what
docs/gen_config.py generates from the code, and the MkDocs site builds with --strict."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_BYTES = 15 * 1024

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
ATTR_ID = re.compile(r"\{\s*#([\w-]+)[^}]*\}\s*$")


def _gen_config():
    spec = importlib.util.spec_from_file_location("gen_config", DOCS / "gen_config.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_config"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def _prose(text: str) -> str:
    """Markdown without fenced blocks and code spans (links there are examples, not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor MkDocs (toc) and GitHub give a heading: lower case, punctuation dropped,
    spaces to hyphens. Close enough for the headings written here; the strict build checks
    docs/ anchors exactly."""
    text = re.sub(r"<[^>]+>", "", heading)
    text = re.sub(r"[`*_\[\]()]", lambda m: "_" if m.group() == "_" else "", text)
    text = re.sub(r"[^\w\- ]", "", text.lower(), flags=re.U)
    return re.sub(r"[\s]+", "-", text.strip())


def anchors(path: Path) -> set[str]:
    out = set()
    for _, title in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        explicit = ATTR_ID.search(title)
        out.add(explicit.group(1) if explicit else slug(title))
    return out


def links(path: Path) -> list[str]:
    text = _prose(path.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(text) + REF_DEF.findall(text)


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Relative links of ``path`` whose file is missing, or whose #anchor is no heading there."""
    problems = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # http:, https:, mailto: ...
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{path.relative_to(root)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{path.relative_to(root)}: {target} (no heading #{anchor} in {dest.name})")
    return problems


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_readme_is_short():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes; keep it under {README_MAX_BYTES} (move detail to docs/)"
    )


def test_readme_keeps_the_quick_start_commands():
    """.ci/run runs the README's install and test commands: they must stay exactly these."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && impactflow run' in text
    assert "\npython -m pytest\n" in text
    assert "../shared" not in text  # nothing outside the repository


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert not broken_links(path), "\n".join(broken_links(path))


def test_link_check_sees_a_broken_link_and_a_broken_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section { #custom }\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#other-page) [ok](other.md#custom) [ok](#here) `[no](code.md)`\n\n"
        "## Here\n\n[gone](missing.md) [bad](other.md#nowhere) [web](https://example.org/x.md)\n"
        "```\n[no](fenced.md)\n```\n",
        encoding="utf-8",
    )
    problems = broken_links(page, root=tmp_path)
    assert problems == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#nowhere (no heading #nowhere in other.md)",
    ]


def test_slug_matches_mkdocs_for_these_headings():
    assert slug("Text family (`model.family: text`)") == "text-family-modelfamily-text"
    assert slug("Empirical ε lower bounds") == "empirical-ε-lower-bounds"
    assert slug("Family hyperparameters (`model.params`)") == "family-hyperparameters-modelparams"


def test_configuration_reference_is_generated_from_the_code():
    gen = _gen_config()
    committed = (DOCS / "configuration-reference.md").read_text(encoding="utf-8")
    assert committed == gen.render(), "docs/configuration-reference.md is out of date: run python docs/gen_config.py"


def test_configuration_reference_lists_every_config_key():
    from impactflow.flows.config import RunConfig

    gen = _gen_config()
    page = gen.render()

    def keys(model, prefix=""):
        for name, info in model.model_fields.items():
            if gen.is_model(info.annotation):
                yield from keys(info.annotation, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    missing = [k for k in keys(RunConfig) if f"| `{k}` |" not in page]
    assert not missing, missing


def test_comment_reader_attaches_comments_to_their_field():
    gen = _gen_config()
    from impactflow.flows.config import OrchestrationConfig, TrainConfig

    assert gen.class_comments(TrainConfig).own["threads"].startswith("torch CPU threads")
    orchestration = gen.class_comments(OrchestrationConfig)
    assert orchestration.own["dask_address"].startswith("e.g. tcp://")  # a trailing comment
    assert any("dask_workers" in note for note in orchestration.notes)  # a block naming later fields


@pytest.mark.e2e
def test_mkdocs_build_strict(tmp_path):
    """The site builds with every page in the nav, every link and anchor resolving (strict)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",  # not --quiet: it hides the warnings strict counts
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "configuration-reference" / "index.html").is_file()
