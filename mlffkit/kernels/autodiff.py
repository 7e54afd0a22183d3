r"""GDML-type force-field kernels for any differentiable descriptor, by automatic differentiation.

GDML's force-field kernel is the mixed Hessian of an energy kernel,

.. math::  K_F(r, r') = \nabla_r \nabla_{r'}^\top\, k\big(D(r), D(r')\big)
           = J(r)^\top\, H(x, x')\, J(r'),

for a descriptor :math:`x = D(r)` with Jacobian :math:`J = \partial D/\partial r`
(Schmitz, Müller and Chmiela, J. Phys. Chem. Lett. 13, 10183, 2022). Nothing in it is
specific to inverse distances: automatic differentiation (AD) gives it for any descriptor
written as a torch function ``(N, 3) positions (Å) -> (d,)``.

Two ways to use it:

* **dense blocks** (:func:`hessian_blocks`): ``jacfwd(jacrev(k))``, every (3N × 3N) block
  formed; simple, and what one would write first;
* **matrix-free products** (:class:`AutoDiffKernelOperator`): the kernel–vector product
  :math:`(K\alpha)_i = \sum_j K_F(r_i, r_j)\,\alpha_j = \nabla_{r_i} h_i` with

  .. math:: h_i = \sum_j \partial_{x'} k\big(D(r_i), x_j\big)[v_j], \qquad v_j = J(r_j)\,\alpha_j,

  costs one forward-mode pass (JVP) of the descriptor per training frame for the tangents
  :math:`v_j`, :math:`M^2` directional derivatives of :math:`k` in descriptor space (vectors
  of length :math:`d`), and one reverse-mode pass (VJP) per row frame — never a
  :math:`3N\times3N` block. Prediction is the same product with one row per new frame:
  the forces are :math:`\nabla_r h(r)` and the energy :math:`-h(r) + c`.

sGDML symmetries enter as atom permutations :math:`P` of the training frames,
:math:`k_\mathrm{sym}(r, r') = \sum_P k\big(D(r), D(P r')\big)`: each training frame
contributes :math:`G` rows :math:`x_j^P = D(P r_j)`, :math:`v_j^P = J(P r_j)\,P\alpha_j`.

**The kernel at zero distance.** A radial kernel :math:`k = f(\rho)` with
:math:`\rho = |x - x'|` is, for the diagonal blocks (:math:`x = x'`), differentiated at
:math:`\rho = 0`, where :math:`\partial\rho/\partial x` does not exist: AD through a
square root gives NaN there, and near it adds and subtracts terms of size
:math:`1/\rho^2` (cancellation). The kernels here are functions of
:math:`s = \rho^2` instead, :math:`k = f(s)`, whose derivatives :math:`f^{(m)}(s)` are
given in closed form (:class:`RadialKernel`) and used as AD rules: every derivative the
force-field kernel needs is then a smooth expression, exact at :math:`s = 0`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.func import grad_and_value, jacfwd, jacrev, jvp, vmap
from tqdm.auto import tqdm

#: a descriptor: positions of one frame (N, 3) in Å -> feature vector (d,)
Descriptor = Callable[[torch.Tensor], torch.Tensor]

#: working-set size of one chunk of kernel rows, in float64 numbers (64 MB)
CHUNK_NUMBERS = 1 << 23
#: numbers kept per (row frame, right-hand side, column) until the reverse pass (measured)
PAIR_TEMPORARIES = 56


# --------------------------------------------------------------------------- scalar kernels
class RadialKernel:
    r"""A kernel of the squared descriptor distance, :math:`k(x, x') = f(|x - x'|^2)`.

    Subclasses give :meth:`profile`, the derivatives :math:`f^{(m)}(s)` in closed form. The
    first ``smooth_orders`` of them enter AD as custom derivative rules (backward and
    forward mode), so that :math:`k` is differentiated correctly at :math:`x = x'`; higher
    ones are differentiated by plain AD (e.g. the third derivative of the Matérn 5/2
    kernel, which does not exist at :math:`s = 0`).

    Parameters
    ----------
    sigma : float
        Length scale, in descriptor units.
    """

    #: the name :func:`make_kernel` knows the kernel by
    name = ""
    #: derivative orders of f computed under a custom AD rule (see the class docstring)
    smooth_orders = 0

    def __init__(self, sigma: float):
        if not (np.isscalar(sigma) and np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number (descriptor units), got {sigma!r}")
        self.sigma = float(sigma)

    def profile(self, s: torch.Tensor, order: int) -> torch.Tensor:
        """The ``order``-th derivative of ``f`` at squared distances ``s`` (any shape)."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Kernel values ``k(x, y)`` for ``x`` of shape ``(d,)`` and ``y`` ``(d,)`` or ``(m, d)``."""
        return _radial(squared_distance(x, y), self, 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma:g})"


