"""SchNet: message passing with continuous filters (Schütt et al., NeurIPS 2017; JCP 2018).

Each atom starts from a learned embedding of its element, :math:`x_i^0 = e_{Z_i}`.
An interaction block lets every atom gather from its neighbours through a filter
that is a smooth function of their distance,

.. math::
    x_i \\leftarrow x_i + \\phi\\Big(\\sum_{j \\in \\mathcal N(i)}
        W^{\\text{in}} x_j \\odot W(r_{ij})\\Big), \\qquad
    W(r) = f_c(r)\\, \\mathrm{MLP}\\big(\\mathbf e(r)\\big),

with a Gaussian expansion :math:`\\mathbf e(r)` of the distance, a cosine cutoff
:math:`f_c`, and shifted-softplus activations. After ``n_interactions`` blocks an
atom-wise network maps each :math:`x_i` to the atom's energy contribution.
Distances are all the network sees, so energies are invariant to rotations,
translations and permutations of like atoms, and forces are exact gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mlffkit.nn.graph import AtomicGraph
from mlffkit.nn.layers import (
    CosineCutoff,
    GaussianRBF,
    ShiftedSoftplus,
    mlp,
    scatter_sum,
)
from mlffkit.nn.potential import N_ELEMENTS, Potential
from mlffkit.nn.schnet_forces import PackedSchNet, schnet_energy_forces


class ContinuousFilterConvolution(nn.Module):
    """``y_i = Σ_j x_j ⊙ W(r_ij)`` with a filter network ``W`` of the expanded distance."""

    def __init__(self, n_features: int, n_filters: int, n_rbf: int):
        super().__init__()
        self.filter_network = mlp([n_rbf, n_filters, n_filters])
        self.n_filters = n_filters

    def forward(self, x: Tensor, rbf: Tensor, envelope: Tensor, edge_index: Tensor) -> Tensor:
        i, j = edge_index
        w = self.filter_network(rbf) * envelope[:, None]
        return scatter_sum(x[j] * w, i, x.shape[0])


class SchNetInteraction(nn.Module):
    """One interaction block: atom-wise in, continuous-filter convolution, atom-wise out."""

    def __init__(self, n_features: int, n_filters: int, n_rbf: int):
        super().__init__()
        self.in_to_filters = nn.Linear(n_features, n_filters, bias=False)
        self.convolution = ContinuousFilterConvolution(n_features, n_filters, n_rbf)
        self.filters_to_out = nn.Sequential(
            nn.Linear(n_filters, n_features), ShiftedSoftplus(), nn.Linear(n_features, n_features)
        )

    def forward(self, x: Tensor, rbf: Tensor, envelope: Tensor, edge_index: Tensor) -> Tensor:
        """The update ``v_i`` (added to ``x_i`` by the caller)."""
        h = self.convolution(self.in_to_filters(x), rbf, envelope, edge_index)
        return self.filters_to_out(h)


class SchNetPotential(Potential):
    """SchNet as a :class:`~mlffkit.nn.Potential` (energies, forces, stress).

    Parameters
    ----------
    n_features : int
        Width of the atom features (paper: 64).
    n_interactions : int
        Number of interaction blocks (paper: 3 for MD17).
    cutoff : float
        Cutoff radius of the filters, Å (paper, JCP 2018: 5).
    n_rbf : int
        Number of Gaussians of the distance expansion, centred on [0, cutoff]
        (50: 0.1 Å apart over 5 Å, as in the paper).
    gamma : float
        Width of the Gaussians, Å⁻² (paper: 10).
    n_filters : int or None
        Width of the filters; None: ``n_features``.

    Notes
    -----
    The atom-wise readout is ``Linear(F, F/2) → ssp → Linear(F/2, 1)``, as in the paper.
    :meth:`energy_and_forces` (prediction, MD) differentiates by hand rather than by
    autograd, 2–3× faster on small molecules (:mod:`mlffkit.nn.schnet_forces`).
    """

    def __init__(
        self,
        n_features: int = 64,
        n_interactions: int = 3,
        cutoff: float = 5.0,
        n_rbf: int = 50,
        gamma: float = 10.0,
        n_filters: int | None = None,
    ):
        super().__init__()
        if n_features < 2 or n_interactions < 1:
            raise ValueError("SchNet needs n_features >= 2 and n_interactions >= 1")
        if not cutoff > 0:
            raise ValueError(f"cutoff must be a positive distance in Å, got {cutoff}")
        n_filters = n_features if n_filters is None else n_filters
        self.cutoff = float(cutoff)
        self.embedding = nn.Embedding(N_ELEMENTS, n_features)
        self.rbf = GaussianRBF(n_rbf, cutoff, gamma)
        self.envelope = CosineCutoff(cutoff)
        self.interactions = nn.ModuleList(
            SchNetInteraction(n_features, n_filters, n_rbf) for _ in range(n_interactions)
        )
        self.readout = mlp([n_features, n_features // 2, 1])
        self._packed: tuple[tuple, tuple, PackedSchNet] | None = None

    def energy_and_forces(self, graph: AtomicGraph, stress: bool = False) -> dict[str, Tensor]:
        """Energies, forces (and stress) by the hand-written backward pass; see :meth:`Potential.energy_and_forces`."""
        return schnet_energy_forces(self, self.packed_weights(), graph, stress)

    def packed_weights(self) -> PackedSchNet:
        """The weights laid out for :func:`~mlffkit.nn.schnet_forces.schnet_energy_forces`.

        Built once and rebuilt only when a parameter has changed (moved, cast, or
        updated in place, which bumps its version counter).
        """
        if self._packed is None:
            # listing the parameters walks the module tree, slow next to a small
            # molecule's forces; the blocks themselves are never swapped after init
            params = tuple(self.parameters())
        else:
            params = self._packed[0]
        key = tuple((p.data_ptr(), p.dtype, p._version) for p in params)
        if self._packed is None or self._packed[1] != key:
            with torch.no_grad():
                self._packed = (params, key, PackedSchNet.of(self))
        return self._packed[2]

    def filters(self, distances: Tensor, interaction: int = 0) -> Tensor:
        """The learned filter ``W(r) = f_c(r) MLP(e(r))`` of one interaction block.

        Parameters
        ----------
        distances : Tensor, shape (n,)
            Distances, Å.
        interaction : int
            Which block (0-based).

        Returns
        -------
        Tensor, shape (n, n_filters)
        """
        block = self.interactions[interaction]
        w = block.convolution.filter_network(self.rbf(distances))
        return w * self.envelope(distances)[:, None]

    def atomic_outputs(self, graph: AtomicGraph, vectors: Tensor, extras: dict | None) -> Tensor:
        distances = vectors.norm(dim=1)
        rbf = self.rbf(distances)
        envelope = self.envelope(distances)
        x = self.embedding(graph.numbers)
        for block in self.interactions:
            x = x + block(x, rbf, envelope, graph.edge_index)
        if extras is not None:
            extras["features"] = x
        return self.readout(x).squeeze(-1)
