"""Seeded synthetic ratings (the recommender preset's offline default): made-up users with
demographic groups, items with a long-tail popularity, and group-dependent tastes.

Nothing here describes real people; the contract marks the groups ``synthetic_groups`` so every
report says so. The data is generated from a small YAML spec (``spec.yaml`` in this folder,
or any file given as ``data.path``); the same spec and code give the same frame, row for row.

Generative model (a planted biased-MF model, in the spirit of Koren, Bell, Volinsky 2009):
- items: base popularity p_i ~ rank_i^-a (a = ``popularity_exponent``), ranks a seeded
  permutation; latent vectors q_i ~ N(0, I/d); item bias b_i ~ N(0, 0.3²) plus 0.3·z-score of
  log popularity (popular items are also rated a little higher, as in MovieLens);
- users: gender and age band drawn from the given shares, occupation uniform; latent vector
  p_u = group mean m_(gender, age band) + N(0, I/d), with each group mean drawn at distance
  ``group_taste_shift`` from 0 (group-dependent tastes); user bias b_u ~ N(0, 0.3²);
- exposure (missing not at random): user u rates n_u items drawn without replacement with
  probability ∝ p_i · exp(p_u·q_i), so users mostly rate popular items they like;
- rating = clip(round(3.1 + b_u + b_i + 1.5·p_u·q_i + N(0, noise_sd²)), 1, 5).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from impactflow.errors import DataError
from impactflow.data_contracts.ratings import RATING_COLUMNS, join_ratings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SPEC_DEFAULTS", "generate_ratings", "load_synthetic_ratings"]

HERE = Path(__file__).resolve().parent

SPEC_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "n_users": 600,
    "n_items": 400,
    "ratings_per_user": [20, 60],
    "n_factors": 6,
    "popularity_exponent": 1.0,
    "group_taste_shift": 0.8,
    "noise_sd": 0.6,
    "gender_shares": {"F": 0.35, "M": 0.65},
    "age_band_shares": {"18-24": 0.3, "25-34": 0.35, "35-44": 0.2, "45-49": 0.1, "56+": 0.05},
    "occupations": ["student", "engineer", "educator", "artist", "other"],
}
BAD_SPEC = "{path}: {problem}"
# A representative age (years) per band, so the frame has MovieLens' ``age`` column too.
_BAND_AGE = {"<18": 16, "18-24": 21, "25-34": 30, "35-44": 40, "45-49": 47, "50-55": 52, "56+": 60}


def _spec(path: Path) -> dict[str, Any]:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise DataError(BAD_SPEC.format(path=path, problem="file not found")) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        from impactflow.data_contracts.files import parse_reason

        raise DataError(BAD_SPEC.format(path=path, problem=f"not a readable YAML spec ({parse_reason(exc)})")) from None
    if not isinstance(raw, dict):
        raise DataError(BAD_SPEC.format(path=path, problem="the spec must be a mapping"))
    unknown = sorted(set(raw) - set(SPEC_DEFAULTS))
    if unknown:
        raise DataError(BAD_SPEC.format(path=path, problem=f"unknown keys {unknown} (known: {sorted(SPEC_DEFAULTS)})"))
    spec = {**SPEC_DEFAULTS, **raw}
    lo, hi = spec["ratings_per_user"]
    checks = [
        (int(spec["n_users"]) >= 10, "n_users must be >= 10"),
        (int(spec["n_items"]) >= 10, "n_items must be >= 10"),
        (
            1 <= int(lo) <= int(hi) <= int(spec["n_items"]),
            "ratings_per_user must be [lo, hi] with 1 <= lo <= hi <= n_items",
        ),
        (int(spec["n_factors"]) >= 1, "n_factors must be >= 1"),
        (float(spec["noise_sd"]) >= 0, "noise_sd must be >= 0"),
        (abs(sum(spec["gender_shares"].values()) - 1) < 1e-6, "gender_shares must sum to 1"),
        (abs(sum(spec["age_band_shares"].values()) - 1) < 1e-6, "age_band_shares must sum to 1"),
        (set(spec["age_band_shares"]) <= set(_BAND_AGE), f"age bands must be among {list(_BAND_AGE)}"),
    ]
    for ok, problem in checks:
        if not ok:
            raise DataError(BAD_SPEC.format(path=path, problem=problem))
    return spec


def generate_ratings(spec: dict[str, Any] | None = None) -> "pd.DataFrame":
    """The synthetic ratings frame (``RATING_COLUMNS``) for ``spec`` (defaults: ``SPEC_DEFAULTS``)."""
    import numpy as np
    import pandas as pd

    s = {**SPEC_DEFAULTS, **(spec or {})}
    rng = np.random.default_rng(int(s["seed"]))
    n_u, n_i, d = int(s["n_users"]), int(s["n_items"]), int(s["n_factors"])

    rank = rng.permutation(n_i) + 1
    popularity = rank.astype(float) ** -float(s["popularity_exponent"])
    popularity /= popularity.sum()
    q = rng.normal(0.0, 1.0 / np.sqrt(d), size=(n_i, d))
    logp = np.log(popularity)
    b_i = rng.normal(0.0, 0.3, size=n_i) + 0.3 * (logp - logp.mean()) / logp.std()

    genders, g_p = zip(*s["gender_shares"].items())
    bands, a_p = zip(*s["age_band_shares"].items())
    gender = rng.choice(list(genders), size=n_u, p=list(g_p))
    band = rng.choice(list(bands), size=n_u, p=list(a_p))
    occupation = rng.choice(list(s["occupations"]), size=n_u)
    group_mean = {}
    for g in genders:
        for b in bands:
            v = rng.normal(size=d)
            group_mean[(g, b)] = float(s["group_taste_shift"]) * v / np.linalg.norm(v)
    p = np.stack([group_mean[(g, b)] for g, b in zip(gender, band)]) + rng.normal(0.0, 1.0 / np.sqrt(d), size=(n_u, d))
    b_u = rng.normal(0.0, 0.3, size=n_u)

    lo, hi = (int(x) for x in s["ratings_per_user"])
    users, items = [], []
    for u in range(n_u):
        w = popularity * np.exp(p[u] @ q.T)
        chosen = rng.choice(n_i, size=int(rng.integers(lo, hi + 1)), replace=False, p=w / w.sum())
        users.append(np.full(chosen.size, u))
        items.append(chosen)
    uu, ii = np.concatenate(users), np.concatenate(items)
    raw = (
        3.1
        + b_u[uu]
        + b_i[ii]
        + 1.5 * np.einsum("nd,nd->n", p[uu], q[ii])
        + rng.normal(0.0, float(s["noise_sd"]), uu.size)
    )
    ratings = pd.DataFrame(
        {
            "user_id": uu + 1,
            "item_id": ii + 1,
            "rating": np.clip(np.rint(raw), 1, 5).astype(np.int64),
            "timestamp": 1_600_000_000 + np.sort(rng.integers(0, 86_400 * 365, uu.size)),
        }
    )
    user_table = pd.DataFrame(
        {
            "user_id": np.arange(1, n_u + 1),
            "age": np.array([_BAND_AGE[b] for b in band], dtype=np.int64),
            "gender": gender.astype(object),
            "occupation": occupation.astype(object),
        }
    )
    item_table = pd.DataFrame(
        {"item_id": np.arange(1, n_i + 1), "title": [f"synthetic item {i}" for i in range(1, n_i + 1)]}
    )
    df = join_ratings(ratings, user_table, item_table, "synthetic users")
    return df[list(RATING_COLUMNS)]


def load_synthetic_ratings(paths: Sequence[Path | str]) -> "pd.DataFrame":
    """Generate the ratings described by the one YAML spec in ``paths``."""
    files = [Path(p) for p in paths]
    if len(files) != 1:
        raise DataError(f"synthetic ratings take exactly one YAML spec file, got {len(files)} paths")
    return generate_ratings(_spec(files[0]))
