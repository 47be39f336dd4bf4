"""Registry tags and the champion alias follow the one gate rule (issue 20, defect 1; issue 28,
defect 1): ``impactflow.gates`` is ``passed`` only when every gate passed, and the alias moves
only for a passing run."""
from __future__ import annotations

from audits.results import AuditResult, Gate, Status
from tasks.registry import gate_tags, not_aliased_because


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
