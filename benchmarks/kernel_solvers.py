"""Dense Cholesky against preconditioned conjugate gradients for sGDML training.

Reproduces the comparison of Blücher, Müller and Chmiela (J. Chem. Theory Comput. 19,
4619, 2023) on ethanol (bundled, GFN2-xTB): at the SMALL training-set size (by default
1600 frames, a 43 200 × 43 200 kernel of 14.9 GB, about the largest a 24 GB machine
factorises) the dense solver and CG with each Nyström preconditioner (random columns,
leverage scores, pivoted Cholesky, truncated eigendecomposition) at several ranks, and
plain CG; at the LARGE size (4× SMALL) CG alone, whose dense kernel (238 GB) would not fit.

Every configuration trains in a fresh child process (multiprocessing "spawn"), so that
its peak memory (``VmHWM``) is its own. Reported per configuration: preconditioner build
time, CG steps to the relative residual ``--tol``, CG time, total training time, peak
memory, and energy/force MAE on held-out test frames.

The bundled set has 5000 frames. SMALL + LARGE need more: pass ``--extra FILE`` with
frames of an independent trajectory of the same recipe, e.g. (about an hour on one core)::

    mlffkit data generate --molecule CH3CH2OH --method gfn2 --temperature 500 \\
        --timestep 0.5 --stride 160 --frames 3000 --equilibration 2000 --seed 2025 \\
        --name ethanol -o ethanol_gfn2_extra.npz

Test frames are the last ``--n-test`` frames of the pool (bundled + extra); training
frames are taken from its start. Run from the repository root::

    python benchmarks/kernel_solvers.py --extra ethanol_gfn2_extra.npz --json solvers.json
    python benchmarks/kernel_solvers.py --small 200 --ranks 200,500 --skip-large   # minutes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _harness import THREAD_VARIABLES, ChildDied, ChildFailed, log, peak_rss_mb, run_in_child

SIGMA = 20.0


# ---------------------------------------------------------------------------- children
def train_and_test(job: dict) -> dict:
    """Train one GDML configuration and test it (runs in a child process)."""
    import torch

    from mlffkit.evaluation import evaluate
    from mlffkit.models import GDML

    torch.set_num_threads(job["threads"])
    train, test = job["train"], job["test"]
    model = GDML(sigma=job["sigma"], lam=job["lam"], **job["params"])
    start = time.perf_counter()
    model.fit(train, progress=job["progress"])
    fit_s = time.perf_counter() - start
    errors = evaluate(model, test).to_dict()
    info = dict(model.solver_info_)
    result = getattr(model, "cg_result_", None)
    return {
        "label": job["label"],
        "n_train": len(train),
        "kernel_size": int(model.alphas_.size),
        **info,
        "fit_s": fit_s,
        "peak_rss_mb": peak_rss_mb(),
        "energy_mae_meV": errors["energy_mae_meV"],
        "force_mae_meV_A": errors["force_mae_meV_A"],
        "force_mae_kcal_mol_A": errors["force_mae_kcal_mol_A"],
        "residuals": None if result is None else [float(r) for r in result.residuals],
    }


def in_child(job: dict) -> dict:
    """:func:`train_and_test` in a fresh process; a failure becomes a table row, not an abort."""
    try:
        return run_in_child(train_and_test, job)
    except (ChildDied, ChildFailed) as err:
        return {"label": job["label"], "error": str(err).splitlines()[0]}


# ---------------------------------------------------------------------------- report
def _f(value, spec):
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    head = (
        f"{'configuration':34s}{'frames':>7s}{'rank':>6s}{'build s':>9s}{'steps':>7s}"
        f"{'CG s':>8s}{'total s':>9s}{'peak MB':>9s}{'E MAE meV':>11s}{'F MAE meV/Å':>13s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['label']:34s}  failed: {r['error']}")
            continue
        steps = r.get("n_iter")
        steps_s = "-" if steps is None else f"{steps}{'' if r.get('converged') else '*'}"
        lines.append(
            f"{r['label']:34s}{r['n_train']:7d}{_f(r.get('rank'), 'd'):>6s}"
            f"{_f(r.get('preconditioner_s'), '.1f'):>9s}{steps_s:>7s}{_f(r.get('cg_s'), '.1f'):>8s}"
            f"{r['fit_s']:9.1f}{r['peak_rss_mb']:9.0f}{r['energy_mae_meV']:11.2f}"
            f"{r['force_mae_meV_A']:13.2f}"
        )
    lines.append("* not converged within the step limit (see the residual in the JSON)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Dense Cholesky vs Nyström-preconditioned CG for sGDML (ethanol).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--extra", type=Path, default=None, help="extra ethanol frames (npz)")
    p.add_argument("--small", type=int, default=1600, help="training frames, dense and CG")
    p.add_argument("--large-factor", type=int, default=4, help="LARGE = factor × SMALL (CG)")
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--ranks", default="500,1000,2000", help="preconditioner ranks at SMALL")
    p.add_argument(
        "--methods", default="random,leverage,pivoted_cholesky,eig", help="preconditioners"
    )
    p.add_argument("--large-method", default="pivoted_cholesky")
    p.add_argument("--large-rank", type=int, default=2000)
    p.add_argument("--tol", type=float, default=1e-4, help="CG relative residual")
    p.add_argument("--max-iter", type=int, default=2000, help="CG step limit")
    p.add_argument("--plain-max-iter", type=int, default=500, help="step limit of plain CG")
    p.add_argument("--sigma", type=float, default=SIGMA)
    p.add_argument("--lam", type=float, default=1e-10)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--skip-dense", action="store_true")
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mlffkit.data import Dataset, load
    from mlffkit.fileio import atomic_write_text, check_writable

    if args.json is not None:
        check_writable(args.json, args.overwrite)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(args.threads)
    pool = load("ethanol_gfn2")
    if args.extra is not None:
        pool = Dataset.concatenate([pool, load(args.extra)])
    large = args.small * args.large_factor
    need = (args.small if args.skip_large else large) + args.n_test
    if need > len(pool):
        raise SystemExit(
            f"{need} frames needed ({'SMALL' if args.skip_large else 'LARGE'} + --n-test) but "
            f"only {len(pool)} available: pass --extra (see this script's docstring), lower "
            "--small, or --skip-large"
        )
    test = pool[len(pool) - args.n_test :]
    base = {
        "sigma": args.sigma,
        "lam": args.lam,
        "threads": args.threads,
        "progress": not args.no_progress,
        "test": test,
    }
    small = pool[: args.small]
    jobs = []
    if not args.skip_dense:
        jobs.append({"label": "dense Cholesky", "train": small, "params": {"solver": "cholesky"}})
    cg = {"solver": "cg", "tol": args.tol}
    jobs.append(
        {
            "label": "CG, no preconditioner",
            "train": small,
            "params": {**cg, "preconditioner": None, "max_iter": args.plain_max_iter},
        }
    )
    for method in args.methods.split(","):
        for rank in (int(r) for r in args.ranks.split(",")):
            jobs.append(
                {
                    "label": f"CG, {method}",
                    "train": small,
                    "params": {
                        **cg,
                        "preconditioner": method,
                        "rank": rank,
                        "max_iter": args.max_iter,
                    },
                }
            )
    if not args.skip_large:
        jobs.append(
            {
                "label": f"CG, {args.large_method} (large)",
                "train": pool[:large],
                "params": {
                    **cg,
                    "preconditioner": args.large_method,
                    "rank": args.large_rank,
                    "max_iter": args.max_iter,
                },
            }
        )
    rows = []
    for job in jobs:
        log(f"{job['label']} {job['params'].get('rank', '')} on {len(job['train'])} frames")
        rows.append(in_child({**base, **job}))
        log(table(rows[-1:]).splitlines()[-2])
    print(
        f"sGDML training on ethanol (GFN2-xTB), sigma {args.sigma:g}, lam {args.lam:g}, "
        f"CG to relative residual {args.tol:g}, {args.threads} thread(s); "
        f"test: {args.n_test} held-out frames"
    )
    print(table(rows))
    if args.json is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        text = json.dumps({"config": config, "results": rows}, indent=1) + "\n"
        atomic_write_text(args.json, text, overwrite=args.overwrite)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
