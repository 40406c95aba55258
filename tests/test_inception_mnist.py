"""inception_mnist against the course's PyTorch code (the reference, copied below): logits,
flattened features (torch's NCHW order), train mode and gradients, structure, input sizes, and
its config."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import traverse_util
from torch import nn

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity
from jaxzoo.models.registry import variable_shapes

from conftest import assert_parity, compiled_apply, photo_batch

NAME = "inception_mnist"


# --- the course's code, as written (the reference) ------------------------------------------------

class InceptionA(nn.Module):
    def __init__(self, in_channels):
        super(InceptionA, self).__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=2)
        self.branch3x3_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch3x3_2 = nn.Conv2d(16, 24, kernel_size=3, padding=1)
        self.branch3x3_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)
        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_1(x)
        branch5x5 = self.branch5x5_2(branch5x5)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = self.branch3x3_2(branch3x3)
        branch3x3 = self.branch3x3_3(branch3x3)
        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(branch_pool)
        outputs = [branch1x1, branch5x5, branch3x3, branch_pool]
        return torch.cat(outputs, dim=1)


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(88, 20, kernel_size=5)
        self.incep1 = InceptionA(in_channels=10)
        self.incep2 = InceptionA(in_channels=20)
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(1408, 10)

    def forward(self, x):
        in_size = x.size(0)
        x = F.relu(self.mp(self.conv1(x)))
        x = self.incep1(x)
        x = F.relu(self.mp(self.conv2(x)))
        x = self.incep2(x)
        x = x.view(in_size, -1)
        x = self.fc(x)
        return x


# --- helpers ---------------------------------------------------------------------------------------

def _reference(seed):
    torch_model = Net()
    parity.randomize_(torch_model, seed=seed)  # N(0, 2 / fan_in) weights, U(-0.1, 0.1) biases
    return torch_model.eval()


def _to_flax(state, shapes):
    """torch state dict -> flax variables for the 28x28 model. (The generic converter builds its
    template at 32 pixels, which this network's classifier does not take.)"""
    flat = {}
    for (collection, *path), leaf in traverse_util.flatten_dict(shapes).items():
        value = state[convert.torch_key(collection, tuple(path), dotted_indices=False)].numpy()
        if path[-1] == "kernel":
            value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
        assert value.shape == leaf.shape, path
        flat[(collection, *path)] = jnp.asarray(value)
    return traverse_util.unflatten_dict(flat)


def _nchw(images):
    """NHWC one-channel numpy -> an NCHW tensor with plain NCHW strides. (A transposed NHWC array
    has the strides of channels_last too: torch then keeps that memory format through the convs,
    and the course's x.view(in_size, -1) refuses the result.)"""
    return torch.from_numpy(np.ascontiguousarray(images[..., 0])).unsqueeze(1)


def _gray_batch():
    """The photos (and noise images) of photo_batch at 28x28, averaged to one channel."""
    return np.ascontiguousarray(photo_batch(28).mean(-1, keepdims=True))


def _model():
    return jaxzoo.create_model(NAME, num_classes=10)


# --- parity ----------------------------------------------------------------------------------------

def test_logits_and_features_match_the_course_network_and_export_loads_strictly():
    torch_model = _reference(seed=31)
    state = torch_model.state_dict()
    model = _model()
    variables = _to_flax(state, variable_shapes(model, 28))
    images = _gray_batch()

    captured = {}
    hook = torch_model.fc.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    with torch.no_grad():
        theirs = torch_model(_nchw(images)).numpy()
    hook.remove()
    spread = np.abs(theirs - theirs.mean(0)).max() / np.abs(theirs).max()
    assert spread > 1e-2, f"logits hardly vary across inputs (spread {spread:.1e})"
    print(assert_parity(compiled_apply(model)(variables, images), theirs, "logits"))
    # The flattened features are torch's x.view(in_size, -1) of the NCHW map, channel-major.
    features = compiled_apply(model, "features")(variables, images)
    assert features.shape == (len(images), 1408)
    assert_parity(features, captured["x"].numpy(), "flattened features")

    exported = {k: torch.from_numpy(v) for k, v in convert.to_torch(NAME, variables).items()}
    fresh = Net()
    assert str(fresh.load_state_dict(exported, strict=True)) == "<All keys matched successfully>"
    for key, value in state.items():
        np.testing.assert_array_equal(fresh.state_dict()[key].numpy(), value.numpy(), key)


def test_train_mode_logits_and_gradients_match_the_course_network():
    """No BatchNorm and no dropout: train mode gives the eval logits and no statistics to update;
    the gradients of the cross-entropy loss equal torch's for every parameter."""
    torch_model = _reference(seed=32)
    model = _model()
    variables = _to_flax(torch_model.state_dict(), variable_shapes(model, 28))
    images = _gray_batch()
    labels = np.arange(len(images)) % 10

    torch_model.train()
    torch_logits = torch_model(_nchw(images))
    F.cross_entropy(torch_logits, torch.from_numpy(labels)).backward()
    ours, updates = compiled_apply(model, train=True)(variables, images)
    assert_parity(ours, torch_logits.detach().numpy(), "train-mode logits")
    assert not updates.get("batch_stats")

    def loss_fn(params):
        logits = model.apply({"params": params}, images, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grads = jax.jit(jax.grad(loss_fn))(variables["params"])
    ours_grads = convert.to_torch(NAME, {"params": grads})
    theirs_grads = {k: p.grad.numpy() for k, p in torch_model.named_parameters()}
    assert set(ours_grads) == set(theirs_grads) and len(theirs_grads) == 34
    for key, theirs in theirs_grads.items():
        scale = np.abs(theirs).max()
        assert scale > 0, key
        np.testing.assert_allclose(ours_grads[key], theirs, rtol=1e-4, atol=1e-4 * scale,
                                   err_msg=key)


# --- structure and inputs -------------------------------------------------------------------------

def test_structure_feature_maps_and_input_sizes():
    spec = jaxzoo.get_spec(NAME)
    assert spec.torchvision is None and spec.default_size == 28 and spec.min_size == 28
    model = _model()
    assert model.in_channels == 1
    shapes = variable_shapes(model, 28)
    assert (sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
            == sum(p.numel() for p in Net().parameters()) == 97298)
    assert "batch_stats" not in shapes

    x = jnp.zeros((2, 28, 28, 1))
    maps = jax.eval_shape(lambda v: model.apply(v, x, method="feature_maps"), shapes)
    # Stride 4 (two 2x2 pools); the unpadded 5x5 convs take 4 pixels each: 28 -> 12 -> 4.
    assert spec.feature_strides == (4,) and spec.feature_channels == (88,)
    assert [m.shape for m in maps] == [(2, 4, 4, 88)]

    # The classifier reads 1408 = 88 x 4 x 4 features: 32x32 inputs fail in torch too.
    with pytest.raises(RuntimeError):
        Net()(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="takes 28x28 images.*32x32 inputs give 5x5 maps"):
        jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 32, 32, 1))), shapes)
    with pytest.raises(ValueError, match="at least 28x28 pixels; got 27x27"):
        jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 27, 27, 1))), shapes)
    with pytest.raises(ValueError, match="1-channel images"):
        jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 28, 28, 3))), shapes)
    # The convolutional part takes larger inputs.
    big = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 44, 44, 1)),
                                               method="feature_maps"), shapes)
    assert big[0].shape == (1, 8, 8, 88)


