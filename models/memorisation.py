"""Memorisation of planted secrets: exposure, after Carlini et al. 2019, "The Secret Sharer:
Evaluating and Testing Unintended Memorization in Neural Networks" (USENIX Security).

Secrets (canaries) are random strings in a fixed format, ``"my secret code is …"``
(``SECRET_FORMAT``), where … is ``length`` symbols drawn uniformly from an alphabet: the
pretrained tokenizer's own whole-word tokens when the family has one (``secret_alphabet()`` of
its preprocessor: every secret is a sequence of whole tokens; the hf family), made-up words
(``pseudo_words``) for the text family's word tokenizer, else the ten digits. A model that
scores every candidate the same (its preprocessing cannot tell the strings apart: e.g. digit
runs folded into one shape token) is reported as not measurable, never as chance level. They are inserted into the **training (fine-tuning) data** of the released model:
for each number of repeats in ``repeats`` (1, 4, 16), ``per_repeat`` secrets labelled positive
and ``per_repeat`` labelled negative, each copied that many times. Both labels, in equal
numbers, so that the format itself predicts no label: a classifier can only fit a secret's
label by memorising the secret (a format that predicted the label would be fitted without
memorising anything, and the audit would see nothing). The secrets carry no information about
anyone; they are what the audit measures with.

After training, every secret is ranked among ``candidates`` random strings of the same format
that were never trained on, by the loss-based membership score (the model's log-probability of
the secret's training label, i.e. −loss; Carlini et al. rank by a language model's
log-perplexity, which a classifier does not have):

    rank = 1 + #(candidates scoring higher) + ½ #(candidates scoring the same)
    exposure = log2(N + 1) − log2(rank)      (N candidates; Carlini et al.'s estimate by sampling)

A model that did not memorise the secret ranks it uniformly among the N + 1 strings: its
expected exposure ("chance level") is log2(N + 1) − E[log2 U], U uniform on 1..N + 1 (about
1/ln 2 ≈ 1.44 bits), and the mean exposure of ``per_repeat`` secrets falls in the stated 95%
chance interval (``chance_interval``, computed from that uniform distribution) 95% of the time.
Rank 1 of N gives the largest measurable exposure, log2(N + 1) (≈ 9.97 bits for N = 1,000).

Under DP each copy of a secret is one message (the privacy unit), so a secret repeated r times
is protected at the group-privacy level r·ε (reported as ``group_epsilon``). The planted rows
are only in the training data: the validation and test splits, the data sheet and membership
inference never see them. Pure functions (no Prefect, no MLflow).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from impactflow.models.base import Roles
from impactflow.task_kind import TaskKind

SECRET_FORMAT = "my secret code is {secret}"
DIGITS = tuple("0123456789")
NOT_RESOLVED = (
    "not measurable: the model scores every candidate the same, so no rank can be read "
    "(its preprocessing maps the secrets' {secret} to the same input)"
)


@functools.lru_cache(maxsize=None)
def pseudo_words(n: int = 1000) -> tuple[str, ...]:
    """``n`` made-up lower-case words of three consonant-vowel syllables ("bakomu"), the same on
    every machine: the alphabet of families with a word tokenizer but no pretrained vocabulary
    (the text family), where every such word is one token."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    rng = np.random.default_rng(0)
    words: dict[str, None] = {}
    while len(words) < n:
        words["".join(syllables[i] for i in rng.integers(0, len(syllables), 3))] = None
    return tuple(words)


#: Monte Carlo draws of the chance interval (a fixed seed: the same interval in every run)
CHANCE_DRAWS = 200_000
CHANCE_LEVEL = 0.95


@dataclass(frozen=True)
class SecretSettings:
    """``privacy_audit.secrets`` of the run config (flows/config.py ``SecretsConfig``)."""

    repeats: tuple[int, ...] = (1, 4, 16)
    per_repeat: int = 4
    candidates: int = 1000
    length: int = 6  # symbols per secret: words of the tokenizer's alphabet, else digits

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> "SecretSettings":
        return cls(
            repeats=tuple(int(r) for r in d.get("repeats", cls.repeats)),
            per_repeat=int(d.get("per_repeat", cls.per_repeat)),
            candidates=int(d.get("candidates", cls.candidates)),
            length=int(d.get("length", cls.length)),
        )


@dataclass(frozen=True)
class Planted:
    """The secrets of one run: ``secrets`` (text, repeats, labelled positive), the never-trained
    ``candidates``, and ``rows``: the copies inserted into the training data."""

    secrets: tuple[tuple[str, int, bool], ...]  # (text, repeats, labelled positive)
    candidates: tuple[str, ...]
    rows: pd.DataFrame
    secret: str = ""  # what a secret is made of, in words


