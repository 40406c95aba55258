"""AlexNet, VGG, SqueezeNet and DenseNet against torchvision.

Every size: parameter count, state-dict keys and shapes, feature-map shapes and the smallest
input, all from shapes alone (jax.eval_shape, torchvision on the meta device). One or two sizes
per family: logits, pooled features and feature maps in eval mode on real photos with random
weights and randomized BatchNorm statistics, the weights' round trip, and train-mode BatchNorm.
"""
import collections

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from flax import traverse_util

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity
from jaxzoo.convert.torchvision import torch_key
from jaxzoo.models.registry import variable_shapes

from conftest import assert_parity, compiled_apply, photo_batch

VGGS = [f"vgg{depth}{bn}" for depth in (11, 13, 16, 19) for bn in ("", "_bn")]
DENSENETS = ["densenet121", "densenet161", "densenet169", "densenet201"]
NAMES = ["alexnet", *VGGS, "squeezenet1_0", "squeezenet1_1", *DENSENETS]
MIN_SIZES = {"alexnet": 63, **{n: 32 for n in VGGS}, "squeezenet1_0": 21, "squeezenet1_1": 17,
             **{n: 29 for n in DENSENETS}}
SIZE = 64  # the parity input: small, yet VGG's and DenseNet's stride-32 maps keep 2x2 pixels
# SqueezeNet: sizes where every ceil-mode max-pool (all three for these) has a window hanging over
# the edge; at 64 pixels squeezenet1_1's pools all divide evenly and ceil_mode would go unseen.
PARITY_SIZE = {"squeezenet1_0": 70, "squeezenet1_1": 66}


def _meta_torchvision(name, **kwargs):
    """torchvision's model (weights=None) on the meta device: shapes without memory or init."""
    with torch.device("meta"):
        return getattr(torchvision.models, name)(weights=None, **kwargs).eval()


def _torch_layout(path, shape):
    if path[-1] == "kernel" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])  # HWIO -> OIHW
    if path[-1] == "kernel" and len(shape) == 2:
        return shape[::-1]
    return tuple(shape)


def _hook_stride_maps(torch_model):
    """Forward hooks that record, in ``maps[stride]``, the last output of torchvision's
    ``features`` at each stride (DenseNet: its dense blocks but the last, and ReLU(norm5)).
    Returns the dict and the hook handles."""
    maps, handles = {}, []

    def record(stride, fn=lambda t: t):
        return lambda module, args, out: maps.__setitem__(stride, fn(out))

    if isinstance(torch_model, torchvision.models.DenseNet):
        for i in range(3):
            handles.append(torch_model.features.get_submodule(f"denseblock{i + 1}")
                           .register_forward_hook(record(4 * 2**i)))
        handles.append(torch_model.features.norm5.register_forward_hook(
            record(32, torch.nn.functional.relu)))
        return maps, handles
    stride = 1
    for module in torch_model.features:
        step = getattr(module, "stride", 1)
        stride *= step[0] if isinstance(step, tuple) else step
        handles.append(module.register_forward_hook(record(stride)))
    return maps, handles


# --- every size, from shapes ------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_structure_matches_torchvision(name):
    """Parameter count, state-dict keys and shapes, smallest input, feature-map shapes."""
    spec = jaxzoo.get_spec(name)
    assert spec.torchvision == name and spec.min_size == MIN_SIZES[name]
    model = jaxzoo.create_model(name)
    torch_model = _meta_torchvision(name)

    shapes = variable_shapes(model, spec.min_size)  # the smallest input goes through...
    ours = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))
    assert ours == sum(p.numel() for p in torch_model.parameters())
    converted = {torch_key(collection, tuple(path)): _torch_layout(path, leaf.shape)
                 for (collection, *path), leaf in traverse_util.flatten_dict(shapes).items()}
    expected = {k: tuple(v.shape) for k, v in torch_model.state_dict().items()
                if not k.endswith("num_batches_tracked")}
    assert converted == expected
    assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
    for head in spec.head:
        assert f"{head}.weight" in expected
    assert expected[f"{spec.head[0]}.weight"][0] == 1000  # head[0] is the final classifier
    torch_model.get_submodule(spec.features_at)

    # ...one pixel less does not, here as in torchvision.
    small = spec.min_size - 1
    with pytest.raises(ValueError, match=f"needs inputs of at least {spec.min_size}x"):
        variable_shapes(model, small)
    with pytest.raises(RuntimeError):
        torch_model(torch.empty(1, 3, small, small, device="meta"))

    # feature_maps: the spec's channels, and torch's shapes at each stride (at 224 pixels).
    maps, handles = _hook_stride_maps(torch_model)
    torch_model(torch.empty(1, 3, 224, 224, device="meta"))
    for handle in handles:
        handle.remove()
    x = jnp.zeros((1, 224, 224, 3))
    ours_maps = jax.eval_shape(lambda v: model.apply(v, x, method="feature_maps"), shapes)
    assert [m.shape[-1] for m in ours_maps] == list(spec.feature_channels)
    theirs = [maps[s] for s in spec.feature_strides]
    assert [m.shape for m in ours_maps] == [(n, h, w, c) for n, c, h, w in
                                            (t.shape for t in theirs)]
    assert spec.feature_strides == tuple(s for s in (4, 8, 16, 32) if s in maps)


