"""Recommender audits: rating error, top-k ranking quality, user-group gaps, exposure concentration.

Three audits over one ``RankingContext`` (computed from ``AuditInputs`` + ``inputs.extra``, which
the recommender family fills: the interactions the model was fitted on, the catalog, the test
rows' ids and a scorer of all catalog items per user):

- ``recommendation_audit``: RMSE/MAE on held-out ratings (normal-approximation CIs) and top-k
  precision, recall, NDCG, hit rate and catalog coverage, next to a most-popular and a
  random recommender;
- ``user_group_audit``: the same per user group (gender, age band, occupation where present),
  with CIs, and the max − min gap across groups with a CI;
- ``exposure_audit``: how concentrated item exposure in the top-k lists is (Gini, HHI, share
  of the 10 % most popular items, average popularity), against the two baselines, with the
  Lorenz curve in ``details``.

Ranking protocol (stated in every result): for every user with at least one *relevant*
held-out rating (rating >= ``relevant_min_rating``), every catalog item is scored; items the
user rated in the training or validation rows are excluded (the model saw them); the top k of
the rest form the list; relevant = the user's held-out items rated >= ``relevant_min_rating``.
Held-out items rated below the threshold count as not relevant. Ties are broken by catalog
order (ascending item id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from .inputs import AuditInputs
from .results import AuditResult, Status, overall_status
from .stats import compare_gate, wilson_interval
from .thresholds import Threshold, at_least, at_most, defaults, setting

_K = setting(10, "count")
_RELEVANT = setting(4.0, "number")
_CI = setting(0.95, "fraction")
RECOMMENDATION_THRESHOLDS: dict[str, Threshold] = {
    "k": _K,
    "relevant_min_rating": _RELEVANT,
    "ci_level": _CI,
    "seed": setting(0, "whole"),
    "max_rmse": at_most("rmse", kind="number"),
    "max_mae": at_most("mae", kind="number"),
    "min_ndcg_at_k": at_least(r"ndcg_at_\d+"),
}
USER_GROUP_THRESHOLDS: dict[str, Threshold] = {
    "k": _K,
    "relevant_min_rating": _RELEVANT,
    "ci_level": _CI,
    "min_group_size": setting(30, "count"),
    "max_rmse_gap": at_most("rmse_gap", kind="number"),
    "max_ndcg_gap": at_most(r"ndcg_at_\d+_gap"),
}
EXPOSURE_THRESHOLDS: dict[str, Threshold] = {
    "k": _K,
    "relevant_min_rating": _RELEVANT,
    "seed": setting(0, "whole"),
    "max_gini": at_most(r"gini_at_\d+"),
    "max_top10pct_popular_share": at_most(r"top10pct_popular_share_at_\d+"),
}
RECOMMENDATION_DEFAULTS = defaults(RECOMMENDATION_THRESHOLDS)
USER_GROUP_DEFAULTS = defaults(USER_GROUP_THRESHOLDS)
EXPOSURE_DEFAULTS = defaults(EXPOSURE_THRESHOLDS)
NEEDED_EXTRA = ("catalog", "train_items", "train_users", "test_users", "test_items", "score_items")
NO_EXTRA = (
    "ranking inputs missing from inputs.extra ({missing}): the family must provide them via "
    "Family.audit_extras; ranking and exposure not measured"
)
GINI_CONVENTION = (
    "Gini of item exposure over the whole catalog (items never recommended count, with 0): "
    "G = Σ_i (2i − n − 1)·x_(i) / (n·Σ x), x sorted ascending, i = 1..n; 0 = every item equally "
    "exposed, (n − 1)/n = one item gets all exposure. Exposure = number of top-k lists an item "
    "appears in (every slot counts 1, no position discount)."
)
HHI_CONVENTION = "HHI = Σ s_i², s_i = item i's share of all top-k slots (1/n = equal, 1 = one item)."
POPULAR_CONVENTION = (
    "popularity = number of training ratings of an item; 'top 10% popular' = the ceil(n/10) "
    "catalog items with the most training ratings (ties by item id)."
)


# --------------------------------------------------------------------------- pure metrics


def gini(values) -> float:
    """Gini coefficient of non-negative values (convention: ``GINI_CONVENTION``); nan if all 0."""
    x = np.sort(np.asarray(values, dtype=float).reshape(-1))
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def hhi(values) -> float:
    """Herfindahl-Hirschman index Σ s_i² of the shares s_i = x_i / Σ x; nan if all 0."""
    x = np.asarray(values, dtype=float).reshape(-1)
    total = x.sum()
    return float(((x / total) ** 2).sum()) if total > 0 else float("nan")


def lorenz_curve(values, max_points: int = 101) -> dict[str, list[float]]:
    """Lorenz curve: x = cumulative share of items (sorted by ascending exposure), y = cumulative
    share of exposure; starts at (0, 0), ends at (1, 1); thinned to ``max_points``."""
    x = np.sort(np.asarray(values, dtype=float).reshape(-1))
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return {"x": [], "y": []}
    cx = np.concatenate([[0.0], np.arange(1, n + 1) / n])
    cy = np.concatenate([[0.0], np.cumsum(x) / total])
    idx = np.unique(np.linspace(0, n, min(max_points, n + 1)).round().astype(int))
    return {"x": cx[idx].tolist(), "y": cy[idx].tolist()}


def top_k(scores: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores per row, best first, skipping ``exclude``
    (boolean, same shape); ties broken by lower column index. Rows with fewer than ``k``
    candidates are padded with -1."""
    s = np.where(exclude, -np.inf, np.asarray(scores, dtype=float))
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    taken = np.take_along_axis(s, order, axis=1)
    return np.where(np.isneginf(taken), -1, order)


