"""Test-session set-up: two logical CPU devices, so MirroredStrategy tests can run.

Logical devices can only be configured before TensorFlow initialises its runtime,
hence here, before any test module runs TensorFlow code.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top

NUM_TEST_CPUS = 2

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_TEST_CPUS)
