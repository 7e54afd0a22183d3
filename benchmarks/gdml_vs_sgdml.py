"""Train sgdml 1.0.3 and mlffkit's sGDML on the same frames with the same sigma, and compare them.

Both packages see exactly the same training frames (the first ``--n-train`` frames of the
training file, in file order) and test frames (the first ``--n-test`` frames of the test
file), the same length scale ``--sigma`` and the same ridge ``lam`` (1e-10, sgdml's
default), and both search the molecule's permutational symmetries themselves (sGDML).
Each package trains and predicts in a fresh child process (multiprocessing "spawn"), so
that its peak memory, the high-water mark of its resident set (``VmHWM``), is its own.

Measured per package: sgdml's task creation (its symmetry search and sampling; mlffkit
does its symmetry search inside ``fit``), training time, peak memory, prediction
throughput (test frames per second, best of ``--repeats``), energy and force MAE in
kcal/mol and kcal/mol/Å on the test frames, and the number of symmetries found. The ratios
mlffkit/sgdml are checked against the targets in ``TARGETS``; training time is compared
with sgdml's task creation plus training, since both include the symmetry search.

``--select-sigma`` additionally lets mlffkit choose sigma itself (in a third child
process): on ``--sigma-grid``, by the force MAE on ``--n-valid`` validation frames taken
from the training FILE's frames after the first ``--n-train`` (never used for training,
never test frames); the chosen model is then tested on the test frames. When the training
file has no frames left (``--n-train 1000`` of 1000), the last ``--n-valid`` training frames
are held out for the choice and the model is refitted on all ``--n-train`` with the chosen
sigma. Test frames never take part in the choice.

Run from the repository root (the defaults point at ``../shared/data/rmd17``)::

    OMP_NUM_THREADS=1 python benchmarks/gdml_vs_sgdml.py --n-train 100 --n-test 200 --threads 1
    python benchmarks/gdml_vs_sgdml.py --json results/gdml_vs_sgdml.json   # 1000/1000, ~23 GB
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from _harness import (
    THREAD_VARIABLES,
    add_rmd17_arguments,
    check_target,
    cores,
    load_rmd17,
    log,
    peak_rss_mb,
    rss_mb,
    run_in_child,
    set_threads,
)

#: what mlffkit should reach, as (ratio mlffkit/sgdml, "<=" or ">=", bound)
TARGETS = {
    "force_mae": ("<=", 1.02),
    "training_time": ("<=", 0.5),
    "peak_memory": ("<=", 0.5),
    "throughput": (">=", 2.0),
}


# ---------------------------------------------------------------------------- memory
def best_time(fn, repeats: int) -> float:
    """The shortest wall time of ``repeats`` calls of ``fn()``, seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# ---------------------------------------------------------------------------- children
def run_sgdml(job: dict) -> dict:
    """sgdml: create_task, train, predict the test frames (runs in a child process)."""
    import logging

    import numpy as np

    if not hasattr(np, "in1d"):
        setattr(np, "in1d", np.isin)  # noqa: B010 (sgdml 1.0.3 calls np.in1d, deprecated in NumPy 2)
    from sgdml import __version__
    from sgdml.predict import GDMLPredict
    from sgdml.train import GDMLTrain

    set_threads(job["threads"])
    logging.getLogger("sgdml").setLevel(logging.WARNING)
    baseline = rss_mb()
    train, test = job["sgdml_train"], job["sgdml_test"]
    n_train = len(train["R"])
    dataset = {
        "type": "d",
        "code_version": __version__,
        "name": np.array(job["name"]),
        "theory": np.array(job["theory"]),
        "z": train["z"],
        "R": train["R"],
        "E": train["E"],
        "F": train["F"],
        "r_unit": np.array("Ang"),
        "e_unit": np.array("kcal/mol"),
    }
    trainer = GDMLTrain(max_processes=job["threads"])
    log(f"sgdml: creating the task ({n_train} frames, symmetry search)")
    start = time.perf_counter()
    # n_train equal to the dataset size makes sgdml take all frames in file order
    # (draw_strat_sample returns arange); no validation frames (n_valid=0).
    task = trainer.create_task(
        dataset, n_train, dataset, 0, sig=job["sigma"], lam=job["lam"], use_sym=True, use_E=True
    )
    task_s = time.perf_counter() - start
    if not np.array_equal(task["idxs_train"], np.arange(n_train)):
        raise RuntimeError("sgdml did not take all training frames in order")
    log(f"sgdml: {len(task['perms'])} symmetries; training")
    start = time.perf_counter()
    model = trainer.train(task)
    train_s = time.perf_counter() - start

    log("sgdml: predicting")
    predictor = GDMLPredict(
        model,
        max_processes=job["threads"],
        use_torch=job["device"] != "cpu",
        log_level=logging.WARNING,
    )
    r_test = test["R"].reshape(len(test["R"]), -1)
    # sgdml's own tuning of its parallel chunking, as `sgdml test` does (not timed;
    # it caches its result in sgdml's install folder)
    predictor.prepare_parallel(n_bulk=min(1000, len(r_test)))
    predict_s = best_time(lambda: predictor.predict(r_test), job["repeats"])
    energies, forces = predictor.predict(r_test)
    forces = forces.reshape(test["F"].shape)
    return {
        "package": f"sgdml {__version__}",
        "solver": model.get("solver_name", "analytic"),
        "task_s": task_s,
        "train_s": train_s,
        "fit_total_s": task_s + train_s,
        "predict_s": predict_s,
        "throughput_fps": len(r_test) / predict_s,
        "energy_mae_kcal_mol": float(np.mean(np.abs(energies - test["E"]))),
        "force_mae_kcal_mol_A": float(np.mean(np.abs(forces - test["F"]))),
        "n_symmetries": int(len(model["perms"])),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
    }


