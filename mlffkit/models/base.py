"""The interface every mlffkit force-field model follows, in the style of scikit-learn.

``fit(train)`` learns from a :class:`~mlffkit.data.Dataset`; ``predict(frames)``
returns energies (eV, ``(n_frames,)``) and forces (eV/Å, ``(n_frames, n_atoms, 3)``);
``score`` is the R² of the force components; ``save``/``load_model`` round-trip a
model through one ``.npz`` file (arrays plus a JSON header, no pickle);
``calculator()`` plugs the model into ASE. Constructor arguments are stored as
attributes of the same name (``get_params``/``set_params`` and
:func:`sklearn.base.clone` work); what ``fit`` learns ends in an underscore.

A fitted model remembers which frames it was trained on (their content hashes), so
that :meth:`ForceFieldModel.check_not_trained_on` can refuse a test set that
overlaps the training set.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.base import BaseEstimator

from mlffkit.data.dataset import Dataset
from mlffkit.data.splits import refuse_seen_frames
from mlffkit.descriptors.frames import check_atom_count, check_numbers, frames_from
from mlffkit.fileio import atomic_path

#: format tag and version of saved models (2: the JSON header stored as UTF-8 bytes;
#: 1 stored it as a numpy unicode string, four bytes per character)
MODEL_FORMAT = "mlffkit-model"
MODEL_FORMAT_VERSION = 2


@dataclass(frozen=True)
class TrainingRecord:
    """Where a model's training frames came from, to keep test sets honest.

    Attributes
    ----------
    frame_hashes : tuple of str
        :meth:`Dataset.frame_hashes` of the training frames (atoms and positions).
    fingerprint : str
        :meth:`Dataset.fingerprint` of the training set.
    source_indices : tuple of int
        Indices of the training frames in the file/dataset they were taken from.
    source_fingerprint : str or None
        Fingerprint of that parent dataset.
    name, level_of_theory : str
        Of the training set.
    """

    frame_hashes: tuple
    fingerprint: str
    source_indices: tuple
    source_fingerprint: str | None
    name: str
    level_of_theory: str

    @classmethod
    def of(cls, dataset: Dataset) -> TrainingRecord:
        return cls(
            frame_hashes=tuple(str(h) for h in dataset.frame_hashes()),
            fingerprint=dataset.fingerprint(),
            source_indices=tuple(int(i) for i in dataset.source_indices),
            source_fingerprint=dataset.source_fingerprint,
            name=dataset.name,
            level_of_theory=dataset.level_of_theory,
        )


def as_dataset(data, what: str = "training data") -> Dataset:
    """A Dataset from a Dataset or a list of labelled ase.Atoms."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, list | tuple) and data:
        return Dataset.from_atoms(data)
    raise ValueError(
        f"{what} must be a mlffkit Dataset (mlffkit.data.load(...)) or a list of ase.Atoms "
        f"with energies and forces, got {type(data).__name__}"
    )


def _encode(value):
    """A constructor parameter as JSON (arrays and descriptors included)."""
    from mlffkit.descriptors import Descriptor

    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, Descriptor):
        params = {k: _encode(v) for k, v in value.get_params(deep=False).items()}
        return {"__descriptor__": type(value).__name__, "params": params}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return str(value)  # torch.device and the like


def _decode(value):
    from mlffkit import descriptors

    if isinstance(value, dict) and "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=value["dtype"])
    if isinstance(value, dict) and "__descriptor__" in value:
        cls = getattr(descriptors, value["__descriptor__"], None)
        if not (isinstance(cls, type) and issubclass(cls, descriptors.Descriptor)):
            raise ValueError(
                f"the model file names an unknown descriptor {value['__descriptor__']!r}"
            )
        return cls(**{k: _decode(v) for k, v in value["params"].items()})
    return value


