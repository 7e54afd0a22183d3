"""MD runner and stability monitor: energy conservation, thermostat, files, and failure detection."""

from __future__ import annotations

import warnings

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import CalculationFailed, Calculator, all_changes
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron
from ase.constraints import FixCom
from ase.optimize import BFGS

from mlffkit.md import (
    InstabilityError,
    InstabilityWarning,
    MDResult,
    StabilityMonitor,
    run_md,
)


@pytest.fixture(scope="module")
def cu13() -> Atoms:
    """A relaxed 13-atom Cu icosahedron (EMT minimum): NVE from it equipartitions cleanly."""
    atoms = Icosahedron("Cu", 2)
    atoms.calc = EMT()
    BFGS(atoms, logfile=None).run(fmax=1e-4)
    atoms.calc = None
    return atoms


def quiet_md(*args, **kwargs) -> MDResult:
    kwargs.setdefault("progress", False)
    return run_md(*args, **kwargs)


# --------------------------------------------------------------------------- broken calculators
class NaNAfter(EMT):
    """EMT whose forces turn NaN from its ``k``-th call on (call 0 is the starting structure,
    call n the force evaluation of MD step n)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.calls >= self.k:
            self.results["forces"] = np.full_like(self.results["forces"], np.nan)
        self.calls += 1


class RaiseAfter(EMT):
    """EMT that raises ``error`` at its ``k``-th call (the force call of MD step ``k``)."""

    def __init__(self, k: int, error: BaseException):
        super().__init__()
        self.k, self.error, self.calls = k, error, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if self.calls == self.k:
            raise self.error
        self.calls += 1
        super().calculate(atoms, properties, system_changes)


class Heater(EMT):
    """EMT plus negative friction, F += gamma m v: a non-conservative model that heats up."""

    def __init__(self, gamma_per_fs: float = 0.02):
        super().__init__()
        self.gamma = gamma_per_fs / units.fs

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results["forces"] = self.results["forces"] + self.gamma * self.atoms.get_momenta()


class Puller(Calculator):
    """EMT for all atoms but atom 0, which feels only a constant pull along ``direction``
    (eV/Å): it leaves the cluster slowly, without heating the rest."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, direction, pull_eV_per_A: float = 0.2):
        super().__init__()
        self.pull = pull_eV_per_A * np.asarray(direction) / np.linalg.norm(direction)
        self.emt = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        rest = self.atoms[1:]
        rest.calc = self.emt
        forces = np.zeros((len(self.atoms), 3))
        forces[1:] = rest.get_forces()
        forces[0] = self.pull
        self.results["energy"] = rest.get_potential_energy() - self.pull @ self.atoms.positions[0]
        self.results["forces"] = forces


# --------------------------------------------------------------------------- NVE / NVT physics
def test_nve_conserves_energy_with_second_order_error(cu13):
    """Velocity Verlet: tiny fluctuation at small dt, growing as dt**2; a big dt breaks it."""
    drift = {}
    for dt in (1.0, 2.0, 10.0):
        res = quiet_md(cu13, EMT(), ensemble="nve", steps=int(400 / dt), timestep_fs=dt, interval=2)
        assert res.stable
        drift[dt] = res.energy_drift()
    assert res.temperature_K == 300
    assert drift[1.0].max_deviation_meV_per_atom < 0.02
    assert abs(drift[1.0].slope_meV_per_atom_per_ps) < 0.01
    # a second-order integrator: doubling dt quadruples the energy error (first order: x2)
    ratio = drift[2.0].max_deviation_meV_per_atom / drift[1.0].max_deviation_meV_per_atom
    assert 3.0 < ratio < 5.5
    assert drift[10.0].max_deviation_meV_per_atom > 20 * drift[1.0].max_deviation_meV_per_atom


def test_nve_starts_at_the_requested_temperature_and_equipartitions(cu13):
    res = quiet_md(cu13, EMT(), ensemble="nve", steps=1000, timestep_fs=2.0, interval=5)
    assert res.temperature[0] == pytest.approx(300.0, rel=1e-9)
    # from a minimum, kinetic energy is shared with the (harmonic) potential energy: T -> T0 / 2
    assert 110 < res.temperature[50:].mean() < 190
    assert "drift" in res.summary()