# --- parity with torchvision ------------------------------------------------------------------

def _parity(name, seed, **torch_kwargs):
    """Randomized torchvision model (eval mode), its variables, and the eval-mode comparison of
    logits, pooled features and feature maps on real photos; the weights' round trip."""
    spec = jaxzoo.get_spec(name)
    torch_model = parity.torchvision_model(name, **torch_kwargs)
    parity.randomize_(torch_model, seed)
    variables = convert.from_torch(name, torch_model.state_dict())
    model = jaxzoo.create_model(name)
    images = photo_batch(PARITY_SIZE.get(name, SIZE))

    captured = {}
    maps, handles = _hook_stride_maps(torch_model)
    handles.append(torch_model.get_submodule(spec.features_at).register_forward_hook(
        lambda module, args, out: captured.update(x=args[0].detach().numpy())))
    theirs = parity.torch_forward(torch_model, images)
    for handle in handles:
        handle.remove()

    spread = np.abs(theirs - theirs.mean(0)).max() / np.abs(theirs).max()
    assert spread > 1e-2, f"logits hardly vary across inputs (spread {spread:.1e})"
    result = assert_parity(compiled_apply(model)(variables, images), theirs, f"{name} logits")
    print(f"{name}: {result}")

    if name != "densenet121":  # see test_densenet_options_train_mode_and_feature_maps
        features = captured["x"]
        if features.ndim == 4:  # SqueezeNet: the classifier takes the map; ours is its mean
            features = features.mean(axis=(2, 3))
        assert_parity(compiled_apply(model, "features")(variables, images), features,
                      "pooled features")
        ours_maps = compiled_apply(model, "feature_maps")(variables, images)
        assert len(ours_maps) == len(spec.feature_strides)
        for ours, stride in zip(ours_maps, spec.feature_strides):
            assert_parity(ours, maps[stride].detach().numpy().transpose(0, 2, 3, 1),
                          f"feature map at stride {stride}")

    # Round trip: exported variables load strictly into torchvision and give the same tensors.
    exported = convert.to_torch(name, variables)
    state = torch_model.state_dict()
    assert exported.keys() == state.keys()
    for key, value in state.items():
        value = value.numpy()
        assert exported[key].dtype == value.dtype and np.array_equal(exported[key], value), key
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()},
                                strict=True)
    return torch_model, variables, images


@pytest.mark.parametrize("name", ["alexnet", "squeezenet1_0", "squeezenet1_1", "densenet121"])
def test_eval_parity_and_round_trip(name):
    torch_model, variables, _ = _parity(name, seed=11)  # asserts logits, features, maps
    assert set(convert.to_torch(name, variables)) == set(torch_model.state_dict())


def test_vgg_bn_eval_and_train_mode_parity():
    """vgg11_bn in eval mode, then one train-mode pass (dropout off on both sides): the same
    logits (batch statistics) and the same running statistics as torch (unbiased variance,
    momentum 0.1)."""
    name = "vgg11_bn"
    torch_model, variables, images = _parity(name, seed=12, dropout=0.0)
    torch_model.train()
    theirs = parity.torch_forward(torch_model, images)
    model = jaxzoo.create_model(name, dropout=0.0)
    ours, updates = compiled_apply(model, train=True)(variables, images)
    assert_parity(ours, theirs, "train-mode logits")
    _assert_running_statistics(name, variables, updates, torch_model, num_norms=8)


def _assert_running_statistics(name, variables, updates, torch_model, num_norms):
    before = convert.to_torch(name, variables)
    got = convert.to_torch(name, {"params": variables["params"], **updates})
    expected = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    stats_keys = [k for k in expected if k.endswith(("running_mean", "running_var"))]
    assert len(stats_keys) == 2 * num_norms
    for key in stats_keys:
        assert not np.allclose(before[key], expected[key]), f"{key} did not move"
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)


# --- DenseNet's options, on a small DenseNet ----------------------------------------------------

TINY_DENSENET = {"growth_rate": 8, "block_config": (2, 3, 2, 2), "num_init_features": 16,
                 "bn_size": 2}


