"""The geometric attention estimator: :class:`~mlffkit.nn.GeometricAttentionPotential`
with the kernel models' interface, plus :meth:`GeometricAttention.interpret`."""

from __future__ import annotations

from ase import Atoms

from mlffkit.models.neural import TRAINING_DOC, NeuralForceField
from mlffkit.nn.attention import AttentionResult, GeometricAttentionPotential


class GeometricAttention(NeuralForceField):
    __doc__ = f"""Geometric attention force field, GeomAtt (Frank & Chmiela, arXiv:2106.02549).

    Attention matrices of orders 2, 3 and 4 built from the distances alone (pairs,
    and walks over one and two intermediate atoms: angles and torsions), without a
    cutoff; atom features updated by attention-weighted sums; the energy a sum of
    atomic contributions. For molecules (no periodic cells). The architecture is
    described in :mod:`mlffkit.nn.attention`; :meth:`interpret` returns a
    molecule's attention matrices and atomic energies. Defaults are the paper's
    MD17 settings.

    Parameters
    ----------
    orders : tuple of int
        Attention orders, one feature stream each ((2, 3, 4)).
    n_features : int
        Width of the atom features of each stream (64).
    n_layers : int
        Attention updates per stream (2).
    n_rbf : int
        Gaussians of the distance expansion on [0, r_max] (50, 0.1 Å apart).
    r_max : float
        Last Gaussian centre, Å (4.9); not a cutoff.
    gamma : float
        Gaussian width parameter, Å⁻² (10).
    n_channels : int or None
        Channels of the attention filters (None: ``n_features``).
    {TRAINING_DOC}
    Examples
    --------
    >>> from mlffkit.models import GeometricAttention
    >>> model = GeometricAttention(max_epochs=500).fit(train, valid)   # doctest: +SKIP
    >>> result = model.interpret(test[0])                              # doctest: +SKIP
    >>> result.matrix(layer=0, order=3)                                # doctest: +SKIP
    """

    model_type = "geometric_attention"

    def __init__(
        self,
        orders: tuple = (2, 3, 4),
        n_features: int = 64,
        n_layers: int = 2,
        n_rbf: int = 50,
        r_max: float = 4.9,
        gamma: float = 10.0,
        n_channels: int | None = None,
        *,
        energy_weight: float = 0.01,
        force_weight: float = 0.99,
        lr: float = 1e-3,
        batch_size: int = 10,
        max_epochs: int = 1000,
        patience: int = 100,
        lr_patience: int = 25,
        lr_factor: float = 0.5,
        min_lr: float = 1e-6,
        ema_decay: float = 0.99,
        validation_fraction: float = 0.1,
        max_time_s: float | None = None,
        seed: int = 0,
        dtype: str = "float32",
        device: str = "auto",
    ):
        self.orders = orders
        self.n_features = n_features
        self.n_layers = n_layers
        self.n_rbf = n_rbf
        self.r_max = r_max
        self.gamma = gamma
        self.n_channels = n_channels
        self.energy_weight = energy_weight
        self.force_weight = force_weight
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.min_lr = min_lr
        self.ema_decay = ema_decay
        self.validation_fraction = validation_fraction
        self.max_time_s = max_time_s
        self.seed = seed
        self.dtype = dtype
        self.device = device

    def _build_potential(self) -> GeometricAttentionPotential:
        return GeometricAttentionPotential(
            orders=tuple(self.orders),
            n_features=self.n_features,
            n_layers=self.n_layers,
            n_rbf=self.n_rbf,
            r_max=self.r_max,
            gamma=self.gamma,
            n_channels=self.n_channels,
        )

    def display_name(self) -> str:
        orders = ",".join(str(k) for k in sorted(self.orders))
        return f"GeomAtt (orders {orders}, {self.n_layers} layers, {self.n_features} features)"

    def interpret(self, atoms: Atoms) -> AttentionResult:
        """Attention matrices and atomic energy contributions of one molecule.

        Parameters
        ----------
        atoms : ase.Atoms
            A molecule made of the trained elements; positions in Å.

        Returns
        -------
        AttentionResult
            ``attention[layer][order]`` as ``(n_atoms, n_atoms)`` arrays (also via
            ``result.matrix(layer, order)``), ``atomic_energies`` (eV, summing to
            ``energy``), ``interaction_energies`` (eV, without the per-element
            offsets), ``forces`` (eV/Å) and the element ``symbols``.
        """
        self._check_fitted()
        if not isinstance(atoms, Atoms):
            raise ValueError(f"interpret takes one ase.Atoms, got {type(atoms).__name__}")
        self._check_elements(atoms.numbers)
        return self.potential_.interpret(atoms)
