"""python -m jaxzoo export to StableHLO, a TF SavedModel and ONNX: each artifact, reloaded in its
own runtime in a fresh process that never imports jaxzoo (tests/export_runtime.py), gives
jaxzoo's logits on real photos (uint8 in) within 1e-4 of the logit scale with the same top-1,
at batch sizes 1 and 3 from one artifact.

The weights are a torchvision model's, randomized (``parity.randomize_``: every conv, linear and
BatchNorm, running statistics included) and saved as a .pth, exported with ``--weights``.
mobilenet_v3_small at its default 224 px is the quick check of every format; the other models
the export must show (resnet50, googlenet, efficientnet_b0, convnext_tiny) run in the slow set.
"""
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from conftest import _load_photos, assert_parity, fake_pretrained_file
from PIL import Image

from jaxzoo import export
from jaxzoo.__main__ import main
from jaxzoo.convert import parity
from jaxzoo.predict import Predictor

RUNTIME = os.path.join(os.path.dirname(__file__), "export_runtime.py")
SERVING_FORMATS = ("stablehlo", "savedmodel", "onnx")


def uint8_photos(size: int) -> np.ndarray:
    """The three real photos (cat, astronaut, coffee) resized to ``size``, uint8 NHWC."""
    return np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR))
                     for p in _load_photos()])


def random_torchvision_weights(name: str, folder) -> str:
    torch_model = parity.torchvision_model(name)
    parity.randomize_(torch_model, seed=0)
    path = os.path.join(folder, f"{name}_random.pth")
    torch.save(torch_model.state_dict(), path)
    return path


