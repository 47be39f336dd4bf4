"""The ``impactflow`` command line (Typer + Rich).

The one place that turns domain errors into exit codes:
0 run completed and every gate was measured and passed; 3 completed but a gate failed or was not
measured (incomplete; report still logged, no champion alias);
2 usage error (Typer); 1 any other error (bad data, bad config, runtime failure); 130 interrupted
(Ctrl-C, SIGTERM or SIGHUP: the runs end KILLED, see flows/lifetime.py).
Heavy libraries are imported inside the commands, so ``impactflow --help`` is instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_GATES = 0, 1, 2, 3

app = typer.Typer(
    name="impactflow",
    help="Responsible model training: validate, train (optionally with DP), audit, report, track.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = typer.Option(None, "--config", "-c", help="Preset name (e.g. 'tabular') or path to a YAML config.")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config key: --set train.device=cpu (repeatable).")


def _quiet_environment(verbose: bool) -> None:
    """Defaults for a local run; anything already set in the environment wins."""
    defaults = {
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "GX_ANALYTICS_ENABLED": "false",
    }
    if not verbose:
        # Prefect's console would print tracebacks of user errors; the API still gets every log.
        defaults["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
        defaults["PREFECT_LOGGING_LEVEL"] = "WARNING"
        defaults["PREFECT_SERVER_LOGGING_LEVEL"] = "ERROR"
        # MLflow's INFO/WARNING lines (DB migrations, cloudpickle notice, signature checks)
        defaults["MLFLOW_LOGGING_LEVEL"] = "ERROR"
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
    import logging
    import warnings

    if not verbose:
        logging.getLogger("alembic").setLevel(logging.ERROR)
    for pattern in ("Secure RNG turned off", "Full backward hook", "Optimal order is the"):
        warnings.filterwarnings("ignore", message=pattern)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _fail(message: str, code: int = EXIT_ERROR) -> None:
    _console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


EXIT_INTERRUPTED = 130


def _interrupted(exc: KeyboardInterrupt) -> None:
    """Ctrl-C, SIGTERM or SIGHUP (flows/lifetime.py): the runs were ended KILLED, nothing approved."""
    why = str(exc) or "interrupted (Ctrl-C)"
    _fail(
        f"{why}: the MLflow runs were ended as KILLED; `impactflow reconcile` tidies what a harder kill leaves",
        EXIT_INTERRUPTED,
    )


def _load(config: Optional[str], overrides: Optional[List[str]]):
    from impactflow.errors import ImpactflowError
    from impactflow.flows.config import load_config

    try:
        return load_config(config, overrides or [])
    except ImpactflowError as exc:
        _fail(str(exc))


class RichReporter:
    """Epoch progress bars (one per model) and stage lines, for interactive runs."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            # Rich's default of 10 redraws a second re-renders the table in a thread beside the
            # training (~1% of a core, GIL-bound); epochs take longer than a quarter second
            refresh_per_second=4,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def stage(self, name: str) -> None:
        self.progress.console.print(f"[dim]•[/] {name}")

    def rows(self, name: str, done: int, total: Optional[int], seconds: float) -> None:
        """A streamed audit's rows read so far and rows per second since the pass began; ``total``
        None: not known (a query) until the pass ends (then ``total == done``: the bar completes)."""
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, info="")
        rate = done / max(seconds, 1e-9)
        self.progress.update(self.tasks[name], total=total, completed=done, info=f"{done:,} rows, {rate:,.0f} rows/s")

    def epoch(self, model: str, row: dict) -> None:
        if model not in self.tasks:
            self.tasks[model] = self.progress.add_task(f"train {model}", total=int(row["epochs"]), info="")
        info = f"val_loss={row['val_loss']:.4f}"
        if "epsilon_rdp" in row:
            info += f" ε≤{row['epsilon_rdp']:.3f} (RDP)"
        if row.get("stopped_early"):
            info = f"stopped early at epoch {int(row['epoch'])} (best {int(row['best_epoch'])}) {info}"
        self.progress.update(self.tasks[model], completed=int(row["epoch"]), info=info)


@app.command()
def run(
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = typer.Option(
        None, "--set", "-s", help="Override a config key: --set privacy.enabled=true (repeatable)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs (and tracebacks)."),
) -> None:
    """Run the pipeline: validate -> train -> audit -> report -> MLflow. Exit 3 if a gate fails."""
    _quiet_environment(verbose)
    cfg = _load(config, set_)
    console = _console()
    from impactflow.errors import ImpactflowError
    from impactflow.tasks import progress

    _use_kept_server(console)
    command = " ".join(["impactflow", *sys.argv[1:]])
    console.print(
        f"[bold]impactflow[/] preset [cyan]{cfg.preset}[/] · family {cfg.model.family} · "
        f"DP {'on' if cfg.privacy.enabled else 'off'}"
    )
    try:
        with RichReporter(console) as reporter:
            progress.install(reporter)
            from impactflow.flows.pipeline import run_pipeline

            summary = run_pipeline(cfg, command=command)
    except ImpactflowError as exc:
        _fail(str(exc))
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except Exception as exc:  # a full or read-only disk mid-run: one line, not a traceback
        from impactflow.audits.atomic import disk_error

        line = disk_error(exc)
        if line is None:
            raise
        _fail(line)
    finally:
        progress.install(None)
    _print_summary(console, summary)
    raise typer.Exit(EXIT_OK if summary["status"] == "pass" else EXIT_GATES)


def _use_kept_server(console) -> None:
    """Point Prefect at the kept local server if one answers (and PREFECT_API_URL is unset), and
    say which Prefect this command uses and whether it was forked from the warm runner."""
    from impactflow.flows import local_server, warm

    kept = local_server.use_kept_server()
    url = os.environ.get("PREFECT_API_URL")
    if kept is None and url and url == (local_server.read_state() or {}).get("api_url"):
        kept = url  # set by this command already (audit: before it imports Prefect)
    if not warm.IN_CHILD:  # the warm runner's client forwards signals and its watchdog kills the child
        from impactflow.flows import lifetime

        lifetime.protect()  # nothing this command starts (a temporary Prefect server) outlives it
    if warm.IN_CHILD:  # the client already pointed the environment at the kept server
        url = os.environ.get("PREFECT_API_URL")
        kept = url if url and url == (local_server.read_state() or {}).get("api_url") else None
        console.print(
            f"[dim]warm runner: run process {os.getpid()}, forked with the libraries imported "
            "(`impactflow server stop` ends it)[/]"
        )
    if kept:
        console.print(f"[dim]Prefect: the kept local server at {kept} (`impactflow server stop` ends it)[/]")
    elif not os.environ.get("PREFECT_API_URL"):
        if local_server.read_state():
            console.print(
                "[yellow]Prefect: the kept local server does not answer; using a temporary one "
                "(`impactflow server stop`, then `start`, to replace it)[/]"
            )


