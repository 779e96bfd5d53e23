"""Mask-record rendering: one PNG per record and an animated GIF."""

import numpy as np
from PIL import Image

from mnist import visualize_mask_records


def test_frames_and_gif(tmp_path):
  rng = np.random.default_rng(0)
  records = tmp_path / "mask_records.npz"
  masks = rng.random((3, 784, 30)) < 0.1
  np.savez(records, steps=np.array([10, 20, 30]), layer_names=np.array(["layer1"]),
           layer1=masks)
  steps, names, loaded = visualize_mask_records.load_records(str(records))
  assert names == ["layer1"] and loaded["layer1"].shape == (3, 784, 30)
  frames = visualize_mask_records.render_frames(steps, "layer1", loaded["layer1"],
                                                str(tmp_path / "out"), skip=2)
  assert [frame.name for frame in frames] == ["frame_0000.png", "frame_0001.png"]
  gif = tmp_path / "out" / "masks.gif"
  visualize_mask_records.write_gif(frames, gif, interval=100, slow_until=1)
  with Image.open(gif) as image:
    assert image.n_frames == 2
