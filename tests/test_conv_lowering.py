"""The "cpu" lowering of convs and max-pool gives XLA's native ops' numbers: outputs and
gradients, layer by layer and through whole models (against torchvision too); the lowering is a
field of the model, so a step traced for one lowering never runs another."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn

import jaxzoo
from jaxzoo.convert import from_torch, parity
from jaxzoo.models import layers, lowering
from conftest import assert_parity, compiled_apply, photo_batch

# (name, input (n, h, w, c), kernel (kh, kw), out channels, groups, stride, padding, dilation)
CASES = [
    ("dense3x3", (2, 8, 8, 6), (3, 3), 10, 1, 1, ((1, 1), (1, 1)), 1),
    ("dense3x3_large", (2, 10, 10, 6), (3, 3), 10, 1, 1, ((1, 1), (1, 1)), 1),
    ("dense3x3_1px", (2, 1, 1, 8), (3, 3), 8, 1, 1, ((1, 1), (1, 1)), 1),
    ("dense3x3_s2_small", (2, 7, 7, 6), (3, 3), 8, 1, 2, ((1, 1), (1, 1)), 1),
    ("dense_dilated_small", (2, 8, 8, 4), (3, 3), 4, 1, 1, ((2, 2), (2, 2)), 2),
    ("dense7x1_small", (2, 8, 6, 8), (7, 1), 8, 1, 1, ((3, 3), (0, 0)), 1),
    ("dense3x3_s2", (2, 9, 9, 6), (3, 3), 8, 1, 2, ((1, 1), (1, 1)), 1),
    ("dense7x7_s2", (2, 16, 16, 3), (7, 7), 8, 1, 2, ((3, 3), (3, 3)), 1),
    ("dense1x1_s2", (2, 9, 9, 8), (1, 1), 16, 1, 2, ((0, 0), (0, 0)), 1),
    ("dense1x7", (2, 9, 9, 8), (1, 7), 8, 1, 1, ((0, 0), (3, 3)), 1),
    ("dense_dilated", (2, 12, 12, 4), (3, 3), 4, 1, 1, ((2, 2), (2, 2)), 2),
    ("depthwise3x3", (2, 9, 9, 8), (3, 3), 8, 8, 1, ((1, 1), (1, 1)), 1),
    ("depthwise3x3_s2", (2, 9, 10, 8), (3, 3), 8, 8, 2, ((1, 1), (1, 1)), 1),
    ("depthwise5x5_s2", (2, 11, 11, 6), (5, 5), 6, 6, 2, ((2, 2), (2, 2)), 1),
    ("depthwise_multiplier2", (2, 8, 8, 4), (3, 3), 8, 4, 1, ((1, 1), (1, 1)), 1),
    ("depthwise_dilated", (2, 12, 12, 6), (3, 3), 6, 6, 1, ((2, 2), (2, 2)), 2),
    ("depthwise_asymmetric_pad", (2, 8, 7, 6), (3, 3), 6, 6, 1, ((0, 1), (2, 0)), 1),
    ("depthwise1x1", (2, 5, 5, 4), (1, 1), 4, 4, 1, ((0, 0), (0, 0)), 1),
    ("grouped2", (2, 8, 8, 8), (3, 3), 12, 2, 1, ((1, 1), (1, 1)), 1),
    ("grouped4_s2", (2, 9, 9, 16), (3, 3), 16, 4, 2, ((1, 1), (1, 1)), 1),
    ("grouped32_s1", (2, 6, 6, 64), (3, 3), 64, 32, 1, ((1, 1), (1, 1)), 1),
    ("grouped32_s2", (2, 7, 7, 64), (3, 3), 64, 32, 2, ((1, 1), (1, 1)), 1),
    ("grouped_dilated", (2, 11, 11, 8), (3, 3), 8, 4, 1, ((2, 2), (2, 2)), 2),
    ("grouped1x7", (2, 9, 9, 8), (1, 7), 8, 2, 1, ((0, 0), (3, 3)), 1),
    ("grouped7x1", (2, 9, 9, 8), (7, 1), 8, 2, 1, ((3, 3), (0, 0)), 1),
    ("grouped1x1", (2, 5, 5, 8), (1, 1), 16, 4, 1, ((0, 0), (0, 0)), 1),
    ("grouped1x1_s2", (2, 5, 5, 8), (1, 1), 8, 8, 2, ((0, 0), (0, 0)), 1),
    ("grouped_asymmetric_pad", (2, 8, 8, 8), (3, 3), 8, 4, 2, ((0, 1), (1, 0)), 1),
]


def _conv(choice, x, w, stride, padding, dilation, groups, **kwargs):
    conv = lowering.conv_function(choice)
    return conv(x, w, (stride, stride), padding, rhs_dilation=(dilation, dilation),
                dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups, **kwargs)


def _value_and_grads(choice, x, w, g, *conv_args):
    # A random cotangent g, so every output position and channel weighs differently.
    def loss(x, w):
        return jnp.sum(_conv(choice, x, w, *conv_args) * g)

    out = _conv(choice, x, w, *conv_args)
    return (out,) + jax.grad(loss, argnums=(0, 1))(x, w)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fast_lowering_matches_native_conv(case):
    _, shape, (kh, kw), cout, groups, stride, padding, dilation = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((kh, kw, shape[-1] // groups, cout)).astype(np.float32)
    conv_args = (stride, padding, dilation, groups)
    out_shape = jax.eval_shape(lambda: _conv("xla", x, w, *conv_args)).shape
    g = rng.standard_normal(out_shape).astype(np.float32)

    method = lowering.formulation_for(x.shape, w.shape, groups)
    small = kh * kw == 1 or shape[1] * shape[2] <= 64
    assert method == ("im2col" if groups == 1 and small else "im2col_grad" if groups == 1 else
                      "depthwise" if shape[-1] == groups else "grouped")
    native = _value_and_grads("xla", x, w, g, *conv_args)
    fast = _value_and_grads("cpu", x, w, g, *conv_args)
    for what, a, b in zip(("output", "d/dinput", "d/dkernel"), fast, native):
        assert a.shape == b.shape and a.dtype == b.dtype, what
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()),
                                   err_msg=what)


DEPTHWISE_CASES = [c for c in CASES
                   if c[0].startswith("depthwise") and "multiplier" not in c[0] and c[5] == 1]


@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=[c[0] for c in DEPTHWISE_CASES])
def test_depthwise_kernel_gradient_by_padding_matches_native(case, monkeypatch):
    # The kernel gradient's other formulation (the gradient padded onto the input's grid), which
    # the cases above only reach on maps where padding adds little: forced on for every case.
    monkeypatch.setattr(lowering, "_PAD_TRICK_MAX_AREA", float("inf"))
    _, shape, (kh, kw), cout, groups, stride, padding, dilation = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((kh, kw, 1, cout)).astype(np.float32)
    conv_args = (stride, padding, dilation, groups)
    out_shape = jax.eval_shape(lambda: _conv("xla", x, w, *conv_args)).shape
    g = rng.standard_normal(out_shape).astype(np.float32)
    native = _value_and_grads("xla", x, w, g, *conv_args)
    fast = _value_and_grads("cpu", x, w, g, *conv_args)
    np.testing.assert_allclose(fast[2], native[2], rtol=1e-4,
                               atol=1e-4 * float(np.abs(native[2]).max()))


def test_string_padding_and_input_dilation_match_native():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 7, 8, 6)).astype(np.float32)
    for groups in (6, 1):  # depthwise, and dense (im2col on this 7x8 map)
        w = rng.standard_normal((3, 3, 6 // groups, 6)).astype(np.float32)
        for padding, lhs_dilation in (("SAME", (1, 1)), ("VALID", (1, 1)),
                                      (((1, 1), (1, 1)), (2, 2))):
            outs = [_conv(c, x, w, 2, padding, 1, groups, lhs_dilation=lhs_dilation)
                    for c in ("cpu", "xla")]
            np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-4,
                                       err_msg=f"{padding} groups={groups}")


def test_formulation_by_shape():
    assert lowering.formulation_for((1, 16, 16, 8), (3, 3, 8, 8), 1) == "im2col_grad"
    assert lowering.formulation_for((1, 8, 8, 8), (3, 3, 8, 8), 1) == "im2col"
    # ...unless its patches would be large: resnet18_cifar's layer3 at batch 128 (75 MiB), not
    # resnet34's at 32 px and batch 32 (4.5 MiB).
    assert lowering.formulation_for((128, 8, 8, 256), (3, 3, 256, 256), 1) == "native"
    assert lowering.formulation_for((32, 8, 8, 64), (3, 3, 64, 64), 1) == "im2col"
    assert lowering.formulation_for((1, 56, 56, 8), (1, 1, 8, 8), 1) == "im2col"
    assert lowering.formulation_for((1, 8, 8, 8), (3, 3, 1, 8), 8) == "depthwise"
    assert lowering.formulation_for((1, 8, 8, 8), (3, 3, 2, 8), 4) == "grouped"


def test_lowering_for_devices():
    cpu = jax.devices("cpu")
    assert lowering.for_devices(cpu) == "cpu"

    class Accelerator:
        platform = "gpu"

    assert lowering.for_devices([Accelerator()]) == "xla"
    assert lowering.for_devices([cpu[0], Accelerator()]) == "xla"
    with pytest.raises(ValueError, match="lowering must be one of"):
        jaxzoo.create_model("resnet18", lowering="fast")


def test_a_plain_create_model_gets_the_lowering_of_its_devices():
    """``create_model(name)`` resolves "auto" when it builds the model and keeps the concrete
    choice: the CPU formulations here, XLA's own ops for devices that are not all CPUs, and
    an explicit choice as given."""

    class Accelerator:
        platform = "tpu"

    assert jaxzoo.create_model("resnext50_32x4d").lowering == "cpu"
    assert jaxzoo.create_model("resnext50_32x4d", devices=[Accelerator()]).lowering == "xla"
    assert jaxzoo.create_model("resnext50_32x4d", lowering="xla").lowering == "xla"
    model = jaxzoo.create_model("mobilenet_v2")
    jaxpr = str(jax.make_jaxpr(lambda x: model.init(jax.random.PRNGKey(0), x))(
        jnp.zeros((1, 32, 32, 3))))
    # The depthwise convs run as shifted multiply-adds: no XLA conv is grouped.
    assert not any(f"feature_group_count={g}" in jaxpr for g in (16, 32, 96, 144, 192))


@pytest.mark.parametrize("choice", lowering.LOWERINGS)
def test_layers_conv_uses_the_lowering_it_is_given(choice):
    module = layers.conv(8, 3, groups=8, lowering=choice)
    jaxpr = jax.make_jaxpr(lambda x: module.init_with_output(jax.random.PRNGKey(0), x)[0])(
        jnp.zeros((1, 6, 6, 8)))
    assert ("conv_general_dilated" in str(jaxpr)) == (choice == "xla")


def test_a_model_traced_per_lowering_gives_the_same_numbers_and_retraces():
    """The lowering is a field of the model: jit traces a model built with another lowering
    anew (it cannot reuse a stale trace), and both give the same logits and gradients."""
    traces = []

    def loss(model, variables, x):
        traces.append(model.lowering)
        logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return jnp.mean(jax.nn.log_softmax(logits)[:, 0])

    grad_fn = jax.jit(jax.value_and_grad(loss, argnums=1), static_argnums=0)
    x = photo_batch(16, num_random=1)  # 3x3 convs on 16x16 and on 8x8 maps, a max-pool
    models = {c: jaxzoo.create_model("inception10", num_classes=10, lowering=c)
              for c in ("cpu", "xla")}
    variables = jax.jit(lambda: models["xla"].init(jax.random.PRNGKey(0), x[:1]))()
    results = {c: grad_fn(m, variables, x) for c, m in models.items()}
    grad_fn(models["cpu"], variables, x)  # cached: no new trace
    assert traces == ["cpu", "xla"]
    (loss_cpu, grads_cpu), (loss_xla, grads_xla) = results["cpu"], results["xla"]
    np.testing.assert_allclose(loss_cpu, loss_xla, rtol=1e-5)
    # Against the largest gradient: some (biases before a BatchNorm) are zero up to float noise.
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads_xla))
    for a, b in zip(jax.tree.leaves(grads_cpu), jax.tree.leaves(grads_xla)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale)


def test_resnext50_matches_torchvision_logits_and_native_gradients():
    name, size = "resnext50_32x4d", 64
    torch_model = parity.torchvision_model(name)
    parity.randomize_(torch_model, seed=3)
    variables = from_torch(name, torch_model.state_dict())
    model = jaxzoo.create_model(name, lowering="cpu")
    images = photo_batch(size, num_random=1)
    # Eval logits (grouped convs: native forward) against torchvision.
    assert_parity(compiled_apply(model)(variables, images), parity.torch_forward(torch_model, images))

    # Train-mode gradients (einsum kernel gradients, grouped input gradients) against the
    # all-native model.
    def loss(params, x):
        logits, _ = model.apply({**variables, "params": params}, x, train=True,
                                mutable=["batch_stats"])
        return jnp.mean(jax.nn.log_softmax(logits)[:, 0])

    # Small inputs: the all-native backward is the slow part of this test.
    small = photo_batch(32, num_random=0)[:2]
    grads = {}
    for choice in ("cpu", "xla"):
        model = jaxzoo.create_model(name, lowering=choice)
        grads[choice] = jax.jit(jax.grad(loss))(variables["params"], small)
    flat_fast = jax.tree.leaves_with_path(grads["cpu"])
    flat_native = dict(jax.tree.leaves_with_path(grads["xla"]))
    assert len(flat_fast) == len(flat_native)
    # Per tensor, relative to its norm: batch-2 train-mode BatchNorm on 1x1 maps makes single
    # elements ill-conditioned (a different summation order moves one by ~1%), not whole tensors.
    for path, g in flat_fast:
        ref = np.asarray(flat_native[path])
        error = np.linalg.norm(np.asarray(g) - ref) / (np.linalg.norm(ref) + 1e-12)
        assert error < 1e-3, (jax.tree_util.keystr(path), error)


class _TinyDepthwiseNet(nn.Module):
    """Depthwise 3x3 (stride 2) -> BN -> ReLU -> pointwise -> grouped 3x3 -> pooled linear head."""

    @nn.compact
    def __call__(self, x, train=False):
        x = layers.conv(16, 3, 2, groups=16, lowering="cpu", name="dw")(x)
        x = nn.relu(layers.BatchNorm(name="bn")(x, train))
        x = layers.conv(32, 1, lowering="cpu", name="pw")(x)
        x = layers.conv(32, 3, groups=4, lowering="cpu", name="gc")(x)
        return layers.dense(10, name="fc")(layers.global_avg_pool(x))


def _torch_tiny_depthwise_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(16, 16, 3, 2, 1, groups=16, bias=False), torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 1, bias=False),
        torch.nn.Conv2d(32, 32, 3, 1, 1, groups=4, bias=False),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10)).eval()


def test_depthwise_model_matches_torch_logits_and_gradients():
    tm = _torch_tiny_depthwise_net()
    parity.randomize_(tm, seed=1)
    sd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    hwio = lambda w: w.transpose(2, 3, 1, 0)  # noqa: E731
    variables = {
        "params": {"dw": {"kernel": hwio(sd["0.weight"])},
                   "bn": {"scale": sd["1.weight"], "bias": sd["1.bias"]},
                   "pw": {"kernel": hwio(sd["3.weight"])}, "gc": {"kernel": hwio(sd["4.weight"])},
                   "fc": {"kernel": sd["7.weight"].T, "bias": sd["7.bias"]}},
        "batch_stats": {"bn": {"mean": sd["1.running_mean"], "var": sd["1.running_var"]}},
    }
    x = np.random.default_rng(0).standard_normal((3, 15, 15, 16)).astype(np.float32)
    model = _TinyDepthwiseNet()

    def loss(params):
        logits = model.apply({**variables, "params": params}, x)
        return jnp.sum(logits * jnp.arange(10.0)), logits

    (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    tl = tm(xt)
    (tl * torch.arange(10.0)).sum().backward()
    assert_parity(logits, tl.detach().numpy())
    for ours, theirs in (("dw", "0"), ("pw", "3"), ("gc", "4")):
        ref = hwio(getattr(tm, theirs).weight.grad.numpy())
        np.testing.assert_allclose(grads[ours]["kernel"], ref, rtol=1e-4,
                                   atol=1e-5 * np.abs(ref).max(), err_msg=ours)