def _print_summary(console, summary: dict) -> None:
    from impactflow.tasks.tracking import public_uri

    _print_gates(console, summary["gates"])
    for name, m in summary["models"].items():
        head = m["headline"]
        dp = m["dp"]
        eps = f", ε={dp['epsilon']:.3f} (δ={dp['delta']:g})" if dp.get("enabled") else ""
        value = "not measured" if head["value"] is None else f"{head['value']:.4f}"
        console.print(f"  {name}: {head['label']} {value}{eps}", markup=False)
        reg = m.get("registry")
        if reg:
            alias = (
                "champion" if reg["champion"] else f"{reg.get('not_aliased') or 'gates ' + reg['gates']}: not aliased"
            )
            console.print(f"    registered {reg['name']} version {reg['version']} ({alias})", markup=False)
    status = summary["status"].upper()
    colour = "green" if summary["status"] == "pass" else "red"
    missing = summary.get("incomplete") or []
    if summary["status"] == "incomplete":
        names = ", ".join(f"{g['model']}:{g['gate']}" for g in missing[:5]) + (" ..." if len(missing) > 5 else "")
        status += f" ({len(missing)} gate(s) not measured: {names})" if missing else " (no gate was measured)"
    console.print(
        f"Overall: [bold {colour}]{status}[/] (decided by the candidate models; baselines are references)",
        soft_wrap=True,
    )
    for g in missing[:10]:
        console.print(f"  not measured: {g['model']}:{g['gate']} — {g['reason']}", markup=False, soft_wrap=True)
    out = [
        f"Report:  {Path(summary['report']['html']).resolve()}",
        f"         {Path(summary['report']['json']).resolve()}",
        f"MLflow:  run {summary['parent_run_id']} in experiment '{summary['experiment']}' "
        f"({public_uri(summary['tracking_uri'])})",  # again here: `run` and `audit` both print it
        f"         {summary['mlflow_url']}  (start the UI with: impactflow ui)",
    ]
    for line in out:  # paths must stay copyable: never wrapped
        console.print(line, soft_wrap=True, markup=False)
    console.print(exit_line(summary), soft_wrap=True, markup=False)


def exit_line(summary: dict) -> str:
    """The last line of `run` and `audit`: the exit code and what it means, for users who have
    not read the README's exit codes."""
    if summary["status"] == "pass":
        return f"exit {EXIT_OK}: completed, every gate was measured and passed"
    if summary["status"] == "incomplete":
        return f"exit {EXIT_GATES}: completed, but a gate could not be measured (incomplete) — see the report"
    return f"exit {EXIT_GATES}: completed, a gate failed — see the report"


#: narrower than this (or piped to a file), the gates are a plain list: a table would break names
TABLE_MIN_WIDTH = 100
_GATE_COLUMNS = ("model", "gate", "value", "threshold", "status")


def gate_rows(gates: list[dict]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for g in gates:
        value = "—" if g["value"] is None else f"{g['value']:.4f}"
        # 6 significant digits: a configured 0.1 stays 0.1; a computed one, such as the
        # accountant's ε (0.9983528951770002), reads 0.998353 (the report rounds to 4 decimals)
        thr = "—" if g["threshold"] is None else f"{g['comparison']} {g['threshold']:.6g}"
        model = f"{g['model']} (baseline)" if g.get("baseline") else g["model"]
        rows.append((model, g["name"], value, thr, g["status"]))
    return rows


def _print_gates(console, gates: list[dict]) -> None:
    """A table on a terminal wide enough for every cell on one line; otherwise (a narrow
    terminal, a pipe or a file) one line per gate. A gate name is never broken."""
    from rich.table import Table

    rows = gate_rows(gates)
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(_GATE_COLUMNS)]
    needed = sum(widths) + 3 * len(widths) + 1  # Rich's box: a border and 2 spaces of padding per cell
    if not console.is_terminal or console.width < max(TABLE_MIN_WIDTH, needed):
        console.print("Gates:", markup=False)
        for row in rows:
            console.print(
                "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), soft_wrap=True, markup=False
            )
        return
    style = {"pass": "green", "fail": "bold red"}
    table = Table(title="Gates", show_lines=False)
    for col in _GATE_COLUMNS:
        table.add_column(col, no_wrap=True)
    for *cells, status in rows:
        table.add_row(*cells, f"[{style.get(status, 'yellow')}]{status}[/]")
    console.print(table)


@app.command()
def validate(
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    docs: Optional[Path] = typer.Option(None, "--docs", help="Write GX Data Docs HTML into this folder."),
) -> None:
    """Validate the configured dataset against its contract only (no training)."""
    _quiet_environment(False)
    cfg = _load(config, set_)
    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.errors import ImpactflowError
    from impactflow.data_contracts.validation import validate as run_validation

    console = _console()
    try:
        contract = get_contract(cfg.data.contract)
        df = load_dataset(contract, list(cfg.data.path) if cfg.data.path else None)
        report = run_validation(df, contract, docs)
        report.raise_if_failed()
    except ImpactflowError as exc:
        _fail(str(exc))
    console.print(
        f"[green]ok[/]: {len(df)} rows meet contract '{contract.name}' ({report.total_expectations} expectations)"
    )
    if report.data_docs:
        console.print(f"Data Docs: {report.data_docs}")


