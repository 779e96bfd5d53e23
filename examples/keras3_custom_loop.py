r"""RigL in a hand-written training loop, for each Keras 3 backend.

`rigl.sparsify` returns an ordinary Keras 3 optimizer, so every backend's usual
custom loop works unchanged:

- TensorFlow: `tf.GradientTape`, then `optimizer.apply(grads, variables)`, in a
  `tf.function` compiled with XLA;
- JAX: the stateless API, `model.stateless_call` and `optimizer.stateless_apply`, in one
  `jax.jit`-compiled step; masks and schedule state are optimizer variables, so they
  travel in `optimizer_variables` like Adam's moments;
- PyTorch: `loss.backward()`, then `optimizer.apply(grads, variables)`.

  KERAS_BACKEND=jax python examples/keras3_custom_loop.py --steps=300

Trains a small MLP on a synthetic task and prints the loss and the masks' density.
"""

from __future__ import annotations

import argparse
import os

import keras
import numpy as np

import rigl

FEATURES, CLASSES, BATCH = 32, 4, 64
HIDDEN = 128


def make_model(seed: int = 0) -> keras.Model:
  keras.utils.set_random_seed(seed)
  return keras.Sequential([
      keras.Input((FEATURES,)), keras.layers.Dense(HIDDEN, activation="relu", name="h1"),
      keras.layers.Dense(HIDDEN, activation="relu", name="h2"),
      keras.layers.Dense(CLASSES, name="logits")])


def make_batches(steps: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
  """A synthetic classification task: the class is the argmax of 4 fixed projections."""
  rng = np.random.default_rng(seed)
  projection = rng.normal(size=(FEATURES, CLASSES)).astype(np.float32)
  batches = []
  for _ in range(steps):
    x = rng.normal(size=(BATCH, FEATURES)).astype(np.float32)
    batches.append((x, np.argmax(x @ projection, axis=1).astype(np.int32)))
  return batches


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def train_tensorflow(model, optimizer, batches) -> list[float]:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  @tf.function(jit_compile=True)
  def step(x, y):
    with tf.GradientTape() as tape:
      loss = LOSS(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    return loss

  return [float(step(x, y)) for x, y in batches]


def train_jax(model, optimizer, batches) -> list[float]:
  import jax  # pylint: disable=import-outside-toplevel

  def loss_fn(trainable, non_trainable, x, y):
    logits, non_trainable = model.stateless_call(trainable, non_trainable, x,
                                                 training=True)
    return LOSS(y, logits), non_trainable

  @jax.jit
  def step(state, x, y):
    trainable, non_trainable, optimizer_variables = state
    (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        trainable, non_trainable, x, y)
    trainable, optimizer_variables = optimizer.stateless_apply(
        optimizer_variables, grads, trainable)
    return loss, (trainable, non_trainable, optimizer_variables)

  optimizer.build(model.trainable_variables)
  state = ([v.value for v in model.trainable_variables],
           [v.value for v in model.non_trainable_variables],
           [v.value for v in optimizer.variables])
  losses = []
  for x, y in batches:
    loss, state = step(state, x, y)
    losses.append(float(loss))
  # Write the final state back into the Keras variables.
  trainable, non_trainable, optimizer_variables = state
  for variable, value in zip(model.trainable_variables, trainable):
    variable.assign(value)
  for variable, value in zip(model.non_trainable_variables, non_trainable):
    variable.assign(value)
  for variable, value in zip(optimizer.variables, optimizer_variables):
    variable.assign(value)
  return losses


def train_torch(model, optimizer, batches) -> list[float]:
  import torch  # pylint: disable=import-outside-toplevel

  losses = []
  for x, y in batches:
    model.zero_grad()
    loss = LOSS(torch.from_numpy(y), model(torch.from_numpy(x), training=True))
    loss.backward()
    grads = [variable.value.grad for variable in model.trainable_variables]
    with torch.no_grad():
      optimizer.apply(grads, model.trainable_variables)
    losses.append(float(loss.detach()))
  return losses


TRAIN = {"tensorflow": train_tensorflow, "jax": train_jax, "torch": train_torch}


def sparse_optimizer(model: keras.Model, total_steps: int) -> keras.optimizers.Optimizer:
  return rigl.sparsify(
      model, keras.optimizers.SGD(0.05, momentum=0.9), method="rigl", sparsity=0.9,
      distribution="erdos_renyi_kernel", schedule=rigl.MaskUpdateSchedule(
          end_step=int(0.75 * total_steps), frequency=50, drop_fraction=0.3,
          drop_fraction_anneal="cosine"))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=300)
  args = parser.parse_args()
  backend = keras.backend.backend()
  model = make_model()
  optimizer = sparse_optimizer(model, args.steps)
  losses = TRAIN[backend](model, optimizer, make_batches(args.steps))
  print(f"backend {backend} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '')}): "
        f"loss {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f} over {args.steps} steps")
  for name, mask in optimizer.masks.items():
    print(f"  {name}: density {float(np.mean(keras.ops.convert_to_numpy(mask))):.3f}")


if __name__ == "__main__":
  main()