def ranking_metrics(lists: np.ndarray, relevant: list[set], k: int) -> dict[str, np.ndarray]:
    """Per-user precision@k = hits/k, recall@k = hits/|rel|, hit rate@k = [hits > 0] and
    NDCG@k with binary relevance (Järvelin & Kekäläinen 2002): DCG = Σ_{r=1..k} rel_r / log2(r + 1),
    divided by the ideal DCG of min(k, |rel|) relevant items at the top."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    n = len(relevant)
    out = {name: np.zeros(n) for name in ("precision", "recall", "ndcg", "hit_rate")}
    for u in range(n):
        rel = relevant[u]
        if not rel:
            out["recall"][u] = out["ndcg"][u] = np.nan
            continue
        gains = np.array([1.0 if c in rel else 0.0 for c in lists[u][:k]])
        hits = gains.sum()
        out["precision"][u] = hits / k
        out["recall"][u] = hits / len(rel)
        out["hit_rate"][u] = float(hits > 0)
        out["ndcg"][u] = (gains * discounts[: gains.size]).sum() / discounts[: min(k, len(rel))].sum()
    return out


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, low, high, standard error): normal-approximation CI mean ± z·sd/√n (sd with n−1)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (float("nan"),) * 4
    m = float(v.mean())
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return m, m - z * se, m + z * se, se


def rmse_ci(errors, level: float = 0.95) -> tuple[float, float, float, float]:
    """(RMSE, low, high, se): the normal CI of the mean squared error, square-rooted at both
    ends (low clipped at 0); se by the delta method, se(MSE) / (2·RMSE)."""
    mse, lo, hi, se = mean_ci(np.square(np.asarray(errors, dtype=float)), level)
    if math.isnan(mse):
        return (float("nan"),) * 4
    rmse = math.sqrt(mse)
    return rmse, math.sqrt(max(lo, 0.0)), math.sqrt(max(hi, 0.0)), se / (2 * rmse) if rmse > 0 else float("nan")


# --------------------------------------------------------------------------- context


@dataclass
class RankingContext:
    k: int
    threshold: float
    catalog: np.ndarray
    users: np.ndarray  # ranked users (>= 1 relevant held-out rating), ascending
    relevant: list[set]  # per ranked user: catalog indices of relevant held-out items
    popularity: np.ndarray  # training ratings per catalog item
    lists: dict[str, np.ndarray]  # "model" / "most_popular" / "random" -> (n_users, k) catalog indices
    n_excluded: int  # (user, item) pairs excluded as already rated


def ranking_context(inputs: AuditInputs, k: int, threshold: float, seed: int = 0) -> RankingContext | None:
    """Top-k lists of the model and of the two baselines for every ranked user (see module doc);
    None when ``inputs.extra`` lacks what ranking needs."""
    extra = inputs.extra or {}
    if any(key not in extra for key in NEEDED_EXTRA):
        return None
    catalog = np.asarray(extra["catalog"])
    index = pd.Index(catalog)
    n_items = catalog.size
    popularity = np.bincount(index.get_indexer(extra["train_items"]), minlength=n_items).astype(float)

    test = pd.DataFrame(
        {"u": np.asarray(extra["test_users"]), "i": index.get_indexer(extra["test_items"]), "r": inputs.y_true}
    )
    rel = test[test["r"] >= threshold]
    users = np.sort(rel["u"].unique())
    uindex = pd.Index(users)
    relevant: list[set[int]] = [set() for _ in users]
    for u, i in zip(uindex.get_indexer(rel["u"]), rel["i"]):
        relevant[u].add(int(i))

    seen_u = np.concatenate([np.asarray(extra["train_users"]), np.asarray(extra.get("validation_users", []))])
    seen_i = np.concatenate([np.asarray(extra["train_items"]), np.asarray(extra.get("validation_items", []))])
    rows, cols = uindex.get_indexer(seen_u), index.get_indexer(seen_i)
    keep = (rows >= 0) & (cols >= 0)
    exclude = np.zeros((users.size, n_items), dtype=bool)
    exclude[rows[keep], cols[keep]] = True

    scores = np.asarray(extra["score_items"](users), dtype=float)
    rng = np.random.default_rng(seed)
    lists = {
        "model": top_k(scores, exclude, k),
        "most_popular": top_k(np.broadcast_to(popularity, exclude.shape), exclude, k),
        "random": top_k(rng.random(exclude.shape), exclude, k),
    }
    return RankingContext(
        k=k,
        threshold=threshold,
        catalog=catalog,
        users=users,
        relevant=relevant,
        popularity=popularity,
        lists=lists,
        n_excluded=int(exclude.sum()),
    )


def _protocol_note(ctx: RankingContext) -> str:
    return (
        f"top-{ctx.k} lists for {ctx.users.size} users with >= 1 held-out rating >= {ctx.threshold:g}; "
        f"all {ctx.catalog.size} catalog items scored, the {ctx.n_excluded} (user, item) pairs rated in "
        f"training/validation excluded; relevant = held-out items rated >= {ctx.threshold:g}; "
        "ties broken by item id"
    )


def _cfg(defaults: dict[str, Any], thresholds: dict | None) -> tuple[dict[str, Any], list[str]]:
    given = dict(thresholds or {})
    unknown = sorted(set(given) - set(defaults))
    return {**defaults, **{k: v for k, v in given.items() if k in defaults}}, unknown


def _not_measured(name: str, notes: list[str], metrics: dict | None = None) -> AuditResult:
    return AuditResult(name=name, status=Status.NOT_MEASURED, metrics=metrics or {}, notes=notes)


# --------------------------------------------------------------------------- audits


def recommendation_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """RMSE/MAE (with CIs) and top-k ranking metrics vs a most-popular and a random recommender,
    gated by the optional ``max_rmse``, ``max_mae``, ``min_ndcg_at_k``."""
    cfg, unknown = _cfg(RECOMMENDATION_DEFAULTS, thresholds)
    k, level = int(cfg["k"]), float(cfg["ci_level"])
    err = inputs.y_score - inputs.y_true
    rmse, rlo, rhi, _ = rmse_ci(err, level)
    mae, mlo, mhi, _ = mean_ci(np.abs(err), level)
    metrics: dict[str, float] = {
        "eval/rmse": rmse,
        "eval/rmse_ci_low": rlo,
        "eval/rmse_ci_high": rhi,
        "eval/mae": mae,
        "eval/mae_ci_low": mlo,
        "eval/mae_ci_high": mhi,
        "eval/n_test_ratings": float(err.size),
    }
    notes = [
        f"RMSE/MAE over {err.size} held-out ratings; {int(level * 100)}% CIs: normal approximation "
        "(RMSE: the CI of the mean squared error, square-rooted)"
    ]
    if unknown:
        notes.append(f"ignored unknown recommendation threshold keys: {unknown}")
    details: dict[str, Any] = {"k": k, "relevant_min_rating": cfg["relevant_min_rating"], "covers": ["performance"]}
    ctx = ranking_context(inputs, k, float(cfg["relevant_min_rating"]), int(cfg["seed"]))
    if ctx is None:
        missing = [key for key in NEEDED_EXTRA if key not in (inputs.extra or {})]
        notes.append(NO_EXTRA.format(missing=", ".join(missing)))
    else:
        notes.append(_protocol_note(ctx))
        notes.append(
            "baselines: most_popular = the k unrated items with the most training ratings; "
            f"random = k unrated items drawn uniformly (seed {cfg['seed']})"
        )
        for who, lists in ctx.lists.items():
            prefix = "eval/" if who == "model" else f"eval/{who}/"
            per_user = ranking_metrics(lists, ctx.relevant, k)
            for name, values in per_user.items():
                metrics[f"{prefix}{name}_at_{k}"] = float(np.nanmean(values)) if values.size else float("nan")
            metrics[f"{prefix}catalog_coverage_at_{k}"] = _coverage(lists, ctx.catalog.size)
        metrics["eval/n_ranked_users"] = float(ctx.users.size)
    gates = []
    used: dict[str, float] = {}
    for key, metric, comparison in (
        ("max_rmse", "eval/rmse", "<="),
        ("max_mae", "eval/mae", "<="),
        ("min_ndcg_at_k", f"eval/ndcg_at_{k}", ">="),
    ):
        if cfg[key] is not None:
            used[key] = float(cfg[key])
            gates.append(compare_gate(metric, metrics.get(metric), used[key], comparison))
    if not gates:
        notes.append("no recommendation thresholds configured: nothing gated")
    return AuditResult(
        name="recommendation",
        status=overall_status(gates),
        metrics=metrics,
        thresholds=used,
        gates=gates,
        notes=notes,
        details=details,
    )


def _coverage(lists: np.ndarray, n_items: int) -> float:
    """Catalog coverage = distinct items in any top-k list / catalog size."""
    shown = np.unique(lists[lists >= 0])
    return float(shown.size / n_items) if n_items else float("nan")


def user_group_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Per user group (each column of ``inputs.sensitive``): RMSE, MAE, NDCG@k, hit rate@k with
    CIs, and the max − min gap across groups with >= ``min_group_size`` ranked users."""
    cfg, unknown = _cfg(USER_GROUP_DEFAULTS, thresholds)
    k, level, min_n = int(cfg["k"]), float(cfg["ci_level"]), int(cfg["min_group_size"])
    z = NormalDist().inv_cdf(0.5 + level / 2)
    notes = [
        f"{int(level * 100)}% CIs: normal approximation for RMSE (delta method), MAE and NDCG "
        "(mean over users); Wilson for hit rate. Gap = max − min over groups with at least "
        f"{min_n} ranked users; its CI = gap ± z·sqrt(se_max² + se_min²) (the two groups taken as "
        "independent; it ignores that they were picked as the extremes, so it is optimistic)"
    ]
    if unknown:
        notes.append(f"ignored unknown user_groups threshold keys: {unknown}")
    if inputs.synthetic_groups:
        notes.append(
            f"SYNTHETIC groups: {', '.join(inputs.synthetic_groups)} were made up by the data generator; "
            "these gaps describe the generator, not real people"
        )
    extra = inputs.extra or {}
    if inputs.sensitive.shape[1] == 0 or "test_users" not in extra:
        notes.append("no user groups (or no test user ids) given: nothing measured")
        return _not_measured("user_groups", notes)
    ctx = ranking_context(inputs, k, float(cfg["relevant_min_rating"]))
    per_user = ranking_metrics(ctx.lists["model"], ctx.relevant, k) if ctx is not None else None
    if ctx is None:
        notes.append(NO_EXTRA.format(missing=", ".join(key for key in NEEDED_EXTRA if key not in extra)))
    test_users = np.asarray(extra["test_users"])
    err = inputs.y_score - inputs.y_true
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    gates = []
    used: dict[str, float] = {}
    for attr in inputs.sensitive.columns:
        col = inputs.sensitive[attr].astype(object).where(inputs.sensitive[attr].notna(), "(missing)").astype(str)
        user_group = pd.Series(col.to_numpy(), index=test_users).groupby(level=0).first()
        attr_rows = []
        for group in sorted(col.unique()):
            mask = (col == group).to_numpy()
            rmse, rlo, rhi, rse = rmse_ci(err[mask], level)
            mae, mlo, mhi, mse_ = mean_ci(np.abs(err[mask]), level)
            row: dict[str, Any] = {
                "attribute": str(attr),
                "group": group,
                "n_ratings": int(mask.sum()),
                "rmse": rmse,
                "rmse_ci_low": rlo,
                "rmse_ci_high": rhi,
                "mae": mae,
                "mae_ci_low": mlo,
                "mae_ci_high": mhi,
                "_se": {"rmse": rse, "mae": mse_},
            }
            if per_user is not None:
                assert ctx is not None  # (per_user is computed from it)
                in_group = user_group.reindex(ctx.users).to_numpy() == group
                nd, nlo, nhi, nse = mean_ci(per_user["ndcg"][in_group], level)
                hits = per_user["hit_rate"][in_group]
                hlo, hhi_ = (
                    wilson_interval(float(hits.sum()), float(hits.size), level) if hits.size else (np.nan, np.nan)
                )
                row.update(
                    {
                        "n_users": int(in_group.sum()),
                        f"ndcg_at_{k}": nd,
                        f"ndcg_at_{k}_ci_low": nlo,
                        f"ndcg_at_{k}_ci_high": nhi,
                        f"hit_rate_at_{k}": float(hits.mean()) if hits.size else np.nan,
                        f"hit_rate_at_{k}_ci_low": hlo,
                        f"hit_rate_at_{k}_ci_high": hhi_,
                    }
                )
                row["_se"]["ndcg"] = nse
                row["too_small"] = bool(row["n_users"] < min_n)
            else:
                row["too_small"] = bool(len(np.unique(test_users[mask])) < min_n)
            attr_rows.append(row)
        judged = [r for r in attr_rows if not r["too_small"]]
        small = [r["group"] for r in attr_rows if r["too_small"]]
        if small:
            notes.append(
                f"{attr}: groups with fewer than {min_n} ranked users left out of the gaps "
                f"(still listed): {', '.join(small)}"
            )
        for metric, key, se_key in (
            ("rmse", "rmse", "rmse"),
            ("mae", "mae", "mae"),
            (f"ndcg_at_{k}", f"ndcg_at_{k}", "ndcg"),
        ):
            vals = [(r[key], r["_se"].get(se_key, np.nan)) for r in judged if key in r and not math.isnan(r[key])]
            name = f"fairness/{attr}/{metric}_gap"
            if len(vals) < 2:
                metrics[name] = float("nan")
                continue
            hi_v, hi_se = max(vals)
            lo_v, lo_se = min(vals)
            gap = hi_v - lo_v
            half = z * math.sqrt(hi_se**2 + lo_se**2)
            metrics[name] = gap
            metrics[name + "_ci_low"] = gap - half
            metrics[name + "_ci_high"] = gap + half
        for key, metric in (
            ("max_rmse_gap", f"fairness/{attr}/rmse_gap"),
            ("max_ndcg_gap", f"fairness/{attr}/ndcg_at_{k}_gap"),
        ):
            if cfg[key] is not None:
                used[key] = float(cfg[key])
                gates.append(compare_gate(metric, metrics.get(metric), used[key], "<="))
        for r in attr_rows:
            r.pop("_se")
        rows += attr_rows
    details = {
        "conventions": {
            "gap": "max − min across groups with enough users",
            "group of a user": "the user's attribute on their test rows",
        },
        "min_group_size_users": min_n,
        "covers": ["fairness"],
    }
    return AuditResult(
        name="user_groups",
        status=overall_status(gates),
        metrics=metrics,
        by_group=rows,
        thresholds=used,
        gates=gates,
        notes=notes,
        details=details,
    )


