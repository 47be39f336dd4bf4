"""Signed evidence: an in-toto Statement over every file of a run, its logged models and its data,
in a DSSE envelope signed with a local Ed25519 key; a trust list of public keys.

Works offline; nothing here talks to MLflow or Prefect (``tasks/evidence.py`` does the MLflow
part: it hashes the logged models for the statement and re-hashes them when verifying).

What is signed (``manifest.intoto.jsonl``, one JSON line):

- a DSSE envelope (https://github.com/secure-systems-lab/dsse, v1.0.0): ``payloadType``
  ``application/vnd.in-toto+json``, ``payload`` = base64 of the Statement's canonical JSON,
  ``signatures`` = ``[{"keyid", "sig"}]``, where ``sig`` is Ed25519 (RFC 8032) over
  ``PAE(payloadType, payload)`` = ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``
  (``pae``; LEN counts bytes). ``keyid`` is the signer's key id (below), a hint only: the
  verifier decides by which key actually verifies the signature.
- an in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md):
  ``_type`` ``https://in-toto.io/Statement/v1``; ``subject`` = one resource descriptor
  (``name`` + ``digest.sha256``) per file of the run folder, per file of each logged model
  (``model/<name>/<path>``), per model as a whole (``model/<name>``, digest = ``model_digest``
  of its files, with its ``models:/`` URI), per registry version bound to that model
  (``models:/<registered name>/<version>``, same digest), and per data file (``data/<file>``);
  ``predicateType`` ``https://impactflow.dev/evidence/v1``; ``predicate`` = the run id, the
  report's summary status and gate results (copied from ``reports/impact_report.json``), the
  file list (sha256 + size), the models (files, digest, MLflow run/model ids, registry
  version), the data files, the previous report's hash (a hash chain over the experiment's
  runs) and the signer as it states itself (key id, public key, owner label).
- ``canonical_json`` gives the exact bytes (sorted keys, no spaces, UTF-8, no NaN), so every
  hash is reproducible from the file alone.

What ``verify`` decides (and ``impactflow report verify`` exits with):

- **intact** (else exit 4): the envelope parses, one signature verifies with the public key the
  statement names, the envelope's ``keyid`` and the report cover's signer are that key, the
  subjects are exactly those the predicate implies, every covered file has its hash, no file
  was added, and the report's cover agrees with ``evidence.json``. The models are re-hashed
  by ``impactflow.tasks.evidence.check_models`` when the run is verified by its MLflow run id.
- **trusted** (else exit 5, when intact): the key that verified is in the trust list: your own
  signing key (when it exists), the keys of ``--trusted-keys FILE`` / ``$IMPACTFLOW_TRUSTED_KEYS``;
  or, with ``--key``, exactly the pinned key. A valid signature by a key you do not trust
  proves integrity only: anyone can rewrite a run and sign it with a key of their own.
- A manifest of the old format (``manifest.json`` + ``manifest.sig``, schema
  ``impactflow.evidence/1``), a corrupt trust file or a missing key file is bad input
  (``ConfigError``/``DataError``: exit 1 with one line).

Keys: the private key lives at ``$IMPACTFLOW_SIGNING_KEY`` if set, else
``$IMPACTFLOW_HOME/keys/ed25519.pem`` (``IMPACTFLOW_HOME`` defaults to ``~/.impactflow``),
PKCS#8 PEM, mode 0600, with ``<key>.meta.json`` beside it (key id, owner label, created date).
``impactflow keys init --owner LABEL`` creates it; a run without one still creates it on first
use (owner ``user@host``) and says so, so the first command of the README works. Creation is
race-free: the key is written to a private temporary file opened with ``O_CREAT | O_EXCL``
and hard-linked to its final name (``link`` fails if the name exists: two concurrent first
uses end up with one key). ``key_id`` = first 16 hex digits of SHA-256 of the raw 32-byte
public key.

Trust file (``impactflow keys export`` writes one with your key; ``impactflow keys trust``
merges one into another)::

    {"format": "impactflow.trusted-keys/1",
     "keys": [{"key_id": "<16 hex>", "public_key": "<PEM, 64 hex or base64 of the raw 32 bytes>",
               "owner": "alice@lab", "created": "...", "added": "..."}]}

``key_id`` is optional (checked against the public key when given); ``owner`` is the label
the verifier shows for that key.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from impactflow.audits.atomic import temp_prefix, write_atomic
from impactflow.errors import ConfigError, DataError

MANIFEST_NAME = "manifest.intoto.jsonl"  # the DSSE envelope (one JSON line)
OLD_MANIFEST_NAME, OLD_SIGNATURE_NAME = "manifest.json", "manifest.sig"  # impactflow.evidence/1
OLD_SCHEMA = "impactflow.evidence/1"
EVIDENCE_SCHEMA = "impactflow.evidence/2#evidence"
EVIDENCE_NAME = "evidence.json"  # stage-one manifest of a run's inputs to the report (unsigned)
REPORT_JSON = "reports/impact_report.json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://impactflow.dev/evidence/v1"
TRUST_FORMAT = "impactflow.trusted-keys/1"
KEY_ENV, HOME_ENV, TRUST_ENV = "IMPACTFLOW_SIGNING_KEY", "IMPACTFLOW_HOME", "IMPACTFLOW_TRUSTED_KEYS"
_CHUNK = 1 << 20

NO_MANIFEST = "no {name} in {where} (nor in its parent): not a signed impactflow run folder"
OLD_FORMAT = (
    "{path}: a manifest of the old format ({schema}: manifest.json + manifest.sig, which "
    "names no trusted signer and does not cover the models); this version verifies "
    "{name} (a signed in-toto statement): re-run to produce one"
)
BAD_KEY = "cannot read the public key {key!r}: give a PEM file or 64 hex digits of a raw Ed25519 key"
NO_KEY = "no signing key at {path}: create one with `impactflow keys init --owner LABEL`"
KEY_EXISTS = (
    "a signing key already exists at {path} (key id {key_id}); --force replaces it "
    "(runs signed with the old key then verify only against its exported public key)"
)
BAD_TRUST = "trust file {path}: {why}"


# --------------------------------------------------------------------------- hashing


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_tree(
    root: Path, exclude: tuple[str, ...] = (MANIFEST_NAME,), skip_dirs: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """``{relative/posix/path: {"sha256", "size"}}`` for every regular file under ``root``.

    Names in ``exclude`` are skipped at the top level only; ``skip_dirs`` are top-level
    folders left out. Symbolic links are refused (a manifest must not vouch for a file
    outside its folder); atomic-write leftovers (``.*.tmp``) are ordinary files and covered.
    """
    root = Path(root)
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in skip_dirs:
            continue
        if path.is_symlink():
            raise DataError(f"{path}: symbolic links cannot be covered by an evidence manifest")
        if not path.is_file() or rel in exclude:
            continue
        out[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return out


def canonical_json(obj: Any) -> bytes:
    """The exact bytes hashed and signed: sorted keys, compact separators, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def model_digest(files: dict[str, dict[str, Any]]) -> str:
    """One SHA-256 for a model: over the canonical JSON of ``{path: sha256}`` of its files."""
    return sha256_bytes(canonical_json({rel: meta["sha256"] for rel, meta in files.items()}))


