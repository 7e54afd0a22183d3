r"""The (s)GDML force-field kernel: the Hessian of a Matérn 5/2 kernel on a descriptor.

GDML (Chmiela et al., Sci. Adv. 3, e1603015, 2017) models the energy as a Gaussian
process with kernel :math:`k(x, x')` on the descriptor :math:`x = D(r)` (inverse
distances). Forces are :math:`F = -\nabla_r E`, so their covariance is

.. math::  K_F(r, r') = J(r)^\top \, H(x, x') \, J(r'), \qquad
           H = \nabla_x \nabla_{x'}^\top k(x, x'),

with :math:`J = \partial D / \partial r`. For the Matérn ν = 5/2 kernel with
:math:`a = \sqrt5/\sigma`, :math:`u = x - x'`, :math:`\rho = |u|`:

.. math::  H(x, x') = \frac{a^2}{3} e^{-a\rho}\left[(1 + a\rho)\, I - a^2\, u u^\top\right].

sGDML (Chmiela et al., Nat. Commun. 9, 3887, 2018) sums the kernel over a group of
atom permutations :math:`P` applied to the second argument, which makes the model
exactly invariant under them: :math:`k_{sym}(x, x') = \sum_P k(x, x'_P)`.

Everything here works in *descriptor space* (vectors of length
:math:`d = N(N-1)/2` rather than 3N × 3N blocks) wherever it can, and in tiles
of training frames, so that the full kernel matrix is written once into one
preallocated array and never copied.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

#: default working-set size of one tile of the kernel assembly, in float64 numbers
TILE_NUMBERS = 1 << 22


def _matern_coefficients(rho: torch.Tensor, sigma: float):
    """``c1 = (a²/3)(1 + aρ)e^{-aρ}``, ``c2 = (a⁴/3)e^{-aρ}`` and the kernel value ``k(ρ)``."""
    a = math.sqrt(5.0) / sigma
    ar = a * rho
    e = torch.exp(-ar)
    c1 = (a * a / 3.0) * (1.0 + ar) * e
    c2 = (a**4 / 3.0) * e
    k = (1.0 + ar + ar * ar / 3.0) * e
    return c1, c2, k


def kernel_tile(
    x_rows: torch.Tensor,
    jac_rows: torch.Tensor,
    x_cols: torch.Tensor,
    jac_cols: torch.Tensor,
    sigma: float,
    energies: bool = False,
) -> dict:
    """Covariances between the labels of two sets of frames, columns symmetrised.

    Parameters
    ----------
    x_rows : torch.Tensor, shape (b, d)
        Descriptors of the row frames.
    jac_rows : torch.Tensor, shape (b, d, K)
        Their Jacobians, ``K = 3 n_atoms``.
    x_cols : torch.Tensor, shape (c, G, d)
        Descriptors of the column frames under each of the ``G`` permutations.
    jac_cols : torch.Tensor, shape (c, G, d, K)
        Their Jacobians, permuted alike.
    sigma : float
        Length scale of the Matérn kernel, descriptor units (1/Å).
    energies : bool
        Also return the covariances that involve energies.

    Returns
    -------
    dict of torch.Tensor
        ``"ff"`` ``(b, K, c, K)``: Cov(F_i, F_j) (the force-field kernel);
        with ``energies``: ``"fe"`` ``(b, K, c)`` Cov(F_i, E_j), ``"ef"``
        ``(b, c, K)`` Cov(E_i, F_j) and ``"ee"`` ``(b, c)`` Cov(E_i, E_j).
    """
    b, d, K = jac_rows.shape
    c, G = x_cols.shape[:2]
    u = x_rows[:, None, None, :] - x_cols[None]  # (b, c, G, d)
    c1, c2, k = _matern_coefficients(torch.linalg.vector_norm(u, dim=-1), sigma)

    # u^T J_j^P for every pair and permutation: (c G) batched (b, d) @ (d, K)
    u_cgbd = u.permute(1, 2, 0, 3).reshape(c * G, b, d)
    uj = torch.bmm(u_cgbd, jac_cols.reshape(c * G, d, K)).view(c, G, b, K)

    # Q_ij = sum_P c1 J_j^P - c2 u (u^T J_j^P), the descriptor-space half of H J_j
    q = torch.bmm(c1.permute(1, 0, 2), jac_cols.reshape(c, G, d * K)).view(c, b, d, K)
    c2u = (c2[..., None] * u).permute(1, 0, 3, 2).reshape(c * b, d, G)
    q -= torch.bmm(c2u, uj.permute(0, 2, 1, 3).reshape(c * b, G, K)).view(c, b, d, K)

    # J_i^T Q_ij for all columns at once: b batched (K, d) @ (d, c K)
    q = q.permute(1, 2, 0, 3).reshape(b, d, c * K)
    out = {"ff": torch.bmm(jac_rows.transpose(1, 2), q).view(b, K, c, K)}
    if energies:
        # Cov(F_i, E_j) = J_i^T sum_P c1 u ; Cov(E_i, F_j) = -sum_P c1 (u^T J_j^P)
        c1u = (c1[..., None] * u).sum(2)  # (b, c, d)
        out["fe"] = torch.bmm(jac_rows.transpose(1, 2), c1u.transpose(1, 2))
        out["ef"] = -torch.einsum("bcg,cgbk->bck", c1, uj)
        out["ee"] = k.sum(2)
    return out


def _tile_sizes(n_frames: int, d: int, K: int, G: int, tile_numbers: int) -> tuple[int, int]:
    """Row and column tile sizes (in frames) whose intermediates fit ``tile_numbers`` floats."""
    per_pair = 2 * d * K + K * K + 3 * G * (d + K)  # the intermediates of kernel_tile
    pairs = max(1, tile_numbers // per_pair)
    rows = max(1, min(n_frames, int(math.sqrt(pairs / 16))))
    cols = max(1, min(n_frames, pairs // rows))
    return rows, cols


def assemble_kernel(
    out: torch.Tensor,
    x: torch.Tensor,
    jac: torch.Tensor,
    perm_index: torch.Tensor,
    sigma: float,
    energies: bool = False,
    tile_numbers: int = TILE_NUMBERS,
    callback: Callable[[int], None] | None = None,
) -> None:
    """Write the (s)GDML kernel matrix of the training frames into ``out``.

    Only the upper triangle of ``out`` is complete (blocks of frame ``i`` with
    frames ``j >= i``; some lower entries are written too): that is what a
    Cholesky factorisation of the upper triangle reads, and it halves the work.

    Parameters
    ----------
    out : torch.Tensor, shape (M K, M K) or (M K + M, M K + M)
        Preallocated float64 matrix (on CPU, e.g. a view of a NumPy array). Rows
        and columns are the force components of frame 0 (atom 0 x, y, z, atom 1
        ...), frame 1, ..., then with ``energies`` one energy per frame.
    x : torch.Tensor, shape (M, d)
        Descriptors of the training frames.
    jac : torch.Tensor, shape (M, d, K)
        Their Jacobians with the atom and Cartesian axes flattened, ``K = 3 n_atoms``.
    perm_index : torch.Tensor of int, shape (G, d)
        How each permutation of the symmetry group reorders the descriptor
        (:func:`mlffkit.descriptors.pair_permutation`); the identity alone for GDML.
    sigma : float
        Matérn length scale, descriptor units.
    energies : bool
        Add the energy rows and columns (sGDML's energy constraints).
    tile_numbers : int
        Working-set size of one tile, in float64 numbers (memory ~ 3× that in bytes × 8).
    callback : callable, optional
        Called with the number of column frames finished after each column tile.
    """
    M, d, K = jac.shape
    G = perm_index.shape[0]
    n_force = M * K
    expected = n_force + (M if energies else 0)
    if out.shape != (expected, expected):
        raise ValueError(f"out has shape {tuple(out.shape)}; expected ({expected}, {expected})")
    ff = out[:n_force, :n_force].view(M, K, M, K) if not energies else None
    rows, cols = _tile_sizes(M, d, K, G, tile_numbers)
    # Column tiles outside: the permuted copies of a column tile (G times the Jacobians)
    # are gathered once and reused for every row tile above the diagonal.
    for j0 in range(0, M, cols):
        j1 = min(M, j0 + cols)
        x_cols = x[j0:j1][:, perm_index]
        jac_cols = jac[j0:j1][:, perm_index]
        for i0 in range(0, j1, rows):
            i1 = min(j1, i0 + rows)
            t = kernel_tile(x[i0:i1], jac[i0:i1], x_cols, jac_cols, sigma, energies)
            if ff is not None:
                ff[i0:i1, :, j0:j1, :] = t["ff"]
            else:
                out[i0 * K : i1 * K, j0 * K : j1 * K] = t["ff"].reshape(
                    (i1 - i0) * K, (j1 - j0) * K
                )
                out[i0 * K : i1 * K, n_force + j0 : n_force + j1] = t["fe"].reshape(
                    (i1 - i0) * K, -1
                )
                out[j0 * K : j1 * K, n_force + i0 : n_force + i1] = (
                    t["ef"].permute(1, 2, 0).reshape((j1 - j0) * K, i1 - i0)
                )
                out[n_force + i0 : n_force + i1, n_force + j0 : n_force + j1] = t["ee"]
        if callback is not None:
            callback(j1 - j0)


def force_field_kernel(
    x1: torch.Tensor,
    jac1: torch.Tensor,
    x2: torch.Tensor,
    jac2: torch.Tensor,
    sigma: float,
    perm_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """The full force-field kernel between two (small) sets of frames, ``(n1 K, n2 K)``.

    For inspection and teaching (plot a kernel, check it against autograd); training
    uses :func:`assemble_kernel`, which fills a preallocated matrix tile by tile.

    Parameters
    ----------
    x1, x2 : torch.Tensor, shapes (n1, d), (n2, d)
        Descriptors.
    jac1, jac2 : torch.Tensor, shapes (n1, d, K), (n2, d, K)
        Their Jacobians.
    sigma : float
    perm_index : torch.Tensor of int, shape (G, d), optional
        Descriptor permutations to symmetrise over (default: none).
    """
    if perm_index is None:
        perm_index = torch.arange(x1.shape[1], device=x1.device)[None]
    t = kernel_tile(x1, jac1, x2[:, perm_index], jac2[:, perm_index], sigma)["ff"]
    n1, K, n2, _ = t.shape
    return t.reshape(n1 * K, n2 * K)


def predict_descriptor_space(
    x: torch.Tensor,
    x_train: torch.Tensor,
    v_train: torch.Tensor,
    xv_train: torch.Tensor,
    sigma: float,
    beta: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Energies and descriptor-space force vectors of a trained (s)GDML model.

    With :math:`v_j = J_j \alpha_j` (the force coefficients of training frame
    :math:`j` carried into descriptor space, one row per frame and permutation),

    .. math:: E(x) = \sum_j g(\rho_j)\, u_j \cdot v_j, \qquad
              f(x) = \sum_j H(x, x_j)\, v_j, \qquad F = J(x)^\top f(x),

    with :math:`g = -(a^2/3)(1 + a\rho)e^{-a\rho}` and :math:`u_j = x - x_j`. All sums are
    matrix products over the training rows; nothing of size (n, M, d) is formed.

    Parameters
    ----------
    x : torch.Tensor, shape (n, d)
        Descriptors of the frames to predict.
    x_train, v_train : torch.Tensor, shape (m, d)
        Training descriptors and their ``v`` vectors, ``m = M G`` rows (all permutations).
    xv_train : torch.Tensor, shape (m,)
        Row-wise dot products ``x_train · v_train`` (precomputed once).
    sigma : float
    beta : torch.Tensor, shape (m,), optional
        Energy coefficients of a model trained with energy constraints.

    Returns
    -------
    energy : torch.Tensor, shape (n,)
        Without the integration constant.
    f_desc : torch.Tensor, shape (n, d)
        Forces in descriptor space; the Cartesian forces are ``J^T f_desc``.
    """
    a = math.sqrt(5.0) / sigma
    s = a * a / 3.0
    # In-place operations: three (n, m) temporaries in all, which keeps prediction fast.
    ar = x @ x_train.T
    ar.mul_(-2.0).add_((x * x).sum(1, keepdim=True)).add_((x_train * x_train).sum(1)[None])
    ar.clamp_min_(0.0).sqrt_().mul_(a)  # a rho
    uv = x @ v_train.T
    uv.sub_(xv_train[None])  # u_j . v_j = (x - x_j) . v_j
    e = torch.exp(-ar)
    energy_beta = None
    if beta is not None:
        energy_beta = ((1.0 + ar + ar * ar / 3.0) * e) @ beta  # sum_j k(rho_j) beta_j
    w1 = ar.add_(1.0).mul_(e)  # (1 + a rho) e^{-a rho}
    energy = -s * torch.bmm(w1[:, None, :], uv[:, :, None])[:, 0, 0]
    euv = e.mul_(uv)  # e^{-a rho} (u . v)
    # sum_j H v_j = s [sum_j w1 v_j - a^2 sum_j e (u.v) (x - x_j)]
    f_desc = w1 @ v_train
    f_desc -= (a * a) * (euv.sum(1, keepdim=True) * x - euv @ x_train)
    if beta is not None:
        # energy rows: Cov(F, E_j) beta_j = J^T s sum_j w1 beta_j (x - x_j)
        wb = w1.mul_(beta[None])
        f_desc += wb.sum(1, keepdim=True) * x - wb @ x_train
        energy = energy + energy_beta
    return energy, s * f_desc


class GDMLKernelOperator:
    r"""The (s)GDML kernel matrix of a training set as a matrix-free operator.

    Implements the :class:`~mlffkit.solvers.operator.KernelOperator` protocol for the
    ``n × n`` force-field kernel (``n = M · 3N``, rows ordered as in
    :func:`assemble_kernel`) without storing it: a product ``K V`` is computed in
    descriptor space, like a prediction at the training points,

    .. math:: (K V)_i = J_i^\top \sum_{j,P} H(x_i, x_j^P)\, J_j^P V_j ,

    which costs O(M² G d r) time and O(M G d r) memory for ``r`` vectors instead of the
    O(M² G d K) time of assembling ``K`` and its O(n²) memory.

    Parameters
    ----------
    x : torch.Tensor, shape (M, d)
        Training descriptors.
    jac : torch.Tensor, shape (M, d, K)
        Their Jacobians (atom and Cartesian axes flattened).
    perm_index : torch.Tensor of int, shape (G, d)
        Descriptor permutations of the symmetry group (identity alone for GDML).
    sigma : float
        Matérn length scale, descriptor units.
    chunk_numbers : int
        Bound on the temporaries of one row chunk, in float64 numbers.
    cache_bytes : int
        Keep the pairwise kernel factors ``exp(-a rho)`` and ``(1 + a rho) exp(-a rho)``
        (16 bytes per frame pair and permutation, ``16 M² G`` in all) after the first
        product if they fit into this many bytes: later products (CG steps) are then
        three matrix products per row chunk. Default 4 GiB; 0 recomputes them each time.
    """

    def __init__(
        self,
        x,
        jac,
        perm_index,
        sigma: float,
        chunk_numbers: int = TILE_NUMBERS,
        cache_bytes: int = 4 << 30,
    ):
        self.x, self.jac, self.perm_index = x, jac, perm_index
        self.sigma = float(sigma)
        M, d, K = jac.shape
        self.n_frames, self.n_desc, self.n_comp = M, d, K
        self.shape = (M * K, M * K)
        self.dtype, self.device = x.dtype, x.device
        self.chunk_numbers = chunk_numbers
        self._x_perm = x[:, perm_index].reshape(-1, d)  # (M G, d), row j*G + P
        self._x_sq = (self._x_perm * self._x_perm).sum(1)
        self._use_cache = 16 * M * M * perm_index.shape[0] <= cache_bytes
        self._factors: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _pair_factors(self, i0: int, i1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``e = exp(-a rho)`` and ``w1 = (1 + a rho) e`` between rows ``i0:i1`` and all (j, P)."""
        if (i0, i1) in self._factors:
            return self._factors[(i0, i1)]
        a = math.sqrt(5.0) / self.sigma
        xb = self.x[i0:i1]
        ar = xb @ self._x_perm.T
        ar.mul_(-2.0).add_((xb * xb).sum(1, keepdim=True)).add_(self._x_sq[None])
        ar.clamp_min_(0.0).sqrt_().mul_(a)
        e = torch.exp(-ar)
        w1 = ar.add_(1.0).mul_(e)
        if self._use_cache:
            self._factors[(i0, i1)] = (e, w1)
        return e, w1

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``K @ V`` for ``V`` of shape ``(n, r)``.

        Wide blocks (``r`` above the descriptor length ``d``, e.g. in the subspace
        iteration of the ``"eig"`` preconditioner) go through in slices of ``d`` vectors,
        so that every row chunk keeps its size and its cached kernel factors.
        """
        if V.ndim != 2 or V.shape[0] != self.shape[0]:
            raise ValueError(f"V must have shape ({self.shape[0]}, r), got {tuple(V.shape)}")
        d = self.n_desc
        if V.shape[1] <= d:
            return self._matmat_narrow(V)
        return torch.cat(
            [self._matmat_narrow(V[:, c : c + d]) for c in range(0, V.shape[1], d)], dim=1
        )

    def _matmat_narrow(self, V: torch.Tensor) -> torch.Tensor:
        M, d, K = self.n_frames, self.n_desc, self.n_comp
        r = V.shape[1]
        a = math.sqrt(5.0) / self.sigma
        vd = torch.einsum("mdk,mkr->mdr", self.jac, V.reshape(M, K, r))  # J_j V_j
        vd = vd[:, self.perm_index].reshape(-1, d, r)  # (M G, d, r), permuted like x
        rows = vd.shape[0]
        v_flat = vd.reshape(rows, d * r)
        v_dfirst = vd.permute(1, 0, 2).reshape(d, rows * r)
        xv = torch.einsum("md,mdr->mr", self._x_perm, vd)  # x_j . v_j
        out = torch.empty((M, K, r), dtype=V.dtype, device=V.device)
        chunk = max(1, self.chunk_numbers // (rows * d))  # fixed: the cache is keyed by it
        for i0 in range(0, M, chunk):
            i1 = min(M, i0 + chunk)
            e, w1 = self._pair_factors(i0, i1)
            xb = self.x[i0:i1]
            f = (w1 @ v_flat).view(-1, d, r)
            s = (xb @ v_dfirst).view(-1, rows, r) - xv[None]  # u_j . v_j, (b, M G, r)
            w2 = s.mul_(e[..., None])
            f -= (a * a) * (
                xb[:, :, None] * w2.sum(1)[:, None, :]
                - torch.einsum("bmr,md->bdr", w2, self._x_perm)
            )
            out[i0:i1] = torch.einsum("bdk,bdr->bkr", self.jac[i0:i1], f)
        return out.reshape(M * K, r).mul_(a * a / 3.0)

    def columns(self, index: torch.Tensor) -> torch.Tensor:
        """``K[:, index]``, shape ``(n, k)``: the kernel blocks of the frames that hold them."""
        K = self.n_comp
        index = torch.as_tensor(index, device=self.device).reshape(-1)
        frames, where = torch.unique(index // K, return_inverse=True)
        out = torch.empty((self.shape[0], len(index)), dtype=self.dtype, device=self.device)
        rows, cols = _tile_sizes(
            self.n_frames, self.n_desc, K, self.perm_index.shape[0], TILE_NUMBERS
        )
        if len(frames) < cols:  # few column frames (pivoted Cholesky): tall tiles instead
            rows = max(1, min(self.n_frames, rows * cols // len(frames)))
        component = index % K
        for c0 in range(0, len(frames), cols):
            c1 = min(len(frames), c0 + cols)
            mine = (where >= c0) & (where < c1)
            pick = (where[mine] - c0) * K + component[mine]
            fr = frames[c0:c1]
            x_cols = self.x[fr][:, self.perm_index]
            jac_cols = self.jac[fr][:, self.perm_index]
            for i0 in range(0, self.n_frames, rows):
                i1 = min(self.n_frames, i0 + rows)
                t = kernel_tile(self.x[i0:i1], self.jac[i0:i1], x_cols, jac_cols, self.sigma)
                block = t["ff"].reshape((i1 - i0) * K, (c1 - c0) * K)
                out[i0 * K : i1 * K, mine] = block[:, pick]
        return out

    def diagonal(self) -> torch.Tensor:
        """The diagonal of ``K``, shape ``(n,)``: one frame with itself, under all permutations."""
        M, d, K = self.n_frames, self.n_desc, self.n_comp
        out = torch.empty((M, K), dtype=self.dtype, device=self.device)
        G = self.perm_index.shape[0]
        chunk = max(1, self.chunk_numbers // (G * d * K))
        for i0 in range(0, M, chunk):
            i1 = min(M, i0 + chunk)
            xb, jb = self.x[i0:i1], self.jac[i0:i1]
            xp, jp = xb[:, self.perm_index], jb[:, self.perm_index]  # (b, G, d), (b, G, d, K)
            u = xb[:, None] - xp
            c1, c2, _ = _matern_coefficients(torch.linalg.vector_norm(u, dim=-1), self.sigma)
            uj = torch.einsum("bgd,bgdk->bgk", u, jp)
            q = torch.einsum("bg,bgdk->bdk", c1, jp) - torch.einsum(
                "bg,bgd,bgk->bdk", c2, u, uj
            )
            out[i0:i1] = torch.einsum("bdk,bdk->bk", jb, q)
        return out.reshape(-1)
