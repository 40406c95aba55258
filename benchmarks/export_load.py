"""Size on disk and load + first-call time of each export format of one model.

    python benchmarks/export_load.py --model resnet50 [--out /tmp/export_load] [--threads 2]

Exports the model (random weights: the sizes and times do not depend on their values) as a
torchvision .pth, StableHLO (lowered for the CPU), a TF SavedModel and ONNX, then, for each, in
a fresh process: the time from the first import of its runtime to the logits of one 224 px image
(load, compile where the runtime compiles, run). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

# Each child: import the runtime, load the artifact, call it once on a uint8 image; prints seconds.
CHILD = {
    "torch": """
import time; t = time.perf_counter()
import torch, torchvision
torch.set_num_threads({threads})
model = torchvision.models.{builder}(weights=None)
model.load_state_dict(torch.load({path!r}, weights_only=True)); model.eval()
x = torch.zeros((1, 3, {size}, {size}))
with torch.no_grad(): model(x).numpy()
print(time.perf_counter() - t)
""",
    "stablehlo": """
import time; t = time.perf_counter()
import jax, numpy as np
exported = jax.export.deserialize(open({path!r}, 'rb').read())
np.asarray(exported.call(np.zeros((1, {size}, {size}, 3), np.uint8)))
print(time.perf_counter() - t)
""",
    "savedmodel": """
import time; t = time.perf_counter()
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({threads})
serve = tf.saved_model.load({path!r}).signatures['serving_default']
serve(images=tf.zeros((1, {size}, {size}, 3), tf.uint8))['logits'].numpy()
print(time.perf_counter() - t)
""",
    "onnx": """
import time; t = time.perf_counter()
import numpy as np, onnxruntime
options = onnxruntime.SessionOptions(); options.intra_op_num_threads = {threads}
session = onnxruntime.InferenceSession({path!r}, options, providers=['CPUExecutionProvider'])
session.run(None, {{'images': np.zeros((1, {size}, {size}, 3), np.uint8)}})
print(time.perf_counter() - t)
""",
}


def size_of(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--out", default=None, help="folder for the artifacts (default: a temp)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import jax

    from jaxzoo import export
    from jaxzoo.models import create_model, get_spec
    from jaxzoo.models.registry import init_variables
    from jaxzoo.predict import Predictor, imagenet_class_names

    spec = get_spec(args.model)
    size = spec.default_size
    variables = init_variables(create_model(args.model), spec.init_size, jax.random.PRNGKey(0))
    predictor = Predictor(args.model, variables, imagenet_class_names(), size)
    folder = args.out or tempfile.mkdtemp(prefix="export_load_")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
    print(f"| format | file | size (MB) | load + first call (s), batch 1, {args.threads} threads |")
    print("|---|---|---:|---:|")
    for fmt, suffix in (("torch", ".pth"), ("stablehlo", ".stablehlo"),
                        ("savedmodel", "_savedmodel"), ("onnx", ".onnx")):
        path = os.path.join(folder, args.model + suffix)
        export.export(predictor, fmt, path, platforms=["cpu"] if fmt in (
            "stablehlo", "savedmodel") else None)
        code = CHILD[fmt].format(path=path, size=size, threads=args.threads,
                                 builder=spec.torchvision)
        seconds = float(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                       capture_output=True, text=True).stdout.split()[-1])
        print(f"| {fmt} | {os.path.basename(path)} | {size_of(path) / 1e6:.1f} | "
              f"{seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
