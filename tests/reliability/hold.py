"""Kill a CLI process at a chosen stage (``tasks/progress.py``'s ``IMPACTFLOW_TEST_HOLD_AT`` hook):
read its stderr until the hold mark, SIGKILL it there."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time

from impactflow.tasks.progress import HOLD_MARK


def _reader(stream, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


def kill_when_held(proc, prefix: str = "", timeout: float = 420, settle: float = 0.0) -> str:
    """Wait for ``proc`` (stderr piped, text) to print the hold mark of a stage starting with
    ``prefix``, wait ``settle`` seconds, SIGKILL it; returns what it printed on stderr. Fails
    the test when it never gets there or ends first."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stderr, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            if line.startswith(HOLD_MARK):
                break
        held = any(s.startswith(HOLD_MARK + prefix) for s in seen)
        assert held, f"the run never reached stage {prefix!r}:\n{''.join(seen)[-3000:]}"
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(settle)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return "".join(seen)
