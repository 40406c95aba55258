"""ConvNeXt against torchvision: the structure of every size (parameter count, state-dict keys
and shapes, feature maps; torchvision's models built on the meta device), eval-mode parity of
convnext_tiny on real photos with random weights, LayerNorm affine parameters and layer scales,
and stochastic depth: torchvision's per-block probabilities, its row mode, the "dropout" rng.

Converting layer_scale (a bare nn.Parameter, ``features.1.0.layer_scale``) needs a converter that
maps a flax parameter leaf outside kernel/scale/bias to the torch key of the same name."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from flax import linen as nn

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity
from jaxzoo.models import convnext, layers

from conftest import (assert_feature_maps_match_spec, assert_parity, meta_torchvision_model,
                      model_shapes, photo_batch, torch_state_shapes)

NAMES = ["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"]


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_keys_and_shapes_equal_torchvision(name):
    torch_model = meta_torchvision_model(name)
    expected = {k: tuple(v.shape) for k, v in torch_model.state_dict().items()}
    shapes = model_shapes(name)
    assert "batch_stats" not in shapes
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"])) == sum(
        p.numel() for p in torch_model.parameters())
    ours = torch_state_shapes(shapes)
    assert ours == expected
    # The spec's feature channels are the widths of torchvision's four stages.
    assert jaxzoo.get_spec(name).feature_channels == tuple(
        torch_model.features[i][-1].block[0].out_channels for i in (1, 3, 5, 7))


@pytest.mark.parametrize("name", NAMES)
def test_feature_maps_have_the_spec_channels_and_strides(name):
    spec = jaxzoo.get_spec(name)
    assert_feature_maps_match_spec(name)
    head = model_shapes(name)["params"]["classifier_2"]["kernel"]
    assert head.shape[0] == spec.feature_channels[-1]


def test_eval_logits_and_features_match_torchvision():
    """convnext_tiny with stochastic depth off on both sides, every LayerNorm's affine parameters
    and every layer scale randomized (their defaults, the identity and 1e-6, would hide mistakes);
    the variables also convert back to exactly the state dict they came from."""
    name = "convnext_tiny"
    torch_model = parity.torchvision_model(name, stochastic_depth_prob=0.0)
    parity.randomize_(torch_model, seed=1)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in torch_model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(module.bias.shape, generator=gen) * 0.4 - 0.2)
            if isinstance(module, torchvision.models.convnext.CNBlock):
                scale = module.layer_scale
                scale.copy_(torch.rand(scale.shape, generator=gen) * 0.5 + 0.5)
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    variables = convert.from_torch(name, torch_model.state_dict())
    back = convert.to_torch(name, variables)
    assert back.keys() == state.keys()
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)

    images = photo_batch(64)
    captured = {}
    hook = torch_model.classifier[2].register_forward_hook(
        lambda m, args, out: captured.update(x=args[0].numpy()))
    theirs = parity.torch_forward(torch_model, images)
    hook.remove()
    spread = np.abs(theirs - theirs.mean(0)).max() / np.abs(theirs).max()
    assert spread > 1e-2, f"logits hardly vary across inputs (spread {spread:.1e})"

    model = jaxzoo.create_model(name, stochastic_depth_prob=0.0)
    # One compile for both outputs (XLA merges the two identical trunks).
    ours, features = jax.jit(lambda v, x: (model.apply(v, x), model.apply(
        v, x, method="features")))(variables, images)
    print(name, assert_parity(ours, theirs, "logits"))
    assert_parity(features, captured["x"], "pooled, layer-normalized features")


@pytest.mark.parametrize("name", NAMES)
def test_stochastic_depth_grows_as_torchvisions(name):
    """Block k of n drops its branch with probability p * k / (n - 1), per sample ("row"); p is
    torchvision's default for each size (0.1, 0.4, 0.5, 0.5)."""
    from torchvision.ops import StochasticDepth

    theirs = [(m.p, m.mode) for m in meta_torchvision_model(name).modules()
              if isinstance(m, StochasticDepth)]
    ours = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, layers.StochasticDepth):
            ours.append((context.module.p, context.module.mode))
        return next_fun(*args, **kwargs)

    model = jaxzoo.create_model(name)
    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
    assert ours == theirs
    assert ours[0][0] == 0.0 and ours[-1][0] > 0.0


def test_stochastic_depth_drops_whole_rows_and_rescales_the_rest():
    x = jnp.ones((4000, 2, 2, 3))
    layer = layers.StochasticDepth(0.25, "row")
    out = np.asarray(layer.apply({}, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)}))
    per_row = out.reshape(4000, -1)
    assert set(np.unique(per_row)) == {0.0, np.float32(1 / 0.75)}
    assert (per_row == per_row[:, :1]).all()  # a row is kept or dropped whole
    assert abs((per_row[:, 0] == 0).mean() - 0.25) < 0.03
    other = layer.apply({}, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.array_equal(out, other)
    # Eval mode, or p = 0: the identity, with no rng needed.
    np.testing.assert_array_equal(layer.apply({}, x, train=False), x)
    np.testing.assert_array_equal(layers.StochasticDepth(0.0).apply({}, x, train=True), x)
    # "batch" drops the whole input or nothing; p = 1 drops everything (no division by zero).
    batch = layers.StochasticDepth(0.5, "batch").apply(
        {}, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert len(np.unique(np.asarray(batch))) == 1
    np.testing.assert_array_equal(layers.StochasticDepth(1.0).apply(
        {}, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)}), jnp.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        layers.StochasticDepth(1.5).apply({}, x, train=True)


def test_layer_scale_starts_at_1e6_in_torchvisions_shape():
    block = convnext.CNBlock(1e-6, 0.0, conv=convnext.layers.conv, norm=nn.LayerNorm,
                             dense=convnext.layers.dense)
    params = jax.jit(block.init, static_argnums=2)(
        jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 8)), False)["params"]
    np.testing.assert_array_equal(params["layer_scale"], np.full((8, 1, 1), 1e-6, np.float32))


def test_train_mode_draws_stochastic_depth_from_the_dropout_rng():
    """A small two-stage ConvNeXt in train mode: the dropped branches follow the "dropout" rng;
    eval mode drops nothing."""
    model = convnext.ConvNeXt(num_classes=3, block_setting=((8, 16, 1), (16, None, 3)),
                              stochastic_depth_prob=0.9, layer_scale=1.0)
    x = photo_batch(32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: (rng.standard_normal(s.shape) * 0.3).astype(np.float32),
                             shapes)

    @jax.jit
    def outputs(variables, x, key_a, key_b):
        train = functools.partial(model.apply, variables, x, train=True)
        return (train(rngs={"dropout": key_a}), train(rngs={"dropout": key_b}),
                model.apply(variables, x))

    a, b, evaluated = outputs(variables, x, jax.random.PRNGKey(1), jax.random.PRNGKey(2))
    again, _, _ = outputs(variables, x, jax.random.PRNGKey(1), jax.random.PRNGKey(3))
    assert not np.allclose(a, b) and not np.allclose(a, evaluated)
    np.testing.assert_array_equal(a, again)
    with pytest.raises(Exception, match="dropout"):
        jax.eval_shape(lambda: model.apply(variables, x, train=True))


def test_too_small_input_names_the_minimum():
    model = jaxzoo.create_model("convnext_tiny")
    with pytest.raises(ValueError, match="convnext_tiny needs inputs of at least 32x32 pixels"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 31, 40, 3)))
