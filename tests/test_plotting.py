"""Dataset and MD plots: figures drawn, units on the axes, histograms hold every value."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from ase.build import molecule  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402

from mlffkit import units  # noqa: E402
from mlffkit.data import Dataset  # noqa: E402
from mlffkit.plotting import (  # noqa: E402
    plot_dataset_overview,
    plot_energy_distribution,
    plot_force_distribution,
    plot_md_energies,
    relative_energies,
    save_figure,
)

N_FRAMES = 40


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def ethanol():
    rng = np.random.default_rng(0)
    atoms = molecule("CH3CH2OH")
    n = len(atoms)
    positions = atoms.positions + 0.02 * rng.normal(size=(N_FRAMES, n, 3))
    energies = -950.0 + 0.05 * rng.normal(size=N_FRAMES)
    forces = rng.normal(size=(N_FRAMES, n, 3))
    return Dataset(
        atoms.numbers, positions, energies, forces, name="ethanol", level_of_theory="test"
    )


def bar_heights(ax):
    return np.array([p.get_height() for p in ax.patches])


def test_energy_distribution_counts_every_frame_in_kcal_mol(ethanol):
    fig = plot_energy_distribution(ethanol, unit="kcal/mol")
    (ax,) = fig.axes
    assert bar_heights(ax).sum() == N_FRAMES
    assert ax.get_xlabel() == "E − ⟨E⟩ / kcal/mol"
    assert ax.get_ylabel() == "frames"
    # the x range is that of the relative energies in kcal/mol, not eV
    rel = (ethanol.energies - ethanol.energies.mean()) / units.KCAL_PER_MOL
    left = min(p.get_x() for p in ax.patches)
    right = max(p.get_x() + p.get_width() for p in ax.patches)
    assert np.isclose(left, rel.min()) and np.isclose(right, rel.max())


def test_energy_distribution_draws_into_given_axes(ethanol):
    fig, (ax0, ax1) = plt.subplots(1, 2)
    assert plot_energy_distribution(ethanol, ax=ax1, unit="meV") is fig
    assert not ax0.patches and bar_heights(ax1).sum() == N_FRAMES
    assert ax1.get_xlabel().endswith("/ meV")


def test_relative_energies_per_composition():
    water, methane = molecule("H2O"), molecule("CH4")
    ds = Dataset.concatenate(
        [
            Dataset(water.numbers, [water.positions] * 2, [-10.0, -12.0]),
            Dataset(methane.numbers, [methane.positions] * 3, [-50.0, -51.0, -52.0]),
        ]
    )
    rel, per_composition = relative_energies(ds)
    assert per_composition
    assert np.allclose(rel, [1.0, -1.0, 1.0, 0.0, -1.0])
    assert "per composition" in plot_energy_distribution(ds).axes[0].get_xlabel()


def test_force_distribution_counts_components_and_atoms_per_element(ethanol):
    fig = plot_force_distribution(ethanol, unit="meV")
    ax_comp, ax_norm = fig.axes
    n_atoms = ethanol.flat_numbers.size
    assert bar_heights(ax_comp).sum() == 3 * n_atoms
    assert ax_comp.get_xlabel() == "force component F_x, F_y, F_z / (meV/Å)"
    steps = [p for p in ax_norm.patches if isinstance(p, StepPatch)]
    by_element = {p.get_label(): p.get_data().values.sum() for p in steps}
    # ethanol: 2 C, 6 H, 1 O in each of the frames
    assert by_element == {"C": 2 * N_FRAMES, "H": 6 * N_FRAMES, "O": N_FRAMES}
    assert ax_norm.get_xlabel() == "|F| per atom / (meV/Å)"
    # meV: the largest |F| bin edge is 1000 times the eV value
    assert np.isclose(
        steps[0].get_data().edges[-1], 1e3 * np.linalg.norm(ethanol.flat_forces, axis=1).max()
    )


def test_overview_panels_follow_what_the_dataset_has(ethanol):
    fig = plot_dataset_overview(ethanol, unit="kcal/mol")
    assert len(fig.axes) == 4
    assert fig.axes[0].get_xlabel() == "frame"
    assert fig.axes[0].get_ylabel() == "E − ⟨E⟩ / kcal/mol"
    assert "ethanol" in fig.get_suptitle() and "40 frames" in fig.get_suptitle()
    no_forces = Dataset(ethanol.numbers, ethanol.positions, ethanol.energies)
    assert len(plot_dataset_overview(no_forces).axes) == 2
    bare = Dataset(ethanol.numbers, ethanol.positions, name="bare")
    with pytest.raises(ValueError, match="neither energies nor forces"):
        plot_dataset_overview(bare)
    with pytest.raises(ValueError, match="has no forces"):
        plot_force_distribution(bare)
    with pytest.raises(ValueError, match="unknown energy unit"):
        plot_energy_distribution(ethanol, unit="kcal")


def test_md_energies_shifts_epot_and_etot_together():
    t = np.arange(5) * 0.5
    epot = np.array([-10.0, -10.2, -10.1, -9.9, -10.0])
    ekin = np.array([0.3, 0.5, 0.4, 0.2, 0.3])
    fig = plot_md_energies(t, epot, ekin=ekin, temperature=300 + np.arange(5), unit="meV")
    ax_e, ax_t = fig.axes
    lines = {line.get_label(): line.get_ydata() for line in ax_e.get_lines()}
    assert np.allclose(lines["E_pot − E_pot(0)"], (epot - epot[0]) * 1e3)
    assert np.allclose(lines["E_kin"], ekin * 1e3)
    # E_tot defaults to E_pot + E_kin and still adds up on the plot
    assert np.allclose(lines["E_tot − E_pot(0)"], lines["E_pot − E_pot(0)"] + lines["E_kin"])
    assert ax_e.get_ylabel() == "energy / meV"
    assert ax_t.get_ylabel() == "T / K" and ax_t.get_xlabel() == "time / fs"
    assert len(plot_md_energies(t, epot).axes) == 1


def test_md_energies_bad_input():
    t = np.arange(4.0)
    with pytest.raises(ValueError, match=r"ekin has shape \(3,\); expected \(4,\)"):
        plot_md_energies(t, np.zeros(4), ekin=np.zeros(3))
    with pytest.raises(ValueError, match="NaN or inf values \\(first at index 2\\)"):
        plot_md_energies(t, [0.0, 1.0, np.nan, 2.0])


def test_save_figure_is_atomic_and_never_overwrites(ethanol, tmp_path):
    fig = plot_energy_distribution(ethanol)
    path = save_figure(fig, tmp_path / "energies.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_figure(fig, path)
    svg = save_figure(fig, tmp_path / "energies.svg")
    assert b"<svg" in svg.read_bytes()[:500]
    save_figure(fig, path, overwrite=True)
    with pytest.raises(ValueError, match="cannot tell an image format"):
        save_figure(fig, tmp_path / "energies.dat")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["energies.png", "energies.svg"]