class Matern52Kernel(RadialKernel):
    r"""Matérn ν = 5/2, GDML's kernel: :math:`f = (1 + y + y^2/3)\,e^{-y}`, :math:`y = a\sqrt s`.

    With :math:`a = \sqrt5/\sigma`: :math:`f' = -\tfrac{a^2}{6}(1 + y)e^{-y}` and
    :math:`f'' = \tfrac{a^4}{12}e^{-y}`, both finite at :math:`s = 0`, so the kernel is
    twice differentiable in :math:`x` — exactly what a force-field kernel needs.
    """

    name = "matern52"
    smooth_orders = 2

    def profile(self, s, order):
        a = math.sqrt(5.0) / self.sigma
        y = a * torch.sqrt(s)
        e = torch.exp(-y)
        if order == 0:
            return (1.0 + y + y * y / 3.0) * e
        if order == 1:
            return (-(a * a) / 6.0) * (1.0 + y) * e
        if order == 2:
            return (a**4 / 12.0) * e
        raise ValueError(
            f"the Matérn 5/2 kernel has no closed-form derivative of order {order} in s"
        )


class GaussianKernel(RadialKernel):
    r"""Gaussian (squared-exponential) kernel :math:`f = e^{-s/2\sigma^2}`, smooth everywhere."""

    name = "gaussian"
    smooth_orders = 0

    def profile(self, s, order):
        c = -0.5 / self.sigma**2
        return c**order * torch.exp(c * s)


KERNELS: dict[str, type[RadialKernel]] = {k.name: k for k in (Matern52Kernel, GaussianKernel)}


def make_kernel(kind: str, sigma: float) -> RadialKernel:
    """A :class:`RadialKernel` by name: ``"matern52"`` or ``"gaussian"``, length scale ``sigma``."""
    if kind not in KERNELS:
        raise ValueError(f"unknown kernel {kind!r}; use one of {sorted(KERNELS)}")
    return KERNELS[kind](sigma)


