"""Force-field models with one scikit-learn-style interface.

================  ====================================================================
``GDML``          (s)GDML: kernel regression of forces, energies by integration
``KRR``           kernel ridge regression of energies on a descriptor (baseline)
``AutoDiffGDML``  GDML with any torch descriptor, kernel by automatic differentiation
``BIGDML``        periodic sGDML: minimum-image distances, the supercell's space group
``SchNet``        message passing with continuous filters (molecules and materials)
``GeometricAttention``  attention of orders 2–4 built from the geometry (molecules)
================  ====================================================================

>>> from mlffkit.models import GDML, load_model, select_sigma
>>> model = GDML(sigma=20).fit(train)                      # doctest: +SKIP
>>> energies, forces = model.predict(test)                 # doctest: +SKIP
>>> model.save("ethanol_gdml.npz")                         # doctest: +SKIP
>>> model = load_model("ethanol_gdml.npz")                 # doctest: +SKIP
>>> atoms.calc = model.calculator()                        # doctest: +SKIP
"""

from mlffkit.models.attention import GeometricAttention
from mlffkit.models.autodiff_gdml import AutoDiffGDML
from mlffkit.models.base import ForceFieldModel, TrainingRecord
from mlffkit.models.bigdml import BIGDML
from mlffkit.models.calculator import ModelCalculator
from mlffkit.models.diagnostics import LabelWarning
from mlffkit.models.gdml import GDML, kernel_bytes
from mlffkit.models.io import load_model
from mlffkit.models.krr import KRR
from mlffkit.models.neural import NeuralCalculator, NeuralForceField
from mlffkit.models.schnet import SchNet
from mlffkit.models.selection import SigmaCurve, select_sigma

__all__ = [
    "AutoDiffGDML",
    "BIGDML",
    "GDML",
    "GeometricAttention",
    "KRR",
    "ForceFieldModel",
    "LabelWarning",
    "ModelCalculator",
    "NeuralCalculator",
    "NeuralForceField",
    "SchNet",
    "SigmaCurve",
    "TrainingRecord",
    "kernel_bytes",
    "load_model",
    "select_sigma",
]
