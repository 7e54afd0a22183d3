"""Scalar kernels between descriptor vectors, and their gradients, for energy models.

Each kernel is a function of the distance between two descriptor vectors with a
length scale ``sigma`` in descriptor units:

``"gaussian"``
    ``exp(-|x - y|^2 / (2 sigma^2))``
``"laplacian"``
    ``exp(-|x - y|_1 / sigma)`` (L1 distance, as scikit-learn's ``"laplacian"``
    with ``gamma = 1 / sigma``); not differentiable where a component of ``x - y``
    is zero, which makes its forces noisy.
``"matern52"``
    Matérn ν = 5/2: ``(1 + a r + a^2 r^2 / 3) exp(-a r)`` with ``a = sqrt(5) / sigma``
    and ``r = |x - y|``; twice differentiable, the kernel of GDML.
"""

from __future__ import annotations

import math

import torch

KERNELS = ("gaussian", "laplacian", "matern52")


def check_kernel(kind: str) -> str:
    """Return ``kind`` if it names a kernel, else raise a ValueError listing the choices."""
    if kind not in KERNELS:
        raise ValueError(f"unknown kernel {kind!r}; use one of {KERNELS}")
    return kind


def _sq_distances(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(n, m)`` by the expansion (one matrix product), clamped at 0."""
    d2 = (X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2.0 * X @ Y.T
    return d2.clamp_min_(0.0)


def matern52(r: torch.Tensor, sigma: float) -> torch.Tensor:
    """Matérn ν = 5/2 kernel as a function of the distance ``r``."""
    a = math.sqrt(5.0) / sigma
    ar = a * r
    return (1.0 + ar + ar * ar / 3.0) * torch.exp(-ar)


def kernel_matrix(X: torch.Tensor, Y: torch.Tensor, kind: str, sigma: float) -> torch.Tensor:
    """Kernel values ``k(x_i, y_j)``, shape ``(n, m)``.

    Parameters
    ----------
    X, Y : torch.Tensor, shapes (n, d) and (m, d)
        Descriptor vectors.
    kind : {"gaussian", "laplacian", "matern52"}
    sigma : float
        Length scale, in descriptor units.
    """
    check_kernel(kind)
    if kind == "gaussian":
        return torch.exp(-_sq_distances(X, Y) / (2.0 * sigma**2))
    if kind == "laplacian":
        return torch.exp(-torch.cdist(X, Y, p=1.0) / sigma)
    return matern52(_sq_distances(X, Y).sqrt(), sigma)


def kernel_gradient_sum(
    X: torch.Tensor, Y: torch.Tensor, weights: torch.Tensor, kind: str, sigma: float
) -> torch.Tensor:
    """``sum_j w_j grad_x k(x_i, y_j)``, shape ``(n, d)``: the gradient of a kernel model.

    Parameters
    ----------
    X, Y : torch.Tensor, shapes (n, d) and (m, d)
    weights : torch.Tensor, shape (m,)
        Coefficients of the model ``f(x) = sum_j w_j k(x, y_j)``.
    kind, sigma
        As :func:`kernel_matrix`.
    """
    check_kernel(kind)
    if kind == "laplacian":
        # grad_x exp(-|x - y|_1 / s) = -sign(x - y) k / s: no product form, so go per frame
        k = kernel_matrix(X, Y, kind, sigma) * weights[None, :]
        return -torch.stack([k[i] @ torch.sign(X[i] - Y) for i in range(len(X))]) / sigma
    if kind == "gaussian":
        # grad_x k = -k (x - y) / s^2
        coef = -kernel_matrix(X, Y, kind, sigma) * weights[None, :] / sigma**2
    else:
        # grad_x k = -(a^2 / 3) (1 + a r) exp(-a r) (x - y) for the Matérn 5/2
        a = math.sqrt(5.0) / sigma
        ar = a * _sq_distances(X, Y).sqrt()
        coef = -(a * a / 3.0) * (1.0 + ar) * torch.exp(-ar) * weights[None, :]
    # sum_j c_ij (x_i - y_j) = x_i sum_j c_ij - sum_j c_ij y_j
    return coef.sum(1, keepdim=True) * X - coef @ Y
