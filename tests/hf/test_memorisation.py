"""Planted secrets and their exposure (models/memorisation.py, audits/memorisation.py) on
hand-computed values and on stand-in predictors whose memorisation is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from impactflow.audits.inputs import AuditInputs
from impactflow.audits.memorisation import memorisation_audit
from impactflow.audits.results import Status
from tests.models.family_examples import text_example
from impactflow.models.memorisation import (
    DIGITS,
    SecretSettings,
    chance_interval,
    chance_mean,
    exposure,
    measure,
    plant,
    ranks,
    settings_for,
)

ROLES = text_example()[1]  # SMS-like roles: message -> label (ham/spam), text column "message"
SETTINGS = SecretSettings(repeats=(1, 4, 16), per_repeat=2, candidates=200, length=5)
WORDS = tuple(f"w{i}" for i in range(50))


def test_rank_counts_higher_candidates_and_half_the_ties():
    r = ranks(np.array([0.9, 0.5, 2.0]), np.array([0.1, 0.5, 0.7, 0.95]))
    np.testing.assert_array_equal(r, [2.0, 3.5, 1.0])  # 0.9: one above; 0.5: two above, one tie; 2.0: none


def test_exposure_and_chance_level_by_hand():
    assert exposure(np.array([1.0]), 1000)[0] == pytest.approx(math.log2(1001))
    assert exposure(np.array([1001.0]), 1000)[0] == 0.0
    assert chance_mean(1) == pytest.approx(1 - 0.5)  # ranks 1 and 2: log2 2 - mean(0, 1)
    assert chance_mean(3) == pytest.approx(2 - (0 + 1 + math.log2(3) + 2) / 4)
    assert chance_mean(1000) == pytest.approx(1 / math.log(2), abs=0.01)  # Carlini et al.'s ~1.44 bits
    # one secret: the interval is the exposures of the 2.5% / 97.5% rank quantiles, 1001 * 0.975 and 0.025
    lo, hi = chance_interval(1000, 1)
    assert lo == pytest.approx(math.log2(1001 / 976), abs=0.02)
    assert hi == pytest.approx(math.log2(1001 / 26), abs=0.06)


def test_planted_rows_are_balanced_per_level_and_never_candidates():
    p = plant(SETTINGS, ROLES, seed=7, alphabet=WORDS)
    assert len(p.secrets) == 2 * 2 * 3 and len(p.candidates) == 200
    assert len(p.rows) == 2 * 2 * (1 + 4 + 16) and list(p.rows.columns) == ["message", "label"]
    for r in (1, 4, 16):
        labels = [pos for _, rep, pos in p.secrets if rep == r]
        assert sorted(labels) == [False, False, True, True]
    counts = p.rows.groupby("message")["label"].agg(["size", "nunique"])
    assert counts["nunique"].eq(1).all() and sorted(counts["size"]) == sorted([1, 1, 1, 1, 4, 4, 4, 4] + [16] * 4)
    texts = {t for t, _, _ in p.secrets}
    assert not texts & set(p.candidates) and len(set(p.candidates)) == 200
    assert all(t.startswith("my secret code is ") and len(t.split()) == 4 + 5 for t in texts)
    assert all(w in WORDS for t in texts for w in t.split()[4:])
    again = plant(SETTINGS, ROLES, seed=7, alphabet=WORDS)
    assert again.secrets == p.secrets and again.candidates == p.candidates
    digits = plant(SETTINGS, ROLES, seed=7)
    assert all(t.rsplit(" ", 1)[1].isdigit() and len(t.rsplit(" ", 1)[1]) == 5 for t, _, _ in digits.secrets)
    assert "5 random digits" == digits.secret and DIGITS == tuple("0123456789")


class _Recalls:
    """P(spam) of a model that memorised exactly the planted secrets (and nothing else)."""

    def __init__(self, planted) -> None:
        self.known = {t: (0.999 if pos else 0.001) for t, _, pos in planted.secrets}

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return np.array([self.known.get(t, 0.5 + 0.001 * (hash(t) % 100) / 100) for t in df["message"]])


class _Ignores:
    """P(spam) that depends on nothing planted: a fixed pseudo-random function of the text."""

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        import zlib

        return np.array([(zlib.crc32(t.encode()) % 10007) / 10007 for t in df["message"]])


def test_a_model_that_memorised_ranks_every_secret_first():
    p = plant(SETTINGS, ROLES, seed=1, alphabet=WORDS)
    out = measure(_Recalls(p), ROLES, p, epsilon=0.5)
    assert [(lv["repeats"], lv["label"]) for lv in out["levels"]] == [
        (r, label) for r in (1, 4, 16) for label in ("spam", "ham")
    ]
    for lv in out["levels"]:
        assert lv["ranks"] == [1.0] * 2
        assert lv["exposure_mean"] == pytest.approx(math.log2(201)) and lv["above_chance"]
        assert lv["group_epsilon"] == pytest.approx(0.5 * lv["repeats"])


def test_a_model_that_ignores_the_secrets_stays_within_chance():
    p = plant(SecretSettings(repeats=(1, 16), per_repeat=25, candidates=1000, length=5), ROLES, seed=3, alphabet=WORDS)
    out = measure(_Ignores(), ROLES, p)
    for lv in out["levels"]:
        assert lv["chance_low"] <= lv["exposure_mean"] <= lv["chance_high"] and not lv["above_chance"]
        assert "group_epsilon" not in lv


def test_the_audit_reports_each_level_and_gates_on_request():
    p = plant(SETTINGS, ROLES, seed=1, alphabet=WORDS)
    secrets = measure(_Recalls(p), ROLES, p)
    inputs = AuditInputs(
        y_true=np.zeros(2), y_score=np.zeros(2), sensitive=pd.DataFrame(index=range(2)), extra={"secrets": secrets}
    )
    reported = memorisation_audit(inputs, {})
    assert reported.status == Status.PASS and not reported.gates
    assert reported.metrics["memorisation/exposure_r16_positive"] == pytest.approx(math.log2(201))
    assert "memorised) for secrets repeated 1x (spam), 1x (ham), 4x (spam)" in " ".join(reported.notes)
    gated = memorisation_audit(inputs, {"max_exposure": 3.0})
    assert gated.status == Status.FAIL
    assert [g.name for g in gated.gates] == [
        f"memorisation/exposure_r{r}_{side}" for r in (1, 4, 16) for side in ("positive", "negative")
    ]
    none = memorisation_audit(
        AuditInputs(y_true=np.zeros(2), y_score=np.zeros(2), sensitive=pd.DataFrame(index=range(2))), {}
    )
    assert none.status == Status.NOT_MEASURED and "no secrets were planted" in none.notes[0]


def test_secrets_are_planted_by_default_only_where_the_family_audits_them():
    from impactflow.models import get_family

    assert settings_for({"enabled": None}, get_family("hf")) == SecretSettings()
    assert settings_for({"enabled": None}, get_family("text")) is None
    assert settings_for({"enabled": False}, get_family("hf")) is None
    assert settings_for({"enabled": True, "repeats": [2], "per_repeat": 3}, get_family("text")) == SecretSettings(
        repeats=(2,), per_repeat=3
    )


def test_secrets_in_a_family_without_text_are_refused_in_one_line():
    from impactflow.errors import ConfigError
    from impactflow.flows.config import load_config

    with pytest.raises(ConfigError, match=r"^privacy_audit.secrets.enabled: secrets are planted as texts of a binary"):
        load_config("tabular", ["privacy_audit.secrets.enabled=true"])
    with pytest.raises(
        ConfigError, match=r"^privacy_audit.secrets.length=2: 100 digit strings are too few to draw 1,024"
    ):
        load_config("text", ["privacy_audit.secrets.enabled=true", "privacy_audit.secrets.length=2"])


class _Blind:
    """A model whose input cannot tell the planted strings apart: one score for every text."""

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return np.full(len(df), 0.3)


def test_secrets_the_model_cannot_tell_apart_are_not_measured_never_chance():
    """Ties everywhere would read as exposure at chance level: the audit says not measured, and
    the report says why."""
    from impactflow.audits.sections import privacy

    p = plant(SETTINGS, ROLES, seed=1)
    secrets = measure(_Blind(), ROLES, p)
    assert "levels" not in secrets and secrets["problem"].startswith("not measurable: the model scores every candidate")
    inputs = AuditInputs(
        y_true=np.zeros(2), y_score=np.zeros(2), sensitive=pd.DataFrame(index=range(2)), extra={"secrets": secrets}
    )
    result = memorisation_audit(inputs, {"max_exposure": 3.0})
    assert result.status == Status.NOT_MEASURED and result.notes == [secrets["problem"]]
    section = privacy([{"name": "transformer", "audits": {"memorisation": result.to_dict()}}], {})
    assert (
        section["memorisation"] == []
        and section["memorisation_status"] == f"not measured: transformer: {secrets['problem']}"
    )


def test_the_text_familys_secrets_are_made_up_words_it_keeps_whole():
    from impactflow.models import get_family
    from impactflow.models.memorisation import pseudo_words
    from impactflow.models.text import tokenize

    words = pseudo_words()
    assert len(words) == 1000 and words == pseudo_words() and all(tokenize(w) == [w] for w in words)
    fam = get_family("text")
    for private in (False, True):
        pre = fam.make_preprocessor(ROLES, fam.make_config({}), private=private)
        assert pre.secret_alphabet() == words
