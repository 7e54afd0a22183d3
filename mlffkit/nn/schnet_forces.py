"""SchNet's forces by a hand-written backward pass: the fast path for MD and prediction.

Autograd gives forces for any network, but for one small molecule (the MD case)
most of its time is bookkeeping: a few hundred tiny operations, each recorded and
then replayed. SchNet's structure allows a leaner route, used here for inference
(training still goes through autograd, which also needs the parameter gradients):

* **Pair symmetry.** The filter :math:`W(r_{ij})` depends on the distance only, so
  the edges ``i ← j`` and ``j ← i`` share it. The filter networks run on one
  direction of each pair (half the edges), which halves the largest matrix products.
* **One product for all first filter layers.** The first layers of the filter
  networks of all interaction blocks see the same Gaussian expansion, so they are
  stacked into one matrix.
* **Explicit chain rule.** With :math:`\\mathbf g_x = \\partial E / \\partial x` (atom
  features), each interaction :math:`x' = x + v(\\mathrm{agg})`,
  :math:`\\mathrm{agg}_i = \\sum_j y_j \\odot W_{ij}`, :math:`y = x W_\\text{in}^\\top`
  passes back

  .. math::
      \\mathbf g_{\\mathrm{agg}} = \\big[(\\mathbf g_{x'} W_2) \\odot \\sigma(z)\\big] W_1,
      \\qquad
      \\mathbf g_x = \\mathbf g_{x'} + \\Big(\\sum_{i} \\mathbf g_{\\mathrm{agg},i}
          \\odot W_{ij}\\Big)_j W_\\text{in},
      \\qquad
      \\frac{\\partial E}{\\partial W_{ij}} = \\mathbf g_{\\mathrm{agg},i} \\odot y_j
          + \\mathbf g_{\\mathrm{agg},j} \\odot y_i

  (σ, the logistic function, is the slope of the shifted softplus), and the filter
  gradients flow through the filter networks to the distances and from there to
  :math:`\\mathbf F = -\\partial E / \\partial \\mathbf R`.
* **Packed weights.** Transposed, stacked weights, with the ``-ln 2`` of the shifted
  softplus folded into the next layer's bias, are built once and reused until a
  parameter changes.

The stress follows from the same edge gradients: for a network of edge vectors,
:math:`\\partial E / \\partial \\epsilon = \\sum_{ij} \\mathbf r_{ij} \\otimes
\\partial E / \\partial \\mathbf r_{ij}` (symmetrised), divided by the volume.
``tests/test_nn.py`` checks every output against autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional

from mlffkit import properties
from mlffkit.nn.graph import AtomicGraph
from mlffkit.nn.potential import ATOMIC_ENERGIES

LN2 = math.log(2.0)


@dataclass(frozen=True)
class _Block:
    """Weights of one interaction block, laid out for the forward and backward passes."""

    filter2_t: Tensor  # (F, F): second filter layer, transposed
    filter2: Tensor
    filter2_bias: Tensor  # with -ln2 folded in
    in_t: Tensor  # (F_atom, F)
    in_: Tensor
    out1_t: Tensor
    out1: Tensor
    out1_bias: Tensor
    out2_t: Tensor
    out2_bias: Tensor  # with -ln2 folded in
    out2: Tensor


@dataclass(frozen=True)
class PackedSchNet:
    """The weights of a :class:`~mlffkit.nn.SchNetPotential` in the layout of this module."""

    filter1_t: Tensor  # (n_rbf, n_blocks * F): all first filter layers side by side
    filter1: Tensor
    filter1_bias: Tensor
    blocks: tuple[_Block, ...]
    readout1_t: Tensor
    readout1: Tensor
    readout1_bias: Tensor
    readout2_t: Tensor
    readout2: Tensor
    readout2_bias: Tensor

    @classmethod
    def of(cls, potential) -> PackedSchNet:
        def folded(linear):  # bias of a layer that follows a shifted softplus
            return linear.bias - LN2 * linear.weight.sum(1)

        blocks = []
        for block in potential.interactions:
            f2 = block.convolution.filter_network[2]
            o1, o2 = block.filters_to_out[0], block.filters_to_out[2]
            blocks.append(
                _Block(
                    filter2_t=f2.weight.t().contiguous(),
                    filter2=f2.weight,
                    filter2_bias=folded(f2),
                    in_t=block.in_to_filters.weight.t().contiguous(),
                    in_=block.in_to_filters.weight,
                    out1_t=o1.weight.t().contiguous(),
                    out1=o1.weight,
                    out1_bias=o1.bias,
                    out2_t=o2.weight.t().contiguous(),
                    out2_bias=folded(o2),
                    out2=o2.weight,
                )
            )
        filter1 = torch.cat(
            [b.convolution.filter_network[0].weight for b in potential.interactions]
        )
        r1, r2 = potential.readout[0], potential.readout[2]
        return cls(
            filter1_t=filter1.t().contiguous(),
            filter1=filter1,
            filter1_bias=torch.cat(
                [b.convolution.filter_network[0].bias for b in potential.interactions]
            ),
            blocks=tuple(blocks),
            readout1_t=r1.weight.t().contiguous(),
            readout1=r1.weight,
            readout1_bias=r1.bias,
            readout2_t=r2.weight.t().contiguous(),
            readout2=r2.weight,
            readout2_bias=folded(r2),
        )


class _Scatter:
    """Sums of edge rows onto their receiving (or sending) atoms.

    For tiny graphs (a small molecule in MD) a product with a one-hot matrix is
    several times cheaper than ``index_add_``; larger graphs use ``index_add_``,
    whose cost grows with the edges only.
    """

    DENSE_LIMIT = 4096  # n_atoms * n_edges up to which the one-hot product wins

    def __init__(
        self, senders: Tensor, receivers: Tensor, n_pairs: int, n_atoms: int, like: Tensor
    ):
        self.senders, self.receivers, self.n_atoms = senders, receivers, n_atoms
        n_edges = 2 * n_pairs
        self.receive = self.send = None
        if n_atoms * n_edges <= self.DENSE_LIMIT:
            receive = like.new_zeros((n_atoms, n_edges))
            receive[receivers, torch.arange(n_edges, device=like.device)] = 1.0
            # senders are the receivers with the two directions swapped
            self.receive = receive
            self.send = torch.cat([receive[:, n_pairs:], receive[:, :n_pairs]], dim=1)

    def to_receivers(self, values: Tensor) -> Tensor:
        if self.receive is not None:
            return self.receive @ values
        out = values.new_zeros((self.n_atoms, values.shape[1]))
        return out.index_add_(0, self.receivers, values)

    def to_senders(self, values: Tensor) -> Tensor:
        if self.send is not None:
            return self.send @ values
        out = values.new_zeros((self.n_atoms, values.shape[1]))
        return out.index_add_(0, self.senders, values)


def _half_edges(graph: AtomicGraph, periodic: bool) -> Tensor:
    """Indices of one direction of every pair: ``i < j``, or for an atom's own image, ``S > 0``.

    Needs a full (symmetric) neighbour list, as :func:`~mlffkit.nn.neighbor_list` gives.
    """
    i, j = graph.edge_index
    keep = i < j
    if periodic:
        s = graph.cell_shifts
        positive = (s[:, 0] > 0) | (
            (s[:, 0] == 0) & ((s[:, 1] > 0) | ((s[:, 1] == 0) & (s[:, 2] > 0)))
        )
        keep = keep | ((i == j) & positive)
    half = keep.nonzero().squeeze(1)
    if 2 * half.shape[0] != graph.n_edges:
        raise ValueError(
            "the graph's neighbour list is not symmetric (every edge i<-j needs its reverse "
            "j<-i); build graphs with mlffkit.nn.neighbor_list or GraphData"
        )
    return half


def schnet_energy_forces(
    potential, packed: PackedSchNet, graph: AtomicGraph, stress: bool = False
) -> dict[str, Tensor]:
    """Energies, forces and (optionally) stress of a SchNet without autograd.

    Parameters
    ----------
    potential : SchNetPotential
        The network (its embedding, expansion and energy statistics are read here).
    packed : PackedSchNet
        Its weights, from :meth:`PackedSchNet.of`.
    graph : AtomicGraph
        Structures with a full neighbour list within the cutoff.
    stress : bool
        Also compute the stress (structures periodic in all three directions).

    Returns
    -------
    dict
        As :meth:`~mlffkit.nn.Potential.forward`: ``"energy"`` (n_graphs,) eV and
        ``"atomic_energies"`` (n_atoms,) eV in float64, ``"forces"`` (n_atoms, 3) eV/Å,
        ``"stress"`` (n_graphs, 6) eV/Å³ (Voigt order).
    """
    if stress and not bool(graph.pbc.all()):
        raise ValueError(
            "stress is defined for structures periodic in all three directions; "
            "ask for energies and forces only (stress=False) for molecules and slabs"
        )
    # inference mode skips autograd's bookkeeping (about 10 % here); the results are
    # cloned out of it, so that callers get ordinary tensors they may modify
    with torch.inference_mode():
        result = _evaluate(potential, packed, graph, stress)
    return {key: value.clone() for key, value in result.items()}


def _evaluate(
    potential, packed: PackedSchNet, graph: AtomicGraph, stress: bool
) -> dict[str, Tensor]:
    positions = graph.positions
    n_atoms = positions.shape[0]
    periodic = bool(graph.pbc.any())
    half = _half_edges(graph, periodic)
    pairs = graph.edge_index.index_select(1, half)  # pair p: a_p <- b_p and b_p <- a_p
    a, b = pairs[0], pairs[1]
    n_pairs = half.shape[0]
    # directed edges: the pairs once as a <- b, then once as b <- a
    receivers = pairs.reshape(-1)
    senders = pairs.flip(0).reshape(-1)
    ends = positions.index_select(0, receivers).view(2, n_pairs, 3)
    vectors = ends[1] - ends[0]
    if periodic:
        cells = graph.cell.index_select(0, graph.batch.index_select(0, a))
        shifts = graph.cell_shifts.index_select(0, half)
        vectors = vectors + torch.einsum("ek,ekl->el", shifts, cells)
    scatter = _Scatter(senders, receivers, n_pairs, n_atoms, positions)

    # ---- forward
    distances = torch.linalg.vector_norm(vectors, dim=1)
    offsets = distances[:, None] - potential.rbf.centres
    gamma = potential.rbf.gamma
    expansion = torch.exp(offsets.square().mul_(-gamma))
    cutoff = potential.cutoff
    # beyond the cutoff the phase stays at π, where the envelope and its slope are zero
    phase = distances.clamp(max=cutoff).mul_(math.pi / cutoff)
    envelope = torch.cos(phase).add_(1.0).mul_(0.5)[:, None]
    z_filter = torch.addmm(packed.filter1_bias, expansion, packed.filter1_t)
    h_filter = functional.softplus(z_filter)
    n_blocks, width = len(packed.blocks), packed.blocks[0].in_.shape[0]
    raw = positions.new_empty((n_blocks, n_pairs, width))  # filters before the envelope
    for t, block in enumerate(packed.blocks):
        columns = h_filter[:, t * width : (t + 1) * width]
        torch.addmm(block.filter2_bias, columns, block.filter2_t, out=raw[t])
    filters = raw * envelope
    x = potential.embedding.weight.index_select(0, graph.numbers)
    saved = []
    for t, block in enumerate(packed.blocks):
        y_sent = (x @ block.in_t).index_select(0, senders).view(2, n_pairs, width)
        aggregated = scatter.to_receivers((y_sent * filters[t]).view(2 * n_pairs, width))
        z_out = torch.addmm(block.out1_bias, aggregated, block.out1_t)
        x = torch.addmm(block.out2_bias, functional.softplus(z_out), block.out2_t).add_(x)
        saved.append((y_sent, z_out))
    z_read = torch.addmm(packed.readout1_bias, x, packed.readout1_t)
    outputs = torch.addmm(packed.readout2_bias, functional.softplus(z_read), packed.readout2_t)

    # ---- backward: dE/dx, then through each block to its filters
    scale = potential.energy_scale
    grad_x = (torch.sigmoid(z_read) * (scale * packed.readout2)) @ packed.readout1
    grad_filters = torch.empty_like(raw)
    for t in reversed(range(n_blocks)):
        block, (y_sent, z_out) = packed.blocks[t], saved[t]
        grad_agg = ((grad_x @ block.out2) * torch.sigmoid(z_out)) @ block.out1
        grad_msg = grad_agg.index_select(0, receivers).view(2, n_pairs, width)
        torch.sum(grad_msg * y_sent, dim=0, out=grad_filters[t])
        grad_y = scatter.to_senders((grad_msg * filters[t]).view(2 * n_pairs, width))
        grad_x = torch.addmm(grad_x, grad_y, block.in_)
    # ... and from the filters through the filter networks to the distances
    grad_envelope = (grad_filters * raw).sum((0, 2))
    grad_raw = grad_filters.mul_(envelope)
    grad_h = torch.cat(
        [grad_raw[t] @ block.filter2 for t, block in enumerate(packed.blocks)], dim=1
    )
    grad_expansion = grad_h.mul_(torch.sigmoid(z_filter)) @ packed.filter1
    slope = torch.sin(phase).masked_fill_(distances >= cutoff, 0.0).mul_(-0.5 * math.pi / cutoff)
    grad_distance = (grad_expansion * expansion * offsets).sum(1).mul_(-2.0 * gamma)
    grad_distance += grad_envelope * slope
    grad_vectors = vectors * (grad_distance / distances)[:, None]
    forces = torch.zeros_like(positions).index_add_(0, a, grad_vectors)
    forces.index_add_(0, b, grad_vectors, alpha=-1.0)

    numbers = graph.numbers
    atomic = (outputs.squeeze(1) * scale).double() + potential.energy_offsets[numbers].double()
    energy = atomic.new_zeros(graph.n_graphs).index_add_(0, graph.batch, atomic)
    result = {properties.ENERGY: energy, ATOMIC_ENERGIES: atomic, properties.FORCES: forces}
    if stress:
        virial_edges = vectors[:, :, None] * grad_vectors[:, None, :]
        virial = positions.new_zeros((graph.n_graphs, 3, 3))
        virial.index_add_(0, graph.batch.index_select(0, a), virial_edges)
        s = (
            0.5
            * (virial + virial.transpose(1, 2))
            / torch.linalg.det(graph.cell).abs()[:, None, None]
        )
        result[properties.STRESS] = torch.stack(
            [s[:, 0, 0], s[:, 1, 1], s[:, 2, 2], s[:, 1, 2], s[:, 0, 2], s[:, 0, 1]], dim=1
        )
    return result