def check_kernel_solve_params(model, sigma_units: str = "descriptor units") -> None:
    """Validate the parameters GDML-type models share: ``sigma``, ``lam`` and the solver's
    ``preconditioner``, ``rank``, ``tol`` and ``batch_size``.

    Raises
    ------
    ValueError
        Naming the parameter, what it must be and what it was.
    """
    from mlffkit.solvers import METHODS

    sigma = model.sigma
    if not np.isscalar(sigma) or not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number ({sigma_units}), got {sigma!r}")
    if not np.isscalar(model.lam) or not model.lam >= 0:
        raise ValueError(f"lam must be a non-negative number, got {model.lam!r}")
    if model.preconditioner is not None and model.preconditioner not in METHODS:
        raise ValueError(
            f"unknown preconditioner {model.preconditioner!r}; use one of {METHODS} or None"
        )
    if model.rank is not None and int(model.rank) < 1:
        raise ValueError(f"rank must be a positive number of columns, got {model.rank!r}")
    if not (np.isscalar(model.tol) and 0 < model.tol < 1):
        raise ValueError(f"tol must be a relative residual between 0 and 1, got {model.tol!r}")
    if model.batch_size is not None and int(model.batch_size) < 1:
        raise ValueError(
            f"batch_size must be a positive number of frames, got {model.batch_size!r}"
        )


