"""RigL and the other sparse-training methods for Keras 3 models.

Keras 3 (`import keras`, and TensorFlow 2.21's own `tf.keras`) on the TensorFlow, JAX
and PyTorch backends. `rigl.sparsify` picks these classes for a Keras 3 model; they
are derived from the registered tf_keras methods (`rigl.methods`) and behave the same.
"""

from rigl.keras3.methods import DNW
from rigl.keras3.methods import DenseTraining
from rigl.keras3.methods import GradualPruning
from rigl.keras3.methods import RigL
from rigl.keras3.methods import SET
from rigl.keras3.methods import SNFS
from rigl.keras3.methods import SNIP
from rigl.keras3.methods import Static
from rigl.keras3.methods import StaticReinit
from rigl.keras3.methods import create_sparse_optimizer
from rigl.keras3.methods import method_class
from rigl.keras3.sparse_optimizer import DynamicSparseOptimizer
from rigl.keras3.sparse_optimizer import SparseOptimizer

__all__ = [
    "DNW", "DenseTraining", "DynamicSparseOptimizer", "GradualPruning", "RigL", "SET",
    "SNFS", "SNIP", "SparseOptimizer", "Static", "StaticReinit",
    "create_sparse_optimizer", "method_class",
]
