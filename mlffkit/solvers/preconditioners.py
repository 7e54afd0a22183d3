r"""Nyström preconditioners for kernel systems :math:`(K + \lambda I)\alpha = y`.

A rank-:math:`k` Nyström approximation :math:`\hat K = U \hat\Lambda U^\top \approx K`
(orthonormal :math:`U \in \mathbb{R}^{n\times k}`) captures the few large eigenvalues
that make the kernel matrix badly conditioned. As preconditioner we use (Frangella,
Tropp and Udell, SIAM J. Matrix Anal. Appl. 44, 718, 2023)

.. math:: P^{-1} = (\hat\lambda_k + \lambda)\, U (\hat\Lambda + \lambda I)^{-1} U^\top
          + (I - U U^\top),

which maps the captured eigen-directions onto the level of the :math:`k`-th eigenvalue
and leaves the rest alone: CG then only has to resolve the spectrum below
:math:`\hat\lambda_k`. Applying it costs O(nk); storing it O(nk).

How the :math:`k` columns (or directions) are chosen is what distinguishes the four
variants compared by Blücher, Müller and Chmiela (J. Chem. Theory Comput. 19, 4619,
2023), from cheapest to best:

``"random"``
    :math:`k` columns of :math:`K` drawn uniformly.
``"leverage"``
    :math:`k` columns drawn with probabilities proportional to approximate ridge
    leverage scores :math:`\ell_i = [\hat K(\hat K + \mu I)^{-1}]_{ii}`, from a first
    uniform sketch of the same rank (:math:`\mu` = its :math:`k`-th eigenvalue).
``"pivoted_cholesky"``
    Greedy partial Cholesky: each step takes the column with the largest diagonal of
    the remaining Schur complement (deterministic, adapts to the data).
``"eig"``
    The top-:math:`k` eigenpairs themselves, by randomized subspace iteration with
    block products :math:`KQ` (the best rank-:math:`k` approximation, the most
    expensive to build).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from mlffkit.solvers.operator import KernelOperator

METHODS = ("random", "leverage", "pivoted_cholesky", "eig")


@dataclass
class NystromPreconditioner:
    """``r -> P^{-1} r`` for a rank-``k`` Nyström approximation ``U diag(eigenvalues) U^T``.

    Attributes
    ----------
    U : torch.Tensor, shape (n, k)
        Orthonormal basis of the approximation.
    eigenvalues : torch.Tensor, shape (k,)
        Its eigenvalues, descending (units of the kernel).
    lam : float
        The ridge of the system being solved.
    method : str
        How the approximation was built (one of ``METHODS``).
    build_time_s : float
        Wall time of the construction, s.
    columns : torch.Tensor or None
        The kernel columns used (None for ``"eig"``).
    """

    U: torch.Tensor
    eigenvalues: torch.Tensor
    lam: float
    method: str
    build_time_s: float
    columns: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return int(self.eigenvalues.numel())

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        """``P^{-1} r`` for a vector ``(n,)`` or a block ``(n, m)``."""
        if self.rank == 0:
            return r.clone()
        floor = self.eigenvalues[-1] + self.lam
        scale = floor / (self.eigenvalues + self.lam) - 1.0
        coeff = self.U.T @ r
        coeff = coeff * (scale if r.ndim == 1 else scale[:, None])
        return r + self.U @ coeff

    __call__ = apply

    def nbytes(self) -> int:
        """Memory held by the preconditioner, bytes."""
        return self.U.element_size() * self.U.numel()


#: rows per chunk of the in-place n × k updates (keeps temporaries small)
_ROW_CHUNK = 8192


def _right_multiply_(B: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``B <- B @ W`` in place, chunk of rows by chunk (``W`` square): no second n × k array."""
    for i0 in range(0, B.shape[0], _ROW_CHUNK):
        B[i0 : i0 + _ROW_CHUNK] = B[i0 : i0 + _ROW_CHUNK] @ W
    return B


