"""Tiny, seeded example data for every family (one function per family + one line in EXAMPLES).

Each returns ``(frame, roles)``: a small DataFrame the family's preprocessor accepts and the
column roles. The family-generic tests in ``test_families.py`` refuse a family without one.
``example_params(name, **params)``: the hyperparameters a family cannot go without (the hf
family's model directory: a tiny BERT built from a config, once per process) plus ``params``.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from impactflow.data_contracts.domains import Domains
from impactflow.models.base import Roles


def tabular_example(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "num_a": rng.normal(size=n),
            "num_b": rng.integers(0, 10, size=n).astype(float),
            "cat": rng.choice(["x", "y", "z"], size=n),
        }
    )
    df["y"] = np.where(df["num_a"] > 0, "pos", "neg")
    # declared domains (what a contract's suite would say): the DP preprocessing's only input
    domains = Domains(
        contract="tabular_example",
        categories={"cat": ("x", "y", "z")},
        ranges={"num_a": (-4.0, 4.0), "num_b": (0.0, 9.0)},
    )
    roles = Roles(
        target="y",
        task="binary",
        features=("num_a", "num_b", "cat"),
        positive_label="pos",
        labels=("neg", "pos"),
        categorical=("cat",),
        numeric=("num_a", "num_b"),
        domains=domains,
    )
    return df, roles


def image_example(n: int = 64, seed: int = 0):
    """scikit-learn's bundled 8x8 digits (0-16 grey levels), scaled to uint8 and upsampled to
    MNIST's 28x28 (nearest neighbour), a seeded sample."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    idx = np.random.default_rng(seed).permutation(len(digits.target))[:n]
    near = np.arange(28) * 8 // 28
    images = [(img[np.ix_(near, near)] * 255 / 16).round().astype(np.uint8) for img in digits.images[idx]]
    df = pd.DataFrame({"image": pd.Series(images, dtype=object), "label": digits.target[idx]})
    roles = Roles(target="label", task="multiclass", features=("image",), labels=tuple(str(d) for d in range(10)))
    return df, roles


def text_example(n: int = 64, seed: int = 0):
    """Tiny labelled messages: the positive class uses its own words (spam-like offers)."""
    rng = np.random.default_rng(seed)
    pos = ["win a free prize now", "call 0800 to claim your cash", "free entry txt win", "claim prize call now"]
    neg = ["see you at lunch", "i am on my way home", "ok thanks see you later", "what time is the game"]
    y = rng.integers(0, 2, size=n)
    texts = [pos[i % 4] if label else neg[i % 4] for i, label in enumerate(y)]
    df = pd.DataFrame({"message": texts, "label": np.where(y == 1, "spam", "ham")})
    roles = Roles(
        target="label",
        task="binary",
        features=("message",),
        positive_label="spam",
        labels=("ham", "spam"),
        extra={"text": "message"},
    )
    return df, roles


def recommender_example(n: int = 64, seed: int = 0):
    """Seeded ratings of 8 users x 10 items with a planted rank-1 taste (rating 1..5)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 9, size=n)
    items = rng.integers(1, 11, size=n)
    taste = np.linspace(-1, 1, 8)[users - 1] * np.linspace(-1, 1, 10)[items - 1]
    df = pd.DataFrame(
        {"user_id": users, "item_id": items, "rating": np.clip(np.rint(3 + 2 * taste), 1, 5).astype(float)}
    )
    domains = Domains(contract="recommender_example", ranges={"user_id": (1.0, 8.0), "item_id": (1.0, 10.0)})
    roles = Roles(
        target="rating",
        task="rating",
        features=("user_id", "item_id"),
        extra={"user": "user_id", "item": "item_id", "rating_min": 1, "rating_max": 5},
        domains=domains,
    )
    return df, roles


def hf_example(n: int = 64, seed: int = 0):
    """The text example: a pretrained model reads the same messages."""
    return text_example(n, seed)


@functools.lru_cache(maxsize=None)
def tiny_hf_dir() -> str:
    """A 1-layer BERT (hidden 32) whose vocabulary is the example messages' words and
    characters, built from a config into a temporary folder (removed at exit)."""
    import atexit
    import shutil
    import tempfile

    from impactflow.models.hf import build_tiny

    path = tempfile.mkdtemp(prefix="impactflow-test-hf-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return str(build_tiny(path, text_example(200)[0]["message"].tolist(), hidden=32, layers=1, vocab=300))


REQUIRED_PARAMS = {"hf": lambda: {"path": tiny_hf_dir()}}


def example_params(name: str, **params) -> dict:
    return {**(REQUIRED_PARAMS[name]() if name in REQUIRED_PARAMS else {}), **params}


EXAMPLES = {
    "tabular": tabular_example,
    "text": text_example,
    "image": image_example,
    "recommender": recommender_example,
    "hf": hf_example,
}
