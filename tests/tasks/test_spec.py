"""The run's spec: contract, family and roles resolved once, and shipped to a Dask worker by name."""

from __future__ import annotations

import pickle

from impactflow.flows.config import load_config
from impactflow.task_kind import TaskKind
from impactflow.tasks.spec import RunSpec


def test_a_spec_resolves_each_part_once(monkeypatch):
    import impactflow.data_contracts as data_contracts

    calls = []
    real = data_contracts.get_contract
    monkeypatch.setattr(data_contracts, "get_contract", lambda ref: calls.append(ref) or real(ref))
    spec = RunSpec("adult", "tabular", exclude_sensitive=True)
    assert spec.contract is spec.contract and spec.roles is spec.roles and spec.family.task is TaskKind.BINARY
    assert calls == ["adult"]
    # the models train without the sensitive columns; the audits still split by every one of them
    assert {"sex", "race"} <= set(spec.contract.sensitive)
    assert not {"sex", "race"} & set(spec.roles.features)
    assert {"sex", "race"} <= set(spec.audit_roles.features) and spec.audit_roles.groups == spec.roles.groups


def test_a_pickled_spec_carries_only_the_names():
    spec = RunSpec("adult", "tabular")
    assert spec.roles.target == "income"  # resolved here
    copy = pickle.loads(pickle.dumps(spec))
    assert copy == spec and vars(copy) == {
        "contract_ref": "adult",
        "family_name": "tabular",
        "exclude_sensitive": False,
    }
    assert copy.roles == spec.roles  # and resolved again where it lands


def test_the_spec_of_a_run_config():
    cfg = load_config("tabular", ["data.exclude_sensitive_from_features=true"])
    assert RunSpec.of(cfg) == RunSpec("adult", "tabular", True)
