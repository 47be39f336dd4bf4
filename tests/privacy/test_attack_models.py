"""Reference models and the canary run on real (tiny) models of every family."""

from __future__ import annotations

import numpy as np
import pytest

from impactflow.audits import AuditInputs, Status
from impactflow.audits.lira import canary_audit, lira_audit
from impactflow.models import FAMILIES, get_family
from impactflow.models.data import Split, split_frame
from impactflow.models.fit import fit_family_model
from impactflow.models.privacy_attack import audit_rows, canary_run, lira_inputs, make_canaries, train_reference_model
from impactflow.models.training import PrivacySettings
from tests.models.family_examples import EXAMPLES, example_params, tabular_example

OVERFIT = dict(
    hidden_sizes=(256, 256), dropout=0.0, lr=0.01, weight_decay=0.0, batch_size=32, epochs=100, patience=1000
)


def _noisy_tabular(n=300, seed=1):
    """The tabular example with 30 % of labels flipped: only memorisation fits them."""
    df, roles = tabular_example(n=n, seed=seed)
    flip = np.random.default_rng(0).random(n) < 0.3
    df.loc[flip, "y"] = np.where(df.loc[flip, "y"] == "pos", "neg", "pos")
    split = split_frame(df, target="y", stratify_on=[], validation=0.15, test=0.3, seed=0)
    return split, roles


def test_audit_rows_never_put_an_audited_row_in_the_pool():
    split, _ = _noisy_tabular()
    rows = audit_rows(split, n_audit=50, seed=3)
    key = lambda f: set(map(tuple, f[["num_a", "num_b"]].to_numpy()))  # noqa: E731 (continuous: unique)
    assert len(rows.members) == len(rows.nonmembers) == 50
    assert not key(rows.members) & key(rows.pool)
    assert key(rows.members) | key(rows.pool) == key(split.train)
    assert key(rows.nonmembers) <= key(split.test)


def test_canaries_have_a_wrong_label_and_keep_the_dtype():
    split, roles = _noisy_tabular()
    can = make_canaries(split, roles, m=20, seed=0)
    original = split.test.set_index(["num_a"]).loc[can["num_a"], "y"].to_numpy()
    assert len(can) == 20 and (can["y"].to_numpy() != original).all()
    assert can["y"].dtype == split.train["y"].dtype


def test_lira_detects_membership_of_an_overfit_tabular_model():
    """Deliberately overfit (noisy labels, no regularisation, early stopping on the training rows)."""
    split, roles = _noisy_tabular()
    split = Split(train=split.train, validation=split.train, test=split.test)
    fam = get_family("tabular")
    target = fit_family_model(fam, OVERFIT, split, roles, seed=0, device="cpu")
    refs = [train_reference_model(fam, OVERFIT, split, roles, k=k, n_audit=80, seed=0) for k in range(2)]
    data = lira_inputs(target.predictor, split, roles, "binary", refs, n_audit=80, seed=0)
    assert data["reference_outputs"][0].shape == (160,) and data["member"].sum() == 80
    res = lira_audit(
        AuditInputs(y_true=target.y_test, y_score=target.test_output, sensitive=None, extra={"lira": data}), {}
    )
    assert res.metrics["privacy/lira_auc"] > 0.6
    assert res.metrics["privacy/lira_reference_models"] == 2


TINY = {
    "tabular": {"hidden_sizes": [16], "epochs": 1, "batch_size": 32},
    "text": {"epochs": 1, "batch_size": 32},
    "image": {"epochs": 1, "batch_size": 32, "channels": [8, 8], "hidden": 16},
    "recommender": {"epochs": 1, "batch_size": 32, "n_factors": 4, "mlp_sizes": [8]},
    "hf": {"epochs": 1, "batch_size": 32},
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_dp_canary_bound_stays_below_the_accountant_epsilon(name):
    fam = get_family(name)
    df, roles = EXAMPLES[name](n=160, seed=0)
    split = split_frame(
        df, target=roles.target, stratify_on=[], validation=0.2, test=0.3, seed=0, stratify=fam.task != "rating"
    )
    params = example_params(
        name, **{k: v for k, v in TINY[name].items() if k in {f for f in fam.config_cls.__dataclass_fields__}}
    )
    data = canary_run(
        fam,
        params,
        split,
        roles,
        m=40,
        guess_fraction=0.25,
        seed=0,
        privacy=PrivacySettings(enabled=True, noise_multiplier=1.0, delta=1e-3),
    )
    assert data["epsilon"] > 0 and data["k_pos"] == data["k_neg"] == 10 and len(data["scores"]) == 40
    res = canary_audit(
        AuditInputs(
            y_true=[0, 1],
            y_score=[0.1, 0.9],
            sensitive=None,
            extra={"canary": data},
            epsilon=data["epsilon"],
            delta=1e-3,
        ),
        {},
    )
    assert res.metrics["privacy/epsilon_lower_bound"] <= res.metrics["privacy/epsilon"]
    assert res.status is Status.PASS


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_lira_runs_on_every_family(name):
    """Reference-model outputs have the family's output shape and the audit reads them."""
    fam = get_family(name)
    df, roles = EXAMPLES[name](n=160, seed=0)
    split = split_frame(
        df, target=roles.target, stratify_on=[], validation=0.2, test=0.3, seed=0, stratify=fam.task != "rating"
    )
    params = example_params(
        name, **{k: v for k, v in TINY[name].items() if k in {f for f in fam.config_cls.__dataclass_fields__}}
    )
    target = fit_family_model(fam, params, split, roles, seed=0, device="cpu")
    refs = [train_reference_model(fam, params, split, roles, k=k, n_audit=20, seed=0) for k in range(2)]
    data = lira_inputs(target.predictor, split, roles, fam.task, refs, n_audit=20, seed=0)
    shape = (40, len(roles.labels)) if fam.task == "multiclass" else (40,)
    assert data["target_output"].shape == shape and all(r.shape == shape for r in data["reference_outputs"])
    res = lira_audit(
        AuditInputs(
            y_true=target.y_test,
            y_score=target.test_output,
            sensitive=None,
            task=fam.task,
            labels=tuple(roles.labels),
            extra={"lira": data},
        ),
        {},
    )
    assert 0 <= res.metrics["privacy/lira_auc"] <= 1 and res.metrics["privacy/lira_epsilon_estimate"] >= 0