@app.command()
def ui(
    port: int = typer.Option(5000, help="Port for the MLflow UI."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    output_dir: Path = typer.Option(Path("impactflow_runs"), help="The runs folder of `impactflow run`."),
) -> None:
    """Start the MLflow UI on the embedded tracking store (or MLFLOW_TRACKING_URI)."""
    _quiet_environment(False)
    busy = port_in_use(host, port)
    if busy:
        _fail(f"port {port} on {host} is already in use ({busy}): pick another with --port")
    from impactflow.tasks.tracking import mark_training_experiments

    uri = _reachable_store(output_dir)  # an unreachable store: one line, not a UI that cannot load
    mark_training_experiments(uri)  # the UI opens on the training-runs view, not the GenAI one
    cmd, env = ui_command(uri, host, port)
    _console().print(f"MLflow UI on http://{host}:{port} (Ctrl-C to stop)")
    os.execve(sys.executable, cmd, env)


def ui_command(uri: str, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of the MLflow UI process for ``uri``. The store URI (with any
    password) travels in ``MLFLOW_BACKEND_STORE_URI`` (the env var of `mlflow server
    --backend-store-uri`), never on the command line, which every local user can read with
    ``ps``; the process environment is readable by its owner and root only.

    Choice: one worker and no job runner (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: the
    runner serves GenAI jobs impactflow never submits). MLflow's defaults, 4 workers plus the
    job runner, started 15 processes using 3.2 GB for one local viewer; set
    ``IMPACTFLOW_UI_WORKERS`` for more."""
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, "MLFLOW_BACKEND_STORE_URI": uri}
    workers = os.environ.get("IMPACTFLOW_UI_WORKERS", "1")
    return [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port), "--workers", workers], env


def port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound (e.g. "Address already in use"), or None when it can."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _require_api(command: str) -> None:
    from impactflow.flows.local_server import use_kept_server

    if not os.environ.get("PREFECT_API_URL") and not use_kept_server():
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            _fail(
                f"`impactflow {command}` needs a Prefect server: set PREFECT_API_URL "
                "(e.g. http://127.0.0.1:4200/api after `prefect server start`)"
            )


def _reachable_store(output_dir: Path) -> str:
    """``_tracking_uri`` after one cheap look at the store (``impactflow.tasks.tracking.preflight``): an
    unreachable database or server is one `error:` line naming it without its credentials."""
    from impactflow.errors import TrackingError
    from impactflow.tasks.tracking import preflight

    uri = _tracking_uri(output_dir)
    try:
        preflight(uri)
    except TrackingError as exc:
        _fail(str(exc).replace("; nothing was trained.", "."))
    return uri


def _tracking_uri(output_dir: Path) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    db = output_dir / "mlflow.db"
    if not db.is_file():
        _fail(f"no tracking database at {db}: run `impactflow run` first or set MLFLOW_TRACKING_URI")
    return f"sqlite:///{db.resolve()}"


@app.command()
def deploy(
    name: Optional[List[str]] = typer.Option(None, "--name", "-n", help="Only these deployments (default: all)."),
) -> None:
    """Register prefect.yaml's deployments (cron schedules) on the process work pool."""
    _quiet_environment(False)
    _require_api("deploy")
    from impactflow.flows.deployments import WORK_POOL, deploy_all, read_deployments

    ids = deploy_all(name)
    for spec in read_deployments():
        if not name or spec["name"] in name:
            crons = ", ".join(s["cron"] for s in spec.get("schedules") or []) or "no schedule"
            typer.echo(f"deployed impactflow-preset/{spec['name']} ({crons}) on pool {WORK_POOL}")
    typer.echo(f"{len(ids)} deployment(s). Start a worker: prefect worker start --pool {WORK_POOL}")


@app.command()
def serve() -> None:
    """Run prefect.yaml's schedules in this process (single machine; no work pool or worker)."""
    _quiet_environment(False)
    from impactflow.flows.deployments import serve_all

    serve_all()


@app.command()
def trigger(
    deployment: str = typer.Argument(..., help="Deployment, e.g. 'tabular' or 'impactflow-preset/tabular'."),
    set_: Optional[List[str]] = SetOpt,
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Follow the run to its final state."),
    poll: float = typer.Option(2.0, help="Seconds between state checks while watching."),
) -> None:
    """Create a flow run of a deployment through the Prefect API; with --watch, exit with its
    outcome: 0 gates passed, 3 a gate failed or was not measured, 1 the run failed or crashed."""
    import time

    _quiet_environment(False)
    _require_api("trigger")
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    from impactflow.errors import ImpactflowError
    from impactflow.flows.config import load_config
    from impactflow.flows.deployments import GATES_FAILED, GATES_INCOMPLETE

    name = deployment if "/" in deployment else f"impactflow-preset/{deployment}"
    with get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(name)
        except ObjectNotFound:
            _fail(f"no deployment {name!r} on {os.environ.get('PREFECT_API_URL')}: run `impactflow deploy` first")
    params = dict(dep.parameters or {})
    overrides = list(params.get("overrides") or []) + list(set_ or [])
    try:  # a bad override fails here, before a run is created
        load_config(params.get("preset"), overrides)
    except ImpactflowError as exc:
        _fail(str(exc))
    run = run_deployment(name, parameters={**params, "overrides": overrides}, timeout=0)
    console = _console()
    console.print(f"flow run {run.name} ({run.id}) of {name} created", markup=False)
    if not watch:
        raise typer.Exit(EXIT_OK)
    last = None
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run.id).state
            if state is not None and state.type.value != last:
                last = state.type.value
                console.print(f"  state: {state.name}", markup=False)
            if state is not None and state.is_final():
                break
            time.sleep(poll)
    message = state.message or ""
    console.print(f"  {message}", markup=False, soft_wrap=True)
    if state.type.value == "COMPLETED":
        raise typer.Exit(EXIT_OK)
    raise typer.Exit(EXIT_GATES if message.startswith((GATES_FAILED, GATES_INCOMPLETE)) else EXIT_ERROR)


@app.command()
def models(
    output_dir: Path = typer.Option(Path("impactflow_runs"), help="The runs folder of `impactflow run`."),
) -> None:
    """List registered model versions: gate status, aliases (champion = approved) and why."""
    _quiet_environment(False)
    from rich.table import Table

    from impactflow.tasks.registry import list_models

    rows = list_models(_reachable_store(output_dir))
    table = Table(title="Registered models")
    for col in ("model", "version", "gates", "run", "aliases", "failed gates", "promotion"):
        table.add_column(col, overflow="fold")
    for r in rows:  # run: the KILLED/FAILED status `impactflow reconcile` marked on the version
        run = f"[bold red]{r['run_status']}[/]" if r["run_status"] else "—"
        table.add_row(
            r["name"],
            r["version"],
            r["gates"],
            run,
            ", ".join(r["aliases"]) or "—",
            ", ".join(r["failed_gates"]) or "—",
            (r["promotion"] + (f": {r['promotion_reason']}" if r["promotion_reason"] else "")) or "—",
        )
    _console().print(table)


@app.command()
def promote(
    name: str = typer.Argument(..., help="Registered model, e.g. impactflow-tabular-mlp."),
    version: str = typer.Argument(..., help="Version to make the champion."),
    output_dir: Path = typer.Option(Path("impactflow_runs"), help="The runs folder of `impactflow run`."),
    trusted_keys: Optional[Path] = typer.Option(
        None,
        "--trusted-keys",
        envvar="IMPACTFLOW_TRUSTED_KEYS",
        show_envvar=True,
        help="Trust file of the keys whose signed evidence you accept (your own signing key is trusted too).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Override failed gates or a run's hold (never unfinished runs or bad evidence)."
    ),
    reason: str = typer.Option("", "--reason", help="Why (required with --force; recorded on the version)."),
) -> None:
    """Point the `champion` alias at a version, only if every one of its gates passed, its run did
    not hold it back (significantly worse than the champion), its runs are FINISHED and its run's
    signed evidence verifies (intact, by a trusted signer). `--force --reason "..."` overrides the
    gates and the hold, and records the override on the version."""
    _quiet_environment(False)
    from impactflow.audits import evidence
    from impactflow.errors import ImpactflowError
    from impactflow.tasks.registry import promote as do_promote

    if not version.isdigit():
        _fail(f"VERSION {version!r}: a registry version is a number, e.g. 2", EXIT_USAGE)
    uri = _reachable_store(output_dir)
    try:
        trust = evidence.trusted_keys([trusted_keys] if trusted_keys else [])
        typer.echo(do_promote(uri, name, version, trust=trust, force=force, reason=reason))
    except ImpactflowError as exc:
        _fail(str(exc))


@app.command()
def reconcile(
    output_dir: Path = typer.Option(Path("impactflow_runs"), help="The runs folder of `impactflow run`."),
    stale_after: float = typer.Option(24.0, help="Hours after which a RUNNING run of another host counts as dead."),
) -> None:
    """Mark KILLED the MLflow runs left RUNNING by pipeline processes that died (e.g. SIGKILL)
    and the child runs of ended parents, mark their Prefect flow runs Crashed (when a Prefect
    server is configured or kept), mark the registered versions of KILLED or FAILED runs (and
    take `champion` off them), remove orphan temporary files and list stale privacy-budget
    reservations. Every `impactflow run` does the same for its experiment before it starts."""
    _quiet_environment(False)
    from impactflow.flows.local_server import use_kept_server
    from impactflow.tasks.reconcile import reconcile_all, summary_lines

    uri = _reachable_store(output_dir)
    use_kept_server()  # the kept Prefect server, if any (never a temporary one just for this)
    for line in summary_lines(reconcile_all(uri, output_dir, stale_after_s=stale_after * 3600)):
        typer.echo(line)


@app.command()
def init(
    data: Path = typer.Option(..., "--data", help="Your data file (CSV, TSV, gzipped, or Parquet)."),
    label: str = typer.Option(..., "--label", help="The outcome column the model predicts."),
    sensitive: str = typer.Option(..., "--sensitive", help="Columns to audit for fairness, comma-separated: a,b."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for contract.yaml and run.yaml (default: here)."),
    positive_label: Optional[str] = typer.Option(
        None, "--positive-label", help="The label scores predict (default: guessed)."
    ),
    favourable: Optional[str] = typer.Option(
        None, "--favourable", help="The label that is good for the person (default: the positive label)."
    ),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name (default: from the file name)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing contract.yaml / run.yaml."),
) -> None:
    """Write a starting contract.yaml and preset (run.yaml) from a profile of your data, to review."""
    import os

    from impactflow.errors import ImpactflowError
    from impactflow.data_contracts.profile import profile_file

    cols = [c.strip() for c in sensitive.split(",") if c.strip()]
    if not cols:
        _fail("--sensitive: name at least one column, e.g. --sensitive sex,age")
    contract_file, preset_file = out / "contract.yaml", out / "run.yaml"
    if not force:
        for f in (contract_file, preset_file):
            if f.exists():
                _fail(f"{f}: exists; review or move it, or pass --force to overwrite")

    def ref(p: Path) -> str:  # as the preset names it: relative to the folder you run from
        rel = os.path.relpath(p.resolve(), Path.cwd())
        return str(p.resolve()) if rel.startswith("..") else rel

    try:
        prof = profile_file(
            data,
            label,
            cols,
            name=name,
            positive_label=positive_label,
            favourable=favourable,
            contract_ref=ref(contract_file),
            data_ref=ref(data),
        )
        out.mkdir(parents=True, exist_ok=True)
        contract_file.write_text(prof.contract_yaml, encoding="utf-8")
        preset_file.write_text(prof.preset_yaml, encoding="utf-8")
        from impactflow.data_contracts import get_contract

        contract = get_contract(str(contract_file))
    except ImpactflowError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or out}: {exc.strerror or exc}")
    typer.echo(
        f"wrote {contract_file} ({len(contract.columns)} columns; target {contract.target}; "
        f"sensitive: {', '.join(contract.sensitive)})"
    )
    typer.echo(f"wrote {preset_file}")
    typer.echo("Review before the first run (lines marked REVIEW in the files):")
    for line in prof.review or [
        "the types, categories and ranges are what this file holds: check they are what you expect"
    ]:
        typer.echo(f"  - {line}")
    typer.echo("Next:")
    typer.echo(f"  impactflow validate --config {ref(preset_file)}")
    typer.echo(f"  impactflow run --config {ref(preset_file)}")


@app.command()
def presets() -> None:
    """List the built-in presets."""
    from impactflow.flows.config import PRESETS_DIR, list_presets

    import yaml

    from impactflow.flows.config import load_config, missing_data
    from impactflow.errors import ImpactflowError

    for name in list_presets():
        desc = (yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text()) or {}).get("description", "")
        params: dict = {}
        try:
            cfg = load_config(name, check=False)
            needs, params = missing_data(cfg), cfg.model.params
        except ImpactflowError as exc:
            needs = str(exc)
        mark = "[needs your data: --set data.path=PATH] " if needs else ""
        if not needs and "path" in params and params["path"] is None:  # the hf family's model directory
            mark = "[needs your model: --set model.params.path=DIR] "
        typer.echo(f"{name:16s} {mark}{desc}")


