"""The report names the contract file the data was read and validated by, with its SHA-256, so
a reviewer can re-check exactly that contract (issue 21: contracts are files users write)."""

from __future__ import annotations

import hashlib
import textwrap

from impactflow.audits.render import render_html, render_markdown
from impactflow.audits.report import build_report, validate_report
from tests.report.conftest import make_inputs


def test_load_data_records_the_contract_file_and_its_hash(tmp_path):
    from impactflow.tasks.data import load_data
    from impactflow.tasks.spec import RunSpec

    (tmp_path / "d.csv").write_text("x,y\n1,a\n2,b\n3,a\n")
    contract = tmp_path / "c" / "contract.yaml"
    contract.parent.mkdir()
    contract.write_text(
        textwrap.dedent("""\
        name: tiny
        read: {format: csv}
        columns:
          x: {type: integer, min: 0, max: 9}
          y: {type: category, values: [a, b]}
        target: y
        positive_label: b
        sensitive: []
        min_group_size: 1
        """)
    )
    _, info = load_data.fn(RunSpec(str(contract), "tabular"), [str(tmp_path / "d.csv")], None, 0)
    assert info["contract_file"] == {
        "path": str(contract.resolve()),
        "sha256": hashlib.sha256(contract.read_bytes()).hexdigest(),
    }


def test_the_report_shows_the_contract_file_and_a_report_without_one_renders():
    inputs = make_inputs(failing=False)
    sha = "cd" * 32
    inputs["data"]["contract_file"] = {"path": "/srv/contracts/credit/contract.yaml", "sha256": sha}
    report = build_report(**inputs)
    validate_report(report)
    assert report["data"]["contract_file"]["sha256"] == sha
    assert f"Contract file: /srv/contracts/credit/contract.yaml (SHA-256 {sha})" in render_markdown(report)
    assert (
        f"Contract file: <code>/srv/contracts/credit/contract.yaml</code> (SHA-256 <code>{sha}</code>)"
        in render_html(report)
    )
    # documents from before the key existed (and built-in contracts without a file) render too
    report = build_report(**make_inputs(failing=False))
    assert "Contract file:" not in render_markdown(report)
