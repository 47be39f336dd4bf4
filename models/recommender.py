"""Recommender family: explicit-rating models over (user id, item id) pairs.

Two variants, chosen by ``model.params.variant``:

- ``mf`` -- biased matrix factorisation (Koren, Bell, Volinsky 2009, "Matrix Factorization
  Techniques for Recommender Systems", IEEE Computer, eq. 3):
  r̂_ui = c + g + b_u + b_i + p_u·q_i, with c the midpoint of the rating range (a constant,
  so no statistic of the training data enters the model outside training) and g a learned
  global offset;
- ``neumf`` -- NeuMF-style (He et al. 2017, "Neural Collaborative Filtering", WWW, §3.4):
  a GMF branch (p_u ⊙ q_i) and an MLP branch over separate embeddings [p'_u, q'_i], concatenated
  into one linear output, plus the same biases, regressing the rating.

Ids are mapped to embedding rows by a preprocessor fitted on the training rows only; ids not
seen in training map to row 0, whose factors and bias are masked to zero (a cold-start user
or item is predicted from the other side's bias alone). Under DP (``private=True``) the id
maps would reveal which users and items occur in the training rows, so they are built from
the id domains the contract declares instead (``expect_column_values_to_be_in_set``, or an
integer ``expect_column_values_to_be_between`` range): every declared id gets a row, ids
outside the declared domain map to row 0. A declared id without training ratings keeps its
random initial factors plus the DP noise (indistinguishable, by design, from a rare one).

DP (Opacus ghost clipping): each ``nn.Embedding`` table is looked up exactly once per forward
and index tensors are made contiguous (parameter tying and non-contiguous inputs are what
ghost clipping refuses). The privacy unit is ONE RATING (example-level DP over rating rows);
a user's whole history is not protected as a unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from impactflow.models.base import Family, Roles, check_param
from impactflow.task_kind import TaskKind

VARIANTS = ("mf", "neumf")


@dataclass(frozen=True)
class RecommenderConfig:
    variant: str = "mf"  # "mf" (biased matrix factorisation) or "neumf"
    n_factors: int = 32
    mlp_sizes: tuple[int, ...] = (64, 32)  # neumf only
    dropout: float = 0.0  # neumf MLP branch only
    init_std: float = 0.05
    lr: float = 0.005
    weight_decay: float = 0.0
    batch_size: int = 1024
    epochs: int = 30
    patience: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "mlp_sizes", tuple(int(h) for h in self.mlp_sizes))
        check_param(self.variant in VARIANTS, f"variant={self.variant!r} must be one of {VARIANTS}")
        check_param(self.n_factors > 0, f"n_factors={self.n_factors} must be > 0")
        check_param(all(h > 0 for h in self.mlp_sizes), "mlp_sizes must be positive integers")
        check_param(0.0 <= self.dropout < 1.0, f"dropout={self.dropout} must be in [0, 1)")
        check_param(self.init_std > 0, f"init_std={self.init_std} must be > 0")
        check_param(self.lr > 0, f"lr={self.lr} must be > 0")
        check_param(self.weight_decay >= 0, f"weight_decay={self.weight_decay} must be >= 0")
        check_param(self.batch_size > 0, f"batch_size={self.batch_size} must be > 0")
        check_param(self.epochs > 0, f"epochs={self.epochs} must be > 0")
        check_param(self.patience > 0, f"patience={self.patience} must be > 0")


def _columns(roles: Roles) -> tuple[str, str]:
    return str(roles.extra.get("user", roles.features[0])), str(roles.extra.get("item", roles.features[1]))


def _rating_range(roles: Roles) -> tuple[float, float]:
    return float(roles.extra.get("rating_min", 1)), float(roles.extra.get("rating_max", 5))


#: the most ids a declared integer range may span under DP (one embedding row each)
MAX_DECLARED_IDS = 10_000_000
TOO_MANY_IDS = (
    "under DP, column {column!r}: the range {lo:g}..{hi:g} declared in contract {contract!r} spans "
    "{n} ids, more than {limit} embedding rows; declare the id domain more tightly"
)


def declared_ids(domains, column: str) -> np.ndarray:
    """The ids of ``column`` the contract declares: its category set, else the integers of its
    declared range (``ConfigError`` naming contract and column when there is neither)."""
    from impactflow.errors import ConfigError

    if domains.categories.get(column):
        return np.sort(np.asarray(domains.categories[column]))
    lo, hi = domains.value_range(column)
    first, last = int(np.ceil(lo)), int(np.floor(hi))
    if last - first + 1 > MAX_DECLARED_IDS:
        raise ConfigError(
            TOO_MANY_IDS.format(
                column=column, lo=lo, hi=hi, contract=domains.contract, n=last - first + 1, limit=MAX_DECLARED_IDS
            )
        )
    return np.arange(first, last + 1, dtype=np.int64)


class IdPreprocessor:
    """(user id, item id) columns -> int64 (N, 2) embedding rows; row 0 = unseen id.
    The id vocabularies are the training rows' (sorted), so the mapping is deterministic; with
    ``domains`` (DP) they are the ids the contract declares, and no row is read."""

    def __init__(self, user_col: str, item_col: str, rating_range: tuple[float, float], domains=None) -> None:
        self.user_col, self.item_col = user_col, item_col
        self.rating_range = rating_range
        self.users = None
        self.items = None
        if domains is not None:  # DP: declared id domains, checked before any training
            import pandas as pd

            self.contract = domains.contract
            self.users = pd.Index(declared_ids(domains, user_col))
            self.items = pd.Index(declared_ids(domains, item_col))
        self.declared = domains is not None

    def fit_transform(self, df) -> np.ndarray:
        import pandas as pd

        if not self.declared:
            self.users = pd.Index(np.sort(pd.unique(df[self.user_col])))
            self.items = pd.Index(np.sort(pd.unique(df[self.item_col])))
        return self.transform(df)

    def transform(self, df) -> np.ndarray:
        assert self.users is not None and self.items is not None, "fit the preprocessor first"
        u = self.users.get_indexer(df[self.user_col]) + 1  # -1 (unseen) -> 0
        i = self.items.get_indexer(df[self.item_col]) + 1
        return np.ascontiguousarray(np.stack([u, i], axis=1).astype(np.int64))

    def spec(self) -> dict[str, Any]:
        assert self.users is not None and self.items is not None, "fit the preprocessor first"
        return {
            "n_users": len(self.users) + 1,
            "n_items": len(self.items) + 1,
            "rating_min": self.rating_range[0],
            "rating_max": self.rating_range[1],
        }

    def components(self) -> dict[str, str]:
        offset = (
            f"data-independent: the midpoint of the contract's rating range "
            f"{self.rating_range[0]:g}..{self.rating_range[1]:g}"
        )
        if not self.declared:
            return {
                "user_ids": "fitted on training rows: the users seen in them",
                "item_ids": "fitted on training rows: the items seen in them",
                "rating_offset": offset,
            }

        def ids(col, index):
            return (
                f"data-independent: the {len(index)} {col} values declared in contract '{self.contract}' "
                f"({index[0]}..{index[-1]}); others -> row 0"
            )

        return {
            "user_ids": ids(self.user_col, self.users),
            "item_ids": ids(self.item_col, self.items),
            "rating_offset": offset,
        }

    def summary(self) -> str:
        if not self.declared:
            return "user and item id maps fitted on the training rows"
        return f"user and item id domains declared in contract '{self.contract}'"


def make_preprocessor(roles: Roles, config: RecommenderConfig | None = None, private: bool = False) -> IdPreprocessor:
    """Id maps from the training rows, or under DP from the contract's declared id domains."""
    user, item = _columns(roles)
    if private:
        from impactflow.data_contracts.domains import Domains

        domains = roles.domains if roles.domains is not None else Domains(contract="(none: roles without a contract)")
        return IdPreprocessor(user, item, _rating_range(roles), domains=domains)
    return IdPreprocessor(user, item, _rating_range(roles))