def _mlffkit_errors(model, test) -> dict:
    from mlffkit.evaluation import evaluate

    d = evaluate(model, test).to_dict()
    return {
        "energy_mae_kcal_mol": d["energy_mae_kcal_mol"],
        "force_mae_kcal_mol_A": d["force_mae_kcal_mol_A"],
    }


def run_mlffkit(job: dict) -> dict:
    """mlffkit: GDML(sigma).fit on the training frames, predict the test frames (child process)."""
    import torch

    import mlffkit
    from mlffkit.models import GDML

    set_threads(job["threads"])
    baseline = rss_mb()
    train, test = job["train"], job["test"]
    log(f"mlffkit: training on {len(train)} frames (symmetry search included)")
    start = time.perf_counter()
    model = GDML(
        sigma=job["sigma"], lam=job["lam"], device=job["device"], solver=job["solver"]
    ).fit(train, progress=job["progress"])
    fit_s = time.perf_counter() - start
    log("mlffkit: predicting")
    predict_s = best_time(lambda: model.predict(test), job["repeats"])
    gpu_mb = torch.cuda.max_memory_allocated() / 1024**2 if job["device"] != "cpu" else None
    return {
        "package": f"mlffkit {mlffkit.__version__}",
        "solver": model.solver_info_["solver"],
        "solver_info": model.solver_info_,
        "task_s": None,
        "train_s": fit_s,
        "fit_total_s": fit_s,
        "predict_s": predict_s,
        "throughput_fps": len(test) / predict_s,
        **_mlffkit_errors(model, test),
        "n_symmetries": int(len(model.permutations_)),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": gpu_mb,
    }


