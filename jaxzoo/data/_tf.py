"""TensorFlow for the input pipeline only: hidden from GPUs so that it never takes their memory.

Import ``tf`` from here (not ``tensorflow`` directly) inside jaxzoo.data, so the devices are hidden
before TensorFlow first touches them. JAX owns the accelerators; tf.data runs on the host CPU.
"""
import tensorflow as tf

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TensorFlow was initialized before jaxzoo.data was imported; too late to hide
    pass

__all__ = ["tf"]
