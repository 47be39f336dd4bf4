"""Signed evidence manifests: sign/verify roundtrip, every kind of tampering, key handling."""
from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing as mp
import os
import stat
from pathlib import Path

import pytest

from audits import evidence as ev
from data_contracts.errors import ConfigError, DataError


@pytest.fixture
def key(tmp_path):
    return ev.load_or_create_signing_key(tmp_path / "keys" / "k.pem")


@pytest.fixture
def run_dir(tmp_path, key):
    root = tmp_path / "run"
    (root / "reports").mkdir(parents=True)
    (root / "models" / "mlp").mkdir(parents=True)
    (root / "data_docs").mkdir()
    (root / "reports" / "impact_report.json").write_text('{"a": 1}\n')
    (root / "reports" / "impact_report.md").write_text("# report\n")
    (root / "reports" / "impact_report.html").write_text("<html></html>\n")
    (root / "models" / "mlp" / "audits.json").write_text("{\"acc\": 0.8}\n")
    (root / "data_docs" / "index.html").write_bytes(bytes(range(256)))
    ev.write_evidence(root, run_id="r1", signer=ev.signer_info(key), previous_report_sha256=None)
    ev.write_signed_manifest(root, key, run_id="r1", previous_report_sha256="ab" * 32)
    return root