def exposure_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Item-exposure concentration of the model's top-k lists (Gini, HHI, top-10% popular
    share, average popularity, coverage) vs most-popular and random lists; Lorenz curves in
    ``details``. Gated by the optional ``max_gini`` and ``max_top10pct_popular_share``."""
    cfg, unknown = _cfg(EXPOSURE_DEFAULTS, thresholds)
    k = int(cfg["k"])
    notes = [GINI_CONVENTION, HHI_CONVENTION, POPULAR_CONVENTION]
    if unknown:
        notes.append(f"ignored unknown exposure threshold keys: {unknown}")
    ctx = ranking_context(inputs, k, float(cfg["relevant_min_rating"]), int(cfg["seed"]))
    if ctx is None:
        missing = [key for key in NEEDED_EXTRA if key not in (inputs.extra or {})]
        return _not_measured("exposure", notes + [NO_EXTRA.format(missing=", ".join(missing))])
    notes.append(_protocol_note(ctx))
    n_items = ctx.catalog.size
    n_top = max(1, math.ceil(n_items / 10))
    top_popular = np.argsort(-ctx.popularity, kind="stable")[:n_top]
    is_top = np.zeros(n_items, dtype=bool)
    is_top[top_popular] = True
    metrics: dict[str, float] = {
        "exposure/training_gini": gini(ctx.popularity),
        "exposure/training_top10pct_popular_share": float(ctx.popularity[is_top].sum() / ctx.popularity.sum())
        if ctx.popularity.sum()
        else float("nan"),
    }
    lorenz: dict[str, Any] = {"training ratings": lorenz_curve(ctx.popularity)}
    for who, lists in ctx.lists.items():
        prefix = "exposure/" if who == "model" else f"exposure/{who}/"
        shown = lists[lists >= 0]
        counts = np.bincount(shown, minlength=n_items).astype(float)
        metrics[f"{prefix}gini_at_{k}"] = gini(counts)
        metrics[f"{prefix}hhi_at_{k}"] = hhi(counts)
        metrics[f"{prefix}top10pct_popular_share_at_{k}"] = float(is_top[shown].mean()) if shown.size else float("nan")
        metrics[f"{prefix}avg_popularity_at_{k}"] = float(ctx.popularity[shown].mean()) if shown.size else float("nan")
        metrics[f"{prefix}catalog_coverage_at_{k}"] = _coverage(lists, n_items)
        lorenz[who] = lorenz_curve(counts)
    gates = []
    used: dict[str, float] = {}
    for key, metric in (
        ("max_gini", f"exposure/gini_at_{k}"),
        ("max_top10pct_popular_share", f"exposure/top10pct_popular_share_at_{k}"),
    ):
        if cfg[key] is not None:
            used[key] = float(cfg[key])
            gates.append(compare_gate(metric, metrics.get(metric), used[key], "<="))
    if not gates:
        notes.append("no exposure thresholds configured: nothing gated")
    details = {
        "k": k,
        "n_catalog_items": int(n_items),
        "n_top10pct_items": int(n_top),
        "lorenz": lorenz,
        "line_plots": [
            {
                "title": f"Lorenz curve of item exposure (top-{k} lists)",
                "x_label": "cumulative share of items (least exposed first)",
                "y_label": "cumulative share of exposure",
                "diagonal": True,
                "series": [{"label": name, **curve} for name, curve in lorenz.items()],
            }
        ],
    }
    return AuditResult(
        name="exposure",
        status=overall_status(gates),
        metrics=metrics,
        thresholds=used,
        gates=gates,
        notes=notes,
        details=details,
    )
