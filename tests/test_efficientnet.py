"""EfficientNet B0-B7 and V2 S/M/L against torchvision: logits and pooled features in eval mode,
logits and running statistics in train mode (B0, V2-S), stochastic depth, and the structure of
every size (parameter count, state-dict keys and shapes, BatchNorm settings, dropout, feature
maps)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from flax import linen as nn
from torchvision.ops import StochasticDepth as TorchStochasticDepth

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity
from jaxzoo.models import efficientnet, layers
from jaxzoo.models.registry import variable_shapes

from conftest import assert_parity, compiled_apply, photo_batch, torch_state_shapes

ALL = list(efficientnet.ARCHS)
assert len(ALL) == 11


def _torch_meta(name, **kwargs):
    """The torchvision model with shapes only (no memory, no init time), for structure checks."""
    with torch.device("meta"):
        return getattr(torchvision.models, name)(weights=None, **kwargs)


def calibrate_(torch_model, images, seed=0):
    """Running statistics near those of real inputs, perturbed: a train-mode pass with torch
    momentum 1 sets them to ``images``' batch statistics, then each mean moves by up to 0.2
    standard deviations and each variance is scaled by 0.7-1.5. With parity.randomize_'s
    statistics alone (drawn regardless of the activations' scale) the signal of B0's photos fades
    block after block until the logits hardly depend on the input (spread 4e-3), and V2-S's
    activations grow to 1e4. Even calibrated, some random V2-S states amplify their 40 blocks'
    rounding to logits of scale ~200 that float32 itself (torch's as well as ours) gets 2e-4 away
    from float64; the seeds used here give a well-conditioned network (scale ~14, 1e-5)."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in torch_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    torch_model.train()
    parity.torch_forward(torch_model, images)
    with torch.no_grad():
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            shift = (torch.rand(m.running_mean.shape, generator=gen) - 0.5) * 0.4
            m.running_mean.add_(shift * m.running_var.sqrt())
            m.running_var.mul_(torch.rand(m.running_var.shape, generator=gen) * 0.8 + 0.7)
    torch_model.eval()


PARITY_SIZE = 64
# Stochastic depth and dropout off, so that train mode is deterministic on both sides; in eval
# mode they change nothing.
NO_DROP = {"stochastic_depth_prob": 0.0, "dropout": 0.0}


@functools.lru_cache(maxsize=None)
def _random_state(name):
    """Random weights (parity.randomize_) and calibrated running statistics, shared by the eval-
    and train-mode tests of ``name`` (randomizing and calibrating take seconds in torch)."""
    # Stochastic depth off: in train mode it would drop residual branches of the calibration pass
    # at random (torch's global rng), and the statistics with them.
    torch_model = parity.torchvision_model(name, **NO_DROP)
    parity.randomize_(torch_model, seed=0)
    # The photos upside down: statistics close to, but not those of, the test batch.
    calibrate_(torch_model, np.ascontiguousarray(photo_batch(PARITY_SIZE)[:, ::-1]))
    return {k: v.clone() for k, v in torch_model.state_dict().items()}


def _torch_model(name, **kwargs):
    torch_model = parity.torchvision_model(name, **kwargs)
    torch_model.load_state_dict(_random_state(name))
    return torch_model


# --- eval-mode parity --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_v2_s"])
def test_logits_and_pooled_features_match_torchvision(name):
    torch_model = _torch_model(name)
    images = photo_batch(PARITY_SIZE)
    state = torch_model.state_dict()
    variables = convert.from_torch(name, state)
    assert set(convert.to_torch(name, variables)) == set(state)

    captured = {}
    hook = torch_model.classifier[1].register_forward_hook(
        lambda m, args, out: captured.update(x=args[0].numpy()))
    theirs = parity.torch_forward(torch_model, images)
    hook.remove()
    spread = np.abs(theirs - theirs.mean(0)).max() / np.abs(theirs).max()
    assert spread > 1e-2, f"logits hardly vary across inputs (spread {spread:.1e})"

    model = jaxzoo.create_model(name)
    # One compile for both: the pooled features are the output of the (eval-mode) Dropout.
    ours, state = jax.jit(lambda v, x: model.apply(
        v, x, capture_intermediates=lambda m, _: isinstance(m, nn.Dropout),
        mutable=["intermediates"]))(variables, images)
    print(name, assert_parity(ours, theirs, f"{name} logits"))
    assert_parity(state["intermediates"]["Dropout_0"]["__call__"][0], captured["x"],
                  "pooled features")
    features = jax.eval_shape(lambda v: model.apply(v, images, method="features"), variables)
    assert features.shape == captured["x"].shape


# --- train-mode parity -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_v2_s"])
def test_train_mode_matches_torchvision_logits_and_running_statistics(name):
    """One train-mode forward pass with stochastic depth and dropout off on both sides: the same
    logits (every BatchNorm normalizes with batch statistics) and the same running-statistic
    updates (torch's momentum, unbiased variance). At 32 px V2-S's last stages normalize 5
    values (1x1 maps): too ill-conditioned for 1e-4 (2.5e-4 measured); 64 px it is."""
    torch_model = _torch_model(name, **NO_DROP)
    variables = convert.from_torch(name, torch_model.state_dict())
    before = convert.to_torch(name, variables)
    images = photo_batch(PARITY_SIZE)

    torch_model.train()
    theirs = parity.torch_forward(torch_model, images)
    model = jaxzoo.create_model(name, **NO_DROP)
    ours, updates = compiled_apply(model, train=True)(variables, images)
    print(name, assert_parity(ours, theirs, "train-mode logits"))

    expected = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    got = convert.to_torch(name, {"params": variables["params"], **updates})
    stats_keys = [k for k in expected if k.endswith(("running_mean", "running_var"))]
    num_norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in torch_model.modules())
    assert len(stats_keys) == 2 * num_norms and num_norms > 40
    for key in stats_keys:
        theirs, ours_delta = expected[key] - before[key], got[key] - before[key]
        assert np.abs(theirs).max() > 1e-4, f"{key} did not move"
        np.testing.assert_allclose(ours_delta, theirs, rtol=1e-3,
                                   atol=1e-3 * np.abs(theirs).max(), err_msg=key)


# --- stochastic depth --------------------------------------------------------------------------

def test_stochastic_depth_rates_grow_linearly_as_torchvisions():
    """Each residual block's rate equals torchvision's (``p * block_index / num_blocks``), for the
    default and a custom ``stochastic_depth_prob``."""
    for name, prob in [("efficientnet_b0", 0.2), ("efficientnet_v2_s", 0.5)]:
        torch_model = _torch_meta(name, stochastic_depth_prob=prob)
        theirs = [block.stochastic_depth.p for block in torch_model.modules()
                  if getattr(block, "use_res_connect", False)]
        model = jaxzoo.create_model(name, stochastic_depth_prob=prob)
        ours = []

        def record(module, _):
            if isinstance(module, layers.StochasticDepth):
                ours.append(module.p)
            return False

        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                          capture_intermediates=record))
        assert len(ours) == len(theirs) >= 9
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
        assert ours == sorted(ours) and ours[-1] > 0.8 * prob


