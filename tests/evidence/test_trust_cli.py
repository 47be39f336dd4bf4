"""`impactflow keys init|show|export|trust` and `impactflow report verify`'s exit codes on a
signed run folder (Typer's CliRunner, in process: no flow, no MLflow).

Exit codes: 0 intact and trusted · 4 content changed or signature invalid · 5 intact, signer not
trusted · 1 bad input (one `error:` line, no traceback)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from impactflow.audits import evidence as ev
from impactflow.flows.cli import app


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    """A fresh IMPACTFLOW_HOME (no key yet), no trust file; the environment restored after."""
    saved = dict(os.environ)
    monkeypatch.setenv(ev.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.delenv(ev.KEY_ENV, raising=False)
    monkeypatch.delenv(ev.TRUST_ENV, raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)


def cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def _signed_run(root: Path, key, owner: str | None = None) -> Path:
    (root / "reports").mkdir(parents=True)
    _, sha = ev.write_evidence(root, run_id="r1", signer=ev.signer_info(key), previous_report_sha256=None)
    raw = ev.raw_public_key(key)
    report = {
        "summary": {"status": "pass", "gates": []},
        "integrity": {
            "signer_key_id": ev.key_id(raw),
            "signer_public_key": raw.hex(),
            "evidence_manifest_sha256": sha,
            "previous_report_sha256": None,
        },
    }
    (root / "reports" / "impact_report.json").write_text(json.dumps(report))
    (root / "reports" / "impact_report.md").write_text("# report\n")
    ev.write_signed_manifest(root, key, run_id="r1", owner=owner)
    return root


def test_keys_init_show_export_and_refusal(tmp_path):
    r = cli("keys", "show")
    assert r.exit_code == 1 and "error:" in r.output and "keys init" in r.output
    r = cli("keys", "init", "--owner", "alice@lab")
    assert r.exit_code == 0, r.output
    info = ev.key_info()
    assert f"created signing key {info['key_id']}" in r.output and "(owner: alice@lab)" in r.output
    assert (tmp_path / "home" / "keys" / "ed25519.pem").stat().st_mode & 0o777 == 0o600
    r = cli("keys", "init")
    assert r.exit_code == 1 and "already exists" in r.output and "--force" in r.output
    assert ev.key_info()["key_id"] == info["key_id"]
    r = cli("keys", "show")
    assert r.exit_code == 0
    assert f"key id:     {info['key_id']}" in r.output and "owner:      alice@lab" in r.output
    assert f"created:    {info['created']}" in r.output and info["public_key"] in r.output
    shown = json.loads(cli("keys", "show", "--json").output)
    assert shown["owner"] == "alice@lab" and shown["key_id"] == info["key_id"]
    exported = json.loads(cli("keys", "export").output)
    assert exported["keys"][0]["key_id"] == info["key_id"] and exported["keys"][0]["owner"] == "alice@lab"
    assert cli("keys", "export", "--pem").output == info["public_key_pem"]
    out = tmp_path / "alice.json"
    assert cli("keys", "export", "-o", str(out)).exit_code == 0
    assert ev.load_trust_file(out)[0]["raw"] == bytes.fromhex(info["public_key"])
    r = cli("keys", "init", "--owner", "alice@new", "--force")
    assert r.exit_code == 0 and ev.key_info()["key_id"] != info["key_id"]


def test_keys_trust_adds_an_export_to_a_trust_file(tmp_path):
    key = ev.load_or_create_signing_key(tmp_path / "bob.pem")
    export = tmp_path / "bob.json"
    export.write_text(json.dumps(ev.export_document({**ev.key_info(tmp_path / "bob.pem"), "owner": "bob"})))
    trust = tmp_path / "trusted.json"
    r = cli("keys", "trust", str(export), "--trusted-keys", str(trust))
    kid = ev.key_id(ev.raw_public_key(key))
    assert r.exit_code == 0 and f"{kid}: added" in r.output
    r = cli("keys", "trust", ev.raw_public_key(key).hex(), env={ev.TRUST_ENV: str(trust)})
    assert r.exit_code == 0 and f"{kid}: already trusted" in r.output
    assert [e["owner"] for e in ev.load_trust_file(trust)] == ["bob"]


def test_verify_exit_codes_trusted_untrusted_tampered(tmp_path):
    """0 signed by your own key; 5 signed by a key nobody trusts (regression: was 0), 0 once it
    is in the trust file; 4 when a byte changed, even by a trusted signer."""
    own = ev.load_or_create_signing_key()  # $IMPACTFLOW_HOME's key: trusted locally
    mine = _signed_run(tmp_path / "mine", own, owner="me")
    r = cli("report", "verify", str(mine))
    assert r.exit_code == 0, r.output
    assert "verified" in r.output and "your own signing key" in r.output

    alice_key = ev.load_or_create_signing_key(tmp_path / "alice.pem")
    theirs = _signed_run(tmp_path / "theirs", alice_key, owner="alice@lab")
    kid = ev.key_id(ev.raw_public_key(alice_key))
    r = cli("report", "verify", str(theirs))
    assert r.exit_code == 5, r.output
    assert "UNTRUSTED SIGNER" in r.output and kid in r.output and "'alice@lab'" in r.output
    assert "impactflow keys trust" in r.output
    doc = json.loads(cli("report", "verify", str(theirs), "--json").output)
    assert doc["verdict"] == "untrusted" and doc["intact"] and not doc["trusted"]

    trust = tmp_path / "trusted.json"
    trust.write_text(json.dumps(ev.export_document({**ev.key_info(tmp_path / "alice.pem"), "owner": "alice@lab"})))
    r = cli("report", "verify", str(theirs), "--trusted-keys", str(trust))
    assert r.exit_code == 0 and "'alice@lab'" in r.output and "trust file" in r.output, r.output
    assert cli("report", "verify", str(theirs), env={ev.TRUST_ENV: str(trust)}).exit_code == 0
    # --key pins: only that key is trusted (the own key is then not)
    assert cli("report", "verify", str(theirs), "--key", ev.raw_public_key(alice_key).hex()).exit_code == 0
    assert cli("report", "verify", str(mine), "--key", ev.raw_public_key(alice_key).hex()).exit_code == 5

    md = theirs / "reports" / "impact_report.md"
    md.write_text("# report, edited\n")
    r = cli("report", "verify", str(theirs), "--trusted-keys", str(trust))
    assert r.exit_code == 4 and "reports/impact_report.md" in r.output and "FAILED" in r.output
    assert json.loads(cli("report", "verify", str(theirs), "--json").output)["changed"] == ["reports/impact_report.md"]


def test_resigned_by_a_foreign_key_is_5_and_4_when_the_cover_still_names_the_signer(tmp_path):
    own = ev.load_or_create_signing_key()
    run = _signed_run(tmp_path / "run", own)
    other = ev.load_or_create_signing_key(tmp_path / "mallory.pem")
    report = run / "reports" / "impact_report.json"
    doc = json.loads(report.read_text())
    doc["summary"]["status"] = "edited"
    report.write_text(json.dumps(doc))
    ev.write_signed_manifest(run, other, run_id="r1")  # cover still names our key
    r = cli("report", "verify", str(run))
    assert r.exit_code == 4 and "the cover names signer" in r.output.replace("\n", " "), r.output
    raw = ev.raw_public_key(other)
    doc["integrity"].update(signer_key_id=ev.key_id(raw), signer_public_key=raw.hex())
    report.write_text(json.dumps(doc))
    ev.write_signed_manifest(run, other, run_id="r1")
    assert cli("report", "verify", str(run)).exit_code == 5


@pytest.mark.parametrize(
    "case",
    [
        "missing key file",
        "corrupt trust file",
        "missing trust file",
        "old-format manifest",
        "no manifest",
        "not a run id",
    ],
)
def test_bad_input_is_one_error_line_exit_1(tmp_path, case):
    run = _signed_run(tmp_path / "run", ev.load_or_create_signing_key())
    args = ["report", "verify", str(run)]
    if case == "missing key file":
        args += ["--key", str(tmp_path / "nope.pem")]
    elif case == "corrupt trust file":
        (tmp_path / "t.json").write_text('{"keys": [')
        args += ["--trusted-keys", str(tmp_path / "t.json")]
    elif case == "missing trust file":
        args += ["--trusted-keys", str(tmp_path / "absent.json")]
    elif case == "old-format manifest":
        (run / ev.MANIFEST_NAME).unlink()
        (run / "manifest.json").write_text(json.dumps({"schema": "impactflow.evidence/1", "files": {}}))
    elif case == "no manifest":
        (run / ev.MANIFEST_NAME).unlink()
    else:
        args = ["report", "verify", "not-a-run"]
    r = cli(*args)
    assert r.exit_code == 1, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_a_run_without_a_key_creates_one_and_says_so(tmp_path):
    """The README's first command still works without `keys init`; the run says it made a key."""
    from impactflow.tasks import progress
    from impactflow.tasks.evidence import _signing_key

    lines: list[str] = []

    class Capture:
        def stage(self, name: str) -> None:
            lines.append(name)

        def epoch(self, model: str, row: dict) -> None:
            pass

    progress.install(Capture())
    try:
        key, owner = _signing_key()
        again, _ = _signing_key()
    finally:
        progress.install(None)
    info = ev.key_info()
    assert owner == ev.default_owner() == info["owner"]
    assert lines == [
        f"created signing key {info['key_id']} at {info['path']} (owner: {owner}); "
        "publish its public key with: impactflow keys export"
    ]  # once
    assert ev.raw_public_key(again) == ev.raw_public_key(key)
