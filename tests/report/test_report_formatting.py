"""Issue 26, report side: numbers a reader sees (counts as integers, rates to 4 decimals, energy,
CO2e and compute with units) and the configuration the report shows (what the run owner set
versus the effective values; no library noise such as ``penalty: deprecated``).

Unit tests on the conftest inputs (the real fairness/privacy audits on literal counts); every
number rendered stays traceable to the JSON (the rule of ``test_real_reports.untraceable``)."""

from __future__ import annotations

import copy

import pytest

from impactflow.audits.render import (
    fmt,
    fmt_count,
    fmt_energy_kwh,
    fmt_flops,
    fmt_mass_g,
    fmt_metric,
    fmt_param,
    fmt_si,
    is_count_name,
    render_html,
    render_markdown,
)
from impactflow.audits.report import build_report
from tests.report.conftest import make_inputs
from tests.report.test_real_reports import html_text, untraceable


def _inputs() -> dict:
    return copy.deepcopy(make_inputs(failing=True))


def _section(md: str, start: str, end: str) -> str:
    return md[md.index(start) : md.index(end)]


# --------------------------------------------------------------------------- formatters


def test_counts_rates_and_quantities_are_formatted_by_kind():
    assert [
        is_count_name(n)
        for n in (
            "eval/tn",
            "eval/n",
            "fairness/sex/n_groups_judged",
            "privacy/canary_guesses",
            "min_group_size",
            "fairness/distinct_decisions",
            "eval/accuracy",
            "fairness/sex/demographic_parity_difference",
            "eval/recall",
        )
    ] == [True, True, True, True, True, True, False, False, False]
    assert fmt_metric(5224.0, "eval/tn") == "5224"  # the 5224.0000
    assert fmt_metric(2.0, "fairness/sex/n_groups_judged") == "2"
    assert fmt_metric(12.5, "eval/n") == "12.5000"  # not integral: never rounded into another number
    assert fmt_metric(1.0, "fairness/sex/demographic_parity_ratio_ci_degenerate") == "yes"
    assert fmt_metric(0.123456, "eval/accuracy") == "0.1235"
    assert fmt(0.000716) == "0.0007" and fmt(1e-5) == "1.000e-05"  # rates: 4 decimals; δ stays readable
    assert fmt_count(None) == "—" and fmt_count(7) == "7"
    assert fmt_param(0.001) == "0.001" and fmt_param(1e-05) == "1e-05" and fmt_param(1.0) == "1.0"
    # energy arrives in kWh; shown in the unit that keeps it readable, 4 significant digits
    assert fmt_energy_kwh(2.9578866956668815e-05) == "29.58 mWh"
    assert fmt_energy_kwh(1.5) == "1.500 kWh"
    assert fmt_mass_g(0.014197856139201031) == "14.20 mg"
    assert fmt_flops(40883036040.0) == "40.88 GFLOP"
    assert fmt_si(999.99, "g") == "1.000 kg" and fmt_si(0, "Wh") == "0 Wh" and fmt_si(None, "Wh") == "—"


# --------------------------------------------------------------------------- rendered numbers


def test_float_counts_show_as_integers_and_quantities_with_units():
    report = build_report(**_inputs())
    perf = report["models"][0]["audits"]["performance"]["metrics"]
    perf.update({"eval/tn": 5224.0, "eval/fp": 350.0, "eval/n": 7327.0})  # as the JSON of a real run holds them
    row = report["resources"]["models"][0]
    row.update(
        energy_kwh=2.9578866956668815e-05,
        co2e_g=0.014197856139201031,
        training_flops=40883036040.0,
        n_train=34188.0,
        cpu_cores=1,
    )
    md = render_markdown(report)
    assert "| eval/tn | 5224 |" in md and "| eval/n | 7327 |" in md and "5224.0000" not in md
    resources = _section(md, "## 8. Concentration", "## 9.")
    assert (
        "| mlp | 7041 | 34188 | 8 | 12.3456 s | 1 | 40.88 GFLOP | 29.58 mWh | estimate | 14.20 mg CO2e |" in resources
    )
    html = render_html(report)
    assert '<td class="num">29.58 mWh</td>' in html and '<td class="num">5224</td>' in html
    # still traceable: 5224 is the JSON's 5224.0, 29.58 mWh its energy_kwh 2.958e-05 kWh
    assert untraceable(md, report) == set()
    assert untraceable(html_text(html), report) == set()


def test_a_unit_conversion_is_traceable_only_from_the_key_that_holds_the_quantity():
    """29.58 (mWh) is traceable from energy_kwh = 2.958e-05 kWh, not from the same number elsewhere."""
    report = build_report(**_inputs())
    report["models"][0]["audits"]["performance"]["metrics"]["performance/ece"] = 2.9578866956668815e-05
    md = render_markdown(report)
    assert "| performance/ece | 2.958e-05 |" in md
    assert untraceable(md + "\nEnergy 29.58 mWh\n", report) == {"29.58"}
    report["resources"]["models"][0]["energy_kwh"] = 2.9578866956668815e-05
    md = render_markdown(report)
    assert "| 29.58 mWh |" in md
    assert untraceable(md, report) == set()


