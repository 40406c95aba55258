"""inception10, the small CIFAR-10 Inception of the TensorFlow 2 tutorial: structure, parameter
count, numerics against a PyTorch version of the same network, learning, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import linen as nn

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity

from conftest import assert_parity, compiled_apply, photo_batch


def _torch_inception10(num_blocks=2, num_classes=10, init_ch=16):
    """The tutorial's network in PyTorch, with the attribute names jaxzoo exports."""
    from torch import nn as tnn

    class ConvBNReLU(tnn.Module):
        def __init__(self, cin, cout, k, stride=1):
            super().__init__()
            self.conv = tnn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False)
            self.bn = tnn.BatchNorm2d(cout)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)))

    class InceptionBlock(tnn.Module):
        def __init__(self, cin, ch, stride):
            super().__init__()
            self.branch1 = ConvBNReLU(cin, ch, 1, stride)
            self.branch2 = tnn.Sequential(ConvBNReLU(cin, ch, 1, stride), ConvBNReLU(ch, ch, 3))
            self.branch3 = tnn.Sequential(ConvBNReLU(cin, ch, 1, stride), ConvBNReLU(ch, ch, 5))
            self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, 1, 1), ConvBNReLU(cin, ch, 1, stride))

        def forward(self, x):
            return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x),
                              self.branch4(x)], 1)

    class Inception10(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = ConvBNReLU(3, init_ch, 3)
            blocks, cin, ch = [], init_ch, init_ch
            for _ in range(num_blocks):
                blocks += [InceptionBlock(cin, ch, 2), InceptionBlock(4 * ch, ch, 1)]
                cin, ch = 4 * ch, 2 * ch
            self.blocks = tnn.Sequential(*blocks)
            self.fc = tnn.Linear(cin, num_classes)

        def forward(self, x):
            return self.fc(self.blocks(self.conv1(x)).mean((2, 3)))

    return Inception10().eval()


def _params(model, size=32):
    x = jnp.zeros((1, size, size, 3))
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))["params"]


def _count(tree) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


def test_parameter_count_follows_from_the_block_structure():
    """Counted layer by layer: a k x k conv has k*k*cin*cout weights (no bias: BatchNorm follows),
    a BatchNorm 2*cout, the classifier (cin + 1) * classes. The Keras model of the tutorial,
    Inception10(num_blocks=2, num_classes=10), has 120,234 trainable parameters: the same plus
    the bias Keras' Conv2D adds to each conv output channel."""
    def conv_bn(k, cin, cout):
        return k * k * cin * cout + 2 * cout

    def block(cin, ch):
        return (conv_bn(1, cin, ch) + conv_bn(1, cin, ch) + conv_bn(3, ch, ch)
                + conv_bn(1, cin, ch) + conv_bn(5, ch, ch) + conv_bn(1, cin, ch))

    def expected(num_blocks, init_ch, classes):
        total, cin, ch = conv_bn(3, 3, init_ch), init_ch, init_ch
        for _ in range(num_blocks):
            total += block(cin, ch) + block(4 * ch, ch)
            cin, ch = 4 * ch, 2 * ch
        return total + (cin + 1) * classes

    for num_blocks, init_ch, classes in [(2, 16, 10), (3, 16, 10), (2, 8, 100)]:
        model = jaxzoo.create_model("inception10", num_classes=classes, num_blocks=num_blocks,
                                    init_ch=init_ch)
        assert _count(_params(model)) == expected(num_blocks, init_ch, classes)

    ours = _count(_params(jaxzoo.create_model("inception10", num_classes=10)))
    conv_channels = 16 + 2 * (16 * 6) + 2 * (32 * 6)  # stem + 6 convs per Inception block
    assert ours + conv_channels == 120_234
    assert ours == sum(p.numel() for p in _torch_inception10().parameters())


