"""Reference methods that label structures: GFN2/GFN1-xTB (tblite), EMT (ASE) and DFT (PySCF).

Every method is an ASE calculator, so it plugs into ASE's dynamics and optimisers and
into :mod:`mlffkit.sampling`. Energies are in eV and forces in eV/Å, as everywhere in
mlffkit. Charge and spin follow :class:`mlffkit.data.Dataset`: ``charge`` in elementary
charges and ``spin`` the number of unpaired electrons (2S).

>>> from ase.build import molecule                      # doctest: +SKIP
>>> atoms = molecule("CH3CH2OH")                        # doctest: +SKIP
>>> atoms.calc = get_calculator("gfn2")                 # doctest: +SKIP
>>> atoms.get_forces().shape                            # doctest: +SKIP
(9, 3)
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import (
    CalculationFailed,
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)
from ase.calculators.emt import EMT

try:  # optional engine: pip install "mlffkit[reference]"
    from tblite.ase import TBLite as _TBLite
except ImportError:
    _TBLite = None

#: Elements for which ASE's EMT parameters describe the real metal (Jacobsen et al. 1996).
EMT_METALS = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")

# canonical method -> (engine package, pip extra that installs it)
_ENGINES = {
    "gfn2": ("tblite", "reference"),
    "gfn1": ("tblite", "reference"),
    "emt": ("ase", None),
    "pyscf": ("pyscf", "dft"),
}
_ALIASES = {
    "gfn2": "gfn2",
    "gfn2-xtb": "gfn2",
    "gfn2xtb": "gfn2",
    "gfn1": "gfn1",
    "gfn1-xtb": "gfn1",
    "gfn1xtb": "gfn1",
    "emt": "emt",
    "pyscf": "pyscf",
    "dft": "pyscf",
}
_TBLITE_NAMES = {"gfn2": "GFN2-xTB", "gfn1": "GFN1-xTB"}

#: SCF accuracy handed to tblite. Its default (1.0) leaves force errors of ~1e-4 eV/Å
#: against the converged SCF; 0.1 brings them to ~3e-5 eV/Å for 5-10 % more time.
TBLITE_ACCURACY = 0.1
#: Electronic (Fermi smearing) temperature for tblite, K: the value GFN-xTB was fitted with.
TBLITE_ELECTRONIC_TEMPERATURE_K = 300.0


def _package_version(package: str) -> str | None:
    """Installed version of ``package``, or None when it cannot be imported."""
    if importlib.util.find_spec(package) is None:
        return None
    try:
        return version(package)
    except PackageNotFoundError:  # importable but not installed as a distribution
        return "unknown"


def available_engines() -> dict[str, str | None]:
    """Reference engines that can be imported, with their versions.

    Returns
    -------
    dict
        ``{"tblite": ..., "ase-emt": ..., "pyscf": ..., "openmm": ...}``: the version
        string of each engine, or None when it is not installed. tblite provides
        GFN2-xTB and GFN1-xTB, ASE's EMT is always there, PySCF provides DFT and
        OpenMM classical force fields.
    """
    return {
        "tblite": _package_version("tblite"),
        "ase-emt": _package_version("ase"),
        "pyscf": _package_version("pyscf"),
        "openmm": _package_version("openmm"),
    }


def canonical_method(method: str) -> str:
    """The canonical name (``"gfn2"``, ``"gfn1"``, ``"emt"``, ``"pyscf"``) of ``method``.

    Raises
    ------
    ValueError
        For an unknown method, listing the known ones.
    """
    key = str(method).strip().lower().replace("_", "-")
    if key not in _ALIASES:
        raise ValueError(
            f"unknown reference method {method!r}; use one of {sorted(_ENGINES)} "
            "(gfn2 and gfn1 are GFN-xTB via tblite, emt is ASE's EMT for fcc metals, "
            "pyscf or dft is DFT via PySCF)"
        )
    return _ALIASES[key]


def level_of_theory_name(method: str, **kwargs) -> str:
    """The level of theory that ``method`` computes, for data cards and ``Dataset.level_of_theory``.

    Parameters
    ----------
    method : str
        A method name accepted by :func:`get_calculator`.
    **kwargs
        ``xc`` and ``basis`` for DFT (defaults ``"PBE"`` and ``"def2-SVP"``).

    Examples
    --------
    >>> level_of_theory_name("gfn2")
    'GFN2-xTB'
    >>> level_of_theory_name("dft", xc="B3LYP", basis="def2-TZVP")
    'B3LYP/def2-TZVP'
    """
    name = canonical_method(method)
    if name in _TBLITE_NAMES:
        return _TBLITE_NAMES[name]
    if name == "emt":
        return "EMT"
    return f"{kwargs.get('xc', 'PBE')}/{kwargs.get('basis', 'def2-SVP')}"


def engine_version(method: str) -> str | None:
    """Version of the package that computes ``method`` (None when it is not installed)."""
    return _package_version(_ENGINES[canonical_method(method)][0])


def _require_engine(method: str) -> None:
    package, extra = _ENGINES[method]
    if _package_version(package) is None:
        raise ImportError(
            f"method {method!r} needs {package}, which is not installed; "
            f'install it with: pip install "mlffkit[{extra}]"'
        )


def _charge_spin(atoms: Atoms | None, charge: int | None, spin: int | None) -> tuple[int, int]:
    """Charge and unpaired electrons: the arguments, else ``atoms.info``, else neutral singlet."""
    info = atoms.info if atoms is not None else {}
    charge = int(info.get("charge", 0) if charge is None else charge)
    spin = int(info.get("spin", 0) if spin is None else spin)
    if spin < 0:
        raise ValueError(f"spin is the number of unpaired electrons (2S) and cannot be negative, got {spin}")
    return charge, spin


def get_calculator(
    method: str,
    atoms: Atoms | None = None,
    *,
    charge: int | None = None,
    spin: int | None = None,
    **kwargs,
) -> Calculator:
    """An ASE calculator for a reference method.

    Parameters
    ----------
    method : str
        ``"gfn2"`` / ``"GFN2-xTB"`` and ``"gfn1"`` (tblite), ``"emt"`` (ASE; fcc metals
        only), ``"pyscf"`` / ``"dft"`` (PySCF Kohn–Sham DFT). Case does not matter.
    atoms : ase.Atoms, optional
        The structure the calculator is for. Its ``info["charge"]`` and ``info["spin"]``
        are used when ``charge``/``spin`` are not given, and for EMT its elements are
        checked now rather than at the first calculation.
    charge : int, optional
        Total charge in elementary charges (default: ``atoms.info`` or 0).
    spin : int, optional
        Number of unpaired electrons, 2S (default: ``atoms.info`` or 0).
    **kwargs
        Passed to the engine: e.g. ``accuracy`` or ``electronic_temperature`` for tblite,
        ``xc``, ``basis`` for PySCF.

    Returns
    -------
    ase.calculators.calculator.Calculator

    Raises
    ------
    ValueError
        For an unknown method, or EMT asked for elements it has no physical parameters for.
    ImportError
        When the engine is not installed (the message names the pip extra).
    """
    name = canonical_method(method)
    _require_engine(name)
    if name == "emt":
        if atoms is not None:
            FCCMetalEMT.check_elements(atoms)
        return FCCMetalEMT(**kwargs)
    charge, spin = _charge_spin(atoms, charge, spin)
    if name == "pyscf":
        return PySCFCalculator(charge=charge, spin=spin, **kwargs)
    return GeometryOnlyTBLite(
        method=_TBLITE_NAMES[name], charge=charge, multiplicity=spin + 1, **kwargs
    )


class FCCMetalEMT(EMT):
    """ASE's EMT, refusing elements whose EMT parameters are not physical.

    ASE ships EMT parameters for H, C, N and O only so that its tests can run; they
    describe no real molecule. EMT is a model of the fcc metals Al, Ni, Cu, Pd, Ag,
    Pt and Au (Jacobsen, Stoltze, Nørskov, Surf. Sci. 366, 394 (1996)).
    """

    @staticmethod
    def check_elements(atoms: Atoms) -> None:
        """Raise ValueError unless every atom is one of :data:`EMT_METALS`."""
        bad = sorted(set(atoms.get_chemical_symbols()) - set(EMT_METALS))
        if bad:
            raise ValueError(
                f"EMT has no physical parameters for {', '.join(bad)}: ASE's EMT values for H, C, "
                "N and O exist for its tests only and describe no real molecule. EMT is meant for "
                f"the fcc metals {', '.join(EMT_METALS)}; for molecules use method='gfn2' (tblite) "
                "or 'pyscf' (DFT)"
            )

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        self.check_elements(atoms if atoms is not None else self.atoms)
        super().calculate(atoms, properties, system_changes)


if _TBLite is not None:

    class GeometryOnlyTBLite(_TBLite):
        """tblite's ASE calculator (GFN2-xTB, GFN1-xTB) whose results depend on the geometry only.

        tblite starts each SCF from the previous wavefunction, so a result depends on the
        path that led to a geometry, at the level of the SCF tolerance (~1e-4 eV/Å in the
        forces with tblite's default accuracy). This subclass starts every SCF from the same
        guess (superposition of atomic densities), for 15-35 % more time: a label is then a
        function of the geometry alone, relabelling reproduces it, and a resumed MD run
        retraces the uninterrupted one. Bit for bit with one thread (``OMP_NUM_THREADS=1``);
        with several, tblite's OpenMP sums vary in order at the 1e-15 level.

        Defaults: ``verbosity=0``, ``accuracy=TBLITE_ACCURACY`` (0.1) and
        ``electronic_temperature=300`` K. Other keywords are those of ``tblite.ase.TBLite``
        (``method``, ``charge``, ``multiplicity``, ...).
        """

        def __init__(self, atoms: Atoms | None = None, **kwargs):
            kwargs.setdefault("verbosity", 0)
            kwargs.setdefault("accuracy", TBLITE_ACCURACY)
            kwargs.setdefault("electronic_temperature", TBLITE_ELECTRONIC_TEMPERATURE_K)
            super().__init__(atoms=atoms, **kwargs)

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            self._res = None  # tblite's restart wavefunction: drop it, start from the guess
            super().calculate(atoms, properties, system_changes)


class PySCFCalculator(Calculator):
    """Kohn–Sham DFT with PySCF as an ASE calculator: energy (eV) and analytic forces (eV/Å).

    Restricted Kohn–Sham for closed shells (``spin=0``), unrestricted otherwise. Molecules
    only (no periodic cell). The SCF is converged tightly and the gradient includes the
    response of the integration grid, so that the forces are the derivative of the
    energy (which a force field learning from both needs).

    Parameters
    ----------
    xc : str, default "PBE"
        Exchange–correlation functional in PySCF/libxc syntax ("PBE", "B3LYP", "HF", ...).
    basis : str, default "def2-SVP"
        Basis set name known to PySCF.
    charge : int, default 0
        Total charge, elementary charges.
    spin : int, default 0
        Number of unpaired electrons (2S), PySCF's ``spin``.
    conv_tol : float, default 1e-10
        SCF energy convergence threshold, Hartree.
    grid_level : int, default 3
        PySCF's DFT integration grid level (0–9).
    max_memory_mb : int, default 4000
        Memory PySCF may use, MB.

    Examples
    --------
    >>> from ase.build import molecule                    # doctest: +SKIP
    >>> water = molecule("H2O")                           # doctest: +SKIP
    >>> water.calc = PySCFCalculator(basis="sto-3g")      # doctest: +SKIP
    >>> water.get_potential_energy()                      # doctest: +SKIP
    -2053.2...
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    default_parameters = {
        "xc": "PBE",
        "basis": "def2-SVP",
        "charge": 0,
        "spin": 0,
        "conv_tol": 1e-10,
        "grid_level": 3,
        "max_memory_mb": 4000,
    }

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.atoms.pbc.any():
            raise PropertyNotImplementedError(
                "PySCFCalculator handles molecules only; this structure is periodic. "
                "Use method='gfn2' (tblite supports cells) or EMT for fcc metals"
            )
        from pyscf import dft, gto  # imported here: importing PySCF takes seconds

        p = self.parameters
        mol = gto.M(
            atom=list(zip(self.atoms.get_chemical_symbols(), self.atoms.positions.tolist(), strict=True)),
            unit="Angstrom",
            basis=p.basis,
            charge=int(p.charge),
            spin=int(p.spin),
            verbose=0,
            max_memory=p.max_memory_mb,
        )
        mf = dft.RKS(mol) if p.spin == 0 else dft.UKS(mol)
        mf.xc = p.xc
        mf.conv_tol = p.conv_tol
        mf.grids.level = p.grid_level
        energy = mf.kernel()
        if not mf.converged:
            raise CalculationFailed(
                f"PySCF SCF did not converge ({p.xc}/{p.basis}); check the geometry, charge "
                "and spin, or loosen conv_tol"
            )
        grad = mf.nuc_grad_method()
        grad.grid_response = True
        gradient = grad.kernel()  # Hartree/Bohr
        self.results["energy"] = self.results["free_energy"] = float(energy) * units.Hartree
        self.results["forces"] = -np.asarray(gradient) * (units.Hartree / units.Bohr)


def calculator_provenance(calc: Calculator) -> dict:
    """What a calculator computes, for provenance records: level of theory, engine, parameters.

    Returns
    -------
    dict
        ``level_of_theory`` (e.g. ``"GFN2-xTB"``, ``"EMT"``, ``"PBE/def2-SVP"``),
        ``calculator`` (class name), ``engine`` and ``engine_version`` (package that
        computes it), and ``parameters`` (the calculator's parameters, JSON-friendly).
    """
    cls = type(calc).__name__
    params = dict(getattr(calc, "parameters", {}) or {})
    if _TBLite is not None and isinstance(calc, _TBLite):
        level, engine = str(params.get("method", "GFN2-xTB")), "tblite"
    elif isinstance(calc, EMT):
        level, engine = "EMT", "ase"
    elif isinstance(calc, PySCFCalculator):
        level, engine = f"{params['xc']}/{params['basis']}", "pyscf"
    else:
        level = getattr(calc, "level_of_theory", None) or getattr(calc, "name", cls)
        level, engine = str(level), type(calc).__module__.split(".")[0]
    return {
        "level_of_theory": level,
        "calculator": cls,
        "engine": engine,
        "engine_version": _package_version(engine),
        "parameters": {k: _jsonable(v) for k, v in sorted(params.items())},
    }


def _jsonable(value):
    """A JSON-friendly stand-in for a parameter value (type name for opaque objects)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return type(value).__name__
