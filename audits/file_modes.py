"""Private files: stores and keys that other local users must not read (issue 28, defect 3).

``create_private`` makes an absent file with mode 0600 before a library opens it (SQLite then
writes its journal with the database file's mode; the umask would give 0644).
``warn_if_shared`` prints one ``warning:`` line on stderr (once per file and process) when a
secret-bearing file is readable or writable by its group or others: the signing key (anyone
who reads it can sign as you) and the privacy ledger (what was spent on which dataset). A
warning, not a refusal: a shared group-readable folder can be deliberate; ``chmod 600`` fixes it.
Pure stdlib (no prefect/mlflow): ``impactflow.audits.evidence`` and ``tasks`` both use it.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

SHARED = "warning: {what} {path} is readable by other users (mode {mode:04o}); run: chmod 600 {path}"
_WARNED: set[str] = set()


def create_private(path: Path | str) -> bool:
    """Create ``path`` empty with mode 0600 if it does not exist; True when this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def shared_mode(path: Path | str) -> int | None:
    """The permission bits of ``path`` when its group or others have any access, else None
    (also None when it does not exist or cannot be examined)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def warn_if_shared(path: Path | str, what: str) -> str | None:
    """Print (once per path and process) and return the ``warning:`` line for a shared file."""
    mode = shared_mode(path)
    if mode is None:
        return None
    line = SHARED.format(what=what, path=path, mode=mode)
    key = str(Path(path).resolve())
    if key not in _WARNED:
        _WARNED.add(key)
        print(line, file=sys.stderr, flush=True)
    return line