def test_nvt_thermalises_to_target_from_rest(cu13):
    res = quiet_md(
        cu13,
        EMT(),
        ensemble="nvt",
        steps=1000,
        timestep_fs=2.0,
        temperature_K=300,
        friction_per_fs=0.1,
        init_velocities=False,
        interval=5,
        seed=1,
    )
    assert res.temperature[0] == 0.0
    assert res.stable
    # 160 nearly independent samples after 400 fs: the mean is within a few percent
    assert res.temperature[40:].mean() == pytest.approx(300, rel=0.12)
    with pytest.raises(ValueError, match="NVE only"):
        res.energy_drift()


def test_same_seed_same_trajectory_other_seed_differs(cu13):
    a = quiet_md(cu13, EMT(), steps=60, timestep_fs=2.0, seed=7)
    b = quiet_md(cu13, EMT(), steps=60, timestep_fs=2.0, seed=7)
    c = quiet_md(cu13, EMT(), steps=60, timestep_fs=2.0, seed=8)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.total_energy, b.total_energy)
    assert not np.allclose(a.positions[-1], c.positions[-1])


def test_input_atoms_untouched_and_run_continues_from_final_state(cu13):
    start = cu13.copy()
    first = quiet_md(cu13, EMT(), ensemble="nve", steps=20, timestep_fs=2.0, interval=20)
    np.testing.assert_array_equal(cu13.positions, start.positions)
    assert not cu13.constraints and cu13.calc is None
    # continuing from final_atoms with its momenta retraces the uninterrupted run
    both = quiet_md(cu13, EMT(), ensemble="nve", steps=40, timestep_fs=2.0, interval=20)
    second = quiet_md(
        first.final_atoms,
        EMT(),
        ensemble="nve",
        steps=20,
        timestep_fs=2.0,
        interval=20,
        init_velocities=False,
    )
    np.testing.assert_allclose(second.positions[-1], both.positions[-1], atol=1e-10)


def test_periodic_bulk_runs_and_records(tmp_path):
    atoms = bulk("Cu", cubic=True).repeat(2)
    res = quiet_md(atoms, EMT(), steps=20, timestep_fs=2.0, interval=10)
    assert res.stable and res.n_frames == 3
    assert res.frames[-1].pbc.all()


