"""A hook through which the CLI shows epoch progress (Rich) without the flow knowing about it.

The CLI installs a reporter before it calls the flow; tasks pass ``epoch_callback(name)``
to the training loop. With no reporter installed (tests, deployments) it is a no-op.
"""

from __future__ import annotations

import os
from typing import Callable, Protocol


class Reporter(Protocol):
    def epoch(self, model: str, row: dict[str, float]) -> None: ...

    def stage(self, name: str) -> None: ...

    def rows(self, name: str, done: int, total: int | None, seconds: float) -> None: ...


_reporter: Reporter | None = None


def install(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def stage(name: str) -> None:
    if _reporter is not None:
        _reporter.stage(name)
    if HOLD_ENV in os.environ:
        _hold(name, os.environ[HOLD_ENV])


# Test-only hook (tests/reliability/test_kill_stages.py): with IMPACTFLOW_TEST_HOLD_AT=<prefix>
# the process stops at the start of the first stage whose name starts with <prefix>, says so on
# stderr ("impactflow-test-hold: <stage>") and waits there to be killed, so a test can SIGKILL a
# real run at a chosen stage. Unset (always, outside that test), it costs one dict lookup.
HOLD_ENV = "IMPACTFLOW_TEST_HOLD_AT"
HOLD_MARK = "impactflow-test-hold: "


def _hold(name: str, prefix: str) -> None:
    if not prefix or not name.startswith(prefix):
        return
    import sys
    import time

    sys.stderr.write(f"{HOLD_MARK}{name}\n")
    sys.stderr.flush()
    while True:
        time.sleep(3600)


def rows_callback(name: str, total: int | None) -> Callable[..., None] | None:
    """A counter of rows read (a streamed audit): called with each batch's row count, and once
    with ``final=True`` when the pass ends; the reporter shows the rows so far and the rate since
    this counter was made (the pass's start)."""
    if _reporter is None:
        return None
    import time

    rep, done, start = _reporter, [0], time.perf_counter()

    def add(rows: int, final: bool = False) -> None:
        done[0] += rows
        rep.rows(name, done[0], done[0] if final else total, time.perf_counter() - start)

    return add


def epoch_callback(model: str) -> Callable[[dict[str, float]], None] | None:
    if _reporter is None:
        return None
    rep = _reporter
    return lambda row: rep.epoch(model, row)
