"""Neural-network force fields as estimators: the same ``fit``/``predict``/``save`` as GDML.

:class:`NeuralForceField` turns any :class:`~mlffkit.nn.Potential` into a
scikit-learn-style model: ``fit`` sets the per-element energy offsets and the
output scale from the training data, builds neighbour lists once, and trains with
:class:`~mlffkit.nn.Trainer`; ``predict`` takes molecules or periodic cells of any
size made of the elements it was trained on; ``save`` writes the weights into the
same ``.npz`` format (no pickle) that :func:`~mlffkit.models.load_model` reads.
Subclasses (:class:`~mlffkit.models.SchNet`, ...) only declare their
hyperparameters and build their network in :meth:`_build_potential`.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from tqdm.auto import tqdm

from mlffkit import properties
from mlffkit.data.dataset import Dataset
from mlffkit.data.splits import check_disjoint
from mlffkit.models.base import ForceFieldModel, TrainingRecord, as_dataset
from mlffkit.models.calculator import ModelCalculator
from mlffkit.nn.data import GraphData, graph_from_atoms
from mlffkit.nn.potential import N_ELEMENTS, Potential
from mlffkit.nn.training import Trainer, TrainingHistory

#: the training parameters every neural model shares, with their defaults; subclasses
#: list them in their constructors (scikit-learn reads parameters from the signature)
TRAINING_PARAMS = (
    "energy_weight",
    "force_weight",
    "lr",
    "batch_size",
    "max_epochs",
    "patience",
    "lr_patience",
    "lr_factor",
    "min_lr",
    "ema_decay",
    "validation_fraction",
    "max_time_s",
    "seed",
    "dtype",
    "device",
)

TRAINING_DOC = """
    energy_weight, force_weight : float
        Weights of the energy (eV²) and force ((eV/Å)²) mean squared errors in the
        loss (SchNet's ρ = 0.01 trade-off by default).
    lr : float
        Initial learning rate of Adam.
    batch_size : int
        Structures per training step.
    max_epochs : int
        Most passes over the training data.
    patience : int
        Early stopping: epochs without a better validation loss before stopping.
    lr_patience, lr_factor : int, float
        Multiply the learning rate by ``lr_factor`` after ``lr_patience`` epochs
        without improvement.
    min_lr : float
        Stop when the learning rate falls below this.
    ema_decay : float
        Decay of the exponential moving average of the weights (0: off).
    validation_fraction : float
        Share of the training frames held out for validation when ``fit`` gets no
        ``valid`` set.
    max_time_s : float or None
        Stop after this many seconds of training (at the end of an epoch).
    seed : int
        Seeds the initial weights, the validation hold-out and the shuffling.
    dtype : {"float32", "float64"}
        Floating-point type of the network.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
"""


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for, but this torch sees no CUDA device; use 'cpu'")
    return dev


def _dtype(dtype: str) -> torch.dtype:
    table = {"float32": torch.float32, "float64": torch.float64}
    if dtype not in table:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return table[dtype]


def energy_statistics(train: Dataset) -> tuple[np.ndarray, float]:
    """Per-element energy offsets and an output scale from training data.

    The offsets ``E0[Z]`` (eV) solve the least-squares fit of the energies by atom
    counts, ``E_b ≈ Σ_Z n_bZ E0[Z]`` (minimum norm when compositions do not
    separate the elements, e.g. frames of one molecule: then the mean energy is
    shared out). The scale (eV) is the root mean square force component, the
    natural size of an atomic energy change per Å; without forces, the standard
    deviation of the per-atom energy residual.

    Returns
    -------
    offsets : numpy.ndarray, shape (119,)
        eV per atom of each element (zero for absent elements).
    scale : float
        eV.
    """
    offsets = np.zeros(N_ELEMENTS)
    elements = np.unique(train.flat_numbers)
    if train.energies is not None:
        counts = np.zeros((len(train), len(elements)))
        frame = train.frame_index
        col = np.searchsorted(elements, train.flat_numbers)
        np.add.at(counts, (frame, col), 1.0)
        fit, *_ = np.linalg.lstsq(counts, train.energies, rcond=None)
        offsets[elements] = fit
        residual = (train.energies - counts @ fit) / train.n_atoms
    if train.flat_forces is not None:
        scale = float(np.sqrt(np.mean(train.flat_forces**2)))
    elif train.energies is not None:
        scale = float(np.std(residual))
    else:
        scale = 1.0
    return offsets, scale if scale > 1e-8 else 1.0


def _frozen(potential: Potential) -> Potential:
    """The trained network for prediction: eval mode, weights not tracked by autograd.

    Forces still come from autograd (with respect to positions); not recording the
    weights' part of the graph makes each evaluation cheaper.
    """
    return potential.eval().requires_grad_(False)


class NeuralForceField(ForceFieldModel):
    """Base of the neural models: training, prediction, persistence (see module docs).

    Attributes (after ``fit``)
    --------------------------
    potential_ : Potential
        The trained network (in eval mode).
    history_ : TrainingHistory
        Learning curves; ``history_.plot()`` draws them.
    numbers_ : numpy.ndarray
        Atomic numbers the model was trained on (sorted, unique).
    molecule_numbers_ : numpy.ndarray or None
        The atoms of the training molecule when all training frames are one
        molecule (then ``predict`` also takes bare positions), else None.
    """

    #: structures per forward pass in ``predict``
    predict_batch_size = 100

    # ------------------------------------------------------------------ subclass API
    def _build_potential(self) -> Potential:
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    @property
    def device_(self) -> torch.device:
        return self.potential_.energy_scale.device

    @property
    def dtype_(self) -> torch.dtype:
        return self.potential_.energy_scale.dtype

    def _trainer(self, potential: Potential) -> Trainer:
        return Trainer(
            potential,
            energy_weight=self.energy_weight,
            force_weight=self.force_weight,
            lr=self.lr,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            lr_factor=self.lr_factor,
            lr_patience=self.lr_patience,
            min_lr=self.min_lr,
            ema_decay=self.ema_decay,
            patience=self.patience,
            seed=self.seed,
            max_time_s=self.max_time_s,
        )

    def _new_potential(self, device: torch.device, dtype: torch.dtype) -> Potential:
        """The untrained network, its initial weights drawn from ``seed`` (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            potential = self._build_potential()
        return potential.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train,
        valid=None,
        *,
        checkpoint=None,
        resume: bool = False,
        progress: bool = True,
        live_plot: bool = False,
    ) -> NeuralForceField:
        """Train the network on energies and forces.

        Parameters
        ----------
        train : Dataset or list of ase.Atoms
            Labelled frames (eV, Å): molecules or periodic cells, of any sizes.
        valid : Dataset, optional
            Validation frames for early stopping and the learning-rate schedule.
            Without them, ``validation_fraction`` of ``train`` is held out.
        checkpoint : path-like, optional
            Training-state file written after every epoch.
        resume : bool
            Continue from ``checkpoint`` when it exists (same settings needed).
        progress : bool
            Progress bar over epochs.
        live_plot : bool
            Redraw the learning curves in a notebook while training.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Missing labels, overlapping training and validation frames, a
            periodic structure with a model without cutoff.
        FloatingPointError
            When the loss turns NaN (lower ``lr`` or check the data).
        """
        train = as_dataset(train)
        needs = tuple(
            what
            for what, weight in (("energies", self.energy_weight), ("forces", self.force_weight))
            if weight > 0
        )
        train.require(*needs)
        device, dtype = _device(self.device), _dtype(self.dtype)
        fit_set = train
        if valid is None and self.validation_fraction > 0:
            n_valid = int(round(self.validation_fraction * len(train)))
            if n_valid < 1 or n_valid >= len(train):
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} of {len(train)} frames leaves "
                    "no validation or no training frames; pass valid= or change the fraction"
                )
            order = np.random.default_rng(self.seed).permutation(len(train))
            valid, fit_set = train[order[:n_valid]], train[np.sort(order[n_valid:])]
        elif valid is not None:
            valid = as_dataset(valid, "validation data").require(*needs)
            check_disjoint(train, valid)

        potential = self._new_potential(device, dtype)
        if potential.cutoff is None and (train.pbc.any() or (valid is not None and valid.pbc.any())):
            raise ValueError(
                f"{type(self).__name__} has no cutoff, so a periodic structure would have "
                "infinitely many pairs; train it on molecules, or use a model with a cutoff "
                "(SchNet) for crystals and surfaces"
            )
        offsets, scale = energy_statistics(fit_set)
        potential.set_energy_statistics(torch.as_tensor(offsets), scale)
        train_graphs = GraphData(fit_set, potential.cutoff, device, dtype, progress=progress)
        valid_graphs = (
            None if valid is None else GraphData(valid, potential.cutoff, device, dtype, progress)
        )
        trainer = self._trainer(potential)
        history = trainer.fit(
            train_graphs,
            valid_graphs,
            checkpoint=checkpoint,
            resume=resume,
            progress=progress,
            live_plot=live_plot,
        )
        self.potential_ = _frozen(potential)
        self.history_ = history
        self.molecule_numbers_ = train.numbers.copy() if train.is_uniform else None
        self.n_train_ = len(train)
        self.training_ = TrainingRecord.of(train)
        self.numbers_ = np.unique(train.flat_numbers)  # last: marks the model fitted
        return self

    # ------------------------------------------------------------------ prediction
    def _check_elements(self, numbers: np.ndarray) -> None:
        table = np.zeros(len(chemical_symbols), dtype=bool)
        table[self.numbers_] = True
        numbers = np.asarray(numbers)
        if numbers.size and numbers.min() >= 0 and numbers.max() < table.size and table[numbers].all():
            return  # the common case, checked without sorting (it runs at every MD step)
        unknown = np.setdiff1d(numbers, self.numbers_)
        if unknown.size:
            known = ", ".join(chemical_symbols[z] for z in self.numbers_)
            new = ", ".join(chemical_symbols[z] for z in unknown)
            raise ValueError(
                f"this {type(self).__name__} was trained on {known} and knows nothing about {new}; "
                "train it on data that contains these elements"
            )

    def _as_frames(self, X) -> Dataset:
        if isinstance(X, Dataset):
            return X
        if isinstance(X, Atoms):
            return Dataset.from_atoms([X])
        if isinstance(X, list | tuple) and X and all(isinstance(a, Atoms) for a in X):
            return Dataset.from_atoms(list(X))
        positions = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X, dtype=float)
        if self.molecule_numbers_ is None:
            raise ValueError(
                "bare positions carry no atoms, and this model was trained on several kinds of "
                "structure; pass a Dataset or ase.Atoms"
            )
        if positions.ndim == 2:
            positions = positions[None]
        if positions.ndim != 3 or positions.shape[1:] != (len(self.molecule_numbers_), 3):
            raise ValueError(
                f"positions have shape {positions.shape}; expected (n_frames, "
                f"{len(self.molecule_numbers_)}, 3) in Å for the training molecule"
            )
        return Dataset(self.molecule_numbers_, positions)

    def predict(self, X, progress: bool = False):
        """Energies and forces of any structures made of the trained elements.

        Parameters
        ----------
        X : Dataset, ase.Atoms, list of Atoms or array_like
            Structures (molecules or periodic cells, cell and pbc honoured), or
            positions ``(n_frames, n_atoms, 3)`` in Å of the training molecule.
        progress : bool
            Show a progress bar.

        Returns
        -------
        energies : numpy.ndarray, shape (n_frames,)
            eV.
        forces : numpy.ndarray, shape (n_frames, n_atoms, 3), or list of arrays
            eV/Å; a list of ``(n_atoms_i, 3)`` arrays when the frames differ in size.
        """
        self._check_fitted()
        if isinstance(X, Atoms):
            energy, forces, _ = self._evaluate_atoms(X)
            return np.array([energy]), forces[None]
        frames = self._as_frames(X)
        self._check_elements(frames.flat_numbers)
        graphs = GraphData(frames, self.potential_.cutoff, self.device_, self.dtype_)
        energies = np.empty(len(frames))
        forces = np.empty((frames.flat_numbers.shape[0], 3))
        atom = 0
        step = self.predict_batch_size
        for start in tqdm(range(0, len(frames), step), disable=not progress, desc="predict"):
            stop = min(start + step, len(frames))
            graph, _ = graphs.batch(range(start, stop))
            out = self.potential_.energy_and_forces(graph)
            energies[start:stop] = out[properties.ENERGY].detach().cpu().double().numpy()
            f = out[properties.FORCES].detach().cpu().double().numpy()
            forces[atom : atom + len(f)] = f
            atom += len(f)
        if frames.is_uniform:
            return energies, forces.reshape(len(frames), -1, 3)
        return energies, np.split(forces, np.cumsum(frames.n_atoms)[:-1])

    def _evaluate_atoms(self, atoms: Atoms, stress: bool = False):
        """Energy (eV), forces ``(n_atoms, 3)`` (eV/Å) and stress (Voigt, eV/Å³, or None)."""
        self._check_fitted()
        self._check_elements(atoms.numbers)
        graph = graph_from_atoms(atoms, self.potential_.cutoff, self.device_, self.dtype_)
        out = self.potential_.energy_and_forces(graph, stress=stress)
        energy = float(out[properties.ENERGY][0].detach())
        forces = out[properties.FORCES].detach().cpu().double().numpy()
        s = out[properties.STRESS][0].detach().cpu().double().numpy() if stress else None
        return energy, forces, s

    def calculator(self, **kwargs) -> NeuralCalculator:
        """An ASE calculator (energy, forces; stress for fully periodic cells)."""
        self._check_fitted()
        return NeuralCalculator(self, **kwargs)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict, dict]:
        arrays = {
            f"potential.{k}": v.detach().cpu().numpy()
            for k, v in self.potential_.state_dict().items()
        }
        if self.molecule_numbers_ is not None:
            arrays["molecule_numbers"] = self.molecule_numbers_
        return {"history": self.history_.to_dict()}, arrays

    def _set_state(self, attributes: dict, arrays: dict) -> None:
        device, dtype = _device(self.device), _dtype(self.dtype)
        potential = self._new_potential(device, dtype)
        state = {
            k[len("potential.") :]: torch.as_tensor(v)
            for k, v in arrays.items()
            if k.startswith("potential.")
        }
        potential.load_state_dict(state)
        self.potential_ = _frozen(potential)
        self.history_ = TrainingHistory.from_dict(attributes["history"])
        self.molecule_numbers_ = arrays.get("molecule_numbers")


class NeuralCalculator(ModelCalculator):
    """ASE calculator of a neural model: energy (eV), forces (eV/Å), stress (eV/Å³).

    Takes any structure made of the model's elements; stress is available for cells
    periodic in all three directions.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        from ase.calculators.calculator import Calculator, all_changes

        Calculator.calculate(self, atoms, properties, system_changes or all_changes)
        want_stress = "stress" in properties
        energy, forces, stress = self.model._evaluate_atoms(self.atoms, stress=want_stress)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if stress is not None:
            self.results["stress"] = stress
