"""impactflow.tasks.forked: a call in a forked child -- its value or its exception come back, a dead child
is an error (never a silent None), cancel kills it, and the child neither takes the parent's
logging locks nor outlives the parent."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from impactflow.data_contracts.errors import ConfigError
from impactflow.tasks.forked import ForkedCallError, available, fork_call

pytestmark = pytest.mark.skipif(not available(), reason="fork_call needs Linux fork()")
ROOT = Path(__file__).resolve().parents[2]


def _pid_and_sum(a, b=0):
    return os.getpid(), a + b


def test_value_comes_back_from_another_process():
    call = fork_call(_pid_and_sum, 2, b=3)
    pid, total = call.result()
    assert total == 5
    assert pid == call.pid != os.getpid()
    assert call.done.is_set() and call.peek() == ("ok", (pid, 5))


def _raise_config_error():
    raise ConfigError("data.path: no such file: x.csv")


def test_exception_comes_back_with_its_type_message_and_the_childs_traceback():
    call = fork_call(_raise_config_error)
    with pytest.raises(ConfigError, match="no such file: x.csv") as err:
        call.result()
    assert any("in the forked process" in n and "_raise_config_error" in n for n in err.value.__notes__)


class _Unpicklable(Exception):
    """Holds a lock, which no pickler can send (a custom ``__init__`` alone is not enough:
    importing dask's ``distributed`` registers a reducer that pickles such exceptions)."""


def _raise_unpicklable():
    err = _Unpicklable("x/y")
    err.lock = threading.Lock()
    raise err


def test_an_exception_that_cannot_be_pickled_arrives_as_runtime_error_with_its_name():
    with pytest.raises(RuntimeError, match="_Unpicklable: x/y"):
        fork_call(_raise_unpicklable).result()


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_child_killed_without_result_is_an_error_naming_the_signal():
    with pytest.raises(ForkedCallError, match="ended without a result \\(killed by signal 9\\)"):
        fork_call(_die).result()


def test_cancel_kills_a_running_child_and_peek_waits_for_nothing():
    call = fork_call(time.sleep, 60)
    assert call.peek() is None
    t0 = time.monotonic()
    call.cancel()
    assert time.monotonic() - t0 < 5
    with pytest.raises(ForkedCallError, match="killed by signal 9"):
        call.result()


class _LockedHandler(logging.Handler):
    """A handler whose own lock (not logging's, which Python re-creates at fork) is held by
    another thread of the parent while the child is forked."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Lock()

    def emit(self, record):
        with self.gate:
            pass


def _log_a_warning():
    logging.getLogger("impactflow.test").warning("from the child")
    return "logged"


def test_the_child_does_not_use_the_parents_log_handlers():
    handler = _LockedHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    held, release = threading.Event(), threading.Event()

    def holder():
        with handler.gate:
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    try:
        call = fork_call(_log_a_warning)
        finished = call.done.wait(30)  # with the parent's handler it would wait for ever
    finally:
        release.set()
        t.join()
        root.removeHandler(handler)
    if not finished:
        call.cancel()
    assert finished, "the child blocked on a lock held by another thread of the parent"
    assert call.result() == "logged"


def test_the_child_ends_when_its_parent_dies():
    script = textwrap.dedent("""
        import os, sys, time
        sys.path.insert(0, %r)
        from impactflow.tasks.forked import fork_call
        call = fork_call(time.sleep, 120)
        print(call.pid, flush=True)
        os._exit(0)  # the parent dies; the child is reparented
    """ % str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the child outlived its parent"
