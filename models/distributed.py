"""Data-parallel training across processes/GPUs with torch.distributed (DDP).

One process per device; every rank builds the same preprocessor from the same seeded split,
wraps the family's model in ``DistributedDataParallel`` (gradients are all-reduced, so the
replicas stay identical) and reads its own shard of the training rows through a
``DistributedSampler``. NCCL on CUDA, gloo on CPU. Run it with torchrun:

    torchrun --nproc-per-node=2 -m impactflow.models.distributed --contract adult --family tabular --epochs 5

Rank 0 prints the validation accuracy; with ``--out DIR`` every rank also writes a digest of
its final parameters (tests use it to check that the replicas agree). DP-SGD is not combined
with DDP here (Opacus has its own ``DifferentiallyPrivateDistributedDataParallel``): the
pipeline's DP training stays single-process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
from impactflow.task_kind import TaskKind


def _param_digest(module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_ddp(args: argparse.Namespace) -> dict:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.models import get_family
    from impactflow.models.base import roles_for, seed_everything, targets
    from impactflow.models.data import split_frame

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = torch.cuda.is_available() and not args.cpu
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    device = f"cuda:{torch.cuda.current_device()}" if cuda else "cpu"
    torch.set_num_threads(1)
    try:
        contract = get_contract(args.contract)
        family = get_family(args.family)
        df = load_dataset(contract)
        if args.sample:
            df = df.sample(n=args.sample, random_state=args.seed).reset_index(drop=True)
        split = split_frame(
            df,
            target=contract.target,
            stratify_on=list(contract.sensitive),
            validation=0.15,
            test=0.15,
            seed=args.seed,
            predefined=contract.split_column,
        )
        roles = roles_for(contract, family.task, exclude_sensitive=False)
        config = family.make_config({"epochs": args.epochs})
        pre = family.make_preprocessor(roles, config)
        X = torch.as_tensor(pre.fit_transform(split.train[list(roles.features)]))
        y = torch.as_tensor(targets(split.train, roles))
        seed_everything(args.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
        model = DistributedDataParallel(
            family.build_model(pre.spec(), config).to(device),
            device_ids=[torch.cuda.current_device()] if cuda else None,
        )
        sampler: DistributedSampler = DistributedSampler(
            TensorDataset(X, y), num_replicas=world, rank=rank, shuffle=True, seed=args.seed
        )
        loader = DataLoader(TensorDataset(X, y), batch_size=config.batch_size, sampler=sampler)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=getattr(config, "weight_decay", 0.0))
        crit = family.make_criterion("mean")
        history = []
        for epoch in range(config.epochs):
            sampler.set_epoch(epoch)
            model.train()
            total, seen = 0.0, 0
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                opt.zero_grad(set_to_none=True)
                loss = crit(model(xb), yb)
                loss.backward()
                opt.step()
                total, seen = total + float(loss.detach()) * len(xb), seen + len(xb)
            history.append(total / max(seen, 1))
        module = model.module.to("cpu").eval()
        Xv = torch.as_tensor(pre.transform(split.validation[list(roles.features)]))
        with torch.no_grad():
            raw = module(Xv).numpy()
        yv = targets(split.validation, roles)
        pred = (raw > 0).astype(np.float32) if family.task == TaskKind.BINARY else raw.argmax(axis=1)
        result = {
            "rank": rank,
            "world_size": world,
            "backend": dist.get_backend(),
            "train_loss": history,
            "val_accuracy": float((pred == yv).mean()) if family.task.classifies else None,
            "n_train_shard": len(sampler),
            "param_digest": _param_digest(module),
        }
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"rank{rank}.json").write_text(json.dumps(result))
        if rank == 0:
            print(json.dumps({k: v for k, v in result.items() if k != "param_digest"}))
        return result
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contract", default="adult")
    ap.add_argument("--family", default="tabular")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--sample", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu", action="store_true", help="gloo on CPU even when CUDA is present")
    ap.add_argument("--out", default=None, help="folder for each rank's result JSON")
    train_ddp(ap.parse_args(argv))


if __name__ == "__main__":
    main()
