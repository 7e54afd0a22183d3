"""The MD sampler: frames and stride, provenance, reproducibility, kill-and-resume, guards, labels."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.constraints import FixCom

import mlffkit
from mlffkit.cli import main as cli_main
from mlffkit.md.integrators import initialize_velocities, make_integrator
from mlffkit.reference import FCCMetalEMT, get_calculator
from mlffkit.sampling import label, runaway_temperature, sample

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

# Small and quick: 8 Cu atoms, EMT, a few hundred steps at most per run.
RUN = {"n_frames": 12, "stride": 3, "temperature_K": 800.0, "equilibration_steps": 6,
       "timestep_fs": 2.0, "progress": False}


def copper():
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))


def lennard_jones():
    return LennardJones(sigma=2.3, epsilon=0.4, rc=5.0, smooth=True)


class FailingEMT(FCCMetalEMT):
    """EMT that raises after ``fail_after`` calculations (an engine dying mid-run)."""

    def __init__(self, fail_after=None, **kwargs):
        super().__init__(**kwargs)
        self.fail_after, self.calls = fail_after, 0

    def calculate(self, *args, **kwargs):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("engine died")
        super().calculate(*args, **kwargs)


class NaNAfterEMT(FCCMetalEMT):
    """EMT whose forces turn into NaN after a number of calculations."""

    def __init__(self, nan_after, **kwargs):
        super().__init__(**kwargs)
        self.nan_after, self.calls = nan_after, 0

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.calls += 1
        if self.calls > self.nan_after:
            self.results["forces"] = np.full_like(self.results["forces"], np.nan)


class HeatingEMT(FCCMetalEMT):
    """EMT plus a force along each atom's momentum: negative friction, it pumps energy in."""

    def calculate(self, atoms=None, *args, **kwargs):
        super().calculate(atoms, *args, **kwargs)
        self.results["forces"] = self.results["forces"] + 20.0 * self.atoms.get_momenta()


def test_frames_follow_equilibration_and_stride(tmp_path):
    ds = sample(copper(), "emt", output=tmp_path / "cu.npz", seed=3, **RUN)
    assert len(ds) == RUN["n_frames"]
    # the same dynamics by hand: frame i is MD step equilibration + stride * (i + 1)
    atoms = copper()
    atoms.calc = get_calculator("emt")
    rng = np.random.default_rng(3)
    initialize_velocities(atoms, RUN["temperature_K"], rng)
    dyn = make_integrator(atoms, timestep_fs=2.0, temperature_K=800.0, rng=rng)
    by_hand = []
    for step in range(1, 6 + 3 * 12 + 1):
        dyn.step()
        if step > 6 and (step - 6) % 3 == 0:
            by_hand.append(atoms.positions.copy())
    # not bitwise: EMT's neighbour-list history changes the last digits (the sampler resets it)
    np.testing.assert_allclose(ds.positions, by_hand, rtol=0, atol=1e-9)

    # labels are EMT's at each frame's positions; the cell and periodicity are kept
    for i in (0, 11):
        frame = ds.atoms(i)
        frame.calc = get_calculator("emt")
        assert ds.energies[i] == pytest.approx(frame.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(ds.forces[i], frame.get_forces(), atol=1e-10)
    np.testing.assert_array_equal(ds.cell[0], copper().cell.array)
    assert ds.pbc.all() and ds.level_of_theory == "EMT"


def test_centre_of_mass_drifts_unless_held(tmp_path):
    free = sample(copper(), "emt", output=tmp_path / "free.npz", **RUN)
    atoms = copper()
    atoms.set_constraint(FixCom())
    held = sample(atoms, "emt", output=tmp_path / "held.npz", **RUN)
    start = copper().positions.mean(axis=0)
    assert np.abs(free.positions.mean(axis=1) - start).max() > 1e-3
    np.testing.assert_allclose(held.positions.mean(axis=1), np.tile(start, (len(held), 1)), atol=1e-10)
    # the stored forces are EMT's own, not those projected by the constraint
    frame = held.atoms(3)
    frame.calc = get_calculator("emt")
    np.testing.assert_allclose(held.forces[3], frame.get_forces(), atol=1e-10)
    # an unfinished constrained run does not resume without its constraint
    with pytest.raises(RuntimeError, match="engine died"):
        sample(atoms, FailingEMT(fail_after=25), output=tmp_path / "c.npz", **RUN)
    with pytest.raises(ValueError, match="arguments differ.*constraints"):
        sample(copper(), FailingEMT(), output=tmp_path / "c.npz", **RUN)


def test_provenance_and_output_file(tmp_path):
    out = tmp_path / "cu.npz"
    ds = sample(copper(), "emt", output=out, seed=5, name="cu8", **RUN)
    meta = ds.metadata["sampling"]
    assert meta["temperature_K"] == 800.0 and meta["timestep_fs"] == 2.0
    assert meta["stride"] == 3 and meta["seed"] == 5 and meta["equilibration_steps"] == 6
    assert meta["friction_per_fs"] == 0.01 and meta["n_frames"] == 12
    assert meta["md_level_of_theory"] == "EMT" and meta["sessions"] == 1
    assert meta["software"]["ase"] and meta["software"]["mlffkit"] == mlffkit.__version__
    assert meta["wall_time_s"] > 0
    back = mlffkit.load(out)
    assert back.name == "cu8" and back.level_of_theory == "EMT"
    np.testing.assert_array_equal(back.positions, ds.positions)
    np.testing.assert_array_equal(back.forces, ds.forces)
    assert back.metadata["sampling"]["seed"] == 5
    assert not (tmp_path / "cu.npz.sampling").exists()  # the work folder is cleaned up


def test_same_seed_same_frames_other_seed_other_frames(tmp_path):
    a = sample(copper(), "emt", output=tmp_path / "a.npz", seed=1, **RUN)
    b = sample(copper(), "emt", output=tmp_path / "b.npz", seed=1, **RUN)
    c = sample(copper(), "emt", output=tmp_path / "c.npz", seed=2, **RUN)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.forces, b.forces)
    assert np.abs(a.positions - c.positions).max() > 1e-3


