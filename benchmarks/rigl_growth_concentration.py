r"""Why RigL is unstable on LeNet-5: its growth piles onto a few units.

RigL grows each layer's new connections where the dense gradient is largest, with no
limit per unit, so they concentrate on the units with the largest error signal; SET
spreads them at random. The first optimizer step after an update then moves all of a
unit's new connections at once in the same direction, and the unit's pre-activation
jumps. This script trains LeNet-5 at 95% (the script's sparsity rules) on real
Fashion-MNIST with SGD + Nesterov momentum and records, at each of the first mask
updates: the test loss on 1,000 fixed examples just before the call that updates the
masks, just after it and one step later, and how many new connections the most-grown
output unit of each layer received against the mean. RigL's update replaces that
call's optimizer step, so 'after' isolates the mask change (new weights start at zero,
the dropped ones are the smallest); SET steps and then updates in the same call (the
original's order), so its 'after' includes a step.

  python -m benchmarks.rigl_growth_concentration

Writes benchmarks/results/rigl_growth_concentration.md.
"""

from __future__ import annotations


from absl import app
from absl import flags
import numpy as np

from benchmarks import report_files
from benchmarks import train_step

NAME = "rigl_growth_concentration"
METHODS = ("rigl", "set")
SPARSITY = 0.95
PROBE_EXAMPLES = 1000
BATCH_SIZE = 100
# The last mask update of a 3-epoch run with the script's schedule shortened in proportion.
MASK_UPDATE_END = 750
MASK_UPDATE_FREQUENCY = 100
DROP_FRACTION = 0.3
MOMENTUM = 0.9

flags.DEFINE_float("learning_rate", 0.1, "SGD learning rate (Nesterov momentum 0.9).")
flags.DEFINE_integer("seed", 1, "Seed of weights, masks and data order.")
flags.DEFINE_integer("updates", 3, "Mask updates to record after the one at step 0.")
flags.DEFINE_string("data_dir", "/usr/share/datasets/fashion-mnist", "IDX files.")
FLAGS = flags.FLAGS


def record(method: str) -> list[dict]:
  """Trains until `--updates` mask updates after step 0; one row per update."""
  import tf_keras  # pylint: disable=import-outside-toplevel
  import rigl  # pylint: disable=import-outside-toplevel
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  from rigl import models  # pylint: disable=import-outside-toplevel
  from rigl.datasets import mnist as data  # pylint: disable=import-outside-toplevel
  train_split, test_split = data.load("fashion_mnist", FLAGS.data_dir)
  probe_x, probe_y = next(iter(data.to_dataset(test_split, PROBE_EXAMPLES, False, None)))
  tf_keras.utils.set_random_seed(FLAGS.seed)
  model = models.build("lenet5")
  optimizer = rigl.create_sparse_optimizer(
      method, tf_keras.optimizers.SGD(FLAGS.learning_rate, momentum=MOMENTUM, nesterov=True),
      model, mnist_train_eval.sparsity_config("lenet5", SPARSITY, "random", 0.9),
      seed=FLAGS.seed,
      schedule=rigl.MaskUpdateSchedule(0, MASK_UPDATE_END, MASK_UPDATE_FREQUENCY,
                                       DROP_FRACTION, "cosine"))
  loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  step = train_step.make_train_step(model, optimizer, loss_fn)

  def probe_loss() -> float:
    return float(loss_fn(probe_y, model(probe_x)))

  rows, pending = [], None
  masks = {name: mask.numpy() > 0 for name, mask in optimizer.masks.items()}
  for call, (x, y) in enumerate(data.to_dataset(train_split, BATCH_SIZE, False,
                                                FLAGS.seed).repeat()):
    before = probe_loss()
    step(x, y)
    if pending is not None:
      pending["loss_one_step_later"] = probe_loss()
      rows.append(pending)
      pending = None
      if len(rows) == FLAGS.updates:
        return rows
    new_masks = {name: mask.numpy() > 0 for name, mask in optimizer.masks.items()}
    if call > 0 and any((new_masks[k] != masks[k]).any() for k in masks):
      pending = {"method": method, "call": call, "loss_before": before,
                 "loss_after": probe_loss(), "layers": {}}
      for name in masks:
        grown = (new_masks[name] & ~masks[name]).reshape(-1, masks[name].shape[-1])
        per_unit = grown.sum(axis=0)
        pending["layers"][name] = (int(per_unit.max()), float(per_unit.mean()))
    masks = new_masks
  raise AssertionError("unreachable: the dataset repeats")


def main(argv):
  del argv
  rows = [row for method in METHODS for row in record(method)]
  layer_names = list(rows[0]["layers"])
  lines = ["# RigL's growth concentrates on a few units", "",
           f"LeNet-5 at {SPARSITY:.0%} (conv1 and the output layer dense), Fashion-MNIST, "
           f"SGD with Nesterov momentum {MOMENTUM}, learning rate {FLAGS.learning_rate:g}, "
           f"batch {BATCH_SIZE}, seed {FLAGS.seed}; mask updates every "
           f"{MASK_UPDATE_FREQUENCY} steps, drop fraction {DROP_FRACTION} (cosine to step "
           f"{MASK_UPDATE_END}). Test loss on {PROBE_EXAMPLES} fixed "
           "examples, before the call that updates the masks, after it, and after the next "
           "step; RigL's update replaces the call's optimizer step, SET's follows one (so "
           "SET's 'after update' includes a step). 'new per unit': new connections of the "
           "most-grown output unit / the mean over units. Written by "
           "`python -m benchmarks.rigl_growth_concentration`.", "",
           "| Method | call | loss before | after update | one step later | " +
           " | ".join(f"{name} new per unit" for name in layer_names) + " |",
           "|---|---|---|---|---|" + "---|" * len(layer_names)]
  for row in rows:
    cells = [f"{top} / {mean:.1f}" for top, mean in row["layers"].values()]
    lines.append(f"| {row['method']} | {row['call']} | {row['loss_before']:.3f} | "
                 f"{row['loss_after']:.3f} | {row['loss_one_step_later']:.3f} | " +
                 " | ".join(cells) + " |")
  ratio = {method: np.mean([row["layers"][name][0] / max(row["layers"][name][1], 1e-9)
                            for row in rows if row["method"] == method
                            for name in layer_names]) for method in METHODS}
  lines += ["", "Most-grown unit over the mean, averaged over layers and updates: " +
            ", ".join(f"{method} {value:.1f}x" for method, value in ratio.items()) + "."]
  report_files.write(NAME, lines)


if __name__ == "__main__":
  app.run(main)
