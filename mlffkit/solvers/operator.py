"""What the iterative solvers need from a kernel matrix: the kernel-operator protocol.

A kernel operator represents a symmetric positive semi-definite matrix ``K`` of size
``n × n`` without storing it. Conjugate gradients needs products ``K V``; the Nyström
preconditioners need a few of its columns and its diagonal. :class:`DenseOperator`
wraps an explicit matrix (small problems, tests); the GDML kernel provides a
matrix-free one (:class:`mlffkit.kernels.gdml.GDMLKernelOperator`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class KernelOperator(Protocol):
    """A symmetric positive semi-definite ``n × n`` matrix known through products."""

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``K @ V`` for ``V`` of shape ``(n, r)``; returns ``(n, r)``."""
        ...

    def columns(self, index: torch.Tensor) -> torch.Tensor:
        """``K[:, index]`` for integer ``index`` of shape ``(k,)``; returns ``(n, k)``."""
        ...

    def diagonal(self) -> torch.Tensor:
        """The diagonal of ``K``, shape ``(n,)``."""
        ...


class DenseOperator:
    """A :class:`KernelOperator` around an explicit symmetric matrix ``(n, n)``."""

    def __init__(self, matrix: torch.Tensor):
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.shape = tuple(matrix.shape)
        self.dtype = matrix.dtype
        self.device = matrix.device

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.matrix @ V

    def columns(self, index: torch.Tensor) -> torch.Tensor:
        return self.matrix[:, index]

    def diagonal(self) -> torch.Tensor:
        return self.matrix.diagonal().clone()


def matvec_with_ridge(operator: KernelOperator, lam: float):
    """``v -> (K + lam I) v`` for vectors ``(n,)``, the system CG solves."""

    def matvec(v: torch.Tensor) -> torch.Tensor:
        return operator.matmat(v[:, None])[:, 0] + lam * v

    return matvec