@functools.partial(jax.jit, static_argnums=0)
def _train_block(block, variables, x, seed):
    out, _ = block.apply(variables, x, train=True, mutable=["batch_stats"],
                         rngs={"dropout": jax.random.PRNGKey(seed)})
    return out


def test_stochastic_depth_drops_whole_samples_in_train_mode_only():
    """An MBConv block with rate 0.3 in train mode: each sample's residual branch is either
    dropped whole (output == input) or kept and scaled by 1 / 0.7, at the configured rate; in eval
    mode the rate changes nothing (and no rng is needed)."""
    rate, n = 0.3, 512
    conv = layers.conv
    norm = layers.BatchNorm

    def block(p):
        return efficientnet.MBConv(6, 3, 1, 8, conv, norm, stochastic_depth_prob=p)

    x = jax.random.normal(jax.random.PRNGKey(0), (n, 4, 4, 8))
    # Jitted: an eager init dispatches (and compiles) op by op, seconds on XLA:CPU.
    variables = jax.jit(lambda r: block(rate).init(r, x, train=False))(jax.random.PRNGKey(1))

    def train(p, seed):
        return np.asarray(_train_block(block(p), variables, x, seed))

    branch = train(0.0, 0) - np.asarray(x)  # batch statistics do not depend on the drop
    assert np.abs(branch).min(axis=(1, 2, 3)).max() > 0  # every sample has a nonzero branch
    dropped_fraction = []
    for seed in (1, 2):
        got = train(rate, seed) - np.asarray(x)
        dropped = np.all(got == 0, axis=(1, 2, 3))
        np.testing.assert_allclose(got[~dropped], branch[~dropped] / (1 - rate),
                                   rtol=1e-5, atol=1e-5)
        dropped_fraction.append(dropped.mean())
    # Binomial(512, 0.3): standard deviation 0.02; 4 sigma.
    assert all(abs(f - rate) < 0.08 for f in dropped_fraction), dropped_fraction
    assert not np.array_equal(train(rate, 1), train(rate, 2))  # the mask follows the rng

    eval_out = block(rate).apply(variables, x, train=False)  # no "dropout" rng: not drawn
    np.testing.assert_array_equal(eval_out, block(0.0).apply(variables, x, train=False))