def diff_files(expected: dict[str, dict], actual: dict[str, dict]) -> tuple[list[str], list[str], list[str]]:
    """(changed, missing, added) paths between two ``hash_tree`` listings."""
    changed, missing = [], []
    for rel, meta in sorted(expected.items()):
        got = actual.get(rel)
        if got is None:
            missing.append(rel)
        elif got["sha256"] != meta.get("sha256") or got["size"] != meta.get("size"):
            changed.append(rel)
    return changed, missing, sorted(set(actual) - set(expected))


# --------------------------------------------------------------------------- DSSE


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding; LEN is the byte length (of the UTF-8 type)."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def b64decode_any(text: object) -> bytes:
    """Standard or URL-safe base64, padded or not (DSSE verifiers must accept either)."""
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    s = text.strip().replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64 ({exc})") from None


def dsse_envelope(payload: bytes, private_key, keyid: str | None, payload_type: str = PAYLOAD_TYPE) -> dict:
    """A DSSE envelope with one Ed25519 signature over ``pae(payload_type, payload)``."""
    sig = private_key.sign(pae(payload_type, payload))
    entry = {"sig": base64.b64encode(sig).decode("ascii")}
    if keyid is not None:
        entry["keyid"] = keyid
    return {"payload": base64.b64encode(payload).decode("ascii"), "payloadType": payload_type, "signatures": [entry]}


