"""A kept local Prefect server, so repeated CLI runs do not each pay a temporary one.

Without ``PREFECT_API_URL`` every Prefect process starts a temporary server (10-20 s on 2
cores, measured: about half of a 30 s default run). ``impactflow server start`` starts
``prefect server start`` once, in the background, on 127.0.0.1, with the usual
``PREFECT_HOME`` (its SQLite database keeps the runs, so the Prefect UI shows them), and
records it in ``$PREFECT_HOME/impactflow-server.json``. Every later ``impactflow`` command
that needs Prefect and finds no ``PREFECT_API_URL`` uses that server when it answers its health
check; ``impactflow server stop`` ends it. An explicit ``PREFECT_API_URL`` always wins, and
with no kept server the CLI falls back to Prefect's temporary server, as before.

Standard library only (no Prefect import): it runs before the CLI imports anything heavy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from impactflow.errors import ConfigError

STATE_NAME = "impactflow-server.json"
DEFAULT_PORT = 4200
NOT_RUNNING = "no kept Prefect server is running (start one with `impactflow server start`)"


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def state_file() -> Path:
    return prefect_home() / STATE_NAME


def _healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:  # noqa: S310 (local URL)
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_json(path: Path) -> dict | None:
    """A state file's content; None if it is missing or damaged."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_state() -> dict | None:
    return read_json(state_file())


def running_api_url() -> str | None:
    """The kept server's API URL if its process is alive and its health check answers."""
    state = read_state()
    if not state or not _alive(int(state.get("pid", -1))):
        return None
    return state["api_url"] if _healthy(state["api_url"]) else None


def use_kept_server() -> str | None:
    """Point this process at the kept server when ``PREFECT_API_URL`` is unset; return its URL."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    url = running_api_url()
    if url:
        os.environ["PREFECT_API_URL"] = url
    return url


def start(port: int = DEFAULT_PORT, timeout_s: float = 180.0) -> dict:
    """Start ``prefect server start`` detached; wait for its health check; record it."""
    url = running_api_url()
    if url:
        return {**(read_state() or {}), "already_running": True}
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    api_url = f"http://127.0.0.1:{port}/api"
    if _healthy(api_url):
        raise ConfigError(
            f"port {port} already serves a Prefect API that impactflow did not start: "
            f"set PREFECT_API_URL={api_url} to use it, or pick --port"
        )
    log = home / "impactflow-server.log"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    cmd = [
        str(prefect) if prefect.exists() else "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(home),
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-5:]
            raise ConfigError(f"prefect server exited with code {proc.returncode}; see {log}: " + " | ".join(tail))
        if _healthy(api_url):
            break
        time.sleep(0.5)
    else:
        _terminate(proc.pid)
        raise ConfigError(f"prefect server did not answer {api_url}/health within {timeout_s:.0f} s; see {log}")
    state = {
        "pid": proc.pid,
        "port": port,
        "api_url": api_url,
        "ui_url": f"http://127.0.0.1:{port}",
        "log": str(log),
        "prefect_home": str(home),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = state_file().with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, state_file())  # atomic: a reader never sees half a state file
    return {**state, "already_running": False}


def _terminate(pid: int, timeout_s: float = 30.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)  # the server and its uvicorn children share the session
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def stop() -> dict:
    """Stop the kept server and forget it."""
    state = read_state()
    if not state:
        raise ConfigError(NOT_RUNNING)
    _terminate(int(state["pid"]))
    state_file().unlink(missing_ok=True)
    return state
