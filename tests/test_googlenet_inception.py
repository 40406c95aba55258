"""GoogLeNet and Inception v3 beyond the generic eval-mode checks: the auxiliary heads in train
mode (outputs and BatchNorm running statistics against torch), ``transform_input``,
``aux_logits=False``, the smallest inputs each network takes, and the ``check`` command."""
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxzoo
from jaxzoo import convert, imagenet
from jaxzoo.convert import parity

from conftest import assert_parity, compiled_apply, photo_batch


def _signal_preserving_(torch_model, seed: int) -> None:
    """Redraw every conv and linear weight from N(0, 2 / fan_in), then randomize BatchNorm and
    biases. torchvision's own initialization (N(0, 0.01^2) for GoogLeNet) shrinks the signal at
    every layer: with eval-mode BatchNorm its logits hardly depend on the input (their spread over
    a batch is ~1e-7 of their size), which would hide any mistake before the last layers."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in torch_model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
    parity.randomize_(torch_model, seed)


def _torch_and_variables(name, seed, **kwargs):
    torch_model = parity.torchvision_model(name, init_weights=False, **kwargs)
    _signal_preserving_(torch_model, seed)
    return torch_model, convert.from_torch(name, torch_model.state_dict(), **kwargs)


def _assert_input_dependent(out, what):
    """The outputs differ from image to image by a fair share of their size, so that a parity
    check on them sees the whole network."""
    out = np.asarray(out)
    assert np.std(out, axis=0).max() > 1e-2 * np.abs(out).max(), what


# --- train mode: auxiliary heads, batch statistics, running statistics ---------------------------

def _assert_train_mode_matches_torch(name, images, model_kwargs, seed):
    torch_model, variables = _torch_and_variables(name, seed, **model_kwargs)
    model = jaxzoo.create_model(name, **model_kwargs)
    torch_model.train()
    theirs = parity.torch_forward(torch_model, images)
    ours, updates = compiled_apply(model, train=True)(variables, images)
    assert isinstance(ours, tuple) and len(ours) == len(theirs)
    results = []
    for i, (o, t) in enumerate(zip(ours, theirs)):
        what = "train-mode logits" if i == 0 else f"train-mode output {i} (auxiliary head)"
        _assert_input_dependent(t, what)
        results.append(assert_parity(o, t, what))

    # torch updated its running statistics in place (momentum 0.1, unbiased variance).
    expected = {k: v.numpy() for k, v in torch_model.state_dict().items()
                if k.endswith(("running_mean", "running_var"))}
    before = convert.to_torch(name, variables)
    got = convert.to_torch(name, {"params": variables["params"], **updates})
    assert set(expected) <= set(got)
    for key in expected:
        assert not np.allclose(before[key], expected[key]), f"{key} did not move"
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)
    return results


def test_googlenet_train_mode_aux_heads_and_running_stats_match_torch():
    """(logits, aux2, aux1) in torchvision's order. At 96 px inception4a's map is 6x6, so the aux
    heads' adaptive 4x4 pooling has overlapping, uneven windows. Dropout 0 on both sides makes
    train mode deterministic; BatchNorm normalizes with batch statistics on both sides."""
    _assert_train_mode_matches_torch("googlenet", photo_batch(96),
                      {"dropout": 0.0, "dropout_aux": 0.0}, seed=3)


def test_inception_v3_train_mode_aux_head_and_running_stats_match_torch():
    """(logits, aux) in torchvision's order, at 299 px: the smallest input the auxiliary head
    takes."""
    images = photo_batch(299)[[0, 1, 3]]  # two photos and a noise image keep the test quick
    _assert_train_mode_matches_torch("inception_v3", images,
                      {"dropout": 0.0}, seed=4)


# --- transform_input ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, size", [("googlenet", 64), ("inception_v3", 96)])
def test_transform_input_matches_torchvision(name, size):
    """Eval mode, where the input's scale and offset reach the logits (train-mode BatchNorm
    normalizes most of them away). transform_input=False is tests/test_zoo_parity.py's case."""
    images = photo_batch(size)
    torch_model, variables = _torch_and_variables(name, seed=5, transform_input=True)
    theirs = parity.torch_forward(torch_model, images)
    _assert_input_dependent(theirs, "eval logits")
    ours = compiled_apply(jaxzoo.create_model(name, transform_input=True))(variables, images)
    assert_parity(ours, theirs, "logits with transform_input=True")

    # The same weights without the flag give other logits, so the check above has teeth.
    torch_model.transform_input = False
    without = parity.torch_forward(torch_model, images)
    assert np.abs(without - theirs).max() > 1e-2 * np.abs(theirs).max()


