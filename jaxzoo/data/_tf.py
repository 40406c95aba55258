"""TensorFlow for the input pipeline only: hidden from GPUs so that it never takes their memory.

Import ``tf`` from here (not ``tensorflow`` directly) inside jaxzoo.data, so the devices are hidden
before TensorFlow first touches them. JAX owns the accelerators; tf.data runs on the host CPU.
"""
import importlib.util

# Triton (which torchvision and torch._dynamo import) crashes the process with a segmentation
# fault when it is loaded after TensorFlow; loaded before, both work. Load it first when present.
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

import tensorflow as tf

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TensorFlow was initialized before jaxzoo.data was imported; too late to hide
    pass

__all__ = ["tf"]
