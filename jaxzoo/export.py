"""A model out of jaxzoo: as a torchvision state dict, or as a serving artifact that runs without
jaxzoo (StableHLO through ``jax.export``, a TensorFlow SavedModel through ``jax2tf``, ONNX).

    predictor = Predictor.from_pretrained("resnet50")          # or from_workdir / from_weights
    exported = export(predictor, "stablehlo", "resnet50.stablehlo", platforms=["cpu", "cuda"])
    path, constructor = export_workdir("runs/resnet34", "resnet34_flowers.pth")   # torchvision

Every serving format keeps one contract: a batch of RGB uint8 images, NHWC, at the model's eval
size (``images``: ``(batch, size, size, 3)``, the batch dimension symbolic), normalized inside the
artifact as the trainer's uint8 path normalizes them (``jaxzoo.train.step.model_input``:
``imagenet.normalize``), turned gray first for one-channel models as the predictor does; float32
logits out (``logits``: ``(batch, num_classes)``). Resizing and cropping stay outside, as
the printed transform says. The class names are written beside the artifact
(``NAME.class_names.json``, ``{"0": name, ...}``).

- ``stablehlo``: ``jax.export`` serialized, lowered for the ``platforms`` asked (cpu, cuda, rocm,
  tpu); reload with ``jax.export.deserialize(data).call(images)``. GPUs and TPUs get XLA's own
  ops (the ``xla`` lowering); a CPU-only export keeps XLA:CPU's faster formulations.
- ``savedmodel``: ``jax2tf`` with native serialization (the same StableHLO inside an
  ``XlaCallModule`` op), weights as ``tf.Variable``s, a ``serving_default`` signature; reload with
  ``tf.saved_model.load(path).signatures["serving_default"](images=...)["logits"]``.
- ``onnx``: the torchvision counterpart with the converted weights, exported by torch's own ONNX
  exporter (``torch.onnx.export``, dynamo); run it with onnxruntime. The StableHLO inside
  jax2tf's SavedModel is an op tf2onnx cannot convert, and jax2onnx pins an orbax-checkpoint older
  than jaxzoo's; torchvision's network is the one whose logits jaxzoo's equal by construction.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import jax.numpy as jnp

from jaxzoo import imagenet
from jaxzoo.convert.torchvision import num_classes_of, save_torch, to_torch
from jaxzoo.models import create_model
from jaxzoo.models.registry import get_spec, list_models
from jaxzoo.predict import Predictor

FORMATS = ("torch", "stablehlo", "savedmodel", "onnx")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # jax.export's platform names
INPUT_NAME, OUTPUT_NAME = "images", "logits"

# What each format needs beyond jaxzoo's own dependencies: (modules, the extra that installs them).
_NEEDS = {"torch": (("torch", "torchvision"), "torch"),
          "savedmodel": (("tensorflow",), None),
          "onnx": (("torch", "torchvision", "onnx", "onnxscript"), "onnx")}


class MissingDependency(ImportError):
    """A format's converter is not installed; the message says which extra installs it."""


@dataclasses.dataclass
class Exported:
    """What ``export`` wrote."""

    format: str
    path: str
    class_names_path: str
    image_size: int
    num_classes: int
    platforms: tuple[str, ...] = ()      # stablehlo and savedmodel: what it was lowered for
    constructor: str | None = None       # torch and onnx: the torchvision call behind it


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def require(fmt: str) -> None:
    """Raise ``MissingDependency`` naming the extra to install when ``fmt``'s converter is
    missing."""
    import importlib.util

    modules, extra = _NEEDS.get(fmt, ((), None))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        install = f"pip install 'jaxzoo[{extra}]'" if extra else f"pip install {' '.join(missing)}"
        raise MissingDependency(f"exporting to {fmt} needs {', '.join(missing)}, which is not "
                                f"installed: {install}")


def check_platforms(platforms: Sequence[str] | None) -> tuple[str, ...]:
    """The platforms to lower for: those given (cpu, cuda, rocm, tpu), else this host's."""
    import jax

    if not platforms:
        backend = jax.default_backend()
        return ("cuda",) if backend == "gpu" else (backend,)
    platforms = tuple(dict.fromkeys(p.strip().lower() for p in platforms if p.strip()))
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        raise ValueError(f"unknown platform(s) {', '.join(unknown) or '(none)'}; give some of "
                         f"{', '.join(PLATFORMS)}, e.g. --platforms cpu,cuda")
    return platforms


def lowering_for_platforms(platforms: Sequence[str]) -> str:
    """XLA:CPU's formulations only for an artifact that runs on CPUs alone; anything lowered for
    a GPU or a TPU (alone or beside the CPU: one module serves them all) gets XLA's own ops."""
    return "cpu" if tuple(platforms) == ("cpu",) else "xla"


def class_names_path(artifact: str) -> str:
    """Where the class names of ``artifact`` go: beside it, ``model.pth`` ->
    ``model.class_names.json`` (a SavedModel directory ``sm/`` -> ``sm.class_names.json``)."""
    return os.path.splitext(os.path.normpath(artifact))[0] + ".class_names.json"


