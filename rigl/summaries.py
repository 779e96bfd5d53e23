"""TensorBoard summaries of a sparse training run: progress, sparsity, FLOPs, masks.

Kept apart from the loop (`rigl.training`) so that the Keras callback of the public
API can write the same summaries.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf
import tf_keras

from rigl import keras_compat
from rigl import keras3
from rigl.sparse_optimizer import DynamicSparseOptimizer
from rigl.sparse_optimizer import SparseOptimizer

# The sparse optimizers of either Keras, and those of them with a drop fraction.
SPARSE_OPTIMIZERS = (SparseOptimizer, keras3.SparseOptimizer)
DYNAMIC_OPTIMIZERS = (DynamicSparseOptimizer, keras3.DynamicSparseOptimizer)


def mask_image(mask: np.ndarray) -> np.ndarray:
  """A [1, rows, cols, 1] image of a mask: conv kernels as (k*k*in) x out."""
  matrix = mask.reshape(-1, mask.shape[-1])
  return matrix[np.newaxis, :, :, np.newaxis].astype(np.float32)


def current_learning_rate(optimizer: tf_keras.optimizers.Optimizer) -> float:
  """The learning rate at the optimizer's current step (schedules evaluated)."""
  rate = optimizer.learning_rate
  if isinstance(rate, tf_keras.optimizers.schedules.LearningRateSchedule):
    rate = rate(optimizer.iterations)
  return float(tf.convert_to_tensor(rate).numpy())


def write_scalars(writer: tf.summary.SummaryWriter, step: int,
                  scalars: Mapping[str, float]) -> None:
  with writer.as_default(step=step):
    for name, value in scalars.items():
      tf.summary.scalar(name, value)
  writer.flush()


def write_sparsity(writer: tf.summary.SummaryWriter, step: int,
                   optimizer: SparseOptimizer | keras3.SparseOptimizer,
                   global_sparsity: float,
                   per_layer: Mapping[str, float], mask_images: bool = False) -> None:
  """Global and per-layer sparsity, the drop fraction and (optionally) mask images."""
  with writer.as_default(step=step):
    tf.summary.scalar("global_sparsity", global_sparsity)
    for name, value in per_layer.items():
      tf.summary.scalar(f"sparsity/{name}", value)
    if isinstance(optimizer, DYNAMIC_OPTIMIZERS):
      tf.summary.scalar("drop_fraction",
                        float(optimizer.schedule.drop_fraction_at(step).numpy()))
    if mask_images:
      for name, mask in optimizer.masks.items():
        tf.summary.image(f"mask/{name}", mask_image(keras_compat.to_numpy(mask)))
  writer.flush()


def per_class_metrics(confusion: np.ndarray) -> dict[str, list[float]]:
  """Per-class precision and recall at 1 from a confusion matrix (rows: labels).

  A class never predicted (or absent) gets NaN precision (recall).
  """
  true_positives = np.diag(confusion)
  with np.errstate(invalid="ignore", divide="ignore"):
    return {"precision_at_1": [float(v) for v in true_positives / confusion.sum(axis=0)],
            "recall_at_1": [float(v) for v in true_positives / confusion.sum(axis=1)]}


def write_per_class(writer: tf.summary.SummaryWriter, step: int,
                    confusion: np.ndarray) -> dict[str, list[float]]:
  """Writes and returns `per_class_metrics(confusion)`."""
  metrics = per_class_metrics(confusion)
  with writer.as_default(step=step):
    for label, (precision, recall) in enumerate(zip(metrics["precision_at_1"],
                                                    metrics["recall_at_1"])):
      tf.summary.scalar(f"per_class/precision_at_1/{label}", precision)
      tf.summary.scalar(f"per_class/recall_at_1/{label}", recall)
  writer.flush()
  return metrics