# --------------------------------------------------------------------------- configuration shown


def _with_baseline_params(inputs: dict) -> dict:
    logreg = inputs["models"][1]
    logreg["role"] = "baseline"
    logreg["params"] = {
        "C": 1.0,
        "class_weight": None,
        "max_iter": 2000,
        "n_jobs": None,
        "penalty": "deprecated",
        "solver": "lbfgs",
        "tol": 0.0001,
        "verbose": 0,
        "warm_start": False,
        "seed": 0,
    }
    inputs["config"] = {
        "preset": "tabular",
        "extends": None,
        "seed": 0,
        "data": {"contract": "adult", "path": None, "sample": None},
        "model": {"family": "tabular", "params": {"hidden": 64, "lr": 0.001}, "baselines": ["logreg"]},
        "privacy": {
            "enabled": False,
            "target_epsilon": None,
            "delta": 1e-05,
            "max_grad_norm": 1.0,
            "budget_epsilon": 8.0,
        },
        "gates": {"fairness": {"max_demographic_parity_difference": 0.1, "min_group_size": 50}},
        "use": {"purpose": "a benchmark"},
        "orchestration": {"task_runner": "sequential"},
    }
    inputs["provenance"]["command"] = (
        "impactflow run -c tabular --set model.params.lr=0.001 --set gates.fairness.min_group_size=50"
    )
    return inputs


def test_hyperparameters_show_what_was_set_without_library_noise():
    report = build_report(**_with_baseline_params(_inputs()))
    md = render_markdown(report)
    logreg = _section(md, "#### logreg", "## 4. Data sheets")
    assert "| penalty |" not in logreg and "deprecated" not in logreg.split("Not shown")[0]
    assert "| verbose |" not in logreg and "| n_jobs |" not in logreg and "| warm_start |" not in logreg
    assert "Not shown (execution settings or library placeholders" in logreg
    assert "n_jobs, penalty, verbose, warm_start." in logreg
    assert "| C | 1.0 | fixed for the baseline |" in logreg and "| tol | 0.0001 | fixed for the baseline |" in logreg
    mlp = _section(md, "#### mlp", "#### logreg")
    # the candidate's params: those in model.params came from the run configuration
    assert "| hidden | 64 | run configuration |" in mlp and "| lr | 0.001 | run configuration |" in mlp
    assert "| batch_size | 256 | family default |" in mlp
    assert "penalty" not in html_text(render_html(report)).split("Not shown")[0].split("logreg")[-1]


def test_configuration_appendix_separates_what_was_asked_from_the_effective_values():
    report = build_report(**_with_baseline_params(_inputs()))
    md = render_markdown(report)
    b = md[md.index("## Appendix B") :]
    asked = _section(b, "### B.1", "### B.2")
    assert "- Preset: tabular" in asked
    assert (
        "- Command: impactflow run -c tabular --set model.params.lr=0.001 --set gates.fairness.min_group_size=50"
        in asked
    )
    assert "- Overrides (--set): model.params.lr=0.001; gates.fairness.min_group_size=50" in asked
    effective = _section(b, "### B.2", "### B.3")
    assert "| model.params.lr | 0.001 | --set |" in effective
    assert "| gates.fairness.min_group_size | 50 | --set |" in effective
    assert "| model.params.hidden | 64 | preset or default |" in effective
    assert "| privacy.enabled | no | preset or default |" in effective
    assert "| privacy.budget_epsilon | 8.0 | preset or default |" in effective
    # not what changes a result: intended use (section 3), scheduling; DP-SGD knobs with DP off; unset keys
    for hidden in ("use.purpose", "orchestration.", "privacy.max_grad_norm", "privacy.delta", "data.path", "preset |"):
        assert hidden not in effective, hidden
    full = b[b.index("### B.3") :]
    assert '"max_grad_norm": 1.0' in full and '"task_runner": "sequential"' in full  # everything is still there
    html = render_html(report)
    assert (
        "<h3>B.1 What the run owner asked for</h3>" in html and "<code>gates.fairness.min_group_size=50</code>" in html
    )


@pytest.mark.parametrize(
    "command, expected",
    [
        (None, "- Command: not recorded (the run was started from Python, not the CLI)"),
        ("impactflow run -c tabular", "- Overrides (--set): none"),
    ],
)
def test_configuration_appendix_without_overrides(command, expected):
    inputs = _with_baseline_params(_inputs())
    inputs["provenance"]["command"] = command
    md = render_markdown(build_report(**inputs))
    assert expected in md
    assert "| --set |" not in md
