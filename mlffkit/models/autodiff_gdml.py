r"""GDML for any differentiable descriptor: the kernel by automatic differentiation.

:class:`AutoDiffGDML` is (s)GDML (:class:`~mlffkit.models.GDML`) with the inverse
distances replaced by any descriptor written as a torch function of one frame's
positions, ``(N, 3) -> (d,)`` (Schmitz, Müller and Chmiela, J. Phys. Chem. Lett. 13,
10183, 2022). Its force-field kernel :math:`\nabla_r\nabla_{r'}^\top k(D(r), D(r'))` and
the predictions come from :mod:`mlffkit.kernels.autodiff`: products with the kernel by
forward- and reverse-mode AD, never a (3N × 3N) block beyond what a dense solver stores.

Named built-in descriptors (one feature per atom pair :math:`i > j`, in the order of
``numpy.tril_indices(N, -1)``; all of them merely reorder under permutations of like
atoms, so sGDML's symmetries apply):

``"inverse_distances"``  :math:`1/r_{ij}` (Å⁻¹), GDML's descriptor
``"exp_distances"``      :math:`\exp(-r_{ij}/r_0)`, :math:`r_0` = 1 Å (dimensionless)
``"coulomb_matrix"``     :math:`Z_iZ_j/r_{ij}` (Å⁻¹), the Coulomb matrix's off-diagonal triangle
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from mlffkit.kernels.autodiff import (
    CHUNK_NUMBERS,
    KERNELS,
    PAIR_TEMPORARIES,
    AutoDiffKernelOperator,
    Descriptor,
    kernel_rows,
    make_kernel,
)
from mlffkit.models.base import ForceFieldModel, check_kernel_solve_params
from mlffkit.models.diagnostics import fit_integration_constant
from mlffkit.models.gdml import _available_memory
from mlffkit.symmetry import find_permutations, resolve_permutations

SOLVERS = ("cholesky", "cg")
BUILTIN_DESCRIPTORS = ("inverse_distances", "exp_distances", "coulomb_matrix")
#: length scale r0 of the "exp_distances" descriptor, Å
EXP_DISTANCE_SCALE = 1.0


class PairDescriptor:
    """A built-in descriptor: one feature per atom pair ``i > j`` of a frame ``(N, 3) -> (d,)``.

    Parameters
    ----------
    kind : {"inverse_distances", "exp_distances", "coulomb_matrix"}
        See the module docstring.
    numbers : array_like of int, shape (N,)
        Atomic numbers (used by ``"coulomb_matrix"``).
    device : str or torch.device
    """

    def __init__(self, kind: str, numbers, device="cpu"):
        if kind not in BUILTIN_DESCRIPTORS:
            raise ValueError(
                f"unknown descriptor {kind!r}; use one of {BUILTIN_DESCRIPTORS} or pass your own "
                "function (N, 3) -> (d,)"
            )
        self.kind = kind
        numbers = np.asarray(numbers)
        i, j = np.tril_indices(len(numbers), k=-1)
        self._i = torch.as_tensor(i, device=device)
        self._j = torch.as_tensor(j, device=device)
        z = torch.as_tensor(numbers, dtype=torch.float64, device=device)
        self._zz = z[self._i] * z[self._j]

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.vector_norm(positions[self._i] - positions[self._j], dim=-1)
        if self.kind == "inverse_distances":
            return 1.0 / r
        if self.kind == "exp_distances":
            return torch.exp(-r / EXP_DISTANCE_SCALE)
        return self._zz.to(r.dtype) / r

    def __repr__(self) -> str:
        return f"PairDescriptor({self.kind!r})"


class AutoDiffGDML(ForceFieldModel):
    r"""(s)GDML with any differentiable descriptor, its kernel by automatic differentiation.

    The model is GDML's: forces :math:`f(r) = \sum_j K_F(r, r_j)\,\alpha_j` with the
    force-field kernel :math:`K_F = \nabla_r\nabla_{r'}^\top k(D(r), D(r'))`, trained by
    solving :math:`(K + \lambda I)\alpha = F`; the energy is :math:`-h(r) + c` with
    :math:`h(r) = \sum_j \nabla_{r_j} k(D(r), D(r_j))\cdot\alpha_j`, so that
    :math:`f = -\nabla E` exactly. With ``descriptor="inverse_distances"`` it is the same
    model as :class:`~mlffkit.models.GDML` (to rounding), only slower.

    Parameters
    ----------
    sigma : float
        Kernel length scale, in the descriptor's units. Choose it on validation data
        (:func:`~mlffkit.models.select_sigma`); the right range depends on the descriptor.
    descriptor : str or callable
        One of ``"inverse_distances"``, ``"exp_distances"``, ``"coulomb_matrix"`` (see
        :mod:`mlffkit.models.autodiff_gdml`), or a function mapping one frame's positions
        ``(N, 3)`` torch tensor (Å, float64) to a vector ``(d,)``, written with torch
        operations so that :mod:`torch.func` can differentiate and batch it (close over the
        atomic numbers if it needs them). Models with a custom function cannot be saved.
    kernel : {"matern52", "gaussian"}
        Scalar kernel in descriptor space (GDML's Matérn 5/2 by default).
    lam : float
        Ridge regularisation added to the kernel matrix's diagonal.
    permutations : "auto", None, "none" or array_like of int (n_perms, n_atoms)
        sGDML symmetries: ``"auto"`` finds them from the training geometries, None or
        ``"none"`` switches them off, an array gives them (or group generators). The
        descriptor must only reorder its entries under them (checked).
    solver : {"cholesky", "cg"}
        ``"cholesky"``: assemble the dense kernel matrix (from AD columns) and factorise
        it, float64, O((3NM)²) memory. ``"cg"``: conjugate gradients on matrix-free
        products, O(3NM) memory, preconditioned by a Nyström approximation.
    preconditioner : {"pivoted_cholesky", "leverage", "random", "eig"} or None
        Nyström preconditioner of CG (None: plain CG), as in :class:`~mlffkit.models.GDML`.
    rank : int
        Rank of the preconditioner, in kernel columns (capped at the system size).
    tol : float
        Relative residual at which CG stops.
    max_iter : int, optional
        CG step limit (default: the system size).
    device : str or torch.device
        Where the descriptors and kernel products are computed.
    batch_size : int, optional
        Frames per prediction chunk (default: from a memory budget of the chunk's
        intermediates).

    Attributes
    ----------
    permutations_ : numpy.ndarray of int, shape (n_perms, n_atoms)
    alphas_ : numpy.ndarray, shape (n_train, 3 n_atoms)
        Force coefficients.
    integration_constant_ : float
        Energy offset :math:`c` (eV).
    has_energy_reference_ : bool
    diagnostics_ : dict
        Energy–force consistency of the training labels (as :class:`~mlffkit.models.GDML`).
    solver_info_ : dict
        ``solver``, ``time_s`` and for CG ``n_iter``, ``residual``, ``converged``.

    Examples
    --------
    >>> def exp_distances(r):                                  # doctest: +SKIP
    ...     i, j = torch.tril_indices(len(r), len(r), -1)
    ...     return torch.exp(-torch.linalg.vector_norm(r[i] - r[j], dim=-1))
    >>> model = AutoDiffGDML(sigma=1.0, descriptor=exp_distances).fit(train)  # doctest: +SKIP
    >>> energies, forces = model.predict(test)                 # doctest: +SKIP
    """

    model_type = "AutoDiffGDML"

    def __init__(
        self,
        sigma,
        *,
        descriptor="inverse_distances",
        kernel="matern52",
        lam=1e-10,
        permutations="auto",
        solver="cholesky",
        preconditioner="pivoted_cholesky",
        rank=500,
        tol=1e-8,
        max_iter=None,
        device="cpu",
        batch_size=None,
    ):
        self.sigma = sigma
        self.descriptor = descriptor
        self.kernel = kernel
        self.lam = lam
        self.permutations = permutations
        self.solver = solver
        self.preconditioner = preconditioner
        self.rank = rank
        self.tol = tol
        self.max_iter = max_iter
        self.device = device
        self.batch_size = batch_size

    # ------------------------------------------------------------------ training
    def fit(self, train, y=None, *, progress: bool = True) -> AutoDiffGDML:
        """Train on the forces of ``train``; its energies fix the integration constant.

        Parameters
        ----------
        train : Dataset or list of ase.Atoms
            Frames of one molecule with forces (eV/Å) and, ideally, energies (eV).
        y : None
            Unused (scikit-learn's slot for targets: the labels are in ``train``).
        progress : bool
            Progress bars for the kernel assembly or the CG iterations.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For missing forces, duplicated frames, bad parameters, or a descriptor that is
            not a finite, differentiable, batchable vector (or not compatible with the
            permutations).
        RuntimeError
            If the kernel matrix is not positive definite (raise ``lam``).
        MemoryError
            If the dense kernel matrix of ``solver="cholesky"`` does not fit in memory.
        """
        self._refuse_second_dataset(y)
        self._check_params()
        train = self._prepare_training(train)
        device = torch.device(self.device)
        positions = torch.as_tensor(train.positions, dtype=torch.float64, device=device)
        self.permutations_ = self._resolve_permutations(train.positions, train.numbers)
        operator = AutoDiffKernelOperator(
            self._descriptor_function(train.numbers),
            make_kernel(self.kernel, self.sigma),
            positions,
            self.permutations_,
        )
        labels = torch.as_tensor(train.forces, dtype=torch.float64, device=device).reshape(-1)
        coef = self._solve(operator, labels, progress)
        self.alphas_ = coef.reshape(len(train), -1).cpu().numpy()
        self.train_positions_ = train.positions.copy()
        self._build_predictor(operator)

        energies = train.energies
        self.has_energy_reference_ = energies is not None
        self.integration_constant_, self.diagnostics_ = fit_integration_constant(
            energies, lambda: self._integrate(train.positions, progress=False)[0]
        )
        self._record_training(train)
        return self

    def _check_params(self) -> None:
        check_kernel_solve_params(self)
        if self.rank is None:  # GDML picks a rank itself; this model needs one
            raise ValueError("rank must be a positive number of columns, got None")
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; use one of {sorted(KERNELS)}")
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; use one of {SOLVERS}")
        if isinstance(self.descriptor, str):
            if self.descriptor not in BUILTIN_DESCRIPTORS:
                raise ValueError(
                    f"unknown descriptor {self.descriptor!r}; use one of {BUILTIN_DESCRIPTORS} "
                    "or pass your own torch function (N, 3) -> (d,)"
                )
        elif not callable(self.descriptor):
            raise ValueError(
                "descriptor must be the name of a built-in descriptor or a function "
                f"(N, 3) -> (d,), got {type(self.descriptor).__name__}"
            )

    def _resolve_permutations(self, positions: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        return resolve_permutations(
            self.permutations,
            numbers,
            lambda: find_permutations(positions, numbers),
            "the molecule's graph automorphisms",
        )

    def _descriptor_function(self, numbers) -> Descriptor:
        if isinstance(self.descriptor, str):
            return PairDescriptor(self.descriptor, numbers, device=torch.device(self.device))
        return self.descriptor

    def _solve(self, operator: AutoDiffKernelOperator, labels, progress: bool) -> torch.Tensor:
        start = time.perf_counter()
        n = operator.shape[0]
        if self.solver == "cg":
            coef = self._solve_cg(operator, labels, progress)
        else:
            available = _available_memory()
            if available is not None and n * n * 8 > available:
                raise MemoryError(
                    f"the dense kernel matrix ({n} × {n}) needs {n * n * 8 / 1e9:.1f} GB but only "
                    f"{available / 1e9:.1f} GB are available; train on fewer frames or use "
                    "solver='cg' (matrix-free)"
                )
            matrix = operator.to_dense(progress=progress)
            matrix.flat[:: n + 1] += self.lam
            try:
                # symmetric to rounding: the transpose is a Fortran-ordered matrix, factorised
                # in place (LAPACK reads its lower triangle)
                factor = scipy.linalg.cho_factor(
                    matrix.T, lower=True, overwrite_a=True, check_finite=False
                )
            except np.linalg.LinAlgError as err:
                raise RuntimeError(
                    f"the kernel matrix is not positive definite at sigma={self.sigma}, "
                    f"lam={self.lam}: raise lam (e.g. 1e-8) or lower sigma; near-duplicate "
                    "training frames also cause this"
                ) from err
            coef = torch.as_tensor(
                scipy.linalg.cho_solve(factor, labels.cpu().numpy(), check_finite=False),
                device=labels.device,
            )
            self.solver_info_ = {"solver": "cholesky"}
        self.solver_info_["time_s"] = time.perf_counter() - start
        return coef

    def _solve_cg(self, operator, labels, progress: bool) -> torch.Tensor:
        from mlffkit.solvers import conjugate_gradients, matvec_with_ridge, nystrom_preconditioner

        n = operator.shape[0]
        rank = min(int(self.rank), n)
        preconditioner = None
        if self.preconditioner is not None:
            preconditioner = nystrom_preconditioner(
                operator, rank, float(self.lam), self.preconditioner, progress=progress
            ).apply
        result = conjugate_gradients(
            matvec_with_ridge(operator, float(self.lam)),
            labels,
            preconditioner,
            tol=float(self.tol),
            max_iter=self.max_iter,
            progress=progress,
            label="AutoDiffGDML",
        )
        if not result.converged:
            warnings.warn(
                f"CG stopped after {result.n_iter} steps at relative residual "
                f"{result.residuals[-1]:.1e} > tol={self.tol:g}: raise max_iter, rank or lam",
                stacklevel=3,
            )
        self.solver_info_ = {
            "solver": "cg",
            "n_iter": result.n_iter,
            "residual": float(result.residuals[-1]),
            "converged": result.converged,
        }
        return result.x

    # ------------------------------------------------------------------ prediction
    def _build_predictor(self, operator: AutoDiffKernelOperator) -> None:
        """Training descriptors and tangents ``J(P r_j) P alpha_j`` (all permutations)."""
        alphas = torch.as_tensor(self.alphas_, dtype=torch.float64, device=operator.device)
        tangents = operator.tangents(alphas.reshape(1, operator.n_frames, -1, 3))[0]
        self._descriptor_fn = operator.descriptor
        self._kernel = operator.kernel
        self._x_train = operator.descriptors.flatten(0, 1)  # (M G, d)
        self._v_train = tangents.flatten(0, 1)  # (M G, d)

    def _integrate(self, positions: np.ndarray, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """``-h`` (energies without the constant) ``(n,)`` and forces ``(n, N, 3)``."""
        device = torch.device(self.device)
        n_frames = len(positions)
        m = len(self._x_train)
        batch = self.batch_size or max(1, min(4096, CHUNK_NUMBERS // (m * PAIR_TEMPORARIES)))
        energies = np.empty(n_frames)
        forces = np.empty(positions.shape)
        for start in tqdm(range(0, n_frames, batch), desc="AD-GDML predict", disable=not progress):
            stop = min(n_frames, start + batch)
            pos = torch.as_tensor(positions[start:stop], dtype=torch.float64, device=device)
            f, h = kernel_rows(
                self._descriptor_fn, self._kernel, pos, self._x_train, self._v_train[None]
            )
            energies[start:stop] = -h[0].cpu().numpy()
            forces[start:stop] = f[0].cpu().numpy()
        return energies, forces

    def _predict_positions(self, positions: np.ndarray, progress: bool):
        energies, forces = self._integrate(positions, progress)
        return energies + self.integration_constant_, forces

    # ------------------------------------------------------------------ persistence
    def _state(self):
        if not isinstance(self.descriptor, str):
            raise ValueError(
                "this AutoDiffGDML uses a custom descriptor function, which cannot be written to "
                "a model file (only its name could, not its code); save the training set and "
                f"retrain, or use a built-in descriptor {BUILTIN_DESCRIPTORS}"
            )
        attributes = {
            "integration_constant": self.integration_constant_,
            "has_energy_reference": self.has_energy_reference_,
            "diagnostics": self.diagnostics_,
            "solver_info": self.solver_info_,
        }
        arrays = {
            "train_positions": self.train_positions_,
            "alphas": self.alphas_,
            "permutations": self.permutations_,
        }
        return attributes, arrays

    def _set_state(self, attributes, arrays):
        self.integration_constant_ = float(attributes["integration_constant"])
        self.has_energy_reference_ = bool(attributes["has_energy_reference"])
        self.diagnostics_ = dict(attributes["diagnostics"])
        self.solver_info_ = dict(attributes["solver_info"])
        self.train_positions_ = arrays["train_positions"]
        self.alphas_ = arrays["alphas"]
        self.permutations_ = arrays["permutations"]
        operator = AutoDiffKernelOperator(
            self._descriptor_function(self.numbers_),
            make_kernel(self.kernel, self.sigma),
            torch.as_tensor(
                self.train_positions_, dtype=torch.float64, device=torch.device(self.device)
            ),
            self.permutations_,
        )
        self._build_predictor(operator)