class BiasedMF(nn.Module):
    """r̂ = c + g + b_u + b_i + p_u·q_i (Koren et al. 2009); row 0 of each table = unseen id."""

    offset: torch.Tensor  # a registered buffer

    def __init__(
        self, n_users: int, n_items: int, n_factors: int, rating_min: float, rating_max: float, init_std: float = 0.05
    ) -> None:
        super().__init__()
        self.user_factors = nn.Embedding(n_users, n_factors)
        self.item_factors = nn.Embedding(n_items, n_factors)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.global_bias = nn.Embedding(1, 1)  # a table, not a bare Parameter: Opacus-supported
        for emb in (self.user_factors, self.item_factors):
            nn.init.normal_(emb.weight, std=init_std)
        for emb in (self.user_bias, self.item_bias, self.global_bias):
            nn.init.zeros_(emb.weight)
        self.register_buffer("offset", torch.tensor((rating_min + rating_max) / 2.0))

    def _parts(self, x: torch.Tensor):
        users = x[:, 0].contiguous()
        items = x[:, 1].contiguous()
        known_u = (users > 0).unsqueeze(-1).to(self.offset.dtype)
        known_i = (items > 0).unsqueeze(-1).to(self.offset.dtype)
        p = self.user_factors(users) * known_u
        q = self.item_factors(items) * known_i
        bias = (
            self.user_bias(users) * known_u
            + self.item_bias(items) * known_i
            + self.global_bias(torch.zeros_like(users))
        ).squeeze(-1) + self.offset
        return users, items, known_u, known_i, p, q, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, _, _, p, q, bias = self._parts(x)
        return bias + (p * q).sum(-1)