def _eig_from_factor_(B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal ``U`` and eigenvalues of ``B B^T`` on range(B), descending; ``B`` is overwritten.

    Through the small ``k × k`` Gram matrix ``B^T B = V S² V^T``: ``U = B V S^{-1}``, computed
    in place, then re-orthonormalised once (Cholesky QR), because ``B V S^{-1}`` loses
    orthogonality when ``S`` spans many decades. Directions lost in round-off are dropped.
    """
    s2, V = torch.linalg.eigh(B.T @ B)
    s2, V = s2.flip(0), V.flip(1)
    keep = s2 > s2[0].clamp_min(0) * 1e-13 * max(1, B.shape[1])
    s2, V = s2[keep], V[:, keep]
    if not bool(keep.all()):
        B = B @ V  # fewer columns: a (smaller) new array
        V = torch.eye(V.shape[1], dtype=B.dtype, device=B.device)
    U = _right_multiply_(B, V / torch.sqrt(s2)[None])
    R, info = torch.linalg.cholesky_ex(U.T @ U, upper=True)
    if int(info) == 0:
        eye = torch.eye(R.shape[0], dtype=R.dtype, device=R.device)
        U = _right_multiply_(U, torch.linalg.solve_triangular(R, eye, upper=True))
    return U, s2


def _nystrom_from_columns_(C: torch.Tensor, index: torch.Tensor):
    """``U, eigenvalues`` of the Nyström approximation ``C W^+ C^T``, ``W = C[index]``; ``C`` is overwritten."""
    W = C[index]
    W = 0.5 * (W + W.T)
    # A small shift keeps the Cholesky of W stable (a standard trick; its effect on the
    # approximation is of the order of round-off).
    shift = float(torch.finfo(C.dtype).eps * W.diagonal().sum().clamp_min(1e-300))
    eye = torch.eye(len(index), dtype=C.dtype, device=C.device)
    for _ in range(10):
        L, info = torch.linalg.cholesky_ex(W + shift * eye)
        if int(info) == 0:
            break
        shift *= 10.0
    else:
        raise RuntimeError("the Nyström core matrix could not be factorised; lower the rank")
    # B = C L^{-T}, so that B B^T = C (W + shift)^{-1} C^T
    B = _right_multiply_(C, torch.linalg.solve_triangular(L, eye, upper=False).T)
    return _eig_from_factor_(B)


def _uniform_columns(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)[:k].sort().values


def _pivoted_cholesky(
    operator: KernelOperator, k: int, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial pivoted Cholesky: ``L (n, k')`` with ``K ≈ L L^T`` and the pivots ``(k',)``.

    Each step takes the largest diagonal entry of the Schur complement ``K - L L^T`` as
    pivot, fetches that one column of ``K`` and orthogonalises it against the previous
    ones: ``k`` column fetches and O(n k²) arithmetic. It stops early once the remaining
    diagonal is round-off (the numerical rank of ``K`` is reached).
    """
    n = operator.shape[0]
    residual = operator.diagonal().clone()
    floor = 1e-14 * float(residual.sum())
    L = torch.zeros((n, k), dtype=operator.dtype, device=operator.device)
    pivots: list[int] = []
    for t in tqdm(range(k), desc="pivoted Cholesky", disable=not progress, leave=False):
        p = int(torch.argmax(residual))
        pivot = float(residual[p])
        if pivot <= floor:
            break
        column = operator.columns(torch.tensor([p], device=operator.device))[:, 0]
        column -= L[:, :t] @ L[p, :t]
        L[:, t] = column / np.sqrt(pivot)
        residual -= L[:, t] ** 2
        residual[p] = 0.0
        pivots.append(p)
    return L[:, : len(pivots)], torch.tensor(pivots, dtype=torch.int64)


def _subspace_iteration(
    operator: KernelOperator, k: int, iterations: int, generator: torch.Generator, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` eigenpairs by randomized subspace iteration (Halko, Martinsson, Tropp 2011)."""
    n = operator.shape[0]
    width = min(n, k + max(10, k // 10))  # oversampling
    omega = torch.randn(n, width, dtype=operator.dtype, generator=generator).to(operator.device)
    Q, _ = torch.linalg.qr(operator.matmat(omega))
    for _ in tqdm(range(iterations), desc="subspace iteration", disable=not progress, leave=False):
        Q, _ = torch.linalg.qr(operator.matmat(Q))
    T = Q.T @ operator.matmat(Q)
    theta, V = torch.linalg.eigh(0.5 * (T + T.T))
    theta, V = theta.flip(0)[:k], V.flip(1)[:, :k]
    return Q @ V, theta.clamp_min(0.0)


def nystrom_preconditioner(
    operator: KernelOperator,
    rank: int,
    lam: float,
    method: str = "pivoted_cholesky",
    *,
    seed: int = 0,
    iterations: int = 2,
    progress: bool = False,
) -> NystromPreconditioner:
    """Build a rank-``rank`` Nyström preconditioner for ``K + lam I``.

    Parameters
    ----------
    operator : KernelOperator
        The kernel matrix ``K`` (``n × n``), e.g. :class:`~mlffkit.kernels.gdml.GDMLKernelOperator`.
    rank : int
        Number of columns (or eigen-directions) ``k``; memory ``8 n k`` bytes in float64.
        Larger ranks cost more to build and to apply, and save CG steps.
    lam : float
        Ridge regularisation of the system (the GDML ``lam``).
    method : {"random", "leverage", "pivoted_cholesky", "eig"}
        How the approximation is built (see the module docstring).
    seed : int
        Seed of the random column choices and sketches.
    iterations : int
        Power iterations of ``"eig"`` (each one block product ``K Q`` of ``rank`` columns).
    progress : bool
        Progress bars for the slow parts.

    Returns
    -------
    NystromPreconditioner
        Call it (or its ``apply``) on a residual; pass it to
        :func:`~mlffkit.solvers.cg.conjugate_gradients`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown preconditioner {method!r}; use one of {METHODS}")
    n = operator.shape[0]
    rank = int(rank)
    if not 1 <= rank <= n:
        raise ValueError(f"rank must be between 1 and the kernel size {n}, got {rank}")
    if not lam >= 0:
        raise ValueError(f"lam must be non-negative, got {lam!r}")
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    index = None
    if method == "random":
        index = _uniform_columns(n, rank, generator).to(operator.device)
        U, eigenvalues = _nystrom_from_columns_(operator.columns(index), index)
    elif method == "leverage":
        first = _uniform_columns(n, rank, generator).to(operator.device)
        U0, lam0 = _nystrom_from_columns_(operator.columns(first), first)
        mu = lam0[-1].clamp_min(torch.finfo(lam0.dtype).tiny)
        scores = (U0**2 * (lam0 / (lam0 + mu))[None]).sum(1).clamp_min(0)
        scores = scores + scores.sum() * 1e-3 / n  # a little uniform mass: every column possible
        index = torch.multinomial(scores.cpu(), rank, replacement=False, generator=generator)
        index = index.sort().values.to(operator.device)
        del U0  # before the second n × k array
        U, eigenvalues = _nystrom_from_columns_(operator.columns(index), index)
    elif method == "pivoted_cholesky":
        L, index = _pivoted_cholesky(operator, rank, progress)
        U, eigenvalues = _eig_from_factor_(L)
    else:
        U, eigenvalues = _subspace_iteration(operator, rank, iterations, generator, progress)
    return NystromPreconditioner(
        U=U,
        eigenvalues=eigenvalues,
        lam=float(lam),
        method=method,
        build_time_s=time.perf_counter() - start,
        columns=index,
    )
