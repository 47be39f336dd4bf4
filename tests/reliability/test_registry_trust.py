"""Nothing approved before its evidence exists (issue 28, defect 1): ``promote`` refuses a
version whose runs did not finish or whose signed evidence does not verify (or verifies, but
by a signer you do not trust); ``reconcile`` marks versions of KILLED/FAILED runs and takes
``champion`` off them; ``models`` shows the mark."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from impactflow.errors import ImpactflowError


def _version(
    tmp_path: Path,
    *,
    parent_status: str = "FINISHED",
    child_status: str = "FINISHED",
    sign: bool = True,
    gates: str = "passed",
    name: str = "impactflow-t-mlp",
) -> dict:
    """A registered version as the pipeline leaves it: gate tags, the parent run's id, a child
    run that logged it, and (``sign``) the parent run's signed statement logged to MLflow."""
    from mlflow import MlflowClient

    from impactflow.tasks.evidence import sign_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("e")
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment("e", artifact_location=(tmp_path / "mlartifacts").resolve().as_uri())
    )
    parent = client.create_run(exp_id).info.run_id
    child = client.create_run(exp_id, tags={"mlflow.parentRunId": parent}).info.run_id
    run_dir = tmp_path / "runs" / parent
    if sign:
        (run_dir / "reports").mkdir(parents=True)
        (run_dir / "reports" / "notes.txt").write_text("what the reviewer reads\n")
        sign_run.fn({"uri": uri, "parent_run_id": parent}, str(run_dir))
    client.set_terminated(child, child_status)
    client.set_terminated(parent, parent_status)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    src = tmp_path / "model_src"
    src.mkdir(exist_ok=True)
    mv = client.create_model_version(
        name,
        source=src.resolve().as_uri(),
        run_id=child,
        tags={"impactflow.gates": gates, "impactflow.parent_run_id": parent},
    )
    return {
        "uri": uri,
        "client": client,
        "name": name,
        "version": str(mv.version),
        "parent": parent,
        "child": child,
        "run_dir": run_dir,
    }


def _own_trust() -> dict:
    from impactflow.audits import evidence

    return evidence.trusted_keys()


@pytest.mark.parametrize(
    "parent_status,child_status,what",
    [
        ("FAILED", "FINISHED", "parent run {parent} is FAILED"),
        ("KILLED", "FINISHED", "parent run {parent} is KILLED"),
        ("RUNNING", "FINISHED", "parent run {parent} is RUNNING"),
        ("FINISHED", "FAILED", "run {child} is FAILED"),
    ],
)
def test_promote_refuses_a_version_whose_run_did_not_finish(tmp_path, parent_status, child_status, what):
    """The full-disk run: FAILED parent, gates passed, evidence signed: was promoted (exit 0)."""
    from impactflow.tasks.registry import promote

    v = _version(tmp_path, parent_status=parent_status, child_status=child_status)
    with pytest.raises(ImpactflowError) as err:
        promote(v["uri"], v["name"], v["version"], trust=_own_trust())
    assert what.format(**v) in str(err.value)
    assert "champion" not in (v["client"].get_registered_model(v["name"]).aliases or {})


def test_promote_accepts_a_finished_run_with_verified_evidence_and_refuses_untrusted_or_missing(tmp_path):
    from impactflow.tasks.registry import promote

    v = _version(tmp_path)
    with pytest.raises(ImpactflowError, match="intact but signed by key .* which you do not trust"):
        promote(v["uri"], v["name"], v["version"], trust={})  # the signer is not in the trust list
    assert "champion" not in (v["client"].get_registered_model(v["name"]).aliases or {})
    out = promote(v["uri"], v["name"], v["version"], trust=_own_trust())
    assert out.startswith(f"{v['name']}@champion -> version {v['version']}") and "evidence verified" in out
    assert v["client"].get_registered_model(v["name"]).aliases == {"champion": int(v["version"])}

    unsigned = _version(tmp_path, sign=False)  # killed before signing, marked FINISHED by hand
    with pytest.raises(ImpactflowError, match=f"evidence of run {unsigned['parent']} cannot be verified"):
        promote(unsigned["uri"], unsigned["name"], unsigned["version"], trust=_own_trust())


def test_promote_refuses_evidence_changed_after_signing(tmp_path):
    from impactflow.tasks.registry import promote

    v = _version(tmp_path)
    edited = tmp_path / "notes.txt"
    edited.write_text("edited after signing\n")
    v["client"].log_artifact(v["parent"], str(edited), "reports")  # replaces the logged file
    with pytest.raises(ImpactflowError, match=r"does not verify .*exits 4.*reports/notes.txt: content changed"):
        promote(v["uri"], v["name"], v["version"], trust=_own_trust())


def test_promote_refuses_failed_gates_and_unknown_versions(tmp_path):
    from impactflow.tasks.registry import promote

    v = _version(tmp_path, gates="incomplete")
    with pytest.raises(ImpactflowError, match="not promotable: gates incomplete"):
        promote(v["uri"], v["name"], v["version"], trust=_own_trust())
    with pytest.raises(ImpactflowError, match="no registered model 'impactflow-t-mlp' version '9'"):
        promote(v["uri"], v["name"], "9", trust=_own_trust())


