"""Atomic file writes whose temporary files name their writer, and the clean-up of orphans.

Every atomic write in impactflow goes: a temporary file beside the target, fsync, ``os.replace``.
A process killed between the first and the last step (SIGKILL, OOM, power) leaves the temporary
file behind; ``finally`` blocks do not run. So each temporary file is named

    .<target name>.<writer pid>.<random>.tmp        (``temp_prefix`` + ``mkstemp``'s random part)

and ``remove_orphans`` (called by ``impactflow reconcile`` and at the start of every pipeline
run, ``impactflow.tasks.reconcile``) removes those whose writer process is gone. A file whose writer is
alive (a run writing now) is left alone. ``models/dp.py`` (the DP noise memo) and
``data_contracts/validation_cache.py`` (the validation cache's staging folder) cannot import
this module (layering) and use the same naming inline.

Not guaranteed: a pid reused by a new process since the writer died keeps its orphan until that
process ends too; a temporary file written by another machine on a shared folder is judged by a
pid of this machine (name folders per machine, or let the writer's machine reconcile).
Temporary files of the earlier naming (no pid: ``.<name>.<random>.tmp``) are removed once they
are older than ``LEGACY_AFTER_S`` (an atomic write lasts milliseconds).
Pure standard library.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

SUFFIX = ".tmp"
# .<name>.<pid>.<random>.tmp : mkstemp/mkdtemp's random part is 8 characters of [a-z0-9_]
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<rand>[A-Za-z0-9_]{6,})\.tmp$")
LEGACY_RE = re.compile(r"^\.(?P<name>.+)\.(?P<rand>[A-Za-z0-9_]{8})\.tmp$")
LEGACY_AFTER_S = 3600.0


def temp_prefix(name: str) -> str:
    """The ``mkstemp``/``mkdtemp`` prefix of a temporary file for target ``name``."""
    return f".{name}.{os.getpid()}."


def mkstemp_for(path: Path) -> tuple[int, str]:
    """``tempfile.mkstemp`` beside ``path``, named after it and this process."""
    return tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=SUFFIX)


def write_atomic(path: Path, data: bytes | str, *, encoding: str = "utf-8") -> None:
    """``data`` into ``path`` atomically (temp file beside it, fsync, ``os.replace``); the temp
    file never outlives the call unless the process is killed (then ``remove_orphans`` takes it)."""
    path = Path(path)
    fd, tmp = mkstemp_for(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode(encoding) if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def writer_pid(name: str) -> int | None:
    """The writer's pid in a temporary file's name (None if the name is not ours)."""
    m = TEMP_RE.match(name)
    return int(m["pid"]) if m else None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a real writer pid: leave the file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OverflowError:
        return False
    return True


def orphan_temps(root: Path, *, now: float | None = None) -> list[Path]:
    """Temporary files/folders under ``root`` (recursively) whose writer is gone."""
    root = Path(root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        for name in [*files, *dirs]:
            if not name.startswith(".") or not name.endswith(SUFFIX):
                continue
            path = Path(folder) / name
            pid = writer_pid(name)
            if pid is not None:
                if not _alive(pid):
                    found.append(path)
            elif LEGACY_RE.match(name):
                try:
                    if now - path.lstat().st_mtime > LEGACY_AFTER_S:
                        found.append(path)
                except OSError:
                    pass
        dirs[:] = [d for d in dirs if not d.endswith(SUFFIX)]  # never walk into a staging folder
    return found


def remove_orphans(root: Path) -> list[Path]:
    """Remove ``orphan_temps(root)``; returns what was removed."""
    import shutil

    removed = []
    for path in orphan_temps(root):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            continue  # not ours to remove (permissions): left, and shown again next time
        removed.append(path)
    return removed


# errnos of a disk that cannot take the run's output: full, over quota, over RLIMIT_FSIZE, read-only
DISK_ERRNOS = {28: "ENOSPC", 122: "EDQUOT", 27: "EFBIG", 30: "EROFS"}
DISK_ERROR = (
    "cannot write {where}: {why}; the run ended FAILED and nothing was approved "
    "(free space, then `impactflow reconcile` tidies what it left)"
)


def disk_error(exc: BaseException) -> str | None:
    """The one ``error:`` line for an exception caused by a full, over-quota or read-only disk
    (an ``OSError`` with one of ``DISK_ERRNOS``, or SQLite's "database or disk is full",
    anywhere in its cause/context chain); None for any other exception."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            where = e.filename2 if e.filename2 else e.filename
            return DISK_ERROR.format(where=where or "the output", why=e.strerror or DISK_ERRNOS[e.errno])
        if "database or disk is full" in str(e):
            return DISK_ERROR.format(where="a SQLite database", why="database or disk is full")
        e = e.__cause__ or e.__context__
    return None
