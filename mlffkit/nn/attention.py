"""Geometric attention (Frank & Chmiela, arXiv:2106.02549, "GeomAtt").

Attention without queries and keys from the atom features: the weights come from
the geometry alone, and they are *many-body*.

**Pair attention.** Each atom is seen through learned functions of distance. The
query of atom :math:`n` sits at the atom itself (distance 0), so it is one constant
vector, and the query–key inner product reduces to a learned filter of the
distance, one value per channel :math:`f = 1..C`:

.. math:: a_f(r) = \\sum_k W_{fk}\\, e_k(r), \\qquad
          e_k(r) = \\exp\\!\\big(-\\gamma (r - \\mu_k)^2\\big).

For each channel this gives a symmetric matrix over the atoms of a molecule,
:math:`[\\mathbf A_f]_{nm} = a_f(r_{nm})` for :math:`n \\neq m` and zero on the
diagonal (an atom's attention to itself would be a constant, carrying no geometry;
the residual update below keeps each atom's own features instead).

**Order k.** The order-:math:`k` attention sums over walks of :math:`k-1` hops
from :math:`n` to :math:`m`, multiplying the filters of the hops channel by channel
before averaging over the channels:

.. math:: \\mathbf A^{(k)} = \\frac1C \\sum_{f=1}^{C} \\mathbf A_f^{\\,k-1}, \\qquad
   A^{(3)}_{nm} = \\frac1C \\sum_f \\sum_i a_f(r_{ni})\\, a_f(r_{im}), \\quad
   A^{(4)}_{nm} = \\frac1C \\sum_f \\sum_{i,j} a_f(r_{ni})\\, a_f(r_{ij})\\, a_f(r_{jm}).

Order 2 weighs pairs; order 3 lets atom :math:`n` see the distances *between* its
neighbours, i.e. the bond angles at :math:`n`; order 4 reaches the distances
between the neighbours of its neighbours and their neighbours, i.e. torsions about
the bonds next to :math:`n` (see :mod:`mlffkit.nn.attention_toys`). With one filter
per channel shared by all hops (the paper's ``shared`` setting, used for its MD17
results) every :math:`\\mathbf A^{(k)}` is symmetric. The diagonal of orders
:math:`\\ge 3` holds the walks that return to their start.

**Updates and energy.** There is one *stream* of atom features per order. Each
starts from a learned embedding of the element, :math:`x_n^0 = e_{Z_n}`, and is
updated ``n_layers`` times by the attention-weighted sum, linearly as in the paper,

.. math:: \\mathbf x^{l+1}_n = \\mathbf x^l_n + \\sum_m A^{(k,l)}_{nm}\\,
          \\mathbf V^{(k,l)} \\mathbf x^l_m ,

with its own filters :math:`W^{(k,l)}` in every layer. The final features of all
streams are concatenated and an atom-wise network
(``Linear → shifted softplus → Linear``) gives each atom's energy contribution.

**Choices where the paper or its code leave room.**

* No softmax: as in the paper the weights are not normalised. A softmax over all
  atoms would make an atom's attention depend on how many atoms there are, so a
  distant molecule would change the energy of another.
* No cutoff and no neighbour list: every pair of a molecule enters. The filters
  have no bias, so pair attention fades (as a Gaussian) beyond the last centre
  ``r_max`` instead of keeping a constant value for all distant pairs as the
  reference code's bias does; separated fragments then do not interact and their
  energies add. Longer range comes from the walks of orders 3 and 4.
* The constant query of the paper is folded into the filter (with shared filters it
  only rescales the channels), and the channel sum is an average, which fixes the
  scale of the attention at initialisation independently of ``C``.
* Self-pairs are left out (zero diagonal of :math:`\\mathbf A_f`; the reference
  code includes the distance 0).

Each molecule's matrices are built densely (molecules of a batch padded to the
largest), so orders 3 and 4 are batched matrix products: :math:`O(B N^3 C)` per
layer, cheap for the small molecules the model is meant for. Periodic cells are not
supported (infinitely many pairs without a cutoff).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from torch import Tensor, nn

from mlffkit import properties
from mlffkit.nn.graph import AtomicGraph
from mlffkit.nn.layers import GaussianRBF, mlp
from mlffkit.nn.potential import ATOMIC_ENERGIES, N_ELEMENTS, Potential

#: keys of what :meth:`GeometricAttentionPotential.atomic_outputs` puts into ``extras``
ATTENTION = "attention"
LAYER_FEATURES = "layer_features"
FEATURES = "features"

_PERIODIC_MESSAGE = (
    "geometric attention has no cutoff and works on molecules only: a periodic cell has "
    "infinitely many pairs. For a molecule in a box set atoms.pbc = False; for materials "
    "use a model with a cutoff (SchNet)"
)


@dataclass(frozen=True)
class DenseLayout:
    """Where the atoms and pairs of a batch go in padded per-molecule arrays.

    Only the pairs ``i < j`` are evaluated; each fills both ``(i, j)`` and
    ``(j, i)``, which halves the work and makes the matrices exactly symmetric.
    This needs the full list of ordered pairs of every molecule, as
    :func:`~mlffkit.nn.neighbor_list` gives with ``cutoff=None``.

    Attributes
    ----------
    n_graphs : int
        Molecules in the batch (``B``).
    size : int
        Atoms of the largest molecule (``N``); smaller ones are padded with zeros.
    atom_slot : Tensor, int64, shape (n_atoms,)
        Row of each atom in a ``(B * N, ...)`` array.
    pairs : Tensor, int64, shape (n_pairs,)
        The edges ``i < j`` (indices into the graph's edge list).
    pair_slots : Tensor, int64, shape (2 * n_pairs,)
        Entries ``(i, j)`` then ``(j, i)`` of those pairs in a ``(B * N * N, ...)`` array.
    """

    n_graphs: int
    size: int
    atom_slot: Tensor
    pairs: Tensor
    pair_slots: Tensor

    @classmethod
    def of(cls, graph: AtomicGraph) -> DenseLayout:
        n_atoms = graph.n_atoms
        size = int(n_atoms.max())
        first = torch.cumsum(n_atoms, 0) - n_atoms
        local = torch.arange(graph.numbers.shape[0], device=graph.device) - first[graph.batch]
        atom_slot = graph.batch * size + local
        i, j = graph.edge_index
        pairs = torch.nonzero(i < j).squeeze(1)
        i, j = i[pairs], j[pairs]
        pair_slots = torch.cat([atom_slot[i] * size + local[j], atom_slot[j] * size + local[i]])
        return cls(graph.n_graphs, size, atom_slot, pairs, pair_slots)

    def pad_atoms(self, values: Tensor) -> Tensor:
        """``(n_atoms, F)`` → ``(B, N, F)``, zeros in the padding."""
        out = values.new_zeros((self.n_graphs * self.size, values.shape[1]))
        return out.index_add_(0, self.atom_slot, values).view(self.n_graphs, self.size, -1)

    def unpad_atoms(self, padded: Tensor) -> Tensor:
        """``(B, N, F)`` → ``(n_atoms, F)``."""
        return padded.reshape(self.n_graphs * self.size, -1)[self.atom_slot]

    def pad_pairs(self, values: Tensor) -> Tensor:
        """``(n_pairs, C)`` values of the pairs ``i < j`` → symmetric ``(B, C, N, N)``.

        Zeros on the diagonal and in the padding; contiguous with the channels
        first, so that per-channel matrix products run as one batched product.
        """
        n = self.size
        out = values.new_zeros((self.n_graphs * n * n, values.shape[1]))
        out = out.index_add_(0, self.pair_slots, torch.cat([values, values]))
        return out.view(self.n_graphs, n, n, -1).permute(0, 3, 1, 2).contiguous()


class GeometricAttentionLayer(nn.Module):
    """One update of one order's stream: attention from the distances, then ``x + A V x``.

    Parameters
    ----------
    order : int
        ``k >= 2``: walks of ``k - 1`` hops.
    n_features : int
        Width of the atom features.
    n_rbf : int
        Number of Gaussians of the distance expansion.
    n_channels : int
        Channels ``C`` of the attention filter.
    """

    def __init__(self, order: int, n_features: int, n_rbf: int, n_channels: int):
        super().__init__()
        self.order = int(order)
        # no bias: attention vanishes with the Gaussians beyond r_max (see module docs)
        self.filter = nn.Linear(n_rbf, n_channels, bias=False)
        self.value = nn.Linear(n_features, n_features)

    def attention(self, rbf: Tensor, layout: DenseLayout) -> Tensor:
        """Expanded distances of the pairs ``i < j``, ``(n_pairs, n_rbf)`` → ``(B, N, N)``."""
        channels = layout.pad_pairs(self.filter(rbf))  # (B, C, N, N)
        if self.order == 2:
            return channels.mean(dim=1)
        walks = channels
        for _ in range(self.order - 3):
            walks = walks @ channels  # per channel: walks of order - 2 hops
        # the last hop and the channel average in one product: sum over (f, j) of
        # walks[b, f, n, j] * channels[b, f, j, m]
        b, c, n, _ = channels.shape
        left = walks.transpose(1, 2).reshape(b, n, c * n)
        return (left @ channels.reshape(b, c * n, n)) / c

    def forward(self, x: Tensor, attention: Tensor, layout: DenseLayout) -> Tensor:
        """Features ``(n_atoms, F)`` after the update ``x + A V x``."""
        messages = attention @ layout.pad_atoms(self.value(x))
        return x + layout.unpad_atoms(messages)


class GeometricAttentionPotential(Potential):
    """Geometric attention (GeomAtt) as a :class:`~mlffkit.nn.Potential` for molecules.

    Parameters
    ----------
    orders : sequence of int
        Attention orders, each ``>= 2``, one feature stream each (paper: 2, 3, 4).
    n_features : int
        Width of the atom features of each stream (paper: 64).
    n_layers : int
        Attention updates per stream (paper: 2).
    n_rbf : int
        Gaussians of the distance expansion, centred evenly on ``[0, r_max]``
        (paper: 50, 0.1 Å apart).
    r_max : float
        Last Gaussian centre, Å (paper: 4.9). Not a cutoff: pair attention fades
        beyond it within about ``1/sqrt(gamma)``, and walks reach further.
    gamma : float
        Width parameter of the Gaussians, Å⁻² (paper: 10).
    n_channels : int or None
        Channels ``C`` of the attention filters (paper: 64); None: ``n_features``.

    Notes
    -----
    ``extras`` (when passed to :meth:`forward`) receives, without gradients:

    * ``"attention"``: one dict per layer, ``{order: Tensor (B, N, N)}``, the
      attention matrices of each molecule padded to the largest (``N`` atoms; rows
      and columns beyond a molecule's atoms are zero); :func:`attention_blocks`
      cuts them into per-molecule matrices.
    * ``"layer_features"``: one dict per layer, ``{order: Tensor (n_atoms, F)}``,
      the stream's features after that layer.
    * ``"features"``: the concatenated final features ``(n_atoms, len(orders) F)``.

    Examples
    --------
    >>> from ase.build import molecule
    >>> potential = GeometricAttentionPotential(n_features=16, n_layers=1)
    >>> result = potential.interpret(molecule("CH3CH2OH"))
    >>> result.matrix(layer=0, order=3).shape
    (9, 9)
    """

    cutoff = None

    def __init__(
        self,
        orders=(2, 3, 4),
        n_features: int = 64,
        n_layers: int = 2,
        n_rbf: int = 50,
        r_max: float = 4.9,
        gamma: float = 10.0,
        n_channels: int | None = None,
    ):
        super().__init__()
        orders = tuple(int(k) for k in orders)
        if not orders or any(k < 2 for k in orders) or len(set(orders)) != len(orders):
            raise ValueError(
                f"orders must be distinct integers >= 2 (2: pairs, 3: angles, 4: torsions), "
                f"got {orders}"
            )
        if n_features < 2 or n_layers < 1:
            raise ValueError("geometric attention needs n_features >= 2 and n_layers >= 1")
        if not r_max > 0 or not gamma > 0:
            raise ValueError(f"r_max (Å) and gamma (Å⁻²) must be positive, got {r_max}, {gamma}")
        n_channels = n_features if n_channels is None else int(n_channels)
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        self.orders = tuple(sorted(orders))
        self.n_layers = int(n_layers)
        self.embedding = nn.Embedding(N_ELEMENTS, n_features)
        self.rbf = GaussianRBF(n_rbf, r_max, gamma)
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    str(k): GeometricAttentionLayer(k, n_features, n_rbf, n_channels)
                    for k in self.orders
                }
            )
            for _ in range(self.n_layers)
        )
        width = len(self.orders) * n_features
        self.readout = mlp([width, width // 2, 1])

    def atomic_outputs(self, graph: AtomicGraph, vectors: Tensor, extras: dict | None) -> Tensor:
        if bool(graph.pbc.any()):
            raise ValueError(_PERIODIC_MESSAGE)
        layout = DenseLayout.of(graph)
        rbf = self.rbf(vectors[layout.pairs].norm(dim=1))
        start = self.embedding(graph.numbers)
        streams = {k: start for k in self.orders}
        attention_record, feature_record = [], []
        for layer in self.layers:
            attention_of_layer = {}
            for k in self.orders:
                block = layer[str(k)]
                attention = block.attention(rbf, layout)
                streams[k] = block(streams[k], attention, layout)
                attention_of_layer[k] = attention.detach()
            attention_record.append(attention_of_layer)
            feature_record.append({k: x.detach() for k, x in streams.items()})
        features = torch.cat([streams[k] for k in self.orders], dim=1)
        if extras is not None:
            extras[ATTENTION] = attention_record
            extras[LAYER_FEATURES] = feature_record
            extras[FEATURES] = features.detach()
        return self.readout(features).squeeze(-1)

    def interpret(self, atoms: Atoms) -> AttentionResult:
        """Attention matrices, atomic energies, energy and forces of one molecule.

        Parameters
        ----------
        atoms : ase.Atoms
            A molecule (no periodic directions); positions in Å.

        Returns
        -------
        AttentionResult
        """
        from mlffkit.nn.data import graph_from_atoms

        if not isinstance(atoms, Atoms):
            raise ValueError(f"interpret takes one ase.Atoms, got {type(atoms).__name__}")
        if atoms.pbc.any():
            raise ValueError(_PERIODIC_MESSAGE)
        device, dtype = self.energy_scale.device, self.energy_scale.dtype
        graph = graph_from_atoms(atoms, None, device, dtype)
        extras: dict = {}
        out = self(graph, forces=True, extras=extras)

        def numpy(t: Tensor) -> np.ndarray:
            return t.detach().cpu().double().numpy()

        attention = tuple({k: numpy(a[0]) for k, a in layer.items()} for layer in extras[ATTENTION])
        return AttentionResult(
            numbers=atoms.numbers.copy(),
            positions=atoms.get_positions(),
            attention=attention,
            atomic_energies=numpy(out[ATOMIC_ENERGIES]),
            reference_energies=numpy(self.energy_offsets[graph.numbers]),
            energy=float(out[properties.ENERGY].detach()[0]),
            forces=numpy(out[properties.FORCES]),
        )


def attention_blocks(attention: list[dict[int, Tensor]], n_atoms) -> list[list[dict[int, Tensor]]]:
    """Cut padded batch attention (``extras["attention"]``) into per-molecule matrices.

    Parameters
    ----------
    attention : list of dict
        One dict per layer, ``{order: Tensor (B, N, N)}``.
    n_atoms : sequence of int or Tensor, shape (B,)
        Atoms of each molecule (``graph.n_atoms``).

    Returns
    -------
    list
        ``blocks[b][layer][order]``: the ``(n_b, n_b)`` matrix of molecule ``b``.
    """
    sizes = [int(n) for n in n_atoms]
    return [
        [{k: a[b, :n, :n] for k, a in layer.items()} for layer in attention]
        for b, n in enumerate(sizes)
    ]


@dataclass(frozen=True)
class AttentionResult:
    """What a geometric attention model makes of one molecule (eV, Å).

    Attributes
    ----------
    numbers : numpy.ndarray, int, shape (n_atoms,)
        Atomic numbers.
    positions : numpy.ndarray, shape (n_atoms, 3)
        Positions, Å.
    attention : tuple of dict
        One dict per layer, ``{order: ndarray (n_atoms, n_atoms)}``; row ``n`` is
        the attention of atom ``n`` to the others.
    atomic_energies : numpy.ndarray, shape (n_atoms,)
        Energy contributions of the atoms, eV; they sum to ``energy``.
    reference_energies : numpy.ndarray, shape (n_atoms,)
        The per-element offsets ``E0[Z]`` (eV) included in ``atomic_energies``.
    energy : float
        Total energy, eV.
    forces : numpy.ndarray, shape (n_atoms, 3)
        eV/Å.
    """

    numbers: np.ndarray
    positions: np.ndarray
    attention: tuple
    atomic_energies: np.ndarray
    reference_energies: np.ndarray
    energy: float
    forces: np.ndarray

    @property
    def symbols(self) -> list[str]:
        """Element symbols of the atoms."""
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in self.numbers]

    @property
    def n_layers(self) -> int:
        return len(self.attention)

    @property
    def orders(self) -> tuple[int, ...]:
        return tuple(self.attention[0])

    @property
    def interaction_energies(self) -> np.ndarray:
        """``atomic_energies - reference_energies`` (eV): what the geometry adds to each atom."""
        return self.atomic_energies - self.reference_energies

    def matrix(self, layer: int, order: int, symmetrize: bool = False) -> np.ndarray:
        """The ``(n_atoms, n_atoms)`` attention of ``layer`` (0-based) and ``order``.

        ``symmetrize=True`` returns ``(A + Aᵀ) / 2`` (the matrices of
        :class:`GeometricAttentionPotential` are symmetric already).
        """
        if not 0 <= int(layer) < self.n_layers:
            raise ValueError(
                f"layer {layer} does not exist; layers run from 0 to {self.n_layers - 1}"
            )
        if order not in self.attention[layer]:
            raise ValueError(f"order {order} is not one of the model's orders {self.orders}")
        a = self.attention[layer][order]
        return 0.5 * (a + a.T) if symmetrize else a.copy()
