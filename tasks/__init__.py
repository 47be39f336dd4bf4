"""Thin Prefect tasks over the pure functions of models/, audits/ and data_contracts/."""

from __future__ import annotations

from impactflow.errors import ImpactflowError


def retry_io_only(task, task_run, state) -> bool:
    """Retry condition for I/O tasks: retry transient failures, never a user error
    (bad data or config fails the same way every time; retrying only delays the message)."""
    try:
        state.result()
    except ImpactflowError:
        return False
    except Exception:
        return True
    return False