server_app = typer.Typer(
    help="A kept local Prefect server, so each run does not start a temporary one.", no_args_is_help=True
)
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start(
    port: int = typer.Option(4200, help="Port on 127.0.0.1."),
    warm: bool = typer.Option(
        False,
        "--warm",
        help="Also start the warm runner: a process that keeps "
        "the heavy libraries imported and forks each `impactflow run` from it.",
    ),
) -> None:
    """Start `prefect server start` in the background; later commands use it automatically."""
    from impactflow.errors import ImpactflowError
    from impactflow.flows import local_server

    console = _console()
    console.print("starting the Prefect server (10-20 s on 2 cores) ...")
    try:
        state = local_server.start(port)
    except ImpactflowError as exc:
        _fail(str(exc))
    word = "already running" if state["already_running"] else "started"
    console.print(
        f"Prefect server {word}: {state['api_url']} (pid {state['pid']}, UI {state['ui_url']}, "
        f"log {state['log']}); `impactflow run` now uses it; `impactflow server stop` ends it"
    )
    if not warm:
        return
    from impactflow.flows import warm as warm_runner

    # the warm runner imports the libraries under the environment a (non-verbose) run will have,
    # and serves only runs whose import-time environment matches it
    _warm_environment(verbose=False)
    console.print("starting the warm runner (imports torch, GX, MLflow, Prefect once) ...")
    try:
        w = warm_runner.start(WARM_ENTRY)
    except ImpactflowError as exc:
        _fail(str(exc))
    word = (
        "already running"
        if w["already_running"]
        else (
            f"replaced (code, packages or environment changed) and started ({w['preload_s']:.1f} s of imports)"
            if w["replaced"]
            else f"started ({w['preload_s']:.1f} s of imports)"
        )
    )
    console.print(
        f"warm runner {word}: pid {w['pid']}, socket {w['socket']}; `impactflow run` forks from it", soft_wrap=True
    )


@server_app.command("stop")
def server_stop() -> None:
    """Stop the kept local Prefect server (and the warm runner, if one runs)."""
    from impactflow.errors import ImpactflowError
    from impactflow.flows import local_server, warm

    w = warm.stop()
    if w:
        _console().print(f"stopped the warm runner (pid {w['pid']})")
    try:
        state = local_server.stop()
    except ImpactflowError as exc:
        if w:
            return
        _fail(str(exc))
    _console().print(f"stopped the Prefect server at {state['api_url']} (pid {state['pid']})")


@server_app.command("status")
def server_status() -> None:
    """Say whether a kept local Prefect server is running (exit 1 if not), and the warm runner."""
    from impactflow.flows import local_server, warm

    url = local_server.running_api_url()
    if not url:
        _fail(local_server.NOT_RUNNING)
    state = local_server.read_state() or {}
    _console().print(f"running: {url} (pid {state.get('pid')}, since {state.get('started_at')})")
    w = warm.running()
    if w:
        _console().print(f"warm runner: pid {w['pid']}, since {w['started_at']} ({w['preload_s']} s of imports)")
    else:
        _console().print("warm runner: not running (`impactflow server start --warm` starts one)")


