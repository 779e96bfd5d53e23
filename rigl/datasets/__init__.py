"""Input pipelines of the training scripts, one module per data set.

`mnist` (MNIST and Fashion-MNIST from IDX files or tensorflow-datasets), `cifar`
(CIFAR-10/100) and `imagenet` (TFRecords, tensorflow-datasets or synthetic data), each
preprocessed as the original experiments were.
"""