def test_shapes_halve_per_block_and_channels_double():
    model = jaxzoo.create_model("inception10", num_classes=10)
    x = jnp.zeros((3, 32, 32, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    (logits, state) = jax.eval_shape(lambda v: model.apply(
        v, x, capture_intermediates=lambda m, _: isinstance(m, nn.Module) and
        m.name is not None and m.name.startswith(("conv1", "blocks_")), mutable=["intermediates"]),
        variables)
    out = {k: v["__call__"][0].shape for k, v in state["intermediates"].items()}
    assert out == {"conv1": (3, 32, 32, 16),
                   "blocks_0": (3, 16, 16, 64), "blocks_1": (3, 16, 16, 64),
                   "blocks_2": (3, 8, 8, 128), "blocks_3": (3, 8, 8, 128)}
    assert logits.shape == (3, 10)
    features = jax.eval_shape(lambda v: model.apply(v, x, method="features"), variables)
    assert features.shape == (3, 128)

    deeper = jaxzoo.create_model("inception10", num_blocks=3)
    assert deeper.min_size == 8
    assert jax.eval_shape(lambda: deeper.init_with_output(
        jax.random.PRNGKey(0), x, method="features")[0]).shape == (3, 256)


def test_create_model_default_classes_and_registry_entry():
    spec = jaxzoo.get_spec("inception10")
    assert spec.torchvision is None and spec.default_size == 32 and spec.min_size == 4
    params = _params(jaxzoo.create_model("inception10"))  # create_model's default: 1000 classes
    assert params["fc"]["kernel"].shape == (128, 1000)


def test_matches_the_pytorch_network_and_converts_both_ways():
    torch_model = _torch_inception10()
    parity.randomize_(torch_model, seed=7)
    variables = convert.from_torch("inception10", torch_model.state_dict())
    model = jaxzoo.create_model("inception10", num_classes=10)
    images = photo_batch(32)
    assert_parity(compiled_apply(model)(variables, images),
                  parity.torch_forward(torch_model, images), "inception10 logits")

    exported = {k: torch.from_numpy(v)
                for k, v in convert.to_torch("inception10", variables).items()}
    fresh = _torch_inception10()
    assert str(fresh.load_state_dict(exported, strict=True)) == "<All keys matched successfully>"


def test_learns_a_tiny_batch():
    """A few Adam steps in train mode drive the loss on 16 labelled images well down."""
    model = jaxzoo.create_model("inception10", num_classes=10)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.standard_normal((16, 16, 16, 3)), jnp.float32)
    labels = jnp.asarray(np.arange(16) % 10)
    # Start from PyTorch's initialization: XLA:CPU takes longer to compile jaxzoo's random
    # initializers (threefry) than to compile the train step.
    torch.manual_seed(0)
    variables = convert.from_torch("inception10", _torch_inception10().state_dict())
    tx = optax.adam(1e-2)

    def loss_fn(params, batch_stats):
        logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                      train=True, mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, updates["batch_stats"]

    @jax.jit
    def step(params, batch_stats, opt_state):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)
    losses = []
    for _ in range(25):
        params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state)
        losses.append(float(loss))
    assert losses[0] > 0.8 * np.log(10)  # starts near chance
    assert losses[-1] < 0.2 * losses[0], losses
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), variables["batch_stats"],
                           batch_stats)
    assert all(jax.tree.leaves(changed))  # every BatchNorm updated its running statistics


@pytest.mark.parametrize("num_blocks, size, minimum", [(2, 3, 4), (3, 7, 8)])
def test_too_small_input_names_the_minimum(num_blocks, size, minimum):
    model = jaxzoo.create_model("inception10", num_blocks=num_blocks)
    with pytest.raises(ValueError, match=f"inception10 needs inputs of at least "
                                         f"{minimum}x{minimum} pixels; got {size}x{size}"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))
    # The minimum itself is accepted.
    shapes = jax.eval_shape(lambda: model.init_with_output(
        jax.random.PRNGKey(0), jnp.zeros((1, minimum, minimum, 3)))[0])
    assert shapes.shape == (1, 1000)


def test_every_batchnorm_synchronizes_over_bn_axis_name():
    model = jaxzoo.create_model("inception10", bn_axis_name="batch")
    x = jnp.zeros((2, 32, 32, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]),
                           axis_env=[("batch", 2)])(variables, x)
    num_norms = len(jax.tree.leaves(variables["batch_stats"])) // 2
    assert num_norms == 1 + 4 * 6
    assert sum(e.primitive.name == "psum" for e in jaxpr.jaxpr.eqns) == 2 * num_norms