@app.command()
def budget(
    dataset: Optional[str] = typer.Option(
        None, "--dataset", "-d", help="Only datasets whose SHA-256 starts with this."
    ),
    ledger: Optional[str] = typer.Option(
        None, "--ledger", help="Ledger URL (default: $IMPACTFLOW_LEDGER_URL, else OUTPUT_DIR/privacy_ledger.db)."
    ),
    output_dir: Path = typer.Option(Path("impactflow_runs"), help="The runs folder of `impactflow run`."),
) -> None:
    """Privacy budget per dataset: every model's epsilon/delta, total spent (basic composition), budget, remaining."""
    from impactflow.errors import ImpactflowError
    from impactflow.tasks.ledger_store import LEDGER_FILE, budget_tables, ledger_url

    url = (
        ledger_url(output_dir, ledger)
        if (ledger or os.environ.get("IMPACTFLOW_LEDGER_URL") or (output_dir / LEDGER_FILE).is_file())
        else None
    )
    if url is None:
        _fail(
            f"no privacy ledger at {output_dir / LEDGER_FILE}: run `impactflow run` first, "
            "or pass --ledger / set IMPACTFLOW_LEDGER_URL"
        )
    try:
        tables = budget_tables(url, dataset)
    except ImpactflowError as exc:
        _fail(str(exc))
    console = _console()
    if not tables:
        console.print("no entries" + (f" for dataset {dataset}*" if dataset else ""))
    for table in tables:
        console.print(table)


# --------------------------------------------------------------------------- evidence, audit-only, compare

EXIT_TAMPERED = 4  # `report verify`: the content changed or the signature is invalid
EXIT_UNTRUSTED = 5  # `report verify`: intact, but signed by a key that is not trusted

