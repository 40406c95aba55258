"""MobileNet V1/V2/V3 beyond the generic eval-mode parity of test_zoo_parity.py: train-mode
BatchNorm, width/tail/dilation options against torchvision, the activations, V1 against the
paper, bad input, synchronized BatchNorm."""
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
from jaxzoo.models import layers

from conftest import assert_parity, compiled_apply, photo_batch


def _param_count(name, size=32, **kwargs) -> int:
    model = jaxzoo.create_model(name, **kwargs)
    x = jnp.zeros((1, size, size, 3))
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))


def _torch_param_count(torch_model) -> int:
    return sum(p.numel() for p in torch_model.parameters())


# --- MobileNet V3: train-mode BatchNorm (eps 1e-3, torch momentum 0.01) --------------------------

def test_v3_train_mode_batchnorm_matches_torch_running_statistics():
    """One train-mode forward pass of mobilenet_v3_small: the same pooled features (normalized with
    batch statistics) and the same running-statistic updates as torch, whose BatchNorm uses
    momentum 0.01 and the unbiased variance. The features are the input of classifier.0, so the
    classifier's dropout plays no part on either side."""
    name = "mobilenet_v3_small"
    torch_model = parity.torchvision_model(name)
    parity.randomize_(torch_model, seed=4)
    variables = convert.from_torch(name, torch_model.state_dict())
    before = convert.to_torch(name, variables)
    images = photo_batch(64)

    captured = {}
    hook = torch_model.classifier[0].register_forward_hook(
        lambda m, args, out: captured.update(x=args[0].detach().numpy()))
    torch_model.train()
    parity.torch_forward(torch_model, images)
    hook.remove()

    model = jaxzoo.create_model(name)
    ours, updates = compiled_apply(model, "features", train=True)(variables, images)
    assert_parity(ours, captured["x"], "train-mode pooled features")

    expected = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    got = convert.to_torch(name, {"params": variables["params"], **updates})
    stats_keys = [k for k in expected if k.endswith(("running_mean", "running_var"))]
    assert len(stats_keys) == 2 * 34  # 34 BatchNorm layers in mobilenet_v3_small
    for key in stats_keys:
        # Momentum 0.01 moves the statistics by 1% of (batch - running): compare the moves.
        theirs, ours_delta = expected[key] - before[key], got[key] - before[key]
        assert np.abs(theirs).max() > 1e-4, f"{key} did not move"
        np.testing.assert_allclose(ours_delta, theirs, rtol=1e-3,
                                   atol=1e-3 * np.abs(theirs).max(), err_msg=key)


def test_v3_batchnorm_is_eps_1e3_momentum_001_and_v2_keeps_torch_defaults():
    v3 = jaxzoo.create_model("mobilenet_v3_small")
    v2 = jaxzoo.create_model("mobilenet_v2")
    x = jnp.zeros((1, 32, 32, 3))

    def norms(model):
        found = []

        def record(module, _):
            if isinstance(module, layers.BatchNorm):
                found.append((module.epsilon, module.momentum))
            return False

        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, capture_intermediates=record))
        return found

    v3_norms, v2_norms = norms(v3), norms(v2)
    torch_v3 = [(m.eps, m.momentum) for m in torchvision.models.mobilenet_v3_small().modules()
                if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(v3_norms) == len(torch_v3) == 34
    as_torch = {(eps, round(1 - momentum, 6)) for eps, momentum in v3_norms}
    assert as_torch == set(torch_v3) == {(1e-3, 0.01)}
    assert set(v2_norms) == {(1e-5, 0.9)} and len(v2_norms) == 52


# --- options against torchvision -------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs", [
    ("mobilenet_v2", {"width_mult": 0.75}),
    ("mobilenet_v2", {"width_mult": 0.5}),
    ("mobilenet_v2", {"width_mult": 1.4}),  # the last conv widens too: 1280 * max(1, width_mult)
    ("mobilenet_v2", {"width_mult": 0.35, "round_nearest": 1}),
    ("mobilenet_v3_large", {"width_mult": 0.75}),
    ("mobilenet_v3_small", {"width_mult": 0.5}),
    ("mobilenet_v3_large", {"reduced_tail": True}),
    ("mobilenet_v3_large", {"reduced_tail": True, "dilated": True}),
    ("mobilenet_v3_small", {"reduced_tail": True, "width_mult": 0.75}),
])
def test_options_give_torchvision_parameter_counts(name, kwargs):
    theirs = _torch_param_count(getattr(torchvision.models, name)(weights=None, **kwargs))
    assert _param_count(name, **kwargs) == theirs
    assert theirs != _torch_param_count(getattr(torchvision.models, name)(weights=None))


