"""Signed evidence: a SHA-256 manifest of every file of a run, signed with a local Ed25519 key.

Works offline; nothing here talks to MLflow or Prefect.

- ``build_manifest(root, ...)`` hashes every regular file under ``root`` (relative POSIX paths,
  sorted) except the manifest and its signature, and records the signer's public key.
- ``canonical_json`` gives the exact bytes that are written and signed (sorted keys, no spaces,
  UTF-8), so the manifest's SHA-256 is reproducible from the file alone.
- ``write_signed_manifest`` writes ``manifest.json`` + ``manifest.sig`` atomically.
- ``verify(root, trusted_key=None)`` recomputes every hash and checks the signature; it lists
  every changed, missing and added file. Any edited byte of any covered file fails it; so does
  an edited byte of the manifest (signature) or of the signature itself.

What a signature proves: the public key travels inside the manifest, so a valid signature on
its own proves only *integrity* (nothing changed since someone holding *that* key signed it).
Someone who rewrites the files can also re-sign them with their own key. It proves *identity*
only when the reviewer pins the key they trust (``trusted_key``, CLI ``--key``) and it matches.

Key management: the private key lives at ``$IMPACTFLOW_SIGNING_KEY`` if set, else
``$IMPACTFLOW_HOME/keys/ed25519.pem`` (``IMPACTFLOW_HOME`` defaults to ``~/.impactflow``),
PKCS#8 PEM, mode 0600, generated on first use. Creation is race-free: the key is written to
a private temporary file opened with ``O_CREAT | O_EXCL`` and then hard-linked to its final
name; ``link`` fails if the name exists, so two concurrent first uses end up with one key and
nobody ever reads a half-written file.

Signature scheme: Ed25519 (RFC 8032) via ``cryptography``; ``key_id`` = first 16 hex digits of
SHA-256 of the raw 32-byte public key.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from data_contracts.errors import ConfigError, DataError

MANIFEST_SCHEMA = "impactflow.evidence/1"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
EVIDENCE_NAME = "evidence.json"  # stage-one manifest of a run's inputs to the report (unsigned)
REPORT_JSON = "reports/impact_report.json"
KEY_ENV, HOME_ENV = "IMPACTFLOW_SIGNING_KEY", "IMPACTFLOW_HOME"
_CHUNK = 1 << 20

NO_MANIFEST = "no {name} in {where} (nor in its parent): not a signed impactflow run folder"
BAD_KEY = "cannot read the public key {key!r}: give a PEM file or 64 hex digits of a raw Ed25519 key"


# --------------------------------------------------------------------------- hashing


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_tree(root: Path, exclude: tuple[str, ...] = (MANIFEST_NAME, SIGNATURE_NAME),
              skip_dirs: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
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
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


# --------------------------------------------------------------------------- keys


def signing_key_path() -> Path:
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    home = Path(os.environ.get(HOME_ENV) or Path.home() / ".impactflow").expanduser()
    return home / "keys" / "ed25519.pem"


def load_or_create_signing_key(path: Path | None = None):
    """The Ed25519 private key at ``path`` (default ``signing_key_path()``), generated on first
    use (mode 0600; exactly one key even when several processes race to create it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path) if path is not None else signing_key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # atomic create-if-absent: the first process wins
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigError(f"signing key {path}: cannot be read as an unencrypted PEM private key "
                          f"({exc}); set {KEY_ENV} to another file or remove it to generate one") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {path}: not an Ed25519 key ({type(key).__name__})")
    return key


def raw_public_key(key) -> bytes:
    """Raw 32 bytes of a public key (or of a private key's public half)."""
    from cryptography.hazmat.primitives import serialization

    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw_public: bytes) -> str:
    return sha256_bytes(raw_public)[:16]


def signer_info(private_key) -> dict[str, str]:
    raw = raw_public_key(private_key)
    return {"algorithm": "ed25519", "public_key": raw.hex(), "key_id": key_id(raw)}


