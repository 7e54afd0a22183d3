"""``benchmarks/gdml_vs_sgdml.py`` end to end on tiny rMD17-style files made from the test fixture."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlffkit import units
from mlffkit.data import load
from mlffkit.evaluation import evaluate
from mlffkit.models import GDML

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gdml_vs_sgdml.py"


@pytest.mark.slow
def test_benchmark_trains_both_packages_on_the_same_frames(tmp_path, rmd17_file):
    pytest.importorskip("sgdml")
    # Training frames 10-23 (both packages find the same 2 symmetries in them; in some
    # smaller subsets sgdml finds only the identity), then 6 validation frames; 4 test frames.
    train_file = rmd17_file(tmp_path / "train.npz", np.r_[10:24, 4:10])
    test_file = rmd17_file(tmp_path / "test.npz", np.r_[0:4])
    out = tmp_path / "result.json"
    args = [
        sys.executable, str(SCRIPT), "--train", str(train_file), "--test", str(test_file),
        "--n-train", "14", "--n-test", "4", "--sigma", "5", "--threads", "1", "--repeats", "1",
        "--select-sigma", "--n-valid", "6", "--sigma-grid", "2,5,10", "--json", str(out),
        "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    ref, mine = result["sgdml"], result["mlffkit"]

    # the same frames, sigma and symmetries give the same model in both packages
    assert ref["n_symmetries"] == mine["n_symmetries"] > 1
    assert mine["force_mae_kcal_mol_A"] == pytest.approx(ref["force_mae_kcal_mol_A"], rel=1e-6)
    assert mine["energy_mae_kcal_mol"] == pytest.approx(ref["energy_mae_kcal_mol"], rel=1e-5)
    assert set(result["ratios"]) == {"force_mae", "training_time", "peak_memory", "throughput"}
    assert result["ratios"]["force_mae"]["ratio"] == pytest.approx(1.0, rel=1e-6)
    for part in (ref, mine):
        assert part["peak_rss_mb"] >= part["baseline_rss_mb"] > 0
        assert part["throughput_fps"] > 0

    # the errors are in kcal/mol, of the first 14 frames of the training file on the test frames
    train = load(train_file, labels="old", index="0:14")
    report = evaluate(GDML(sigma=5).fit(train, progress=False), load(test_file, labels="old"))
    assert mine["force_mae_kcal_mol_A"] == pytest.approx(
        report.force_mae / units.KCAL_PER_MOL, rel=1e-9
    )

    # sigma chosen on the 6 frames of the training file after the training frames
    selected = result["mlffkit_select_sigma"]
    assert selected["n_valid"] == 6 and selected["sigma_grid"] == [2.0, 5.0, 10.0]
    best = selected["sigma_grid"][int(np.argmin(selected["valid_force_mae_kcal_mol_A"]))]
    assert selected["sigma"] == best

    table = run.stdout
    assert "sgdml 1.0.3" in table and "force MAE (kcal/mol/Å)" in table and "symmetries" in table
    assert f"sigma = {best:g}" in table


def test_selection_without_spare_frames_holds_out_and_refits(tmp_path, rmd17_file):
    """``--n-train`` = the whole training file: sigma is chosen on held-out training frames."""
    train_file = rmd17_file(tmp_path / "train.npz", np.r_[4:20])
    test_file = rmd17_file(tmp_path / "test.npz", np.r_[0:4])
    out = tmp_path / "result.json"
    args = [
        sys.executable, str(SCRIPT), "--train", str(train_file), "--test", str(test_file),
        "--n-train", "16", "--n-test", "4", "--threads", "1", "--repeats", "1", "--skip-sgdml",
        "--select-sigma", "--n-valid", "4", "--sigma-grid", "2,5", "--json", str(out),
        "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    selected = json.loads(out.read_text())["mlffkit_select_sigma"]
    assert selected["refit"] and selected["n_selection_train"] == 12 and selected["n_train"] == 16
    # the reported test error is that of the model refitted on all 16 frames
    train = load(train_file, labels="old")
    model = GDML(sigma=selected["sigma"]).fit(train, progress=False)
    report = evaluate(model, load(test_file, labels="old"))
    assert selected["force_mae_kcal_mol_A"] == pytest.approx(
        report.force_mae / units.KCAL_PER_MOL, rel=1e-9
    )


def test_solver_benchmark_runs_and_cg_matches_dense(tmp_path):
    out = tmp_path / "solvers.json"
    args = [
        sys.executable, str(ROOT / "benchmarks" / "kernel_solvers.py"), "--small", "20",
        "--n-test", "10", "--ranks", "150", "--methods", "random,pivoted_cholesky",
        "--skip-large", "--plain-max-iter", "10", "--tol", "1e-8", "--threads", "1",
        "--lam", "1e-8", "--json", str(out), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {r["label"]: r for r in json.loads(out.read_text())["results"]}
    dense = rows["dense Cholesky"]
    assert dense["solver"] == "cholesky" and dense["kernel_size"] == 20 * 27
    plain = rows["CG, no preconditioner"]
    assert plain["n_iter"] == 10 and not plain["converged"]
    for label in ("CG, random", "CG, pivoted_cholesky"):
        row = rows[label]
        assert row["converged"] and row["n_iter"] < 100 and row["rank"] <= 150
        assert len(row["residuals"]) == row["n_iter"] + 1
        assert row["force_mae_meV_A"] == pytest.approx(dense["force_mae_meV_A"], rel=1e-3)
    assert "dense Cholesky" in run.stdout and "steps" in run.stdout