# --------------------------------------------------------------------------- files and results
@pytest.mark.parametrize("suffix", [".extxyz", ".traj"])
def test_trajectory_file_has_the_recorded_frames(cu13, tmp_path, suffix):
    path = tmp_path / f"run{suffix}"
    res = quiet_md(cu13, EMT(), steps=25, timestep_fs=2.0, interval=5, trajectory=path)
    assert res.trajectory == path
    frames = ase.io.read(path, ":")
    assert len(frames) == res.n_frames == 25 // 5 + 1
    np.testing.assert_allclose([f.get_potential_energy() for f in frames], res.potential_energy)
    # extended XYZ stores ~8 significant digits
    np.testing.assert_allclose(frames[-1].get_forces(), res.frames[-1].get_forces(), atol=1e-6)
    np.testing.assert_allclose(frames[-1].get_momenta(), res.final_atoms.get_momenta(), atol=1e-6)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_refuses_to_overwrite_unless_asked(cu13, tmp_path):
    path = tmp_path / "run.extxyz"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        quiet_md(cu13, EMT(), steps=5, trajectory=path)
    assert path.read_text() == "precious"
    quiet_md(cu13, EMT(), steps=5, interval=5, trajectory=path, overwrite=True)
    assert len(ase.io.read(path, ":")) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ensemble": "npt"}, "ensemble"),
        ({"steps": -1}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"interval": 0}, "interval"),
        ({"timestep_fs": 0.0}, "timestep"),
        ({"temperature_K": -5.0}, "temperature"),
        ({"trajectory": "run.pdb"}, "extxyz"),
        ({"friction_per_fs": 0.0}, "friction"),
    ],
)
def test_bad_arguments_are_explained(cu13, kwargs, match):
    args = {"steps": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        quiet_md(cu13, EMT(), **args)


def test_no_calculator_and_single_atom_are_refused(cu13):
    with pytest.raises(ValueError, match="calculator"):
        quiet_md(cu13, steps=5)
    with pytest.raises(ValueError, match="repeat"):
        quiet_md(bulk("Cu"), EMT(), steps=5)


def test_to_dataset_and_plot(cu13):
    res = quiet_md(cu13, EMT(), steps=20, timestep_fs=2.0, interval=5)
    ds = res.to_dataset()
    assert len(ds) == res.n_frames
    assert ds.level_of_theory == "EMT"
    np.testing.assert_allclose(ds.energies, res.potential_energy)
    np.testing.assert_allclose(ds.forces[2], res.frames[2].get_forces())
    np.testing.assert_allclose(ds.positions, res.positions)
    assert ds.metadata["frame_spacing_fs"] == 10.0
    fig = res.plot()
    assert len(fig.axes) == 2
    import matplotlib.pyplot as plt

    plt.close(fig)


# --------------------------------------------------------------------------- instability detection
def test_nan_forces_stop_the_run_at_the_step_they_appear(cu13, tmp_path):
    path = tmp_path / "nan.extxyz"
    with pytest.warns(InstabilityWarning, match="step 7"):
        res = quiet_md(cu13, NaNAfter(k=7), steps=50, timestep_fs=2.0, interval=5, trajectory=path)
    assert not res.stable
    assert res.failure.reason == "non_finite"
    assert res.failure.details["quantity"] == "forces"
    assert (res.failure.step, res.failure.time_fs) == (7, 14.0)
    assert res.n_steps == 7
    # frames before the failure are kept, in the result and the file
    assert list(res.steps) == [0, 5]
    assert len(ase.io.read(path, ":")) == 2
    assert "UNSTABLE" in res.summary()


def test_temperature_runaway_is_caught_when_it_crosses_the_limit(cu13):
    monitor = StabilityMonitor(temperature_factor=5.0)
    with pytest.warns(InstabilityWarning, match="temperature"):
        res = quiet_md(
            cu13, Heater(), steps=600, timestep_fs=2.0, temperature_K=300, monitor=monitor
        )
    assert res.failure.reason == "temperature"
    limit = res.failure.details["limit_K"]
    assert limit == pytest.approx(1500.0)
    assert res.failure.details["temperature_K"] > limit
    # the same run unchecked, recorded every step: the monitor stopped at the first step over
    free = quiet_md(
        cu13, Heater(), steps=res.failure.step, timestep_fs=2.0, monitor=False, interval=1
    )
    first_hot = int(np.argmax(free.temperature > limit))
    assert res.failure.step == first_hot > 0
    assert res.failure.time_fs == pytest.approx(2.0 * first_hot)


def test_leaving_atom_is_caught_as_a_stretched_bond(cu13):
    atoms = cu13.copy()
    atoms.positions[[0, 1]] = atoms.positions[[1, 0]]  # put a surface atom first
    outward = atoms.positions[0] - atoms.get_center_of_mass()
    with pytest.warns(InstabilityWarning, match="bond"):
        res = quiet_md(atoms, Puller(outward), steps=1000, timestep_fs=2.0, temperature_K=100)
    assert res.failure.reason == "bond_stretch"
    d = res.failure.details
    assert 0 in d["atoms"] and d["symbols"] == ("Cu", "Cu")
    assert 2.0 < d["ratio"] < 2.1  # caught as it crossed the limit, not later
    assert d["length_A"] == pytest.approx(d["ratio"] * d["initial_length_A"])
    assert 0 < res.failure.step < 1000
    assert res.temperature.max() < 1500  # nothing else went wrong first


def test_failed_calculation_is_reported_as_a_failure(cu13):
    error = CalculationFailed("SCF did not converge")
    with pytest.warns(InstabilityWarning, match="SCF did not converge"):
        res = quiet_md(cu13, RaiseAfter(12, error), steps=50, interval=5)
    assert res.failure.reason == "calculator_failed"
    assert res.failure.step == 12 and res.n_steps == 11
    assert list(res.steps) == [0, 5, 10]


def test_keyboard_interrupt_keeps_what_was_recorded(cu13, tmp_path):
    path = tmp_path / "stopped.traj"
    with pytest.warns(UserWarning, match="interrupted at step 11"):
        res = quiet_md(
            cu13, RaiseAfter(12, KeyboardInterrupt()), steps=50, interval=5, trajectory=path
        )
    assert res.interrupted and res.stable
    assert len(ase.io.read(path, ":")) == res.n_frames == 3
    assert "interrupted" in res.summary()


def test_raise_on_failure_carries_the_result(cu13):
    monitor = StabilityMonitor(raise_on_failure=True)
    with pytest.raises(InstabilityError) as info:
        quiet_md(cu13, NaNAfter(k=3), steps=20, monitor=monitor)
    assert info.value.event.step == 3
    assert info.value.result.failure is info.value.event


def test_normal_runs_raise_no_false_alarm(cu13):
    with warnings.catch_warnings():
        warnings.simplefilter("error", InstabilityWarning)
        hot = quiet_md(cu13, EMT(), steps=1000, timestep_fs=2.0, temperature_K=800, interval=50)
        dimer = quiet_md(
            Atoms("Cu2", positions=[[0, 0, 0], [2.3, 0, 0]]),
            EMT(),
            steps=1000,
            timestep_fs=2.0,
            temperature_K=300,
            friction_per_fs=0.05,
            interval=50,
        )
    assert hot.stable and dimer.stable


def test_temperature_limit_allows_for_small_system_fluctuations(cu13):
    big = cu13.copy()
    big.set_constraint(FixCom())
    assert StabilityMonitor().start(big, 300.0).temperature_limit_K_ == pytest.approx(1500.0)
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [2.3, 0, 0]], constraint=FixCom())
    # a dimer's 3 degrees of freedom fluctuate beyond 5x T (chi-squared), so the limit rises
    assert StabilityMonitor().start(dimer, 300.0).temperature_limit_K_ > 3000.0
    assert StabilityMonitor(max_temperature_K=700).start(dimer, 300.0).temperature_limit_K_ == 700