def run_mlffkit_select(job: dict) -> dict:
    """mlffkit with sigma chosen on validation frames, then tested (child process).

    With separate validation frames (``job["valid"]``) the model chosen by
    :func:`select_sigma` is tested as it is. Without them (``--n-train`` takes the whole
    training file) the last ``n_valid`` training frames are held out for the choice and
    the model is then refitted on all training frames with the chosen sigma.
    """
    from mlffkit.models import GDML, select_sigma

    set_threads(job["threads"])
    train, valid, test = job["train"], job["valid"], job["test"]
    refit = valid is None
    if refit:
        n_fit = len(train) - job["n_valid"]
        fit_part, valid = train.subset(range(n_fit)), train.subset(range(n_fit, len(train)))
    else:
        fit_part = train
    log(
        f"mlffkit: choosing sigma from {job['sigma_grid']}: {len(fit_part)} training, "
        f"{len(valid)} validation frames"
    )
    start = time.perf_counter()
    model, curve = select_sigma(
        fit_part,
        valid,
        job["sigma_grid"],
        model=GDML(sigma=job["sigma_grid"][0], lam=job["lam"], device=job["device"]),
        progress=job["progress"],
    )
    select_s = time.perf_counter() - start
    if refit:
        log(f"mlffkit: refitting on all {len(train)} frames with sigma {model.sigma:g}")
        model = GDML(sigma=model.sigma, lam=job["lam"], device=job["device"]).fit(
            train, progress=job["progress"]
        )
    return {
        "sigma": float(model.sigma),
        "sigma_grid": [float(s) for s in curve.sigmas],
        "valid_force_mae_kcal_mol_A": [float(v) / job["kcal_per_mol"] for v in curve.force_mae],
        "n_valid": len(valid),
        "n_selection_train": len(fit_part),
        "refit": refit,
        "n_train": len(train),
        "select_s": select_s,
        **_mlffkit_errors(model, test),
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------------------- data
def load_frames(args):
    """Training, validation and test Datasets (eV, Å) from the two files."""
    full, test = load_rmd17(args)
    n_valid = args.n_valid if args.select_sigma else 0
    if args.n_train + n_valid > len(full):
        # no separate validation frames: select_sigma holds out part of the training frames
        n_valid = 0
        if args.n_valid >= args.n_train:
            raise SystemExit(f"--n-valid {args.n_valid} must be below --n-train {args.n_train}")
    train = full.subset(range(args.n_train))
    valid = full.subset(range(args.n_train, args.n_train + n_valid)) if n_valid else None
    if args.n_test > len(test):
        raise SystemExit(f"--n-test {args.n_test} exceeds the {len(test)} frames of {args.test}")
    return train, valid, test.subset(range(args.n_test))


def sgdml_arrays(ds, kcal_per_mol: float) -> dict:
    """sgdml's arrays in the file's units: Å, kcal/mol, kcal/mol/Å."""
    return {
        "z": ds.numbers,
        "R": ds.positions,
        "E": ds.energies / kcal_per_mol,
        "F": ds.forces / kcal_per_mol,
    }


# ---------------------------------------------------------------------------- report
def ratios(mine: dict, ref: dict) -> dict:
    values = {
        "force_mae": mine["force_mae_kcal_mol_A"] / ref["force_mae_kcal_mol_A"],
        "training_time": mine["fit_total_s"] / ref["fit_total_s"],
        "peak_memory": mine["peak_rss_mb"] / ref["peak_rss_mb"],
        "throughput": mine["throughput_fps"] / ref["throughput_fps"],
    }
    out = {}
    for key, value in values.items():
        out[key] = {"ratio": value, **check_target(value, *TARGETS[key])}
    return out


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(ref: dict | None, mine: dict, rat: dict | None) -> str:
    rows = [
        ("task creation (s)", "task_s", ".2f", None),
        ("training (s)", "train_s", ".2f", None),
        ("task + training (s)", "fit_total_s", ".2f", "training_time"),
        ("peak RSS (MB)", "peak_rss_mb", ".0f", "peak_memory"),
        ("  after imports (MB)", "baseline_rss_mb", ".0f", None),
        ("prediction (frames/s)", "throughput_fps", ".0f", "throughput"),
        ("energy MAE (kcal/mol)", "energy_mae_kcal_mol", ".4f", None),
        ("force MAE (kcal/mol/Å)", "force_mae_kcal_mol_A", ".4f", "force_mae"),
        ("symmetries", "n_symmetries", "d", None),
        ("solver", "solver", "s", None),
    ]
    ref_name = ref["package"] if ref else "sgdml (skipped)"
    lines = [f"{'':24s}{ref_name:>14s}{mine['package']:>15s}{'ratio':>9s}{'target':>9s}  met"]
    for label, key, spec, target in rows:
        line = f"{label:24s}{_fmt(ref.get(key) if ref else None, spec):>14s}"
        line += f"{_fmt(mine.get(key), spec):>15s}"
        if rat and target:
            r = rat[target]
            line += f"{r['ratio']:9.3f}{r['target']:>9s}  {'yes' if r['met'] else 'NO'}"
        lines.append(line)
    return "\n".join(lines)


def selection_table(sel: dict) -> str:
    how = (
        f"held out of the training frames (fits on {sel['n_selection_train']}), then refitted "
        f"on all {sel['n_train']}"
        if sel["refit"]
        else "separate from the training frames"
    )
    lines = [
        f"mlffkit with sigma chosen on {sel['n_valid']} validation frames {how} "
        f"({sel['select_s']:.1f} s): sigma = {sel['sigma']:g}",
        f"{'sigma':>8s}  validation force MAE (kcal/mol/Å)",
    ]
    for s, mae in zip(sel["sigma_grid"], sel["valid_force_mae_kcal_mol_A"], strict=True):
        mark = "  <- chosen" if s == sel["sigma"] else ""
        lines.append(f"{s:8g}  {mae:.4f}{mark}")
    lines.append(
        f"test: energy MAE {_fmt(sel['energy_mae_kcal_mol'], '.4f')} kcal/mol, "
        f"force MAE {sel['force_mae_kcal_mol_A']:.4f} kcal/mol/Å"
    )
    return "\n".join(lines)


def environment(threads: int) -> dict:
    import numpy
    import scipy
    import torch

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
    }


