"""flows.pipeline stops Prefect's sync engine from joining its heartbeat thread at the end of
every flow run (the thread sleeps in whole seconds: 0-1 s per run)."""
from __future__ import annotations

import inspect
import logging
import threading

from prefect import flow_engine

from flows.pipeline import _heartbeats_not_joined


class _Engine:
    """What ``_send_heartbeats`` reads of a flow run engine."""

    heartbeat_seconds = 30
    flow_run = None
    logger = logging.getLogger("test-heartbeats")

    def __init__(self):
        self.emitted = threading.Event()

    def _build_heartbeat_event_template(self):
        return None, None

    def _emit_flow_run_heartbeat(self, resource, related):
        self.emitted.set()


def _heartbeat_threads(before):
    return [t for t in threading.enumerate() if t not in before and t.daemon]


def test_prefects_function_still_has_the_shape_we_rely_on():
    _heartbeats_not_joined()  # applied once, at import: a second call changes nothing
    patched = flow_engine._send_heartbeats
    assert not getattr(patched.original, "impactflow_not_joined", False)
    assert patched.impactflow_not_joined
    assert "join_on_exit" in inspect.signature(patched.original).parameters
    assert "with _send_heartbeats(self)" in inspect.getsource(flow_engine.FlowRunEngine.run_context)


def test_the_flow_run_ends_without_joining_the_heartbeat_thread():
    for send, joined in ((flow_engine._send_heartbeats.original, True), (flow_engine._send_heartbeats, False)):
        before = set(threading.enumerate())
        engine = _Engine()
        with send(engine):
            assert engine.emitted.wait(10), "no heartbeat was sent"
            (thread,) = _heartbeat_threads(before)
        assert thread.is_alive() is not joined  # Prefect's own: joined; ours: still in its 1 s sleep
        thread.join(5)
        assert not thread.is_alive(), "the heartbeat thread did not stop on its own"
