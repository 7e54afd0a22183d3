"""``benchmarks/schnet_vs_schnetpack.py`` end to end on a tiny network and rMD17-style files.

The mlffkit half always runs; the SchNetPack half only where schnetpack 2.1.1 is installed
(it needs ``--no-deps`` next to torch 2.13, so CI does not have it).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlffkit.nn import SchNetPotential

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "schnet_vs_schnetpack.py"
N_FEATURES, N_INTERACTIONS, N_RBF = 16, 2, 8


def _run(tmp_path: Path, rmd17_file, *extra: str) -> tuple[dict, str]:
    out = tmp_path / "result.json"
    args = [
        sys.executable, str(SCRIPT),
        "--train", str(rmd17_file(tmp_path / "train.npz", np.r_[0:16])),
        "--test", str(rmd17_file(tmp_path / "test.npz", np.r_[16:24])),
        "--n-train", "16", "--batch-size", "4", "--warmup", "1", "--steps", "3",
        "--n-features", str(N_FEATURES), "--n-interactions", str(N_INTERACTIONS),
        "--n-rbf", str(N_RBF), "--single-calls", "4", "--inference-batch", "6",
        "--md-steps", "5", "--repeats", "1", "--threads", "1", "--json", str(out), *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text()), run.stdout


def test_mlffkit_half_measures_the_requested_network(tmp_path, rmd17_file):
    result, table = _run(tmp_path, rmd17_file, "--skip-schnetpack")
    mine = result["mlffkit"]
    assert result["schnetpack"] is None and result["ratios"] is None
    expected = SchNetPotential(N_FEATURES, N_INTERACTIONS, 5.0, N_RBF)
    assert mine["parameters"] == sum(p.numel() for p in expected.parameters())
    # SchNetPack's Gaussian width is the centre spacing: gamma = 1 / (2 spacing^2)
    assert result["gamma"] == pytest.approx(0.5 / (5.0 / (N_RBF - 1)) ** 2)
    for key in ("train_steps_per_s", "bare_steps_per_s", "single_per_s", "batch_per_s"):
        assert mine[key] > 0, key
    assert mine["md_steps_per_s"] > 0 and np.isfinite(mine["md_drift_meV"])
    assert mine["finite"] and mine["peak_rss_mb"] >= mine["baseline_rss_mb"] > 0
    assert "schnetpack (skipped)" in table and "training, package loop (steps/s)" in table


@pytest.mark.slow
def test_both_packages_compute_the_same_network(tmp_path, rmd17_file):
    # not importorskip: schnetpack 2.1.1 imports only after the script's shim for torch 2.13
    if importlib.util.find_spec("schnetpack") is None:
        pytest.skip("schnetpack is not installed (pip install --no-deps schnetpack==2.1.1)")
    result, table = _run(tmp_path, rmd17_file)
    ref, mine = result["schnetpack"], result["mlffkit"]
    assert ref["package"] == "schnetpack 2.1.1"
    # same size: only SchNetPack's smaller element table (Z < 100 instead of < 119) differs
    assert mine["parameters"] - ref["parameters"] == (119 - 100) * N_FEATURES
    assert ref["gamma"] == pytest.approx(result["gamma"], rel=1e-6)
    # mlffkit's weights loaded into SchNetPack give the same energies and forces
    agree = result["agreement"]
    assert agree["max_force_diff_meV_A"] < 1e-4 * agree["max_force_meV_A"]
    assert agree["max_energy_diff_meV"] < 5.0  # float32 round-off of energies ~ -4200 eV
    assert agree["md_final_position_diff_A"] < 1e-4
    assert ref["md_drift_meV"] == pytest.approx(mine["md_drift_meV"], rel=0.05, abs=0.1)
    assert set(result["ratios"]) >= {"train_steps_per_s", "single_per_s", "md_steps_per_s"}
    assert "target" in result["ratios"]["single_per_s"]
    assert "schnetpack 2.1.1" in table and "same weights in both" in table