def _write_class_names(artifact: str, class_names: Sequence[str]) -> str:
    path = class_names_path(artifact)
    with open(path, "w") as f:
        json.dump({str(i): name for i, name in enumerate(class_names)}, f, indent=2)
    return path


def _prepare_out(out: str) -> str:
    out = os.path.abspath(os.path.normpath(out))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    return out


# ----------------------------------------------------------------------- the serving function

def to_gray(images):
    """uint8 RGB (..., 3) -> uint8 gray (..., 1) with PIL's ``convert("L")`` integer formula, as
    the predictor turns images gray for one-channel models (``jaxzoo.data.pipeline.to_grayscale``):
    (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    import jax.numpy as jnp

    rgb = images.astype(jnp.int32)
    luma = (rgb[..., 0:1] * 19595 + rgb[..., 1:2] * 38470 + rgb[..., 2:3] * 7471 + 32768) >> 16
    return luma.astype(jnp.uint8)


def serving_function(model, variables=None):
    """``serve(images) -> logits`` (or ``serve(variables, images)`` when ``variables`` is None):
    uint8 RGB NHWC in, normalized here as the trainer's uint8 path does
    (``imagenet.normalize``), float32 logits of the model in inference mode out."""
    gray = model.in_channels == 1

    def serve_with(variables, images):
        if images.dtype != jnp.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"the exported model takes uint8 RGB images (batch, height, width, "
                             f"3); got {images.dtype} {images.shape}")
        images = to_gray(images) if gray else images
        logits = model.apply(variables, imagenet.normalize(images), train=False)
        return logits.astype(jnp.float32)

    if variables is None:
        return serve_with
    return lambda images: serve_with(variables, images)


def _serving_model(predictor, platforms: Sequence[str]):
    """The predictor's network rebuilt with the lowering for ``platforms``, and its variables."""
    model = create_model(predictor.model_name, num_classes=len(predictor.class_names),
                         lowering=lowering_for_platforms(platforms), **predictor.model_kwargs)
    return model, predictor.variables


# ----------------------------------------------------------------------- formats

def export_stablehlo(predictor, out: str, platforms: Sequence[str] | None = None) -> Exported:
    """``jax.export``'s serialized module of ``serving_function`` for ``platforms``, the batch
    dimension symbolic, the weights inside as constants."""
    import jax
    import jax.numpy as jnp

    platforms = check_platforms(platforms)
    model, variables = _serving_model(predictor, platforms)
    batch, = jax.export.symbolic_shape("batch")
    size = predictor.image_size
    exported = jax.export.export(jax.jit(serving_function(model, variables)),
                                 platforms=platforms)(
        jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8))
    out = _prepare_out(out)
    with open(out, "wb") as f:
        f.write(exported.serialize())
    return Exported("stablehlo", out, _write_class_names(out, predictor.class_names), size,
                    len(predictor.class_names), platforms)


def export_savedmodel(predictor, out: str, platforms: Sequence[str] | None = None) -> Exported:
    """A TF SavedModel whose ``serving_default`` signature runs ``serving_function`` through
    ``jax2tf`` (native serialization for ``platforms``); the weights are ``tf.Variable``s, as
    jax2tf's guide recommends, so the graph does not carry them as constants."""
    require("savedmodel")
    import jax
    import numpy as np
    import tensorflow as tf
    from jax.experimental import jax2tf

    platforms = check_platforms(platforms)
    model, variables = _serving_model(predictor, platforms)
    size = predictor.image_size
    serve = jax2tf.convert(serving_function(model), with_gradient=False,
                           polymorphic_shapes=[None, f"(batch, {size}, {size}, 3)"],
                           native_serialization_platforms=platforms)
    module = tf.Module()
    module.variables_tree = tf.nest.map_structure(
        lambda v: tf.Variable(v, trainable=False), jax.tree.map(np.asarray, variables))

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, size, size, 3], tf.uint8, name=INPUT_NAME)])
    def serving_default(images):
        return {OUTPUT_NAME: serve(module.variables_tree, images)}

    module.serving_default = serving_default
    out = _prepare_out(out)
    tf.saved_model.save(module, out, signatures={"serving_default": serving_default})
    return Exported("savedmodel", out, _write_class_names(out, predictor.class_names), size,
                    len(predictor.class_names), platforms)


