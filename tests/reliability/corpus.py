"""The bad-input corpus: malformed inputs across every family and the config.

Each case is a row of ``CASES``: a name (the pytest id), a builder that writes the bad files
into a fresh folder and returns the ``impactflow run`` arguments, the exit code expected and
substrings the message must contain (naming the file, column, key or value at fault).
Inputs are derived from small valid bases (``Bases``) built once from the data the project
ships, so a case breaks exactly one thing and its message names that thing.
"""

from __future__ import annotations

import gzip
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXIT_ERROR = 1


@dataclass(frozen=True)
class Case:
    name: str
    family: str  # tabular | text | image | recommender | config
    build: Callable[[Path, "Bases"], list[str]]
    expect: tuple[str, ...]
    exit_code: int = EXIT_ERROR
    reaches_flow: bool = True  # False: refused while loading the config (no MLflow run at all)


class Bases:
    """Small valid inputs of each family (built lazily, once per session)."""

    def __init__(self) -> None:
        self._adult = self._sms = self._mnist = None

    @property
    def adult(self):
        if self._adult is None:
            from impactflow.data_contracts import get_contract, load_dataset

            df = load_dataset(get_contract("adult"))
            # every race group >= 30 rows (the contract's minimum) in 1,500 rows
            self._adult = df.groupby("race", sort=False).head(300).reset_index(drop=True)
        return self._adult.copy()

    @property
    def sms_lines(self) -> list[str]:
        if self._sms is None:
            raw = gzip.decompress((ROOT / "data_contracts/sms_spam/SMSSpamCollection.gz").read_bytes())
            self._sms = raw.decode("utf-8").splitlines()[:300]
        return list(self._sms)

    @property
    def mnist_lines(self) -> list[str]:
        if self._mnist is None:
            raw = gzip.decompress((ROOT / "data_contracts/mnist/mnist_5k.csv.gz").read_bytes())
            lines = raw.decode("ascii").splitlines()
            # >= 100 images of each digit (the contract's per-class minimum)
            by_digit: dict[str, list[str]] = {}
            for line in lines:
                by_digit.setdefault(line.rsplit(",", 1)[1], []).append(line)
            self._mnist = [line for d in sorted(by_digit) for line in by_digit[d][:110]]
        return list(self._mnist)


# --------------------------------------------------------------------------- writers


def _adult_csv(tmp: Path, df, name: str = "adult_bad.csv") -> list[str]:
    path = tmp / name
    df.to_csv(path, index=False)
    return ["--set", f"data.path={path}"]


def _adult(mutate: Callable) -> Callable[[Path, Bases], list[str]]:
    def build(tmp: Path, b: Bases) -> list[str]:
        df = b.adult
        out = mutate(df)
        return _adult_csv(tmp, df if out is None else out)

    return build


def _set(df, rows, col, value):
    df[col] = df[col].astype(object)
    df.loc[rows, col] = value


def _adult_raw(content: Callable[[Bases], bytes], name: str = "adult_bad.csv"):
    def build(tmp: Path, b: Bases) -> list[str]:
        path = tmp / name
        path.write_bytes(content(b))
        return ["--set", f"data.path={path}"]

    return build


def _adult_bytes(b: Bases) -> bytes:
    return b.adult.to_csv(index=False).encode()


def _sms(lines: Callable[[list[str]], list[str] | bytes], name: str = "sms.txt"):
    def build(tmp: Path, b: Bases) -> list[str]:
        out = lines(b.sms_lines)
        path = tmp / name
        path.write_bytes(out if isinstance(out, bytes) else ("\n".join(out) + "\n").encode("utf-8"))
        return ["-c", "text", "--set", f"data.path={path}"]

    return build


def _mnist(lines: Callable[[list[str]], list[str] | bytes]):
    def build(tmp: Path, b: Bases) -> list[str]:
        out = lines(b.mnist_lines)
        path = tmp / "digits.csv"
        path.write_bytes(out if isinstance(out, bytes) else ("\n".join(out) + "\n").encode("ascii"))
        return ["-c", "image", "--set", f"data.path={path}"]

    return build


