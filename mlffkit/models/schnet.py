"""The SchNet estimator: :class:`~mlffkit.nn.SchNetPotential` with the kernel models' interface."""

from __future__ import annotations

from mlffkit.models.neural import TRAINING_DOC, NeuralForceField
from mlffkit.nn.schnet import SchNetPotential


class SchNet(NeuralForceField):
    __doc__ = f"""SchNet force field (Schütt et al., NeurIPS 2017; J. Chem. Phys. 148, 241722, 2018).

    Continuous-filter convolutions on interatomic distances, trained on energies
    and forces; works for molecules and periodic cells of any size. Defaults are
    the paper's MD17 settings.

    Parameters
    ----------
    n_features : int
        Width of the atom features (64).
    n_interactions : int
        Interaction blocks (3).
    cutoff : float
        Cutoff radius, Å (5, cosine envelope).
    n_rbf : int
        Gaussians of the distance expansion on [0, cutoff] (50, 0.1 Å apart).
    gamma : float
        Gaussian width parameter, Å⁻² (10).
    {TRAINING_DOC}
    Examples
    --------
    >>> from mlffkit.models import SchNet
    >>> model = SchNet(max_epochs=500).fit(train, valid)     # doctest: +SKIP
    >>> energies, forces = model.predict(test)               # doctest: +SKIP
    >>> atoms.calc = model.calculator()                      # doctest: +SKIP
    """

    model_type = "schnet"

    def __init__(
        self,
        n_features: int = 64,
        n_interactions: int = 3,
        cutoff: float = 5.0,
        n_rbf: int = 50,
        gamma: float = 10.0,
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
        self.n_features = n_features
        self.n_interactions = n_interactions
        self.cutoff = cutoff
        self.n_rbf = n_rbf
        self.gamma = gamma
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

    def _build_potential(self) -> SchNetPotential:
        return SchNetPotential(
            n_features=self.n_features,
            n_interactions=self.n_interactions,
            cutoff=self.cutoff,
            n_rbf=self.n_rbf,
            gamma=self.gamma,
        )

    def display_name(self) -> str:
        return f"SchNet ({self.n_features} features, {self.n_interactions} interactions)"
