"""Reference methods: engine discovery, method names, EMT's guard, tblite and PySCF forces."""

import ase
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from mlffkit import reference
from mlffkit.reference import (
    available_engines,
    calculator_provenance,
    get_calculator,
    level_of_theory_name,
)


def finite_difference_forces(atoms, calc, coords, h=1e-3):
    """-dE/dx by central differences for the (atom, axis) pairs in ``coords``, eV/Å."""
    out = []
    for i, k in coords:
        energies = []
        for sign in (1, -1):
            probe = atoms.copy()
            probe.positions[i, k] += sign * h
            probe.calc = calc
            energies.append(probe.get_potential_energy())
        out.append(-(energies[0] - energies[1]) / (2 * h))
    return np.array(out)


def test_available_engines_reports_versions():
    engines = available_engines()
    assert set(engines) == {"tblite", "ase-emt", "pyscf", "openmm"}
    assert engines["ase-emt"] == ase.__version__
    for package in ("tblite", "pyscf", "openmm"):
        try:
            __import__(package)
            importable = True
        except ImportError:
            importable = False
        assert (engines[package] is not None) == importable


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown reference method 'b3lyp-d3'.*gfn2.*pyscf"):
        get_calculator("b3lyp-d3")


def test_method_names_are_case_insensitive_and_named():
    assert level_of_theory_name("GFN2-xTB") == "GFN2-xTB"
    assert level_of_theory_name("gfn1") == "GFN1-xTB"
    assert level_of_theory_name("EMT") == "EMT"
    assert level_of_theory_name("dft") == "PBE/def2-SVP"
    assert level_of_theory_name("pyscf", xc="B3LYP", basis="cc-pVDZ") == "B3LYP/cc-pVDZ"


@pytest.mark.parametrize("structure", [molecule("H2O"), molecule("CH3CH2OH")])
def test_emt_refuses_molecules(structure):
    with pytest.raises(ValueError, match="EMT has no physical parameters for .*H.*gfn2"):
        get_calculator("emt", structure)
    # also when the structure is only seen at the first calculation
    structure.calc = get_calculator("emt")
    with pytest.raises(ValueError, match="EMT has no physical parameters"):
        structure.get_potential_energy()


def test_emt_on_a_metal_is_ase_emt():
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=1)
    cu.calc = get_calculator("emt", cu)
    ref = cu.copy()
    ref.calc = EMT()
    assert cu.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(cu.get_forces(), ref.get_forces(), atol=1e-12)
    assert calculator_provenance(cu.calc)["level_of_theory"] == "EMT"


def test_missing_engine_names_the_pip_extra(monkeypatch):
    real = reference._package_version
    monkeypatch.setattr(reference, "_package_version", lambda pkg: None if pkg == "pyscf" else real(pkg))
    with pytest.raises(ImportError, match=r'pip install "mlffkit\[dft\]"'):
        get_calculator("pyscf")
    monkeypatch.setattr(reference, "_package_version", lambda pkg: None if pkg == "tblite" else real(pkg))
    with pytest.raises(ImportError, match=r'pip install "mlffkit\[reference\]"'):
        get_calculator("gfn2")


@pytest.mark.reference
def test_gfn2_forces_are_the_energy_gradient():
    pytest.importorskip("tblite")
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=3)
    calc = get_calculator("gfn2")
    atoms.calc = calc
    forces = atoms.get_forces()
    coords = [(0, 0), (2, 1), (3, 2), (8, 0)]  # C, O and H atoms
    fd = finite_difference_forces(atoms, calc, coords)
    np.testing.assert_allclose(fd, [forces[i, k] for i, k in coords], atol=2e-4)
    assert calculator_provenance(calc)["level_of_theory"] == "GFN2-xTB"


@pytest.mark.reference
def test_gfn2_labels_depend_on_the_geometry_only():
    pytest.importorskip("tblite")
    target = molecule("CH3CH2OH")
    target.rattle(0.05, seed=4)
    fresh = target.copy()
    fresh.calc = get_calculator("gfn2")
    walked = molecule("CH3CH2OH")  # reaches the same geometry after another calculation
    walked.calc = get_calculator("gfn2")
    walked.get_forces()
    walked.positions = target.positions
    # tblite's own restart would leave ~1e-4 eV/Å; what is left is the summation order of
    # its OpenMP threads (exactly zero with OMP_NUM_THREADS=1)
    np.testing.assert_allclose(walked.get_forces(), fresh.get_forces(), rtol=0, atol=1e-10)
    assert walked.get_potential_energy() == pytest.approx(fresh.get_potential_energy(), abs=1e-10)


@pytest.mark.reference
def test_gfn2_takes_charge_and_spin_from_atoms_info():
    pytest.importorskip("tblite")
    methyl = molecule("CH3")
    methyl.info["spin"] = 1
    calc = get_calculator("gfn2", methyl)
    assert calc.parameters.multiplicity == 2 and calc.parameters.charge == 0
    cation = get_calculator("gfn2", methyl, charge=1, spin=0)
    assert cation.parameters.charge == 1 and cation.parameters.multiplicity == 1
    methyl.calc = calc
    radical = methyl.get_potential_energy()
    methyl.calc = cation
    assert methyl.get_potential_energy() > radical + 5.0  # ionising costs several eV


@pytest.mark.reference
@pytest.mark.slow
def test_pyscf_energy_and_forces():
    pyscf = pytest.importorskip("pyscf")
    from pyscf import dft, gto

    water = molecule("H2O")
    water.positions[0] += [0.02, -0.03, 0.04]
    calc = get_calculator("pyscf", xc="PBE", basis="sto-3g")
    water.calc = calc
    energy = water.get_potential_energy()

    mol = gto.M(atom=list(zip(water.get_chemical_symbols(), water.positions.tolist(), strict=True)),
                unit="Angstrom", basis="sto-3g", verbose=0)
    mf = dft.RKS(mol)
    mf.xc = "PBE"
    mf.conv_tol = 1e-10
    assert energy == pytest.approx(mf.kernel() * ase.units.Hartree, abs=1e-6)

    forces = water.get_forces()
    coords = [(0, 0), (0, 2), (1, 1)]
    fd = finite_difference_forces(water, calc, coords)
    np.testing.assert_allclose(fd, [forces[i, k] for i, k in coords], atol=2e-4)
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-4)  # no net force on a molecule
    assert calculator_provenance(calc)["level_of_theory"] == "PBE/sto-3g"
    assert pyscf.__version__ == calculator_provenance(calc)["engine_version"]

    water.pbc = True
    water.cell = [10, 10, 10]
    with pytest.raises(Exception, match="molecules only"):
        water.get_potential_energy()
