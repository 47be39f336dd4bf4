"""Run one function in a forked child process while the caller goes on (``fork_call``).

Used by the pipeline to validate the data contract beside training (``impactflow.tasks.data.start_validation``):
GX validation is single-threaded Python, so on a machine with a spare core it costs no wall time
when it runs in another process. ``fork()`` shares the loaded frame without copying or pickling it;
only the result comes back, pickled, through a pipe.

Forking a process that has other threads (Prefect's) is safe only for code that takes no lock
another thread may have held at the fork, so the child:

* gets fresh ``sys.stdout``/``sys.stderr`` objects and a fresh logging set-up (one plain stderr
  handler at WARNING): the parent's handlers (Prefect's Rich console, its API log queue) and their
  locks are left alone;
* restores the default SIGINT (Ctrl-C stops it at once) and exits with ``os._exit`` (no atexit
  hooks, no flushing of the parent's buffers);
* stops itself when the parent process dies (a watchdog thread polls ``os.getppid()``), so a
  killed run leaves nothing behind.

Call ``fork_call`` from the thread that runs the flow (not from a worker thread): that thread
then holds no lock of the libraries the child uses. Linux/POSIX only (``available()``).
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

__all__ = ["ForkedCall", "ForkedCallError", "available", "fork_call"]


class ForkedCallError(RuntimeError):
    """The child ended without sending a result (killed, or crashed in C code)."""


def available() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux")


class ForkedCall:
    """A call running in a forked child. ``done`` is set once its outcome arrived (or the child
    ended without one); ``result()`` waits, reaps the child and returns the value or raises the
    child's exception; ``cancel()`` kills the child."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self.pid = pid
        self.done = threading.Event()
        self._outcome: tuple[str, Any] | None = None
        self._status: int | None = None
        self._reader = threading.Thread(target=self._read, args=(read_fd,), name=f"forked-call-{pid}", daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            data = pipe.read()  # until the child closes its end (or dies)
        try:
            self._outcome = pickle.loads(data) if data else None
        except Exception as exc:  # a truncated pickle: the child died while writing
            self._outcome = ("error", ForkedCallError(f"process {self.pid} sent an unreadable result: {exc}"))
        self.done.set()

    def peek(self) -> tuple[str, Any] | None:
        """The outcome if it has arrived: ("ok", value) or ("error", exception); else None."""
        return self._outcome if self.done.is_set() else None

    def result(self) -> Any:
        self._reader.join()
        self._reap()
        if self._outcome is None:
            raise ForkedCallError(f"process {self.pid} ended without a result ({_describe(self._status)})")
        kind, value = self._outcome
        if kind == "error":
            raise value
        return value

    def cancel(self) -> None:
        """Kill the child (if it still runs) and reap it; idempotent."""
        if self._status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()

    def _reap(self) -> None:
        """Wait for the child's exit status (once)."""
        if self._status is not None:
            return
        try:
            self._status = os.waitpid(self.pid, 0)[1]
        except ChildProcessError:  # already reaped elsewhere
            self._status = 0


def _describe(status: int | None) -> str:
    if status is None:
        return "still running"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def fork_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ForkedCall:
    """Start ``fn(*args, **kwargs)`` in a forked child; returns at once (see the module doc)."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_fd)
            _child_setup(parent)
            try:
                data = pickle.dumps(("ok", fn(*args, **kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:  # sent to the parent, which raises it
                data = pickle.dumps(("error", _portable(exc)), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    return ForkedCall(pid, read_fd)


def _child_setup(parent: int) -> None:
    import logging

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # new stream objects (fresh locks) on the same file descriptors
    sys.stdout = open(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace", closefd=True)
    sys.stderr = open(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace", closefd=True)
    manager = logging.Logger.manager
    for logger in [logging.getLogger(), *(x for x in manager.loggerDict.values() if isinstance(x, logging.Logger))]:
        logger.handlers = []
        logger.propagate = True
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)

    def watchdog() -> None:
        while True:
            time.sleep(0.25)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError with its type and message; the
    child's traceback is attached as a note either way."""
    note = "in the forked process:\n" + "".join(traceback.format_exception(exc)).rstrip()
    try:
        out = pickle.loads(pickle.dumps(exc))
        if type(out) is not type(exc):
            raise TypeError
    except Exception:
        out = RuntimeError(f"{type(exc).__name__}: {exc}")
    out.__traceback__ = None
    out.__cause__ = out.__context__ = None
    out.add_note(note)
    return out
