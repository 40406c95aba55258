"""Shared fixtures: CPU only, two torch threads, real photos from scikit-image, and one compiled
forward function per model (compiling is the slow part on XLA:CPU, so tests share them)."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import functools

import jax
import numpy as np
import pytest
import torch

from jaxzoo.convert import parity

torch.set_num_threads(2)


def _load_photos():
    from skimage import data

    return [data.chelsea(), data.astronaut(), data.coffee()]  # cat, person, coffee cup (RGB uint8)


@functools.lru_cache(maxsize=None)
def photo_batch(size: int, num_random: int = 2, seed: int = 0) -> np.ndarray:
    """Real photos resized to ``size`` plus ``num_random`` Gaussian images, normalized NHWC float32."""
    from PIL import Image

    photos = [np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR))
              for p in _load_photos()]
    real = parity.normalize(np.stack(photos))
    noise = np.random.default_rng(seed).standard_normal((num_random, size, size, 3))
    return np.concatenate([real, noise.astype(np.float32)])


@pytest.fixture(scope="session")
def photos():
    return photo_batch


def assert_parity(ours, theirs, what: str = "logits", tolerance: float = 1e-4):
    result = parity.compare_outputs(ours, theirs)
    assert result.relative_diff <= tolerance, f"{what}: {result}"
    if np.asarray(theirs).ndim == 2 and np.asarray(theirs).shape[-1] > 1:
        assert result.top1_agreement == 1.0, f"{what}: {result}"
    return result


@functools.lru_cache(maxsize=None)
def compiled_apply(model, method: str | None = None, train: bool = False):
    """One jitted ``model.apply`` per (model, method, train), shared by every test."""
    def apply(variables, x, rngs=None):
        kwargs = {"method": method} if method else {}
        if train:
            return model.apply(variables, x, train=True, mutable=["batch_stats"], rngs=rngs,
                               **kwargs)
        return model.apply(variables, x, train=False, **kwargs)

    return jax.jit(apply)


@pytest.fixture(autouse=True)
def _highest_matmul_precision():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="session", autouse=True)
def _folder_cache(tmp_path_factory):
    """Folder datasets keep their check's manifests in the session's temporary folder, not in
    ~/.cache (subprocesses inherit it)."""
    os.environ["JAXZOO_FOLDER_CACHE"] = str(tmp_path_factory.mktemp("folder_cache"))


@functools.lru_cache(maxsize=None)
def model_shapes(name: str, size: int = 32) -> dict:
    """The variable shapes of model ``name`` (default options) at ``size`` px, traced once."""
    from jaxzoo.models.registry import create_model, variable_shapes

    return variable_shapes(create_model(name), size)


def assert_feature_maps_match_spec(name: str, size: int = 64):
    """Trace ``name``'s ``feature_maps`` (default options) on a (2, size, size, 3) input and check
    them against its registry spec: one map at each of strides 4, 8, 16 and 32, with the spec's
    channels. Returns the model and the input's ``ShapeDtypeStruct`` for further checks."""
    import jax.numpy as jnp

    import jaxzoo

    spec = jaxzoo.get_spec(name)
    model = jaxzoo.create_model(name)
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    maps = jax.eval_shape(lambda v, x: model.apply(v, x, method="feature_maps"),
                          model_shapes(name), x)
    assert spec.feature_strides == (4, 8, 16, 32)
    assert [m.shape for m in maps] == [(2, size // s, size // s, c) for s, c in
                                       zip(spec.feature_strides, spec.feature_channels)]
    return model, x


def meta_torchvision_model(name: str, **kwargs):
    """torchvision's model on the meta device: parameter shapes without memory or init time."""
    import torchvision

    with torch.device("meta"):
        return getattr(torchvision.models, name)(weights=None, **kwargs)


def torch_state_shapes(variables, dotted_indices: bool = True) -> dict[str, tuple[int, ...]]:
    """The torch state-dict keys and shapes that ``variables`` (arrays or their
    ``jax.ShapeDtypeStruct``) convert to, ``num_batches_tracked`` included, as
    ``convert.to_torch`` writes them."""
    from flax import traverse_util

    from jaxzoo import convert

    out = {}
    for (collection, *path), leaf in traverse_util.flatten_dict(dict(variables)).items():
        key = convert.torch_key(collection, tuple(path), dotted_indices)
        shape = tuple(leaf.shape)
        if path[-1] == "kernel" and len(shape) == 4:  # HWIO -> OIHW
            shape = (shape[3], shape[2], shape[0], shape[1])
        elif path[-1] == "kernel" and len(shape) == 2:  # Dense (in, out) -> Linear (out, in)
            shape = shape[::-1]
        out[key] = shape
        if collection == "batch_stats" and path[-1] == "var":
            out[key[: -len("running_var")] + "num_batches_tracked"] = ()
    return out


def fake_pretrained_file(tmp_path, monkeypatch, model: str, weights: str = "DEFAULT",
                         seed: int = 0) -> dict:
    """torchvision's ``weights`` of ``model`` faked offline: a randomized torchvision model saved
    in a fresh torch cache ($TORCH_HOME, under the catalog's file name), converted into a fresh
    jaxzoo cache. Returns the state dict that was saved."""
    import torch

    from jaxzoo.convert import parity, weights_entry

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("JAXZOO_WEIGHTS_CACHE", str(tmp_path / "converted"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch_model = parity.torchvision_model(model)
    parity.randomize_(torch_model, seed=seed)
    state = torch_model.state_dict()
    torch.save(state, checkpoints / weights_entry(model, weights).file_name)
    return state
