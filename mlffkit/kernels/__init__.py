"""Kernels: scalar kernels on descriptors (for energy models) and the (s)GDML force-field kernel.

>>> from mlffkit.kernels import kernel_matrix, force_field_kernel   # doctest: +SKIP
"""

from mlffkit.kernels.gdml import (
    assemble_kernel,
    force_field_kernel,
    kernel_tile,
    predict_descriptor_space,
)
from mlffkit.kernels.scalar import KERNELS, kernel_gradient_sum, kernel_matrix, matern52

__all__ = [
    "KERNELS",
    "assemble_kernel",
    "force_field_kernel",
    "kernel_gradient_sum",
    "kernel_matrix",
    "kernel_tile",
    "matern52",
    "predict_descriptor_space",
]
