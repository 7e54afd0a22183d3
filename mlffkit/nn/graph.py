"""One graph for a batch of structures: molecules and periodic cells side by side.

Graph neural networks see a batch of structures as one disconnected graph. All
atoms are stacked; ``batch`` says which structure each atom belongs to, and each
edge ``(i, j)`` carries the integer lattice translation ``S`` of its neighbour image,
so that the edge vector is

.. math:: \\mathbf r_{ij} = \\mathbf R_j - \\mathbf R_i + \\mathbf S_{ij}\\,\\mathbf C,

with the cell ``C`` (lattice vectors as rows). Edge vectors are recomputed from the
positions every time, so forces (and, through a strain of the cell, stresses)
follow by automatic differentiation while the neighbour search itself stays outside
the autograd graph.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class AtomicGraph:
    """A batch of atomic structures as one graph (torch tensors on one device).

    Attributes
    ----------
    numbers : Tensor, int64, shape (n_atoms,)
        Atomic numbers of all atoms of all structures.
    positions : Tensor, float, shape (n_atoms, 3)
        Cartesian positions, Å.
    batch : Tensor, int64, shape (n_atoms,)
        Index of the structure each atom belongs to (0 .. n_graphs-1), non-decreasing.
    edge_index : Tensor, int64, shape (2, n_edges)
        Directed edges ``(i, j)``: atom ``i`` receives a message from neighbour ``j``.
    cell_shifts : Tensor, float, shape (n_edges, 3)
        Integer lattice translation of neighbour ``j`` (zeros for molecules).
    cell : Tensor, float, shape (n_graphs, 3, 3)
        Lattice vectors as rows, Å (zeros for molecules).
    pbc : Tensor, bool, shape (n_graphs, 3)
        Periodicity along each lattice vector.
    n_atoms : Tensor, int64, shape (n_graphs,)
        Atoms per structure.
    charge, spin : Tensor, int64, shape (n_graphs,)
        Total charge (e) and number of unpaired electrons per structure.
    """

    numbers: Tensor
    positions: Tensor
    batch: Tensor
    edge_index: Tensor
    cell_shifts: Tensor
    cell: Tensor
    pbc: Tensor
    n_atoms: Tensor
    charge: Tensor
    spin: Tensor

    @property
    def n_graphs(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    def to(self, device=None, dtype: torch.dtype | None = None) -> AtomicGraph:
        """A copy on ``device`` with floating-point tensors in ``dtype``."""
        out = {}
        for f in fields(self):
            t = getattr(self, f.name)
            if t.is_floating_point():
                out[f.name] = t.to(device=device, dtype=dtype)
            else:
                out[f.name] = t.to(device=device)
        return AtomicGraph(**out)

    def with_positions(self, positions: Tensor, cell: Tensor | None = None) -> AtomicGraph:
        """The same graph (same edges) with new positions (and cell)."""
        return replace(self, positions=positions, cell=self.cell if cell is None else cell)

    def edge_vectors(self, positions: Tensor | None = None, cell: Tensor | None = None) -> Tensor:
        """Edge vectors ``R_j - R_i + S_ij C``, Å, shape ``(n_edges, 3)``.

        ``positions`` and ``cell`` default to the graph's own; pass strained or
        gradient-tracking copies to differentiate through them.
        """
        positions = self.positions if positions is None else positions
        cell = self.cell if cell is None else cell
        i, j = self.edge_index
        vectors = positions[j] - positions[i]
        if bool(self.pbc.any()):
            shift = torch.einsum("ek,ekl->el", self.cell_shifts, cell[self.batch[i]])
            vectors = vectors + shift
        return vectors