def test_v3_reduced_tail_dilated_matches_torchvision_logits():
    """reduced_tail halves the C4 stage and dilated replaces its stride with dilation 2; dilation
    has no parameters, so compare outputs: the last stage works at twice the resolution."""
    name, kwargs = "mobilenet_v3_small", {"reduced_tail": True, "dilated": True}
    torch_model = parity.torchvision_model(name, **kwargs)
    parity.randomize_(torch_model, seed=5)
    variables = convert.from_torch(name, torch_model.state_dict(), **kwargs)
    model = jaxzoo.create_model(name, **kwargs)
    images = photo_batch(64)
    assert_parity(compiled_apply(model)(variables, images),
                  parity.torch_forward(torch_model, images), "reduced_tail + dilated logits")

    pre_pool = torch_model.features(torch.from_numpy(images.transpose(0, 3, 1, 2)))
    assert tuple(pre_pool.shape[2:]) == (4, 4)  # total stride 16, not 32


def test_hardswish_and_hardsigmoid_equal_torch():
    x = np.concatenate([np.linspace(-6, 6, 241), [-3.0, 3.0, -1e-3, 1e-3]]).astype(np.float32)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(layers.hard_sigmoid(x), torch.nn.functional.hardsigmoid(t).numpy(),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layers.hard_swish(x), torch.nn.functional.hardswish(t).numpy(),
                               rtol=1e-6, atol=1e-7)
    # relu6(x + 3) / 6, not Keras 2's 0.2 * x + 0.5 (they differ at x = 2).
    assert float(layers.hard_sigmoid(jnp.float32(2.0))) == pytest.approx(5 / 6)


def test_v2_make_divisible_is_torchvisions():
    from torchvision.models._utils import _make_divisible

    for v in [3.2, 8, 11.9, 12, 16 * 0.35, 24 * 0.75, 320 * 1.4, 1280 * 0.1, 90, 91.5]:
        for divisor in (1, 4, 8, 16):
            assert layers.make_divisible(v, divisor) == _make_divisible(v, divisor), (v, divisor)


# --- MobileNet V1 against the paper ------------------------------------------------------------

# Howard et al. 2017, "MobileNets", Table 6 (width multiplier, 224x224, 1000 classes):
# 1.0 MobileNet-224: 4.2 M parameters, 0.75: 2.6 M, 0.5: 1.3 M, 0.25: 0.5 M.
PAPER_PARAMS_MILLIONS = {1.0: 4.2, 0.75: 2.6, 0.5: 1.3, 0.25: 0.5}

# The paper's Table 1, one row per layer: (type, stride, output channels, input side at 224).
# The table prints "Conv dw / s2" for the second-to-last depthwise layer, whose output is 7x7 like
# its input: it is stride 1.
PAPER_TABLE_1 = [
    ("conv", 2, 32, 224),
    ("dw", 1, 32, 112), ("pw", 1, 64, 112),
    ("dw", 2, 64, 112), ("pw", 1, 128, 56),
    ("dw", 1, 128, 56), ("pw", 1, 128, 56),
    ("dw", 2, 128, 56), ("pw", 1, 256, 28),
    ("dw", 1, 256, 28), ("pw", 1, 256, 28),
    ("dw", 2, 256, 28), ("pw", 1, 512, 14),
    *[("dw", 1, 512, 14), ("pw", 1, 512, 14)] * 5,
    ("dw", 2, 512, 14), ("pw", 1, 1024, 7),
    ("dw", 1, 1024, 7), ("pw", 1, 1024, 7),
]