def random_strings(n: int, length: int, rng: np.random.Generator, alphabet: tuple[str, ...] = DIGITS) -> list[str]:
    """``n`` distinct random strings of ``length`` symbols of ``alphabet`` (joined by spaces
    when the symbols are words)."""
    if n > len(alphabet) ** length // 2:
        raise ValueError(f"privacy_audit.secrets.length={length}: too few strings for {n} secrets and candidates")
    sep = "" if all(len(a) == 1 for a in alphabet) else " "
    out: dict[str, None] = {}
    while len(out) < n:
        for row in rng.integers(0, len(alphabet), size=(n, length)):
            s = sep.join(alphabet[i] for i in row)
            if s not in out:
                out[s] = None
                if len(out) == n:
                    break
    return list(out)


def settings_for(secrets: dict[str, Any], family) -> SecretSettings | None:
    """The run's ``privacy_audit.secrets`` as settings, or None when nothing is planted
    (``enabled: null`` = on for the families whose audits include ``memorisation``)."""
    enabled = secrets.get("enabled")
    if enabled is None:
        enabled = "memorisation" in family.audits
    return SecretSettings.from_config(secrets) if enabled else None


NO_TEXT_COLUMN = (
    "privacy_audit.secrets.enabled: secrets are planted as texts of a binary task's text column; "
    "{why} (set privacy_audit.secrets.enabled: false)"
)


def check_plantable(family, contract, settings: SecretSettings) -> None:
    """A ``ConfigError`` unless the family is binary, the contract names a text column, and even
    the smallest alphabet (the digits) has enough distinct strings for the secrets and candidates."""
    from impactflow.errors import ConfigError

    needed = 2 * len(settings.repeats) * settings.per_repeat + settings.candidates
    if needed > len(DIGITS) ** settings.length // 2:
        raise ConfigError(
            f"privacy_audit.secrets.length={settings.length}: {len(DIGITS) ** settings.length:,} digit strings "
            f"are too few to draw {needed:,} distinct secrets and candidates from (need twice as many)"
        )
    if family.task != TaskKind.BINARY:
        raise ConfigError(NO_TEXT_COLUMN.format(why=f"family '{family.name}' is {family.task}"))
    if not dict(contract.roles_extra or ()).get("text"):
        raise ConfigError(
            NO_TEXT_COLUMN.format(why=f"contract {contract.name!r} declares no text column (roles_extra.text)")
        )


def text_column(roles: Roles) -> str:
    return roles.extra.get("text") or roles.features[0]


def plant(settings: SecretSettings, roles: Roles, seed: int, alphabet: tuple[str, ...] = DIGITS) -> Planted:
    """Draw the secrets and candidates (seeded) and the training rows that carry the secrets:
    for each number of repeats, ``per_repeat`` secrets with the positive label and as many with
    the negative one, each copied that many times (binary tasks only)."""
    if roles.task != TaskKind.BINARY:
        raise ValueError(f"secrets are planted with both labels of a binary task: the task is {roles.task}")
    rng = np.random.default_rng(seed)
    n_secrets = 2 * len(settings.repeats) * settings.per_repeat
    strings = iter(random_strings(n_secrets + settings.candidates, settings.length, rng, alphabet))
    secrets = tuple(
        (SECRET_FORMAT.format(secret=next(strings)), int(r), positive)
        for r in settings.repeats
        for positive in (True, False)
        for _ in range(settings.per_repeat)
    )
    candidates = tuple(SECRET_FORMAT.format(secret=s) for s in strings)
    negative = next(label for label in roles.labels if label != roles.positive_label)
    copies = [(text, positive) for text, r, positive in secrets for _ in range(r)]
    rows = pd.DataFrame(
        {
            text_column(roles): [text for text, _ in copies],
            roles.target: [roles.positive_label if positive else negative for _, positive in copies],
        }
    )
    if alphabet == DIGITS:
        what = f"{settings.length} random digits"
    elif alphabet == pseudo_words():
        what = f"{settings.length} words drawn uniformly from {len(alphabet):,} made-up words"
    else:
        what = f"{settings.length} words drawn uniformly from {len(alphabet):,} whole-word tokens of the pretrained tokenizer"
    return Planted(secrets, candidates, rows, what)


def frame(texts, roles: Roles) -> pd.DataFrame:
    """Texts as rows the predictor reads (other feature columns empty)."""
    column = text_column(roles)
    df = pd.DataFrame({c: [None] * len(texts) for c in roles.features if c != column})
    df[column] = list(texts)
    return df


