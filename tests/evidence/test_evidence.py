"""Signed evidence: the in-toto statement in a DSSE envelope, every kind of tampering, signers
that are not trusted, key handling, trust files."""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing as mp
import stat
from pathlib import Path

import pytest

from impactflow.audits import evidence as ev
from impactflow.errors import ConfigError, DataError

MODEL_FILES = {"MLmodel": {"sha256": "cd" * 32, "size": 3}, "python_model.pkl": {"sha256": "ef" * 32, "size": 5}}


@pytest.fixture
def key(tmp_path):
    return ev.load_or_create_signing_key(tmp_path / "keys" / "k.pem")


@pytest.fixture
def trust(key):
    """The signer's key as the reviewer's trust list."""
    raw = ev.raw_public_key(key)
    return {ev.key_id(raw): {"raw": raw, "owner": "alice", "source": "test"}}


def _report(key) -> dict:
    return {
        "summary": {
            "status": "pass",
            "counts": {"pass": 1},
            "gates": [{"model": "mlp", "name": "g", "status": "pass"}],
        },
        "data": {"files": [{"path": "/data/adult.data", "sha256": "ab" * 32}]},
    }


@pytest.fixture
def run_dir(tmp_path, key):
    root = tmp_path / "run"
    (root / "reports").mkdir(parents=True)
    (root / "models" / "mlp").mkdir(parents=True)
    (root / "data_docs").mkdir()
    (root / "reports" / "impact_report.json").write_text(json.dumps(_report(key)))
    (root / "reports" / "impact_report.md").write_text("# report\n")
    (root / "reports" / "impact_report.html").write_text("<html></html>\n")
    (root / "models" / "mlp" / "audits.json").write_text('{"acc": 0.8}\n')
    (root / "data_docs" / "index.html").write_bytes(bytes(range(256)))
    ev.write_evidence(root, run_id="r1", signer=ev.signer_info(key), previous_report_sha256=None)
    ev.write_signed_manifest(
        root,
        key,
        run_id="r1",
        previous_report_sha256="ab" * 32,
        owner="alice",
        models=[
            {
                "name": "mlp",
                "role": "candidate",
                "mlflow_run_id": "c" * 32,
                "model_id": "m-1",
                "files": MODEL_FILES,
                "registry": {"name": "impactflow-tabular-mlp", "version": "3"},
            }
        ],
    )
    return root


def _envelope(run_dir: Path) -> dict:
    return json.loads((run_dir / ev.MANIFEST_NAME).read_bytes())


def _statement(run_dir: Path) -> dict:
    return json.loads(base64.b64decode(_envelope(run_dir)["payload"]))


# --------------------------------------------------------------------------- DSSE / in-toto


