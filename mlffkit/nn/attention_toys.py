"""Toy shapes that show what each order of geometric attention lets an atom see.

After one layer of :class:`~mlffkit.nn.GeometricAttentionPotential`, the order-k
features of atom ``n`` are built from walks of ``k - 1`` hops that start at ``n``,
each hop weighted by a learned function of its length. So atom ``n`` sees

* order 2: its own distances to the others (a radial distribution),
* order 3: also the distances between the atoms it sees, e.g. between two of its
  neighbours, which fixes the bond angle at ``n``,
* order 4: also the distances of the atoms one step further, e.g. the torsion
  about the bond between its neighbour and that neighbour's neighbour.

The two shape families below change one geometric quantity while keeping every
distance from atom 0 fixed, so the single-layer features of atom 0 answer the
question "which order notices?". All atoms are of one element, so the features
carry geometry only. With an attention range about one bond (``r_max ≈ bond``),
:func:`bent_triatomic` separates order 3 from order 2, and
:func:`torsion_pentamer` separates order 4 from orders 2 and 3.

>>> from mlffkit.nn import GeometricAttentionPotential
>>> potential = GeometricAttentionPotential(n_features=8, n_layers=1, n_rbf=31, r_max=3.0)
>>> diff = feature_differences(potential, torsion_pentamer(0.0), torsion_pentamer(180.0))
>>> diff[2] < 1e-12 and diff[3] < 1e-3 * diff[4]
True
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from mlffkit.nn.attention import LAYER_FEATURES, GeometricAttentionPotential
from mlffkit.nn.data import graph_from_atoms


def _check_bond(bond: float) -> float:
    bond = float(bond)
    if not bond > 0:
        raise ValueError(f"bond must be a positive length in Å, got {bond}")
    return bond


def bent_triatomic(angle_deg: float, bond: float = 3.0, symbol: str = "H") -> Atoms:
    """Atom 0 with two neighbours at distance ``bond`` and the angle ``angle_deg`` between them.

    The angle changes only the distance between atoms 1 and 2,
    ``2 bond sin(angle/2)``; atom 0's distances stay the same.

    Parameters
    ----------
    angle_deg : float
        Bond angle 1–0–2, degrees, in (0, 180].
    bond : float
        Distance of atoms 1 and 2 from atom 0, Å.
    symbol : str
        Element of all three atoms.

    Returns
    -------
    ase.Atoms
        Three atoms, atom 0 at the origin.
    """
    bond = _check_bond(bond)
    if not 0.0 < angle_deg <= 180.0:
        raise ValueError(f"angle_deg must be in (0, 180], got {angle_deg}")
    half = np.radians(angle_deg) / 2
    positions = [
        [0.0, 0.0, 0.0],
        [bond * np.cos(half), bond * np.sin(half), 0.0],
        [bond * np.cos(half), -bond * np.sin(half), 0.0],
    ]
    return Atoms(symbol * 3, positions=positions)


def torsion_pentamer(torsion_deg: float, bond: float = 3.0, symbol: str = "H") -> Atoms:
    """Five atoms in which a torsion changes nothing that atom 0 or its neighbour sees directly.

    Atoms 0, 1, 2 lie on the x axis, ``bond`` apart; atom 3 is bonded to atom 1 and
    atom 4 to atom 2, both at right angles to the axis. The torsion 3–1–2–4 about
    the bond 1–2 turns atom 4 about the axis: since atoms 0, 1 and 2 lie on it, only
    the distance 3–4 changes, from ``bond`` (0°, cis) to ``sqrt(5) bond`` (180°,
    trans). Atom 0 reaches atom 4's neighbourhood through the walk 0→1→3→4 (three
    hops of length ``bond``: order 4); orders 2 and 3 see the distance 3–4 only
    through hops of ``sqrt(2) bond`` or longer, which an attention range of about
    one bond suppresses.

    Parameters
    ----------
    torsion_deg : float
        Torsion 3–1–2–4, degrees.
    bond : float
        Bond length, Å.
    symbol : str
        Element of all five atoms.

    Returns
    -------
    ase.Atoms
    """
    bond = _check_bond(bond)
    phi = np.radians(float(torsion_deg))
    positions = [
        [0.0, 0.0, 0.0],
        [bond, 0.0, 0.0],
        [2 * bond, 0.0, 0.0],
        [bond, bond, 0.0],
        [2 * bond, bond * np.cos(phi), bond * np.sin(phi)],
    ]
    return Atoms(symbol * 5, positions=positions)


def order_features(
    potential: GeometricAttentionPotential, atoms: Atoms, atom: int = 0, layer: int = 0
) -> dict[int, np.ndarray]:
    """The features of one atom in each order's stream after ``layer`` (0-based).

    Parameters
    ----------
    potential : GeometricAttentionPotential
    atoms : ase.Atoms
        A molecule (Å).
    atom : int
        Index of the atom.
    layer : int
        Layer after which to read the features.

    Returns
    -------
    dict
        ``{order: ndarray (n_features,)}``.
    """
    if not 0 <= atom < len(atoms):
        raise ValueError(f"atom {atom} does not exist; the structure has {len(atoms)} atoms")
    if not 0 <= layer < potential.n_layers:
        raise ValueError(
            f"layer {layer} does not exist; layers run from 0 to {potential.n_layers - 1}"
        )
    device, dtype = potential.energy_scale.device, potential.energy_scale.dtype
    graph = graph_from_atoms(atoms, None, device, dtype)
    extras: dict = {}
    with torch.no_grad():
        potential(graph, forces=False, extras=extras)
    return {k: x[atom].cpu().double().numpy() for k, x in extras[LAYER_FEATURES][layer].items()}


def feature_differences(
    potential: GeometricAttentionPotential, first: Atoms, second: Atoms, atom: int = 0
) -> dict[int, float]:
    """How much two shapes differ in one atom's single-layer features, order by order.

    Returns
    -------
    dict
        ``{order: |x₁ - x₂| / |x₁|}`` for the features ``x`` of ``atom`` after the
        first layer; 0 means the order cannot tell the shapes apart from there.
    """
    a = order_features(potential, first, atom)
    b = order_features(potential, second, atom)
    return {k: float(np.linalg.norm(a[k] - b[k]) / np.linalg.norm(a[k])) for k in a}