def test_stochastic_depth_equals_torchvisions_row_mode():
    """Same rule as torchvision's StochasticDepth(p, "row"): zero or x / (1 - p) per row, and
    the identity at p = 0 and in eval mode; p = 1 zeroes everything (no division by zero)."""
    x = jnp.arange(1, 2 * 3 * 3 * 2 + 1, dtype=jnp.float32).reshape(2, 3, 3, 2)
    sd = layers.StochasticDepth(0.5)
    out = np.asarray(sd.apply({}, x, True, rngs={"dropout": jax.random.PRNGKey(3)}))
    for row, ref in zip(out, np.asarray(x)):
        assert np.array_equal(row, 0 * ref) or np.allclose(row, ref / 0.5)
    np.testing.assert_array_equal(sd.apply({}, x, False), x)
    np.testing.assert_array_equal(layers.StochasticDepth(1.0).apply(
        {}, x, True, rngs={"dropout": jax.random.PRNGKey(0)}), np.zeros_like(x))
    t = torch.from_numpy(np.array(x))
    assert torch.equal(TorchStochasticDepth(1.0, "row").train()(t), torch.zeros_like(t))
    with pytest.raises(ValueError, match="between 0 and 1"):
        layers.StochasticDepth(1.5).apply({}, x, True)


# --- every size: structure ---------------------------------------------------------------------

TRACE_FEATURE_MAPS = ("efficientnet_b0", "efficientnet_b7", "efficientnet_v2_s", "efficientnet_v2_l")


@pytest.mark.parametrize("name", ALL)
def test_structure_equals_torchvisions(name):
    """Parameter count, state-dict keys and shapes, classifier dropout and feature channels of
    every size. The spec's feature channels are those of the last torchvision ``features`` layer
    at each stride (shapes traced on torch's meta device); the maps ``feature_maps`` returns are
    traced with eval_shape for a B0, B7, V2-S and V2-L."""
    torch_model = _torch_meta(name)
    model = jaxzoo.create_model(name)
    shapes = variable_shapes(model, 32)
    ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
    assert ours == sum(p.numel() for p in torch_model.parameters())

    assert torch_state_shapes(shapes) == {k: tuple(v.shape)
                                          for k, v in torch_model.state_dict().items()}
    assert efficientnet.efficientnet_config(name)[3] == torch_model.classifier[0].p

    spec = jaxzoo.get_spec(name)
    size = 64
    x = torch.zeros((1, 3, size, size), device="meta")
    torch_last = {}
    for layer in torch_model.features:
        x = layer(x)
        torch_last[size // x.shape[-1]] = x.shape[1]
    assert spec.feature_channels == tuple(torch_last[s] for s in (4, 8, 16, 32))
    assert spec.feature_strides == (4, 8, 16, 32)
    assert spec.default_size == efficientnet.DEFAULT_SIZES[name]
    if name not in TRACE_FEATURE_MAPS:
        return  # the same code path at other widths and depths; tracing takes seconds
    maps = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, size, size, 3)),
                                                method="feature_maps"), shapes)
    assert [m.shape for m in maps] == [(2, size // s, size // s, c) for s, c in
                                       zip(spec.feature_strides, spec.feature_channels)]


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b5", "efficientnet_v2_s"])
def test_batchnorm_epsilon_and_momentum_are_torchvisions(name):
    """B0-B4: torch's defaults (1e-5, 0.1); B5-B7: (1e-3, 0.01); V2: (1e-3, 0.1)."""
    model = jaxzoo.create_model(name)
    found = []

    def record(module, _):
        if isinstance(module, layers.BatchNorm):
            found.append((module.epsilon, round(1 - module.momentum, 6)))  # torch's momentum
        return False

    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                      capture_intermediates=record))
    theirs = [(m.eps, m.momentum) for m in _torch_meta(name).modules()
              if isinstance(m, torch.nn.BatchNorm2d)]
    assert found == theirs and len(set(theirs)) == 1