def public_key_pem(private_key) -> str:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def parse_public_key(value: str) -> bytes:
    """Raw 32 bytes from a PEM file path, PEM text, or 64 hex digits."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = value.strip()
    try:
        if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
            return bytes.fromhex(text)
        data = text.encode() if text.startswith("-----BEGIN") else Path(text).expanduser().read_bytes()
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:  # a private key file: pin its public half
            key = serialization.load_pem_private_key(data, password=None).public_key()
    except (OSError, ValueError, TypeError):
        raise ConfigError(BAD_KEY.format(key=value)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(BAD_KEY.format(key=value))
    return raw_public_key(key)


# --------------------------------------------------------------------------- manifest


def build_manifest(root: Path, *, run_id: str | None, signer: dict, previous_report_sha256: str | None = None,
                   created_at: str | None = None, extra: dict | None = None) -> dict:
    """The manifest document for every file under ``root`` (see the module docstring)."""
    root = Path(root)
    files = hash_tree(root)
    report = files.get(REPORT_JSON)
    return {
        "schema": MANIFEST_SCHEMA,
        "run_id": run_id,
        "created_at": created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hash": "sha256",
        "files": files,
        "report_sha256": report["sha256"] if report else None,
        "previous_report_sha256": previous_report_sha256,
        "signer": dict(signer),
        **({"extra": extra} if extra else {}),
    }


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_evidence(root: Path, *, run_id: str | None, signer: dict, previous_report_sha256: str | None,
                   skip_dirs: tuple[str, ...] = ("reports",)) -> tuple[Path, str]:
    """Stage one: hash what the report is built from (models, data docs, ...) into
    ``evidence.json`` before the report exists; returns its path and SHA-256 (shown on the
    report's cover). The final signed manifest covers this file too."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    doc = {"schema": MANIFEST_SCHEMA + "#evidence", "run_id": run_id,
           "files": hash_tree(root, exclude=(MANIFEST_NAME, SIGNATURE_NAME, EVIDENCE_NAME), skip_dirs=skip_dirs),
           "previous_report_sha256": previous_report_sha256, "signer": dict(signer)}
    data = canonical_json(doc)
    path = root / EVIDENCE_NAME
    _atomic_write(path, data)
    return path, sha256_bytes(data)


def write_signed_manifest(root: Path, private_key, *, run_id: str | None,
                          previous_report_sha256: str | None = None, extra: dict | None = None) -> dict:
    """Stage two: hash every file under ``root``, sign, write ``manifest.json`` and
    ``manifest.sig`` atomically. Returns paths, the manifest's SHA-256 and the report's."""
    root = Path(root)
    manifest = build_manifest(root, run_id=run_id, signer=signer_info(private_key),
                              previous_report_sha256=previous_report_sha256, extra=extra)
    data = canonical_json(manifest)
    signature = private_key.sign(data)
    _atomic_write(root / MANIFEST_NAME, data)
    _atomic_write(root / SIGNATURE_NAME, base64.b64encode(signature) + b"\n")
    return {"manifest": str(root / MANIFEST_NAME), "signature": str(root / SIGNATURE_NAME),
            "manifest_sha256": sha256_bytes(data), "report_sha256": manifest["report_sha256"],
            "key_id": manifest["signer"]["key_id"], "public_key": manifest["signer"]["public_key"],
            "n_files": len(manifest["files"])}


# --------------------------------------------------------------------------- verification


@dataclass
class VerifyResult:
    root: str
    ok: bool = False
    signature: str = "missing"  # valid | invalid | missing | unreadable
    key_id: str | None = None
    public_key: str | None = None
    pinned: bool | None = None  # None: no key pinned; True/False: manifest key == pinned key
    run_id: str | None = None
    manifest_sha256: str | None = None
    report_sha256: str | None = None
    previous_report_sha256: str | None = None
    n_files: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per failure, for humans

    def to_dict(self) -> dict:
        return asdict(self)