def _idx(tmp: Path, images: np.ndarray | None, labels: np.ndarray | None, raw_images: bytes | None = None):
    paths = []
    if images is not None or raw_images is not None:
        p = tmp / "imgs-idx3-ubyte"
        if raw_images is None:
            raw_images = (
                struct.pack(">4B", 0, 0, 8, images.ndim)
                + struct.pack(f">{images.ndim}I", *images.shape)
                + images.astype(np.uint8).tobytes()
            )
        p.write_bytes(raw_images)
        paths.append(p)
    if labels is not None:
        p = tmp / "labels-idx1-ubyte"
        p.write_bytes(struct.pack(">4BI", 0, 0, 8, 1, len(labels)) + labels.astype(np.uint8).tobytes())
        paths.append(p)
    return ["-c", "image", "--set", f"data.path=[{', '.join(map(str, paths))}]"]


def _image_idx(images, labels, raw=None):
    def build(tmp: Path, b: Bases) -> list[str]:
        return _idx(tmp, images() if callable(images) else images, labels, raw)

    return build


def movielens_base() -> dict[str, list[str]]:
    """A tiny MovieLens-100K-format folder meeting its contract: 42 users (each occupation
    twice, the 7 age bands in turn, both genders), 20 ratings each over 40 items."""
    suite = json.loads((ROOT / "data_contracts/movielens/expectations.json").read_text())
    occupations = next(
        e["kwargs"]["value_set"]
        for e in suite["expectations"]
        if e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"]["column"] == "occupation"
    )
    ages = [15, 20, 30, 40, 47, 52, 60]
    users, data = [], []
    for u in range(1, 2 * len(occupations) + 1):
        users.append(f"{u}|{ages[u % 7]}|{'MF'[u % 2]}|{occupations[(u - 1) // 2]}|00000")
        for j in range(20):
            item = (u + j) % 40 + 1
            data.append(f"{u}\t{item}\t{(u + j) % 5 + 1}\t{880000000 + u * 100 + j}")
    items = [f"{i}|Movie {i} (1995)|01-Jan-1995||http://x" + "|0" * 19 for i in range(1, 41)]
    return {"u.data": data, "u.user": users, "u.item": items}


def _movielens(mutate: Callable[[dict[str, list[str]]], None]):
    def build(tmp: Path, b: Bases) -> list[str]:
        files = movielens_base()
        mutate(files)
        folder = tmp / "ml"
        folder.mkdir()
        for name, lines in files.items():
            if lines is not None:
                (folder / name).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
        return ["-c", "movielens", "--set", f"data.path={folder}"]

    return build


def _config_file(text: str | bytes, name: str = "bad.yaml"):
    def build(tmp: Path, b: Bases) -> list[str]:
        path = tmp / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return ["-c", str(path)]

    return build


def _args(*args: str):
    return lambda tmp, b: list(args)


def _yaml_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, (prev, cur) in enumerate(zip("abcdefgh", "bcdefghi")):
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    return "\n".join(lines) + "\n"


def _drop_label_group(lines, keep_label="ham"):
    return [line for line in lines if line.startswith(keep_label + "\t")]