def jaxzoo_logits(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    """The reference: the model as jaxzoo runs it, on images normalized outside (``parity``)."""
    with jax.default_matmul_precision("highest"):
        return np.asarray(jax.jit(lambda v, x: predictor.model.apply(v, x, train=False))(
            predictor.variables, parity.normalize(images)))


def run_in_fresh_process(folder, images: np.ndarray, artifacts: dict) -> dict:
    """Each artifact's logits at batch 1 and 3, from tests/export_runtime.py in a new process."""
    np.save(os.path.join(folder, "images.npy"), images)
    out = os.path.join(folder, "logits.npz")
    result = subprocess.run(
        [sys.executable, RUNTIME, os.path.join(folder, "images.npy"), out,
         *[f"{fmt}={path}" for fmt, path in artifacts.items()]],
        capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as logits:
        return dict(logits)


def assert_same_logits(results: dict, fmt: str, reference: np.ndarray):
    assert results[f"{fmt}_1"].shape == (1, reference.shape[1])
    assert results[f"{fmt}_3"].shape == reference.shape
    assert results[f"{fmt}_3"].dtype == np.float32
    assert_parity(results[f"{fmt}_3"], reference, f"{fmt} logits, batch 3")
    assert_parity(results[f"{fmt}_1"], reference[:1], f"{fmt} logits, batch 1")


def export_all(name: str, folder) -> tuple[Predictor, dict]:
    """``name`` with random torchvision weights, exported in every serving format."""
    weights = random_torchvision_weights(name, folder)
    predictor = Predictor.from_weights(name, weights)
    artifacts = {fmt: export.export(predictor, fmt, os.path.join(folder, f"{name}.{fmt}")).path
                 for fmt in SERVING_FORMATS}
    return predictor, artifacts


# ----------------------------------------------------------------------- quick: every format


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """mobilenet_v3_small at 224 px: StableHLO for cpu, cuda and tpu through the command line,
    the SavedModel and ONNX through ``jaxzoo.export``; all three run in one fresh process."""
    folder = str(tmp_path_factory.mktemp("export"))
    name = "mobilenet_v3_small"
    weights = random_torchvision_weights(name, folder)
    predictor = Predictor.from_weights(name, weights)
    stablehlo = os.path.join(folder, "mobilenet.stablehlo")
    assert main(["export", "--weights", weights, "--model", name, "--format", "stablehlo",
                 "--platforms", "cpu,cuda,tpu", "--out", stablehlo]) == 0
    artifacts = {"stablehlo": stablehlo}
    for fmt in ("savedmodel", "onnx"):
        artifacts[fmt] = export.export(predictor, fmt, os.path.join(folder, f"mobilenet.{fmt}")
                                       ).path
    images = uint8_photos(predictor.image_size)
    results = run_in_fresh_process(folder, images, artifacts)
    return predictor, artifacts, jaxzoo_logits(predictor, images), results


def test_stablehlo_for_cpu_cuda_tpu_runs_on_the_cpu_with_jaxzoos_logits(mobilenet, capsys):
    predictor, artifacts, reference, results = mobilenet
    assert np.abs(reference[0] - reference[1]).max() > 0.01 * np.abs(reference).max()  # inputs matter
    assert_same_logits(results, "stablehlo", reference)
    with open(artifacts["stablehlo"], "rb") as f:
        exported = jax.export.deserialize(f.read())
    assert exported.platforms == ("cpu", "cuda", "tpu")
    (images,) = exported.in_avals
    assert str(images.shape[0]) == "batch" and images.shape[1:] == (224, 224, 3)
    assert images.dtype == np.uint8
    with open(export.class_names_path(artifacts["stablehlo"])) as f:
        names = json.load(f)
    assert [names[str(i)] for i in range(len(names))] == predictor.class_names
    assert predictor.class_names[0] == "tench"  # 1000 classes: ImageNet's names


def test_savedmodel_serving_default_gives_jaxzoos_logits(mobilenet):
    _, artifacts, reference, results = mobilenet
    assert_same_logits(results, "savedmodel", reference)
    assert os.path.isfile(os.path.join(artifacts["savedmodel"], "saved_model.pb"))
    assert os.path.isfile(export.class_names_path(artifacts["savedmodel"]))


def test_onnx_in_onnxruntime_gives_jaxzoos_logits(mobilenet):
    import onnx

    _, artifacts, reference, results = mobilenet
    assert_same_logits(results, "onnx", reference)
    graph = onnx.load(artifacts["onnx"]).graph  # one file: the weights are inside
    (images,) = graph.input
    assert images.name == "images"
    assert images.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = images.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [224, 224, 3]
    assert not os.path.exists(artifacts["onnx"] + ".data")


def test_gpu_and_tpu_get_xlas_own_convolutions(mobilenet):
    """Lowered for cuda and tpu, the depthwise convs are StableHLO convolutions with one feature
    group per channel (XLA's own op); for the CPU alone they are XLA:CPU's shifted
    multiply-adds, and no convolution has feature groups."""
    predictor, artifacts, _, _ = mobilenet
    with open(artifacts["stablehlo"], "rb") as f:
        multi = jax.export.deserialize(f.read()).mlir_module()
    cpu_only = export.export(predictor, "stablehlo", artifacts["stablehlo"] + ".cpu",
                             platforms=["cpu"])
    with open(cpu_only.path, "rb") as f:
        cpu = jax.export.deserialize(f.read()).mlir_module()

    def group_counts(module_text):
        return {int(g) for g in re.findall(r"feature_group_count = (\d+)", module_text)}

    kernels = jax.tree.leaves(predictor.variables["params"])
    depthwise = {k.shape[3] for k in kernels if k.ndim == 4 and k.shape[2] == 1 and k.shape[3] > 1}
    assert len(depthwise) > 3 and depthwise <= group_counts(multi)
    assert group_counts(cpu) == {1}


# ----------------------------------------------------------------------- errors


def test_a_missing_converter_names_the_extra_to_install(monkeypatch, tmp_path, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxscript" else find_spec(name, *a))
    code = main(["export", "--pretrained", "resnet18", "--format", "onnx",
                 "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert "onnxscript" in err and "pip install 'jaxzoo[onnx]'" in err
    assert not os.listdir(tmp_path)  # checked before any weights are looked for


def test_wrong_platforms_and_models_without_torchvision_counterpart_say_what_to_do(tmp_path):
    predictor = Predictor("inception10", {}, ["a", "b", "c"], 32)  # fails before any weight
    with pytest.raises(ValueError, match=r"unknown platform\(s\) gpu; .* cpu, cuda, rocm, tpu"):
        export.export(predictor, "stablehlo", str(tmp_path / "m"), platforms=["gpu"])
    with pytest.raises(ValueError, match="inception10 has no torchvision counterpart .* "
                                         "export it as stablehlo or savedmodel"):
        export.export(predictor, "onnx", str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match="--platforms is for stablehlo and savedmodel"):
        export.export(predictor, "onnx", str(tmp_path / "m.onnx"), platforms=["cpu"])
    assert not os.listdir(tmp_path)


# ----------------------------------------------------------------------- the models to show


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "googlenet", "efficientnet_b0", "convnext_tiny"])
def test_every_format_of_the_must_show_models_gives_jaxzoos_logits(name, tmp_path):
    predictor, artifacts = export_all(name, str(tmp_path))
    images = uint8_photos(predictor.image_size)
    reference = jaxzoo_logits(predictor, images)
    results = run_in_fresh_process(str(tmp_path), images, artifacts)
    for fmt in SERVING_FORMATS:
        assert_same_logits(results, fmt, reference)


def test_a_batch_polymorphic_cpu_export_takes_the_conv_that_needs_no_patches():
    """XLA:CPU's im2col for small maps is chosen by the size of its patches, which a symbolic
    batch leaves open: resnet50's and googlenet's CPU exports need the choice made without it."""
    from jaxzoo.models.lowering import formulation_for

    batch, = jax.export.symbolic_shape("batch")
    assert formulation_for((2, 7, 7, 512), (3, 3, 512, 512), 1) == "im2col"
    assert formulation_for((batch, 7, 7, 512), (3, 3, 512, 512), 1) == "native"


def test_pretrained_by_name_exports_torchvisions_file_back(tmp_path, monkeypatch, capsys):
    """--pretrained NAME:WEIGHTS reads torchvision's weights (faked offline: a randomized
    resnet18 in torch's cache under the catalog's file name) and the torch format writes them
    back unchanged, with the weights' own eval transform printed."""
    state = fake_pretrained_file(tmp_path, monkeypatch, "resnet18", "IMAGENET1K_V1", seed=2)

    out = tmp_path / "out" / "resnet18.pth"
    assert main(["export", "--pretrained", "resnet18:IMAGENET1K_V1", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "torchvision.models.resnet18(num_classes=1000)" in stdout
    assert "Resize(256), CenterCrop(224)" in stdout
    written = torch.load(out, weights_only=True)
    assert written.keys() == state.keys()
    for key, value in state.items():
        torch.testing.assert_close(written[key], value, rtol=0, atol=0, msg=key)
    with open(export.class_names_path(str(out))) as f:
        assert json.load(f)["0"] == "tench"


@pytest.mark.slow
def test_a_one_channel_model_takes_rgb_and_turns_it_gray_as_the_predictor_does(tmp_path):
    """inception_mnist (gray, 28 px): the artifact takes RGB uint8 like every other and applies
    the predictor's gray conversion (PIL's integer luma, ``pipeline.to_grayscale``) inside."""
    from jaxzoo.data._tf import tf
    from jaxzoo.data.pipeline import to_grayscale
    from jaxzoo.models.registry import create_model, init_variables

    model = create_model("inception_mnist", num_classes=10)
    variables = init_variables(model, 28, jax.random.PRNGKey(0))
    predictor = Predictor("inception_mnist", variables, [str(i) for i in range(10)], 28)
    assert predictor.channels == 1
    exported = export.export(predictor, "stablehlo", str(tmp_path / "mnist.stablehlo"))
    with open(exported.path, "rb") as f:
        artifact = jax.export.deserialize(f.read())
    assert artifact.in_avals[0].shape[1:] == (28, 28, 3)
    images = uint8_photos(28)
    gray = to_grayscale(tf.constant(images)).numpy()
    # One channel: ImageNet's three means and stds averaged (imagenet.GRAY_MEAN, GRAY_STD).
    mean, std = np.mean([0.485, 0.456, 0.406]), np.mean([0.229, 0.224, 0.225])
    normalized = ((gray.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        reference = np.asarray(model.apply(variables, normalized, train=False))
    assert_parity(np.asarray(artifact.call(images)), reference, "gray logits")