def find_manifest_dir(path: Path) -> Path:
    """The folder holding ``manifest.json``: ``path`` itself or its parent (a run's reports/)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    for cand in (path, path.parent):
        if (cand / MANIFEST_NAME).is_file():
            return cand
    raise DataError(NO_MANIFEST.format(name=MANIFEST_NAME, where=path))


def verify(path: Path, trusted_key: bytes | None = None) -> VerifyResult:
    """Recompute every hash under the manifest's folder and check the Ed25519 signature.

    ``ok`` only if the signature is valid, the key matches ``trusted_key`` when one is given,
    no covered file changed or disappeared, and no file was added."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    root = find_manifest_dir(Path(path))
    res = VerifyResult(root=str(root))
    data = (root / MANIFEST_NAME).read_bytes()
    res.manifest_sha256 = sha256_bytes(data)
    try:
        manifest = json.loads(data.decode("utf-8"))
        files = manifest["files"]
        signer = manifest["signer"]
        pub = bytes.fromhex(signer["public_key"])
        assert isinstance(files, dict) and len(pub) == 32
    except (ValueError, KeyError, TypeError, AssertionError, UnicodeDecodeError):
        res.signature = "unreadable"
        res.problems.append(f"{MANIFEST_NAME}: not a readable impactflow manifest")
        return res
    res.run_id, res.key_id, res.public_key = manifest.get("run_id"), key_id(pub), pub.hex()
    res.report_sha256 = manifest.get("report_sha256")
    res.previous_report_sha256 = manifest.get("previous_report_sha256")
    res.n_files = len(files)
    if signer.get("key_id") != res.key_id:
        res.problems.append(f"{MANIFEST_NAME}: key_id {signer.get('key_id')!r} is not that of its public key")

    sig_path = root / SIGNATURE_NAME
    if not sig_path.is_file():
        res.problems.append(f"{SIGNATURE_NAME}: missing")
    else:
        try:
            sig = base64.b64decode(sig_path.read_bytes().strip(), validate=True)
            Ed25519PublicKey.from_public_bytes(pub).verify(sig, data)
            res.signature = "valid"
        except (InvalidSignature, ValueError):
            res.signature = "invalid"
            res.problems.append(f"{SIGNATURE_NAME}: signature does not match {MANIFEST_NAME} "
                                "(the manifest or the signature was edited)")
    if trusted_key is not None:
        res.pinned = bytes(trusted_key) == pub
        if not res.pinned:
            res.problems.append(f"signer key {res.key_id} is not the pinned key {key_id(bytes(trusted_key))}")

    try:
        actual = hash_tree(root)
    except DataError as exc:
        res.problems.append(str(exc))
        actual = {}
    for rel, meta in sorted(files.items()):
        got = actual.get(rel)
        if got is None:
            res.missing.append(rel)
            res.problems.append(f"{rel}: missing")
        elif got["sha256"] != meta.get("sha256") or got["size"] != meta.get("size"):
            res.changed.append(rel)
            res.problems.append(f"{rel}: content changed (sha256 {got['sha256'][:12]}…, "
                                f"manifest {str(meta.get('sha256'))[:12]}…)")
    for rel in sorted(set(actual) - set(files)):
        res.added.append(rel)
        res.problems.append(f"{rel}: not in the manifest (added after signing)")
    if res.report_sha256 is not None and files.get(REPORT_JSON, {}).get("sha256") != res.report_sha256:
        res.problems.append(f"{MANIFEST_NAME}: report_sha256 disagrees with its files entry")
    res.problems += _cover_problems(root, res.previous_report_sha256)
    res.ok = not res.problems and res.signature == "valid"
    return res


def _cover_problems(root: Path, previous: str | None) -> list[str]:
    """The report's integrity cover must agree with the evidence it names: its
    ``evidence_manifest_sha256`` is the hash of ``evidence.json`` and its previous-report hash
    is the manifest's. (Reports without a cover, e.g. older runs, are not checked.)"""
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
        out.append(f"{REPORT_JSON}: integrity.evidence_manifest_sha256 {str(want)[:12]}… does not match "
                   f"{EVIDENCE_NAME} ({str(got)[:12]}…)")
    if cover.get("previous_report_sha256") != previous:
        out.append(f"{REPORT_JSON}: integrity.previous_report_sha256 differs from the manifest's")
    return out