def squared_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""``|x - y|²`` for ``x`` ``(d,)`` and ``y`` ``(d,)`` or ``(m, d)``: shape ``()`` or ``(m,)``.

    The value is computed from the differences, so it is exactly 0 at ``x = y`` (where
    the diagonal blocks take the kernel's derivatives) and free of cancellation near it.
    AD differentiates the equal expression :math:`|x|^2 + |y|^2 - 2\,y x` instead, whose
    derivatives are matrix–vector products rather than ``(m, d)`` elementwise temporaries
    (about 2.5 times faster; the derivatives themselves do not cancel: they vanish only
    where the difference does).
    """
    ys = y if y.ndim == 2 else y[None]
    exact = torch.cdist(x.detach()[None], ys.detach(), compute_mode="donot_use_mm_for_euclid_dist")[
        0
    ].square()
    expanded = (x * x).sum(-1) + (ys * ys).sum(-1) - 2.0 * (ys @ x)
    s = expanded + (exact - expanded).detach()  # value: exact; derivatives: expanded's
    return s if y.ndim == 2 else s[0]


class _RadialProfile(torch.autograd.Function):
    """``f^(order)(s)`` whose derivative (backward and forward mode) is ``f^(order + 1)(s)``."""

    generate_vmap_rule = True  # the rule is elementwise, so vmap can batch it itself

    @staticmethod
    def forward(s, kernel, order):
        return kernel.profile(s, order)

    @staticmethod
    def setup_context(ctx, inputs, output):
        s, kernel, order = inputs
        ctx.save_for_backward(s)
        ctx.save_for_forward(s)
        ctx.kernel, ctx.order = kernel, order

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return grad_output * _radial(s, ctx.kernel, ctx.order + 1), None, None

    @staticmethod
    def jvp(ctx, s_dot, _kernel_dot, _order_dot):
        (s,) = ctx.saved_tensors
        return s_dot * _radial(s, ctx.kernel, ctx.order + 1)


def _radial(s: torch.Tensor, kernel: RadialKernel, order: int) -> torch.Tensor:
    """``f^(order)(s)``: under the custom AD rule for the smooth orders, plain AD beyond."""
    if order < kernel.smooth_orders:
        return _RadialProfile.apply(s, kernel, order)
    return kernel.profile(s, order)


# --------------------------------------------------------------------------- descriptors
def evaluate_descriptor(descriptor: Descriptor, positions: torch.Tensor) -> torch.Tensor:
    """The descriptor of every frame, checked: ``(n, N, 3)`` positions (Å) -> ``(n, d)``.

    Raises
    ------
    ValueError
        If the descriptor does not return one finite floating-point vector per frame, or
        cannot be batched with :func:`torch.func.vmap`; the message says what to change.
    """
    if positions.ndim != 3 or positions.shape[-1] != 3 or len(positions) == 0:
        raise ValueError(
            f"positions must have shape (n_frames, n_atoms, 3), got {tuple(positions.shape)}"
        )
    first = descriptor(positions[0])
    if not isinstance(first, torch.Tensor) or first.ndim != 1 or not first.is_floating_point():
        what = (
            f"a tensor of shape {tuple(first.shape)} and dtype {first.dtype}"
            if isinstance(first, torch.Tensor)
            else type(first).__name__
        )
        raise ValueError(
            f"the descriptor must map the positions of one frame (N, 3) to a floating-point "
            f"torch vector (d,), but it returned {what}; flatten its output (e.g. "
            "features.reshape(-1)) and compute it with torch operations"
        )
    if first.dtype != positions.dtype:
        raise ValueError(
            f"the descriptor returned {first.dtype} for {positions.dtype} positions; keep the "
            "dtype of its input (do not cast), the kernel needs float64 to be solved reliably"
        )
    try:
        values = vmap(descriptor)(positions)
    except RuntimeError as err:
        raise ValueError(
            "the descriptor cannot be batched with torch.func.vmap; write it with pure torch "
            "operations on its input (no in-place writes into it, no .item(), .numpy() or "
            f"Python branches on tensor values): {err}"
        ) from err
    bad = ~torch.isfinite(values).all(dim=1)
    if bool(bad.any()):
        frame = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"the descriptor is not finite (NaN or inf) at {int(bad.sum())} frame(s), e.g. "
            f"frame {frame}; check it for divisions by zero or logarithms of zero"
        )
    return values


def descriptor_tangents(
    descriptor: Descriptor, positions: torch.Tensor, directions: torch.Tensor
) -> torch.Tensor:
    """Directional derivatives ``J(r) t`` of the descriptor by forward-mode AD (JVPs).

    Parameters
    ----------
    descriptor : callable
        ``(N, 3) -> (d,)``.
    positions : torch.Tensor, shape (m, N, 3)
        Frames, Å.
    directions : torch.Tensor, shape (r, m, N, 3)
        ``r`` displacement directions per frame.

    Returns
    -------
    torch.Tensor, shape (r, m, d)
        ``J(positions[j]) @ directions[:, j]``.

    Raises
    ------
    ValueError
        If a derivative is not finite (the descriptor is not differentiable there).
    """

    def tangent(r, t):
        return jvp(descriptor, (r,), (t,))[1]

    out = vmap(vmap(tangent), in_dims=(None, 0))(positions, directions)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            "the descriptor's derivative is not finite at some training frame: it must be "
            "differentiable at every geometry (avoid sqrt or abs at 0, e.g. of a distance of an "
            "atom to itself)"
        )
    return out


# --------------------------------------------------------------------------- the kernel rows
def _row_gradient(descriptor: Descriptor, kernel: RadialKernel):
    r"""``(r, X, T) -> (∇_r h, h)`` with :math:`h = \sum_c \partial_{x'}k(D(r), X_c)[T_c]`.

    Forward mode differentiates :math:`k` in its second argument along the tangents ``T``
    (descriptor space, no positions involved); reverse mode then carries :math:`\partial h/
    \partial x` back through the descriptor at ``r``: one VJP of ``D`` per call.
    """

    def h(r, X, T):
        x = descriptor(r)
        _, dk = jvp(lambda columns: kernel(x, columns), (X,), (T,))
        return dk.sum()

    return grad_and_value(h)


def kernel_rows(
    descriptor: Descriptor,
    kernel: RadialKernel,
    rows: torch.Tensor,
    X: torch.Tensor,
    T: torch.Tensor,
    chunk_numbers: int = CHUNK_NUMBERS,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Gradients and values of :math:`h_{ri} = \sum_c \partial_{x'}k(D(r_i), X_{c})[T_{rc}]`.

    With ``T`` the descriptor tangents :math:`J_j\alpha_j` of training frames (all
    permutations) and ``X`` their descriptors, the gradients are the rows of the kernel
    product :math:`K\alpha`, and :math:`-h` is the (uncalibrated) GDML energy.

    Parameters
    ----------
    descriptor, kernel
        As for :class:`AutoDiffKernelOperator`.
    rows : torch.Tensor, shape (b, N, 3)
        Row frames, Å.
    X : torch.Tensor, shape (c, d) or (r, c, d)
        Column descriptors, shared by all ``r`` tangent sets or one set per ``r``.
    T : torch.Tensor, shape (r, c, d)
        Tangents: ``r`` right-hand sides.
    chunk_numbers : int
        Working-set bound of one chunk of rows, in numbers (about :data:`PAIR_TEMPORARIES`
        per row, right-hand side and column); larger chunks amortise the per-call overhead.

    Returns
    -------
    forces : torch.Tensor, shape (r, b, N, 3)
        :math:`\nabla_{r_i} h_{ri}`.
    values : torch.Tensor, shape (r, b)
        :math:`h_{ri}`.
    """
    r, c, d = T.shape
    per_column_set = X.ndim == 3
    row_grad = vmap(
        vmap(_row_gradient(descriptor, kernel), in_dims=(None, 0 if per_column_set else None, 0)),
        in_dims=(0, None, None),
    )
    per_pair = PAIR_TEMPORARIES + (d if per_column_set else 0)  # + the (r, c, d) inputs
    r_step = max(1, min(r, chunk_numbers // (c * per_pair)))
    b_step = max(1, chunk_numbers // (r_step * c * per_pair))
    forces = rows.new_empty((len(rows), r) + rows.shape[1:])
    values = rows.new_empty((len(rows), r))
    for r0 in range(0, r, r_step):
        r1 = min(r, r0 + r_step)
        Xr = X[r0:r1] if per_column_set else X
        for b0 in range(0, len(rows), b_step):
            b1 = min(len(rows), b0 + b_step)
            f, v = row_grad(rows[b0:b1], Xr, T[r0:r1])
            forces[b0:b1, r0:r1] = f
            values[b0:b1, r0:r1] = v
    return forces.transpose(0, 1), values.T


# --------------------------------------------------------------------------- dense blocks
def hessian_blocks(
    descriptor: Descriptor,
    kernel: RadialKernel,
    positions1: torch.Tensor,
    positions2: torch.Tensor,
    permutations=None,
    progress: bool = False,
) -> torch.Tensor:
    r"""The dense force-field kernel :math:`\nabla_r\nabla_{r'}^\top k_\mathrm{sym}` by ``jacfwd(jacrev)``.

    Every (3N × 3N) block is formed: :math:`3N` forward-mode passes through the gradient
    of the kernel per pair of frames. For small systems, teaching and as the naive
    baseline of the matrix-free :class:`AutoDiffKernelOperator`.

    Parameters
    ----------
    descriptor : callable
        ``(N, 3) -> (d,)``.
    kernel : RadialKernel
    positions1, positions2 : torch.Tensor, shapes (n1, N, 3), (n2, N, 3)
        Frames, Å.
    permutations : array_like of int, shape (G, N), optional
        Atom permutations applied to the second frames (sGDML); default none.
    progress : bool
        Progress bar over the row frames.

    Returns
    -------
    torch.Tensor, shape (n1 3N, n2 3N)
        Rows and columns ordered frame, atom, Cartesian component; Å⁻² times the
        kernel's units (descriptor units cancel with sigma).
    """
    n1, n_atoms, _ = positions1.shape
    n2 = len(positions2)
    perms = _permutation_tensor(permutations, n_atoms, positions1.device)

    def k_sym(r1, r2):
        return kernel(descriptor(r1), vmap(descriptor)(r2[perms])).sum()

    block = vmap(jacfwd(jacrev(k_sym, argnums=0), argnums=1), in_dims=(None, 0))
    K = 3 * n_atoms
    out = positions1.new_empty((n1, K, n2, K))
    for i in tqdm(range(n1), desc="dense AD kernel", disable=not progress):
        out[i] = block(positions1[i], positions2).reshape(n2, K, K).transpose(0, 1)
    return out.reshape(n1 * K, n2 * K)


# --------------------------------------------------------------------------- the operator
def _permutation_tensor(permutations, n_atoms: int, device) -> torch.Tensor:
    if permutations is None:
        return torch.arange(n_atoms, device=device)[None]
    perms = torch.as_tensor(np.asarray(permutations), dtype=torch.int64, device=device)
    if perms.ndim != 2 or perms.shape[1] != n_atoms:
        raise ValueError(
            f"permutations must have shape (n_perms, {n_atoms}), got {tuple(perms.shape)}"
        )
    if not bool((perms.sort(dim=1).values == torch.arange(n_atoms, device=device)).all()):
        raise ValueError("every row of permutations must be a permutation of 0..n_atoms-1")
    return perms


def check_permutation_covariance(
    descriptor: Descriptor, positions: torch.Tensor, perms: torch.Tensor, rtol: float = 1e-8
) -> None:
    r"""Check that the symmetrised kernel is symmetric for this descriptor and these permutations.

    :math:`\sum_P k(D(r), D(Pr'))` is symmetric in :math:`r, r'` only if permuting atoms
    merely reorders the descriptor, so that
    :math:`|D(r) - D(Pr')| = |D(P^{-1}r) - D(r')|`; checked on two frames.

    Raises
    ------
    ValueError
        If a permutation breaks that equality.
    """
    if len(perms) < 2:
        return
    a = positions[0]
    if len(positions) > 1:
        b = positions[1]
    else:  # one frame: compare it with a distorted copy of itself
        wiggle = torch.sin(torch.arange(a.numel(), dtype=a.dtype, device=a.device))
        b = a + 0.05 * wiggle.reshape(a.shape)
    inverse = torch.argsort(perms, dim=1)
    xa, xb = descriptor(a), descriptor(b)
    forward = torch.linalg.vector_norm(xa - vmap(descriptor)(b[perms]), dim=-1)
    backward = torch.linalg.vector_norm(vmap(descriptor)(a[inverse]) - xb, dim=-1)
    bad = ~torch.isclose(forward, backward, rtol=rtol, atol=1e-12)
    if bool(bad.any()):
        p = perms[int(torch.nonzero(bad)[0])].tolist()
        raise ValueError(
            f"the descriptor is not compatible with the atom permutation {p}: swapping those "
            "atoms does not just reorder its entries, so the symmetrised kernel would not be "
            "symmetric; use permutations=None, or a descriptor that treats like atoms alike"
        )


class AutoDiffKernelOperator:
    r"""The (s)GDML kernel matrix of training frames, as matrix-free products by AD.

    Implements the kernel-operator protocol of the iterative solvers
    (:class:`mlffkit.solvers.operator.KernelOperator`): ``matmat``, ``columns`` and
    ``diagonal`` of the ``(n, n)`` matrix :math:`K`, :math:`n = 3NM`, rows and columns
    ordered frame, atom, Cartesian component; the ridge :math:`\lambda` is not included.

    Cost of ``matmat`` with ``r`` right-hand sides: ``r M G`` descriptor JVPs (the
    tangents), ``r M² G`` directional kernel derivatives of length ``d``, and ``M``
    descriptor VJPs with ``r`` cotangents each; memory O(r M G d) plus chunks of
    :data:`CHUNK_NUMBERS`. No (3N × 3N) block is formed.

    Parameters
    ----------
    descriptor : callable
        ``(N, 3) -> (d,)``, a pure torch function of one frame's positions (Å), batched
        with :func:`torch.func.vmap`.
    kernel : RadialKernel
        Kernel in descriptor space (:func:`make_kernel`).
    positions : torch.Tensor, shape (M, N, 3)
        Training frames, Å (float64 for training).
    permutations : array_like of int, shape (G, N), optional
        sGDML's atom permutations (a group, identity included); default none.
    chunk_numbers : int
        Bound on the size of one chunk's intermediates, in numbers.

    Attributes
    ----------
    shape : tuple of int
        ``(n, n)``.
    dtype, device
        Of ``positions``.
    descriptors : torch.Tensor, shape (M, G, d)
        :math:`D(P r_j)` of every training frame and permutation.

    Raises
    ------
    ValueError
        For a descriptor that is not finite, not a vector, not batchable, or not compatible
        with the permutations, and for malformed permutations.

    Examples
    --------
    >>> op = AutoDiffKernelOperator(descriptor, make_kernel("matern52", 10.0), R)  # doctest: +SKIP
    >>> Kv = op.matmat(v[:, None])[:, 0]                                           # doctest: +SKIP
    """

    def __init__(
        self,
        descriptor: Descriptor,
        kernel: RadialKernel,
        positions: torch.Tensor,
        permutations=None,
        chunk_numbers: int = CHUNK_NUMBERS,
    ):
        if positions.ndim != 3 or positions.shape[-1] != 3:
            raise ValueError(
                f"positions must have shape (n_frames, n_atoms, 3), got {tuple(positions.shape)}"
            )
        self.descriptor = descriptor
        self.kernel = kernel
        self.positions = positions
        self.chunk_numbers = int(chunk_numbers)
        M, n_atoms, _ = positions.shape
        self.perms = _permutation_tensor(permutations, n_atoms, positions.device)
        self._permuted = positions[:, self.perms]  # (M, G, N, 3): P r_j
        G = len(self.perms)
        x = evaluate_descriptor(descriptor, self._permuted.reshape(M * G, n_atoms, 3))
        self.descriptors = x.reshape(M, G, -1)
        check_permutation_covariance(descriptor, positions, self.perms)
        n = M * 3 * n_atoms
        self.shape = (n, n)
        self.dtype = positions.dtype
        self.device = positions.device

    @property
    def n_frames(self) -> int:
        return self.positions.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[1]

    def tangents(self, alpha: torch.Tensor) -> torch.Tensor:
        r"""Descriptor tangents :math:`v_j^P = J(Pr_j)\,P\alpha_j`, ``(r, M, N, 3) -> (r, M, G, d)``."""
        r = alpha.shape[0]
        M, G = self.descriptors.shape[:2]
        directions = alpha[:, :, self.perms].reshape(r, M * G, self.n_atoms, 3)
        t = descriptor_tangents(
            self.descriptor, self._permuted.reshape(M * G, self.n_atoms, 3), directions
        )
        return t.reshape(r, M, G, -1)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``K @ V`` for ``V`` of shape ``(n, r)``; returns ``(n, r)``."""
        n = self.shape[0]
        if V.ndim != 2 or V.shape[0] != n:
            raise ValueError(f"V must have shape ({n}, r), got {tuple(V.shape)}")
        r = V.shape[1]
        alpha = V.T.reshape(r, self.n_frames, self.n_atoms, 3).to(self.dtype)
        T = self.tangents(alpha).flatten(1, 2)  # (r, M G, d)
        X = self.descriptors.flatten(0, 1)  # (M G, d)
        forces, _ = kernel_rows(
            self.descriptor, self.kernel, self.positions, X, T, self.chunk_numbers
        )
        return forces.reshape(r, n).T

    def columns(self, index: torch.Tensor) -> torch.Tensor:
        """``K[:, index]`` for integer ``index`` of shape ``(k,)``; returns ``(n, k)``.

        Column ``c`` involves only its own training frame (and its permutations): ``G``
        JVPs and ``M G`` directional kernel derivatives per column.
        """
        index = torch.as_tensor(index, dtype=torch.int64, device=self.device).reshape(-1)
        n = self.shape[0]
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(f"column indices must lie in [0, {n}), got {index.tolist()[:5]}...")
        K = 3 * self.n_atoms
        frame = index // K
        unit = torch.zeros((len(index), K), dtype=self.dtype, device=self.device)
        unit[torch.arange(len(index), device=self.device), index % K] = 1.0
        unit = unit.reshape(len(index), self.n_atoms, 3)[:, self.perms]  # (k, G, N, 3)
        G = len(self.perms)
        positions = self._permuted[frame].reshape(len(index) * G, self.n_atoms, 3)
        T = descriptor_tangents(self.descriptor, positions, unit.reshape(1, -1, self.n_atoms, 3))
        T = T.reshape(len(index), G, -1)
        forces, _ = kernel_rows(
            self.descriptor,
            self.kernel,
            self.positions,
            self.descriptors[frame],
            T,
            self.chunk_numbers,
        )
        return forces.reshape(len(index), n).T

    def diagonal(self) -> torch.Tensor:
        """The diagonal of ``K``, shape ``(n,)``: each frame's own block, frames batched."""
        M, G, d = self.descriptors.shape
        K = 3 * self.n_atoms
        eye = torch.eye(K, dtype=self.dtype, device=self.device).reshape(K, self.n_atoms, 3)
        unit = eye[:, self.perms]  # (K, G, N, 3): unit direction q, permuted
        # per frame j: the K unit tangents against its own G permuted copies, rows at r_j
        own_block = vmap(
            vmap(_row_gradient(self.descriptor, self.kernel), in_dims=(None, None, 0)),
            in_dims=(0, 0, 0),
        )
        step = max(1, self.chunk_numbers // (K * G * (PAIR_TEMPORARIES + d)))
        out = torch.empty((M, K), dtype=self.dtype, device=self.device)
        for j0 in range(0, M, step):
            j1 = min(M, j0 + step)
            f = j1 - j0
            directions = unit[:, None].expand(K, f, G, self.n_atoms, 3)
            T = descriptor_tangents(
                self.descriptor,
                self._permuted[j0:j1].reshape(f * G, self.n_atoms, 3),
                directions.reshape(K, f * G, self.n_atoms, 3),
            ).reshape(K, f, G, d)
            forces, _ = own_block(self.positions[j0:j1], self.descriptors[j0:j1], T.transpose(0, 1))
            out[j0:j1] = forces.reshape(f, K, K).diagonal(dim1=1, dim2=2)
        return out.reshape(-1)

    def to_dense(self, progress: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """The full matrix, ``(n, n)`` float64 NumPy, assembled from columns frame by frame.

        Parameters
        ----------
        progress : bool
            Progress bar over the training frames.
        out : numpy.ndarray, shape (n, n), optional
            Preallocated float64 array to write into.
        """
        n = self.shape[0]
        K = 3 * self.n_atoms
        if out is None:
            out = np.empty((n, n))
        elif out.shape != (n, n):
            raise ValueError(f"out must have shape ({n}, {n}), got {out.shape}")
        for j in tqdm(range(self.n_frames), desc="AD kernel", disable=not progress):
            index = torch.arange(j * K, (j + 1) * K, device=self.device)
            out[:, j * K : (j + 1) * K] = self.columns(index).cpu().numpy()
        return out

    def __repr__(self) -> str:
        M, G, d = self.descriptors.shape
        return (
            f"AutoDiffKernelOperator(n={self.shape[0]}: {M} frames × {3 * self.n_atoms} "
            f"components, {G} permutation(s), d={d}, {self.kernel!r})"
        )
