"""Section 13: where this report's evidence sits against the frameworks reviewers ask about.

A static table (framework, item, what it asks, report section) plus one check per row that looks
at the report's own sections and says ``evidence`` (the section has measured evidence),
``partial`` (some of it), ``not-measured`` or ``fail`` (the evidence shows a failed gate). Rows
backed by gates follow the candidate model(s): a row whose gates could not be measured says
``not-measured`` (whatever metrics exist), and the baselines' gate state is shown apart
(``baseline_status``). It maps evidence; it is not a legal conformity assessment.

Sources: Regulation (EU) 2024/1689 (AI Act) Art. 10 (data and data governance), Art. 15
(accuracy, robustness and cybersecurity), Annex IV (technical documentation); NIST AI 100-1
AI RMF 1.0 (2023), MEASURE 2.10 (privacy risk), 2.11 (fairness and bias), 2.12 (environmental
impact and sustainability); US EEOC Uniform Guidelines, 29 CFR 1607.4(D) (four-fifths rule).
"""

from __future__ import annotations

from typing import Any, Callable

# (framework, item, requirement, section number, section anchor, check key)
FRAMEWORK_ROWS: tuple[tuple[str, str, str, int, str, str], ...] = (
    (
        "EU AI Act",
        "Art. 10(2)(a–e)",
        "data governance: design choices, collection, origin, preparation, "
        "assumptions, availability and suitability of the data sets",
        4,
        "datasheets",
        "datasheets",
    ),
    (
        "EU AI Act",
        "Art. 10(2)(f–g), 10(5)",
        "examination of possible biases, measures to detect, prevent and "
        "mitigate them; processing of special categories only for bias detection",
        7,
        "bias",
        "bias",
    ),
    (
        "EU AI Act",
        "Art. 10(3)",
        "training, validation and testing data relevant, representative, as free of errors and complete as possible",
        4,
        "datasheets",
        "representation",
    ),
    (
        "EU AI Act",
        "Art. 15(1–3)",
        "appropriate level of accuracy, declared accuracy metrics",
        5,
        "performance",
        "performance",
    ),
    (
        "EU AI Act",
        "Art. 15(4–5)",
        "robustness and resilience, including against attacks exploiting "
        "vulnerabilities (e.g. membership inference on training data)",
        6,
        "privacy",
        "privacy",
    ),
    (
        "EU AI Act",
        "Art. 14 / Annex IV(2)(e)",
        "human oversight measures, including what the deployer can defer to a person",
        9,
        "oversight",
        "oversight",
    ),
    (
        "EU AI Act",
        "Annex IV(1)",
        "general description: intended purpose, users, versions",
        3,
        "intended-use",
        "intended_use",
    ),
    (
        "EU AI Act",
        "Annex IV(2)(d)",
        "data requirements: datasheets, provenance, labelling, cleaning",
        4,
        "datasheets",
        "datasheets",
    ),
    (
        "EU AI Act",
        "Annex IV(3)",
        "monitoring, functioning and control: capabilities and limitations, "
        "foreseeable unintended outcomes, risks to fundamental rights and discrimination",
        12,
        "risks",
        "risks",
    ),
    ("EU AI Act", "Annex IV(4)", "appropriateness of the performance metrics", 5, "performance", "performance"),
    (
        "EU AI Act",
        "Annex IV(2)(g)",
        "validation and testing procedures, metrics, test logs, signed and dated",
        1,
        "cover",
        "integrity",
    ),
    (
        "NIST AI RMF",
        "MEASURE 2.10",
        "privacy risk of the AI system is examined and documented",
        6,
        "privacy",
        "privacy",
    ),
    ("NIST AI RMF", "MEASURE 2.11", "fairness and bias are evaluated and results documented", 7, "bias", "bias"),
    (
        "NIST AI RMF",
        "MEASURE 2.12",
        "environmental impact and sustainability of training and deployment are assessed and documented",
        8,
        "resources",
        "resources",
    ),
    (
        "29 CFR 1607.4(D)",
        "four-fifths rule",
        "each group's selection rate at least 80% of the highest group's",
        7,
        "bias",
        "four_fifths",
    ),
)


BIAS_AUDITS = ("fairness", "group_robustness", "identity", "user_groups")


def _gates(report: dict, predicate: Callable[[dict], bool], *, baseline: bool = False) -> list[dict]:
    """The candidates' gates matching ``predicate`` (the baselines' with ``baseline=True``)."""
    from .sections import baseline_gates, judged_gates

    return [g for g in (baseline_gates(report) if baseline else judged_gates(report)) if predicate(g)]


def _by_audit(prefixes: tuple[str, ...]) -> Callable[[dict], bool]:
    return lambda g: str(g.get("audit", "")).startswith(prefixes)


def _four_fifths(g: dict) -> bool:
    return "four_fifths" in str(g.get("name"))


def _audits(report: dict, names: tuple[str, ...]) -> list[dict]:
    from .sections import judged_models

    return [
        a
        for m in judged_models(report)
        for k, a in (m.get("audits") or {}).items()
        if isinstance(a, dict) and k.startswith(names) and a.get("metrics")
    ]


def _unmeasured(gates: list[dict]) -> str:
    """ "not measured: gate (reason); …" for the evidence column."""
    from .sections import gate_reasons

    reasons = gate_reasons(gates, "not-measured")
    return "not measured: " + "; ".join(f"{r['model']} {r['gate']} ({r['reason']})" for r in reasons)


