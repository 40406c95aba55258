"""RegNetX and RegNetY against torchvision: the structure of every size (parameter count,
state-dict keys and shapes, feature maps; torchvision's models built on the meta device, so that
regnet_y_128gf's 644,812,894 parameters cost no memory), the stage widths of torchvision's
BlockParams, eval-mode parity of regnet_y_400mf and regnet_x_400mf and train-mode BatchNorm parity
of regnet_y_400mf on real photos with random weights and randomized BatchNorm statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity
from jaxzoo.models import regnet

from conftest import (assert_feature_maps_match_spec, assert_parity, compiled_apply, model_shapes,
                      photo_batch, torch_state_shapes)

NAMES = [n for n in jaxzoo.list_models() if n.startswith("regnet_")]


def test_every_torchvision_regnet_is_registered():
    expected = {n for n in torchvision.models.list_models() if n.startswith("regnet_")}
    assert set(NAMES) == expected and len(NAMES) == 15


@pytest.fixture
def meta_torchvision(monkeypatch):
    """Build torchvision's RegNets on the meta device (shapes only, nothing allocated or
    initialized). BlockParams computes the widths with torch tensors and reads them back with
    ``.tolist()``, which needs data: that part runs on the CPU."""
    from torchvision.models import regnet as tv_regnet

    from_init_params = tv_regnet.BlockParams.from_init_params.__func__

    def on_cpu(cls, *args, **kwargs):
        with torch.device("cpu"):
            return from_init_params(cls, *args, **kwargs)

    monkeypatch.setattr(tv_regnet.BlockParams, "from_init_params", classmethod(on_cpu))

    def build(name):
        with torch.device("meta"):
            return getattr(torchvision.models, name)(weights=None)
    return build


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_keys_and_shapes_equal_torchvision(name, meta_torchvision):
    torch_model = meta_torchvision(name)
    expected = {k: tuple(v.shape) for k, v in torch_model.state_dict().items()}
    shapes = model_shapes(name)
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"])) == sum(
        p.numel() for p in torch_model.parameters())
    assert torch_state_shapes(shapes) == expected
    # The spec's feature channels are the widths of torchvision's stages.
    assert jaxzoo.get_spec(name).feature_channels == tuple(
        stage[-1].f.c[0].out_channels for stage in torch_model.trunk_output)


# The spec's channels are checked against torchvision for every size above; tracing the feature
# maps of the smallest and largest of each kind is enough.
@pytest.mark.parametrize("name", ["regnet_y_400mf", "regnet_y_128gf", "regnet_x_400mf",
                                  "regnet_x_32gf"])
def test_feature_maps_have_the_spec_channels_and_strides(name):
    spec = jaxzoo.get_spec(name)
    assert_feature_maps_match_spec(name)
    # The last stage's width is the classifier's input width.
    assert model_shapes(name)["params"]["fc"]["kernel"].shape[0] == spec.feature_channels[-1]


@pytest.mark.parametrize("settings", [
    *[regnet._REGNETS[n] + (1.0,) for n in sorted(regnet._REGNETS)],
    # Bottleneck multipliers other than 1 (torchvision's builders take them as keyword arguments):
    (13, 24, 36.44, 2.49, 8, 2.0), (16, 56, 35.73, 2.28, 16, 0.5), (12, 16, 10.0, 1.5, 64, 1.0),
])
def test_stage_widths_follow_torchvisions_block_params(settings):
    from torchvision.models.regnet import BlockParams

    *args, multiplier = settings
    theirs = BlockParams.from_init_params(*args, bottleneck_multiplier=multiplier)
    assert regnet.block_params(*args, bottleneck_multiplier=multiplier) == tuple(
        theirs._get_expanded_params())


@pytest.mark.parametrize("name", ["regnet_y_400mf", "regnet_x_400mf"])
def test_eval_logits_and_features_match_torchvision(name):
    """Random weights and BatchNorm statistics; the variables also convert back to exactly the
    state dict they came from."""
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
    hook = torch_model.fc.register_forward_hook(
        lambda m, args, out: captured.update(x=args[0].numpy()))
    theirs = parity.torch_forward(torch_model, images)
    hook.remove()
    spread = np.abs(theirs - theirs.mean(0)).max() / np.abs(theirs).max()
    assert spread > 1e-2, f"logits hardly vary across inputs (spread {spread:.1e})"

    model = jaxzoo.create_model(name)
    # One compile for both outputs (XLA merges the two identical trunks).
    ours, features = jax.jit(lambda v, x: (model.apply(v, x), model.apply(
        v, x, method="features")))(variables, images)
    print(name, assert_parity(ours, theirs, "logits"))
    assert_parity(features, captured["x"], "pooled features")


def test_train_mode_matches_torch_batch_statistics_and_running_updates():
    """One train-mode forward pass of regnet_y_400mf (squeeze-excitation, grouped convs): the same
    logits, normalized with batch statistics, and the same running-statistic updates (torch's
    momentum 0.1 and unbiased variance)."""
    name = "regnet_y_400mf"
    torch_model = parity.torchvision_model(name)
    parity.randomize_(torch_model, seed=2)
    variables = convert.from_torch(name, torch_model.state_dict())
    before = convert.to_torch(name, variables)
    images = photo_batch(64)
    torch_model.train()
    theirs = parity.torch_forward(torch_model, images)

    ours, updates = compiled_apply(jaxzoo.create_model(name), train=True)(variables, images)
    assert_parity(ours, theirs, "train-mode logits")

    expected = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    got = convert.to_torch(name, {"params": variables["params"], **updates})
    stats_keys = [k for k in expected if k.endswith(("running_mean", "running_var"))]
    num_norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in torch_model.modules())
    assert len(stats_keys) == 2 * num_norms and num_norms > 40
    for key in stats_keys:
        theirs_delta, ours_delta = expected[key] - before[key], got[key] - before[key]
        assert np.abs(theirs_delta).max() > 0, f"{key} did not move"
        np.testing.assert_allclose(ours_delta, theirs_delta, rtol=1e-3,
                                   atol=1e-3 * np.abs(theirs_delta).max(), err_msg=key)


def test_too_small_input_names_the_minimum():
    model = jaxzoo.create_model("regnet_x_400mf")
    with pytest.raises(ValueError, match="regnet_x_400mf needs inputs of at least 32x32 pixels"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 31, 40, 3)))