class ForceFieldModel(BaseEstimator):
    """Base class of mlffkit's force-field models (see :class:`~mlffkit.models.GDML`,
    :class:`~mlffkit.models.KRR`)."""

    #: the name saved files record, used by :func:`~mlffkit.models.load_model`
    model_type = ""

    # ------------------------------------------------------------------ subclass API
    def fit(self, train, **kwargs) -> ForceFieldModel:
        raise NotImplementedError

    def _predict_positions(
        self, positions: np.ndarray, progress: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Energies ``(n,)`` and forces ``(n, N, 3)`` for validated positions ``(n, N, 3)``."""
        raise NotImplementedError

    def _state(self) -> tuple[dict, dict]:
        """Fitted state: JSON-able scalars and a dict of arrays."""
        raise NotImplementedError

    def _set_state(self, attributes: dict, arrays: dict) -> None:
        raise NotImplementedError

    def display_name(self) -> str:
        """A short name for reports and plot titles (e.g. ``"sGDML (6 symmetries)"``)."""
        return type(self).__name__

    # ------------------------------------------------------------------ fitted checks
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "numbers_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(
                f"this {type(self).__name__} is not trained yet; call fit(train_dataset) first"
            )

    def _refuse_second_dataset(self, y) -> None:
        """Kernel models learn from ``train`` alone; a second Dataset is a misplaced validation set."""
        if y is not None:
            raise ValueError(
                f"{type(self).__name__}.fit takes the training frames only (their labels are in "
                "the Dataset); to choose sigma on validation frames use "
                "mlffkit.models.select_sigma(train, valid, sigmas, model=...)"
            )

    def _prepare_training(self, train, needs: tuple[str, ...] = ("forces",)) -> Dataset:
        """Validate a training set: labels ``needs``, one molecule, no duplicated frames."""
        train = as_dataset(train)
        train.require(*needs)
        frames_from(train)  # one molecule, one atom order
        hashes = train.frame_hashes()
        if len(set(hashes)) < len(hashes):
            _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
            dup = int(first[counts > 1][0])
            raise ValueError(
                f"the training set holds the same frame more than once (e.g. frame {dup}, "
                f"{int((counts - 1).sum())} repeats); duplicates make the kernel singular: "
                "drop them (or split the data with mlffkit.data.random_split)"
            )
        return train

    def _record_training(self, train: Dataset) -> None:
        """Mark the model fitted on ``train`` (called last in ``fit``, once all went well)."""
        self.numbers_ = train.numbers.copy()
        self.n_train_ = len(train)
        self.training_ = TrainingRecord.of(train)

    # ------------------------------------------------------------------ prediction
    def _positions(self, X) -> np.ndarray:
        self._check_fitted()
        positions, numbers = frames_from(X)
        what = f"this {type(self).__name__}"
        check_atom_count(positions, len(self.numbers_), what)
        check_numbers(numbers, self.numbers_, what)
        return positions

    def predict(self, X, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Energies and forces of frames of the molecule the model was trained on.

        Parameters
        ----------
        X : Dataset, ase.Atoms, list of Atoms or array_like
            Frames with the training set's atoms in the same order, or positions
            in Å ``(n_frames, n_atoms, 3)`` / ``(n_atoms, 3)``.
        progress : bool
            Show a progress bar.

        Returns
        -------
        energies : numpy.ndarray, shape (n_frames,)
            eV.
        forces : numpy.ndarray, shape (n_frames, n_atoms, 3)
            eV/Å.

        Raises
        ------
        ValueError
            For frames with other atoms, another atom order or another atom count.
        """
        return self._predict_positions(self._positions(X), progress)

    def score(self, X, y=None) -> float:
        """Coefficient of determination R² of the predicted force components on ``X``.

        1 is perfect; 0 is no better than predicting zero-mean forces. ``X`` must
        carry reference forces (a Dataset); ``y`` is ignored.
        """
        data = as_dataset(X, "the frames to score").require("forces")
        _, forces = self.predict(data)
        ref = data.forces
        return float(1.0 - np.sum((forces - ref) ** 2) / np.sum((ref - ref.mean()) ** 2))

    # ------------------------------------------------------------------ honesty
    def check_not_trained_on(self, dataset: Dataset, decimals: int = 6) -> None:
        """Raise if any frame of ``dataset`` was in the training set.

        Frames are compared by content (atoms and positions rounded to ``decimals``
        Å), whatever file they came from.

        Raises
        ------
        ValueError
            Naming how many and which frames (indices in ``dataset``) overlap.
        """
        self._check_fitted()
        trained = self.training_.frame_hashes
        if decimals != 6:
            raise ValueError("the model records frame hashes at 6 decimals; use decimals=6")
        refuse_seen_frames(trained, dataset, decimals)

    # ------------------------------------------------------------------ ASE
    def calculator(self, **kwargs):
        """An ASE calculator (energy, forces) backed by this model.

        >>> atoms.calc = model.calculator()     # doctest: +SKIP
        """
        from mlffkit.models.calculator import ModelCalculator

        self._check_fitted()
        return ModelCalculator(self, **kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, path, overwrite: bool = False):
        """Write the fitted model to ``path`` (``.npz``), atomically.

        The file holds the arrays and a JSON header (model type, parameters,
        training-set record, mlffkit version); :func:`~mlffkit.models.load_model`
        reads it back without pickle.

        Raises
        ------
        FileExistsError
            If ``path`` exists and ``overwrite`` is False.
        """
        from mlffkit import __version__

        self._check_fitted()
        attributes, arrays = self._state()
        header = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "model_type": self.model_type,
            "mlffkit_version": __version__,
            "params": {k: _encode(v) for k, v in self.get_params(deep=False).items()},
            "attributes": attributes,
            "training": asdict(self.training_),
        }
        # UTF-8 bytes: a training history makes the header long, and a numpy unicode
        # string would store it at four bytes per character
        encoded = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        arrays = {**arrays, "numbers": self.numbers_, "header": encoded}
        with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def _from_file(cls, header: dict, arrays: dict, overrides: dict) -> ForceFieldModel:
        params = {k: _decode(v) for k, v in header["params"].items()}
        # JSON has no tuples: give tuple-valued parameters (e.g. orders) their type back
        defaults = {
            name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
        }
        for name, value in params.items():
            if isinstance(value, list) and isinstance(defaults.get(name), tuple):
                params[name] = tuple(value)
        params.update(overrides)
        model = cls(**params)
        model.numbers_ = arrays["numbers"]
        training = dict(header["training"])
        training["frame_hashes"] = tuple(training["frame_hashes"])
        training["source_indices"] = tuple(training["source_indices"])
        model.training_ = TrainingRecord(**training)
        model.n_train_ = len(model.training_.frame_hashes)
        model._set_state(header["attributes"], arrays)
        return model