def test_manifest_hashes_equal_hashlib_and_signature_verifies(run_dir, key):
    manifest = json.loads((run_dir / "manifest.json").read_bytes())
    body = (run_dir / "reports" / "impact_report.json").read_bytes()
    assert manifest["files"]["reports/impact_report.json"] == {
        "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    assert manifest["report_sha256"] == hashlib.sha256(body).hexdigest()
    assert set(manifest["files"]) == {"reports/impact_report.json", "reports/impact_report.md",
                                      "reports/impact_report.html", "models/mlp/audits.json",
                                      "data_docs/index.html", "evidence.json"}
    raw = ev.raw_public_key(key)
    assert manifest["signer"]["public_key"] == raw.hex()
    assert manifest["signer"]["key_id"] == hashlib.sha256(raw).hexdigest()[:16]
    # the signature checks with cryptography directly over the file's bytes
    sig = base64.b64decode((run_dir / "manifest.sig").read_bytes())
    key.public_key().verify(sig, (run_dir / "manifest.json").read_bytes())
    res = ev.verify(run_dir)
    assert res.ok and res.signature == "valid" and res.problems == []
    assert res.previous_report_sha256 == "ab" * 32
    assert res.manifest_sha256 == hashlib.sha256((run_dir / "manifest.json").read_bytes()).hexdigest()
    # the reports/ folder finds the manifest of its run folder
    assert ev.verify(run_dir / "reports").ok


def test_evidence_file_excludes_reports_and_lists_inputs(run_dir):
    doc = json.loads((run_dir / "evidence.json").read_bytes())
    assert set(doc["files"]) == {"models/mlp/audits.json", "data_docs/index.html"}


def _flip(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("rel", ["reports/impact_report.json", "reports/impact_report.md",
                                 "reports/impact_report.html", "models/mlp/audits.json",
                                 "data_docs/index.html", "evidence.json"])
def test_one_flipped_byte_in_any_file_fails_naming_it(run_dir, rel):
    _flip(run_dir / rel, offset=3)
    res = ev.verify(run_dir)
    assert not res.ok
    assert res.changed == [rel] and res.missing == [] and res.added == []
    assert res.signature == "valid"  # the manifest itself is intact
    assert any(p.startswith(rel) for p in res.problems)


def test_flipped_byte_in_manifest_breaks_the_signature(run_dir):
    path = run_dir / "manifest.json"
    data = path.read_bytes()
    i = data.index(b'"created_at":"') + len(b'"created_at":"') + 3  # a digit of the year
    path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
    res = ev.verify(run_dir)
    assert not res.ok and res.signature == "invalid"


def test_tampered_or_missing_signature_fails(run_dir):
    sig = base64.b64decode((run_dir / "manifest.sig").read_bytes())
    bad = bytes([sig[0] ^ 0x01]) + sig[1:]
    (run_dir / "manifest.sig").write_bytes(base64.b64encode(bad))
    res = ev.verify(run_dir)
    assert not res.ok and res.signature == "invalid"
    (run_dir / "manifest.sig").unlink()
    res = ev.verify(run_dir)
    assert not res.ok and res.signature == "missing"


def test_added_and_removed_files_fail(run_dir):
    (run_dir / "reports" / "extra.txt").write_text("x")
    (run_dir / "models" / "mlp" / "audits.json").unlink()
    res = ev.verify(run_dir)
    assert not res.ok
    assert res.added == ["reports/extra.txt"] and res.missing == ["models/mlp/audits.json"]


def test_resigned_by_an_attacker_passes_integrity_but_fails_a_pinned_key(run_dir, key, tmp_path):
    (run_dir / "reports" / "impact_report.json").write_text('{"a": 2}\n')
    other = ev.load_or_create_signing_key(tmp_path / "attacker.pem")
    ev.write_signed_manifest(run_dir, other, run_id="r1")
    assert ev.verify(run_dir).ok  # self-contained key: integrity only
    res = ev.verify(run_dir, trusted_key=ev.raw_public_key(key))
    assert not res.ok and res.pinned is False
    assert ev.verify(run_dir, trusted_key=ev.raw_public_key(other)).pinned is True


def test_parse_public_key_accepts_hex_pem_text_and_files(key, tmp_path):
    raw = ev.raw_public_key(key)
    pem = ev.public_key_pem(key)
    (tmp_path / "pub.pem").write_text(pem)
    assert ev.parse_public_key(raw.hex()) == raw
    assert ev.parse_public_key(pem) == raw
    assert ev.parse_public_key(str(tmp_path / "pub.pem")) == raw
    with pytest.raises(ConfigError, match="cannot read the public key"):
        ev.parse_public_key(str(tmp_path / "nope.pem"))


def test_no_manifest_is_a_clear_data_error(tmp_path):
    with pytest.raises(DataError, match="no manifest.json in"):
        ev.verify(tmp_path)


def test_key_is_created_once_with_mode_0600_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(ev.KEY_ENV, raising=False)
    monkeypatch.setenv(ev.HOME_ENV, str(tmp_path / "home"))
    path = ev.signing_key_path()
    assert path == tmp_path / "home" / "keys" / "ed25519.pem"
    k1 = ev.load_or_create_signing_key()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ev.raw_public_key(ev.load_or_create_signing_key()) == ev.raw_public_key(k1)
    monkeypatch.setenv(ev.KEY_ENV, str(tmp_path / "elsewhere.pem"))
    assert ev.signing_key_path() == tmp_path / "elsewhere.pem"


def _make_key(path: str, barrier, out) -> None:
    from audits import evidence

    barrier.wait()
    out.put(evidence.raw_public_key(evidence.load_or_create_signing_key(Path(path))).hex())


def test_concurrent_first_use_creates_exactly_one_key(tmp_path):
    ctx = mp.get_context("fork")
    n = 4
    barrier, out = ctx.Barrier(n), ctx.Queue()
    path = tmp_path / "race" / "ed25519.pem"
    procs = [ctx.Process(target=_make_key, args=(str(path), barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    keys = {out.get(timeout=60) for _ in range(n)}
    for p in procs:
        p.join(timeout=60)
    assert len(keys) == 1
    assert keys == {ev.raw_public_key(ev.load_or_create_signing_key(path)).hex()}
    assert [p.name for p in (tmp_path / "race").iterdir()] == ["ed25519.pem"]  # no temp left


def test_unreadable_key_file_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="bad.pem"):
        ev.load_or_create_signing_key(bad)


def test_report_cover_must_match_the_evidence_it_names(tmp_path, key):
    root = tmp_path / "run"
    (root / "reports").mkdir(parents=True)
    _, sha = ev.write_evidence(root, run_id="r", signer=ev.signer_info(key), previous_report_sha256=None)
    cover = {"evidence_manifest_sha256": sha, "previous_report_sha256": "cd" * 32}
    (root / "reports" / "impact_report.json").write_text(json.dumps({"integrity": cover}))
    ev.write_signed_manifest(root, key, run_id="r", previous_report_sha256="cd" * 32)
    assert ev.verify(root).ok
    # a report that names other evidence, re-signed as a whole, still fails the cross-check
    (root / "reports" / "impact_report.json").write_text(json.dumps({"integrity": {**cover, "evidence_manifest_sha256": "0" * 64}}))
    ev.write_signed_manifest(root, key, run_id="r", previous_report_sha256="cd" * 32)
    res = ev.verify(root)
    assert not res.ok and res.signature == "valid"
    assert any("evidence_manifest_sha256" in p for p in res.problems)
