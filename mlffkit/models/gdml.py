r"""GDML and sGDML: gradient-domain machine learning of a molecule's force field.

A GDML model (Chmiela et al., Sci. Adv. 2017) is a Gaussian process on the
*forces*: its kernel is the Hessian of a Matérn 5/2 kernel on the inverse-distance
descriptor (:mod:`mlffkit.kernels.gdml`). Training solves one linear system
:math:`(K + \lambda I)\alpha = F` of size 3N·M in closed form (Cholesky, float64);
the energy follows by integrating the forces analytically, up to a constant fitted
to the training energies. sGDML (Chmiela et al., Nat. Commun. 2018) symmetrises
the kernel over the molecule's permutational symmetries
(:func:`mlffkit.symmetry.find_permutations`), which is the default here.

Cost: the kernel matrix has (3N·M)² float64 entries — 5.8 GB for 1000 ethanol
frames (N = 9) — and the Cholesky factorisation takes O((3N·M)³) time. Both happen
in one preallocated matrix, factorised in place.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from mlffkit.descriptors.inverse_distances import inverse_distances, pair_permutation
from mlffkit.kernels.gdml import GDMLKernelOperator, assemble_kernel, predict_descriptor_space
from mlffkit.models.base import ForceFieldModel, check_kernel_solve_params
from mlffkit.models.diagnostics import NO_DIAGNOSTICS, fit_integration_constant
from mlffkit.solvers import conjugate_gradients, matvec_with_ridge, nystrom_preconditioner
from mlffkit.symmetry import find_permutations, resolve_permutations

SOLVERS = ("auto", "cholesky", "cg")
#: share of the available memory the dense kernel may take before ``solver="auto"`` picks CG
_DENSE_SHARE = 0.8
#: size of one prediction chunk, in (frame × training row) pairs: ~4 MB temporaries, cache-friendly
_PREDICT_NUMBERS = 1 << 19


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _solve_upper_in_torch(
    matrix: torch.Tensor, labels: torch.Tensor, lam: float, block: int = 4096
):
    """Solve ``(K + lam I) x = labels`` for K given in its upper triangle, with torch (e.g. on a GPU).

    The lower triangle is overwritten with the mirror of the upper one (block by block,
    no full-size temporary) so that the factorisation sees a symmetric matrix whichever
    triangle the backend reads. Returns None if the matrix is not positive definite.
    """
    n = matrix.shape[0]
    for i0 in range(block, n, block):
        i1 = min(n, i0 + block)
        matrix[i0:i1, :i0] = matrix[:i0, i0:i1].T
    for i0 in range(0, n, block):  # the diagonal blocks
        i1 = min(n, i0 + block)
        diag = matrix[i0:i1, i0:i1]
        diag.copy_(torch.triu(diag) + torch.triu(diag, 1).T)
    matrix.diagonal().add_(lam)
    factor, info = torch.linalg.cholesky_ex(matrix)
    if int(info) != 0:
        return None
    return torch.cholesky_solve(labels[:, None], factor)[:, 0]


def kernel_bytes(n_train: int, n_atoms: int, energies: bool = False) -> int:
    """Bytes of the float64 kernel matrix GDML trains with.

    >>> kernel_bytes(1000, 9) / 1e9   # ethanol, 1000 frames
    5.832
    """
    n = n_train * 3 * n_atoms + (n_train if energies else 0)
    return n * n * 8


class GDML(ForceFieldModel):
    """(s)GDML force field: closed-form kernel regression of forces, energies by integration.

    Parameters
    ----------
    sigma : float
        Length scale of the Matérn 5/2 kernel, in descriptor units (1/Å). Choose it
        on validation data with :func:`~mlffkit.models.select_sigma`, on a wide,
        roughly logarithmic grid (e.g. 2 to 100 for small organic molecules).
    lam : float
        Ridge regularisation added to the kernel matrix's diagonal (sGDML's ``lam``).
        Tiny, because the labels are nearly noise-free; raise it (1e-8 to 1e-5) for
        noisy labels or when the kernel matrix is reported not positive definite.
    use_energies_constraint : bool
        Also fit the energies (sGDML's energy constraints: energy rows and columns
        in the kernel). Default: fit forces only and match the integration
        constant to the energies.
    permutations : "auto", None, "none" or array_like of int (n_perms, n_atoms)
        Permutational symmetries of the kernel. ``"auto"`` finds them from the
        training geometries (sGDML); None or ``"none"`` switches them off (GDML);
        an array gives them (or generators of the group) explicitly.
    solver : {"auto", "cholesky", "cg"}
        ``"cholesky"``: assemble the kernel matrix and factorise it (float64; exact;
        O(n²) memory, O(n³) time for ``n = 3N·M``). ``"cg"``: conjugate gradients with
        matrix-free kernel–vector products and a Nyström preconditioner (O(n·rank)
        memory; see :mod:`mlffkit.solvers`). ``"auto"``: Cholesky when the kernel matrix
        fits into ``memory_budget``, CG otherwise.
    preconditioner : {"pivoted_cholesky", "leverage", "random", "eig"} or None
        Nyström preconditioner of the CG solver (None: plain CG, slow).
    rank : int, optional
        Rank of the preconditioner, in kernel columns (default ``min(n, 2000)``);
        memory ``8 n rank`` bytes.
    tol : float
        CG stops at this relative residual ``|F - (K + lam I) alpha| / |F|``.
    max_iter : int, optional
        CG step limit (default 2000); a solve that does not converge warns.
    memory_budget : float, optional
        Bytes the dense kernel matrix may take with ``solver="auto"`` (default 80 % of
        the memory available when ``fit`` starts).
    device : str or torch.device
        ``"cpu"`` or ``"cuda"``; the kernel matrix lives there during training.
    batch_size : int, optional
        Frames per prediction chunk; default: about half a million (frame, training
        row) pairs per chunk, a cache-friendly few MB of temporaries.

    Attributes
    ----------
    permutations_ : numpy.ndarray of int, shape (n_perms, n_atoms)
        The symmetry group used (identity first).
    integration_constant_ : float
        Energy offset (eV) added to the integrated forces.
    diagnostics_ : dict
        ``energy_force_slope``, ``energy_force_correlation`` of the training labels
        (see :func:`mlffkit.models.diagnostics.check_energy_force_consistency`).
    has_energy_reference_ : bool
        False when trained without energies: energies are then known only up to a constant.

    Examples
    --------
    >>> model = GDML(sigma=20).fit(train)                   # doctest: +SKIP
    >>> energies, forces = model.predict(test)              # doctest: +SKIP
    """

    model_type = "GDML"

    def __init__(
        self,
        sigma,
        *,
        lam=1e-10,
        use_energies_constraint=False,
        permutations="auto",
        solver="auto",
        preconditioner="pivoted_cholesky",
        rank=None,
        tol=1e-4,
        max_iter=None,
        memory_budget=None,
        device="cpu",
        batch_size=None,
    ):
        self.sigma = sigma
        self.lam = lam
        self.use_energies_constraint = use_energies_constraint
        self.permutations = permutations
        self.solver = solver
        self.preconditioner = preconditioner
        self.rank = rank
        self.tol = tol
        self.max_iter = max_iter
        self.memory_budget = memory_budget
        self.device = device
        self.batch_size = batch_size

    def display_name(self) -> str:
        """``"GDML"``, or ``"sGDML (G symmetries)"`` when trained with a symmetry group."""
        n_perms = len(getattr(self, "permutations_", ()))
        base = type(self).__name__
        return f"s{base} ({n_perms} symmetries)" if n_perms > 1 else base

    # ------------------------------------------------------------------ training
    def fit(self, train, y=None, *, progress: bool = True) -> GDML:
        """Train on the forces (and energies) of ``train``.

        Parameters
        ----------
        train : Dataset or list of ase.Atoms
            Frames of one molecule with forces; energies fix the integration constant.
        y : None
            Unused (scikit-learn's slot for targets: the labels are in ``train``).
        progress : bool
            Show a progress bar for the kernel assembly.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For missing forces (or energies with ``use_energies_constraint``),
            duplicated frames, frames of different molecules, or bad parameters.
        RuntimeError
            If the kernel matrix is not positive definite (raise ``lam``).
        MemoryError
            If the kernel matrix cannot fit into the available memory.
        """
        self._refuse_second_dataset(y)
        self._check_params()
        train = self._prepare_training(train)
        if self.use_energies_constraint:
            train.require("energies")
        device = torch.device(self.device)
        positions = torch.as_tensor(train.positions, dtype=torch.float64, device=device)
        self.permutations_ = self._resolve_permutations(train.positions, train.numbers)
        x, jac = self._descriptor(positions)
        jac = jac.flatten(2)  # (M, d, 3N)
        perm_index = self._perm_index(device)

        forces = torch.as_tensor(train.forces, dtype=torch.float64, device=device).reshape(
            len(train), -1
        )
        energies = train.energies
        e_mean = float(np.mean(energies)) if energies is not None else 0.0
        labels = forces.reshape(-1)
        if self.use_energies_constraint:
            e = torch.as_tensor(energies - e_mean, dtype=torch.float64, device=device)
            labels = torch.cat([labels, e])
        coef = self._solve(x, jac, perm_index, labels, progress)

        n_force = forces.numel()
        self.alphas_ = coef[:n_force].reshape(forces.shape).cpu().numpy()
        self.betas_ = coef[n_force:].cpu().numpy() if self.use_energies_constraint else None
        self.train_positions_ = train.positions.copy()
        self._build_predictor(x, jac)

        self.has_energy_reference_ = energies is not None
        if self.use_energies_constraint:
            self.integration_constant_, self.diagnostics_ = e_mean, dict(NO_DIAGNOSTICS)
        else:
            self.integration_constant_, self.diagnostics_ = fit_integration_constant(
                energies, lambda: self._integrate(train.positions, progress=False)[0]
            )
        self._record_training(train)
        return self

    def _check_params(self) -> None:
        check_kernel_solve_params(self, sigma_units="descriptor units, 1/Å")
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; use one of {SOLVERS}")
        if self.solver == "cg" and self.use_energies_constraint:
            raise ValueError(
                "use_energies_constraint needs solver='cholesky'; the CG solver fits forces only"
            )

    def _resolve_permutations(self, positions: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        return resolve_permutations(
            self.permutations,
            numbers,
            lambda: find_permutations(positions, numbers),
            "the molecule's graph automorphisms",
        )

    def _descriptor(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel's descriptor ``(n, d)`` and its Jacobian ``(n, d, N, 3)`` at positions (Å).

        Inverse distances here; a subclass (e.g. a periodic model) overrides this, keeping
        the pair order of :func:`~mlffkit.descriptors.inverse_distances.pair_indices`, which
        :meth:`_perm_index` relies on.
        """
        return inverse_distances(positions, jacobian=True)

    def _perm_index(self, device) -> torch.Tensor:
        return torch.as_tensor(
            np.stack([pair_permutation(p) for p in self.permutations_]), device=device
        )

    def _choose_solver(self, n: int, on_cpu: bool) -> str:
        """``"cholesky"`` or ``"cg"`` for a kernel of size ``n``, following ``solver``."""
        if self.solver != "auto":
            return self.solver
        if self.use_energies_constraint:
            return "cholesky"
        budget = self.memory_budget
        if budget is None:
            if on_cpu:
                available = _available_memory()
            else:
                available = torch.cuda.mem_get_info(torch.device(self.device))[0]
            budget = None if available is None else _DENSE_SHARE * available
        return "cholesky" if budget is None or n * n * 8 <= budget else "cg"

    def _solve(self, x, jac, perm_index, labels, progress: bool) -> torch.Tensor:
        """Solve ``(K + lam I) coef = labels`` with the chosen solver: the coefficients."""
        on_cpu = x.device.type == "cpu"
        solver = self._choose_solver(labels.numel(), on_cpu)
        self.solver_info_ = {"solver": solver}
        if solver == "cg":
            return self._solve_cg(x, jac, perm_index, labels, progress)
        return self._solve_dense(x, jac, perm_index, labels, progress)

    def _solve_cg(self, x, jac, perm_index, labels, progress: bool) -> torch.Tensor:
        """Preconditioned conjugate gradients with matrix-free kernel–vector products."""
        operator = GDMLKernelOperator(x, jac, perm_index, float(self.sigma))
        n = labels.numel()
        preconditioner = None
        info = self.solver_info_
        if self.preconditioner is not None:
            rank = min(n, int(self.rank) if self.rank is not None else 2000)
            preconditioner = nystrom_preconditioner(
                operator, rank, float(self.lam), self.preconditioner, progress=progress
            )
            info.update(
                preconditioner=self.preconditioner,
                rank=preconditioner.rank,
                preconditioner_s=preconditioner.build_time_s,
            )
        max_iter = int(self.max_iter) if self.max_iter is not None else 2000
        result = conjugate_gradients(
            matvec_with_ridge(operator, float(self.lam)),
            labels,
            preconditioner,
            tol=float(self.tol),
            max_iter=max_iter,
            progress=progress,
            label=str(self.preconditioner),
        )
        info.update(
            n_iter=result.n_iter,
            converged=result.converged,
            residual=float(result.residuals[-1]),
            cg_s=result.time_s,
        )
        self.cg_result_ = result
        if not result.converged:
            warnings.warn(
                f"CG stopped after {result.n_iter} steps at relative residual "
                f"{result.residuals[-1]:.1e} > tol={self.tol}: raise max_iter or the "
                "preconditioner's rank, or raise lam",
                stacklevel=3,
            )
        return result.x

    def _solve_dense(self, x, jac, perm_index, labels, progress: bool) -> torch.Tensor:
        """Assemble the kernel matrix, add ``lam``, factorise, solve: the coefficients."""
        n_train, _, n_comp = jac.shape
        n = labels.numel()
        need = n * n * 8
        on_cpu = x.device.type == "cpu"
        available = _available_memory() if on_cpu else None
        if available is not None and need > available:
            raise MemoryError(
                f"the kernel matrix for {n_train} training frames of {n_comp // 3} atoms needs "
                f"{need / 1e9:.1f} GB but only {available / 1e9:.1f} GB are available; train on "
                "fewer frames or use solver='cg'"
            )
        bar = tqdm(total=n_train, desc="GDML kernel", unit="frame", disable=not progress)
        with bar:
            if on_cpu:
                matrix = np.empty((n, n))
                assemble_kernel(
                    torch.from_numpy(matrix),
                    x,
                    jac,
                    perm_index,
                    float(self.sigma),
                    energies=self.use_energies_constraint,
                    callback=bar.update,
                )
                matrix.flat[:: n + 1] += self.lam
                bar.set_description("GDML solve (Cholesky)")
                # The matrix is filled in its upper triangle (row-major); its transpose is a
                # column-major lower triangle, which LAPACK (torch's MKL build) factorises in
                # place: no second n × n array. (SciPy's bundled OpenBLAS 0.3.30 was seen to
                # crash in this factorisation for n = 27 000 on a busy machine.)
                lower = torch.from_numpy(matrix).T
                info = torch.empty((), dtype=torch.int32)
                torch.linalg.cholesky_ex(lower, out=(lower, info))
                if int(info) != 0:
                    raise self._not_positive_definite()
                # two triangular solves read the factor in place (cholesky_solve copies it)
                half = torch.linalg.solve_triangular(lower, labels.cpu()[:, None], upper=False)
                coef = torch.linalg.solve_triangular(lower.mT, half, upper=True)[:, 0]
                del matrix, lower
                return coef.to(x.device)
            matrix = torch.empty((n, n), dtype=torch.float64, device=x.device)
            assemble_kernel(
                matrix,
                x,
                jac,
                perm_index,
                float(self.sigma),
                energies=self.use_energies_constraint,
                callback=bar.update,
            )
            bar.set_description("GDML solve (Cholesky)")
            coef = _solve_upper_in_torch(matrix, labels, self.lam)
            if coef is None:
                raise self._not_positive_definite()
            return coef

    def _not_positive_definite(self) -> RuntimeError:
        return RuntimeError(
            f"the GDML kernel matrix is not positive definite at sigma={self.sigma}, "
            f"lam={self.lam}: raise lam (e.g. 1e-8) or lower sigma; near-duplicate training "
            "frames also cause this"
        )

    # ------------------------------------------------------------------ prediction
    def _build_predictor(self, x: torch.Tensor, jac: torch.Tensor) -> None:
        """Descriptor-space training vectors for all permutations: what prediction needs."""
        device = x.device
        perm_index = self._perm_index(device)
        alphas = torch.as_tensor(self.alphas_, dtype=torch.float64, device=device)
        v = torch.einsum("mdk,mk->md", jac, alphas)  # J_j alpha_j
        n_perms = perm_index.shape[0]
        self._x_train = x[:, perm_index].reshape(-1, x.shape[1])
        self._v_train = v[:, perm_index].reshape(-1, x.shape[1])
        self._xv_train = (self._x_train * self._v_train).sum(1)
        self._beta_train = None
        if self.betas_ is not None:
            beta = torch.as_tensor(self.betas_, dtype=torch.float64, device=device)
            self._beta_train = beta.repeat_interleave(n_perms)

    def _integrate(self, positions: np.ndarray, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """Energies without the integration constant ``(n,)`` and forces ``(n, N, 3)``, in chunks."""
        device = torch.device(self.device)
        n_frames, n_atoms, _ = positions.shape
        batch = self.batch_size or max(1, min(4096, _PREDICT_NUMBERS // len(self._x_train)))
        energies = np.empty(n_frames)
        forces = np.empty((n_frames, n_atoms, 3))
        for start in tqdm(range(0, n_frames, batch), desc="GDML predict", disable=not progress):
            stop = min(n_frames, start + batch)
            pos = torch.as_tensor(positions[start:stop], dtype=torch.float64, device=device)
            x, jac = self._descriptor(pos)
            energy, f_desc = predict_descriptor_space(
                x, self._x_train, self._v_train, self._xv_train, float(self.sigma), self._beta_train
            )
            energies[start:stop] = energy.cpu().numpy()
            forces[start:stop] = torch.einsum("nd,ndac->nac", f_desc, jac).cpu().numpy()  # J^T f
        return energies, forces

    def _predict_positions(self, positions: np.ndarray, progress: bool):
        energies, forces = self._integrate(positions, progress)
        return energies + self.integration_constant_, forces

    # ------------------------------------------------------------------ persistence
    def _state(self):
        attributes = {
            "integration_constant": self.integration_constant_,
            "has_energy_reference": self.has_energy_reference_,
            "diagnostics": self.diagnostics_,
            "solver_info": getattr(self, "solver_info_", {}),
        }
        arrays = {
            "train_positions": self.train_positions_,
            "alphas": self.alphas_,
            "permutations": self.permutations_,
        }
        if self.betas_ is not None:
            arrays["betas"] = self.betas_
        return attributes, arrays

    def _set_state(self, attributes, arrays):
        self.integration_constant_ = float(attributes["integration_constant"])
        self.has_energy_reference_ = bool(attributes["has_energy_reference"])
        self.diagnostics_ = dict(attributes["diagnostics"])
        self.solver_info_ = dict(attributes.get("solver_info", {}))
        self.train_positions_ = arrays["train_positions"]
        self.alphas_ = arrays["alphas"]
        self.permutations_ = arrays["permutations"]
        self.betas_ = arrays.get("betas")
        pos = torch.as_tensor(
            self.train_positions_, dtype=torch.float64, device=torch.device(self.device)
        )
        x, jac = self._descriptor(pos)
        self._build_predictor(x, jac.flatten(2))