def test_finished_output_is_not_overwritten(tmp_path):
    out = tmp_path / "cu.npz"
    sample(copper(), "emt", output=out, **RUN)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        sample(copper(), "emt", output=out, **RUN)
    again = sample(copper(), "emt", output=out, overwrite=True, **{**RUN, "n_frames": 4})
    assert len(mlffkit.load(out)) == len(again) == 4


def test_invalid_arguments_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="stride"):
        sample(copper(), "emt", output=tmp_path / "x.npz", **{**RUN, "stride": 0})
    with pytest.raises(ValueError, match="temperature_K"):
        sample(copper(), "emt", output=tmp_path / "x.npz", **{**RUN, "temperature_K": -5})
    with pytest.raises(ValueError, match="timestep_fs"):
        sample(copper(), "emt", output=tmp_path / "x.npz", **{**RUN, "timestep_fs": 0.0})
    with pytest.raises(ValueError, match=r"\.npz or \.extxyz"):
        sample(copper(), "emt", output=tmp_path / "x.csv", **RUN)
    assert not list(tmp_path.iterdir())


KILL_ARGS = {"n_frames": 60, "stride": 3, "temperature_K": 800.0, "equilibration_steps": 6,
             "timestep_fs": 2.0, "seed": 11, "progress": False}
KILL_SCRIPT = textwrap.dedent(f"""
    import sys, time, warnings
    warnings.simplefilter("ignore")
    from ase.build import bulk
    from mlffkit import sampling
    # slow the writing down (not the physics) so that the test surely kills it mid-run
    append = sampling._WorkFolder.append
    def slow_append(self, record):
        append(self, record)
        time.sleep(0.1)
    sampling._WorkFolder.append = slow_append
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    sampling.sample(atoms, "emt", output=sys.argv[1], **{KILL_ARGS!r})
""")