def test_a_held_version_is_refused_unless_forced_with_a_reason_and_the_override_is_recorded(tmp_path):
    """Issue 24: a version its run held back (significantly worse than the champion) is not
    promoted by hand either; --force --reason overrides the hold and failed gates, never an
    unfinished run, and records who, when, why and what it set aside."""
    from impactflow.tasks.registry import promote

    v = _version(tmp_path)
    held = "eval/accuracy is significantly worse than the champion's: regression 0.03"
    v["client"].set_model_version_tag(v["name"], v["version"], "impactflow.promotion", "hold")
    v["client"].set_model_version_tag(v["name"], v["version"], "impactflow.promotion.reason", held)
    with pytest.raises(ImpactflowError, match="its run held it back \\(eval/accuracy is significantly worse"):
        promote(v["uri"], v["name"], v["version"], trust=_own_trust())
    with pytest.raises(ImpactflowError, match="--force needs --reason"):
        promote(v["uri"], v["name"], v["version"], trust=_own_trust(), force=True, reason="  ")
    out = promote(v["uri"], v["name"], v["version"], trust=_own_trust(), force=True, reason="approved by the board")
    assert out.endswith(f"override recorded: held: {held}")
    tags = v["client"].get_model_version(v["name"], v["version"]).tags
    assert tags["impactflow.promotion"] == "forced"
    assert tags["impactflow.promotion.override_reason"] == "approved by the board"
    assert tags["impactflow.promotion.overridden"] == f"held: {held}"
    assert tags["impactflow.promotion.override_by"] and tags["impactflow.promotion.override_at"]
    assert str(v["client"].get_registered_model(v["name"]).aliases["champion"]) == v["version"]

    failed = _version(tmp_path, gates="failed")
    out = promote(failed["uri"], failed["name"], failed["version"], trust=_own_trust(), force=True, reason="r")
    assert out.endswith("override recorded: gates failed")
    unfinished = _version(tmp_path, gates="failed", parent_status="KILLED")
    with pytest.raises(ImpactflowError, match="is KILLED"):  # never overridden
        promote(
            unfinished["uri"], unfinished["name"], unfinished["version"], trust=_own_trust(), force=True, reason="r"
        )


def test_promote_force_command_and_models_show_the_override(tmp_path):
    v = _version(tmp_path, gates="failed")
    env = {"MLFLOW_TRACKING_URI": v["uri"]}
    result = _cli(["promote", v["name"], v["version"], "--force"], env)
    assert result.exit_code == 1 and "--force needs --reason" in result.output, result.output
    result = _cli(["promote", v["name"], v["version"], "--force", "--reason", "legal sign-off 12"], env)
    assert result.exit_code == 0, result.output
    from impactflow.tasks.registry import list_models

    (row,) = list_models(v["uri"])
    assert (row["promotion"], row["promotion_reason"], row["aliases"]) == ("forced", "legal sign-off 12", ["champion"])
    result = _cli(["models"], env)
    assert result.exit_code == 0 and "forced:" in result.output, result.output


def test_reconcile_marks_versions_of_killed_and_failed_runs_and_removes_their_champion(tmp_path):
    from impactflow.tasks.reconcile import mark_versions
    from impactflow.tasks.registry import RUN_STATUS_TAG, list_models

    good = _version(tmp_path)
    killed = _version(tmp_path, parent_status="KILLED")
    failed = _version(tmp_path, child_status="FAILED")
    client, name = good["client"], good["name"]
    client.set_registered_model_alias(name, "champion", killed["version"])  # as the old code left it
    marked = mark_versions(good["uri"])
    assert sorted((m["version"], m["run_status"], m["alias_removed"]) for m in marked) == [
        (killed["version"], "KILLED", True),
        (failed["version"], "FAILED", False),
    ]
    assert client.get_model_version(name, killed["version"]).tags[RUN_STATUS_TAG] == "KILLED"
    assert RUN_STATUS_TAG not in client.get_model_version(name, good["version"]).tags
    assert "champion" not in (client.get_registered_model(name).aliases or {})
    rows = {r["version"]: r["run_status"] for r in list_models(good["uri"])}
    assert rows == {good["version"]: "", killed["version"]: "KILLED", failed["version"]: "FAILED"}
    assert mark_versions(good["uri"]) == []  # idempotent


def _cli(args: list[str], env: dict | None = None):
    from typer.testing import CliRunner

    from impactflow.flows.cli import app

    saved = dict(os.environ)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.update(env or {})
    try:
        return CliRunner().invoke(app, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_promote_and_reconcile_commands(tmp_path):
    v = _version(tmp_path, parent_status="FAILED")
    env = {"MLFLOW_TRACKING_URI": v["uri"]}
    result = _cli(["promote", v["name"], v["version"]], env)
    assert result.exit_code == 1, result.output
    assert (
        f"error: {v['name']} version {v['version']} is not promotable: parent run {v['parent']} is FAILED"
        in " ".join(result.output.split())
    )
    assert _cli(["promote", v["name"], "latest"], env).exit_code == 2
    result = _cli(["reconcile"], env)
    assert result.exit_code == 0, result.output
    assert f"{v['name']} version {v['version']}: run {v['parent']} FAILED" in result.output
    assert "1 model version(s) marked" in result.output
    result = _cli(["models"], env)
    assert result.exit_code == 0 and "FAILED" in result.output, result.output


@pytest.mark.parametrize(
    "args",
    [["models"], ["promote", "m", "1"], ["reconcile"], ["compare", "a" * 32, "b" * 32], ["report", "verify", "c" * 32]],
)
def test_unreachable_database_is_one_error_line(args):
    """An unreachable PostgreSQL store: one `error:` line naming it without its password, exit 1
    (was a SQLAlchemy traceback)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _cli(args, {"MLFLOW_TRACKING_URI": f"postgresql+psycopg2://bob:PLANTEDSECRET@127.0.0.1:{port}/db"})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    out = " ".join(result.output.split())
    assert out.startswith(
        f"error: MLflow tracking server postgresql+psycopg2://***@127.0.0.1:{port}/db is unreachable"
    ), out
    assert "PLANTEDSECRET" not in out and "Traceback" not in out and "nothing was trained" not in out
