r"""Kernel ridge regression of energies on a descriptor: the classic baseline.

The model :math:`E(x) = \bar E + \sum_j \alpha_j k(x, x_j)` is fitted to the
training *energies* only, by solving :math:`(K + \lambda I)\alpha = E - \bar E`.
Its forces come from differentiating that prediction through the descriptor:
:math:`F = -J(r)^\top \nabla_x E`. Compare it with :class:`~mlffkit.models.GDML`,
which learns from the forces themselves (3N labels per frame instead of one).

The same baseline can be built from scikit-learn parts, a descriptor transformer and
:class:`sklearn.kernel_ridge.KernelRidge` in a :class:`~sklearn.pipeline.Pipeline`
(tuned with :class:`~sklearn.model_selection.GridSearchCV`); this class adds forces,
saving and the ASE calculator.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from mlffkit.descriptors import make_descriptor
from mlffkit.kernels.scalar import check_kernel, kernel_gradient_sum, kernel_matrix
from mlffkit.models.base import ForceFieldModel


class KRR(ForceFieldModel):
    """Kernel ridge regression of energies; forces by differentiation.

    Parameters
    ----------
    descriptor : str or Descriptor
        ``"inverse_distances"`` (default), ``"coulomb_sorted"``, ``"coulomb_full"``,
        ``"coulomb_eigenvalues"``, or a descriptor instance (it is copied).
    kernel : {"gaussian", "laplacian", "matern52"}
        See :mod:`mlffkit.kernels.scalar`.
    sigma : float or "median"
        Kernel length scale in descriptor units; ``"median"`` uses the median
        distance between training descriptors (a common starting point, not a tuned value).
    lam : float
        Ridge regularisation added to the kernel's diagonal (kernel values are ~1).
    device : str or torch.device
        Where to compute.
    batch_size : int
        Frames per prediction chunk.

    Attributes
    ----------
    sigma_ : float
        The length scale used.
    descriptor_ : Descriptor
        The fitted descriptor.
    """

    model_type = "KRR"

    def __init__(
        self,
        descriptor="inverse_distances",
        kernel="gaussian",
        sigma="median",
        lam=1e-8,
        device="cpu",
        batch_size=256,
    ):
        self.descriptor = descriptor
        self.kernel = kernel
        self.sigma = sigma
        self.lam = lam
        self.device = device
        self.batch_size = batch_size

    def fit(self, train, y=None, *, progress: bool = False) -> KRR:
        """Fit to the energies of ``train``.

        Parameters
        ----------
        train : Dataset or list of ase.Atoms
            Frames of one molecule with energies (forces are not used).
        y : None
            Unused (scikit-learn's slot for targets: the labels are in ``train``).
        progress : bool
            Unused (fitting is one small linear solve); accepted for a uniform interface.

        Returns
        -------
        self
        """
        self._refuse_second_dataset(y)
        check_kernel(self.kernel)
        if not (self.lam >= 0):
            raise ValueError(f"lam must be a non-negative number, got {self.lam!r}")
        train = self._prepare_training(train, needs=("energies",))
        self.descriptor_ = (
            make_descriptor(self.descriptor).set_params(device=self.device).fit(train)
        )
        x = self.descriptor_.compute(train)[0]
        self.sigma_ = self._length_scale(x)
        k = kernel_matrix(x, x, self.kernel, self.sigma_).cpu().numpy()
        k.flat[:: len(k) + 1] += self.lam
        self.energy_mean_ = float(train.energies.mean())
        try:
            factor = scipy.linalg.cho_factor(k, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError as err:
            raise RuntimeError(
                f"the KRR kernel matrix is not positive definite at sigma={self.sigma_:.4g}, "
                f"lam={self.lam}: raise lam or lower sigma"
            ) from err
        self.alphas_ = scipy.linalg.cho_solve(factor, train.energies - self.energy_mean_)
        self.train_descriptors_ = x.cpu().numpy()
        self.has_energy_reference_ = True
        self._record_training(train)
        return self

    def _length_scale(self, x: torch.Tensor) -> float:
        if isinstance(self.sigma, str):
            if self.sigma != "median":
                raise ValueError(f"sigma must be a positive number or 'median', got {self.sigma!r}")
            p = 1.0 if self.kernel == "laplacian" else 2.0
            dist = torch.pdist(x, p=p)
            if dist.numel() == 0 or float(dist.median()) == 0.0:
                raise ValueError("sigma='median' needs at least two different training frames")
            return float(dist.median())
        if not np.isfinite(self.sigma) or self.sigma <= 0:
            raise ValueError(f"sigma must be a positive number or 'median', got {self.sigma!r}")
        return float(self.sigma)

    def _predict_positions(self, positions: np.ndarray, progress: bool):
        device = torch.device(self.device)
        x_train = torch.as_tensor(self.train_descriptors_, device=device)
        alphas = torch.as_tensor(self.alphas_, device=device)
        n = len(positions)
        energies = np.empty(n)
        forces = np.empty_like(positions)
        for start in tqdm(range(0, n, self.batch_size), desc="KRR predict", disable=not progress):
            stop = min(n, start + self.batch_size)
            x, jac = self.descriptor_.compute(positions[start:stop], jacobian=True)
            energies[start:stop] = (
                (kernel_matrix(x, x_train, self.kernel, self.sigma_) @ alphas).cpu().numpy()
            )
            grad = kernel_gradient_sum(x, x_train, alphas, self.kernel, self.sigma_)  # dE/dx
            forces[start:stop] = -torch.einsum("nd,ndac->nac", grad, jac).cpu().numpy()
        return energies + self.energy_mean_, forces

    def _state(self):
        attributes = {"sigma": self.sigma_, "energy_mean": self.energy_mean_}
        arrays = {"train_descriptors": self.train_descriptors_, "alphas": self.alphas_}
        return attributes, arrays

    def _set_state(self, attributes, arrays):
        self.sigma_ = float(attributes["sigma"])
        self.energy_mean_ = float(attributes["energy_mean"])
        self.train_descriptors_ = arrays["train_descriptors"]
        self.alphas_ = arrays["alphas"]
        self.has_energy_reference_ = True
        # fit only learns the molecule; any positions of the right shape do
        self.descriptor_ = (
            make_descriptor(self.descriptor)
            .set_params(device=self.device, numbers=self.numbers_)
            .fit(np.zeros((1, len(self.numbers_), 3)))
        )
