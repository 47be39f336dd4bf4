"""What each family hands the discovery audits (slices, proxies, attributions): hand-made test
splits, expectations counted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from impactflow.models import get_family
from impactflow.models.base import Roles, discovery_inputs
from impactflow.models.data import Split


class _Predictor:
    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return df["age"].to_numpy(dtype=float) / 100.0


def _split(test: pd.DataFrame, train: pd.DataFrame | None = None) -> Split:
    train = test if train is None else train
    return Split(train=train, validation=train.iloc[:0], test=test)


def _tabular(exclude: bool):
    test = pd.DataFrame(
        {"age": [20, 30, 40], "relationship": ["Husband", "Wife", "Husband"], "sex": ["M", "F", "M"], "y": [0, 1, 0]}
    )
    features = ("age", "relationship") if exclude else ("age", "relationship", "sex")
    roles = Roles(target="y", task="binary", features=features, groups=("sex",), positive_label=1)
    return discovery_inputs(get_family("tabular"), _Predictor(), _split(test), roles, exclude)


def test_tabular_slices_on_features_and_groups_and_tests_only_other_columns_as_proxies():
    out = _tabular(exclude=True)
    assert list(out["slice_frame"].columns) == ["age", "relationship", "sex"]
    assert list(out["proxy_frame"].columns) == ["age", "relationship"]
    assert out["sensitive_excluded"] is True
    att = out["attribution"]
    assert att["columns"] == ["age", "relationship"]
    np.testing.assert_allclose(att["predict"](att["frame"]), [0.2, 0.3, 0.4])
    # sex as a feature: sliced once, and never tested as a proxy of itself
    out = _tabular(exclude=False)
    assert list(out["slice_frame"].columns) == ["age", "relationship", "sex"]
    assert list(out["proxy_frame"].columns) == ["age", "relationship"]
    assert out["sensitive_excluded"] is False
    assert out["attribution"]["columns"] == ["age", "relationship", "sex"]


def test_text_rows_are_described_by_identity_terms_frequent_words_and_length():
    texts = ["I am gay and happy", "the gay pride parade", "win a free prize now", "call me later", ""]
    test = pd.DataFrame({"message": texts, "label": [0, 0, 1, 0, 0]})
    roles = Roles(target="label", task="binary", features=("message",), positive_label=1, extra={"text": "message"})
    out = discovery_inputs(get_family("text"), None, _split(test), roles, False)
    frame = out["slice_frame"]
    assert frame['has "gay"'].tolist() == [True, True, False, False, False]
    assert frame["length (words)"].tolist() == [5, 4, 5, 3, 0]
    # words in more than half of the texts are not features; none here is
    assert 'has "the"' in frame.columns and frame['has "the"'].tolist() == [False, True, False, False, False]
    assert "reason" in out["attribution"] and "message" in out["attribution"]["reason"]


def test_image_rows_are_described_by_class_brightness_and_ink():
    dark = np.zeros((2, 2), np.uint8)
    half = np.array([[255, 255], [0, 0]], np.uint8)
    test = pd.DataFrame({"image": pd.Series([dark, half], dtype=object), "label": [3, 7], "color": ["red", "green"]})
    roles = Roles(target="label", task="multiclass", features=("image",), groups=("color",), labels=tuple("0123456789"))
    out = discovery_inputs(get_family("image"), None, _split(test), roles, False)
    frame = out["slice_frame"]
    assert frame["class"].tolist() == ["3", "7"]
    np.testing.assert_allclose(frame["brightness"], [0.0, 0.5])
    np.testing.assert_allclose(frame["ink share"], [0.0, 0.5])
    assert frame["color"].tolist() == ["red", "green"]
    assert "color" not in out["proxy_frame"].columns
    assert "reason" in out["attribution"]


def test_recommender_rows_carry_user_activity_and_item_popularity_from_training():
    train = pd.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [10, 10, 11, 10], "rating": [4.0, 3.0, 5.0, 1.0]})
    test = pd.DataFrame(
        {"user_id": [1, 2, 3], "item_id": [11, 12, 10], "rating": [4.0, 2.0, 3.0], "age_band": list("abc")}
    )
    roles = Roles(
        target="rating",
        task="rating",
        features=("user_id", "item_id"),
        groups=("age_band",),
        extra={"user": "user_id", "item": "item_id"},
    )
    out = discovery_inputs(get_family("recommender"), _Predictor(), _split(test, train), roles, False)
    frame = out["slice_frame"]
    assert frame["user activity (train ratings)"].tolist() == [3, 1, 0]
    assert frame["item popularity (train ratings)"].tolist() == [1, 0, 3]
    assert frame["age_band"].tolist() == ["a", "b", "c"]
    assert out["attribution"]["columns"] == ["user_id", "item_id"]
