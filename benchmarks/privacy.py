"""What the stronger privacy audits cost, next to one training run (tabular family, UCI Adult).

    python benchmarks/privacy.py [--preset tabular|tabular-dp] [--sample N] [--repeats N]
                                 [--canaries M] [--audit-members N] [--k 2 4]

Per repeat (a different seed each time), in this one process, through the tasks' undecorated
functions (``task.fn``, the code the pipeline's tasks run):

- one training run of the preset's model (``train_model``), then its loss-threshold MIA;
- the one-run canary audit (``canary_training``: one training run with M canaries + the bound);
- max(K) LiRA reference models trained one after another (``train_reference``); the K-model
  attack's time is the sum of its first K reference trainings plus the LiRA audit.

Prints medians (min–max) over repeats of wall time, AUC and the empirical ε lower bounds.
Asserts nothing. The reference models run sequentially here; in the pipeline they are
submitted to the flow's task runner (threads, or Dask processes) and can overlap.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tabular")
    ap.add_argument("--sample", type=int, default=None, help="seeded sample of Adult rows (default: all 48,842)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--canaries", type=int, default=500)
    ap.add_argument("--audit-members", type=int, default=500)
    ap.add_argument("--k", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    from impactflow.audits import AuditInputs
    from impactflow.audits.lira import canary_audit, lira_audit
    from impactflow.audits.privacy import loss_threshold_mia
    from impactflow.flows.config import load_config
    from impactflow.tasks.data import load_data, split_data
    from impactflow.tasks.privacy import canary_training, lira_target_inputs, train_reference
    from impactflow.tasks.spec import RunSpec
    from impactflow.tasks.train import train_model

    rows: dict[str, list[float]] = {}

    def add(key: str, value) -> None:
        if value is not None:
            rows.setdefault(key, []).append(float(value))

    for rep in range(args.repeats):
        over = ["train.device=cpu"] + ([f"data.sample={args.sample}"] if args.sample else [])
        cfg = load_config(args.preset, over + [f"seed={rep}"]).model_dump(mode="json")
        spec = RunSpec(cfg["data"]["contract"], cfg["model"]["family"], cfg["data"]["exclude_sensitive_from_features"])
        df, _ = load_data.fn(spec, None, cfg["data"]["sample"], cfg["seed"])
        split = split_data.fn(df, spec, cfg["split"]["validation"], cfg["split"]["test"], cfg["seed"])
        common = (split, spec, cfg["model"]["params"], {**cfg["train"], "threads": args.threads}, cfg["privacy"])
        t0 = time.perf_counter()
        fitted = train_model.fn(*common, cfg["seed"])
        add("one training run (s)", time.perf_counter() - t0)
        add("loss-threshold MIA AUC", loss_threshold_mia(fitted.member_loss, fitted.nonmember_loss)["auc"])
        eps = (fitted.training["dp"] or {}).get("epsilon")
        add("accountant epsilon", eps)
        inputs = dict(
            y_true=fitted.y_test,
            y_score=fitted.test_output,
            sensitive=None,
            epsilon=eps,
            delta=cfg["privacy"]["delta"] if eps is not None else None,
        )

        t0 = time.perf_counter()
        canary = canary_training.fn(*common, args.canaries, 0.2, cfg["seed"])
        res = canary_audit(AuditInputs(**inputs, extra={"canary": canary}), {})
        add(f"one-run canary audit, m={args.canaries} (s)", time.perf_counter() - t0)
        add("canary epsilon_LB", res.metrics["privacy/canary_epsilon_lower_bound"])

        refs, ref_times = [], []
        for k in range(max(args.k)):
            t0 = time.perf_counter()
            refs.append(train_reference.fn(*common, k, args.audit_members, cfg["seed"]))
            ref_times.append(time.perf_counter() - t0)
        for K in args.k:
            t0 = time.perf_counter()
            data = lira_target_inputs.fn(fitted, split, spec, refs[:K], args.audit_members, cfg["seed"])
            res = lira_audit(AuditInputs(**inputs, extra={"lira": data}), {})
            add(f"LiRA, K={K} reference models (s)", sum(ref_times[:K]) + time.perf_counter() - t0)
            add(f"LiRA K={K} AUC", res.metrics["privacy/lira_auc"])
            add(f"LiRA K={K} TPR@1%FPR", res.metrics["privacy/lira_tpr_at_1pct_fpr"])
            add(f"LiRA K={K} epsilon_LB", res.metrics["privacy/lira_epsilon_lower_bound"])
        print(f"repeat {rep + 1}/{args.repeats} done", flush=True)

    n_rows = args.sample or "all 48,842"
    print(
        f"\npreset {args.preset}, Adult rows: {n_rows}, repeats: {args.repeats}, "
        f"audited members: {args.audit_members}, canaries: {args.canaries}\n"
    )
    print(f"| {'measure':<40} | {'median':>9} | {'min':>9} | {'max':>9} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    for key, vals in rows.items():
        print(f"| {key:<40} | {statistics.median(vals):>9.4g} | {min(vals):>9.4g} | {max(vals):>9.4g} |")


if __name__ == "__main__":
    main()
