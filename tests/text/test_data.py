"""SMS / Jigsaw loaders and contracts on the shipped data and on broken copies."""

from __future__ import annotations

import gzip

import pytest

from impactflow.data_contracts import get_contract, load_dataset
from impactflow.errors import DataError
from impactflow.data_contracts.jigsaw import MADLIBS_TRAIN_SHARE, identity_terms, in_training_part, madlibs_template_set
from impactflow.data_contracts.sms_spam import load_sms_spam
from impactflow.data_contracts.validation import validate


def test_sms_loader_splits_on_first_tab_and_deduplicates(tmp_path):
    f = tmp_path / "sms.txt"
    f.write_text('ham\tsee you "later"\tok\nspam\tWIN now\nham\tsee you "later"\tok\n\n', encoding="utf-8")
    df = load_sms_spam([f])
    assert df.to_dict("list") == {"label": ["ham", "spam"], "message": ['see you "later"\tok', "WIN now"]}
    assert df.attrs["duplicates_dropped"] == 1


def test_shipped_sms_has_5171_distinct_messages_and_meets_its_contract():
    c = get_contract("sms_spam")
    df = load_dataset(c)
    assert len(df) == 5171 and df["message"].is_unique  # 5,574 lines, 403 repeats dropped
    assert df["label"].value_counts().to_dict() == {"ham": 4518, "spam": 653}
    assert validate(df, c).success


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "no data rows"),
        (b"just a message without a label column\n", "has no TAB"),
        (b"ham\tcaf\xe9 au lait\n", "not UTF-8"),
    ],
)
def test_sms_loader_refuses_unreadable_files(tmp_path, content, message):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        load_sms_spam([f])
    assert str(f) in str(err.value)


@pytest.mark.parametrize(
    "line, column, expectation",
    [
        ("ham\t\n", "message", "expect_column_value_lengths_to_be_between"),
        ("eggs\thello\n", "label", "expect_column_values_to_be_in_set"),
        ("ham\t   \n", "message", "expect_column_values_to_not_match_regex"),
    ],
)
def test_sms_contract_names_the_bad_column(tmp_path, line, column, expectation):
    good = gzip.decompress((get_contract("sms_spam").default_files[0]).read_bytes()).decode("utf-8")
    f = tmp_path / "sms.txt"
    f.write_text(good + line, encoding="utf-8")
    report = validate(load_sms_spam([f]), get_contract("sms_spam"))
    assert not report.success
    assert any(x.column == column and x.expectation == expectation for x in report.failures), report.failures


def test_jigsaw_loader_maps_files_onto_train_and_official_test():
    c = get_contract("jigsaw")
    df = load_dataset(c)
    test = df[df["split"] == "test"]
    assert len(test) == 1492 and (test["label"] == "toxic").sum() == 248  # the real comments
    assert test["text_fuzzed"].notna().all() and (test["text_fuzzed"] != test["text"]).any()
    train = df[df["split"] == "train"]
    assert train["text_fuzzed"].isna().all() and train["text"].map(in_training_part).all()
    assert 0.15 < len(train) / 76564 < 0.25 and MADLIBS_TRAIN_SHARE == 0.2
    held = madlibs_template_set()
    assert not set(held["text"]) & set(train["text"])  # the template test never saw training sentences
    assert c.split_column == "split" and validate(df, c).success


def test_identity_terms_are_read_from_the_shipped_file():
    terms = identity_terms()
    assert len(terms) == 50 and terms[0] == "lesbian" and "african american" in terms and terms[-1] == "paralyzed"


def test_jigsaw_loader_refuses_a_file_without_label_column(tmp_path):
    f = tmp_path / "comments.csv"
    f.write_text("rev_id,comment\n1,hello\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing label or text column"):
        load_dataset(get_contract("jigsaw"), f)
