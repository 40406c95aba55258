"""ResNet-family behaviour beyond eval-mode logits: train-mode BatchNorm, options, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity

from conftest import assert_parity, compiled_apply, photo_batch


def test_train_mode_batchnorm_matches_torch_running_statistics():
    """One train-mode forward pass: same logits (batch statistics) and the same updated running
    mean/var as torch, whose running_var uses the unbiased variance and momentum 0.1."""
    torch_model = parity.torchvision_model("resnet18")
    parity.randomize_(torch_model, seed=2)
    variables = convert.from_torch("resnet18", torch_model.state_dict())
    model = jaxzoo.create_model("resnet18")
    images = photo_batch(64)

    torch_model.train()
    theirs = parity.torch_forward(torch_model, images)
    ours, updates = compiled_apply(model, train=True)(variables, images)
    assert_parity(ours, theirs, "train-mode logits")

    expected = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    got = convert.to_torch("resnet18", {"params": variables["params"], **updates})
    stats_keys = [k for k in expected if k.endswith(("running_mean", "running_var"))]
    assert len(stats_keys) == 2 * 20  # 20 BatchNorm layers in ResNet-18
    for key in stats_keys:
        before = convert.to_torch("resnet18", variables)[key]
        assert not np.allclose(before, expected[key]), f"{key} did not move"
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_zero_init_residual_zeroes_last_batchnorm_of_each_block():
    model = jaxzoo.create_model("resnet50", zero_init_residual=True)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
    for block in [k for k in params if k.startswith("layer")]:
        assert not np.any(params[block]["bn3"]["scale"]), block
        assert np.all(params[block]["bn2"]["scale"] == 1.0), block


def test_bfloat16_compute_keeps_float32_params_and_tracks_float32_logits():
    torch_model = parity.torchvision_model("resnet18")
    variables = convert.from_torch("resnet18", torch_model.state_dict())
    images = photo_batch(64)
    fp32 = compiled_apply(jaxzoo.create_model("resnet18"))(variables, images)
    bf16_model = jaxzoo.create_model("resnet18", dtype=jnp.bfloat16)
    bf16 = compiled_apply(bf16_model)(variables, images)
    assert bf16.dtype == jnp.bfloat16
    init = bf16_model.init(jax.random.PRNGKey(0), images[:1])
    assert {x.dtype for x in jax.tree.leaves(init)} == {jnp.dtype(jnp.float32)}
    bf16 = np.asarray(bf16, np.float32)
    assert np.abs(bf16 - fp32).max() < 0.05 * np.abs(fp32).max()
    assert np.mean(bf16.argmax(-1) == np.asarray(fp32).argmax(-1)) >= 0.6


def test_bfloat16_inference_agrees_with_torch_autocast_on_top1():
    torch_model = parity.torchvision_model("resnet18")
    parity.randomize_(torch_model, seed=5)
    variables = convert.from_torch("resnet18", torch_model.state_dict())
    images = photo_batch(64, num_random=0)  # the real photos
    ours = compiled_apply(jaxzoo.create_model("resnet18", dtype=jnp.bfloat16))(variables, images)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        theirs = torch_model(x).float().numpy()
    np.testing.assert_array_equal(np.asarray(ours, np.float32).argmax(-1), theirs.argmax(-1))
    assert np.abs(np.asarray(ours, np.float32) - theirs).max() < 0.05 * np.abs(theirs).max()


def test_resnet18_cifar_takes_32px_and_keeps_resolution_in_the_stem():
    model = jaxzoo.create_model("resnet18_cifar", num_classes=10)
    x = jnp.zeros((2, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(0), x)
    assert variables["params"]["conv1"]["kernel"].shape == (3, 3, 3, 64)
    assert model.apply(variables, x).shape == (2, 10)
    # No max-pool and a stride-1 stem: layer1 sees the full 32x32 grid.
    _, state = model.apply(variables, x, capture_intermediates=lambda m, _: m.name == "layer1_0",
                           mutable=["intermediates"])
    assert state["intermediates"]["layer1_0"]["__call__"][0].shape == (2, 32, 32, 64)


@pytest.mark.parametrize("shape, message", [
    ((2, 3, 64, 64), "NCHW"),
    ((64, 64, 3), "batch dimension"),
    ((2, 64, 64, 1), "NHWC"),
    ((2, 16, 16, 3), "at least 32x32"),
])
def test_bad_input_gets_a_clear_error(shape, message):
    model = jaxzoo.create_model("resnet18")
    with pytest.raises(ValueError, match=message):
        model.init(jax.random.PRNGKey(0), jnp.zeros(shape))


def test_unknown_model_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="resnet34") as excinfo:
        jaxzoo.create_model("resnet35")
    assert "Available models" in str(excinfo.value)
    assert "resnext50_32x4d" in str(excinfo.value)
