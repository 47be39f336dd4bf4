"""MNIST loader, validation view and contract; Colored MNIST; the image preprocessor.
Malformed images (wrong shape, NaN pixels, labels out of range, empty set) give clear errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pandas as pd
import pytest

from impactflow.data_contracts import get_contract, load_dataset
from impactflow.data_contracts.colored_mnist import PALETTE, colorize
from impactflow.errors import DataError
from impactflow.data_contracts.mnist import image_stats, load_mnist
from impactflow.data_contracts.validation import validate
from impactflow.models.image import ImagePreprocessor, stack_images

TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # t10k labels (SOURCE.md)


@pytest.fixture(scope="module")
def mnist():
    return load_dataset(get_contract("mnist"))


def _failed_columns(report):
    return {f.column for f in report.failures}


def test_shipped_files_load(mnist):
    assert len(mnist) == 15_000
    assert mnist["split"].value_counts().to_dict() == {"test": 10_000, "train": 5_000}
    assert mnist.loc[mnist.split == "train", "label"].value_counts().tolist() == [500] * 10
    assert mnist.loc[mnist.split == "test", "label"].value_counts().sort_index().tolist() == TEST_COUNTS
    img = mnist["image"].iloc[0]
    assert img.shape == (28, 28) and img.dtype == np.uint8


def test_shipped_data_meets_its_contract(mnist):
    report = validate(mnist, get_contract("mnist"))
    assert report.success, [f.line() for f in report.failures]
    assert report.statistics["rows"] == 15_000


def test_validation_view_one_row_per_image():
    imgs = [np.zeros((28, 28), np.uint8), np.full((28, 28), np.nan), np.ones((27, 28, 3), np.uint8)]
    imgs[1][0, 0] = 7.0
    view = image_stats(pd.DataFrame({"image": pd.Series(imgs, dtype=object), "label": [1, 2, 3]}))
    assert view[["height", "width", "channels"]].values.tolist() == [[28, 28, 1], [28, 28, 1], [27, 28, 3]]
    assert view["dtype"].tolist() == ["uint8", "float64", "uint8"]
    assert view["n_nan"].tolist() == [0, 28 * 28 - 1, 0]
    assert view["pixel_max"].tolist() == [0.0, 7.0, 1.0]
    assert view["label"].tolist() == [1, 2, 3]


def test_not_an_array_is_a_data_error():
    with pytest.raises(DataError, match="row 1 holds str"):
        image_stats(pd.DataFrame({"image": pd.Series([np.zeros((28, 28), np.uint8), "x"], dtype=object)}))


@pytest.mark.parametrize(
    "corrupt, column",
    [
        (lambda df: df.at[3, "image"].__setitem__((0, 0), np.nan) or df, "n_nan"),
        (lambda df: df.assign(label=df["label"].where(df.index != 5, 11)), "label"),
        (
            lambda df: df.assign(
                image=df["image"].where(df.index != 2, pd.Series([np.zeros((27, 28), np.uint8)] * len(df)))
            ),
            "height",
        ),
    ],
)
def test_malformed_images_break_the_contract(mnist, corrupt, column):
    df = mnist.copy()
    df["image"] = df["image"].map(lambda a: a.astype(np.float64)) if column == "n_nan" else df["image"]
    report = validate(corrupt(df), get_contract("mnist"))
    assert not report.success
    assert column in _failed_columns(report)


def test_empty_set_breaks_the_contract(mnist):
    report = validate(mnist.iloc[:0], get_contract("mnist"))
    assert not report.success
    assert any(f.expectation == "expect_table_row_count_to_be_between" and f.column is None for f in report.failures)


def _csv(tmp_path, rows, name="x.csv.gz"):
    path = tmp_path / name
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(",".join(str(v) for v in r) for r in rows) + ("\n" if rows else ""))
    return path


def test_csv_with_wrong_number_of_pixels_names_the_line(tmp_path):
    path = _csv(tmp_path, [[0] * 784 + [3], [0] * 783 + [3]])
    with pytest.raises(DataError, match=r"line 2 has 784"):
        load_mnist([path])


def test_empty_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no images"):
        load_mnist([_csv(tmp_path, [])])


def test_nan_pixel_in_csv_stays_visible_to_the_contract(tmp_path):
    row = [0] * 784 + [4]
    bad = list(row)
    bad[10] = ""
    df = load_mnist([_csv(tmp_path, [row, bad])])
    view = image_stats(df)
    assert view["n_nan"].tolist() == [0, 1]
    assert view["dtype"].tolist() == ["uint8", "float64"]


def test_idx_pair_must_match(tmp_path):
    images = tmp_path / "img.idx"
    labels = tmp_path / "lab.idx"
    images.write_bytes(struct.pack(">IIII", 2051, 2, 28, 28) + bytes(2 * 784))
    labels.write_bytes(struct.pack(">II", 2049, 3) + bytes(3))
    with pytest.raises(DataError, match="2 images but .* 3 labels"):
        load_mnist([images, labels])
    with pytest.raises(DataError, match="pair"):
        load_mnist([images])
    labels.write_bytes(struct.pack(">II", 2049, 2) + bytes(2))
    df = load_mnist([images, labels])
    assert df["split"].tolist() == ["test", "test"] and df["image"].iloc[0].shape == (28, 28)


def test_colored_variant_is_deterministic_and_spurious(mnist):
    a, b = colorize(mnist), colorize(mnist)
    assert a["color"].tolist() == b["color"].tolist()
    train, test = a[a.split == "train"], a[a.split == "test"]
    assert (train["color_aligned"] == "aligned").mean() > 0.98  # colour predicts the label
    assert 0.08 < (test["color_aligned"] == "aligned").mean() < 0.12  # ~1/10: independent
    # a stroke pixel p of colour (r, g, b) becomes (p·r, p·g, p·b) // 255
    i = int(test.index[0])
    grey, rgb = mnist.at[i, "image"], a.at[i, "image"]
    colour = dict(PALETTE)[a.at[i, "color"]]
    y, x = np.unravel_index(grey.argmax(), grey.shape)
    assert rgb.shape == (28, 28, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[y, x]) == tuple(int(grey[y, x]) * c // 255 for c in colour)
    assert validate(a, get_contract("colored_mnist")).success


def test_preprocessor_standardises_with_training_rows_only():
    train = pd.DataFrame(
        {"image": pd.Series([np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)], dtype=object)}
    )
    pre = ImagePreprocessor("image", n_classes=10)
    x = pre.fit_transform(train)
    # pixels/255 are 0 and 1: mean 0.5, std 0.5 -> -1 and +1
    assert x.shape == (2, 1, 4, 4)
    assert x[0].max() == pytest.approx(-1.0) and x[1].min() == pytest.approx(1.0)
    other = pd.DataFrame({"image": pd.Series([np.full((4, 4), 51, np.uint8)], dtype=object)})
    assert pre.transform(other)[0, 0, 0, 0] == pytest.approx((0.2 - 0.5) / 0.5)
    assert pre.spec() == {"in_channels": 1, "height": 4, "width": 4, "n_classes": 10}
    with pytest.raises(DataError, match=r"row 0 is of shape \(3, 4\)"):
        pre.transform(pd.DataFrame({"image": pd.Series([np.zeros((3, 4), np.uint8)], dtype=object)}))


def test_stack_images_refuses_nan():
    img = np.zeros((4, 4))
    img[1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        stack_images(pd.Series([np.zeros((4, 4)), img], dtype=object))


def test_stack_images_takes_the_nested_lists_of_a_json_request_as_the_array():
    """MLflow's model server (and its input-example check at log time) hands the pyfunc an image
    as nested lists: the same pixels as the array, and a ragged or non-numeric one is refused."""
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    as_array = stack_images(pd.Series([img, img], dtype=object))
    as_lists = stack_images(pd.Series([img.tolist(), img.tolist()], dtype=object), shape=(3, 4))
    assert np.array_equal(as_lists, as_array) and as_lists.shape == (2, 1, 3, 4)
    assert as_lists[0, 0, 2, 3] == np.float32(11 / 255)
    with pytest.raises(DataError, match="row 1 is list"):
        stack_images(pd.Series([img.tolist(), [[1, 2], [3]]], dtype=object))
    with pytest.raises(DataError, match="row 0 is list"):
        stack_images(pd.Series([[["a", "b"], ["c", "d"]]], dtype=object))
    with pytest.raises(DataError, match=r"row 0 is of shape \(4, 3\)"):
        stack_images(pd.Series([img.T.tolist()], dtype=object), shape=(3, 4))