def parse_envelope(data: bytes) -> tuple[bytes, str, list[tuple[str | None, bytes]]]:
    """(payload, payloadType, [(keyid, signature bytes)]) of a DSSE JSON envelope; ValueError
    if it is not one."""
    try:
        env = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if (
        not isinstance(env, dict)
        or not isinstance(env.get("payloadType"), str)
        or not isinstance(env.get("signatures"), list)
        or not env["signatures"]
    ):
        raise ValueError("not a DSSE envelope (payload, payloadType, signatures)")
    payload = b64decode_any(env.get("payload"))
    sigs = []
    for s in env["signatures"]:
        if not isinstance(s, dict) or (s.get("keyid") is not None and not isinstance(s["keyid"], str)):
            raise ValueError("a signature entry is not {keyid, sig}")
        sigs.append((s.get("keyid"), b64decode_any(s.get("sig"))))
    return payload, env["payloadType"], sigs


def ed25519_verifies(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


# --------------------------------------------------------------------------- keys


def signing_key_path() -> Path:
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    home = Path(os.environ.get(HOME_ENV) or Path.home() / ".impactflow").expanduser()
    return home / "keys" / "ed25519.pem"


def key_meta_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".meta.json")


def default_owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _new_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _private_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new mode-0600 file beside ``path`` (fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.parent / f"{temp_prefix(path.name)}{os.urandom(4).hex()}.tmp"  # audits.atomic naming
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def _read_private_key(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigError(
            f"signing key {path}: cannot be read as an unencrypted PEM private key "
            f"({exc}); set {KEY_ENV} to another file, or replace it with "
            "`impactflow keys init --force`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {path}: not an Ed25519 key ({type(key).__name__})")
    from impactflow.audits.file_modes import warn_if_shared

    warn_if_shared(path, "signing key")  # anyone who can read it can sign as its owner
    return key


def _write_meta(path: Path, key, owner: str, created_by: str) -> dict:
    meta = {"key_id": key_id(raw_public_key(key)), "owner": owner, "created": _now(), "created_by": created_by}
    write_atomic(key_meta_path(path), json.dumps(meta, indent=2).encode() + b"\n")
    return meta


def ensure_signing_key(path: Path | None = None, owner: str | None = None) -> tuple[Any, bool]:
    """(the Ed25519 private key at ``path``, whether this call created it). Created on first
    use (mode 0600; exactly one key even when several processes race to create it), with
    its owner label (default ``user@host``) and creation date in ``<key>.meta.json``."""
    path = Path(path) if path is not None else signing_key_path()
    created = False
    if not path.exists():
        tmp = _private_temp(path, _new_pem())
        try:
            os.link(tmp, path)  # atomic create-if-absent: the first process wins
            created = True
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    key = _read_private_key(path)
    if created:
        _write_meta(path, key, owner or default_owner(), "first signed run")
    return key, created


def load_or_create_signing_key(path: Path | None = None):
    """The Ed25519 private key at ``path`` (default ``signing_key_path()``), created on first use."""
    return ensure_signing_key(path)[0]


def init_signing_key(path: Path | None = None, owner: str | None = None, force: bool = False) -> dict:
    """``impactflow keys init``: a new key (refused if one exists, unless ``force``); its info."""
    path = Path(path) if path is not None else signing_key_path()
    if path.exists() and not force:
        try:
            kid = key_id(raw_public_key(_read_private_key(path)))
        except ConfigError:
            kid = "unreadable"
        raise ConfigError(KEY_EXISTS.format(path=path, key_id=kid))
    tmp = _private_temp(path, _new_pem())
    try:
        os.replace(tmp, path) if force else os.link(tmp, path)
    except FileExistsError:
        raise ConfigError(KEY_EXISTS.format(path=path, key_id="just created by another process")) from None
    finally:
        tmp.unlink(missing_ok=True)
    _write_meta(path, _read_private_key(path), owner or default_owner(), "impactflow keys init")
    return key_info(path)


def key_info(path: Path | None = None) -> dict:
    """Key id, owner label, created date, public key (hex and PEM) and path of the signing key."""
    path = Path(path) if path is not None else signing_key_path()
    if not path.exists():
        raise ConfigError(NO_KEY.format(path=path))
    key = _read_private_key(path)
    raw = raw_public_key(key)
    meta: dict = {}
    try:
        meta = json.loads(key_meta_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    if not isinstance(meta, dict) or meta.get("key_id") != key_id(raw):
        meta = {}  # no metadata (a key made before it existed), or metadata of another key
    return {
        "key_id": key_id(raw),
        "owner": meta.get("owner"),
        "created": meta.get("created"),
        "public_key": raw.hex(),
        "public_key_pem": public_key_pem(key),
        "path": str(path),
    }


def raw_public_key(key) -> bytes:
    """Raw 32 bytes of a public key (or of a private key's public half)."""
    from cryptography.hazmat.primitives import serialization

    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw_public: bytes) -> str:
    return sha256_bytes(raw_public)[:16]


def signer_info(private_key, owner: str | None = None) -> dict[str, Any]:
    raw = raw_public_key(private_key)
    return {"algorithm": "ed25519", "public_key": raw.hex(), "key_id": key_id(raw), "owner": owner}


def public_key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _public_from_text(text: str) -> bytes:
    """Raw 32 bytes from PEM text (public or private key), 64 hex digits or base64 of 32 bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    if text.startswith("-----BEGIN"):
        data = text.encode()
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:  # a private key: its public half
            key = serialization.load_pem_private_key(data, password=None).public_key()
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        return raw_public_key(key)
    raw = b64decode_any(text)
    if len(raw) != 32:
        raise ValueError("not 32 bytes")
    return raw


def parse_public_key(value: str) -> bytes:
    """Raw 32 bytes from a PEM file path, PEM text, or 64 hex digits."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN") or (len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)):
            return _public_from_text(text)
        return _public_from_text(Path(text).expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(BAD_KEY.format(key=value) + f" ({value}: no such file)") from None
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        raise ConfigError(BAD_KEY.format(key=value)) from None


# --------------------------------------------------------------------------- trust


def trust_entry(raw_public: bytes, owner: str | None, created: str | None = None, added: str | None = None) -> dict:
    """One key of a trust file (the public key as PEM)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return {
        "key_id": key_id(raw_public),
        "public_key": public_key_pem(Ed25519PublicKey.from_public_bytes(raw_public)),
        "owner": owner,
        "created": created,
        "added": added or _now(),
    }


def export_document(info: dict) -> dict:
    """``impactflow keys export``: a trust file holding one key (``key_info``'s)."""
    return {
        "format": TRUST_FORMAT,
        "keys": [trust_entry(bytes.fromhex(info["public_key"]), info.get("owner"), info.get("created"))],
    }


def parse_trust_document(doc: Any, where: str) -> list[dict]:
    """The keys of a trust document, each with ``raw`` (bytes) added; ConfigError if malformed."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ConfigError(BAD_TRUST.format(path=where, why='not {"keys": [...]} (see `impactflow keys export`)'))
    out = []
    for i, entry in enumerate(doc["keys"], 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("public_key"), str):
            raise ConfigError(BAD_TRUST.format(path=where, why=f"key {i}: no public_key"))
        try:
            raw = _public_from_text(entry["public_key"])
        except (ValueError, TypeError):
            raise ConfigError(
                BAD_TRUST.format(path=where, why=f"key {i}: public_key is not a PEM, hex or base64 Ed25519 public key")
            ) from None
        if entry.get("key_id") not in (None, key_id(raw)):
            raise ConfigError(
                BAD_TRUST.format(
                    path=where, why=f"key {i}: key_id {entry['key_id']!r} is not that of its public key ({key_id(raw)})"
                )
            )
        owner = entry.get("owner")
        out.append({**entry, "key_id": key_id(raw), "owner": None if owner is None else str(owner), "raw": raw})
    return out


def load_trust_file(path: Path) -> list[dict]:
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(BAD_TRUST.format(path=path, why=f"cannot be read ({exc.strerror or exc})")) from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(BAD_TRUST.format(path=path, why=f"not JSON ({exc})")) from None
    return parse_trust_document(doc, str(path))


def read_key_source(source: str) -> list[dict]:
    """Keys to trust from ``impactflow keys export`` output (a trust file), a PEM file or text,
    or 64 hex digits; each with ``raw``."""
    p = Path(source).expanduser()
    if p.is_file():
        text = p.read_text(encoding="utf-8", errors="replace")
        if text.lstrip().startswith("{"):
            return load_trust_file(p)
    raw = parse_public_key(source)
    return [{"key_id": key_id(raw), "owner": None, "raw": raw}]


def add_to_trust_file(path: Path, keys: list[dict], owner: str | None = None) -> list[tuple[str, str]]:
    """Merge ``keys`` into the trust file at ``path`` (created if absent); ``[(key_id, what)]``
    with what = added / already trusted / updated owner."""
    path = Path(path).expanduser()
    entries = [{k: v for k, v in e.items() if k != "raw"} for e in load_trust_file(path)] if path.exists() else []
    by_id = {e["key_id"]: e for e in entries}
    done = []
    for k in keys:
        label = owner if owner is not None else k.get("owner")
        if k["key_id"] in by_id:
            old = by_id[k["key_id"]]
            if label is not None and label != old.get("owner"):
                old["owner"] = label
                done.append((k["key_id"], "updated owner"))
            else:
                done.append((k["key_id"], "already trusted"))
            continue
        entry = trust_entry(k["raw"], label, k.get("created"))
        entries.append(entry)
        by_id[entry["key_id"]] = entry
        done.append((k["key_id"], "added"))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"format": TRUST_FORMAT, "keys": entries}, indent=2).encode() + b"\n")
    return done


def trusted_keys(
    trust_files: Iterable[Path] = (), pinned: bytes | None = None, include_own: bool = True
) -> dict[str, dict]:
    """``{key_id: {"raw", "owner", "source"}}``: the pinned key alone when one is given; else your
    own signing key (if it exists and reads) and every key of the trust files."""
    if pinned is not None:
        return {key_id(pinned): {"raw": bytes(pinned), "owner": None, "source": "the pinned key (--key)"}}
    out: dict[str, dict] = {}
    if include_own:
        path = signing_key_path()
        if path.exists():
            try:
                info = key_info(path)
            except ConfigError:
                info = None  # an unreadable own key trusts nothing (signing with it fails loudly)
            if info:
                out[info["key_id"]] = {
                    "raw": bytes.fromhex(info["public_key"]),
                    "owner": info["owner"],
                    "source": f"your own signing key ({path})",
                }
    for f in trust_files:
        for e in load_trust_file(Path(f)):
            out.setdefault(e["key_id"], {"raw": e["raw"], "owner": e.get("owner"), "source": f"trust file {f}"})
    return out


# --------------------------------------------------------------------------- statement


def _report_doc(root: Path) -> dict:
    try:
        doc = json.loads((root / REPORT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def subjects_for(predicate: dict) -> list[dict]:
    """The Statement's subjects, all derived from the predicate (sorted, deterministic)."""
    subs = [{"name": rel, "digest": {"sha256": meta["sha256"]}} for rel, meta in sorted(predicate["files"].items())]
    for m in predicate.get("models") or []:
        base = f"model/{m['name']}"
        subs += [
            {"name": f"{base}/{rel}", "digest": {"sha256": meta["sha256"]}} for rel, meta in sorted(m["files"].items())
        ]
        subs.append({"name": base, "uri": f"models:/{m['model_id']}", "digest": {"sha256": m["digest"]}})
        reg = m.get("registry")
        if reg:
            subs.append({"name": f"models:/{reg['name']}/{reg['version']}", "digest": {"sha256": m["digest"]}})
    for d in predicate.get("data") or []:
        subs.append({"name": f"data/{Path(str(d['path'])).name}", "digest": {"sha256": d["sha256"]}})
    return subs


def build_statement(
    root: Path,
    *,
    run_id: str | None,
    signer: dict,
    previous_report_sha256: str | None = None,
    models: Iterable[dict] = (),
    created_at: str | None = None,
) -> dict:
    """The in-toto Statement for the run folder ``root`` (see the module docstring). ``models``:
    ``[{name, role, mlflow_run_id, model_id, files, registry: {name, version} | None}]``
    (``impactflow.tasks.evidence.logged_models``); the data files and the summary/gates come from the report."""
    root = Path(root)
    files = hash_tree(root)
    report = _report_doc(root)
    summary: dict = report["summary"] if isinstance(report.get("summary"), dict) else {}
    data: dict = report["data"] if isinstance(report.get("data"), dict) else {}
    predicate = {
        "run_id": run_id,
        "created_at": created_at or _now(),
        "files": files,
        "report_sha256": files[REPORT_JSON]["sha256"] if REPORT_JSON in files else None,
        "previous_report_sha256": previous_report_sha256,
        "signer": dict(signer),
        "summary": {"status": summary.get("status"), "counts": summary.get("counts")},
        "gates": summary.get("gates") or [],
        "models": [{**m, "digest": model_digest(m["files"])} for m in models],
        "data": [
            {"path": str(f.get("path")), "sha256": f.get("sha256")}
            for f in data.get("files") or []
            if isinstance(f, dict) and f.get("sha256")
        ],
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects_for(predicate),
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def statement_problems(statement: Any) -> list[str]:
    """Structural check of an in-toto Statement v1 with our predicate (empty list = valid)."""
    if not isinstance(statement, dict):
        return ["the payload is not a JSON object"]
    out = []
    if statement.get("_type") != STATEMENT_TYPE:
        out.append(f"_type is {statement.get('_type')!r}, not {STATEMENT_TYPE}")
    subs = statement.get("subject")
    if not isinstance(subs, list) or not subs:
        out.append("subject: not a non-empty list")
    else:
        for s in subs:
            dig = s.get("digest") if isinstance(s, dict) else None
            if (
                not isinstance(s.get("name") if isinstance(s, dict) else None, str)
                or not isinstance(dig, dict)
                or not dig
                or not all(
                    isinstance(v, str) and v == v.lower() and all(c in "0123456789abcdef" for c in v)
                    for v in dig.values()
                )
            ):
                out.append(f"subject {s!r:.80}: needs a name and a digest of lowercase hex values")
                break
    if statement.get("predicateType") != PREDICATE_TYPE:
        out.append(f"predicateType is {statement.get('predicateType')!r}, not {PREDICATE_TYPE}")
    pred = statement.get("predicate")
    if not isinstance(pred, dict):
        out.append("predicate: not an object")
        return out
    signer = pred.get("signer")
    if (
        not isinstance(pred.get("files"), dict)
        or not isinstance(signer, dict)
        or not isinstance(pred.get("models", []), list)
        or not isinstance(pred.get("data", []), list)
    ):
        out.append("predicate: needs files, signer, models and data")
        return out
    listings = [pred["files"]] + [
        m.get("files")
        if isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("digest"), str)
        else None
        for m in pred.get("models", [])
    ]
    if not all(
        isinstance(f, dict)
        and all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
            for v in f.values()
        )
        for f in listings
    ):
        out.append("predicate: files and models[].files must map paths to {sha256, size}; models need name and digest")
    if not all(isinstance(d, dict) and isinstance(d.get("sha256"), str) for d in pred.get("data", [])):
        out.append("predicate: data entries need a sha256")
    try:
        if len(bytes.fromhex(str(signer.get("public_key")))) != 32:
            raise ValueError
    except ValueError:
        out.append("predicate.signer.public_key: not 64 hex digits")
    return out


def write_evidence(
    root: Path,
    *,
    run_id: str | None,
    signer: dict,
    previous_report_sha256: str | None,
    skip_dirs: tuple[str, ...] = ("reports",),
) -> tuple[Path, str]:
    """Stage one: hash what the report is built from (models, data docs, ...) into
    ``evidence.json`` before the report exists; returns its path and SHA-256 (shown on the
    report's cover). The final signed statement covers this file too."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    doc = {
        "schema": EVIDENCE_SCHEMA,
        "run_id": run_id,
        "files": hash_tree(root, exclude=(MANIFEST_NAME, EVIDENCE_NAME), skip_dirs=skip_dirs),
        "previous_report_sha256": previous_report_sha256,
        "signer": dict(signer),
    }
    data = canonical_json(doc)
    path = root / EVIDENCE_NAME
    write_atomic(path, data)
    return path, sha256_bytes(data)


def write_signed_manifest(
    root: Path,
    private_key,
    *,
    run_id: str | None,
    previous_report_sha256: str | None = None,
    owner: str | None = None,
    models: Iterable[dict] = (),
) -> dict:
    """Stage two: the Statement over everything under ``root`` (and ``models``), signed in a DSSE
    envelope, written atomically to ``manifest.intoto.jsonl``. Returns its path and SHA-256,
    the report's SHA-256, the signer and the counts."""
    root = Path(root)
    signer = signer_info(private_key, owner)
    statement = build_statement(
        root, run_id=run_id, signer=signer, previous_report_sha256=previous_report_sha256, models=models
    )
    envelope = dsse_envelope(canonical_json(statement), private_key, signer["key_id"])
    data = canonical_json(envelope) + b"\n"
    write_atomic(root / MANIFEST_NAME, data)
    pred = statement["predicate"]
    return {
        "manifest": str(root / MANIFEST_NAME),
        "manifest_sha256": sha256_bytes(data),
        "report_sha256": pred["report_sha256"],
        "key_id": signer["key_id"],
        "public_key": signer["public_key"],
        "owner": owner,
        "n_files": len(pred["files"]),
        "n_models": len(pred["models"]),
        "n_subjects": len(statement["subject"]),
    }


# --------------------------------------------------------------------------- verification


@dataclass
class VerifyResult:
    root: str
    ok: bool = False  # intact and trusted: exit 0
    intact: bool = False  # signature valid, every hash matches: else exit 4
    trusted: bool = False  # the key that verified is trusted: else (when intact) exit 5
    signature: str = "missing"  # valid | invalid | unreadable
    key_id: str | None = None  # the signer the statement names
    public_key: str | None = None
    owner: str | None = None  # the owner label the signer gives itself (unauthenticated)
    trusted_as: str | None = None  # owner label in your trust list, when trusted
    trust_source: str | None = None  # your own key / trust file X / the pinned key
    pinned: bool | None = None  # None: no key pinned; True/False: signer == pinned key
    run_id: str | None = None
    status: str | None = None  # the report's summary status, as signed
    manifest_sha256: str | None = None
    report_sha256: str | None = None
    previous_report_sha256: str | None = None
    n_files: int = 0
    models: list[dict] = field(default_factory=list)  # the predicate's models (for check_models)
    models_checked: bool = False  # re-hashed against MLflow (verify by run id, or a folder whose store is found)
    # the copy logged to MLflow, for a local folder: "verified", "not checked: <why>" (None: a run id)
    logged_copy: str | None = None
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per integrity failure, for humans

    def add_problems(self, problems: list[str]) -> None:
        self.problems += problems
        self._decide()

    def _decide(self) -> None:
        self.intact = self.signature == "valid" and not self.problems
        self.ok = self.intact and self.trusted

    @property
    def verdict(self) -> str:
        return "verified" if self.ok else "untrusted" if self.intact else "tampered"

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def find_manifest_dir(path: Path) -> Path:
    """The folder holding the signed statement: ``path`` itself or its parent (a run's reports/).
    DataError for none, and for a manifest of the old format."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    for cand in (path, path.parent):
        if (cand / MANIFEST_NAME).is_file():
            return cand
    for cand in (path, path.parent):
        old = cand / OLD_MANIFEST_NAME
        if old.is_file():
            try:
                schema = json.loads(old.read_bytes()).get("schema")
            except (ValueError, AttributeError):
                schema = None
            raise DataError(OLD_FORMAT.format(path=old, schema=schema or "unknown schema", name=MANIFEST_NAME))
    raise DataError(NO_MANIFEST.format(name=MANIFEST_NAME, where=path))


def verify(path: Path, trusted_key: bytes | None = None, trust: dict[str, dict] | None = None) -> VerifyResult:
    """Check the DSSE signature, the statement and every hash under the run folder, and whether
    the key that signed is trusted (``trust``: ``trusted_keys()``'s map; ``trusted_key`` pins
    one key instead). See the module docstring for what intact and trusted mean."""
    root = find_manifest_dir(Path(path))
    res = VerifyResult(root=str(root))
    if trust is None:
        trust = trusted_keys(pinned=trusted_key) if trusted_key is not None else {}
    data = (root / MANIFEST_NAME).read_bytes()
    res.manifest_sha256 = sha256_bytes(data)
    try:
        payload, ptype, sigs = parse_envelope(data)
    except ValueError as exc:
        res.signature = "unreadable"
        return _finish(res, [f"{MANIFEST_NAME}: {exc}"])
    if ptype != PAYLOAD_TYPE:
        res.signature = "unreadable"
        return _finish(res, [f"{MANIFEST_NAME}: payloadType {ptype!r} is not {PAYLOAD_TYPE}"])
    try:
        statement = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        statement = None
    shape = statement_problems(statement)
    if shape:
        res.signature = "unreadable"
        return _finish(res, [f"{MANIFEST_NAME}: not an impactflow in-toto statement ({'; '.join(shape)})"])
    pred = statement["predicate"]
    signer = pred["signer"]
    declared = bytes.fromhex(signer["public_key"])
    res.key_id, res.public_key, res.owner = key_id(declared), declared.hex(), signer.get("owner")
    res.run_id, res.status = pred.get("run_id"), (pred.get("summary") or {}).get("status")
    res.report_sha256, res.previous_report_sha256 = pred.get("report_sha256"), pred.get("previous_report_sha256")
    res.n_files, res.models = len(pred["files"]), list(pred.get("models") or [])
    problems: list[str] = []

    # which keys verify a signature (DSSE: keyid is only a hint, never a decision)
    message = pae(ptype, payload)
    candidates = {key_id(declared): declared, **{k: v["raw"] for k, v in trust.items()}}
    verified: dict[str, str | None] = {}  # key id -> the keyid the envelope gave that signature
    for hint, sig in sigs:
        for kid, raw in candidates.items():
            if ed25519_verifies(raw, sig, message):
                verified.setdefault(kid, hint)
    if not verified:
        res.signature = "invalid"
        problems.append(
            f"{MANIFEST_NAME}: no signature verifies with the signer's public key "
            "(the statement or the signature was edited)"
        )
    else:
        res.signature = "valid"
        for kid, hint in verified.items():
            if kid != res.key_id:
                problems.append(f"{MANIFEST_NAME}: signed by key {kid}, but the statement names signer {res.key_id}")
            if hint is not None and hint != kid:
                problems.append(f"{MANIFEST_NAME}: the envelope's keyid {hint} is not the key that signed ({kid})")
    if signer.get("key_id") not in (None, res.key_id):
        problems.append(f"{MANIFEST_NAME}: signer key_id {signer.get('key_id')!r} is not that of its public key")
    try:
        expected_subjects = subjects_for(pred)
    except (KeyError, TypeError, AttributeError):
        expected_subjects = None
    if statement["subject"] != expected_subjects:
        problems.append(f"{MANIFEST_NAME}: the subjects differ from the files, models and data the predicate lists")
    if trusted_key is not None:
        res.pinned = bytes(trusted_key) == declared
    if res.key_id in verified and res.key_id in trust:
        res.trusted = True
        res.trusted_as, res.trust_source = trust[res.key_id].get("owner"), trust[res.key_id].get("source")

    try:
        actual = hash_tree(root)
    except DataError as exc:
        problems.append(str(exc))
        actual = {}
    res.changed, res.missing, res.added = diff_files(pred["files"], actual)
    for rel in res.changed:
        problems.append(
            f"{rel}: content changed (sha256 {actual[rel]['sha256'][:12]}…, "
            f"signed {str(pred['files'][rel].get('sha256'))[:12]}…)"
        )
    problems += [f"{rel}: missing" for rel in res.missing]
    problems += [f"{rel}: not in the signed statement (added after signing)" for rel in res.added]
    if res.report_sha256 is not None and pred["files"].get(REPORT_JSON, {}).get("sha256") != res.report_sha256:
        problems.append(f"{MANIFEST_NAME}: report_sha256 disagrees with its files entry")
    problems += _cover_problems(root, res.previous_report_sha256, res.key_id, res.public_key)
    return _finish(res, problems)


def _finish(res: VerifyResult, problems: list[str]) -> VerifyResult:
    res.add_problems(problems)
    return res


def _cover_problems(
    root: Path, previous: str | None, signer_key_id: str | None, signer_public_key: str | None
) -> list[str]:
    """The report's integrity cover must agree with the evidence: its
    ``evidence_manifest_sha256`` is the hash of ``evidence.json``, its previous-report hash is
    the statement's, and the signer it names is the one that signed. (Reports without a cover,
    e.g. audit tables only, are not checked.)"""
    report, evid = root / REPORT_JSON, root / EVIDENCE_NAME
    try:
        cover = json.loads(report.read_text(encoding="utf-8")).get("integrity") if report.is_file() else None
    except (ValueError, UnicodeDecodeError, AttributeError):
        return []  # a changed report is already reported by its hash
    if not isinstance(cover, dict):
        return []
    out = []
    want = cover.get("evidence_manifest_sha256")
    got = sha256_file(evid) if evid.is_file() else None
    if want != got:
        out.append(
            f"{REPORT_JSON}: integrity.evidence_manifest_sha256 {str(want)[:12]}… does not match "
            f"{EVIDENCE_NAME} ({str(got)[:12]}…)"
        )
    if cover.get("previous_report_sha256") != previous:
        out.append(f"{REPORT_JSON}: integrity.previous_report_sha256 differs from the signed statement's")
    if cover.get("signer_key_id") != signer_key_id or cover.get("signer_public_key") != signer_public_key:
        out.append(
            f"{REPORT_JSON}: the cover names signer {cover.get('signer_key_id')}, but the evidence "
            f"was signed by {signer_key_id}"
        )
    return out


def model_problems(model: dict, actual: dict[str, dict] | None, where: str) -> list[str]:
    """Problems of one model's files re-hashed from ``where`` (None: not found) against the
    statement's entry."""
    label = f"model {model.get('name')} ({where})"
    if actual is None:
        return [f"{label}: not found"]
    changed, missing, added = diff_files(model.get("files") or {}, actual)
    out = [f"{label}: {rel} changed" for rel in changed]
    out += [f"{label}: {rel} missing" for rel in missing]
    out += [f"{label}: {rel} added after signing" for rel in added]
    return out