def _gated(gates: list[dict], otherwise: tuple[str, str]) -> tuple[str, str]:
    """A row decided by its gates first: a failed gate is ``fail``; gates that could not be measured
    make it ``not-measured`` (none passed) or ``partial`` (some did); else ``otherwise``."""
    from .sections import gate_state

    state = gate_state(gates)
    if state == "fail":
        return "fail", otherwise[1]
    if state == "not-measured":
        return "not-measured", _unmeasured(gates)
    if state == "incomplete":
        return "partial", f"{otherwise[1]}; {_unmeasured(gates)}"
    return otherwise


def _check(report: dict, key: str) -> tuple[str, str]:
    """(status, evidence pointer) for one check key; gate-backed rows follow the candidate model(s)."""
    from .sections import judged_models

    if key == "datasheets":
        ok = bool((report.get("data") or {}).get("dataset_sha256"))
        return ("evidence" if ok else "not-measured"), "data sheet: source, licence, SHA-256, contract result"
    if key == "representation":
        d = report.get("data") or {}
        if not (d.get("contract_result") or {}).get("success"):
            return "fail", "data contract failed"
        return ("evidence" if d.get("representation") else "partial"), "group representation, missing values, contract"
    if key == "performance":
        have = _audits(report, ("performance", "recommendation"))
        return _gated(
            _gates(report, _by_audit(("performance", "recommendation"))),
            ("evidence" if have else "not-measured", "performance metrics with thresholds"),
        )
    if key == "privacy":
        if (report.get("data") or {}).get("audit_only"):
            from .sections import AUDIT_ONLY_PRIVACY

            return "not-measured", AUDIT_ONLY_PRIVACY
        have = _audits(report, ("privacy",))
        dp = any(((m.get("training") or {}).get("dp") or {}).get("enabled") for m in judged_models(report))
        status = "evidence" if have and dp else "partial" if have else "not-measured"
        return _gated(
            _gates(report, _by_audit(("privacy",))),
            (
                status,
                (
                    "membership-inference attacks and DP (ε, δ)"
                    if dp
                    else "membership-inference attack as a diagnostic only; no differential privacy: no guarantee"
                ),
            ),
        )
    if key == "bias":
        have = _audits(report, BIAS_AUDITS)
        mitigated = _audits(report, ("mitigation",))
        status = "evidence" if have and mitigated else "partial" if have else "not-measured"
        return _gated(
            _gates(report, _by_audit(BIAS_AUDITS)),
            (
                status,
                "per-group tables with CIs"
                + ("; mitigation comparison" if mitigated else "; no mitigation comparison"),
            ),
        )
    if key == "four_fifths":
        gates = _gates(report, _four_fifths)
        if not gates:
            return "not-measured", "no four-fifths gate in this run"
        if all(g.get("status") == "skipped" for g in gates):
            return "not-measured", "skipped: " + "; ".join(sorted({g.get("note") or "no reason" for g in gates}))
        if not any(g.get("status") == "pass" and not g.get("vacuous") for g in gates) and all(
            g.get("status") in ("pass", "skipped") for g in gates
        ):
            return "partial", "four-fifths gates that cannot fail (vacuous)"
        return _gated(gates, ("evidence", "four-fifths gates"))
    if key == "oversight":
        have = _audits(report, ("oversight",))
        return _gated(
            _gates(report, _by_audit(("oversight",))),
            ("evidence" if have else "not-measured", "automation/deferral curve and deferral rate by group"),
        )
    if key == "resources":
        r = report.get("resources") or {}
        measured = any(m.get("energy_measured") for m in r.get("models") or [])
        return ("evidence" if measured else "partial" if r.get("models") else "not-measured"), (
            "compute and energy (measured)" if measured else "compute; energy and CO2e estimated, not measured"
        )
    if key == "intended_use":
        use = report.get("intended_use") or {}
        return ("evidence" if use.get("purpose") else "not-measured"), "intended purpose, users, out-of-scope uses"
    if key == "risks":
        return ("evidence" if report.get("risks") else "not-measured"), "risks, limitations and what was not measured"
    if key == "integrity":
        signed = bool((report.get("integrity") or {}).get("signer_public_key"))
        return ("evidence" if signed else "partial"), (
            "signed evidence manifest" if signed else "dated, with hashes; unsigned"
        )
    raise KeyError(key)


# the gates each check reads, for the baselines' status shown beside a row
_BASELINE_GATES: dict[str, Callable[[dict], bool]] = {
    "performance": _by_audit(("performance", "recommendation")),
    "privacy": _by_audit(("privacy",)),
    "bias": _by_audit(BIAS_AUDITS),
    "four_fifths": _four_fifths,
    "oversight": _by_audit(("oversight",)),
}


def framework_rows(report: dict) -> list[dict[str, Any]]:
    """Section 13 rows, each pointing at the report section that is its evidence."""
    rows = []
    for framework, item, requirement, number, anchor, key in FRAMEWORK_ROWS:
        from .sections import gate_state

        status, evidence = _check(report, key)
        pick = _BASELINE_GATES.get(key)
        rows.append(
            {
                "framework": framework,
                "item": item,
                "requirement": requirement,
                "section": number,
                "anchor": anchor,
                "status": status,
                "evidence": evidence,
                "baseline_status": gate_state(_gates(report, pick, baseline=True)) if pick else None,
            }
        )
    return rows
