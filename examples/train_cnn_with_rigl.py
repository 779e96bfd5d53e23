r"""Trains a small CNN on Fashion-MNIST with RigL through `model.fit`.

The model is an ordinary tf_keras model; `rigl.sparsify` wraps its optimizer, and
`rigl.SparsitySummaries` writes masks, churn and FLOPs to TensorBoard beside Keras'
own TensorBoard callback:

  python examples/train_cnn_with_rigl.py --epochs=1 --log_dir=/tmp/rigl_cnn
  tensorboard --logdir=/tmp/rigl_cnn

Data: the IDX files in --data_dir (by default those of Debian's fashion-mnist package
when installed), or tensorflow-datasets when --data_dir is empty or they are missing.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import tensorflow as tf
import tf_keras

import rigl
from rigl import sparsity as sparsity_lib
from rigl.datasets import mnist

DEBIAN_FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
# Mask updates stop at 75% of training, as in the paper.
MASK_UPDATE_END_FRACTION = 0.75


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", choices=mnist.DATASETS, default="fashion_mnist")
  parser.add_argument("--data_dir", default=None,
                      help="folder of the four IDX files; empty: tensorflow-datasets; "
                      f"default: {DEBIAN_FASHION_MNIST_DIR} for Fashion-MNIST if present")
  parser.add_argument("--method", choices=list(rigl.TRAINING_METHODS), default="rigl")
  parser.add_argument("--sparsity", type=float, default=0.9)
  parser.add_argument("--distribution", default="erdos_renyi_kernel",
                      choices=list(sparsity_lib.DISTRIBUTIONS))
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--steps", type=int, default=0,
                      help="batches per epoch (and of evaluation); 0: the whole data")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--learning_rate", type=float, default=0.05)
  parser.add_argument("--mask_update_frequency", type=int, default=100,
                      help="batches between two mask updates (RigL's Delta T)")
  parser.add_argument("--drop_fraction", type=float, default=0.3)
  parser.add_argument("--log_dir", default="/tmp/rigl_cnn")
  parser.add_argument("--summary_freq", type=int, default=100,
                      help="batches between two sparsity summaries")
  parser.add_argument("--seed", type=int, default=0)
  return parser.parse_args(argv)


def build_model() -> tf_keras.Model:
  """Two 3x3 convolutions with pooling, and a dense classifier."""
  return tf_keras.Sequential([
      tf_keras.Input((mnist.IMAGE_SIZE, mnist.IMAGE_SIZE, 1)),
      tf_keras.layers.Conv2D(32, 3, activation="relu", name="conv1"),
      tf_keras.layers.MaxPooling2D(),
      tf_keras.layers.Conv2D(64, 3, activation="relu", name="conv2"),
      tf_keras.layers.MaxPooling2D(),
      tf_keras.layers.Flatten(),
      tf_keras.layers.Dense(128, activation="relu", name="fc"),
      tf_keras.layers.Dense(mnist.NUM_CLASSES, name="logits"),
  ])


def main(argv: list[str] | None = None) -> dict[str, float]:
  args = parse_args(argv)
  tf_keras.utils.set_random_seed(args.seed)
  data_dir = args.data_dir
  if data_dir is None:
    use_debian = args.dataset == "fashion_mnist" and DEBIAN_FASHION_MNIST_DIR.exists()
    data_dir = str(DEBIAN_FASHION_MNIST_DIR) if use_debian else ""
  train_split, test_split = mnist.load(args.dataset, data_dir)
  train = mnist.to_dataset(train_split, args.batch_size, flatten=False,
                           shuffle_seed=args.seed)
  test = mnist.to_dataset(test_split, args.batch_size, flatten=False, shuffle_seed=None)
  steps_per_epoch = args.steps or len(train_split.labels) // args.batch_size
  if args.steps:
    train, test = train.take(args.steps), test.take(args.steps)

  model = build_model()
  optimizer = rigl.sparsify(
      model, tf_keras.optimizers.SGD(args.learning_rate, momentum=0.9),
      method=args.method, sparsity=args.sparsity, distribution=args.distribution,
      schedule=rigl.MaskUpdateSchedule(
          begin_step=0,
          end_step=max(1, int(MASK_UPDATE_END_FRACTION * args.epochs * steps_per_epoch)),
          frequency=args.mask_update_frequency, drop_fraction=args.drop_fraction,
          drop_fraction_anneal="cosine"),
      seed=args.seed)
  model.compile(optimizer=optimizer,
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  sparsity_summaries = rigl.SparsitySummaries(
      f"{args.log_dir}/sparsity", update_freq=args.summary_freq,
      batch_size=args.batch_size)
  start = time.time()
  model.fit(train, epochs=args.epochs, verbose=2, callbacks=[
      tf_keras.callbacks.TensorBoard(args.log_dir), sparsity_summaries])
  loss, accuracy = model.evaluate(test, verbose=0)
  masks = optimizer.masks
  active = sum(float(tf.reduce_sum(mask)) for mask in masks.values())
  total = sum(mask.shape.num_elements() for mask in masks.values())
  results = {
      "test_accuracy": accuracy, "test_loss": loss,
      "masked_sparsity": 1.0 - active / total if total else 0.0,
      "training_flops_per_example": sparsity_summaries.training_flops_per_example,
      "optimizer_steps": int(optimizer.iterations.numpy()),
      "wall_time_s": time.time() - start,
  }
  print("  ".join(f"{key} {value:.4g}" for key, value in results.items()))
  return results


if __name__ == "__main__":
  main()
