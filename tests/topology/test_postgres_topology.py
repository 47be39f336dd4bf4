"""The production topology, for real: PostgreSQL-backed Prefect and MLflow servers, a process
worker, `impactflow deploy` + `impactflow trigger` from the CLI, registry gates.

Skips (with the reason) only when no PostgreSQL is reachable; CI on this machine runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.report.test_report_layout import CHROMIUM, CHROMIUM_FLAGS, needs_chromium
from tests.topology import servers

ROOT = Path(__file__).resolve().parents[2]
REASON = servers.postgres_reachable()
pytestmark = [pytest.mark.topology, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

FAST = ["data.sample=12000", "model.params.epochs=2", "model.baselines=[]"]
LOOSE_GATES = [
    "gates.fairness.max_demographic_parity_difference=1",
    "gates.fairness.max_equalized_odds_difference=1",
    "gates.fairness.four_fifths_ratio=0",
    "gates.performance.min_accuracy=0.5",
    "gates.performance.min_roc_auc=0.5",
    "gates.performance.max_ece=1",
]


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    home = tmp_path_factory.mktemp("topology")
    suffix = f"{os.getpid()}"
    with (
        servers.database(f"impactflow_test_prefect_{suffix}") as pdb,
        servers.database(f"impactflow_test_mlflow_{suffix}") as mdb,
        servers.prefect_server(pdb, home) as api,
        servers.mlflow_server(mdb, home) as (mlflow_uri, artifacts),
    ):
        env = {**servers.base_env(home), "PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": mlflow_uri}
        deployed = _impactflow(["deploy"], env, home)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        worker_cmd = [
            str(servers.BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            "impactflow-process",
            "--type",
            "process",
            "--limit",
            "1",
        ]
        # grace 3 s: on SIGTERM the idle worker forwards SIGINT to its process worker and then
        # waited out the whole 20 s every time (worker.log), with nothing left to finish
        with servers.process(worker_cmd, env, home / "worker.log", home, grace=3):
            yield {
                "env": env,
                "home": home,
                "api": api,
                "mlflow": mlflow_uri,
                "artifacts": artifacts,
                "mlflow_db": mdb,
                "deploy_output": deployed.stdout,
            }


def _impactflow(args, env, cwd, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "impactflow.flows.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _trigger(topology, overrides):
    args = ["trigger", "tabular"]
    for o in overrides:
        args += ["--set", o]
    return _impactflow(args, topology["env"], topology["home"])


def test_deploy_registers_cron_deployments_on_the_process_pool(topology):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    assert "deployed impactflow-preset/tabular (0 2 * * *)" in topology["deploy_output"]
    with temporary_settings({PREFECT_API_URL: topology["api"]}), get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("impactflow-preset/tabular")
        assert dep.work_pool_name == "impactflow-process"
        assert [s.schedule.cron for s in dep.schedules] == ["0 2 * * *"]
        assert client.read_work_pool("impactflow-process").type == "process"


def test_trigger_runs_to_completion_and_everything_lands_in_the_servers(topology):
    r = _trigger(topology, FAST + LOOSE_GATES + [f"tracking.output_dir={topology['home'] / 'runs_pass'}"])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out + (topology["home"] / "worker.log").read_text()[-4000:]
    assert "state: Completed" in out and "GATES_PASSED" in out

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=topology["mlflow"])
    exp = client.get_experiment_by_name("impactflow-tabular")
    parents = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    passed = [p for p in parents if p.data.tags.get("impactflow.gates") == "passed"]
    assert len(passed) == 1 and passed[0].info.status == "FINISHED"
    parent = passed[0]
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert [c.data.tags["mlflow.runName"] for c in children] == ["mlp"]
    assert children[0].data.metrics["eval/accuracy"] > 0.8
    # reports went through the server into its artifact store on disk
    reports = {a.path for a in client.list_artifacts(parent.info.run_id, "reports")}
    assert "reports/impact_report.html" in reports
    assert list(topology["artifacts"].rglob("impact_report.json"))
    # and the run data is in PostgreSQL, not in some local file store
    import psycopg2

    user_host, dbname = topology["mlflow_db"].rsplit("/", 1)
    conn = psycopg2.connect(host=servers.PG_HOST, port=servers.PG_PORT, user=servers.PG_USER, dbname=dbname)
    with conn, conn.cursor() as cur:
        cur.execute(
            "select count(*) from metrics where run_uuid = %s and key = 'eval/accuracy'", (children[0].info.run_id,)
        )
        assert cur.fetchone()[0] == 1
    conn.close()
    # registry gate: the passing model is the champion
    mv = client.get_model_version_by_alias("impactflow-tabular-mlp", "champion")
    assert mv.run_id == children[0].info.run_id
    assert mv.tags["impactflow.gates"] == "passed"


def test_a_failing_gate_gives_exit_3_and_no_champion_alias(topology):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=topology["mlflow"])
    before = (
        client.get_registered_model("impactflow-tabular-mlp").aliases.get("champion")
        if client.search_registered_models("name = 'impactflow-tabular-mlp'")
        else None
    )
    r = _trigger(topology, FAST + [f"tracking.output_dir={topology['home'] / 'runs_fail'}"])
    out = r.stdout + r.stderr
    assert r.returncode == 3, out
    assert "GATES_FAILED" in out and "fairness/sex/four_fifths_min_ratio" in out
    versions = client.search_model_versions("name = 'impactflow-tabular-mlp'")
    failed = [v for v in versions if v.tags.get("impactflow.gates") == "failed"]
    assert failed, "the failed model version must still be registered (tagged failed)"
    aliases = client.get_registered_model("impactflow-tabular-mlp").aliases
    assert aliases.get("champion") == before  # unchanged: a failed version is never aliased
    assert all(v.version != aliases.get("champion") for v in failed)
    # and a human cannot promote it either
    env = {**topology["env"]}
    p = _impactflow(["promote", "impactflow-tabular-mlp", str(failed[0].version)], env, topology["home"])
    assert p.returncode == 1 and "not promotable: gates failed" in p.stderr


def test_trigger_refuses_a_bad_override_before_creating_a_run(topology):
    r = _trigger(topology, ["train.epochz=1"])
    assert r.returncode == 1
    assert "train.epochz: unknown key" in r.stderr
    assert "flow run" not in r.stdout


@needs_chromium
def test_mlflow_ui_compares_two_pipeline_runs_in_headless_chromium(topology, tmp_path):
    """Drive the real MLflow UI (served by the PostgreSQL-backed server) in headless Chromium:
    the compare view of the two model runs the trigger tests made shows both runs and the
    slash-named metrics. Leaves a screenshot in test-artifacts/ (kept by CI as the artifact)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=topology["mlflow"])
    exp = client.get_experiment_by_name("impactflow-tabular")
    children = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) >= 2, "run the module in order: the trigger tests create the runs compared here"
    ids = [r.info.run_id for r in children[:2]]
    url = (
        f"{topology['mlflow']}/#/compare-runs?runs="
        + "["
        + ",".join(f'"{i}"' for i in ids)
        + "]"
        + f'&experiments=["{exp.experiment_id}"]'
    )
    common = [CHROMIUM, *CHROMIUM_FLAGS, "--virtual-time-budget=20000", "--window-size=1400,1000"]
    dom = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'dom'}", "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    assert "Comparing 2 Runs" in dom
    for run_id in ids:
        assert run_id in dom
    # the compare view renders its metric table by name, a first page of rows (a run logs over a
    # hundred slash-named metrics): the first name of the two runs' metrics is shown
    names = sorted(set(client.get_run(ids[0]).data.metrics) | set(client.get_run(ids[1]).data.metrics))
    assert "/" in names[0] and names[0] in dom
    shots = ROOT / "test-artifacts"
    shots.mkdir(exist_ok=True)
    shot = shots / "mlflow_compare.png"
    subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'shot'}", f"--screenshot={shot}", url], capture_output=True, timeout=120
    )
    assert shot.is_file() and shot.stat().st_size > 10_000