def test_transform_input_is_torchvisions_renormalization():
    """ImageNet-normalized pixels come out as (pixel - 0.5) / 0.5 per channel."""
    from jaxzoo.models.googlenet import transform_input

    pixels = np.random.default_rng(0).uniform(0, 1, (2, 5, 5, 3)).astype(np.float32)
    normalized = (pixels - np.float32(imagenet.MEAN)) / np.float32(imagenet.STD)
    np.testing.assert_allclose(transform_input(jnp.asarray(normalized)), (pixels - 0.5) / 0.5,
                               atol=1e-6)


# --- aux_logits and outputs per mode --------------------------------------------------------------

def _shapes(name, size, train, **kwargs):
    model = jaxzoo.create_model(name, num_classes=10, **kwargs)
    x = jnp.zeros((2, size, size, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x[:1], train=False))
    rngs = {"dropout": jax.random.PRNGKey(1)}
    out = jax.eval_shape(lambda v: model.apply(v, x, train=train, mutable=["batch_stats"],
                                               rngs=rngs)[0], variables)
    return variables, out


@pytest.mark.parametrize("name, size, num_aux", [("googlenet", 64, 2), ("inception_v3", 299, 1)])
def test_aux_logits_false_removes_the_heads_and_matches_torchvision(name, size, num_aux):
    variables, train_out = _shapes(name, size, train=True)
    assert isinstance(train_out, tuple) and len(train_out) == 1 + num_aux
    assert all(o.shape == (2, 10) for o in train_out)
    _, eval_out = _shapes(name, size, train=False)
    assert eval_out.shape == (2, 10)

    variables, train_out = _shapes(name, size, train=True, aux_logits=False)
    assert train_out.shape == (2, 10)
    torch_model = parity.torchvision_model(name, num_classes=10, aux_logits=False,
                                             init_weights=False)
    assert (sum(x.size for x in jax.tree.leaves(variables["params"]))
            == sum(p.numel() for p in torch_model.parameters()))


# --- input sizes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, min_size", [("googlenet", 15), ("inception_v3", 75)])
def test_smallest_input_is_torchvisions_and_smaller_ones_get_a_clear_error(name, min_size):
    assert jaxzoo.get_spec(name).min_size == min_size
    torch_model = parity.torchvision_model(name, init_weights=False)
    torch_model(torch.zeros(1, 3, min_size, min_size))
    with pytest.raises(RuntimeError):
        torch_model(torch.zeros(1, 3, min_size - 1, min_size - 1))

    model = jaxzoo.create_model(name)
    x = jnp.zeros((1, min_size, min_size, 3))
    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
    with pytest.raises(ValueError, match=f"at least {min_size}x{min_size}"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, min_size - 1, min_size - 1, 3)))


def test_inception_v3_aux_head_needs_299_pixels_in_train_mode():
    torch_model = parity.torchvision_model("inception_v3", init_weights=False).train()
    with pytest.raises(RuntimeError):
        torch_model(torch.zeros(1, 3, 298, 298))

    with pytest.raises(ValueError, match="at least 299x299 pixels in train mode.*aux_logits=False"):
        _shapes("inception_v3", 298, train=True)
    _shapes("inception_v3", 298, train=True, aux_logits=False)


# --- command line ---------------------------------------------------------------------------------

def test_check_command_passes_for_googlenet():
    result = subprocess.run(
        [sys.executable, "-m", "jaxzoo", "check", "googlenet", "--size", "64", "--batch", "2"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("PASS")