# ---------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="sgdml 1.0.3 against mlffkit's sGDML: same frames, same sigma.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_rmd17_arguments(p)
    p.add_argument("--n-test", type=int, default=1000, help="first N frames of the test file")
    p.add_argument("--sigma", type=float, default=20.0, help="kernel length scale, both packages")
    p.add_argument("--lam", type=float, default=1e-10, help="ridge regularisation, both packages")
    p.add_argument("--threads", type=int, default=cores(), help="threads/processes")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--solver",
        choices=("auto", "cholesky", "cg"),
        default="auto",
        help="mlffkit's solver (auto: Cholesky while the kernel fits in memory)",
    )
    p.add_argument("--repeats", type=int, default=3, help="prediction timing: best of N")
    p.add_argument("--skip-sgdml", action="store_true", help="run mlffkit only")
    p.add_argument(
        "--select-sigma",
        action="store_true",
        help="also let mlffkit choose sigma on validation frames of the training file",
    )
    p.add_argument("--n-valid", type=int, default=200, help="validation frames for --select-sigma")
    p.add_argument(
        "--sigma-grid",
        type=lambda s: [float(v) for v in s.split(",")],
        default=[5.0, 10.0, 20.0, 40.0, 80.0],
        help="comma-separated sigmas for --select-sigma",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mlffkit import units
    from mlffkit.fileio import check_writable

    if args.json is not None:
        check_writable(args.json, args.overwrite)
    if args.threads < 1:
        raise SystemExit("--threads must be at least 1")
    for name in THREAD_VARIABLES:  # inherited by the spawned children
        os.environ[name] = str(args.threads)
    train, valid, test = load_frames(args)
    log(
        f"{len(train)} training and {len(test)} test frames of {train.name} "
        f"({train.level_of_theory}); sigma {args.sigma:g}, {args.threads} thread(s), {args.device}"
    )
    job = {
        "name": train.name,
        "theory": train.level_of_theory,
        "sigma": args.sigma,
        "lam": args.lam,
        "threads": args.threads,
        "device": args.device,
        "solver": args.solver,
        "repeats": args.repeats,
        "progress": not args.no_progress,
        "kcal_per_mol": units.KCAL_PER_MOL,
    }
    ref = None
    if not args.skip_sgdml:
        ref = run_in_child(
            run_sgdml,
            {
                **job,
                "sgdml_train": sgdml_arrays(train, units.KCAL_PER_MOL),
                "sgdml_test": sgdml_arrays(test, units.KCAL_PER_MOL),
            },
        )
    mine = run_in_child(run_mlffkit, {**job, "train": train, "test": test})
    selected = None
    if args.select_sigma:
        selected = run_in_child(
            run_mlffkit_select,
            {
                **job,
                "train": train,
                "valid": valid,
                "test": test,
                "sigma_grid": args.sigma_grid,
                "n_valid": args.n_valid,
            },
        )
    rat = ratios(mine, ref) if ref else None

    print(
        f"sGDML on {train.name} ({train.level_of_theory}): {len(train)} training frames, "
        f"{len(test)} test frames, sigma {args.sigma:g}, {args.threads} thread(s), {args.device}"
    )
    print(table(ref, mine, rat))
    if selected:
        print()
        print(selection_table(selected))
    if args.json is not None:
        from mlffkit.fileio import atomic_write_text

        result = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "environment": environment(args.threads),
            "sgdml": ref,
            "mlffkit": mine,
            "mlffkit_select_sigma": selected,
            "ratios": rat,
        }
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n", overwrite=args.overwrite)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
