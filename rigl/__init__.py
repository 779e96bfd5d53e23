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
from rigl.sparse_kernels import KernelSelector
from rigl.sparse_optimizer_base import DynamicSparseOptimizer
from rigl.sparse_optimizer_base import SparseOptimizer
from rigl.sparse_optimizers import DenseBaseline
from rigl.sparse_optimizers import SparseDNW
from rigl.sparse_optimizers import SparseMomentum
from rigl.sparse_optimizers import SparsePrune
from rigl.sparse_optimizers import SparseRigL
from rigl.sparse_optimizers import SparseScratch
from rigl.sparse_optimizers import SparseSET
from rigl.sparse_optimizers import SparseSnip
from rigl.sparse_optimizers import SparseStatic
from rigl.sparse_optimizers import TRAINING_METHODS
from rigl.sparse_optimizers import create_sparse_optimizer
from rigl.sparse_optimizers import sparsify
from rigl.sparsity import SparsityConfig
from rigl.sparsity import get_sparsities

__all__ = [
    "DenseBaseline", "DynamicSparseOptimizer", "KernelSelector", "MaskUpdateSchedule",
    "SparseDNW", "SparseMomentum", "SparseOptimizer", "SparsePrune", "SparseRigL",
    "SparseScratch", "SparseSET", "SparseSnip", "SparseStatic", "SparsityConfig",
    "SparsitySummaries", "TRAINING_METHODS", "create_sparse_optimizer", "get_sparsities",
    "sparsify",
]
