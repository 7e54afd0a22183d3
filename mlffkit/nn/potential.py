"""The part every mlffkit network shares: atomic energies in, energy, forces and stress out.

A :class:`Potential` subclass only says how to turn a graph into one number per
atom. The base class scales and shifts those numbers with statistics of the
training data (a per-element energy offset, and a scale set from the force
magnitudes), sums them per structure, and differentiates:

.. math::
    E = \\sum_i \\big( s\\, \\varepsilon_i + E^{0}_{Z_i} \\big), \\qquad
    \\mathbf F_i = -\\frac{\\partial E}{\\partial \\mathbf R_i}, \\qquad
    \\sigma = \\frac{1}{V} \\frac{\\partial E}{\\partial \\epsilon}

where :math:`\\epsilon` is a symmetric strain applied to positions and cell
(ASE's sign convention: positive stress pulls the cell inwards).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mlffkit import properties
from mlffkit.nn.graph import AtomicGraph
from mlffkit.nn.layers import scatter_sum

#: size of per-element tables (atomic numbers 0..118)
N_ELEMENTS = 119
#: key of the per-atom energies in a Potential's output, eV
ATOMIC_ENERGIES = "atomic_energies"


class Potential(nn.Module):
    """Base class: a network that gives atomic energies, made into a force field.

    Subclasses set ``self.cutoff`` (Å, or None for all pairs of a molecule) and
    implement :meth:`atomic_outputs`.

    Buffers
    -------
    energy_offsets : Tensor, shape (119,)
        Energy of each element's atom, eV, added to its contribution.
    energy_scale : Tensor, shape ()
        Scale of the network's output, eV.
    """

    cutoff: float | None = None

    def __init__(self):
        super().__init__()
        self.register_buffer("energy_offsets", torch.zeros(N_ELEMENTS))
        self.register_buffer("energy_scale", torch.ones(()))

    # ------------------------------------------------------------------ subclass API
    def atomic_outputs(self, graph: AtomicGraph, vectors: Tensor, extras: dict | None) -> Tensor:
        """Unscaled per-atom outputs ``(n_atoms,)`` from the graph and its edge vectors.

        Parameters
        ----------
        graph : AtomicGraph
        vectors : Tensor, shape (n_edges, 3)
            Edge vectors ``R_j - R_i (+ S C)``, Å; differentiate through these.
        extras : dict or None
            When a dict, the model may store intermediate results in it (attention
            matrices, features) for analysis.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ statistics
    @torch.no_grad()
    def set_energy_statistics(self, offsets: Tensor, scale: float) -> None:
        """Set the per-element offsets ``(119,)`` (eV) and the output scale (eV)."""
        self.energy_offsets.copy_(torch.as_tensor(offsets, dtype=self.energy_offsets.dtype))
        self.energy_scale.fill_(float(scale))

    # ------------------------------------------------------------------ evaluation
    def energy_and_forces(self, graph: AtomicGraph, stress: bool = False) -> dict[str, Tensor]:
        """Energies, forces (and stress) for prediction and MD: results without autograd graph.

        Same outputs and units as :meth:`forward` with ``forces=True``. Subclasses may
        override it with a faster route than autograd (SchNet does); training always
        goes through :meth:`forward`.
        """
        out = self(graph, forces=True, stress=stress)
        return {k: v.detach() for k, v in out.items()}

    def forward(
        self,
        graph: AtomicGraph,
        forces: bool = True,
        stress: bool = False,
        create_graph: bool = False,
        extras: dict | None = None,
    ) -> dict[str, Tensor]:
        """Energies (and forces, stress) of every structure of the graph.

        Parameters
        ----------
        graph : AtomicGraph
        forces : bool
            Compute forces ``-dE/dR``.
        stress : bool
            Compute the stress of periodic structures (all three directions periodic).
        create_graph : bool
            Keep the graph of the derivatives, to train on forces.
        extras : dict, optional
            Filled with model-specific intermediate results.

        Returns
        -------
        dict
            ``"energy"`` ``(n_graphs,)`` eV, ``"atomic_energies"`` ``(n_atoms,)`` eV
            (both float64 whatever the network's dtype),
            ``"forces"`` ``(n_atoms, 3)`` eV/Å, ``"stress"`` ``(n_graphs, 6)`` eV/Å³ in
            Voigt order xx, yy, zz, yz, xz, xy.
        """
        grad_enabled = forces or stress or torch.is_grad_enabled()
        with torch.set_grad_enabled(grad_enabled):
            positions, cell = graph.positions, graph.cell
            if forces:
                positions = positions.detach().requires_grad_(True)
            leaf_positions = positions
            strain = None
            if stress:
                if not bool(graph.pbc.all()):
                    raise ValueError(
                        "stress is defined for structures periodic in all three directions; "
                        "ask for energies and forces only (stress=False) for molecules and slabs"
                    )
                # at zero strain d/d(strained R) = d/dR, so the forces need no correction
                strain = torch.zeros_like(cell, requires_grad=True)
                sym = 0.5 * (strain + strain.transpose(1, 2))
                positions = positions + torch.einsum("ai,aij->aj", positions, sym[graph.batch])
                cell = cell + torch.einsum("gki,gij->gkj", cell, sym)
            vectors = graph.edge_vectors(positions, cell)
            outputs = self.atomic_outputs(graph, vectors, extras)
            # The offsets are large (thousands of eV for MD17's totals) and the
            # geometry-dependent part is small: add them in float64, so that float32
            # networks do not round total energies to float32's step at that size.
            atomic = (outputs * self.energy_scale).double() + self.energy_offsets[
                graph.numbers
            ].double()
            energy = scatter_sum(atomic, graph.batch, graph.n_graphs)
        result = {properties.ENERGY: energy, ATOMIC_ENERGIES: atomic}
        wrt = []
        if forces:
            wrt.append(leaf_positions)
        if strain is not None:
            wrt.append(strain)
        if wrt:
            grads = torch.autograd.grad(
                energy.sum(), wrt, create_graph=create_graph, allow_unused=True
            )
            grads = [
                torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt, strict=True)
            ]
            if forces:
                result[properties.FORCES] = -grads[0]
            if strain is not None:
                volume = torch.linalg.det(graph.cell).abs()
                s = grads[-1] / volume[:, None, None]
                result[properties.STRESS] = torch.stack(
                    [s[:, 0, 0], s[:, 1, 1], s[:, 2, 2], s[:, 1, 2], s[:, 0, 2], s[:, 0, 1]], dim=1
                )
        return result
