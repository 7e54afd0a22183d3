r"""Preconditioned conjugate gradients for symmetric positive-definite systems.

CG solves :math:`A x = b` using only products :math:`A v`, so :math:`A` never has to be
stored: with a matrix-free kernel–vector product the memory is O(n) instead of the
O(n²) of a dense factorisation. In exact arithmetic the error after :math:`k` steps
shrinks at least like :math:`2\left(\frac{\sqrt{\kappa}-1}{\sqrt{\kappa}+1}\right)^k`,
with :math:`\kappa` the condition number. A preconditioner :math:`P \approx A` whose
inverse is cheap to apply replaces :math:`\kappa(A)` by :math:`\kappa(P^{-1}A)`, which
is what makes CG fast on the badly conditioned kernel matrices of force fields
(see :mod:`mlffkit.solvers.preconditioners`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

MatVec = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CGResult:
    """Outcome of :func:`conjugate_gradients`.

    Attributes
    ----------
    x : torch.Tensor, shape (n,)
        The solution estimate.
    residuals : numpy.ndarray, shape (n_iter + 1,)
        Relative residual ``|b - A x_k| / |b|`` after each step (1 at step 0 with ``x0 = 0``).
    converged : bool
        Whether the tolerance was reached within ``max_iter`` steps.
    n_iter : int
        Steps taken (matrix–vector products, not counting the initial residual).
    time_s : float
        Wall time of the iterations, s.
    label : str
        Name for plots (e.g. the preconditioner).
    """

    x: torch.Tensor
    residuals: np.ndarray
    converged: bool
    n_iter: int
    time_s: float
    label: str = field(default="")

    def plot(self, ax=None, **kwargs):
        """Relative residual against the step on a log axis; returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        kwargs.setdefault("label", self.label or None)
        ax.semilogy(np.arange(len(self.residuals)), self.residuals, **kwargs)
        ax.set_xlabel("CG step")
        ax.set_ylabel(r"relative residual $|b - Ax_k| / |b|$")
        return ax


def conjugate_gradients(
    matvec: MatVec,
    b: torch.Tensor,
    preconditioner: MatVec | None = None,
    *,
    tol: float = 1e-4,
    max_iter: int | None = None,
    x0: torch.Tensor | None = None,
    progress: bool = False,
    label: str = "",
) -> CGResult:
    """Solve ``A x = b`` for symmetric positive-definite ``A`` by preconditioned CG.

    Parameters
    ----------
    matvec : callable
        ``v -> A v`` for vectors of shape ``(n,)``.
    b : torch.Tensor, shape (n,)
        Right-hand side (e.g. training forces, eV/Å); its dtype and device are used.
    preconditioner : callable, optional
        ``r -> P^{-1} r`` for a symmetric positive-definite ``P ≈ A``, e.g.
        ``NystromPreconditioner.apply``. None: plain CG.
    tol : float
        Stop when the relative residual ``|b - A x| / |b|`` is below ``tol``.
    max_iter : int, optional
        Step limit (default ``n``, the size of the system).
    x0 : torch.Tensor, optional
        Starting guess (default zeros).
    progress : bool
        Show a progress bar over the steps, with the current residual.
    label : str
        Stored in the result, for plots.

    Returns
    -------
    CGResult
        Check ``converged``: a result that stopped at ``max_iter`` is returned, not raised,
        so that its residual history can be inspected.

    Raises
    ------
    ValueError
        For a non-finite right-hand side, a bad ``tol``/``max_iter``, or when ``A`` (or the
        preconditioner) turns out not to be positive definite (a step with ``p·Ap <= 0``).
    """
    if b.ndim != 1:
        raise ValueError(f"b must be a vector (n,), got shape {tuple(b.shape)}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError("the right-hand side b holds NaN or inf; check the training labels")
    if not tol > 0:
        raise ValueError(f"tol must be a positive relative residual, got {tol!r}")
    n = b.numel()
    max_iter = n if max_iter is None else int(max_iter)
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    apply_p = preconditioner if preconditioner is not None else (lambda r: r)

    start = time.perf_counter()
    b_norm = float(torch.linalg.vector_norm(b))
    if b_norm == 0.0:
        return CGResult(torch.zeros_like(b), np.array([0.0]), True, 0, 0.0, label)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x) if x0 is not None else b.clone()
    z = apply_p(r)
    p = z.clone()
    rz = torch.dot(r, z)
    history = [float(torch.linalg.vector_norm(r)) / b_norm]
    converged = history[0] < tol
    bar = tqdm(total=max_iter, desc=f"CG {label}".strip(), disable=not progress, leave=False)
    with bar:
        for _ in range(max_iter):
            if converged:
                break
            ap = matvec(p)
            curvature = torch.dot(p, ap)
            if not float(curvature) > 0:
                raise ValueError(
                    "CG met a direction with p·Ap <= 0: the matrix (or the preconditioner) is not "
                    "positive definite; raise the regularisation lam"
                )
            step = rz / curvature
            x.add_(p, alpha=float(step))
            r.sub_(ap, alpha=float(step))
            history.append(float(torch.linalg.vector_norm(r)) / b_norm)
            converged = history[-1] < tol
            bar.update()
            bar.set_postfix(residual=f"{history[-1]:.1e}", refresh=False)
            z = apply_p(r)
            rz_new = torch.dot(r, z)
            p.mul_(float(rz_new / rz)).add_(z)
            rz = rz_new
    return CGResult(
        x=x,
        residuals=np.asarray(history),
        converged=bool(converged),
        n_iter=len(history) - 1,
        time_s=time.perf_counter() - start,
        label=label,
    )