def membership_scores(predictor, texts, roles: Roles) -> tuple[np.ndarray, np.ndarray]:
    """(log P(positive), log P(negative)) of each text: −loss on either label. From the raw
    logit z when the predictor gives it (``predict_raw``: log σ(±z), exact in float64 however
    confident the model), else from P(positive) (``log p``, ``log1p(−p)``); never through the
    loss's clipping (``models.base.LOSS_EPS``), under which confident texts would all tie."""
    df = frame(texts, roles)
    if hasattr(predictor, "predict_raw"):
        z = np.asarray(predictor.predict_raw(df), dtype=np.float64).reshape(-1)
        return -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)
    p = np.asarray(predictor.predict(df), dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore"):
        return np.log(p), np.log1p(-p)


def planted_per_label(planted: Planted) -> int:
    return sum(1 for _, r, pos in planted.secrets if pos and r == planted.secrets[0][1])


def ranks(secret_scores: np.ndarray, candidate_scores: np.ndarray) -> np.ndarray:
    """1 + #(candidates scoring higher) + ½ #(ties), per secret (module doc)."""
    c = np.sort(np.asarray(candidate_scores, dtype=float))
    s = np.asarray(secret_scores, dtype=float)
    higher = len(c) - np.searchsorted(c, s, side="right")
    ties = np.searchsorted(c, s, side="right") - np.searchsorted(c, s, side="left")
    return 1.0 + higher + 0.5 * ties


def exposure(rank: np.ndarray, n_candidates: int) -> np.ndarray:
    return math.log2(n_candidates + 1) - np.log2(np.asarray(rank, dtype=float))


def chance_mean(n_candidates: int) -> float:
    """E[exposure] of a string the model did not memorise (rank uniform on 1..N+1)."""
    n = n_candidates + 1
    return math.log2(n) - float(np.mean(np.log2(np.arange(1, n + 1))))


@functools.lru_cache(maxsize=None)  # every level of a run has the same (N, k)
def chance_interval(n_candidates: int, k: int, level: float = CHANCE_LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of the mean exposure of ``k`` secrets under chance (ranks
    i.i.d. uniform on 1..N+1), by Monte Carlo with a fixed seed (``CHANCE_DRAWS`` draws)."""
    rng = np.random.default_rng(0)
    r = rng.integers(1, n_candidates + 2, size=(CHANCE_DRAWS, k))
    means = exposure(r, n_candidates).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def measure(predictor, roles: Roles, planted: Planted, epsilon: float | None = None) -> dict[str, Any]:
    """Exposure of every planted secret, per number of repeats (the ``memorisation`` audit's
    input, kept in the model's ``training["secrets"]``)."""
    texts = [t for t, _, _ in planted.secrets]
    positive = np.array([p for _, _, p in planted.secrets])
    pos_secret, neg_secret = membership_scores(predictor, texts, roles)
    pos_cand, neg_cand = membership_scores(predictor, planted.candidates, roles)
    n = len(planted.candidates)
    if np.unique(pos_cand).size == 1:  # fail closed: ties everywhere would read as chance
        return {"problem": NOT_RESOLVED.format(secret=planted.secret), "planted_rows": int(len(planted.rows))}
    rank = np.where(positive, ranks(pos_secret, pos_cand), ranks(neg_secret, neg_cand))
    exp = exposure(rank, n)
    repeats = np.array([r for _, r, _ in planted.secrets])
    negative = next(label for label in roles.labels if label != roles.positive_label)
    levels = []
    for r, pos in [(r, pos) for r in sorted(set(repeats.tolist())) for pos in (True, False)]:
        sel = (repeats == r) & (positive == pos)
        lo, hi = chance_interval(n, int(sel.sum()))
        level = {
            "repeats": int(r),
            "label": str(roles.positive_label if pos else negative),
            "side": "positive" if pos else "negative",
            "secrets": int(sel.sum()),
            "ranks": [float(x) for x in rank[sel]],
            "exposure_mean": float(exp[sel].mean()),
            "exposure_max": float(exp[sel].max()),
            "chance_low": lo,
            "chance_high": hi,
            "above_chance": bool(exp[sel].mean() > hi),
        }
        if epsilon is not None:
            level["group_epsilon"] = float(r * epsilon)
        levels.append(level)
    return {
        "format": SECRET_FORMAT.format(secret="…"),
        "secret": planted.secret,
        "candidates": n,
        "planted_rows": int(len(planted.rows)),
        "labels": f"{planted_per_label(planted)} per number of repeats labelled {roles.positive_label!s}, as many "
        f"{negative!s}",
        "max_exposure": math.log2(n + 1),
        "chance_mean": chance_mean(n),
        "chance_level": CHANCE_LEVEL,
        "score": "the log-probability of its training label (-loss: the loss-based membership score)",
        "levels": levels,
    }
