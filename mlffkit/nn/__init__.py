"""Neural-network force fields: graphs, layers, potentials and their training.

===============================  =========================================================================================
``AtomicGraph``                  a batch of molecules and periodic cells as one graph
``neighbor_list``                pairs within a cutoff (vesin), periodic images included
``GraphData``                    frames of a Dataset with cached neighbour lists, batched
``Potential``                    base network: atomic energies → energy, forces, stress
``SchNetPotential``              SchNet (continuous-filter convolutions); forces for prediction by hand (``schnet_forces``)
``GeometricAttentionPotential``  geometric attention of orders 2–4 (pairs, angles, dihedrals)
``Trainer``                      energy/force training: Adam, plateau schedule, EMA, early stopping, checkpoint and resume
===============================  =========================================================================================

The estimators in :mod:`mlffkit.models` (``SchNet``, ``GeometricAttention``) wrap
these with the same ``fit``/``predict``/``save`` interface as the kernel models.
"""

from mlffkit.nn.attention import AttentionResult, GeometricAttentionPotential, attention_blocks
from mlffkit.nn.data import GraphData, graph_from_atoms
from mlffkit.nn.graph import AtomicGraph
from mlffkit.nn.neighbors import neighbor_list
from mlffkit.nn.potential import ATOMIC_ENERGIES, Potential
from mlffkit.nn.schnet import SchNetPotential
from mlffkit.nn.training import EpochRecord, Trainer, TrainingHistory

__all__ = [
    "AttentionResult",
    "GeometricAttentionPotential",
    "attention_blocks",
    "ATOMIC_ENERGIES",
    "AtomicGraph",
    "GraphData",
    "Potential",
    "SchNetPotential",
    "EpochRecord",
    "Trainer",
    "TrainingHistory",
    "graph_from_atoms",
    "neighbor_list",
]
