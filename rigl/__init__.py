"""RigL and the sparse-training methods it is compared with, for TensorFlow 2 / tf_keras.

Typical use::

    model = ...  # any built tf_keras model
    optimizer = rigl.sparsify(
        model, tf_keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
        method="rigl", sparsity=0.9, distribution="erdos_renyi_kernel",
        schedule=rigl.MaskUpdateSchedule(end_step=25000, drop_fraction_anneal="cosine"))
    model.compile(optimizer=optimizer, loss=...)
    model.fit(..., callbacks=[rigl.SparsitySummaries(log_dir)])
"""

from rigl.callbacks import SparsitySummaries
from rigl.schedules import MaskUpdateSchedule
from rigl.kernel_selection import KernelSelector
from rigl.sparse_optimizer import DynamicSparseOptimizer
from rigl.sparse_optimizer import SparseOptimizer
from rigl.methods import DenseTraining
from rigl.methods import DNW
from rigl.methods import SNFS
from rigl.methods import GradualPruning
from rigl.methods import RigL
from rigl.methods import Static
from rigl.methods import SET
from rigl.methods import SNIP
from rigl.methods import StaticReinit
from rigl.methods import TRAINING_METHODS
from rigl.methods import create_sparse_optimizer
from rigl.methods import sparsify
from rigl.sparsity import SparsityConfig
from rigl.sparsity import get_sparsities

__all__ = [
    "DenseTraining", "DynamicSparseOptimizer", "KernelSelector", "MaskUpdateSchedule",
    "DNW", "SNFS", "SparseOptimizer", "GradualPruning", "RigL",
    "Static", "SET", "SNIP", "StaticReinit", "SparsityConfig",
    "SparsitySummaries", "TRAINING_METHODS", "create_sparse_optimizer", "get_sparsities",
    "sparsify",
]