# --------------------------------------------------------------------------- a scheduled scenario

SCENARIO = "impactflow-scenario"  # its own experiment: the champion of the tests above is not its


def _scenario_data(folder: Path) -> dict[str, Path]:
    """Three training files: A (12,000 Adult rows), B (a bootstrap resample of A: no real
    change), C (A with the women's share halved and their base rate cut to a third)."""
    import numpy as np

    from impactflow.data_contracts import get_contract, load_dataset

    adult = load_dataset(get_contract("adult")).sample(12000, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(1)
    b = adult.iloc[rng.integers(0, len(adult), len(adult))].reset_index(drop=True)
    women = adult.index[adult["sex"] == "Female"]
    dropped = rng.choice(women, size=len(women) // 2, replace=False)
    c = adult.drop(index=dropped).copy()
    rich_women = c.index[(c["sex"] == "Female") & (c["income"] == ">50K")]
    c.loc[rng.choice(rich_women, size=2 * len(rich_women) // 3, replace=False), "income"] = "<=50K"
    paths = {}
    for name, frame in (("a", adult), ("b", b), ("c", c.reset_index(drop=True))):
        paths[name] = folder / f"adult_{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def test_a_scheduled_pipeline_watches_drift_and_holds_a_worse_challenger(topology):
    """The deployed cron pipeline triggered three times on shifting data: run 2 (a resample) is
    promoted or held on the paired statistics; run 3 (a group's share halved, its base rate
    moved) flags drift for that group and, its fairness gap significantly worse, is held; the
    champion alias stays; history, compare and the report show it."""
    import json

    from mlflow import MlflowClient

    data = _scenario_data(topology["home"])
    common = [
        "model.params.epochs=3",
        "model.baselines=[]",
        f"tracking.experiment={SCENARIO}",
        f"tracking.output_dir={topology['home'] / 'runs_scenario'}",
        *LOOSE_GATES,
    ]
    client = MlflowClient(tracking_uri=topology["mlflow"])
    name = f"{SCENARIO}-mlp"
    outputs = []
    for which in ("a", "b", "c"):
        r = _trigger(topology, [*common, f"data.path={data[which]}"])
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == 0, outputs[-1] + (topology["home"] / "worker.log").read_text()[-4000:]
    exp = client.get_experiment_by_name(SCENARIO)
    parents = sorted(
        (r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" not in r.data.tags),
        key=lambda r: r.info.start_time,
    )
    assert len(parents) == 3
    reports = []
    for i, p in enumerate(parents):
        local = client.download_artifacts(p.info.run_id, "reports/impact_report.json", str(topology["home"] / f"s{i}"))
        reports.append(json.loads(Path(local).read_text(encoding="utf-8")))
    versions = {v.version: v for v in client.search_model_versions(f"name = '{name}'")}
    assert sorted(versions) == ["1", "2", "3"]

    # run 1: nothing to compare with; it passed, so it is the champion
    first = reports[0]["since_last_run"]
    assert first["previous_run"] is None and first["champion"][0]["decision"] == "first"
    assert first["drift"]["status"].startswith("skipped")
    # run 2: a resample: compared with version 1 on its own test rows, decided on the statistics
    second = reports[1]["since_last_run"]["champion"][0]
    assert second["champion"]["version"] == "1" and second["rows"]
    worse = [r for r in second["rows"] if r["significantly_worse"]]
    assert second["decision"] == ("hold" if worse else "promote")
    assert versions["2"].tags["impactflow.promotion"] == second["decision"]
    champion_after_2 = "2" if second["decision"] == "promote" else "1"
    # run 3: the women's share and base rate moved: drift flagged for that group
    third = reports[2]["since_last_run"]
    groups = {(g["attribute"], g["group"]): g for g in third["drift"]["groups"]}
    women = groups[("sex", "Female")]
    assert women["drifted"] and women["share_cur"] < 0.75 * women["share_ref"]
    assert women["rate_cur"] < women["rate_ref"]
    assert "champion" in third["drift"]["reference"]
    # ... and its demographic-parity gap is significantly worse than the champion's: held
    decision = third["champion"][0]
    assert decision["champion"]["version"] == champion_after_2
    dp = next(r for r in decision["rows"] if r["gate"] == "fairness/sex/demographic_parity_difference")
    assert dp["significantly_worse"] and dp["regression"] > 0
    assert decision["decision"] == "hold"
    assert versions["3"].tags["impactflow.promotion"] == "hold"
    assert "fairness/sex/demographic_parity_difference" in versions["3"].tags["impactflow.promotion.reason"]
    assert client.get_registered_model(name).aliases["champion"] == champion_after_2
    assert "held=mlp(v3)" in outputs[2] and "champion=mlp(v1)" in outputs[0]
    # the report says so, the history and compare commands show it
    history = _impactflow(["history", "--experiment", SCENARIO, "--json"], topology["env"], topology["home"])
    assert history.returncode == 0, history.stderr
    rows = {r["gate"]: r for r in json.loads(history.stdout)["gates"]}
    points = rows["fairness/sex/demographic_parity_difference"]["points"]
    assert len(points) == 3 and all(p and p["status"] == "pass" for p in points)
    ids = [p.info.run_id for p in parents]
    compared = _impactflow(["compare", ids[1], ids[2], "--json"], topology["env"], topology["home"])
    assert compared.returncode == 0, compared.stderr
    dp_rows = [
        r for r in json.loads(compared.stdout)["metrics"] if r["metric"].endswith("sex/demographic_parity_difference")
    ]
    assert dp_rows and all(r["direction"] != "same" for r in dp_rows)
    same = _impactflow(["compare", ids[2], ids[2]], topology["env"], topology["home"])
    assert same.returncode == 0 and "no differences" in same.stdout
    md = Path(client.download_artifacts(ids[2], "reports/impact_report.md", str(topology["home"] / "md")))
    text = md.read_text(encoding="utf-8")
    assert "## 11. Since the last run" in text and "#### mlp: HOLD" in text
    arts = {a.path for a in client.list_artifacts(ids[2], "history")}
    assert "history/mlp__fairness__sex__demographic_parity_difference.png" in arts