@pytest.mark.parametrize("alpha", sorted(PAPER_PARAMS_MILLIONS, reverse=True))
def test_v1_parameter_count_matches_the_paper(alpha):
    count = _param_count("mobilenet_v1", alpha=alpha)
    assert round(count / 1e6, 1) == PAPER_PARAMS_MILLIONS[alpha], count


def test_v1_layers_follow_table_1_at_any_resolution():
    """Every conv's output shape at 224 follows Table 1 (sides halve where the table strides);
    the parameter count does not depend on the resolution (Table 7: 4.2 M at 224/192/160/128)."""
    model = jaxzoo.create_model("mobilenet_v1")
    x = jnp.zeros((2, 224, 224, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    _, state = jax.eval_shape(lambda v: model.apply(
        v, x, capture_intermediates=lambda m, _: isinstance(m, nn.Conv),
        mutable=["intermediates"]), variables)
    convs = state["intermediates"]
    shapes = [convs["features_0_0"]["__call__"][0].shape]
    for i in range(1, 14):
        block = convs[f"features_{i}"]
        shapes += [block[f"{kind}_0"]["__call__"][0].shape for kind in ("dw", "pw")]
    assert len(shapes) == len(PAPER_TABLE_1) == 27
    for (kind, stride, channels, side), shape in zip(PAPER_TABLE_1, shapes):
        assert shape == (2, side // stride, side // stride, channels), (kind, stride, side, shape)

    counts = {size: _param_count("mobilenet_v1", size=size) for size in (128, 160, 192, 224)}
    assert len(set(counts.values())) == 1 and round(counts[224] / 1e6, 1) == 4.2
    for size in (128, 160):
        out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, size, size, 3))), variables)
        assert out.shape == (1, 1000)


def _torch_mobilenet_v1(alpha: float, num_classes: int):
    """MobileNet V1 written in PyTorch from Table 1, with the attribute names jaxzoo exports."""
    from torch import nn as tnn

    def depth(c):
        return max(int(c * alpha), 8)

    def conv_bn_relu(cin, cout, k, stride, groups=1):
        return tnn.Sequential(tnn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                              tnn.BatchNorm2d(cout), tnn.ReLU())

    class DepthwiseSeparable(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.dw = conv_bn_relu(cin, cin, 3, stride, groups=cin)
            self.pw = conv_bn_relu(cin, cout, 1, 1)

        def forward(self, x):
            return self.pw(self.dw(x))

    class MobileNetV1(tnn.Module):
        def __init__(self):
            super().__init__()
            _, stride, channels, _ = PAPER_TABLE_1[0]
            layers_, cin = [conv_bn_relu(3, depth(channels), 3, stride)], depth(channels)
            for (_, stride, _, _), (_, _, channels, _) in zip(PAPER_TABLE_1[1::2],
                                                              PAPER_TABLE_1[2::2]):
                layers_.append(DepthwiseSeparable(cin, depth(channels), stride))
                cin = depth(channels)
            self.features = tnn.Sequential(*layers_)
            self.fc = tnn.Linear(cin, num_classes)

        def forward(self, x):
            return self.fc(self.features(x).mean((2, 3)))

    return MobileNetV1().eval()


def test_v1_matches_a_pytorch_mobilenet_v1_and_exports_its_state_dict():
    """V1 has no torchvision weights, but jaxzoo's layout converts both ways: a PyTorch V1 built
    from the paper's table imports (logits parity) and the export loads back strictly."""
    alpha, num_classes = 0.5, 10
    torch_model = _torch_mobilenet_v1(alpha, num_classes)
    parity.randomize_(torch_model, seed=6)
    assert _torch_param_count(torch_model) == _param_count("mobilenet_v1", alpha=alpha,
                                                           num_classes=num_classes)
    variables = convert.from_torch("mobilenet_v1", torch_model.state_dict(), alpha=alpha)
    model = jaxzoo.create_model("mobilenet_v1", num_classes=num_classes, alpha=alpha)
    images = photo_batch(64)
    assert_parity(compiled_apply(model)(variables, images),
                  parity.torch_forward(torch_model, images), "mobilenet_v1 logits")

    exported = {k: torch.from_numpy(v)
                for k, v in convert.to_torch("mobilenet_v1", variables).items()}
    fresh = _torch_mobilenet_v1(alpha, num_classes)
    assert str(fresh.load_state_dict(exported, strict=True)) == "<All keys matched successfully>"
    for key, value in torch_model.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key].numpy(), value.numpy(), key)


