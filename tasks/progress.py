"""A hook through which the CLI shows epoch progress (Rich) without the flow knowing about it.

The CLI installs a reporter before it calls the flow; tasks pass ``epoch_callback(name)``
to the training loop. With no reporter installed (tests, deployments) it is a no-op.
"""
from __future__ import annotations

from typing import Callable, Protocol


class Reporter(Protocol):
    def epoch(self, model: str, row: dict[str, float]) -> None: ...

    def stage(self, name: str) -> None: ...


_reporter: Reporter | None = None


def install(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def stage(name: str) -> None:
    if _reporter is not None:
        _reporter.stage(name)


def epoch_callback(model: str) -> Callable[[dict[str, float]], None] | None:
    if _reporter is None:
        return None
    rep = _reporter
    return lambda row: rep.epoch(model, row)
