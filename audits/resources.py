"""Concentration of technology and resources: what training one run cost.

Pure functions over the models' training records (``models/fit.py``) plus one tiny reader of
Intel RAPL energy counters, used by ``tasks/train.py`` around training when the machine
exposes them.

Methods (stated in every report):

- Training FLOPs ≈ 6 × parameters × training examples × epochs: the forward + backward cost
  of a dense network, 2 FLOPs per parameter per example forward and 4 backward (Kaplan et al.
  2020, "Scaling laws for neural language models", §2.1). Convolutions reuse weights across
  positions and embeddings only touch looked-up rows, so for the image family it is a lower
  bound and for the recommender an upper bound; DP-SGD's per-example clipping adds to it.
  Not estimated for scikit-learn baselines (no epochs).
- Energy: measured from RAPL counters (``/sys/class/powercap/intel-rapl:*/energy_uj``, package
  domains) when they were readable before and after training; otherwise ESTIMATED as
  wall time × CPU cores × watts per core × PUE, the Green Algorithms method (Lannelongue,
  Grealey & Inouye 2021, "Green Algorithms: quantifying the carbon footprint of computation").
  Defaults: 12 W per core (Green Algorithms' default per-core TDP share), PUE 1.0 (a desktop
  or laptop; a data centre is ~1.5). Memory power is left out.
- CO2e = kWh × grid carbon intensity; default 480 gCO2e/kWh, the 2023 world average of the
  Ember Global Electricity Review 2024. Set ``resources.grid_gco2_per_kwh`` for the local grid.
"""

from __future__ import annotations

import glob
import os
from typing import Any

RESOURCE_DEFAULTS: dict[str, float] = {
    "watts_per_core": 12.0,
    "pue": 1.0,
    "grid_gco2_per_kwh": 480.0,
}
FLOPS_METHOD = (
    "6 × parameters × training examples × epochs (dense forward + backward; Kaplan et al. 2020); "
    "a lower bound for convolutions, an upper bound for embedding lookups"
)
ENERGY_ESTIMATE_METHOD = (
    "estimate: wall time × CPU cores × {watts_per_core:g} W per core × PUE {pue:g} "
    "(Green Algorithms, Lannelongue et al. 2021); no energy counters were readable"
)
ENERGY_MEASURED_METHOD = "measured: Intel RAPL package energy counters read before and after training"
CO2_METHOD = "kWh × {grid_gco2_per_kwh:g} gCO2e/kWh ({source})"
DEFAULT_GRID_SOURCE = "world average 2023, Ember Global Electricity Review 2024"
RAPL_GLOB = "/sys/class/powercap/intel-rapl:*/energy_uj"
J_PER_KWH = 3.6e6


def read_rapl_uj(pattern: str = RAPL_GLOB) -> dict[str, int] | None:
    """Package energy counters in µJ by domain, or ``None`` when none is readable (most VMs,
    containers, non-Intel machines, or counters readable by root only)."""
    out = {}
    for path in sorted(glob.glob(pattern)):
        if os.path.basename(os.path.dirname(path)).count(":") != 1:  # intel-rapl:0, not :0:0 subdomains
            continue
        try:
            with open(path, encoding="ascii") as fh:
                out[path] = int(fh.read().strip())
        except (OSError, ValueError):
            return None
    return out or None


def rapl_joules(
    before: dict[str, int] | None, after: dict[str, int] | None, max_range_uj: dict[str, int] | None = None
) -> float | None:
    """Energy between two readings in joules; a counter that wrapped adds its range."""
    if not before or not after or set(before) != set(after):
        return None
    total = 0
    for key, b in before.items():
        delta = after[key] - b
        if delta < 0:
            rng = (max_range_uj or {}).get(key)
            if not rng:
                return None
            delta += rng
        total += delta
    return total / 1e6


def training_flops(n_parameters: int | None, n_train: int | None, epochs: int | None) -> float | None:
    """6 · P · N · E (see module docstring); ``None`` when any factor is unknown."""
    if not n_parameters or not n_train or not epochs:
        return None
    return 6.0 * n_parameters * n_train * epochs


def energy_estimate_j(wall_time_s: float | None, cores: int | None, watts_per_core: float, pue: float) -> float | None:
    if wall_time_s is None or not cores:
        return None
    return float(wall_time_s) * cores * watts_per_core * pue


def model_resources(training: dict, settings: dict | None = None) -> dict[str, Any]:
    """Compute, energy and CO2e of one model's training record."""
    s = {**RESOURCE_DEFAULTS, **{k: v for k, v in (settings or {}).items() if v is not None}}
    measured = training.get("energy_j_measured")
    cores = training.get("cpu_cores")
    energy_j: float | None
    if measured is not None:
        energy_j, method = float(measured), ENERGY_MEASURED_METHOD
    else:
        energy_j = energy_estimate_j(training.get("wall_time_s"), cores, float(s["watts_per_core"]), float(s["pue"]))
        method = (
            ENERGY_ESTIMATE_METHOD.format(**s) if energy_j is not None else "not measured: no wall time or core count"
        )
    kwh = energy_j / J_PER_KWH if energy_j is not None else None
    return {
        "n_parameters": training.get("n_parameters"),
        "n_train": training.get("n_train"),
        "epochs_run": training.get("epochs_run"),
        "wall_time_s": training.get("wall_time_s"),
        "device": training.get("device"),
        "cpu_cores": cores,
        "training_flops": training_flops(
            training.get("n_parameters"), training.get("n_train"), training.get("epochs_run")
        ),
        "energy_kwh": kwh,
        "energy_measured": measured is not None,
        "energy_method": method,
        "co2e_g": kwh * float(s["grid_gco2_per_kwh"]) if kwh is not None else None,
    }


def resources_section(models: list[dict], settings: dict | None = None) -> dict[str, Any]:
    """Section 8 of the report: per-model training cost, totals, methods, runs/trials counted."""
    s = {**RESOURCE_DEFAULTS, **{k: v for k, v in (settings or {}).items() if v is not None}}
    rows = []
    for m in models:
        row = model_resources(m.get("training") or {}, s)
        rows.append({"model": m.get("name"), "role": m.get("role", "candidate"), **row})

    def total(key):
        vals = [r[key] for r in rows if r[key] is not None]
        return sum(vals) if vals else None

    source = s.get("grid_source") or (
        DEFAULT_GRID_SOURCE if s["grid_gco2_per_kwh"] == 480.0 else "set by the run owner"
    )
    pretraining = [
        {"model": m.get("name"), **(m.get("training") or {})["pretraining"]}
        for m in models
        if (m.get("training") or {}).get("pretraining")
    ]
    return {
        "models": rows,
        # what the model cards of pretrained models state about their pretraining (hf family)
        "pretraining": pretraining,
        "totals": {
            "wall_time_s": total("wall_time_s"),
            "training_flops": total("training_flops"),
            "energy_kwh": total("energy_kwh"),
            "co2e_g": total("co2e_g"),
        },
        "n_models_trained": len(rows),
        "n_tuning_trials": 0,
        "tuning_note": "the pipeline trains each configured model once with fixed hyperparameters; "
        "tuning done outside it (earlier runs in the same MLflow experiment) is not counted here",
        "methods": {
            "flops": FLOPS_METHOD,
            "energy": "; ".join(sorted({r["energy_method"] for r in rows})) or "not measured",
            "co2e": CO2_METHOD.format(grid_gco2_per_kwh=float(s["grid_gco2_per_kwh"]), source=source),
        },
        "settings": {k: s[k] for k in RESOURCE_DEFAULTS},
    }