def test_densenet_options_train_mode_and_feature_maps():
    """torchvision's DenseNet class with small options (growth rate, blocks, stem width,
    bottleneck) through the densenet121 builder: eval-mode logits, pooled features and feature
    maps, and one train-mode pass with its running statistics."""
    name = "densenet121"
    torch_model = torchvision.models.DenseNet(num_classes=10, **TINY_DENSENET).eval()
    parity.randomize_(torch_model, seed=13)
    variables = convert.from_torch(name, torch_model.state_dict(), **TINY_DENSENET)
    model = jaxzoo.create_model(name, num_classes=10, **TINY_DENSENET)
    images = photo_batch(SIZE)

    captured = {}
    maps, handles = _hook_stride_maps(torch_model)
    handles.append(torch_model.classifier.register_forward_hook(
        lambda module, args, out: captured.update(x=args[0].detach().numpy())))
    assert_parity(compiled_apply(model)(variables, images),
                  parity.torch_forward(torch_model, images), "logits")
    for handle in handles:
        handle.remove()
    assert_parity(compiled_apply(model, "features")(variables, images), captured["x"],
                  "pooled features")
    ours_maps = compiled_apply(model, "feature_maps")(variables, images)
    # 16+2*8, 32/2+3*8, 40/2+2*8, 36/2+2*8
    assert [m.shape[-1] for m in ours_maps] == [32, 40, 36, 34]
    for ours, stride in zip(ours_maps, (4, 8, 16, 32)):
        assert_parity(ours, maps[stride].numpy().transpose(0, 2, 3, 1), f"map at stride {stride}")

    torch_model.train()
    theirs = parity.torch_forward(torch_model, images)
    ours, updates = compiled_apply(model, train=True)(variables, images)
    assert_parity(ours, theirs, "train-mode logits")
    # norm0, 2 per dense layer, 1 per transition, norm5
    _assert_running_statistics(name, variables, updates, torch_model, num_norms=1 + 18 + 3 + 1)


def _primitives(jaxpr, counts=None):
    """How often each primitive occurs in a jaxpr, sub-jaxprs included."""
    counts = collections.Counter() if counts is None else counts
    for eqn in jaxpr.eqns:
        counts[eqn.primitive.name] += 1
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if isinstance(sub, (jax.extend.core.ClosedJaxpr, jax.extend.core.Jaxpr)):
                    _primitives(getattr(sub, "jaxpr", sub), counts)
    return counts


@pytest.mark.parametrize("options, rematted, dropouts", [
    ({}, 0, 0),
    ({"memory_efficient": True}, 9, 0),  # 2 + 3 + 2 + 2 dense layers
    ({"drop_rate": 0.2}, 0, 9),
])
def test_densenet_memory_efficient_and_drop_rate_in_the_traced_step(options, rematted, dropouts):
    """memory_efficient=True (torchvision's checkpointing) wraps each dense layer's forward pass
    for recomputation in the backward pass and keeps the variables; drop_rate draws one dropout
    mask per dense layer in train mode and none in eval mode."""
    x = jnp.zeros((2, 32, 32, 3))
    model = jaxzoo.create_model("densenet121", **options, **TINY_DENSENET)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    plain = jaxzoo.create_model("densenet121", **TINY_DENSENET)
    assert variables == jax.eval_shape(lambda: plain.init(jax.random.PRNGKey(0), x))

    def traced(train):
        return _primitives(jax.make_jaxpr(lambda v, key: model.apply(
            v, x, train=train, mutable=["batch_stats"], rngs={"dropout": key}))(
                variables, jax.random.PRNGKey(0)).jaxpr)

    counts = traced(True)
    assert counts["remat2"] + counts["checkpoint"] == rematted
    assert counts["random_bits"] == dropouts
    assert traced(False)["random_bits"] == 0


def test_squeezenet_dropout_follows_the_dropout_rng():
    """Train mode: the dropout before SqueezeNet's final conv draws from the "dropout" rng; two
    keys differ, one key repeats."""
    name = "squeezenet1_1"
    images = photo_batch(32)
    variables = convert.from_torch(name, parity.torchvision_model(name).state_dict())
    train = compiled_apply(jaxzoo.create_model(name), train=True)
    a, _ = train(variables, images, rngs={"dropout": jax.random.PRNGKey(1)})
    b, _ = train(variables, images, rngs={"dropout": jax.random.PRNGKey(2)})
    again, _ = train(variables, images, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, again)


def test_squeezenet_new_num_classes_replaces_only_the_final_conv():
    """SqueezeNet's classifier is a 1x1 conv (classifier.1): a new number of classes replaces it
    (initialized as torch initializes a new nn.Conv2d: U(-1/sqrt(512), 1/sqrt(512)) for weight
    and bias) and keeps every other tensor."""
    name = "squeezenet1_1"
    state = parity.torchvision_model(name).state_dict()
    variables, report = convert.load_torch(name, state, num_classes=5)
    assert report.missing_keys == ["classifier.1.bias", "classifier.1.weight"]
    assert report.unexpected_keys == []
    head = variables["params"]["classifier_1"]
    assert head["kernel"].shape == (1, 1, 512, 5) and head["bias"].shape == (5,)
    bound = 1 / np.sqrt(512)
    assert float(jnp.abs(head["kernel"]).max()) <= bound
    assert 0.4 * bound < float(jnp.std(head["kernel"])) < 0.7 * bound  # uniform: bound / sqrt(3)
    assert jnp.all(head["bias"] != 0) and float(jnp.abs(head["bias"]).max()) <= bound
    exported = convert.to_torch(name, variables)
    for key, value in state.items():
        if not key.startswith("classifier."):
            np.testing.assert_array_equal(exported[key], value.numpy(), err_msg=key)