def test_config_is_mnist_at_28_pixels():
    get_config = importlib.import_module("jaxzoo.configs.inception_mnist").get_config
    config = get_config()
    assert (config.model, config.dataset, config.image_size) == (NAME, "mnist", 28)
    assert config.augment is False  # no flips or crops of digits
    shapes_config = get_config("shapes")
    assert shapes_config.image_size == 28 and shapes_config.dataset.startswith("shapes")
    model = jaxzoo.create_model(NAME, num_classes=10, **shapes_config.model_kwargs)
    assert model.in_channels == 1  # the shapes are turned gray for it
    out = jax.eval_shape(lambda: model.init_with_output(
        jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))[0])
    assert out.shape == (1, 10)


# --- one channel, end to end ---------------------------------------------------------------------

def _bars(vertical: bool, rng) -> np.ndarray:
    """A 28x28 grayscale image of two bright bars, vertical or horizontal, on dark noise."""
    image = rng.integers(0, 60, (28, 28)).astype(np.uint8)
    for start in rng.choice(np.arange(2, 24, 4), 2, replace=False):
        if vertical:
            image[:, start:start + 3] = rng.integers(180, 256)
        else:
            image[start:start + 3, :] = rng.integers(180, 256)
    return image


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory):
    """inception_mnist (1 channel) trained on a folder of grayscale PNGs, as MNIST would be."""
    from PIL import Image

    from jaxzoo.configs.default import get_default_config
    from jaxzoo.train.loop import train_and_evaluate

    root = tmp_path_factory.mktemp("gray")
    rng = np.random.default_rng(0)
    for split, count in (("train", 48), ("val", 8)):
        for name in ("horizontal", "vertical"):
            (root / "data" / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(_bars(name == "vertical", rng), mode="L").save(
                    root / "data" / split / name / f"{i}.png")
    config = get_default_config(NAME, "cifar")
    config.update(dict(dataset=f"folder:{root / 'data'}", image_size=28, augment=False,
                       batch_size=16, num_epochs=3, learning_rate=3e-3, warmup_epochs=0.2,
                       checkpoints_to_keep=1, tensorboard=False))
    history = train_and_evaluate(config, str(root / "run"))
    return root / "run", root / "data", history


def test_trains_on_a_grayscale_folder_with_one_channel(gray_run):
    from jaxzoo.predict import Predictor

    workdir, data, history = gray_run
    assert history[-1]["val_accuracy"] == 1.0  # bars of two orientations: learnt in 18 steps
    predictor = Predictor.from_workdir(workdir)
    assert predictor.model.in_channels == predictor.channels == 1
    image = data / "val" / "vertical" / "0.png"
    assert predictor.preprocess(str(image)).shape == (28, 28, 1)
    assert predictor.predict(str(image)).label == "vertical"


def test_evaluate_prepares_images_with_the_predictors_transform(gray_run, tmp_path):
    """Evaluation reads the dataset with the predictor's own resize and interpolation (those of
    pretrained weights), so its accuracy is that of predicting each file."""
    from jaxzoo.evaluate import evaluate
    from jaxzoo.predict import Predictor

    workdir, data, _ = gray_run
    trained = Predictor.from_workdir(workdir)
    predictor = Predictor(NAME, trained.variables, trained.class_names, 28,
                          trained.run.model_kwargs, resize_size=40, interpolation="bicubic")
    summary = evaluate(str(tmp_path), dataset=f"folder:{data}", predictor=predictor)
    assert summary["transform"] == "Resize(40, bicubic) + CenterCrop(28)"
    results = list(predictor.predict_files([data / "val"], top_k=1))
    truth = np.array([predictor.class_names.index(r.path.split("/")[-2]) for r in results])
    assert summary["count"] == len(results) == 16
    assert summary["top1"] == float((np.array([r.indices[0] for r in results]) == truth).mean())
    # Probabilities, not only the top class: the same pixels reach the model both ways.
    from jaxzoo.data import get_datasets

    batches = get_datasets(f"folder:{data}", image_size=28, global_batch_size=16,
                           eval_batch_size=16, process_index=0, process_count=1,
                           augment=False, channels=1, eval_resize_size=40,
                           interpolation="bicubic").val_batches()
    images = np.concatenate([b["image"][b["mask"]] for b in batches])
    files = sorted((data / "val").glob("*/*.png"))
    np.testing.assert_allclose(images, np.stack([predictor.preprocess(str(f)) for f in files]),
                               atol=1e-6)
