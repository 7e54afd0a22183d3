"""Frames with their neighbour lists, batched into :class:`AtomicGraph` objects.

Neighbour lists of the training frames are computed once, when a
:class:`GraphData` is built (as SchNetPack caches them); a batch is then a few
index operations on tensors that already sit on the training device.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from torch import Tensor
from tqdm.auto import tqdm

from mlffkit.data.dataset import Dataset
from mlffkit.nn.graph import AtomicGraph
from mlffkit.nn.neighbors import neighbor_list


def _ranges(starts: Tensor, counts: Tensor) -> Tensor:
    """Concatenated ``arange(s, s + c)`` for every ``(s, c)``, without a Python loop."""
    total = int(counts.sum())
    ends = torch.cumsum(counts, 0)
    offsets = torch.repeat_interleave(starts - (ends - counts), counts, output_size=total)
    return offsets + torch.arange(total, device=starts.device)


def graph_from_atoms(
    atoms: Atoms, cutoff: float | None, device="cpu", dtype: torch.dtype = torch.float32
) -> AtomicGraph:
    """One structure as an :class:`AtomicGraph` (the fast path for MD and single predictions).

    Parameters
    ----------
    atoms : ase.Atoms
        Positions in Å; cell and pbc are used when any direction is periodic.
    cutoff : float or None
        Neighbour cutoff, Å (None: all pairs of a molecule).
    device, dtype
        Where the tensors go and the floating-point type.
    """
    positions = atoms.get_positions()
    pbc = np.asarray(atoms.pbc, dtype=bool)
    periodic = bool(pbc.any())
    cell = atoms.cell.array if periodic else None
    i, j, shifts = neighbor_list(positions, cutoff, cell, pbc)
    n = len(atoms)
    # small per-structure tensors made with few calls: this runs at every MD step
    info = atoms.info
    counts = torch.tensor(
        [[n], [int(info.get("charge", 0))], [int(info.get("spin", 0))]], device=device
    )
    if periodic:
        cell_t = torch.as_tensor(cell, dtype=dtype, device=device)[None]
        shifts_t = torch.as_tensor(shifts, dtype=dtype, device=device)
    else:
        cell_t = torch.zeros((1, 3, 3), dtype=dtype, device=device)
        shifts_t = torch.zeros((len(i), 3), dtype=dtype, device=device)
    return AtomicGraph(
        numbers=torch.as_tensor(atoms.numbers, dtype=torch.int64, device=device),
        positions=torch.as_tensor(positions, dtype=dtype, device=device),
        batch=torch.zeros(n, dtype=torch.int64, device=device),
        edge_index=torch.as_tensor(np.stack([i, j]), device=device),
        cell_shifts=shifts_t,
        cell=cell_t,
        pbc=torch.as_tensor(pbc, device=device)[None],
        n_atoms=counts[0],
        charge=counts[1],
        spin=counts[2],
    )


class GraphData:
    """The frames of a :class:`~mlffkit.data.Dataset` with precomputed neighbour lists.

    Parameters
    ----------
    dataset : Dataset
        Frames (molecules or periodic cells, of any sizes), eV and Å.
    cutoff : float or None
        Neighbour cutoff, Å; None connects all pairs (molecules only).
    device : str or torch.device
        Where the tensors live (batches are cut there, without host copies).
    dtype : torch.dtype
        Floating-point type of positions, cells and labels.
    progress : bool
        Show a progress bar while the neighbour lists are computed.

    Attributes
    ----------
    n_frames : int
    has_energies, has_forces : bool
    """

    def __init__(
        self,
        dataset: Dataset,
        cutoff: float | None,
        device="cpu",
        dtype: torch.dtype = torch.float32,
        progress: bool = False,
    ):
        self.cutoff = cutoff
        self.device = torch.device(device)
        self.dtype = dtype
        n_frames = len(dataset)
        positions = dataset.flat_positions
        offsets = np.concatenate([[0], np.cumsum(dataset.n_atoms)])
        cells = dataset.cell if dataset.cell is not None else np.zeros((n_frames, 3, 3))
        edges, shifts, n_edges = [], [], np.zeros(n_frames, np.int64)
        for f in tqdm(range(n_frames), desc="neighbour lists", disable=not progress, leave=False):
            i, j, s = neighbor_list(
                positions[offsets[f] : offsets[f + 1]], cutoff, cells[f], dataset.pbc[f]
            )
            edges.append(np.stack([i, j]))
            shifts.append(s)
            n_edges[f] = len(i)

        def put(array, dtype=None):  # a copy: never a view of the Dataset's arrays
            return torch.tensor(np.asarray(array), dtype=dtype, device=self.device)

        self.n_frames = n_frames
        self.numbers = put(dataset.flat_numbers, torch.int64)
        self.positions = put(positions, dtype)
        self.forces = None if dataset.flat_forces is None else put(dataset.flat_forces, dtype)
        # float64: total energies are large, their differences small
        self.energies = None if dataset.energies is None else put(dataset.energies, torch.float64)
        self.cell = put(cells, dtype)
        self.pbc = put(dataset.pbc, torch.bool)
        self.charge = put(dataset.charge, torch.int64)
        self.spin = put(dataset.spin, torch.int64)
        self.n_atoms = put(dataset.n_atoms, torch.int64)
        self.atom_offsets = put(offsets[:-1], torch.int64)
        self.n_edges = put(n_edges, torch.int64)
        self.edge_offsets = put(np.concatenate([[0], np.cumsum(n_edges)[:-1]]), torch.int64)
        self.edge_index = put(np.concatenate(edges, axis=1), torch.int64)
        self.cell_shifts = put(np.concatenate(shifts), dtype)

    def __len__(self) -> int:
        return self.n_frames

    @property
    def has_energies(self) -> bool:
        return self.energies is not None

    @property
    def has_forces(self) -> bool:
        return self.forces is not None

    def batch(self, frames) -> tuple[AtomicGraph, dict[str, Tensor]]:
        """Frames ``frames`` as one graph, with their labels.

        Parameters
        ----------
        frames : sequence of int or Tensor
            Frame indices.

        Returns
        -------
        graph : AtomicGraph
        targets : dict
            ``"energy"`` ``(n_graphs,)`` eV (float64) and ``"forces"`` ``(n_atoms, 3)`` eV/Å,
            where the dataset has them.
        """
        frames = torch.as_tensor(frames, dtype=torch.int64, device=self.device)
        n_atoms = self.n_atoms[frames]
        n_edges = self.n_edges[frames]
        atoms = _ranges(self.atom_offsets[frames], n_atoms)
        edges = _ranges(self.edge_offsets[frames], n_edges)
        # local atom indices of each frame's edges become indices into the batch
        new_offsets = torch.cumsum(n_atoms, 0) - n_atoms
        edge_shift = torch.repeat_interleave(new_offsets, n_edges, output_size=edges.shape[0])
        graph = AtomicGraph(
            numbers=self.numbers[atoms],
            positions=self.positions[atoms],
            batch=torch.repeat_interleave(
                torch.arange(len(frames), device=self.device), n_atoms, output_size=atoms.shape[0]
            ),
            edge_index=self.edge_index[:, edges] + edge_shift,
            cell_shifts=self.cell_shifts[edges],
            cell=self.cell[frames],
            pbc=self.pbc[frames],
            n_atoms=n_atoms,
            charge=self.charge[frames],
            spin=self.spin[frames],
        )
        targets = {}
        if self.energies is not None:
            targets["energy"] = self.energies[frames]
        if self.forces is not None:
            targets["forces"] = self.forces[atoms]
        return graph, targets