def _gzip_truncated(b: Bases) -> bytes:
    data = gzip.compress(_adult_bytes(b))
    return data[: len(data) // 2]


def _mnist_replace(index: int, new_line: Callable[[str], str]):
    def f(lines):
        lines[index] = new_line(lines[index])
        return lines

    return f


def _set_pixel(line: str, value: str, at: int = 300) -> str:
    parts = line.split(",")
    parts[at] = value
    return ",".join(parts)


def _set_label(line: str, value: str) -> str:
    return line.rsplit(",", 1)[0] + "," + value


def _dup_user(files):
    files["u.user"].append(files["u.user"][0].replace("|15|", "|16|"))


# --------------------------------------------------------------------------- the corpus

CASES: list[Case] = [
    # ---- tabular (Adult-shaped CSV) --------------------------------------------------------
    Case(
        "tabular-missing-column",
        "tabular",
        _adult(lambda df: df.drop(columns=["education"])),
        ("expect_table_columns_to_match_set", "missing: education"),
    ),
    Case("tabular-extra-column", "tabular", _adult(lambda df: df.assign(score_x=1)), ("unexpected: score_x",)),
    Case(
        "tabular-renamed-column",
        "tabular",
        _adult(lambda df: df.rename(columns={"sex": "gender"})),
        ("missing: sex", "unexpected: gender"),
    ),
    # identifier / PII columns (data_contracts/pii.py): refused naming the column and the rule
    Case(
        "tabular-email-values",
        "tabular",
        _adult(lambda df: df.assign(occupation=[f"person{i}@example.org" for i in range(len(df))])),
        ("occupation", "e-mail addresses"),
    ),
    Case(
        "tabular-person-name-values",
        "tabular",
        _adult(
            lambda df: df.assign(
                **{"native-country": [("John Smith", "Mary Jones", "David Brown")[i % 3] for i in range(len(df))]}
            )
        ),
        ("native-country", "person names"),
    ),
    Case(
        "tabular-wrong-dtype", "tabular", _adult(lambda df: _set(df, [3], "age", "forty")), ("column 'age'", "'forty'")
    ),
    Case(
        "tabular-all-null-column",
        "tabular",
        _adult(lambda df: df.assign(occupation=None)),
        ("column 'occupation'", "100.00% missing"),
    ),
    Case(
        "tabular-sensitive-one-group",
        "tabular",
        _adult(lambda df: df.assign(sex="Male")),
        ("column 'sex'", "absent: Female;"),
    ),
    Case(
        "tabular-group-of-three",
        "tabular",
        _adult(lambda df: df.drop(index=df.index[df["race"] == "Other"][3:])),
        ("column 'race'", "race == Other: at least 30 rows", "observed 3"),
    ),
    Case(
        "tabular-unseen-category",
        "tabular",
        _adult(lambda df: _set(df, [7], "workclass", "Space-agency")),
        ("column 'workclass'", "'Space-agency'", "1 of"),
    ),
    Case(
        "tabular-label-outside-set",
        "tabular",
        _adult(lambda df: _set(df, [11], "income", "maybe")),
        ("column 'income'", "'maybe'"),
    ),
    Case(
        "tabular-inf-value",
        "tabular",
        _adult(lambda df: _set(df, [5], "capital-gain", float("inf"))),
        ("column 'capital-gain'",),
    ),
    Case(
        "tabular-nan-numeric",
        "tabular",
        _adult(lambda df: _set(df, [1, 2, 3], "age", float("nan"))),
        ("column 'age'", "missing"),
    ),
    Case(
        "tabular-huge-value",
        "tabular",
        _adult(lambda df: _set(df, [9], "hours-per-week", 1e300)),
        ("column 'hours-per-week'",),
    ),
    Case("tabular-negative-weight", "tabular", _adult(lambda df: _set(df, [4], "fnlwgt", -5)), ("column 'fnlwgt'",)),
    Case(
        "tabular-csv-injection",
        "tabular",
        _adult(lambda df: _set(df, [2], "workclass", "=cmd|' /C calc'!A0")),
        ("column 'workclass'", "=cmd|"),
    ),
    Case("tabular-empty-file", "tabular", _adult_raw(lambda b: b""), ("adult_bad.csv: no data rows",)),
    Case(
        "tabular-header-only",
        "tabular",
        _adult_raw(lambda b: _adult_bytes(b).split(b"\n")[0] + b"\n"),
        ("adult_bad.csv: no data rows",),
    ),
    Case(
        "tabular-truncated-gzip",
        "tabular",
        _adult_raw(_gzip_truncated, "adult_bad.csv.gz"),
        ("adult_bad.csv.gz: truncated or corrupt gzip",),
    ),
    Case(
        "tabular-non-utf8",
        "tabular",
        _adult_raw(lambda b: _adult_bytes(b).replace(b"Private", b"Priv\xffate", 1)),
        ("adult_bad.csv: not UTF-8 text", "0xff"),
    ),
    Case(
        "tabular-ragged-line",
        "tabular",
        _adult_raw(lambda b: b"39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical\n"),
        ("expected 15 fields, line 1 has 7",),
    ),
    Case(
        "tabular-dp-delta-above-1-over-n",
        "tabular",
        lambda tmp, b: (
            _adult_csv(tmp, b.adult)
            + ["--set", "privacy.enabled=true", "--set", "privacy.target_epsilon=1", "--set", "privacy.delta=0.01"]
        ),
        ("privacy.delta=0.01 must be smaller than 1/n_train", "n_train="),
    ),
    # ---- text (SMS Spam format) ------------------------------------------------------------
    Case("text-empty-file", "text", _sms(lambda lines: b""), ("sms.txt: no data rows",)),
    Case(
        "text-missing-label-column",
        "text",
        _sms(lambda lines: [line.split("\t", 1)[1] for line in lines]),
        ("sms.txt: line 1 has no TAB",),
    ),
    Case(
        "text-label-outside-set",
        "text",
        _sms(lambda lines: ["maybe\tcall me later pls"] + lines),
        ("column 'label'", "'maybe'"),
    ),
    Case("text-one-class-only", "text", _sms(_drop_label_group), ("column 'label'", "absent: spam;")),
    Case("text-blank-message", "text", _sms(lambda lines: lines + ["ham\t   "]), ("column 'message'",)),
    Case(
        "text-huge-message", "text", _sms(lambda lines: lines + ["ham\t" + "lol " * 1000]), ("column 'message'", "2000")
    ),
    Case(
        "text-non-utf8",
        "text",
        _sms(lambda lines: ("\n".join(lines)).encode() + b"\nham\tcaf\xe9\n"),
        ("sms.txt: not UTF-8 text",),
    ),
    Case(
        "text-truncated-gzip",
        "text",
        _sms(lambda lines: gzip.compress("\n".join(lines).encode())[:500], "sms.txt.gz"),
        ("sms.txt.gz: truncated or corrupt gzip",),
    ),
    # ---- image (MNIST CSV / IDX) -----------------------------------------------------------
    Case("image-empty-file", "image", _mnist(lambda lines: b""), ("digits.csv: no images",)),
    Case(
        "image-wrong-pixel-count",
        "image",
        _mnist(_mnist_replace(5, lambda line: line.split(",", 1)[1])),
        ("expected 785 comma-separated values", "line 6 has 784"),
    ),
    Case(
        "image-pixel-out-of-range",
        "image",
        _mnist(_mnist_replace(7, lambda line: _set_pixel(line, "300"))),
        ("column 'pixel_max'",),
    ),
    Case("image-nan-pixel", "image", _mnist(_mnist_replace(8, lambda line: _set_pixel(line, ""))), ("column 'n_nan'",)),
    Case(
        "image-label-outside-set",
        "image",
        _mnist(_mnist_replace(3, lambda line: _set_label(line, "12"))),
        ("column 'label'", "12"),
    ),
    Case(
        "image-mismatched-shapes",
        "image",
        _image_idx(lambda: np.zeros((1200, 27, 27)), np.arange(1200) % 10),
        ("column 'height'", "column 'width'"),
    ),
    Case(
        "image-idx-count-mismatch",
        "image",
        _image_idx(lambda: np.zeros((5, 28, 28)), np.arange(4)),
        ("5 images but", "4 labels"),
    ),
    Case(
        "image-idx-unpaired",
        "image",
        _image_idx(lambda: np.zeros((5, 28, 28)), None),
        ("must come as an image/label pair",),
    ),
    Case(
        "image-idx-truncated",
        "image",
        _image_idx(None, np.arange(4), raw=struct.pack(">4B3I", 0, 0, 8, 3, 4, 28, 28) + b"\0" * 100),
        ("not an MNIST IDX file", "header says"),
    ),
    # ---- recommender (MovieLens 100K format folder) ----------------------------------------
    Case(
        "recsys-not-given",
        "recommender",
        _args("-c", "movielens"),
        ("ships no data", "--set data.path=PATH"),
        reaches_flow=False,
    ),
    Case(
        "recsys-missing-file",
        "recommender",
        _movielens(lambda f: f.update({"u.item": None})),
        ("u.item: file not found",),
    ),
    Case(
        "recsys-duplicate-user-id",
        "recommender",
        _movielens(_dup_user),
        ("user_id 1 appears 2 times in the users table",),
    ),
    Case(
        "recsys-rating-out-of-range",
        "recommender",
        _movielens(lambda f: f["u.data"].__setitem__(0, "1\t2\t7\t880000000")),
        ("column 'rating'", "1 of 840 rows violate it", "examples: 7"),
    ),
    Case(
        "recsys-duplicate-rating",
        "recommender",
        _movielens(lambda f: f["u.data"].append(f["u.data"][0])),
        ("expect_compound_columns_to_be_unique",),
    ),
    Case(
        "recsys-unknown-user",
        "recommender",
        _movielens(lambda f: f["u.data"].append("999\t1\t3\t880000000")),
        ("column 'gender'",),
    ),
    Case(
        "recsys-wrong-separator",
        "recommender",
        _movielens(lambda f: f.update({"u.data": [line.replace("\t", ",") for line in f["u.data"]]})),
        ("u.data: expected 4 TAB-separated fields", "looks ','-separated"),
    ),
    # ---- config ----------------------------------------------------------------------------
    Case(
        "config-unknown-key",
        "config",
        _args("--set", "train.epochz=1"),
        ("train.epochz: unknown key",),
        reaches_flow=False,
    ),
    Case(
        "config-unknown-family",
        "config",
        _args("--set", "model.family=quantum"),
        ("unknown model family",),
        reaches_flow=False,
    ),
    Case(
        "config-unknown-contract",
        "config",
        _args("--set", "data.contract=nope"),
        ("data.contract='nope': unknown contract",),
        reaches_flow=False,
    ),
    Case(
        "config-negative-epsilon",
        "config",
        _args("--set", "privacy.enabled=true", "--set", "privacy.target_epsilon=-1"),
        ("privacy.target_epsilon", "greater than 0"),
        reaches_flow=False,
    ),
    Case(
        "config-delta-at-least-one",
        "config",
        _args("--set", "privacy.delta=1.5"),
        ("privacy.delta", "less than 1"),
        reaches_flow=False,
    ),
    Case(
        "config-dp-without-noise",
        "config",
        _args("--set", "privacy.enabled=true"),
        ("privacy.enabled needs privacy.target_epsilon",),
        reaches_flow=False,
    ),
    Case("config-wrong-type", "config", _args("--set", "seed=abc"), ("seed:", "'abc'"), reaches_flow=False),
    Case("config-zero-sample", "config", _args("--set", "data.sample=0"), ("data.sample",), reaches_flow=False),
    Case(
        "config-min-cell-size-zero",
        "config",
        _args("--set", "disclosure.min_cell_size=0"),
        ("disclosure.min_cell_size",),
        reaches_flow=False,
    ),
    Case(
        "config-unknown-gate",
        "config",
        _args("--set", "gates.performance.min_acc=0.8"),
        ("gates.performance.min_acc: unknown threshold",),
        reaches_flow=False,
    ),
    Case("config-bad-override", "config", _args("--set", "train"), ("expected key=value",), reaches_flow=False),
    Case("config-unknown-preset", "config", _args("-c", "nope"), ("no such preset or file",), reaches_flow=False),
    Case(
        "config-missing-file",
        "config",
        _args("-c", "/no/such/config.yaml"),
        ("file not found: /no/such/config.yaml",),
        reaches_flow=False,
    ),
    Case(
        "config-data-path-missing",
        "config",
        _args("--set", "data.path=/no/such/adult.csv"),
        ("data.path: file not found: /no/such/adult.csv",),
        reaches_flow=False,
    ),
    Case(
        "config-output-dir-outside-tree",
        "config",
        _args("--set", "tracking.output_dir=../../escape"),
        ("tracking.output_dir=../../escape", "must stay inside the working directory"),
        reaches_flow=False,
    ),
    Case("config-yaml-bomb", "config", _config_file(_yaml_bomb()), ("YAML aliases",), reaches_flow=False),
    Case(
        "config-python-object-tag",
        "config",
        _config_file("seed: !!python/object/apply:os.system ['echo pwned']\n"),
        ("not valid YAML", "python/object"),
        reaches_flow=False,
    ),
    Case(
        "config-not-a-mapping",
        "config",
        _config_file("- a\n- b\n"),
        ("top level must be a mapping",),
        reaches_flow=False,
    ),
    Case(
        "config-too-large",
        "config",
        _config_file("# " + "x" * 1_000_001 + "\n"),
        ("larger than 1000000 bytes",),
        reaches_flow=False,
    ),
    Case(
        "config-non-utf8",
        "config",
        _config_file(b"seed: 1\ndescription: caf\xe9\n"),
        ("not valid YAML",),
        reaches_flow=False,
    ),
    Case(
        "config-extends-unknown",
        "config",
        _config_file("extends: nope\n"),
        ("no such preset or file",),
        reaches_flow=False,
    ),
]
