"""``mlffkit evaluate``: errors of a saved model on a dataset, in meV and kcal/mol.

Examples
--------
::

    mlffkit evaluate sgdml.npz ethanol --split sgdml.split.json      # its test frames
    mlffkit evaluate sgdml.npz md17_ethanol --index ::10 --parity parity.png

Frames the model was trained on are refused (their error says nothing about the model).
"""

from __future__ import annotations

import argparse

from mlffkit.cli.data import _add_load_options, _load

PARTS = ("test", "valid", "train")


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="energy and force errors of a saved model on a dataset",
        description=(
            "Predict the frames of a dataset with a saved model and print the energy and force "
            "MAE and RMSE in meV and kcal/mol. Frames the model was trained on are refused."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "model", metavar="MODEL", help="model file written by mlffkit train / model.save"
    )
    p.add_argument("source", metavar="DATA", help="dataset name (mlffkit data list) or file")
    p.add_argument("--split", default=None, help="split file: evaluate only one of its parts")
    p.add_argument("--part", choices=PARTS, default="test", help="which part of --split")
    p.add_argument(
        "--allow-training-frames",
        action="store_true",
        help="measure the training error on purpose (frames the model was trained on)",
    )
    p.add_argument("--parity", default=None, help="also save a parity plot (.png, .pdf, ...)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: as saved)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --parity file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_load_options(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from mlffkit.data import Split
    from mlffkit.evaluation import evaluate, plot_parity
    from mlffkit.fileio import check_writable
    from mlffkit.models import load_model

    if args.parity is not None:
        check_writable(args.parity, args.overwrite)
    model = load_model(args.model, **({"device": args.device} if args.device else {}))
    ds = _load(args)
    if args.split is not None:
        train, valid, test = Split.load(args.split).apply(ds)
        ds = {"train": train, "valid": valid, "test": test}[args.part]
        if ds is None:
            raise ValueError(f"the split {args.split} has no {args.part} frames")
    report = evaluate(
        model,
        ds,
        allow_training_frames=args.allow_training_frames,
        progress=not args.no_progress,
    )
    print(report)
    if args.parity is not None:
        import matplotlib.pyplot as plt

        from mlffkit.plotting import save_figure

        fig = plot_parity(report)
        save_figure(fig, args.parity, overwrite=args.overwrite)
        plt.close(fig)
        print(f"wrote {args.parity}")
    return 0
