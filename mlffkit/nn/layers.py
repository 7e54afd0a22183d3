"""Small building blocks shared by mlffkit's networks.

Each block is one idea: a smooth activation, a radial basis, a cutoff envelope, a
sum of messages onto atoms. Sums use ``index_add_`` (no compiled scatter
extensions), which autograd differentiates twice, as force training needs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def scatter_sum(values: Tensor, index: Tensor, size: int) -> Tensor:
    """Sum rows of ``values`` into ``size`` bins: ``out[index[e]] += values[e]``.

    Parameters
    ----------
    values : Tensor, shape (n, ...)
    index : Tensor, int64, shape (n,)
    size : int
        Number of bins (atoms or structures).
    """
    out = values.new_zeros((size, *values.shape[1:]))
    return out.index_add_(0, index, values)


def shifted_softplus(x: Tensor) -> Tensor:
    """``ln(1 + e^x) - ln 2``: smooth like a tanh, unbounded like a ReLU, zero at zero."""
    return nn.functional.softplus(x) - math.log(2.0)


class ShiftedSoftplus(nn.Module):
    """Module form of :func:`shifted_softplus` (SchNet's activation)."""

    def forward(self, x: Tensor) -> Tensor:
        return shifted_softplus(x)


class GaussianRBF(nn.Module):
    r"""Expand distances in Gaussians, :math:`e_k(r) = \exp(-\gamma (r - \mu_k)^2)`.

    Parameters
    ----------
    n_rbf : int
        Number of Gaussians, centred evenly on ``[0, r_max]``.
    r_max : float
        Last centre, Å.
    gamma : float or None
        Width parameter, Å⁻². None sets it from the spacing ``Δ`` of the centres as
        ``1 / (2 Δ²)`` (neighbouring Gaussians overlap at ``e^{-1/8}``).
    """

    def __init__(self, n_rbf: int, r_max: float, gamma: float | None = None):
        super().__init__()
        if n_rbf < 2:
            raise ValueError(f"n_rbf must be at least 2, got {n_rbf}")
        centres = torch.linspace(0.0, float(r_max), n_rbf, dtype=torch.float64)
        if gamma is None:
            gamma = 0.5 / float(centres[1] - centres[0]) ** 2
        self.register_buffer("centres", centres.float())
        self.gamma = float(gamma)

    def forward(self, distances: Tensor) -> Tensor:
        """``(n,)`` distances in Å → ``(n, n_rbf)`` features."""
        return torch.exp(-self.gamma * (distances[:, None] - self.centres) ** 2)


class CosineCutoff(nn.Module):
    r"""Envelope that takes interactions smoothly to zero at the cutoff.

    :math:`f(r) = \tfrac12 [\cos(\pi r / r_c) + 1]` for :math:`r < r_c`, else 0; its
    value and slope vanish at :math:`r_c`, so energies and forces stay continuous
    when an atom crosses the cutoff sphere.
    """

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, distances: Tensor) -> Tensor:
        f = 0.5 * (torch.cos(distances * (math.pi / self.cutoff)) + 1.0)
        return f * (distances < self.cutoff).to(distances.dtype)


def mlp(sizes: list[int], activation: type[nn.Module] = ShiftedSoftplus) -> nn.Sequential:
    """Dense layers of the given sizes with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)
