r"""Renders recorded masks (`--mask_record_frequency`) as PNG frames and an animated GIF.

  python mnist/visualize_mask_records.py --records_path=/tmp/run/mask_records.npz \
      --save_path=/tmp/run/mask_frames --layer_id=0

Each frame shows one layer's mask at a recorded step and, next to it, how many
connections every input unit keeps (for MNIST's layer1: a 28x28 map of the pixels the
network still reads), so topology changes can be watched rather than read.
"""

from __future__ import annotations

import math
import pathlib

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np
from PIL import Image

FLAGS = flags.FLAGS
GIF_NAME = "masks.gif"
SLOW_FACTOR = 4

def load_records(path: str) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
  """(steps, layer names, {name: [records, ...] boolean masks})."""
  if not pathlib.Path(path).exists():
    raise FileNotFoundError(f"No mask records at {path}.")
  with np.load(path) as records:
    names = [str(name) for name in records["layer_names"]]
    return records["steps"], names, {name: records[name] for name in names}


def _square_side(size: int) -> int | None:
  side = math.isqrt(size)
  return side if side * side == size else None


def render_frames(steps, name: str, masks: np.ndarray, save_path: str,
                  new_shape: tuple[int, int] | None = None, skip: int = 1
                  ) -> list[pathlib.Path]:
  """Writes one PNG per rendered record and returns their paths."""
  out = pathlib.Path(save_path)
  out.mkdir(parents=True, exist_ok=True)
  paths = []
  for index in range(0, len(steps), skip):
    mask = masks[index].reshape(-1, masks[index].shape[-1])
    fan_out = mask.sum(axis=1)
    side = _square_side(fan_out.size)
    figure, axes = plt.subplots(1, 2 if side else 1, figsize=(9 if side else 5, 4.5),
                                squeeze=False)
    shown = mask.reshape(new_shape) if new_shape else mask
    axes[0][0].imshow(shown, cmap="gray_r", aspect="auto", interpolation="nearest")
    axes[0][0].set_title(f"{name} mask, step {int(steps[index])}, "
                         f"density {mask.mean():.3f}")
    if side:
      image = axes[0][1].imshow(fan_out.reshape(side, side), cmap="viridis")
      axes[0][1].set_title("connections kept per input")
      figure.colorbar(image, ax=axes[0][1])
    path = out / f"frame_{len(paths):04d}.png"
    figure.savefig(path, dpi=80)
    plt.close(figure)
    paths.append(path)
  return paths


def write_gif(frames: list[pathlib.Path], path: pathlib.Path, interval: int,
              slow_until: int) -> None:
  images = [Image.open(frame).convert("P") for frame in frames]
  durations = [interval * (SLOW_FACTOR if i < slow_until else 1) for i in range(len(images))]
  images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def main(argv):
  del argv
  if not FLAGS.records_path or not FLAGS.save_path:
    raise app.UsageError("--records_path and --save_path are required.")
  steps, names, masks = load_records(FLAGS.records_path)
  if not 0 <= FLAGS.layer_id < len(names):
    raise app.UsageError(f"--layer_id must be in [0, {len(names) - 1}] ({names}).")
  new_shape = tuple(int(v) for v in FLAGS.new_shape.split(",")) if FLAGS.new_shape else None
  name = names[FLAGS.layer_id]
  frames = render_frames(steps, name, masks[name], FLAGS.save_path, new_shape,
                         FLAGS.skip_mask)
  write_gif(frames, pathlib.Path(FLAGS.save_path) / GIF_NAME, FLAGS.interval,
            FLAGS.slow_until)
  print(f"Wrote {len(frames)} frames and {GIF_NAME} to {FLAGS.save_path}.")


def define_flags() -> None:
  """Defines the flags (only when run as a program, so the module imports cleanly)."""
  flags.DEFINE_string("records_path", "", "mask_records.npz written by the training script.")
  flags.DEFINE_string("save_path", "", "Folder for the PNG frames and the GIF.")
  flags.DEFINE_string("new_shape", "", "Shape 'rows,cols' to show the mask in (default: "
                      "inputs x outputs).")
  flags.DEFINE_integer("interval", 200, "Milliseconds per GIF frame.")
  flags.DEFINE_integer("layer_id", 0, "Index of the layer, in recording order.")
  flags.DEFINE_integer("skip_mask", 1, "Render every this many records.")
  flags.DEFINE_integer("slow_until", 0, "Frames before this one last 4x longer.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
