"""``mlffkit quickstart``: the bundled ethanol data, reference MD, an sGDML model and a report."""

from __future__ import annotations


def run(args) -> int:
    from mlffkit.quickstart import run_quickstart

    run_quickstart(
        args.output,
        method=args.method,
        md_steps=args.steps,
        n_train=args.n_train,
        seed=args.seed,
        progress=not args.no_progress,
    )
    return 0


def register(sub) -> None:
    parser = sub.add_parser(
        "quickstart",
        help="inspect the bundled ethanol data, run reference MD, train sGDML and write a report",
        description="Prints the statistics of the bundled GFN2-xTB ethanol dataset, runs a short "
        "NVT + NVE MD with GFN2-xTB, trains an sGDML model (sigma chosen on validation frames) "
        "and tests it on held-out frames, runs NVT MD with the model and writes a report "
        "(figures, trajectories, error table, model, summary.json) into a new folder.",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="report folder (must be new; default: ./mlffkit-quickstart[-N])",
    )
    parser.add_argument(
        "--method", default="gfn2", help="reference method for the MD (default gfn2)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="MD steps per run (default 2000; 200 with MLFFKIT_QUICK=1)",
    )
    parser.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="training frames of the sGDML model (default 200; 50 with MLFFKIT_QUICK=1)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
