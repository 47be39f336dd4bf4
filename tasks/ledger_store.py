"""Privacy-budget ledger storage (no Prefect: light to import): a persistent per-dataset record of the privacy every run spent.

One row per model trained on a dataset (keyed by the dataset's SHA-256): its epsilon and delta
(NULL epsilon = a non-private model, epsilon = infinity), the accountant, the run, and a status
(``reserved`` -> ``spent``). Stored through SQLAlchemy: a SQLite file by default, PostgreSQL
in the server topology (``IMPACTFLOW_LEDGER_URL=postgresql+psycopg2://...``).

Composition: basic (sequential) composition, Dwork & Roth 2014, "The Algorithmic Foundations of
Differential Privacy", Theorem 3.16: k mechanisms that are (eps_i, delta_i)-DP on the same data are
(sum eps_i, sum delta_i)-DP together. Tighter accounting across runs (e.g. composing the runs'
RDP/PRV curves, or advanced composition) is possible but not claimed here.

Concurrency: a run *reserves* its planned epsilon before training, in one transaction that
(1) takes a per-dataset lock -- SQLite: ``BEGIN IMMEDIATE`` (one writer for the whole file);
PostgreSQL: ``pg_advisory_xact_lock(<dataset key>)`` -- (2) sums what the dataset has spent and
reserved, (3) refuses when the budget would be exceeded, (4) inserts the reservation. Two
processes (or machines, on PostgreSQL) can therefore never both pass the check on the same
total: no lost update. After training the reservation is finalised with the accountant's epsilon.

A run that fails (or is killed) after its reservation keeps it, counted at the planned epsilon:
training may have started and per-epoch metrics were already logged, so the noise was consumed
(conservative). Nothing is reserved before the data passed its contract.

Stale reservations (issue 28): each entry records its owner process (``owner``:
``<host>/<pid>/<process start>``, as MLflow's parent run tags). A ``reserved`` entry whose owner
is gone is *stale*: ``impactflow budget`` shows it as ``reserved (stale: owner gone)``, and
``impactflow reconcile`` lists it. It keeps counting unless its run provably released nothing
(``impactflow.tasks.reconcile.stale_reservations``: MLflow parent run ended without any child run); then it
becomes ``released`` and no longer counts. A privacy loss cannot be undone once a model trained
on the data may have been released, hence the default of counting. Entries written before the
``owner`` column existed have no owner and are never called stale.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from impactflow.errors import ConfigError

LEDGER_ENV = "IMPACTFLOW_LEDGER_URL"
LEDGER_FILE = "privacy_ledger.db"
COMPOSITION = "basic composition (Dwork & Roth 2014, Thm 3.16): total epsilon = sum, total delta = sum"
TOLERANCE = 1e-9  # relative slack in the budget comparison (float sums)
_SCHEMA_LOCK = 0x1F0AD6E7  # PostgreSQL advisory lock key for creating the table

OVER_BUDGET = (
    "privacy budget exceeded for dataset {sha} ({contract}): spent epsilon={spent} in {n} earlier "
    "model(s), this run needs epsilon={requested}, budget epsilon={budget}; the run was refused before "
    "training (raise privacy.budget_epsilon only if the data owner agrees; see `impactflow budget`)"
)
OVER_DELTA = (
    "privacy budget exceeded for dataset {sha} ({contract}): spent delta={spent} in {n} earlier model(s), "
    "this run needs delta={requested}, budget delta={budget}; the run was refused before training"
)
NON_PRIVATE_SPENT = (
    "privacy budget exceeded for dataset {sha} ({contract}): the ledger already records {n} non-private "
    "model(s) trained on it (epsilon = infinity), so no finite budget epsilon={budget} can hold; "
    "the run was refused before training (use a separate ledger, {env}, if those models were never released)"
)
NON_PRIVATE_RUN = (
    "privacy.budget_epsilon={budget} is set but this run trains non-private models on dataset {sha}: {models} "
    "(epsilon = infinity); set privacy.enabled=true and model.baselines=[] for a budgeted run"
)
NEEDS_TARGET = (
    "privacy.budget_epsilon needs privacy.target_epsilon: with privacy.noise_multiplier the epsilon a run "
    "spends is only known after training, so it cannot be checked against the budget before"
)
BAD_URL = "{env}: cannot open the privacy ledger ({reason})"
RESERVED, SPENT, RELEASED = "reserved", "spent", "released"
STALE = "reserved (stale: owner gone)"


class BudgetExceeded(ConfigError):
    """A run would exceed its dataset's privacy budget (refused before training)."""


