"""PII / direct-identifier scan: pattern rules refuse identifying columns (naming the column
and the rule, never a value), allow-listed columns pass, free text is reported, shipped data passes."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from impactflow.data_contracts import get_contract, load_dataset
from impactflow.data_contracts.pii import PII_CHECK, contract_scan, name_words, refused_failures, scan
from tests.conftest import SHARED_DATASETS

N = 40
EMAILS = [f"user{i}@example.org" for i in range(N)]
NAMES = [
    f"{g} {f}" for g, f in zip(["Mary", "John", "Linda", "James"] * 10, ["Smith", "Jones", "Brown", "Garcia"] * 10)
]


def _rules(findings):
    return {(f.column, f.rule, f.action) for f in findings}


def test_email_and_name_columns_are_refused_by_value_with_the_column_named():
    df = pd.DataFrame({"contact": EMAILS, "who": NAMES, "city": ["New York", "Los Angeles"] * 20})
    findings = scan(df, ["contact", "who", "city"])
    assert _rules(findings) == {("contact", "email", "refused"), ("who", "person_name", "refused")}
    (email,) = [f for f in findings if f.rule == "email"]
    assert email.share == 1.0 and email.evidence == "100% of 40 checked values match"
    lines = [f.line() for f in refused_failures(findings)]
    assert lines[0].startswith(f"{PII_CHECK} on column 'contact': column 'contact' looks like e-mail addresses")
    text = " ".join(lines)
    assert "example.org" not in text and "Mary" not in text  # never a value


def test_column_name_rules_and_word_splitting():
    df = pd.DataFrame(
        {
            "e_mail": ["x"] * N,
            "lastName": ["x"] * N,
            "phoneNumber": ["x"] * N,
            "username": ["x"] * N,
            "occupation": ["x"] * N,
            "user_id": range(N),
        }
    )
    assert name_words("dateOfBirth") == ("date", "of", "birth") and name_words("e-mail") == ("e", "mail")
    assert _rules(scan(df, df.columns)) == {
        ("e_mail", "email", "refused"),
        ("lastName", "person_name", "refused"),
        ("phoneNumber", "phone", "refused"),
    }


def test_ids_phones_and_dates_of_birth():
    df = pd.DataFrame(
        {
            "ref": [f"{4_000_000 + 7 * i}" for i in range(N)],  # unique long numbers: case/record numbers
            "x1": [f"{100 + i:03d}-{10 + i % 50:02d}-{1000 + i:04d}" for i in range(N)],  # SSN-shaped
            "x2": [f"+44 20 7946 {1000 + i}" for i in range(N)],  # phone numbers
            "dob": [f"19{50 + i % 40}-0{1 + i % 9}-{10 + i % 18}" for i in range(N)],  # day precision
            "birth_year": [1950 + i % 40 for i in range(N)],  # a year is not a date of birth
            "visits": [i % 7 for i in range(N)],  # small repeated numbers
        }
    )
    assert _rules(scan(df, df.columns)) == {
        ("ref", "case_number", "refused"),
        ("x1", "national_id", "refused"),
        ("x2", "phone", "refused"),
        ("dob", "date_of_birth", "refused"),
    }


def test_allowed_columns_are_reported_as_allowed_and_free_text_as_findings():
    df = pd.DataFrame({"email": EMAILS, "msg": ["call 07700 900123 now"] * 10 + ["see you at noon"] * 30})
    findings = scan(df, ["email", "msg"], allow=["email"], free_text=["msg"])
    assert _rules(findings) == {("email", "email", "allowed"), ("msg", "phone", "finding")}
    (phone,) = [f for f in findings if f.rule == "phone"]
    assert phone.share == 10 / 40 and refused_failures(findings) == []


def test_contract_validation_refuses_a_feature_column_of_names():
    from impactflow.data_contracts.validation import validate

    adult = get_contract("adult")
    df = load_dataset(adult).sample(n=2000, random_state=0).reset_index(drop=True)
    df["workclass"] = (NAMES * 50)[:2000]
    report = validate(df, adult)
    assert not report.success
    pii = [f for f in report.failures if f.expectation == PII_CHECK]
    assert [f.column for f in pii] == ["workclass"] and "person names" in pii[0].description
    assert report.statistics["pii"][0]["rule"] == "person_name"
    allowed = dataclasses.replace(adult, allow_identifiers=("workclass",))
    assert _rules(contract_scan(df, allowed)) == {("workclass", "person_name", "allowed")}


@pytest.mark.parametrize("name", ["adult", "sms_spam", "jigsaw", "mnist", "synthetic_ratings"])
def test_shipped_datasets_pass(name):
    contract = get_contract(name)
    findings = contract_scan(load_dataset(contract), contract)
    assert refused_failures(findings) == []
    if name == "sms_spam":  # messages quote phone numbers: reported, not refused
        assert ("message", "phone", "finding") in _rules(findings)


@pytest.mark.skipif(not (SHARED_DATASETS / "movielens-100k" / "u.data").is_file(), reason="MovieLens not present")
def test_movielens_passes():
    contract = get_contract("movielens")
    assert refused_failures(contract_scan(load_dataset(contract, [SHARED_DATASETS / "movielens-100k"]), contract)) == []


def test_value_rule_shares_count_repeated_values_once_per_row():
    """Rules run once per distinct value and are weighted by counts: the share is still per row."""
    import pandas as pd

    from impactflow.data_contracts.pii import scan

    # 7 of 10 rows are e-mail addresses, only two distinct ones; 3 rows are a repeated category
    col = ["a@example.org"] * 4 + ["b@example.org"] * 3 + ["Private"] * 3
    (finding,) = scan(pd.DataFrame({"contact": col}), ["contact"])
    assert finding.rule == "email" and finding.share == 0.7
    # below the rule's threshold when most rows are the category
    assert scan(pd.DataFrame({"contact": col[:2] + ["Private"] * 8}), ["contact"]) == []
