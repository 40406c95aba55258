"""layers.max_pool against torch.nn.functional.max_pool2d: outputs and gradients, ties included,
under both lowerings."""
import jax
import numpy as np
import pytest
import torch

from jaxzoo.models import layers

# (kernel, stride, padding, ceil_mode, input height, width): the zoo's pools, odd sizes too.
POOLS = [
    (3, 2, 1, False, 9, 10),  # ResNet stem
    (3, 2, 0, True, 9, 12),  # GoogLeNet, ceil mode
    (3, 1, 1, True, 7, 7),  # GoogLeNet's pool branch
    (2, 2, 0, True, 7, 8),  # GoogLeNet before inception 5
    (3, 2, 0, False, 11, 11),  # Inception v3
]


@pytest.mark.parametrize("kernel,stride,padding,ceil_mode,h,w", POOLS)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("lowering", ["cpu", "xla"])
def test_max_pool_value_and_gradient_match_torch(kernel, stride, padding, ceil_mode, h, w, ties,
                                                 lowering):
    rng = np.random.default_rng(kernel * 100 + h)
    x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    if ties:  # a few distinct values: most windows hold their max more than once
        x = np.round(x).clip(-1, 1)
    pool = jax.jit(lambda x: layers.max_pool(x, kernel, stride, padding, ceil_mode,
                                             lowering=lowering))
    out_shape = jax.eval_shape(pool, x).shape
    g = rng.standard_normal(out_shape).astype(np.float32)
    out, vjp = jax.vjp(pool, x)
    (grad,) = vjp(g)

    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    yt = torch.nn.functional.max_pool2d(xt, kernel, stride, padding, ceil_mode=ceil_mode)
    yt.backward(torch.from_numpy(g).permute(0, 3, 1, 2))
    np.testing.assert_array_equal(np.asarray(out), yt.detach().permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(np.asarray(grad), xt.grad.permute(0, 2, 3, 1).numpy(),
                               rtol=1e-6, atol=1e-6)
