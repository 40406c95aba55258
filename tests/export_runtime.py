"""Run exported artifacts in their own runtimes, as a user without jaxzoo would: no jaxzoo import.

    python tests/export_runtime.py IMAGES.npy OUT.npz FORMAT=PATH [FORMAT=PATH ...]

IMAGES.npy holds uint8 images (n, size, size, 3); each artifact is called once on the first
image alone (batch 1) and once on the first three (batch 3); OUT.npz gets ``FORMAT_1`` and
``FORMAT_3`` (float32 logits).
"""
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def stablehlo(path):
    import jax

    with open(path, "rb") as f:
        exported = jax.export.deserialize(f.read())
    return lambda images: np.asarray(exported.call(images))


def savedmodel(path):
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    return lambda images: serve(images=tf.constant(images))["logits"].numpy()


def onnx(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda images: session.run(["logits"], {"images": images})[0]


def main(argv):
    images, out, *artifacts = argv
    images = np.load(images)
    results = {}
    for artifact in artifacts:
        fmt, path = artifact.split("=", 1)
        run = {"stablehlo": stablehlo, "savedmodel": savedmodel, "onnx": onnx}[fmt](path)
        results[f"{fmt}_1"] = run(images[:1])
        results[f"{fmt}_3"] = run(images[:3])
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1:])