def test_pae_equals_the_dsse_spec_example():
    # protocol.md, "Test Vectors": PAYLOAD_TYPE http://example.com/HelloWorld, body "hello world"
    assert (
        ev.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert ev.pae("application/vnd.in-toto+json", b"") == b"DSSEv1 28 application/vnd.in-toto+json 0 "


def test_envelope_signature_equals_the_dsse_test_vector():
    """DSSE testvectors/vectors.json "single-signature" and "non-ascii-payload-type", signed with
    RFC 8032 section 7.1 TEST 1's key (Ed25519 is deterministic, so the bytes must be equal)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    k = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    assert ev.raw_public_key(k).hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    body = b'{"_type":"https://in-toto.io/Statement/v1"}'
    env = ev.dsse_envelope(body, k, "A")
    assert env == {
        "payload": "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ==",
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [
            {
                "keyid": "A",
                "sig": "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA==",
            }
        ],
    }
    # LEN(type) counts the bytes of UTF-8(type): 29 for these 28 characters
    assert ev.pae("application/vnd.exämple+json", body).startswith(b"DSSEv1 29 application/vnd.ex\xc3\xa4mple+json 43 ")
    assert base64.b64encode(k.sign(ev.pae("application/vnd.exämple+json", body))).decode() == (
        "xmSk/ug66ysT7ayhkCIjhAq42zgZXSsEWuzUaNL7w2eGAdF/NU6/fRXPtmfN+5DNSAs5/i2lUnHjbbjPsu0tAw=="
    )
    # verifiers accept URL-safe base64 ("url-safe-base64" vector)
    payload = ev.b64decode_any("-_-_Pj8=")
    assert payload == bytes.fromhex("fbffbf3e3f")
    assert ev.ed25519_verifies(
        ev.raw_public_key(k),
        ev.b64decode_any("P-_KHICeR7tI6S_YyejJTRtrXhcQyQ2LYPaL8h90KjC9qN8HU_svOQ6TuDOT1HIrsGW886DbWNWcCmX5twLrAw=="),
        ev.pae("application/vnd.in-toto+json", payload),
    )


def test_manifest_is_a_dsse_envelope_of_a_valid_in_toto_statement(run_dir, key):
    env = _envelope(run_dir)
    assert set(env) == {"payload", "payloadType", "signatures"}
    assert env["payloadType"] == "application/vnd.in-toto+json"
    raw = ev.raw_public_key(key)
    assert env["signatures"][0]["keyid"] == hashlib.sha256(raw).hexdigest()[:16]
    payload = base64.b64decode(env["payload"])
    # the signature checks with cryptography directly over the spec's PAE
    key.public_key().verify(
        base64.b64decode(env["signatures"][0]["sig"]),
        b"DSSEv1 28 application/vnd.in-toto+json %d %b" % (len(payload), payload),
    )
    st = json.loads(payload)
    assert ev.statement_problems(st) == []
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://impactflow.dev/evidence/v1"
    names = [s["name"] for s in st["subject"]]
    body = (run_dir / "reports" / "impact_report.json").read_bytes()
    assert {"name": "reports/impact_report.json", "digest": {"sha256": hashlib.sha256(body).hexdigest()}} in st[
        "subject"
    ]
    assert {
        "reports/impact_report.md",
        "reports/impact_report.html",
        "models/mlp/audits.json",
        "data_docs/index.html",
        "evidence.json",
    } <= set(names)
    assert "model/mlp/MLmodel" in names and "model/mlp/python_model.pkl" in names
    digest = hashlib.sha256(
        json.dumps(
            {"MLmodel": "cd" * 32, "python_model.pkl": "ef" * 32}, separators=(",", ":"), sort_keys=True
        ).encode()
    ).hexdigest()
    assert {"name": "model/mlp", "uri": "models:/m-1", "digest": {"sha256": digest}} in st["subject"]
    assert {"name": "models:/impactflow-tabular-mlp/3", "digest": {"sha256": digest}} in st["subject"]
    assert {"name": "data/adult.data", "digest": {"sha256": "ab" * 32}} in st["subject"]
    pred = st["predicate"]
    assert pred["summary"]["status"] == "pass" and pred["gates"] == [{"model": "mlp", "name": "g", "status": "pass"}]
    assert pred["files"]["reports/impact_report.json"] == {
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }
    assert pred["signer"] == {
        "algorithm": "ed25519",
        "public_key": raw.hex(),
        "key_id": ev.key_id(raw),
        "owner": "alice",
    }
    assert pred["models"][0]["registry"] == {"name": "impactflow-tabular-mlp", "version": "3"}
    assert pred["models"][0]["digest"] == digest


def test_statement_structure_check_names_what_is_wrong():
    assert ev.statement_problems([]) == ["the payload is not a JSON object"]
    bad = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"name": "a", "digest": {"sha256": "ABC"}}],
        "predicateType": "x",
        "predicate": {},
    }
    problems = " ".join(ev.statement_problems(bad))
    assert "_type" in problems and "lowercase hex" in problems and "predicateType" in problems


# --------------------------------------------------------------------------- verify


def test_untouched_run_verifies_against_a_trusted_key(run_dir, key, trust):
    res = ev.verify(run_dir, trust=trust)
    assert res.ok and res.intact and res.trusted and res.verdict == "verified", res.problems
    assert res.signature == "valid" and res.problems == []
    assert res.previous_report_sha256 == "ab" * 32 and res.status == "pass"
    assert res.owner == "alice" and res.trusted_as == "alice"
    assert res.manifest_sha256 == hashlib.sha256((run_dir / ev.MANIFEST_NAME).read_bytes()).hexdigest()
    assert ev.verify(run_dir / "reports", trust=trust).ok  # the reports/ folder finds its run folder


def test_intact_but_no_trusted_key_is_untrusted_not_verified(run_dir):
    """Regression: a valid signature by any key used to verify (exit 0)."""
    res = ev.verify(run_dir, trust={})
    assert res.intact and not res.trusted and not res.ok and res.verdict == "untrusted"


def test_evidence_file_excludes_reports_and_lists_inputs(run_dir):
    doc = json.loads((run_dir / "evidence.json").read_bytes())
    assert set(doc["files"]) == {"models/mlp/audits.json", "data_docs/index.html"}


def _flip(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "rel",
    [
        "reports/impact_report.json",
        "reports/impact_report.md",
        "reports/impact_report.html",
        "models/mlp/audits.json",
        "data_docs/index.html",
        "evidence.json",
    ],
)
def test_one_flipped_byte_in_any_file_fails_naming_it(run_dir, rel, trust):
    _flip(run_dir / rel, offset=3)
    res = ev.verify(run_dir, trust=trust)
    assert not res.ok and not res.intact and res.verdict == "tampered"
    assert res.changed == [rel] and res.missing == [] and res.added == []
    assert res.signature == "valid"  # the statement itself is intact
    assert any(p.startswith(rel) for p in res.problems)


def _edit_payload(run_dir: Path, edit) -> None:
    env = _envelope(run_dir)
    st = json.loads(base64.b64decode(env["payload"]))
    edit(st)
    env["payload"] = base64.b64encode(ev.canonical_json(st)).decode()
    (run_dir / ev.MANIFEST_NAME).write_bytes(ev.canonical_json(env))


def test_an_edited_statement_breaks_the_signature(run_dir, trust):
    _edit_payload(run_dir, lambda st: st["predicate"]["summary"].update(status="fail"))
    res = ev.verify(run_dir, trust=trust)
    assert not res.intact and res.signature == "invalid"


def test_tampered_signature_or_unreadable_envelope_fails(run_dir, trust):
    env = _envelope(run_dir)
    sig = base64.b64decode(env["signatures"][0]["sig"])
    env["signatures"][0]["sig"] = base64.b64encode(bytes([sig[0] ^ 0x01]) + sig[1:]).decode()
    (run_dir / ev.MANIFEST_NAME).write_bytes(ev.canonical_json(env))
    res = ev.verify(run_dir, trust=trust)
    assert not res.intact and res.signature == "invalid"
    (run_dir / ev.MANIFEST_NAME).write_bytes(b"{not json")
    res = ev.verify(run_dir, trust=trust)
    assert not res.intact and res.signature == "unreadable"


def test_added_and_removed_files_fail(run_dir, trust):
    (run_dir / "reports" / "extra.txt").write_text("x")
    (run_dir / "models" / "mlp" / "audits.json").unlink()
    res = ev.verify(run_dir, trust=trust)
    assert not res.intact
    assert res.added == ["reports/extra.txt"] and res.missing == ["models/mlp/audits.json"]


def test_resigned_by_a_foreign_key_is_untrusted(run_dir, key, trust, tmp_path):
    """Regression: a report edited and re-signed with another key verified (exit 0). With the
    cover updated to name the new signer too, the content is intact but the signer untrusted."""
    report = run_dir / "reports" / "impact_report.json"
    other = ev.load_or_create_signing_key(tmp_path / "attacker.pem")
    doc = json.loads(report.read_text())
    doc["summary"]["status"] = "pass-edited"
    doc["integrity"] = {
        "signer_key_id": ev.key_id(ev.raw_public_key(other)),
        "signer_public_key": ev.raw_public_key(other).hex(),
        "evidence_manifest_sha256": ev.sha256_file(run_dir / "evidence.json"),
        "previous_report_sha256": None,
    }
    report.write_text(json.dumps(doc))
    ev.write_signed_manifest(run_dir, other, run_id="r1", owner="alice")  # claims the same owner label
    res = ev.verify(run_dir, trust=trust)
    assert res.intact and not res.trusted and res.verdict == "untrusted", res.problems
    assert res.key_id == ev.key_id(ev.raw_public_key(other)) and res.owner == "alice"
    # the old API's pin: the foreign key is not the pinned one
    pinned = ev.verify(run_dir, trusted_key=ev.raw_public_key(key))
    assert pinned.pinned is False and pinned.verdict == "untrusted"
    assert ev.verify(run_dir, trusted_key=ev.raw_public_key(other)).verdict == "verified"


def test_resigned_by_a_foreign_key_with_the_old_cover_is_tampered(tmp_path, key, trust):
    """Regression: the signer named on the report's cover was not compared with the manifest's."""
    root = tmp_path / "run"
    (root / "reports").mkdir(parents=True)
    _, sha = ev.write_evidence(root, run_id="r", signer=ev.signer_info(key), previous_report_sha256=None)
    raw = ev.raw_public_key(key)
    cover = {
        "evidence_manifest_sha256": sha,
        "previous_report_sha256": None,
        "signer_key_id": ev.key_id(raw),
        "signer_public_key": raw.hex(),
    }
    (root / "reports" / "impact_report.json").write_text(json.dumps({"integrity": cover}))
    ev.write_signed_manifest(root, key, run_id="r")
    assert ev.verify(root, trust=trust).ok
    other = ev.load_or_create_signing_key(tmp_path / "attacker.pem")
    ev.write_signed_manifest(root, other, run_id="r")
    res = ev.verify(root, trust=trust)
    assert res.signature == "valid" and not res.intact and res.verdict == "tampered"
    assert any("the cover names signer " + ev.key_id(raw) in p for p in res.problems)


def test_signed_by_a_trusted_key_but_naming_another_signer_is_tampered(run_dir, key, trust, tmp_path):
    other = ev.load_or_create_signing_key(tmp_path / "other.pem")
    env = _envelope(run_dir)
    st = json.loads(base64.b64decode(env["payload"]))
    st["predicate"]["signer"] = ev.signer_info(other, "bob")  # names bob, signed by alice
    payload = ev.canonical_json(st)
    (run_dir / ev.MANIFEST_NAME).write_bytes(
        ev.canonical_json(ev.dsse_envelope(payload, key, ev.key_id(ev.raw_public_key(key))))
    )
    res = ev.verify(run_dir, trust=trust)
    assert res.signature == "valid" and not res.intact
    assert any("but the statement names signer" in p for p in res.problems)


def test_envelope_keyid_that_is_not_the_signer_is_tampered(run_dir, trust):
    env = _envelope(run_dir)
    env["signatures"][0]["keyid"] = "0" * 16
    (run_dir / ev.MANIFEST_NAME).write_bytes(ev.canonical_json(env))
    res = ev.verify(run_dir, trust=trust)
    assert not res.intact and any("keyid" in p for p in res.problems)


def test_subjects_that_disagree_with_the_predicate_are_tampered(run_dir, key, trust):
    env = _envelope(run_dir)
    st = json.loads(base64.b64decode(env["payload"]))
    st["subject"] = st["subject"][:1]
    payload = ev.canonical_json(st)
    (run_dir / ev.MANIFEST_NAME).write_bytes(
        ev.canonical_json(ev.dsse_envelope(payload, key, ev.key_id(ev.raw_public_key(key))))
    )
    res = ev.verify(run_dir, trust=trust)
    assert res.signature == "valid" and not res.intact and any("subjects differ" in p for p in res.problems)


def test_model_problems_name_changed_missing_and_added_files():
    m = {"name": "mlp", "files": MODEL_FILES}
    assert ev.model_problems(m, dict(MODEL_FILES), "run x") == []
    swapped = {"MLmodel": MODEL_FILES["MLmodel"], "model.skops": {"sha256": "00" * 32, "size": 9}}
    assert ev.model_problems(m, swapped, "run x") == [
        "model mlp (run x): python_model.pkl missing",
        "model mlp (run x): model.skops added after signing",
    ]
    assert ev.model_problems(m, None, "models:/a/1") == ["model mlp (models:/a/1): not found"]


def test_no_manifest_and_old_format_are_clear_data_errors(tmp_path):
    with pytest.raises(DataError, match="no manifest.intoto.jsonl in"):
        ev.verify(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": "impactflow.evidence/1", "files": {}}))
    (tmp_path / "manifest.sig").write_text("AAAA\n")
    with pytest.raises(DataError, match=r"manifest.json: a manifest of the old format \(impactflow.evidence/1"):
        ev.verify(tmp_path / "reports")


# --------------------------------------------------------------------------- keys


def test_parse_public_key_accepts_hex_pem_text_and_files(key, tmp_path):
    raw = ev.raw_public_key(key)
    pem = ev.public_key_pem(key)
    (tmp_path / "pub.pem").write_text(pem)
    assert ev.parse_public_key(raw.hex()) == raw
    assert ev.parse_public_key(pem) == raw
    assert ev.parse_public_key(str(tmp_path / "pub.pem")) == raw
    with pytest.raises(ConfigError, match="cannot read the public key"):
        ev.parse_public_key(str(tmp_path / "nope.pem"))


def test_key_is_created_once_with_mode_0600_owner_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(ev.KEY_ENV, raising=False)
    monkeypatch.setenv(ev.HOME_ENV, str(tmp_path / "home"))
    path = ev.signing_key_path()
    assert path == tmp_path / "home" / "keys" / "ed25519.pem"
    k1, created = ev.ensure_signing_key()
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    k2, again = ev.ensure_signing_key()
    assert not again and ev.raw_public_key(k2) == ev.raw_public_key(k1)
    info = ev.key_info()
    assert info["key_id"] == ev.key_id(ev.raw_public_key(k1)) and info["owner"] == ev.default_owner()
    assert info["created"] and "@" in info["owner"]
    monkeypatch.setenv(ev.KEY_ENV, str(tmp_path / "elsewhere.pem"))
    assert ev.signing_key_path() == tmp_path / "elsewhere.pem"


def test_init_refuses_to_overwrite_unless_forced(tmp_path):
    path = tmp_path / "k" / "ed25519.pem"
    info = ev.init_signing_key(path, owner="alice@lab")
    assert info["owner"] == "alice@lab" and stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match=f"already exists at .*key id {info['key_id']}"):
        ev.init_signing_key(path, owner="mallory")
    assert ev.key_info(path)["key_id"] == info["key_id"]
    new = ev.init_signing_key(path, owner="alice@lab", force=True)
    assert new["key_id"] != info["key_id"] and ev.key_info(path)["owner"] == "alice@lab"
    with pytest.raises(ConfigError, match="no signing key at .*keys init"):
        ev.key_info(tmp_path / "none.pem")


def _make_key(path: str, barrier, out) -> None:
    from impactflow.audits import evidence

    barrier.wait()
    out.put(evidence.raw_public_key(evidence.load_or_create_signing_key(Path(path))).hex())


@pytest.mark.e2e  # starts a process
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
    assert sorted(p.name for p in (tmp_path / "race").iterdir()) == ["ed25519.pem", "ed25519.pem.meta.json"]
    assert ev.key_info(path)["key_id"] == ev.key_id(bytes.fromhex(keys.pop()))  # metadata of the winner


def test_unreadable_key_file_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="bad.pem"):
        ev.load_or_create_signing_key(bad)


# --------------------------------------------------------------------------- trust files


def test_export_document_is_a_trust_file_that_trusts_the_key(key, tmp_path, monkeypatch):
    monkeypatch.setenv(ev.HOME_ENV, str(tmp_path / "nobody"))  # no own key
    monkeypatch.delenv(ev.KEY_ENV, raising=False)
    info = ev.key_info(tmp_path / "keys" / "k.pem")
    doc = ev.export_document(info)
    assert doc["format"] == "impactflow.trusted-keys/1"
    assert doc["keys"][0]["key_id"] == info["key_id"]
    assert doc["keys"][0]["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    f = tmp_path / "trusted.json"
    f.write_text(json.dumps(doc))
    trust = ev.trusted_keys([f])
    assert set(trust) == {info["key_id"]} and trust[info["key_id"]]["raw"] == ev.raw_public_key(key)


def test_trust_file_accepts_hex_and_base64_and_checks_key_ids(key, tmp_path):
    raw = ev.raw_public_key(key)
    f = tmp_path / "t.json"
    f.write_text(
        json.dumps(
            {
                "keys": [
                    {"public_key": raw.hex(), "owner": "a"},
                    {"public_key": base64.b64encode(raw).decode(), "owner": "b"},
                ]
            }
        )
    )
    assert [e["key_id"] for e in ev.load_trust_file(f)] == [ev.key_id(raw)] * 2
    f.write_text(json.dumps({"keys": [{"public_key": raw.hex(), "key_id": "0" * 16}]}))
    with pytest.raises(ConfigError, match=r"trust file .*t.json: key 1: key_id '0000000000000000' is not that"):
        ev.load_trust_file(f)


@pytest.mark.parametrize(
    "text, why",
    [
        ("{not json", "not JSON"),
        ('{"keys": 3}', 'not {"keys"'),
        ('{"keys": [{"owner": "a"}]}', "key 1: no public_key"),
        ('{"keys": [{"public_key": "zz"}]}', "key 1: public_key is not"),
    ],
)
def test_corrupt_trust_file_is_a_config_error(tmp_path, text, why):
    f = tmp_path / "t.json"
    f.write_text(text)
    with pytest.raises(ConfigError, match=why):
        ev.trusted_keys([f])
    with pytest.raises(ConfigError, match="cannot be read"):
        ev.trusted_keys([tmp_path / "missing.json"])


def test_add_to_trust_file_merges_without_duplicates(key, tmp_path):
    f = tmp_path / "trust" / "t.json"
    keys = ev.parse_trust_document(ev.export_document(ev.key_info(tmp_path / "keys" / "k.pem")), "x")
    kid = keys[0]["key_id"]
    assert ev.add_to_trust_file(f, keys) == [(kid, "added")]
    assert ev.add_to_trust_file(f, keys) == [(kid, "already trusted")]
    assert ev.add_to_trust_file(f, keys, owner="alice@lab") == [(kid, "updated owner")]
    entries = ev.load_trust_file(f)
    assert [(e["key_id"], e["owner"]) for e in entries] == [(kid, "alice@lab")]


def test_own_key_is_trusted_locally_and_a_pin_replaces_the_list(key, tmp_path, monkeypatch):
    monkeypatch.setenv(ev.KEY_ENV, str(tmp_path / "keys" / "k.pem"))
    raw = ev.raw_public_key(key)
    assert set(ev.trusted_keys()) == {ev.key_id(raw)}
    assert ev.trusted_keys(include_own=False) == {}
    assert set(ev.trusted_keys(pinned=b"\x01" * 32)) == {ev.key_id(b"\x01" * 32)}
    monkeypatch.setenv(ev.KEY_ENV, str(tmp_path / "absent.pem"))
    assert ev.trusted_keys() == {}
    assert not (tmp_path / "absent.pem").exists()  # verifying never creates a key