def test_killed_run_resumes_without_losing_or_repeating_frames(tmp_path):
    out = tmp_path / "cu.npz"
    frames_file = tmp_path / "cu.npz.sampling" / "frames.f64"
    record_bytes = 8 * (1 + 6 * len(copper()))
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (frames_file.exists() and frames_file.stat().st_size >= 5 * record_bytes):
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the sampler wrote no frames"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not out.exists()
    written = frames_file.stat().st_size // record_bytes
    assert 5 <= written < KILL_ARGS["n_frames"]
    # dying in the middle of writing a frame leaves a partial record: it must be cut off
    with open(frames_file, "ab") as fh:
        fh.write(b"\x00" * (record_bytes // 2))

    resumed = sample(copper(), "emt", output=out, **KILL_ARGS)
    straight = sample(copper(), "emt", output=tmp_path / "straight.npz", **KILL_ARGS)
    assert resumed.metadata["sampling"]["sessions"] == 2
    np.testing.assert_array_equal(resumed.positions, straight.positions)
    np.testing.assert_array_equal(resumed.forces, straight.forces)
    np.testing.assert_array_equal(resumed.energies, straight.energies)
    assert len(set(resumed.frame_hashes())) == KILL_ARGS["n_frames"]  # none repeated


def test_crashed_run_resumes_only_with_the_same_arguments(tmp_path):
    out = tmp_path / "cu.npz"
    with pytest.raises(RuntimeError, match="calculator failed at MD step.*engine died"):
        sample(copper(), FailingEMT(fail_after=25), output=out, seed=4, **RUN)
    assert not out.exists() and (tmp_path / "cu.npz.sampling" / "checkpoint.npz").exists()

    with pytest.raises(ValueError, match=r"arguments differ \(temperature_K: 800.0 .* 300.0 now"):
        sample(copper(), FailingEMT(), output=out, seed=4, **{**RUN, "temperature_K": 300.0})
    with pytest.raises(ValueError, match="arguments differ.*seed"):
        sample(copper(), FailingEMT(), output=out, seed=5, **RUN)
    with pytest.raises(FileExistsError, match="unfinished run"):
        sample(copper(), FailingEMT(), output=out, seed=4, resume=False, **RUN)

    resumed = sample(copper(), FailingEMT(), output=out, seed=4, **RUN)
    straight = sample(copper(), FailingEMT(), output=tmp_path / "straight.npz", seed=4, **RUN)
    np.testing.assert_array_equal(resumed.positions, straight.positions)
    np.testing.assert_array_equal(resumed.energies, straight.energies)


def test_overwrite_discards_an_unfinished_run_with_other_arguments(tmp_path):
    out = tmp_path / "cu.npz"
    with pytest.raises(RuntimeError):
        sample(copper(), FailingEMT(fail_after=25), output=out, seed=4, **RUN)
    fresh = sample(copper(), "emt", output=out, seed=9, overwrite=True, **RUN)
    assert fresh.metadata["sampling"]["sessions"] == 1 and fresh.metadata["sampling"]["seed"] == 9


def test_non_finite_forces_stop_the_run(tmp_path):
    out = tmp_path / "cu.npz"
    with pytest.raises(RuntimeError, match="non-finite energy, forces or positions at MD step"):
        sample(copper(), NaNAfterEMT(nan_after=20), output=out, **RUN)
    assert not out.exists()
    frames = np.fromfile(tmp_path / "cu.npz.sampling" / "frames.f64")
    assert np.all(np.isfinite(frames))  # nothing from the bad steps was written


def test_runaway_temperature_stops_the_run(tmp_path):
    with pytest.raises(RuntimeError, match="kinetic temperature ran away"):
        sample(copper(), HeatingEMT(), output=tmp_path / "cu.npz", **{**RUN, "n_frames": 200})
    assert not (tmp_path / "cu.npz").exists()


def test_runaway_threshold_allows_for_small_systems():
    assert runaway_temperature(500.0, 300) == pytest.approx(2500.0)
    # three degrees of freedom exceed 5x their mean with probability ~2e-3 per step:
    # far too often for a guard, so the limit is raised
    assert runaway_temperature(500.0, 3) > 10 * 500.0


def test_sample_with_a_separate_labelling_method(tmp_path):
    ds = sample(copper(), "emt", label_calculator=lennard_jones(), output=tmp_path / "cu.npz", **RUN)
    assert ds.level_of_theory == "lennardjones"
    assert ds.metadata["sampling"]["md_level_of_theory"] == "EMT"
    frame = ds.atoms(5)
    frame.calc = lennard_jones()
    assert ds.energies[5] == pytest.approx(frame.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(ds.forces[5], frame.get_forces(), atol=1e-12)
    same_md = sample(copper(), "emt", output=tmp_path / "emt.npz", **RUN)
    np.testing.assert_array_equal(ds.positions, same_md.positions)  # labelling does not steer MD


def test_relabel_a_dataset_with_another_calculator(tmp_path):
    ds = sample(copper(), "emt", output=tmp_path / "cu.npz", **RUN)
    sub = ds[2:6]
    relabelled = label(sub, lennard_jones(), progress=False)
    assert relabelled.level_of_theory == "lennardjones"
    np.testing.assert_array_equal(relabelled.positions, sub.positions)
    np.testing.assert_array_equal(relabelled.source_indices, [2, 3, 4, 5])
    assert relabelled.metadata["labels"]["level_of_theory"] == "lennardjones"
    assert relabelled.metadata["sampling"] == ds.metadata["sampling"]
    for i in range(len(sub)):
        frame = sub.atoms(i)
        frame.calc = lennard_jones()
        assert relabelled.energies[i] == pytest.approx(frame.get_potential_energy(), abs=1e-12)
    # a list of Atoms and a method name work too; EMT gives back the original labels
    again = label(sub.to_atoms(), "emt", progress=False)
    np.testing.assert_allclose(again.energies, sub.energies, atol=1e-10)
    np.testing.assert_allclose(again.forces, sub.forces, atol=1e-10)


def test_label_refuses_non_finite_results():
    atoms = copper()
    with pytest.raises(ValueError, match="non-finite energy or force for frame 0"):
        label([atoms], NaNAfterEMT(nan_after=0), progress=False)


def test_cli_generate(tmp_path, capsys):
    structure = tmp_path / "cu.extxyz"
    copper().write(structure)
    out = tmp_path / "cu.npz"
    argv = ["data", "generate", "--structure", str(structure), "--method", "emt",
            "--temperature", "600", "--timestep", "2", "--stride", "2", "--frames", "5",
            "--equilibration", "4", "--seed", "7", "-o", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    ds = mlffkit.load(out)
    assert len(ds) == 5 and ds.metadata["sampling"]["seed"] == 7
    assert "wrote" in capsys.readouterr().out
    assert cli_main(argv) == 2  # exists: refused, one clean error line
    assert "--overwrite" in capsys.readouterr().err
    bad = ["data", "generate", "--molecule", "H2O", "--method", "emt", "--temperature", "300",
           "--stride", "2", "--frames", "2", "-o", str(tmp_path / "w.npz")]
    assert cli_main(bad) == 2
    assert "EMT has no physical parameters" in capsys.readouterr().err


@pytest.mark.slow
def test_bundled_copper_is_what_its_recipe_makes(tmp_path, monkeypatch):
    """The first frames of data/cu_vacancy_emt.npz come back when its recipe is run again."""
    import importlib.util

    from mlffkit.config import bundled_data_dir

    path = bundled_data_dir() / "make_datasets.py"
    if not (bundled_data_dir() / "cu_vacancy_emt.npz").exists() or not path.exists():
        pytest.skip("needs the data/ folder of a source checkout")
    spec = importlib.util.spec_from_file_location("make_datasets", path)
    recipes = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_datasets", recipes)  # dataclasses look it up
    spec.loader.exec_module(recipes)
    r = recipes.RECIPES["cu_vacancy"]
    again = sample(r.build(), r.method, n_frames=3, stride=r.stride, temperature_K=r.temperature_K,
                   timestep_fs=r.timestep_fs, equilibration_steps=r.equilibration_steps,
                   seed=r.seed, output=tmp_path / "cu.npz", progress=False)
    bundled = mlffkit.load("cu_vacancy")[:3]
    # equal up to the last digits that another BLAS or CPU may change
    np.testing.assert_allclose(again.positions, bundled.positions, rtol=0, atol=1e-8)
    np.testing.assert_allclose(again.forces, bundled.forces, rtol=0, atol=1e-8)
