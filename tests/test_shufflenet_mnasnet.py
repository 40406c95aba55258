"""ShuffleNet V2 and MNASNet against torchvision: the structure of every size (parameter count,
state-dict keys and shapes, feature maps), eval- and train-mode parity of the smallest size on
real photos with random weights and randomized BatchNorm statistics, and the pieces that are easy
to get subtly wrong (channel shuffle order, MNASNet's width rounding)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity
from jaxzoo.models import mnasnet, shufflenet

from conftest import (assert_feature_maps_match_spec, assert_parity, compiled_apply,
                      meta_torchvision_model, model_shapes, photo_batch, torch_state_shapes)

SHUFFLENETS = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
               "shufflenet_v2_x2_0"]
MNASNETS = ["mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"]
NAMES = SHUFFLENETS + MNASNETS


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_keys_and_shapes_equal_torchvision(name):
    torch_model = meta_torchvision_model(name)
    expected = {k: tuple(v.shape) for k, v in torch_model.state_dict().items()}
    shapes = model_shapes(name)
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"])) == sum(
        p.numel() for p in torch_model.parameters())
    assert torch_state_shapes(shapes) == expected
    # The spec's feature channels are torchvision's widths at strides 4, 8, 16 and 32.
    if name.startswith("shufflenet"):
        widths = torch_model._stage_out_channels
        channels = (widths[0], widths[1], widths[2], widths[4])
    else:
        stacks = torch_model.layers
        channels = (stacks[8][-1].layers[6].out_channels, stacks[9][-1].layers[6].out_channels,
                    stacks[11][-1].layers[6].out_channels, stacks[14].out_channels)
    assert jaxzoo.get_spec(name).feature_channels == channels


@pytest.mark.parametrize("name", NAMES)
def test_feature_maps_have_the_spec_channels_and_strides(name):
    spec = jaxzoo.get_spec(name)
    model, x = assert_feature_maps_match_spec(name)
    features = jax.eval_shape(lambda v, x: model.apply(v, x, method="features"),
                              model_shapes(name), x)
    assert features.shape == (2, spec.feature_channels[-1])


def _logits_and_features(model):
    return jax.jit(lambda v, x: (model.apply(v, x), model.apply(v, x, method="features")))


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "mnasnet0_5"])
def test_eval_logits_and_features_match_torchvision(name):
    """Random weights and BatchNorm statistics; the variables also convert back to exactly the
    state dict they came from."""
    spec = jaxzoo.get_spec(name)
    torch_model = parity.torchvision_model(name)
    parity.randomize_(torch_model, seed=1)
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    variables = convert.from_torch(name, torch_model.state_dict())
    back = convert.to_torch(name, variables)
    assert back.keys() == state.keys()
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)

    images = photo_batch(64)
    captured = {}
    hook = torch_model.get_submodule(spec.features_at or spec.head[0]).register_forward_hook(
        lambda m, args, out: captured.update(x=args[0].numpy()))
    theirs = parity.torch_forward(torch_model, images)
    hook.remove()
    spread = np.abs(theirs - theirs.mean(0)).max() / np.abs(theirs).max()
    assert spread > 1e-2, f"logits hardly vary across inputs (spread {spread:.1e})"

    ours, features = _logits_and_features(jaxzoo.create_model(name))(variables, images)
    print(name, assert_parity(ours, theirs, "logits"))
    assert_parity(features, captured["x"], "pooled features")


@pytest.mark.parametrize("name, num_norms", [("shufflenet_v2_x0_5", 56), ("mnasnet0_5", 52)])
def test_train_mode_matches_torch_batch_statistics_and_running_updates(name, num_norms):
    """One train-mode forward pass, dropout off on both sides: the same logits (normalized with
    batch statistics) and the same running-statistic updates, which torch makes with the unbiased
    variance and its momentum (0.1 for ShuffleNet, MNASNet's 0.0003)."""
    kwargs = {"dropout": 0.0} if name.startswith("mnasnet") else {}
    torch_model = parity.torchvision_model(name, **kwargs)
    parity.randomize_(torch_model, seed=2)
    variables = convert.from_torch(name, torch_model.state_dict())
    before = convert.to_torch(name, variables)
    images = photo_batch(64)
    torch_model.train()
    theirs = parity.torch_forward(torch_model, images)

    model = jaxzoo.create_model(name, **kwargs)
    ours, updates = compiled_apply(model, train=True)(variables, images)
    assert_parity(ours, theirs, "train-mode logits")

    expected = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    got = convert.to_torch(name, {"params": variables["params"], **updates})
    stats_keys = [k for k in expected if k.endswith(("running_mean", "running_var"))]
    assert len(stats_keys) == 2 * num_norms
    for key in stats_keys:
        # Compare the moves: MNASNet's momentum moves the statistics by 0.03% of the gap.
        theirs_delta, ours_delta = expected[key] - before[key], got[key] - before[key]
        assert np.abs(theirs_delta).max() > 0, f"{key} did not move"
        np.testing.assert_allclose(ours_delta, theirs_delta, rtol=2e-3,
                                   atol=2e-3 * np.abs(theirs_delta).max(), err_msg=key)


def test_channel_shuffle_is_torchvisions_on_nhwc():
    from torchvision.models.shufflenetv2 import channel_shuffle as torch_shuffle

    x = np.random.default_rng(0).standard_normal((2, 3, 5, 12)).astype(np.float32)
    for groups in (2, 3, 4):
        theirs = torch_shuffle(torch.from_numpy(x.transpose(0, 3, 1, 2)), groups).numpy()
        ours = np.asarray(shufflenet.channel_shuffle(jnp.asarray(x), groups))
        np.testing.assert_array_equal(ours, theirs.transpose(0, 2, 3, 1))


def test_mnasnet_depths_follow_torchvisions_rounding():
    from torchvision.models.mnasnet import _get_depths

    for alpha in (0.1, 0.25, 0.5, 0.75, 1.0, 1.1, 1.3, 1.4, 2.0, 3.3):
        assert list(mnasnet.mnasnet_depths(alpha)) == _get_depths(alpha), alpha
    # 83 rounds down to 80 (within 10%), 84 up to 88; never below the divisor.
    assert mnasnet.round_to_multiple_of(83, 8) == 80
    assert mnasnet.round_to_multiple_of(84, 8) == 88
    assert mnasnet.round_to_multiple_of(1, 8) == 8


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "mnasnet0_5"])
def test_too_small_input_names_the_minimum(name):
    model = jaxzoo.create_model(name)
    with pytest.raises(ValueError, match=f"{name} needs inputs of at least 32x32 pixels"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 31, 40, 3)))