# --- every model -----------------------------------------------------------------------------

MOBILENETS = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.mark.parametrize("name", MOBILENETS)
def test_too_small_input_names_the_minimum(name):
    model = jaxzoo.create_model(name)
    assert jaxzoo.get_spec(name).min_size == 32
    message = f"{name} needs inputs of at least 32x32 pixels; got 31x40"
    with pytest.raises(ValueError, match=message):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 31, 40, 3)))
    with pytest.raises(ValueError, match="NCHW"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 64, 64)))


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small"])
def test_every_batchnorm_synchronizes_over_bn_axis_name(name):
    """With bn_axis_name, the traced train step averages each BatchNorm's batch mean and variance
    over that axis: two cross-device means per BatchNorm layer."""
    model = jaxzoo.create_model(name, bn_axis_name="batch")
    x = jnp.zeros((2, 32, 32, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    jaxpr = jax.make_jaxpr(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"],
                                 rngs={"dropout": jax.random.PRNGKey(0)}),
        axis_env=[("batch", 2)])(variables, x)
    num_norms = len(jax.tree.leaves(variables["batch_stats"])) // 2
    assert num_norms > 20
    assert sum(e.primitive.name == "psum" for e in jaxpr.jaxpr.eqns) == 2 * num_norms


def test_v2_custom_setting_matches_torchvision_and_dropout_draws_from_the_dropout_rng():
    """A one-block MobileNetV2 (torchvision's inverted_residual_setting argument): eval-mode
    parity, and in train mode the classifier's dropout follows the "dropout" rng."""
    kwargs = {"width_mult": 0.5, "inverted_residual_setting": ((1, 16, 1, 1),)}
    torch_model = parity.torchvision_model("mobilenet_v2", num_classes=4, **kwargs)
    parity.randomize_(torch_model, seed=8)
    variables = convert.from_torch("mobilenet_v2", torch_model.state_dict(), **kwargs)
    assert set(variables["params"]) == {"features_0_0", "features_0_1", "features_1",
                                        "features_2_0", "features_2_1", "classifier_1"}
    model = jaxzoo.create_model("mobilenet_v2", num_classes=4, **kwargs)
    x = photo_batch(32)
    assert_parity(compiled_apply(model)(variables, x), parity.torch_forward(torch_model, x))

    train = compiled_apply(model, train=True)
    a, _ = train(variables, x, rngs={"dropout": jax.random.PRNGKey(1)})
    b, _ = train(variables, x, rngs={"dropout": jax.random.PRNGKey(2)})
    assert not np.allclose(a, b)
    again, _ = train(variables, x, rngs={"dropout": jax.random.PRNGKey(1)})
    np.testing.assert_array_equal(a, again)
    with pytest.raises(ValueError, match=r"\[t, c, n, s\]"):
        jaxzoo.create_model("mobilenet_v2", inverted_residual_setting=((1, 16, 1),)).init(
            jax.random.PRNGKey(0), x)


def test_v3_new_num_classes_reinitializes_only_the_last_linear():
    state = parity.torchvision_model("mobilenet_v3_small").state_dict()
    variables, report = convert.load_torch("mobilenet_v3_small", state, num_classes=5)
    assert report.missing_keys == ["classifier.3.bias", "classifier.3.weight"]
    assert report.unexpected_keys == []
    params = variables["params"]
    assert params["classifier_3"]["kernel"].shape == (1024, 5)
    # The first classifier Linear (576 -> 1024) is part of the pretrained network: kept.
    np.testing.assert_array_equal(params["classifier_0"]["kernel"],
                                  state["classifier.0.weight"].numpy().T)
