"""Registry tags and the champion alias follow the one gate rule (issue 20, defect 1; issue 28,
defect 1): ``impactflow.gates`` is ``passed`` only when every gate passed, and the alias moves
only for a passing run."""

from __future__ import annotations

from impactflow.audits.results import AuditResult, Gate, Status
from impactflow.tasks.registry import gate_tags, not_aliased_because


def _audits(*gates):
    return {"a": AuditResult(name="a", status=Status.PASS, gates=list(gates))}


def test_gate_tags_say_incomplete_when_a_gate_was_not_measured():
    passed = Gate("eval/accuracy", Status.PASS, 0.9, 0.8, ">=")
    unmeasured = Gate("fairness/sex/demographic_parity_difference", Status.NOT_MEASURED, None, 0.1, "<=")
    assert gate_tags(_audits(passed))["impactflow.gates"] == "passed"
    assert gate_tags(_audits(passed, unmeasured))["impactflow.gates"] == "incomplete"  # was "passed"
    nan_pass = Gate("eval/roc_auc", Status.PASS, float("nan"), 0.8, ">=")
    tags = gate_tags(_audits(passed, nan_pass))
    assert tags["impactflow.gates"] == "incomplete" and tags["gate.eval/roc_auc"] == "not-measured"
    failed = Gate("eval/ece", Status.FAIL, 0.2, 0.05, "<=")
    assert gate_tags(_audits(passed, unmeasured, failed))["impactflow.gates"] == "failed"
    assert gate_tags({})["impactflow.gates"] == "incomplete"  # nothing measured: never passed


def test_only_a_passed_version_of_a_passing_run_is_aliased():
    assert not_aliased_because("passed", "pass") == ""
    assert not_aliased_because("incomplete", "incomplete") == "incomplete"
    assert not_aliased_because("failed", "fail") == "gates failed"
    assert not_aliased_because("passed", "incomplete") == "run incomplete"  # another candidate held it back


def test_a_version_significantly_worse_than_the_champion_is_held():
    hold = {"decision": "hold", "reasons": ["eval/accuracy is significantly worse"]}
    assert not_aliased_because("passed", "pass", hold) == "held: eval/accuracy is significantly worse"
    for decision in ("promote", "first", "not compared"):
        assert not_aliased_because("passed", "pass", {"decision": decision, "reasons": []}) == ""
    assert not_aliased_because("failed", "fail", hold) == "gates failed"  # the gates are said first


def test_gate_tag_keys_are_keys_mlflow_accepts():
    """A section that gates nothing (``fairness/section``) and a gate named after a user's group
    value (any characters) become tag keys MLflow's own validator accepts (``*`` crashed the
    registration with a traceback)."""
    from mlflow.utils.validation import _validate_tag_name

    audits = {
        "fairness": AuditResult(
            "fairness",
            Status.NOT_MEASURED,
            gates=[
                Gate("fairness/section", Status.NOT_MEASURED, None, None, "=="),
                Gate("group_robustness/<b>*x?</b>/accuracy", Status.PASS, 0.9, 0.8, ">="),
            ],
        )
    }
    tags = gate_tags(audits)
    assert "gate.group_robustness/_b__x__/b_/accuracy" in tags
    for key in tags:
        _validate_tag_name(key)  # raises MlflowException on a key MLflow refuses