def _torchvision_counterpart(predictor, fmt: str) -> tuple[str, dict, str]:
    """The torchvision builder, its arguments and the constructor call for ``predictor``'s model;
    a clear error for models torchvision does not have."""
    spec = get_spec(predictor.model_name)
    if spec.torchvision is None:
        counterparts = [n for n in list_models() if get_spec(n).torchvision]
        other = ("export it as stablehlo or savedmodel" if fmt == "onnx" else
                 "use it from jaxzoo (python -m jaxzoo predict), or export it as stablehlo or "
                 "savedmodel")
        raise ValueError(f"{predictor.model_name} has no torchvision counterpart to export "
                         f"{'through' if fmt == 'onnx' else 'to'} ({fmt} export works for "
                         f"{', '.join(counterparts)}); {other}")
    kwargs = {"num_classes": num_classes_of(predictor.model_name, predictor.variables),
              **torchvision_kwargs(predictor.model_name, predictor.model_kwargs)}
    if kwargs.pop("in_channels", 3) != 3:
        raise ValueError(f"{predictor.model_name} with in_channels=1 has no torchvision "
                         f"counterpart (torchvision's models take RGB); export it as stablehlo "
                         f"or savedmodel")
    constructor = f"torchvision.models.{spec.torchvision}(" + ", ".join(
        f"{k}={v!r}" for k, v in kwargs.items()) + ")"
    return spec.torchvision, kwargs, constructor


def torchvision_kwargs(name: str, model_kwargs: dict) -> dict:
    """The torchvision builder's arguments for a jaxzoo model built with ``model_kwargs``
    (the two share argument names: ``aux_logits``, ``dropout``, ``width_mult``, ...)."""
    return {**get_spec(name).torch_kwargs, **model_kwargs}


def export_torch(predictor, out: str) -> Exported:
    """The predictor's weights as a ``.pth`` state dict of its torchvision counterpart, checked
    to load with ``strict=True`` (when torchvision is installed) before it is written."""
    builder, kwargs, constructor = _torchvision_counterpart(predictor, "torch")
    state = to_torch(predictor.model_name, predictor.variables)
    _check_loads(builder, kwargs, state, constructor)
    out = _prepare_out(out)
    save_torch(state, out)
    return Exported("torch", out, _write_class_names(out, predictor.class_names),
                    predictor.image_size, len(predictor.class_names), constructor=constructor)


def export_onnx(predictor, out: str) -> Exported:
    """The torchvision counterpart with the predictor's weights, behind the same uint8 contract,
    exported by ``torch.onnx.export`` (dynamo) with a symbolic batch dimension, in one file."""
    require("onnx")
    import torch
    import torchvision

    builder, kwargs, constructor = _torchvision_counterpart(predictor, "onnx")
    state = to_torch(predictor.model_name, predictor.variables)
    network = getattr(torchvision.models, builder)(weights=None, **kwargs)
    network.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)

    class Serve(torch.nn.Module):
        """uint8 NHWC RGB -> torchvision's NCHW normalized input -> logits."""

        def __init__(self):
            super().__init__()
            self.network = network
            scale = torch.tensor(255.0)
            self.register_buffer("mean", torch.tensor(imagenet.MEAN).view(1, 3, 1, 1) * scale)
            self.register_buffer("std", torch.tensor(imagenet.STD).view(1, 3, 1, 1) * scale)

        def forward(self, images):
            x = images.permute(0, 3, 1, 2).to(torch.float32)
            return self.network((x - self.mean) / self.std)

    size = predictor.image_size
    # An example batch of 2: torch.export specializes a dimension of size 1.
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    out = _prepare_out(out)
    torch.onnx.export(Serve().eval(), (example,), out, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], dynamo=True, external_data=False,
                      dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}},
                      verbose=False)
    return Exported("onnx", out, _write_class_names(out, predictor.class_names), size,
                    len(predictor.class_names), constructor=constructor)


def export(predictor, fmt: str, out: str, platforms: Sequence[str] | None = None) -> Exported:
    """Write ``predictor``'s model (``jaxzoo.Predictor``: from a workdir, converted weights or
    torchvision's pretrained weights) as ``fmt`` to ``out``; ``platforms`` for stablehlo and
    savedmodel (default: this host's)."""
    check_format(fmt)
    if platforms and fmt in ("torch", "onnx"):
        raise ValueError(f"--platforms is for stablehlo and savedmodel; a {fmt} export runs "
                         f"wherever its runtime does")
    if fmt == "torch":
        return export_torch(predictor, out)
    if fmt == "stablehlo":
        return export_stablehlo(predictor, out, platforms)
    if fmt == "savedmodel":
        return export_savedmodel(predictor, out, platforms)
    return export_onnx(predictor, out)


def export_workdir(workdir: str, out: str, step: int | None = None) -> tuple[str, str]:
    """Write the best checkpoint of ``workdir`` (or ``step``) as a ``.pth`` state dict of its
    torchvision counterpart, and its class names beside it (``class_names_path``); returns
    ``(path, constructor)``, the torchvision call that builds the model the file loads into."""
    exported = export_torch(Predictor.from_workdir(workdir, step), out)
    return exported.path, exported.constructor


def _check_loads(builder: str, kwargs: dict, state: dict, constructor: str) -> None:
    try:
        import torch
        import torchvision
    except ImportError:
        return
    try:
        model = getattr(torchvision.models, builder)(weights=None, **kwargs)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"the exported state dict does not load into {constructor}: "
                         f"{str(e).strip()}") from e
