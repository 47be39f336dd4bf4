"""Under DP, everything released with the model is data-independent (issue 20, defect 2).

For every family: the preprocessing fitted under DP on two neighbouring datasets (one row
apart, that row carrying a rare category / token / id / extreme image) is byte-identical,
while the non-private preprocessing is not (so each check can fail). The Adult DP encoder's
categories are the contract's declared sets; a feature without a declared domain is one clear
``ConfigError``; a token of one training message never reaches a DP text model's pickle.
"""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from impactflow.data_contracts import contract_from_yaml, get_contract, load_dataset
from impactflow.data_contracts.domains import NO_DECLARED_DOMAIN, declared_domains, domains_from_suite
from impactflow.errors import ConfigError
from impactflow.models import FAMILIES, get_family
from impactflow.models.base import roles_for
from impactflow.models.data import split_frame
from impactflow.models.dp_claim import NOT_DATA_INDEPENDENT, SameRows, covers_sentence, preprocessing_record
from impactflow.models.fit import fit_family_model
from impactflow.models.training import PrivacySettings
from tests.models.family_examples import EXAMPLES, example_params

DP = PrivacySettings(enabled=True, noise_multiplier=1.0, delta=1e-3)


def _neighbours(name: str):
    """(base frame, base + one row carrying something rare, roles) for a family."""
    df, roles = EXAMPLES[name](n=64, seed=0)
    if name == "tabular":
        roles = dataclasses.replace(
            roles, domains=dataclasses.replace(roles.domains, categories={"cat": ("x", "y", "z", "rare")})
        )
        extra = pd.DataFrame({"num_a": [3.9], "num_b": [9.0], "cat": ["rare"], "y": ["pos"]})
    elif name in ("text", "hf"):
        extra = pd.DataFrame({"message": ["zorblatt zorblatt call quixotica"], "label": ["spam"]})
    elif name == "image":
        extra = pd.DataFrame({"image": pd.Series([np.full((28, 28), 255, dtype=np.uint8)], dtype=object), "label": [3]})
    else:
        df = df[df["user_id"] != 8].reset_index(drop=True)  # user 8 rated once, in the extra row
        extra = pd.DataFrame({"user_id": [8], "item_id": [10], "rating": [5.0]})
    return df, pd.concat([df, extra], ignore_index=True), roles


def _fitted_bytes(name: str, df, roles, private: bool) -> bytes:
    fam = get_family(name)
    config = fam.make_config(example_params(name, **({"min_freq": 2} if name == "text" else {})))
    pre = fam.make_preprocessor(roles, config, private=True) if private else fam.make_preprocessor(roles, config)
    pre.fit_transform(df[list(roles.features)])
    return pickle.dumps(pre)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_dp_preprocessing_is_identical_on_neighbouring_datasets(name):
    base, plus_one, roles = _neighbours(name)
    assert _fitted_bytes(name, base, roles, private=True) == _fitted_bytes(name, plus_one, roles, private=True)
    # the same check on the non-private preprocessing sees the extra row (the test can fail);
    # hf: the pretrained tokenizer reads no row with or without DP
    fitted_on_rows = _fitted_bytes(name, base, roles, private=False) != _fitted_bytes(
        name, plus_one, roles, private=False
    )
    assert fitted_on_rows == (name != "hf")


def test_declared_domains_come_from_unconditional_suite_expectations():
    suite = [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "c", "value_set": ["a", "b", "a", "d"]}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "c", "value_set": ["b", "a", "e"]}},
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "g", "value_set": ["z"], "row_condition": {"type": "comparison"}},
        },
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x", "min_value": 0, "max_value": 10}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x", "min_value": 2}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "w", "min_value": 1}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}},
    ]
    d = domains_from_suite("toy", suite, "s.json")
    assert d.categories == {"c": ("a", "b")}  # declarations intersect; suite order kept
    assert d.ranges == {"x": (2.0, 10.0), "w": (1.0, None)}
    assert d.value_range("x") == (2.0, 10.0)
    with pytest.raises(ConfigError) as err:
        d.value_range("w")  # open upper end
    assert str(err.value) == NO_DECLARED_DOMAIN.format(
        column="w",
        what="finite range (min_value < max_value)",
        contract="toy",
        expectation="expect_column_values_to_be_between",
        suite="s.json",
    )
    with pytest.raises(ConfigError, match=r"under DP, column 'g' needs a declared category set in contract 'toy'"):
        d.category_set("g")  # only a row-conditioned set: not a domain