def test_bonds_found_across_periodic_boundaries_and_wrapping_is_harmless():
    atoms = bulk("Cu", cubic=True).repeat(2)
    monitor = StabilityMonitor().start(atoms, 300.0)
    assert len(monitor.bonds_) == len(atoms) * 12 // 2  # fcc: 12 nearest neighbours
    np.testing.assert_allclose(monitor.initial_lengths_, 3.61 / np.sqrt(2), atol=0.01)
    moved = atoms.copy()
    moved.positions += [1.3, -0.7, 2.9]
    moved.wrap()
    moved.calc = EMT()
    assert monitor.check(moved, step=1, time_fs=1.0) is None


def test_monitor_settings_are_validated():
    with pytest.raises(ValueError, match="bond_stretch_factor"):
        StabilityMonitor(bond_stretch_factor=0.5)
    with pytest.raises(ValueError, match="temperature_factor"):
        StabilityMonitor(temperature_factor=1.0)
    with pytest.raises(ValueError, match="check_every"):
        StabilityMonitor(check_every=0)
    with pytest.raises(TypeError, match="monitor"):
        run_md(Atoms("Cu2", positions=[[0, 0, 0], [2.3, 0, 0]]), EMT(), steps=1, monitor="yes")


@pytest.mark.reference
def test_ethanol_at_500K_with_gfn2_is_not_flagged():
    pytest.importorskip("tblite")
    from ase.build import molecule

    from mlffkit.reference import get_calculator

    atoms = molecule("CH3CH2OH")
    with warnings.catch_warnings():
        warnings.simplefilter("error", InstabilityWarning)
        res = quiet_md(
            atoms,
            get_calculator("gfn2", atoms),
            steps=200,
            timestep_fs=0.5,
            temperature_K=500,
            interval=10,
        )
    assert res.stable
    assert res.level_of_theory == "GFN2-xTB"
    assert len(StabilityMonitor().start(atoms, 500.0).bonds_) == 8  # ethanol's 8 bonds
