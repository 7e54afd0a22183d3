"""Solvers for kernel systems ``(K + lam I) alpha = y``: conjugate gradients with Nyström
preconditioners, for kernels known only through products (:class:`KernelOperator`).

>>> from mlffkit.solvers import conjugate_gradients, nystrom_preconditioner   # doctest: +SKIP
>>> P = nystrom_preconditioner(operator, rank=500, lam=1e-10)                # doctest: +SKIP
>>> result = conjugate_gradients(matvec_with_ridge(operator, 1e-10), y, P)   # doctest: +SKIP
>>> result.plot()                                                            # doctest: +SKIP
"""

from mlffkit.solvers.cg import CGResult, conjugate_gradients
from mlffkit.solvers.operator import DenseOperator, KernelOperator, matvec_with_ridge
from mlffkit.solvers.preconditioners import METHODS, NystromPreconditioner, nystrom_preconditioner

__all__ = [
    "METHODS",
    "CGResult",
    "DenseOperator",
    "KernelOperator",
    "NystromPreconditioner",
    "conjugate_gradients",
    "matvec_with_ridge",
    "nystrom_preconditioner",
]