def test_adult_dp_encoder_holds_the_declared_sets_not_the_training_rows():
    """Holand-Netherlands occurs in one Adult row: with it or without it, the DP encoder is the
    same, and its categories are exactly the sets declared in data_contracts/adult."""
    contract = get_contract("adult")
    from impactflow.data_contracts.validation import load_suite

    suite = load_suite(contract)  # generated from the contract's declarations
    declared = {
        e["kwargs"]["column"]: [str(v) for v in e["kwargs"]["value_set"]]
        for e in suite["expectations"]
        if e["type"] == "expect_column_values_to_be_in_set"
    }
    df = load_dataset(contract)
    rare = df["native-country"] == "Holand-Netherlands"
    assert rare.sum() == 1
    roles = roles_for(contract, "binary", exclude_sensitive=False)
    fam = get_family("tabular")
    with_row = fam.make_preprocessor(roles, None, private=True)
    with_row.fit_transform(df[list(roles.features)])
    without = fam.make_preprocessor(roles, None, private=True)
    without.fit_transform(df.loc[~rare, list(roles.features)])
    assert pickle.dumps(with_row) == pickle.dumps(without)
    assert {c: list(v) for c, v in with_row.categories.items()} == {c: declared[c] for c in roles.categorical}
    assert with_row.ranges["age"] == (17.0, 90.0) and with_row.ranges["capital-loss"] == (0.0, 4356.0)
    # the old (non-private) encoder learns the category from that one row
    plain = fam.make_preprocessor(roles, None)
    plain.fit_transform(df.loc[~rare, list(roles.features)])
    assert b"Holand-Netherlands" not in pickle.dumps(plain)
    plain.fit_transform(df[list(roles.features)])
    assert b"Holand-Netherlands" in pickle.dumps(plain)


def test_dp_tabular_encoding_by_hand():
    """Declared sets + an other/missing column; numbers clipped and scaled to [-1, 1] by the
    declared range, on a log scale when it spans more than 100x (num_c: 0..9999)."""
    _, roles = EXAMPLES["tabular"]()  # cat in {x, y, z}; num_a in [-4, 4], num_b in [0, 9]
    roles = dataclasses.replace(
        roles,
        numeric=("num_a", "num_b", "num_c"),
        domains=dataclasses.replace(roles.domains, ranges={**roles.domains.ranges, "num_c": (0.0, 9999.0)}),
    )
    pre = get_family("tabular").make_preprocessor(roles, None, private=True)
    X = pre.fit_transform(
        pd.DataFrame(
            {
                "num_a": [-4.0, 0.0, 10.0, np.nan],
                "num_b": [0.0, 9.0, 4.5, -3.0],
                "num_c": [0.0, 9999.0, 99.0, 1e6],
                "cat": ["x", "z", "w", None],
            }
        )
    )
    # num_c = 99: 2 * ln(100) / ln(10000) - 1 = 0
    np.testing.assert_allclose(
        X,
        [
            [-1.0, -1.0, -1.0, 1, 0, 0, 0],
            [0.0, 1.0, 1.0, 0, 0, 1, 0],
            [1.0, 0.0, 0.0, 0, 0, 0, 1],  # 10 clipped to 4; "w" undeclared -> other
            [0.0, -1.0, 1.0, 0, 0, 0, 1],
        ],
        atol=1e-6,
    )  # NaN -> 0; None -> other/missing
    assert pre.spec() == {"n_features": 7}
    assert pre.log_scaled == {"num_a": False, "num_b": False, "num_c": True}