class NeuMF(BiasedMF):
    """NeuMF-style rating regressor (He et al. 2017): [p_u ⊙ q_i, MLP([p'_u, q'_i])] -> linear,
    plus the biases of ``BiasedMF``. Separate embedding tables per branch (no tying)."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        rating_min: float,
        rating_max: float,
        mlp_sizes: tuple[int, ...],
        dropout: float,
        init_std: float = 0.05,
    ) -> None:
        super().__init__(n_users, n_items, n_factors, rating_min, rating_max, init_std)
        self.user_mlp_factors = nn.Embedding(n_users, n_factors)
        self.item_mlp_factors = nn.Embedding(n_items, n_factors)
        for emb in (self.user_mlp_factors, self.item_mlp_factors):
            nn.init.normal_(emb.weight, std=init_std)
        layers: list[nn.Module] = []
        width = 2 * n_factors
        for h in mlp_sizes:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(n_factors + width, 1)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        users, items, known_u, known_i, p, q, bias = self._parts(x)
        pm = self.user_mlp_factors(users) * known_u
        qm = self.item_mlp_factors(items) * known_i
        h = self.mlp(torch.cat([pm, qm], dim=-1))
        return bias + self.out(torch.cat([p * q, h], dim=-1)).squeeze(-1)


def build_model(spec: dict[str, Any], config: RecommenderConfig) -> nn.Module:
    common = dict(
        n_users=spec["n_users"],
        n_items=spec["n_items"],
        n_factors=config.n_factors,
        rating_min=spec["rating_min"],
        rating_max=spec["rating_max"],
        init_std=config.init_std,
    )
    if config.variant == "neumf":
        return NeuMF(**common, mlp_sizes=config.mlp_sizes, dropout=config.dropout)
    return BiasedMF(**common)


def make_criterion(reduction: str = "mean") -> nn.Module:
    return nn.MSELoss(reduction=reduction)


class BiasBaseline:
    """Baseline predictor r̂_ui = μ + b_u + b_i with regularised biases (Koren 2010, "Factor in
    the Neighbors", TKDD, §2.1), fitted by alternating closed-form updates
    b_i = Σ_u (r − μ − b_u) / (λ_i + n_i), b_u = Σ_i (r − μ − b_i) / (λ_u + n_u).
    scikit-learn estimator API over the (user, item) columns; unseen ids get bias 0;
    predictions clipped to the rating range."""

    def __init__(
        self,
        user_col: str = "user_id",
        item_col: str = "item_id",
        reg_user: float = 15.0,
        reg_item: float = 10.0,
        n_iter: int = 10,
        rating_min: float = 1.0,
        rating_max: float = 5.0,
    ) -> None:
        self.user_col, self.item_col = user_col, item_col
        self.reg_user, self.reg_item, self.n_iter = reg_user, reg_item, n_iter
        self.rating_min, self.rating_max = rating_min, rating_max

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("user_col", "item_col", "reg_user", "reg_item", "n_iter", "rating_min", "rating_max")
        }

    def fit(self, X, y):
        import pandas as pd

        y = np.asarray(y, dtype=np.float64)
        self.users_ = pd.Index(np.sort(pd.unique(X[self.user_col])))
        self.items_ = pd.Index(np.sort(pd.unique(X[self.item_col])))
        u = self.users_.get_indexer(X[self.user_col])
        i = self.items_.get_indexer(X[self.item_col])
        self.mu_ = float(y.mean())
        bu, bi = np.zeros(len(self.users_)), np.zeros(len(self.items_))
        nu = np.bincount(u, minlength=len(bu))
        ni = np.bincount(i, minlength=len(bi))
        for _ in range(self.n_iter):
            bi = np.bincount(i, weights=y - self.mu_ - bu[u], minlength=len(bi)) / (self.reg_item + ni)
            bu = np.bincount(u, weights=y - self.mu_ - bi[i], minlength=len(bu)) / (self.reg_user + nu)
        self.user_bias_, self.item_bias_ = bu, bi
        return self

    def predict(self, X) -> np.ndarray:
        u = self.users_.get_indexer(X[self.user_col])
        i = self.items_.get_indexer(X[self.item_col])
        bu = np.where(u >= 0, self.user_bias_[np.maximum(u, 0)], 0.0)
        bi = np.where(i >= 0, self.item_bias_[np.maximum(i, 0)], 0.0)
        return np.clip(self.mu_ + bu + bi, self.rating_min, self.rating_max)


def bias_baseline(roles: Roles, seed: int) -> BiasBaseline:
    user, item = _columns(roles)
    lo, hi = _rating_range(roles)
    return BiasBaseline(user_col=user, item_col=item, rating_min=lo, rating_max=hi)


class ItemScorer:
    """``scorer(users) -> (len(users), len(catalog))`` predicted ratings of every catalog item,
    from any fitted predictor (``predict(frame) -> ratings``); memoised per users array, so the
    audits that rank items share one scoring pass."""

    def __init__(self, predictor, user_col: str, item_col: str, catalog: np.ndarray, chunk_rows: int = 500_000) -> None:
        self.predictor, self.user_col, self.item_col = predictor, user_col, item_col
        self.catalog = np.asarray(catalog)
        self.chunk_users = max(1, chunk_rows // max(1, len(self.catalog)))
        self._memo: dict[bytes, np.ndarray] = {}

    def __call__(self, users) -> np.ndarray:
        import pandas as pd

        users = np.asarray(users)
        key = users.tobytes() + str(users.dtype).encode()
        if key not in self._memo:
            n_items = len(self.catalog)
            out = np.empty((len(users), n_items), dtype=np.float64)
            for start in range(0, len(users), self.chunk_users):
                block = users[start : start + self.chunk_users]
                frame = pd.DataFrame(
                    {self.user_col: np.repeat(block, n_items), self.item_col: np.tile(self.catalog, len(block))}
                )
                out[start : start + len(block)] = np.asarray(self.predictor.predict(frame)).reshape(len(block), n_items)
            self._memo = {key: out}  # keep only the latest matrix
        return self._memo[key]


def audit_extras(predictor, split, roles: Roles) -> dict[str, Any]:
    """What the ranking/exposure audits need beyond the test predictions: the interactions the
    model was fitted on (train + validation: excluded from each user's candidates; train
    counts = item popularity), the catalog (every item of the dataset), the test rows' ids,
    and a scorer of all catalog items for given users."""
    import pandas as pd

    user, item = _columns(roles)
    catalog = np.sort(pd.unique(pd.concat([split.train[item], split.validation[item], split.test[item]])))
    return {
        "user_col": user,
        "item_col": item,
        "catalog": catalog,
        "train_users": split.train[user].to_numpy(),
        "train_items": split.train[item].to_numpy(),
        "validation_users": split.validation[user].to_numpy(),
        "validation_items": split.validation[item].to_numpy(),
        "test_users": split.test[user].to_numpy(),
        "test_items": split.test[item].to_numpy(),
        "rating_range": _rating_range(roles),
        "score_items": ItemScorer(predictor, user, item, catalog),
    }


def row_features(split, roles: Roles):
    """Per test rating: the user's activity and the item's popularity, as counts of their ratings
    in the training split (slice discovery bins them by quantiles). User attributes (age band,
    gender, occupation) are the audit groups, added beside them; the MovieLens contract loads
    no genre."""
    import pandas as pd

    user, item = _columns(roles)
    activity = split.train[user].value_counts()
    popularity = split.train[item].value_counts()
    return pd.DataFrame(
        {
            "user activity (train ratings)": split.test[user].map(activity).fillna(0).astype(int).to_numpy(),
            "item popularity (train ratings)": split.test[item].map(popularity).fillna(0).astype(int).to_numpy(),
        }
    )


FAMILY = Family(
    name="recommender",
    task=TaskKind.RATING,
    description="Biased matrix factorisation (or NeuMF) over user/item embeddings (torch); bias baseline beside it",
    config_cls=RecommenderConfig,
    make_preprocessor=make_preprocessor,
    build_model=build_model,
    make_criterion=make_criterion,
    model_name="recommender",
    privacy_unit="one rating, not a user's whole history",
    baselines={"bias": bias_baseline},
    audits=("recommendation", "user_groups", "exposure", "privacy"),
    audit_extras=audit_extras,
    row_features=row_features,
)
