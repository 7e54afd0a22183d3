"""Reading saved models back: :func:`load_model` dispatches on the stored model type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlffkit.models.base import MODEL_FORMAT, MODEL_FORMAT_VERSION, ForceFieldModel


def _model_types() -> dict[str, type[ForceFieldModel]]:
    from mlffkit.models.attention import GeometricAttention
    from mlffkit.models.autodiff_gdml import AutoDiffGDML
    from mlffkit.models.bigdml import BIGDML
    from mlffkit.models.gdml import GDML
    from mlffkit.models.krr import KRR
    from mlffkit.models.schnet import SchNet

    kinds = (GDML, KRR, AutoDiffGDML, BIGDML, SchNet, GeometricAttention)
    return {cls.model_type: cls for cls in kinds}


def _parse_header(stored: np.ndarray, path) -> dict:
    try:
        # format 2: UTF-8 bytes; format 1: a numpy unicode string
        text = stored.tobytes().decode("utf-8") if stored.dtype == np.uint8 else str(stored)
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} has an unreadable model header; the file is damaged") from err
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not an mlffkit model file")
    return header


def model_header(path) -> dict:
    """The JSON header of a saved model, without loading its arrays.

    It holds the format tag and version, ``model_type``, ``mlffkit_version``, the
    constructor ``params``, fitted ``attributes`` (e.g. a neural model's training
    history) and the ``training`` record (content hashes of the training frames).
    """
    with np.load(path, allow_pickle=False) as npz:
        if "header" not in npz.files:
            raise ValueError(f"{path} is an npz file but not an mlffkit model (no header)")
        return _parse_header(npz["header"], path)


def load_model(path, **overrides) -> ForceFieldModel:
    """Load a model written by ``model.save(path)``.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.
    **overrides
        Constructor parameters to change on load: ``device="cuda"``, ``batch_size=256``,
        and for neural models ``dtype="float64"`` (e.g. for finite-difference checks);
        not the ones that define the fit, such as ``sigma``.

    Returns
    -------
    ForceFieldModel
        A fitted model of the type that was saved (GDML, KRR, ...).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an mlffkit model, or was written by a newer format version.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError) as err:
        raise ValueError(
            f"{path} is not an mlffkit model file (.npz written by model.save)"
        ) from err
    if "header" not in arrays:
        raise ValueError(f"{path} is an npz file but not an mlffkit model (no header)")
    header = _parse_header(arrays.pop("header"), path)
    if header.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not an mlffkit model file")
    if header.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer mlffkit (model format {header['format_version']}); "
            "upgrade mlffkit to read it"
        )
    types = _model_types()
    kind = header.get("model_type")
    if kind not in types:
        raise ValueError(f"{path} holds an unknown model type {kind!r}; known: {sorted(types)}")
    cls = types[kind]
    # settings of how a model runs, not of what it learned (dtype: neural models only)
    allowed = {"device", "batch_size", "dtype"} & set(cls._get_param_names())
    bad = set(overrides) - allowed
    if bad:
        raise ValueError(
            f"load_model can change only {sorted(allowed)} of a trained model, not {sorted(bad)}; "
            "retrain to change the others"
        )
    return cls._from_file(header, arrays, overrides)