def test_a_feature_without_a_declared_domain_fails_before_training(tmp_path):
    """A copy of the Adult contract that declares no range for 'age': a DP run stops with
    one line naming the contract and the column; a non-private run is unaffected."""
    import yaml

    folder = tmp_path / "adult_copy"
    shutil.copytree(
        get_contract("adult").contract_path.parent, folder, ignore=shutil.ignore_patterns("*.gz", "__pycache__")
    )
    raw = yaml.safe_load((folder / "contract.yaml").read_text())
    raw["columns"]["age"] = {"type": "integer"}  # no min/max
    (folder / "contract.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    contract = contract_from_yaml(folder / "contract.yaml")
    roles = roles_for(contract, "binary", exclude_sensitive=False)
    df = load_dataset(get_contract("adult")).sample(n=400, random_state=0).reset_index(drop=True)
    split = split_frame(df, target="income", stratify_on=[], validation=0.2, test=0.2, seed=0)
    fam = get_family("tabular")
    with pytest.raises(ConfigError) as err:
        fit_family_model(fam, {"epochs": 1}, split, roles, seed=0, device="cpu", privacy=DP)
    assert str(err.value) == NO_DECLARED_DOMAIN.format(
        column="age",
        what="finite range (min_value < max_value)",
        contract="adult",
        expectation="min and max under columns.age",
        suite="contract.yaml",
    )  # the key to add, in a declared contract
    assert "\n" not in str(err.value)
    assert fam.make_preprocessor(roles, None).fit_transform(split.train[list(roles.features)]).shape[0] == len(
        split.train
    )


def _single_message_tokens(texts) -> set[str]:
    from impactflow.models.text import tokenize

    counts = Counter(tok for text in texts for tok in set(tokenize(text)))
    return {t for t, c in counts.items() if c == 1 and len(t) >= 6}


def test_a_token_of_one_training_message_never_reaches_the_dp_text_model():
    """Real SMS messages: every token (6+ characters) that occurs in exactly one training
    message is absent from the pickled DP predictor (preprocessor + Transformer); the
    vocabulary model, trained on the same rows, holds some of them (repeated within their
    message, they pass min_freq). Strings that the pickle holds whatever the data (code,
    contract names) are found by pickling a model fitted on other rows, and not counted."""
    contract = get_contract("sms_spam")
    df = load_dataset(contract).sample(n=600, random_state=0).reset_index(drop=True)
    roles = roles_for(contract, "binary", exclude_sensitive=False)
    fam = get_family("text")
    params = {
        "epochs": 1,
        "batch_size": 64,
        "d_model": 16,
        "n_heads": 2,
        "n_layers": 1,
        "d_ff": 16,
        "hash_buckets": 512,
    }
    split = split_frame(
        df.iloc[:400].reset_index(drop=True), target="label", stratify_on=[], validation=0.2, test=0.2, seed=0
    )
    other = split_frame(
        df.iloc[400:].reset_index(drop=True), target="label", stratify_on=[], validation=0.2, test=0.2, seed=0
    )
    singles = _single_message_tokens(split.train["message"]) - set().union(
        *(_single_message_tokens([t]) for t in other.train["message"])
    )

    def blob(s, privacy) -> bytes:
        return pickle.dumps(fit_family_model(fam, params, s, roles, seed=0, device="cpu", privacy=privacy).predictor)

    dp, control = blob(split, DP), blob(other, DP)
    candidates = {t for t in singles if t.encode() not in control}
    assert len(candidates) > 50
    assert [t for t in candidates if t.encode() in dp] == []
    plain = blob(split, PrivacySettings())
    leaked = [t for t in candidates if t.encode() in plain]
    assert len(leaked) >= 3  # the non-private vocabulary does carry one-message tokens


def test_dp_text_preprocessor_hashes_with_a_stable_hash():
    """crc32 ids are fixed (not Python's salted hash): these values hold in every process."""
    from impactflow.models.text import HashingTextPreprocessor, hashed_id

    # CRC-32 of the UTF-8 bytes (binascii.crc32 gives the same): free 1294909896, prize
    # 1372097473, <d4> 2922124709, ! 2657877971
    assert [hashed_id(t, 1000) for t in ("free", "prize", "<d4>", "!")] == [898, 475, 711, 973]
    pre = HashingTextPreprocessor("message", max_len=4, buckets=1000)
    X = pre.fit_transform(pd.DataFrame({"message": ["free prize 2024!", ""]}))
    np.testing.assert_array_equal(X, [[898, 475, 711, 973], [1, 0, 0, 0]])  # "" -> one <unk>
    assert pre.spec() == {"vocab_size": 1002, "max_len": 4}


def test_recommender_dp_ids_are_the_declared_id_ranges():
    """MovieLens 100K declares users 1..943 and items 1..1682: the DP id maps are these, whatever
    ids the training rows hold (an id outside the declared range maps to row 0)."""
    d = declared_domains(get_contract("movielens"))
    assert d.ranges["user_id"] == (1.0, 943.0) and d.ranges["item_id"] == (1.0, 1682.0)
    roles = roles_for(get_contract("movielens"), "rating", exclude_sensitive=False)
    pre = get_family("recommender").make_preprocessor(roles, None, private=True)
    X = pre.fit_transform(pd.DataFrame({"user_id": [5, 943, 944], "item_id": [1, 2, 1682]}))
    np.testing.assert_array_equal(X, [[5, 1], [943, 2], [0, 1682]])
    assert (pre.spec()["n_users"], pre.spec()["n_items"]) == (944, 1683)
    synthetic = declared_domains(get_contract("synthetic_ratings"))
    assert synthetic.ranges["user_id"] == (1.0, 600.0) and synthetic.ranges["item_id"] == (1.0, 400.0)


def test_image_dp_normalisation_is_fixed():
    df, roles = EXAMPLES["image"](n=8)
    pre = get_family("image").make_preprocessor(roles, None, private=True)
    X = pre.fit_transform(df)
    first = df["image"].iloc[0].astype(np.float32)
    np.testing.assert_allclose(X[0, 0], first / 127.5 - 1.0, atol=1e-6)


def test_covers_sentence_from_the_runs_facts():
    dp = {"enabled": True, "epsilon": 0.99612, "delta": 1e-5}
    text = covers_sentence(
        dp,
        privacy_unit="one training row",
        summary="category sets declared in contract 'adult'",
        task="binary",
        same_rows=SameRows(baselines=("logreg", "hist_gb"), canary_models=1, reference_models=2),
    )
    assert text == (
        "(ε = 0.996, δ = 1e-05) covers the model weights (privacy unit: one training row); the preprocessing "
        "(category sets declared in contract 'adult') and the decision threshold (fixed at 0.5) are "
        "data-independent; not covered (ε = ∞): the validation rows read by early stopping and best-epoch "
        "selection and the non-private baselines 'logreg' and 'hist_gb' trained on the same rows; the privacy "
        "audit's canary model and 2 LiRA reference models, trained on the same rows with the same DP settings, "
        "spend their own ε, which the privacy ledger adds to this one; the number of training rows (it sets "
        "the sampling rate) is treated as public."
    )
    bare = covers_sentence(dp, privacy_unit="one image", summary="s", task="multiclass")
    assert "baseline" not in bare and "privacy audit" not in bare and "the decision rule (argmax)" in bare


def test_a_component_fitted_on_rows_stops_a_dp_run():
    class Fitted:
        def components(self):
            return {"vocabulary": "fitted on training rows: tokens seen twice"}

    with pytest.raises(ConfigError) as err:
        preprocessing_record("text", Fitted(), "binary")
    assert str(err.value) == NOT_DATA_INDEPENDENT.format(
        family="text", component="vocabulary", how="fitted on training rows: tokens seen twice"
    )


def test_a_family_without_dp_preprocessing_is_refused_under_dp():
    fam = get_family("tabular")
    legacy = dataclasses.replace(fam, make_preprocessor=lambda roles, config: fam.make_preprocessor(roles, config))
    df, roles = EXAMPLES["tabular"](n=80)
    split = split_frame(df, target="y", stratify_on=[], validation=0.2, test=0.2, seed=0)
    with pytest.raises(ConfigError, match=r"under DP, family 'tabular' has no data-independent preprocessing"):
        fit_family_model(legacy, {"epochs": 1}, split, roles, seed=0, device="cpu", privacy=DP)
    assert fit_family_model(legacy, {"epochs": 1}, split, roles, seed=0, device="cpu").training["dp"] == {
        "enabled": False
    }


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_dp_model_records_what_its_epsilon_covers(name):
    fam = get_family(name)
    df, roles = EXAMPLES[name](n=120, seed=0)
    split = split_frame(
        df, target=roles.target, stratify_on=[], validation=0.2, test=0.3, seed=0, stratify=fam.task != "rating"
    )
    fitted = fit_family_model(
        fam,
        example_params(name, epochs=1, batch_size=32),
        split,
        roles,
        seed=0,
        device="cpu",
        privacy=DP,
        same_rows=SameRows(baselines=tuple(fam.baselines)),
    )
    dp = fitted.training["dp"]
    assert dp["covers"].startswith(f"(ε = {dp['epsilon']:.3g}, δ = 0.001) covers the model weights")
    assert fam.privacy_unit in dp["covers"] and all(f"'{b}'" in dp["covers"] for b in fam.baselines)
    assert dp["preprocessing"] and all(v.startswith("data-independent") for v in dp["preprocessing"].values())
    assert "decision" in dp["preprocessing"]