# --------------------------------------------------------------------------- pure arithmetic


def compose(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Basic composition over ledger entries (dicts with ``private``, ``epsilon``, ``delta``).

    Returns the summed epsilon/delta of the private entries (``math.fsum``: correctly rounded), the
    number of private and non-private entries, and the total epsilon (infinity as soon as one
    non-private model is recorded)."""
    entries = [e for e in entries if e.get("status") != RELEASED]  # released: provably nothing spent
    private = [e for e in entries if e["private"]]
    # a private model whose epsilon is not known yet (a noise_multiplier run still training, or
    # one that died) counts as infinity until finalised: unknown is not zero
    eps = math.fsum(math.inf if e["epsilon"] is None else float(e["epsilon"]) for e in private)
    delta = math.fsum(float(e["delta"] or 0.0) for e in private)
    n_non_private = len(entries) - len(private)
    return {
        "n_private": len(private),
        "n_non_private": n_non_private,
        "epsilon_private": eps,
        "epsilon": math.inf if n_non_private else eps,
        "delta": delta,
        "composition": COMPOSITION,
    }


def within(total: float, budget: float | None) -> bool:
    return budget is None or total <= budget * (1 + TOLERANCE)


# --------------------------------------------------------------------------- storage


def ledger_url(output_dir: str | Path, url: str | None = None) -> str:
    """``url`` (CLI), else ``$IMPACTFLOW_LEDGER_URL``, else a SQLite file beside the tracking store
    (``<tracking.output_dir>/privacy_ledger.db``, where ``mlflow.db`` lives)."""
    url = url or os.environ.get(LEDGER_ENV)
    if url:
        return url
    path = Path(output_dir).resolve() / LEDGER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _private_sqlite(url: str) -> None:
    """A SQLite ledger file is created 0600, and an existing one readable by others gets one
    ``warning:`` line (``impactflow.audits.file_modes``): it lists every dataset's spending and runs."""
    from sqlalchemy.engine import make_url

    from impactflow.audits.file_modes import create_private, warn_if_shared

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir():
        create_private(path)
    warn_if_shared(path, "privacy ledger")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _lock_key(sha: str) -> int:
    return int(sha[:15], 16)  # 60 bits: fits PostgreSQL's signed bigint


class Ledger:
    """The ledger at ``url``; the table is created on first use (safe when processes race)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa
        from sqlalchemy import event

        self.url = url
        if url.startswith("sqlite"):
            _private_sqlite(url)
        try:
            if url.startswith("sqlite"):
                self.engine = sa.create_engine(url, connect_args={"timeout": 60})

                @event.listens_for(self.engine, "connect")
                def _no_pysqlite_transactions(dbapi_conn, _record):  # SQLAlchemy's documented recipe
                    dbapi_conn.isolation_level = None

                @event.listens_for(self.engine, "begin")
                def _begin_immediate(conn):  # take the write lock at BEGIN, not at the first write
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                self.engine = sa.create_engine(url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ConfigError(BAD_URL.format(env=LEDGER_ENV, reason=exc)) from None
        meta = sa.MetaData()
        self.table = sa.Table(
            "impactflow_privacy_ledger",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("dataset_sha256", sa.String(64), nullable=False, index=True),
            sa.Column("contract", sa.String(200)),
            sa.Column("run_id", sa.String(64)),
            sa.Column("model", sa.String(200)),
            sa.Column("private", sa.Boolean, nullable=False),
            sa.Column("epsilon", sa.Float),  # NULL for a non-private model (epsilon = infinity)
            sa.Column("delta", sa.Float),
            sa.Column("planned_epsilon", sa.Float),
            sa.Column("accountant", sa.String(20)),
            sa.Column("status", sa.String(20), nullable=False),  # reserved | spent | released
            sa.Column("budget_epsilon", sa.Float),
            sa.Column("budget_delta", sa.Float),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("finalized_at", sa.String(40)),
            sa.Column("owner", sa.String(300)),  # <host>/<pid>/<process start> of the reserving run
            sa.Column("note", sa.String(500)),  # why an entry was released
        )
        self._meta = meta
        self._ensure_schema()

    def _lock(self, conn, key: int) -> None:
        if self.engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(key)})")
        # SQLite: BEGIN IMMEDIATE already holds the database's write lock

    def _ensure_schema(self) -> None:
        import sqlalchemy as sa

        try:
            with self.engine.begin() as conn:
                self._lock(conn, _SCHEMA_LOCK)
                self._meta.create_all(conn, checkfirst=True)
                # ledgers created before the owner/note columns: add them (NULL for old entries)
                have = {c["name"] for c in sa.inspect(conn).get_columns(self.table.name)}
                for col in ("owner", "note"):
                    if col not in have:
                        width = self.table.c[col].type.length
                        conn.exec_driver_sql(f"ALTER TABLE {self.table.name} ADD COLUMN {col} VARCHAR({width})")
        except sa.exc.OperationalError as exc:
            raise ConfigError(BAD_URL.format(env=LEDGER_ENV, reason=str(exc.orig).strip().splitlines()[0])) from None

    def _rows(self, conn, sha: str | None = None, prefix: str | None = None) -> list[dict[str, Any]]:
        t = self.table
        q = t.select().order_by(t.c.id)
        if sha is not None:
            q = q.where(t.c.dataset_sha256 == sha)
        if prefix:
            q = q.where(t.c.dataset_sha256.like(f"{prefix.lower()}%"))
        rows = [dict(r._mapping) for r in conn.execute(q)]
        for r in rows:  # a reservation counts at its planned epsilon until finalised
            if r["private"] and r["epsilon"] is None:
                r["epsilon"] = r["planned_epsilon"]
        return rows

    def reserve(
        self,
        sha: str,
        contract: str,
        run_id: str,
        models: list[dict[str, Any]],
        budget_epsilon: float | None = None,
        budget_delta: float | None = None,
    ) -> list[int]:
        """Atomically check the budget and record ``models`` (dicts: model, private, epsilon
        (planned), delta, accountant). Private models are ``reserved``, non-private ones ``spent``.
        Raises ``BudgetExceeded`` (nothing recorded) when the budget would be exceeded."""
        now = _now()
        owner = owner_string()
        with self.engine.begin() as conn:
            self._lock(conn, _lock_key(sha))
            before = compose(self._rows(conn, sha))
            after = compose(
                [*self._rows(conn, sha), *({"delta": None, **m, "epsilon": m.get("epsilon")} for m in models)]
            )
            short = sha[:12]
            if budget_epsilon is not None:
                if before["n_non_private"]:
                    raise BudgetExceeded(
                        NON_PRIVATE_SPENT.format(
                            sha=short,
                            contract=contract,
                            n=before["n_non_private"],
                            budget=budget_epsilon,
                            env=LEDGER_ENV,
                        )
                    )
                if not within(after["epsilon"], budget_epsilon):
                    raise BudgetExceeded(
                        OVER_BUDGET.format(
                            sha=short,
                            contract=contract,
                            spent=_fmt(before["epsilon"]),
                            n=before["n_private"],
                            requested=_fmt(after["epsilon"] - before["epsilon"]),
                            budget=_fmt(budget_epsilon),
                        )
                    )
            if budget_delta is not None and not within(after["delta"], budget_delta):
                raise BudgetExceeded(
                    OVER_DELTA.format(
                        sha=short,
                        contract=contract,
                        spent=_fmt(before["delta"]),
                        n=before["n_private"],
                        requested=_fmt(after["delta"] - before["delta"]),
                        budget=_fmt(budget_delta),
                    )
                )
            ids = []
            for m in models:
                res = conn.execute(
                    self.table.insert().values(
                        dataset_sha256=sha,
                        contract=contract,
                        run_id=run_id,
                        model=m["model"],
                        private=bool(m["private"]),
                        epsilon=None,
                        delta=m.get("delta") if m["private"] else None,
                        planned_epsilon=m.get("epsilon") if m["private"] else None,
                        accountant=m.get("accountant"),
                        status="reserved" if m["private"] else "spent",
                        budget_epsilon=budget_epsilon,
                        budget_delta=budget_delta,
                        created_at=now,
                        finalized_at=None if m["private"] else now,
                        owner=owner,
                    )
                )
                ids.append(int(res.inserted_primary_key[0]))
        return ids

    def finalize(self, entry_id: int, epsilon: float, delta: float | None = None) -> None:
        """Record the accountant's epsilon of a reserved entry (status -> spent)."""
        t = self.table
        values = {"epsilon": float(epsilon), "status": "spent", "finalized_at": _now()}
        if delta is not None:
            values["delta"] = float(delta)
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == entry_id).values(**values))

    def stale_entries(self) -> list[dict[str, Any]]:
        """``reserved`` entries whose owner process is gone (see the module's docstring)."""
        return [e for e in self.entries() if e["status"] == RESERVED and owner_gone(e.get("owner"))]

    def release(self, entry_id: int, note: str) -> None:
        """Stop counting a stale reservation whose run provably released nothing (status ->
        released; only from ``reserved``)."""
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(
                t.update()
                .where((t.c.id == entry_id) & (t.c.status == RESERVED))
                .values(status=RELEASED, finalized_at=_now(), note=note[:500])
            )

    def entries(self, prefix: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return self._rows(conn, prefix=prefix)

    def summary(self, sha: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            rows = self._rows(conn, sha)
        return summarize(sha, rows)

    def datasets(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """One summary per dataset (ordered by first use), with its entries."""
        rows = self.entries(prefix)
        by: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by.setdefault(r["dataset_sha256"], []).append(r)
        return [{**summarize(sha, rs), "entries": rs} for sha, rs in by.items()]

    def close(self) -> None:
        self.engine.dispose()


def owner_string() -> str:
    """This process as a ledger entry's owner: ``<host>/<pid>/<process start>``."""
    from impactflow.tasks.reconcile import HOST_TAG, PID_START_TAG, PID_TAG, owner_tags

    t = owner_tags()
    return f"{t[HOST_TAG]}/{t[PID_TAG]}/{t[PID_START_TAG]}"


def owner_gone(owner: str | None, stale_after_s: float | None = None) -> bool:
    """Whether an entry's owner process is gone (False when unknown: old entries, other hosts
    within ``stale_after_s``, default ``impactflow.tasks.reconcile.DEFAULT_STALE_AFTER_S``)."""
    from impactflow.tasks.reconcile import DEFAULT_STALE_AFTER_S, HOST_TAG, PID_START_TAG, PID_TAG, owner_alive

    parts = (owner or "").rsplit("/", 2)
    if len(parts) != 3:
        return False
    tags = {HOST_TAG: parts[0], PID_TAG: parts[1], PID_START_TAG: parts[2]}
    # another host: its process cannot be examined; never called stale here (start time unknown)
    return not owner_alive(tags, None, stale_after_s=DEFAULT_STALE_AFTER_S if stale_after_s is None else stale_after_s)


def shown_status(entry: dict[str, Any]) -> str:
    """An entry's status as ``impactflow budget`` shows it (a stale reservation says so)."""
    if entry["status"] == RESERVED and owner_gone(entry.get("owner")):
        return STALE
    return entry["status"]


def summarize(sha: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of one dataset's entries; the budget shown is the latest one a run configured."""
    total = compose(rows)
    budgets = [r["budget_epsilon"] for r in rows if r["budget_epsilon"] is not None]
    budget = budgets[-1] if budgets else None
    remaining = None if budget is None else max(budget - total["epsilon"], 0.0)
    return {
        "dataset_sha256": sha,
        "contract": rows[-1]["contract"] if rows else None,
        "entries": len(rows),
        "runs": len({r["run_id"] for r in rows}),
        "reserved": sum(r["status"] == RESERVED for r in rows),
        "released": sum(r["status"] == RELEASED for r in rows),
        **total,
        "budget_epsilon": budget,
        "remaining_epsilon": remaining,
    }


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.6g}"


# --------------------------------------------------------------------------- run plan, report and CLI views


def planned_models(
    privacy: dict[str, Any], model_name: str, baselines: list[str], canaries: int = 0, reference_models: int = 0
) -> list[dict[str, Any]]:
    """What one pipeline run records: the candidate (private with its planned epsilon, or not),
    every baseline (scikit-learn, never private), and the privacy audit's own models — the
    canary-audit model (``canaries`` > 0) and the LiRA reference models — which are trained on
    the same dataset with the candidate's settings: their outputs reach the report (attack AUCs,
    epsilon lower bounds), so under basic composition they spend budget too. The candidate is
    always the first entry."""
    if privacy["enabled"]:
        if privacy.get("budget_epsilon") is not None and privacy.get("target_epsilon") is None:
            raise ConfigError(NEEDS_TARGET)
        cand = {
            "model": f"{model_name}-dp",
            "private": True,
            "epsilon": privacy.get("target_epsilon"),
            "delta": privacy["delta"],
            "accountant": privacy["accountant"],
        }
    else:
        cand = {"model": model_name, "private": False}
    audit = ([{**cand, "model": f"{cand['model']}-canary-audit"}] if canaries else []) + [
        {**cand, "model": f"{cand['model']}-lira-reference-{k + 1}"} for k in range(reference_models)
    ]
    return [cand, *({"model": f"baseline-{b}", "private": False} for b in baselines), *audit]


def report_view(summary: dict[str, Any]) -> dict[str, Any]:
    """The ``privacy_budget`` block of the report (JSON-safe: infinity as null + a flag)."""
    eps = summary["epsilon"]
    return {
        "dataset_sha256": summary["dataset_sha256"],
        "entries": summary["entries"],
        "runs": summary["runs"],
        "private_models": summary["n_private"],
        "non_private_models": summary["n_non_private"],
        "epsilon_spent": None if math.isinf(eps) else eps,
        "epsilon_spent_private_models": None if math.isinf(summary["epsilon_private"]) else summary["epsilon_private"],
        "epsilon_spent_is_infinite": math.isinf(eps),
        "delta_spent": summary["delta"],
        "budget_epsilon": summary["budget_epsilon"],
        "remaining_epsilon": summary["remaining_epsilon"],
        "composition": summary["composition"],
    }


def _eps_text(value: float | None, private: bool) -> str:
    if not private:
        return "∞ (not private)"
    return "unknown (∞)" if value is None or math.isinf(value) else f"{value:.4g}"


def budget_tables(url: str, prefix: str | None = None) -> list[Any]:
    """Rich tables (one per dataset) of ``impactflow budget``."""
    from rich.table import Table

    ledger = Ledger(url)
    try:
        datasets = ledger.datasets(prefix)
    finally:
        ledger.close()
    tables = []
    for d in datasets:
        total = "∞" if math.isinf(d["epsilon"]) else f"{d['epsilon']:.4g}"
        budget = "none" if d["budget_epsilon"] is None else f"{d['budget_epsilon']:.4g}"
        remaining = "—" if d["remaining_epsilon"] is None else f"{d['remaining_epsilon']:.4g}"
        stale = sum(shown_status(e) == STALE for e in d["entries"])
        caption = (
            f"spent ε={total}, δ={d['delta']:.3g} · budget ε={budget} · remaining ε={remaining} · "
            f"{d['n_private']} private, {d['n_non_private']} non-private model(s) · {COMPOSITION}"
        )
        if stale:
            caption += (
                f" · {stale} stale reservation(s) of killed runs still counted at their planned ε "
                "(`impactflow reconcile` releases those that provably released nothing)"
            )
        if d["released"]:
            caption += f" · {d['released']} released reservation(s) not counted"
        t = Table(title=f"dataset {d['dataset_sha256'][:12]} ({d['contract']}) · {d['runs']} run(s)", caption=caption)
        for col in ("run", "model", "ε", "δ", "accountant", "status", "recorded"):
            t.add_column(col, overflow="fold")
        for e in d["entries"]:
            t.add_row(
                str(e["run_id"])[:12],
                e["model"],
                _eps_text(e["epsilon"], e["private"]),
                "—" if e["delta"] is None else f"{e['delta']:.3g}",
                e["accountant"] or "—",
                shown_status(e),
                e["created_at"],
            )
        tables.append(t)
    return tables