report_app = typer.Typer(help="Signed evidence of a run's report.", no_args_is_help=True)
app.add_typer(report_app, name="report")
keys_app = typer.Typer(help="The Ed25519 key that signs runs, and the keys you trust.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
OutputDirOpt = typer.Option(
    Path("impactflow_runs"),
    help="The runs folder (its mlflow.db is used for run ids unless MLFLOW_TRACKING_URI is set).",
)
TrustedKeysOpt = typer.Option(
    None,
    "--trusted-keys",
    envvar="IMPACTFLOW_TRUSTED_KEYS",
    show_envvar=True,
    help="Trust file of public keys (JSON, see `impactflow keys export`); your own signing key is trusted too.",
)


def _require_run_id(ref: str) -> None:
    import re

    if not re.fullmatch(r"[0-9a-f]{32}", ref):
        _fail(f"{ref}: no such file or folder, and not an MLflow run id (32 hex digits)")


def _run_folder(path_or_run: str, output_dir: Path, tmp: Path) -> tuple[Path, Optional[str]]:
    """A local folder as is; anything else is an MLflow run id whose artifacts are downloaded
    (then also the tracking URI, to re-hash the run's models)."""
    from impactflow.errors import ImpactflowError

    if Path(path_or_run).exists():
        return Path(path_or_run), None
    _require_run_id(path_or_run)
    from impactflow.tasks.evidence import download_run_artifacts

    uri = _reachable_store(output_dir)
    try:
        return download_run_artifacts(uri, path_or_run, tmp / "run"), uri
    except ImpactflowError as exc:
        _fail(f"{path_or_run}: not a folder, and {exc}")


def _logged_copy(result, output_dir: Path, tmp: Path, verify_folder) -> Optional[str]:
    """Check the copy a local run folder's MLflow run logged (tasks.evidence.logged_copy_problems)
    when its store can be found: MLFLOW_TRACKING_URI, an mlflow.db in the folder or up to three
    folders above it, or in --output-dir. Returns the store's URI (to re-hash the models), or
    None with ``result.logged_copy`` saying why it was not checked."""
    from impactflow.errors import TrackingError
    from impactflow.tasks.evidence import logged_copy_problems
    from impactflow.tasks.tracking import preflight

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        root = Path(result.root).resolve()
        dbs = [d / "mlflow.db" for d in (root, *list(root.parents)[:3], output_dir.resolve())]
        db = next((d for d in dbs if d.is_file()), None)
        if db is None:
            result.logged_copy = "not checked: no tracking store found (set MLFLOW_TRACKING_URI)"
            return None
        uri = f"sqlite:///{db}"
    if not result.run_id:
        result.logged_copy = "not checked: the statement names no run"
        return None
    try:
        preflight(uri)
    except TrackingError as exc:
        result.logged_copy = f"not checked: {exc}"
        return None
    problems, note = logged_copy_problems(uri, result.run_id, result.manifest_sha256, tmp / "logged", verify_folder)
    result.logged_copy = note
    result.add_problems(problems)
    return None if note.startswith("not checked") else uri


def _verify_exit(result) -> int:
    return EXIT_OK if result.ok else EXIT_UNTRUSTED if result.intact else EXIT_TAMPERED


@report_app.command("verify")
def report_verify(
    path_or_run: str = typer.Argument(..., help="A run folder (or its reports/ folder) or an MLflow run id."),
    key: Optional[str] = typer.Option(
        None, "--key", help="Trust only this public key (PEM file or 64 hex digits) instead of the trust list."
    ),
    trusted_keys: Optional[Path] = TrustedKeysOpt,
    output_dir: Path = OutputDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    local_only: bool = typer.Option(
        False, "--local-only", help="For a folder: do not compare it with the copy its MLflow run logged."
    ),
) -> None:
    """Check the signed in-toto statement: its DSSE signature, every file's SHA-256 and, for a
    run id, every logged and registered model re-hashed from MLflow; and whether the signer is
    trusted. For a run folder whose tracking store is found (MLFLOW_TRACKING_URI, or an
    mlflow.db beside it), the copy its MLflow run logged is checked too: the run FINISHED and
    logged this very statement, intact. Exit 0 intact and trusted, 4 content changed or
    signature invalid (table of what failed), 5 intact but the signer is not trusted, 1 could
    not verify (bad input)."""
    import json
    import tempfile

    _quiet_environment(False)
    from impactflow.audits import evidence
    from impactflow.errors import ImpactflowError

    with tempfile.TemporaryDirectory(prefix="impactflow-verify-") as tmp:
        try:
            pinned = evidence.parse_public_key(key) if key else None
            trust = evidence.trusted_keys([trusted_keys] if trusted_keys else [], pinned=pinned)
            folder, uri = _run_folder(path_or_run, output_dir, Path(tmp))
            result = evidence.verify(folder, pinned, trust=trust)
            if uri is None and result.signature == "valid" and not local_only:
                uri = _logged_copy(result, output_dir, Path(tmp), lambda p: evidence.verify(p, pinned, trust=trust))
            if uri is not None and result.signature == "valid":
                from impactflow.tasks.evidence import check_models

                result.add_problems(check_models(uri, result.models))
                result.models_checked = True
        except ImpactflowError as exc:
            _fail(str(exc))
    code = _verify_exit(result)
    if json_out:
        typer.echo(json.dumps({**result.to_dict(), "input": path_or_run}, indent=2))
        raise typer.Exit(code)
    console = _console()
    owner = f"owner label {result.owner!r}" if result.owner else "no owner label"
    console.print(
        f"run {result.run_id} · status {result.status} · {result.n_files} files · {len(result.models)} "
        f"model(s) · signer {result.key_id} ({owner}, as the signer states it)",
        markup=False,
        soft_wrap=True,
    )
    console.print(
        f"manifest sha256 {result.manifest_sha256} · report sha256 {result.report_sha256} · "
        f"previous report sha256 {result.previous_report_sha256}",
        markup=False,
        soft_wrap=True,
    )
    models = (
        f"{len(result.models)} model(s) re-hashed from MLflow"
        if result.models_checked
        else "models not re-hashed: give the MLflow run id for that"
        if result.models
        else "no logged models"
    )
    if result.logged_copy == "verified":
        models += "; the copy logged to MLflow is this one"
    elif result.logged_copy and result.logged_copy.startswith("not checked"):
        models += f"; MLflow copy {result.logged_copy}"
    if code == EXIT_OK:
        who = f"{result.trusted_as!r}, " if result.trusted_as else ""
        console.print(
            f"[bold green]verified[/]: content intact ({result.n_files} files; {models}), signed by a "
            f"trusted key ({who}{result.trust_source})",
            soft_wrap=True,
        )
        raise typer.Exit(code)
    if code == EXIT_UNTRUSTED:
        why = (
            f"it is not the pinned key {evidence.key_id(pinned)}"
            if pinned is not None
            else "it is not your own signing key nor in a trust file" + (f" ({trusted_keys})" if trusted_keys else "")
        )
        console.print(
            f"[bold yellow]UNTRUSTED SIGNER[/]: the content is intact ({models}), but it was signed by "
            f"key {result.key_id} ({owner}), and {why}.",
            soft_wrap=True,
        )
        console.print(
            "If you trust that signer, get their public key from them (not from this run): they run "
            "`impactflow keys export > signer.json`; then `impactflow keys trust signer.json "
            "--trusted-keys TRUSTED.json` and verify with `--trusted-keys TRUSTED.json` "
            "(or set IMPACTFLOW_TRUSTED_KEYS).",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(code)
    from rich.table import Table

    table = Table(title="Verification failed")
    table.add_column("what", overflow="fold")
    table.add_column("problem", overflow="fold")
    for line in result.problems:
        what, _, problem = line.partition(": ")
        table.add_row(what, problem)
    console.print(table)
    console.print("[bold red]FAILED[/]: the evidence does not verify (content changed or signature invalid)")
    raise typer.Exit(code)


def _key_lines(info: dict) -> list[str]:
    return [
        f"key id:     {info['key_id']}",
        f"owner:      {info['owner'] or '(none recorded)'}",
        f"created:    {info['created'] or '(unknown)'}",
        f"path:       {info['path']}",
        f"public key: {info['public_key']}",
        info["public_key_pem"].rstrip(),
    ]


@keys_app.command("init")
def keys_init(
    owner: Optional[str] = typer.Option(
        None, "--owner", help="Who holds the key, shown to reviewers (default: user@host)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing key."),
) -> None:
    """Create the signing key ($IMPACTFLOW_SIGNING_KEY, else $IMPACTFLOW_HOME/keys/ed25519.pem;
    mode 0600). Refuses to overwrite one unless --force."""
    from impactflow.audits import evidence
    from impactflow.errors import ImpactflowError

    try:
        info = evidence.init_signing_key(owner=owner, force=force)
    except ImpactflowError as exc:
        _fail(str(exc))
    console = _console()
    console.print(
        f"created signing key {info['key_id']} at {info['path']} (owner: {info['owner']})", markup=False, soft_wrap=True
    )
    console.print("publish its public key for reviewers: impactflow keys export > my-key.json", markup=False)


@keys_app.command("show")
def keys_show(json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Key id, owner label, created date and public key of the signing key."""
    import json

    from impactflow.audits import evidence
    from impactflow.errors import ImpactflowError

    try:
        info = evidence.key_info()
    except ImpactflowError as exc:
        _fail(str(exc))
    if json_out:
        typer.echo(json.dumps(info, indent=2))
        return
    for line in _key_lines(info):
        typer.echo(line)


@keys_app.command("export")
def keys_export(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file (default: stdout)."),
    pem: bool = typer.Option(False, "--pem", help="Only the public key as PEM, instead of a trust file."),
) -> None:
    """The public key, as a trust file a reviewer uses as is (--trusted-keys) or adds to theirs
    (impactflow keys trust)."""
    import json

    from impactflow.audits import evidence
    from impactflow.errors import ImpactflowError

    try:
        info = evidence.key_info()
    except ImpactflowError as exc:
        _fail(str(exc))
    text = info["public_key_pem"] if pem else json.dumps(evidence.export_document(info), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"{output}: cannot be written ({exc.strerror or exc})")
    _console(stderr=True).print(f"wrote the public key {info['key_id']} to {output}", markup=False, soft_wrap=True)


@keys_app.command("trust")
def keys_trust(
    source: str = typer.Argument(
        ..., help="`impactflow keys export` output (JSON), a PEM public key file, or 64 hex digits."
    ),
    trusted_keys: Path = typer.Option(
        ...,
        "--trusted-keys",
        envvar="IMPACTFLOW_TRUSTED_KEYS",
        show_envvar=True,
        help="The trust file to add to (created if absent).",
    ),
    owner: Optional[str] = typer.Option(None, "--owner", help="Label for the key (default: the exported one)."),
) -> None:
    """Add a public key to a trust file."""
    from impactflow.audits import evidence
    from impactflow.errors import ImpactflowError

    try:
        done = evidence.add_to_trust_file(trusted_keys, evidence.read_key_source(source), owner)
    except ImpactflowError as exc:
        _fail(str(exc))
    for kid, what in done:
        typer.echo(f"{kid}: {what} ({trusted_keys})")


def _load_report_doc(ref: str, output_dir: Path, tmp: Path) -> dict:
    import json

    from impactflow.audits.render import REPORT_FILES

    p = Path(ref)
    if p.exists():
        cands = [p] if p.is_file() else [p / REPORT_FILES["json"], p / "reports" / REPORT_FILES["json"]]
        for c in cands:
            if c.is_file():
                try:
                    return json.loads(c.read_text(encoding="utf-8"))
                except ValueError as exc:
                    _fail(f"{c}: not a JSON report ({exc})")
        _fail(f"{ref}: no {REPORT_FILES['json']} in this folder or its reports/ folder")
    _require_run_id(ref)
    from impactflow.errors import ImpactflowError
    from impactflow.tasks.evidence import download_report

    try:
        return download_report(_reachable_store(output_dir), ref, tmp)
    except ImpactflowError as exc:
        _fail(f"{ref}: not a path, and {exc}")


@app.command()
def compare(
    run_a: str = typer.Argument(..., help="MLflow run id, run folder or impact_report.json of run A."),
    run_b: str = typer.Argument(..., help="Same, for run B (the newer one: Δ = B − A)."),
    output_dir: Path = OutputDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    all_metrics: bool = typer.Option(False, "--all", help="Also list metrics that did not change."),
) -> None:
    """What changed between two runs: metrics, fairness gaps, ε, and whether each got better or worse."""
    import json
    import tempfile

    _quiet_environment(False)
    from impactflow.audits.compare import compare_reports

    with tempfile.TemporaryDirectory(prefix="impactflow-compare-") as tmp:
        out = compare_reports(
            _load_report_doc(run_a, output_dir, Path(tmp) / "a"), _load_report_doc(run_b, output_dir, Path(tmp) / "b")
        )
    if json_out:
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.table import Table

    from impactflow.audits.render import fmt

    a, b = out["a"], out["b"]
    console = _console()
    shown = [r for r in out["metrics"] if all_metrics or r["direction"] not in ("same", "unmeasured")]
    if not shown:  # identical runs: say so rather than print an empty table
        unchanged = sum(r["direction"] == "same" for r in out["metrics"])
        console.print(
            f"A {a['run_id']} ({a['status']}) → B {b['run_id']} ({b['status']}): no differences "
            f"({unchanged} metric(s) equal; --all lists them)",
            markup=False,
        )
        return
    table = Table(title=f"A {a['run_id']} ({a['status']}) → B {b['run_id']} ({b['status']})")
    for col in ("metric", "A", "B", "Δ", "direction"):
        table.add_column(col, overflow="fold")
    style = {"better": "green", "worse": "bold red", "changed": "yellow"}
    for r in shown:
        delta = "—" if r["delta"] is None else f"{r['delta']:+.4g}"
        table.add_row(
            r["metric"], fmt(r["a"]), fmt(r["b"]), delta, f"[{style.get(r['direction'], 'dim')}]{r['direction']}[/]"
        )
    console.print(table)
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(out["counts"].items())), markup=False)


@app.command()
def history(
    experiment: Optional[str] = typer.Option(
        None, "--experiment", help="MLflow experiment (default: the only impactflow experiment with runs)."
    ),
    last: int = typer.Option(10, "--last", min=1, help="How many of the latest finished runs."),
    output_dir: Path = OutputDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Each gated metric across the last runs: value, 95 % CI where the audit gives one, pass/fail."""
    import json

    _quiet_environment(False)
    from impactflow.audits.history import history_rows
    from impactflow.audits.render import fmt
    from impactflow.tasks import tracking
    from impactflow.tasks.watch import recent_reports

    uri = _reachable_store(output_dir)
    client = tracking._client(uri)
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    if experiment is None:
        with_runs = [e for e in experiments if client.search_runs([e.experiment_id], max_results=1)]
        if len(with_runs) != 1:
            names = ", ".join(sorted(e.name for e in with_runs)) or "none"
            _fail(f"--experiment: choose one of the experiments with runs ({names})", EXIT_USAGE)
        exp = with_runs[0]
    else:
        found = [e for e in experiments if e.name == experiment]
        if not found:
            names = ", ".join(sorted(e.name for e in experiments)) or "none"
            _fail(f"--experiment {experiment!r}: no such experiment (known: {names})", EXIT_USAGE)
        exp = found[0]
    reports = recent_reports(uri, exp.experiment_id, last)
    rows = history_rows(reports)
    if json_out:
        typer.echo(
            json.dumps({"experiment": exp.name, "runs": [r["run"]["run_id"] for r in reports], "gates": rows}, indent=2)
        )
        return
    console = _console()
    if not reports:
        console.print(f"{exp.name}: no finished run with a report yet", markup=False)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{exp.name}: gates over the last {len(reports)} run(s), oldest first")
    table.add_column("model / gate", overflow="fold")
    for r in reports:
        table.add_column(str(r["run"]["run_id"])[:8], overflow="fold")
    style = {"pass": "green", "fail": "bold red"}
    for row in rows:
        cells = []
        for p in row["points"]:
            if p is None:
                cells.append("—")
                continue
            ci = f" [{fmt(p['ci_low'])}, {fmt(p['ci_high'])}]" if p["ci_low"] is not None else ""
            status = p["status"] or "?"
            cells.append(f"{escape(fmt(p['value']) + ci)} [{style.get(status, 'yellow')}]{escape(status)}[/]")
        latest = row["points"][-1]
        gate = f"{row['model']} / {row['gate']}" + (
            f" ({row['comparison']} {fmt(latest['threshold'])})" if latest else ""
        )
        table.add_row(escape(gate), *cells)
    console.print(table)


def _parse_gates(items: Optional[List[str]]) -> dict:
    """--gate fairness.max_demographic_parity_difference=0.05 -> {"fairness": {...: 0.05}};
    --gate fairness.skip.four_fifths_ratio="reason" -> {"fairness": {"skip": {...: "reason"}}}."""
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        audit, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            _fail(f"--gate {item!r}: expected AUDIT.KEY=VALUE, e.g. fairness.max_demographic_parity_difference=0.05")
        if name.startswith("skip."):  # skipping a gate on purpose: the value is the reason
            out.setdefault(audit, {}).setdefault("skip", {})[name[5:]] = value.strip()
            continue
        try:
            parsed = None if value.strip().lower() in ("null", "none") else float(value)
        except ValueError:
            _fail(f"--gate {item!r}: {value!r} is not a number")
        out.setdefault(audit, {})[name] = parsed
    return out


@app.command()
def audit(
    data: str = typer.Option(
        ...,
        "--data",
        help="The decision log, one row per person/decision: a CSV or Parquet file, a glob "
        "('logs/*.parquet'), a folder of Parquet files (hive partitions), or postgresql://USER@HOST/DB "
        "with --query or --table.",
    ),
    query: Optional[str] = typer.Option(None, "--query", help="With --data postgresql://…: SELECT … to audit."),
    table: Optional[str] = typer.Option(None, "--table", help="With --data postgresql://…: a table to audit."),
    engine: str = typer.Option(
        "auto",
        "--engine",
        help="memory (pandas; slices/proxies over other columns), stream (bounded chunks), or dask "
        "(the same aggregation on a Dask cluster). auto: stream a glob, folder, query or file above "
        "--max-input-bytes; else memory.",
    ),
    dask_address: Optional[str] = typer.Option(
        None, "--dask-address", help="With --engine dask: the scheduler (tcp://host:8786); default: local threads."
    ),
    score_kind: str = typer.Option(
        "probability", "--score-kind", help="probability (P(y = 1) in [0, 1]) or logit (log-odds)."
    ),
    max_levels: int = typer.Option(
        1000, "--max-levels", min=1, help="Streamed: refuse a group column with more distinct values."
    ),
    max_cells: int = typer.Option(
        4096, "--max-cells", min=1, help="Streamed: refuse more combinations of group values."
    ),
    sample_rows: int = typer.Option(
        100_000, "--sample-rows", min=1, help="Streamed: rows of the seeded sample the GX suite checks."
    ),
    label: Optional[str] = typer.Option(
        None,
        "--label",
        help="Column with the true outcome (0/1, or see --positive-label). Default with --contract: its target.",
    ),
    score: Optional[str] = typer.Option(None, "--score", help="Column with P(y = 1) in [0, 1]."),
    prediction: Optional[str] = typer.Option(None, "--prediction", help="Column with hard predictions (label values)."),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        help="Instead of --score/--prediction: an MLflow model "
        "impactflow logged (models:/NAME/VERSION) scores the table here (binary "
        "models; cut at its own threshold unless --threshold is given).",
    ),
    sensitive: Optional[List[str]] = typer.Option(
        None,
        "--sensitive",
        help="Sensitive column(s): COL or COL1,COL2 (repeatable). Default with --contract: its sensitive columns.",
    ),
    positive_label: Optional[str] = typer.Option(
        None, "--positive-label", help="The positive value of the label (default: labels must be 0/1)."
    ),
    favourable_outcome: Optional[str] = typer.Option(
        None,
        "--favourable-outcome",
        help="The label value that is good for the person (e.g. 'No' for re-offended, "
        "'granted' for a loan): selection-rate checks (four-fifths, demographic parity) use its rate; TPR/FPR/FNR stay w.r.t. "
        "--positive-label. Default: the positive label (or the contract's favourable_outcome).",
    ),
    threshold: Optional[float] = typer.Option(
        None,
        "--threshold",
        help="With --score: predicted 1 iff score >= threshold (default 0.5, reported as the default).",
    ),
    intersections: Optional[str] = typer.Option(
        None,
        "--intersections",
        help="Combined groups to audit: 'race,sex' or 'race,sex;age_band,sex', or 'none'. "
        "Default: all sensitive columns combined (when there are two or more).",
    ),
    intended_use: Optional[Path] = typer.Option(
        None,
        "--intended-use",
        help="YAML file with the report's intended-use fields (purpose, intended_users, "
        "out_of_scope_uses, affected_groups, decision_type, human_review, affected_jobs, training_needs).",
    ),
    contract: Optional[str] = typer.Option(
        None,
        "--contract",
        help="Read --data through a contract (name, contract.yaml or its folder): its read "
        "options, derived columns and generated suite; its target, sensitive columns, labels and favourable "
        "outcome are the defaults of the options above.",
    ),
    experiment: str = typer.Option("impactflow-audit-only", "--experiment", help="MLflow experiment."),
    model_name: str = typer.Option("external-model", "--model-name", help="Name of the audited model in the report."),
    min_group_size: Optional[int] = typer.Option(
        None,
        "--min-group-size",
        help="Groups with fewer rows are reported "
        "as too small to judge and left out of the gates (default 30, or "
        "the contract's).",
    ),
    gate: Optional[List[str]] = typer.Option(
        None, "--gate", help="Threshold AUDIT.KEY=VALUE, e.g. fairness.max_equalized_odds_difference=0.05 (repeatable)."
    ),
    output_dir: Path = typer.Option(
        Path("impactflow_runs"), "--output-dir", help="Runs folder (report, evidence, mlflow.db)."
    ),
    max_input_bytes: int = typer.Option(
        1 << 30,
        "--max-input-bytes",
        min=0,
        help="The largest --data file read into memory (1 GiB); a larger one is "
        "streamed (--engine auto) or refused (--engine memory). 0: no limit.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs (and tracebacks)."),
) -> None:
    """Audit a model the team did not train, from its scores or predictions (a decision log):
    contract checks, fairness (+ calibration by group with scores), signed report, MLflow.
    Exit 3 if a gate fails."""
    _quiet_environment(verbose)
    from impactflow.flows import local_server

    # before anything imports Prefect (tasks.audit_only does): Prefect reads PREFECT_API_URL once,
    # so a kept server set later would be ignored and a temporary one started (~12 s)
    local_server.use_kept_server()
    from impactflow.errors import ImpactflowError
    from impactflow.data_contracts.files import check_input_file
    from impactflow.data_contracts.names import safe_name
    from impactflow.data_contracts.predictions import parse_sensitive
    from impactflow.tasks.audit_only import parse_intersections, read_intended_use

    try:  # names that become folders and registry names: a slug, or a usage error
        safe_name(model_name, "--model-name")
        safe_name(experiment, "--experiment")
    except ImpactflowError as exc:
        _fail(str(exc), EXIT_USAGE)
    try:
        if contract is not None:  # its roles complete the options: resolved (and checked) before any flow
            from impactflow.flows.audit_only import contract_defaults

            roles = contract_defaults(
                contract,
                label,
                parse_sensitive(sensitive) if sensitive else None,
                positive_label,
                favourable_outcome,
                min_group_size,
            )
            cols = roles["sensitive"]
        else:
            if label is None:
                _fail("--label: give the column with the true outcome (or --contract with a target)", EXIT_USAGE)
            cols = parse_sensitive(sensitive or [])
        combos = parse_intersections(intersections, cols)
        use = read_intended_use(str(intended_use) if intended_use is not None else None)
        from impactflow.flows.audit_only import choose_engine

        engine = choose_engine(engine, data, query, table, max_input_bytes, contract, model, score_kind)
        if engine == "memory":
            check_input_file(data, max_input_bytes)  # a FIFO or an oversized file: before any flow
    except ImpactflowError as exc:
        _fail(str(exc))
    gates = _parse_gates(gate)
    console = _console()
    _use_kept_server(console)
    from impactflow.tasks import progress  # light: no heavy import

    try:
        from impactflow.data_contracts.sources import is_query, public_url, without_password
        from impactflow.flows.audit_only import run_audit_only

        if is_query(data):  # the password goes to libpq's PGPASSWORD, never into the flow run's parameters
            data, password = without_password(data)
            if password is not None:
                os.environ["PGPASSWORD"] = password

        # stage lines, and a streamed audit's rows and rows/s (the flow's first call tags its
        # flow run with this process as the owner: `impactflow reconcile` crashes it if this
        # process dies)
        with RichReporter(console) as reporter:
            progress.install(reporter)
            summary = run_audit_only(
                data=str(data),
                label=label,
                score=score,
                prediction=prediction,
                sensitive=cols,
                positive_label=positive_label,
                threshold=threshold,
                experiment=experiment,
                output_dir=str(output_dir),
                model_name=model_name,
                min_group_size=min_group_size,
                gates=gates,
                # the report's provenance: a --data postgresql://USER:PASSWORD@… without its password
                command=" ".join(["impactflow", *(public_url(a) for a in sys.argv[1:])]),
                max_input_bytes=max_input_bytes,
                favourable_outcome=favourable_outcome,
                intersections=combos,
                intended_use=use,
                contract=contract,
                model=model,
                query=query,
                table=table,
                engine=engine,
                dask_address=dask_address,
                score_kind=score_kind,
                max_levels=max_levels,
                max_cells=max_cells,
                sample_rows=sample_rows,
            )
    except ImpactflowError as exc:
        _fail(str(exc))
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    finally:
        progress.install(None)
    _print_summary(console, {**summary, "models": {}})
    console.print(
        f"Evidence: manifest sha256 {summary['manifest_sha256']} signed by {summary['signer_key_id']}"
        f" — check with: impactflow report verify {summary['run_dir']}",
        markup=False,
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_OK if summary["status"] == "pass" else EXIT_GATES)


# the commands that import the heavy libraries (a flow, or GX): worth a fork of the warm runner
WARM_COMMANDS = ("run", "audit", "validate")
#: what the warm runner's forked children run (flows/warm.py never imports this module)
WARM_ENTRY = "impactflow.flows.cli:app"


def _warm_environment(verbose: bool) -> None:
    """The environment these commands set up before importing anything heavy (quiet defaults, the
    kept Prefect server): what the warm runner starts under and what each client hands it, so
    the two compare equal exactly when a cold run would import under the same settings."""
    from impactflow.flows.local_server import use_kept_server

    _quiet_environment(verbose)
    use_kept_server()


def _delegate_to_warm_runner(argv: list[str]) -> Optional[int]:
    """``impactflow run``/``audit``/``validate`` through the warm runner when one is recorded
    (flows/warm.py)."""
    if len(argv) < 2 or argv[1] not in WARM_COMMANDS or any(a in ("-h", "--help") for a in argv[2:]):
        return None
    if os.environ.get("IMPACTFLOW_WARM", "").lower() in ("off", "0", "false", "no"):
        return None  # a deliberate cold run
    from impactflow.flows import warm

    if not warm.read_state():
        return None
    _warm_environment(verbose=any(a in ("-v", "--verbose") for a in argv[2:]))
    return warm.delegate(argv)


def main() -> None:
    code = _delegate_to_warm_runner(sys.argv)
    if code is not None:
        raise SystemExit(code)
    app()


if __name__ == "__main__":
    main()
