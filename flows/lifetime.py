"""Nothing a CLI command starts outlives it, however the command ends.

Without ``PREFECT_API_URL`` Prefect starts a temporary API server (a uvicorn process, about
225 MB) the first time a flow needs one, and stops it from an ``atexit`` hook. A SIGKILL (OOM
killer, ``kill -9``, a CI timeout) runs no hook, and Python's default SIGTERM ends the process
without running one either: the server was orphaned, once per killed command. Prefect offers no
public switch for the server's lifetime (no parent-death signal, no ``preexec_fn``), so the
lifetime is tied from outside, with public OS interfaces only:

* ``terminate_as_interrupt`` turns SIGTERM and SIGHUP into ``KeyboardInterrupt`` in the main
  thread, so a terminated command unwinds like Ctrl-C: the pipeline ends its MLflow runs (KILLED),
  Prefect marks its flow run Crashed, and ``atexit`` stops the temporary server.
* ``start_guard`` starts one small watchdog process per CLI process (in its own session, so a
  terminal's Ctrl-C does not reach it first). Every ``POLL_S`` it records the command's
  descendant processes (pid + start time, so a reused pid is never hit); once the command is
  gone (its parent pid changes), it sends SIGTERM to every recorded descendant still alive,
  SIGKILL after ``GRACE_S``, and exits.

Not covered: a descendant that starts and is orphaned within one poll interval (half a second)
of a SIGKILL is not recorded; a SIGKILL of the watchdog itself. ``impactflow reconcile`` marks
what such a process left RUNNING in MLflow and Prefect. Linux only (``/proc``); elsewhere the
guard is not started and the README says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 5.0

_guard: subprocess.Popen | None = None


def supported() -> bool:
    return sys.platform.startswith("linux") and Path("/proc/self/stat").exists()


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time in clock ticks) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[19]  # fields 4 and 22 of stat(5), counted after "pid (comm)"
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``: ``{pid: start time}`` (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is not None:
            children.setdefault(st[0], []).append(int(entry.name))
            starts[int(entry.name)] = st[1]
    found: dict[int, str] = {}
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid in found or pid not in starts:
            continue
        found[pid] = starts[pid]
        todo.extend(children.get(pid, ()))
    return found


def _alive_same(pid: int, start: str) -> bool:
    st = _stat(pid)
    return st is not None and st[1] == start


def reap(recorded: dict[int, str], grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM every recorded process that is still the same process, SIGKILL after ``grace_s``.
    Returns the pids signalled."""
    hit = [pid for pid, start in recorded.items() if _alive_same(pid, start)]
    for pid in hit:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive_same(p, recorded[p]) for p in hit):
        time.sleep(0.1)
    for pid in hit:
        if _alive_same(pid, recorded[pid]):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return hit


def watch(parent: int, *, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> list[int]:
    """The watchdog's loop: record ``parent``'s descendants until ``parent`` is gone, then reap
    them. Returns the pids signalled."""
    me = os.getpid()
    recorded: dict[int, str] = {}
    while os.getppid() == parent:
        for pid, start in descendants(parent).items():
            if pid != me:
                recorded[pid] = start
        # forget processes that ended on their own (their pid may be reused by anyone)
        recorded = {pid: start for pid, start in recorded.items() if _alive_same(pid, start)}
        time.sleep(poll_s)
    return reap(recorded, grace_s)


def start_guard() -> subprocess.Popen | None:
    """Start this process's watchdog (once per process); None where /proc is missing."""
    global _guard
    if _guard is not None and _guard.poll() is None:
        return _guard
    if not supported():
        return None
    _guard = subprocess.Popen(
        [sys.executable, "-m", __name__, str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return _guard


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt(f"terminated by {signal.Signals(signum).name}")


def terminate_as_interrupt() -> None:
    """SIGTERM and SIGHUP unwind the main thread like Ctrl-C (no-op outside the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _interrupt)


def protect() -> None:
    """Both measures, for a command that may start a temporary Prefect server."""
    terminate_as_interrupt()
    start_guard()


if __name__ == "__main__":  # the watchdog process: python -m impactflow.flows.lifetime PARENT_PID
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(sys.argv[1]))
