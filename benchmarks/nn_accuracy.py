"""Accuracy of mlffkit's neural force fields on MD17 ethanol (1000 training frames).

Trains a network with its full-mode recipe on the first ``--n-train`` frames of the
training file (the last ``--n-valid`` of them held out for early stopping and the
learning-rate schedule, so no frame outside the training file is used), then tests it
on the 1000 frames of the test file and prints energy and force errors in kcal/mol
next to the published figure.

Run from the repository root (data: ``../shared/data/rmd17``)::

    python benchmarks/nn_accuracy.py --model schnet --checkpoint schnet_md17.ckpt
    python benchmarks/nn_accuracy.py --model schnet --checkpoint schnet_md17.ckpt --resume

A run stopped by ``--max-time`` or interrupted continues with ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from _harness import add_rmd17_arguments, load_rmd17

#: force MAE (kcal/mol/Å) with 1000 training frames in the papers, and the issue's target
PUBLISHED = {"schnet": (0.39, 0.5), "attention": (0.98, 1.0)}


def build_model(args):
    from mlffkit import models

    common = dict(
        lr=args.lr,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        lr_patience=args.lr_patience,
        max_time_s=None if args.max_time is None else 60.0 * args.max_time,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
    )
    if args.model == "schnet":
        return models.SchNet(n_features=args.features, n_interactions=args.interactions, **common)
    return models.GeometricAttention(**common)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", choices=sorted(PUBLISHED), default="schnet")
    add_rmd17_arguments(p)
    p.add_argument("--n-valid", type=int, default=50, help="of which held out for validation")
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--interactions", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3000)
    p.add_argument("--patience", type=int, default=150)
    p.add_argument("--lr-patience", type=int, default=25)
    p.add_argument("--max-time", type=float, default=None, help="minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--save", type=Path, default=None, help="write the trained model (.npz)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mlffkit import units
    from mlffkit.evaluation import evaluate

    full, test = load_rmd17(args)
    train = full.subset(range(args.n_train - args.n_valid))
    valid = full.subset(range(args.n_train - args.n_valid, args.n_train))
    test = test.subset(range(args.n_test))
    model = build_model(args)
    start = time.perf_counter()
    model.fit(train, valid, checkpoint=args.checkpoint, resume=args.resume,
              progress=not args.no_progress)
    seconds = time.perf_counter() - start
    report = evaluate(model, test)
    print(report)
    kcal = units.KCAL_PER_MOL
    history = model.history_
    published, target = PUBLISHED[args.model]
    result = {
        "model": model.display_name(),
        "labels": args.labels,
        "n_train": len(train),
        "n_valid": len(valid),
        "n_test": len(test),
        "epochs": len(history),
        "stopped_because": history.stopped_because,
        "best_epoch": history.best_epoch,
        "train_seconds_this_run": seconds,
        "train_seconds_total": float(history.column("time_s").sum()),
        "energy_mae_kcal_mol": report.energy_mae / kcal,
        "force_mae_kcal_mol_A": report.force_mae / kcal,
        "published_force_mae": published,
        "target_force_mae": target,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
                   f"device {model.device_}",
    }
    print(f"\n{result['model']}: {result['epochs']} epochs ({history.stopped_because}), "
          f"{result['train_seconds_total'] / 60:.1f} min of training on {result['machine']}")
    print(f"test force MAE {result['force_mae_kcal_mol_A']:.3f} kcal/mol/Å "
          f"(published {published}, target <= {target}); "
          f"energy MAE {result['energy_mae_kcal_mol']:.3f} kcal/mol")
    if args.save:
        model.save(args.save, overwrite=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
