"""The ``impactflow`` command line (Typer + Rich).

The one place that turns domain errors into exit codes:
0 run completed and every gate passed; 3 completed but a gate failed (report still logged);
2 usage error (Typer); 1 any other error (bad data, bad config, runtime failure).
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


def _load(config: Optional[str], overrides: Optional[List[str]]):
    from data_contracts.errors import ImpactflowError
    from flows.config import load_config

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
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=False,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def stage(self, name: str) -> None:
        self.progress.console.print(f"[dim]•[/] {name}")

    def epoch(self, model: str, row: dict) -> None:
        if model not in self.tasks:
            self.tasks[model] = self.progress.add_task(f"train {model}", total=int(row["epochs"]), info="")
        info = f"val_loss={row['val_loss']:.4f}"
        if "epsilon" in row:
            info += f" ε={row['epsilon']:.3f}"
        self.progress.update(self.tasks[model], completed=int(row["epoch"]), info=info)


@app.command()
def run(
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = typer.Option(None, "--set", "-s", help="Override a config key: --set privacy.enabled=true (repeatable)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs (and tracebacks)."),
) -> None:
    """Run the pipeline: validate -> train -> audit -> report -> MLflow. Exit 3 if a gate fails."""
    _quiet_environment(verbose)
    cfg = _load(config, set_)
    console = _console()
    from data_contracts.errors import ImpactflowError
    from tasks import progress

    command = " ".join(["impactflow", *sys.argv[1:]])
    console.print(f"[bold]impactflow[/] preset [cyan]{cfg.preset}[/] · family {cfg.model.family} · "
                  f"DP {'on' if cfg.privacy.enabled else 'off'}")
    try:
        with RichReporter(console) as reporter:
            progress.install(reporter)
            from flows.pipeline import run_pipeline

            summary = run_pipeline(cfg, command=command)
    except ImpactflowError as exc:
        _fail(str(exc))
    finally:
        progress.install(None)
    _print_summary(console, summary)
    raise typer.Exit(EXIT_OK if summary["status"] == "pass" else EXIT_GATES)


def _print_summary(console, summary: dict) -> None:
    from rich.table import Table

    table = Table(title="Gates", show_lines=False)
    for col in ("model", "gate", "value", "threshold", "status"):
        table.add_column(col, overflow="fold")
    style = {"pass": "green", "fail": "bold red"}
    for g in summary["gates"]:
        value = "—" if g["value"] is None else f"{g['value']:.4f}"
        thr = "—" if g["threshold"] is None else f"{g['comparison']} {g['threshold']}"
        model = f"{g['model']} (baseline)" if g.get("baseline") else g["model"]
        table.add_row(model, g["name"], value, thr, f"[{style.get(g['status'], 'yellow')}]{g['status']}[/]")
    console.print(table)
    for name, m in summary["models"].items():
        acc = m["metrics"].get("eval/accuracy")
        dp = m["dp"]
        eps = f", ε={dp['epsilon']:.3f} (δ={dp['delta']:g})" if dp.get("enabled") else ""
        console.print(f"  {name}: accuracy {acc:.4f}{eps}" if acc is not None else f"  {name}")
        reg = m.get("registry")
        if reg:
            alias = "champion" if reg["champion"] else f"gates {reg['gates']}: not aliased"
            console.print(f"    registered {reg['name']} version {reg['version']} ({alias})", markup=False)
    status = summary["status"].upper()
    colour = "green" if summary["status"] == "pass" else "red"
    console.print(f"Overall: [bold {colour}]{status}[/] (decided by the candidate models; baselines are references)")
    out = [
        f"Report:  {Path(summary['report']['html']).resolve()}",
        f"         {Path(summary['report']['json']).resolve()}",
        f"MLflow:  run {summary['parent_run_id']} in experiment '{summary['experiment']}' ({summary['tracking_uri']})",
        f"         {summary['mlflow_url']}  (start the UI with: impactflow ui)",
    ]
    for line in out:  # paths must stay copyable: never wrapped
        console.print(line, soft_wrap=True, markup=False)


@app.command()
def validate(
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    docs: Optional[Path] = typer.Option(None, "--docs", help="Write GX Data Docs HTML into this folder."),
) -> None:
    """Validate the configured dataset against its contract only (no training)."""
    _quiet_environment(False)
    cfg = _load(config, set_)
    from data_contracts import get_contract, load_dataset
    from data_contracts.errors import ImpactflowError
    from data_contracts.validation import validate as run_validation

    console = _console()
    try:
        contract = get_contract(cfg.data.contract)
        df = load_dataset(contract, list(cfg.data.path) if cfg.data.path else None)
        report = run_validation(df, contract, docs)
        report.raise_if_failed()
    except ImpactflowError as exc:
        _fail(str(exc))
    console.print(f"[green]ok[/]: {len(df)} rows meet contract '{contract.name}' "
                  f"({report.total_expectations} expectations)")
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
    uri = _tracking_uri(output_dir)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    _console().print(f"MLflow UI on http://{host}:{port} (Ctrl-C to stop)")
    os.execv(sys.executable, cmd)


def _require_api(command: str) -> None:
    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            _fail(f"`impactflow {command}` needs a Prefect server: set PREFECT_API_URL "
                  "(e.g. http://127.0.0.1:4200/api after `prefect server start`)")


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
    from flows.deployments import WORK_POOL, deploy_all, read_deployments

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
    from flows.deployments import serve_all

    serve_all()


@app.command()
def trigger(
    deployment: str = typer.Argument(..., help="Deployment, e.g. 'tabular' or 'impactflow-preset/tabular'."),
    set_: Optional[List[str]] = SetOpt,
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Follow the run to its final state."),
    poll: float = typer.Option(2.0, help="Seconds between state checks while watching."),
) -> None:
    """Create a flow run of a deployment through the Prefect API; with --watch, exit with its
    outcome: 0 gates passed, 3 a gate failed, 1 the run failed or crashed."""
    import time

    _quiet_environment(False)
    _require_api("trigger")
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    from data_contracts.errors import ImpactflowError
    from flows.config import load_config
    from flows.deployments import GATES_FAILED

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
    raise typer.Exit(EXIT_GATES if message.startswith(GATES_FAILED) else EXIT_ERROR)


@app.command()
def models(
    output_dir: Path = typer.Option(Path("impactflow_runs"), help="The runs folder of `impactflow run`."),
) -> None:
    """List registered model versions: gate status, aliases (champion = approved) and why."""
    _quiet_environment(False)
    from rich.table import Table

    from tasks.registry import list_models

    rows = list_models(_tracking_uri(output_dir))
    table = Table(title="Registered models")
    for col in ("model", "version", "gates", "aliases", "failed gates"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["version"], r["gates"], ", ".join(r["aliases"]) or "—",
                      ", ".join(r["failed_gates"]) or "—")
    _console().print(table)


@app.command()
def promote(
    name: str = typer.Argument(..., help="Registered model, e.g. impactflow-tabular-mlp."),
    version: str = typer.Argument(..., help="Version to make the champion."),
    output_dir: Path = typer.Option(Path("impactflow_runs"), help="The runs folder of `impactflow run`."),
) -> None:
    """Point the `champion` alias at a version, only if every one of its gates passed."""
    _quiet_environment(False)
    from data_contracts.errors import ImpactflowError
    from tasks.registry import promote as do_promote

    try:
        typer.echo(do_promote(_tracking_uri(output_dir), name, version))
    except ImpactflowError as exc:
        _fail(str(exc))


@app.command()
def reconcile(
    output_dir: Path = typer.Option(Path("impactflow_runs"), help="The runs folder of `impactflow run`."),
    stale_after: float = typer.Option(24.0, help="Hours after which a RUNNING run of another host counts as dead."),
) -> None:
    """Mark KILLED the MLflow runs left RUNNING by pipeline processes that died (e.g. SIGKILL).
    Every `impactflow run` does this for its experiment before it starts."""
    _quiet_environment(False)
    from tasks.reconcile import reconcile as do_reconcile

    marked = do_reconcile(_tracking_uri(output_dir), stale_after_s=stale_after * 3600)
    for m in marked:
        typer.echo(f"{m['run_id']}: KILLED ({m['reason']})")
    typer.echo(f"{len(marked)} run(s) reconciled")


@app.command()
def presets() -> None:
    """List the built-in presets."""
    from flows.config import PRESETS_DIR, list_presets

    import yaml

    for name in list_presets():
        desc = (yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text()) or {}).get("description", "")
        typer.echo(f"{name:16s} {desc}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
