"""Dense conv layers on XLA:CPU: native conv vs im2col + one matmul, forward and fwd+bwd (ms).

    python benchmarks/dense_conv_lowerings.py

Each row: batch, input side, channels in -> out, kernel, stride; the mean of 10 calls after a
warm-up call, gradient of sum(y**2) with respect to both input and kernel.
"""
import time

import jax
import jax.numpy as jnp
from jax import lax

from jaxzoo.models import lowering

SHAPES = [  # (batch, side, in, out, kernel, stride)
    (32, 8, 64, 64, 3, 1), (32, 8, 64, 128, 3, 2), (32, 4, 128, 128, 3, 1),
    (32, 4, 128, 256, 3, 2), (32, 2, 256, 256, 3, 1), (32, 2, 256, 512, 3, 2),
    (32, 1, 512, 512, 3, 1), (16, 32, 64, 64, 1, 1), (16, 8, 1024, 256, 1, 1),
    (16, 32, 64, 64, 3, 1), (16, 16, 128, 128, 3, 1), (16, 56, 64, 64, 3, 1),
]


def _ms(fn, *args, calls=10):
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls * 1e3


def main():
    print("| conv | native fwd / fwd+bwd | im2col fwd / fwd+bwd |\n|---|---|---|")
    for n, side, cin, cout, k, s in SHAPES:
        x, w = jnp.ones((n, side, side, cin)), jnp.full((k, k, cin, cout), 0.01)
        pads = ((k // 2, k // 2),) * 2
        convs = {
            "native": lambda x, w: lax.conv_general_dilated(
                x, w, (s, s), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")),
            "im2col": lambda x, w: lowering._im2col_conv(
                x, w, (s, s), pads, (1, 1), (1, 1), 1, None, None),
        }
        cells = []
        for conv in convs.values():
            forward = jax.jit(conv)
            grad = jax.jit(jax.grad(lambda x, w, c=conv: jnp.sum(c(x, w) ** 2), argnums=(0, 1)))
            cells.append(f"{_ms(forward, x, w):.1f} / {_ms(grad, x, w):.1f}")
        print(f"| b{n}, {side}x{side}, {cin} -> {cout}, {k}x{k} s{s} | " + " | ".join(cells) + " |",
              flush=True)


if __name__ == "__main__":
    main()
