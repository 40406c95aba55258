"""MixUp and CutMix inside the train step: torchvision.transforms.v2's ``MixUp`` and ``CutMix``,
one of them chosen at random per batch (``RandomChoice``) as the reference script's
``get_mixup_cutmix`` does (``references/classification/transforms.py``).

The reference applies them in the data loader's ``collate_fn``, to each GPU's batch of
normalized images; here each device mixes its own shard of the (normalized) batch on the
device, with its own draws, so a batch is paired with its neighbours within the shard as on
each GPU. transforms.v2 pairs each example with the one before it in the batch
(``roll(1, 0)``: example 0 with the last), not a random permutation:

* MixUp: ``lam ~ Beta(alpha, alpha)``; ``x = roll(x) * (1 - lam) + x * lam``, and the same for
  the one-hot targets.
* CutMix: ``lam ~ Beta(alpha, alpha)``, a centre ``(r_x, r_y)`` uniform over the pixels, half
  sizes ``int(0.5 * sqrt(1 - lam) * W)`` and ``... * H``, the box clipped to the image; inside it
  the pixels of ``roll(x)``; the targets mixed with ``1 - box_area / (W * H)``.

The loss then takes these soft targets as ``CrossEntropyLoss(label_smoothing=...)`` takes them:
``(1 - smoothing) * target + smoothing / num_classes`` (``optax.smooth_labels``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

MIX_STREAM = 0x6D6978  # "mix": its keys are folded from the step's dropout key with this


def key_for(rng: jax.Array, step, device_index) -> jax.Array:
    """The key of one device's draws at global ``step``: the train step's dropout key for that
    step and device (``fold_in(fold_in(rng, step), device_index)``) folded with ``MIX_STREAM``,
    so dropout's draws stay what they were without mixing."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(rng, step), device_index),
                              MIX_STREAM)


def draw(key: jax.Array, image_shape, *, mixup_alpha: float, cutmix_alpha: float) -> dict:
    """The random choices for one batch of ``image_shape`` (N, H, W, C): ``cutmix`` (whether
    CutMix was chosen), ``lam`` (the Beta draw) and the CutMix box ``(x1, y1, x2, y2)``."""
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        raise ValueError("draw needs mixup_alpha > 0 or cutmix_alpha > 0")
    k_choice, k_mixup, k_cutmix, k_x, k_y = jax.random.split(key, 5)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        # RandomChoice([MixUp, CutMix]): uniform over the two.
        cutmix = jax.random.randint(k_choice, (), 0, 2) == 1
    else:
        cutmix = jnp.asarray(cutmix_alpha > 0)
    lam_mixup = jax.random.beta(k_mixup, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else 1.0
    lam_cutmix = jax.random.beta(k_cutmix, cutmix_alpha, cutmix_alpha) \
        if cutmix_alpha > 0 else 1.0
    _, height, width, _ = image_shape
    r_x = jax.random.randint(k_x, (), 0, width)
    r_y = jax.random.randint(k_y, (), 0, height)
    return {"cutmix": cutmix, "lam": jnp.where(cutmix, lam_cutmix, lam_mixup).astype(jnp.float32),
            "box": cutmix_box(lam_cutmix, r_x, r_y, height, width)}


def cutmix_box(lam, r_x, r_y, height: int, width: int) -> jax.Array:
    """CutMix's box ``[x1, y1, x2, y2]`` around ``(r_x, r_y)`` for ``lam``, as v2.CutMix
    computes it (half sizes truncated to ints, then clipped to the image)."""
    r = 0.5 * jnp.sqrt(1.0 - jnp.asarray(lam, jnp.float32))
    r_w_half = jnp.floor(r * width).astype(jnp.int32)    # int() of a non-negative number
    r_h_half = jnp.floor(r * height).astype(jnp.int32)
    return jnp.stack([jnp.maximum(r_x - r_w_half, 0), jnp.maximum(r_y - r_h_half, 0),
                      jnp.minimum(r_x + r_w_half, width), jnp.minimum(r_y + r_h_half, height)])


def mix(images: jax.Array, targets: jax.Array, params: dict) -> tuple[jax.Array, jax.Array]:
    """``(images, targets)`` mixed with ``params`` (``draw``): NHWC float images, targets as
    one-hot (or already soft) float rows."""
    rolled_images, rolled_targets = jnp.roll(images, 1, axis=0), jnp.roll(targets, 1, axis=0)
    lam = params["lam"]

    def mixup(_):
        # v2.MixUp: inpt.roll(1, 0).mul_(1.0 - lam).add_(inpt.mul(lam)), images and targets alike.
        return (rolled_images * (1.0 - lam) + images * lam,
                rolled_targets * (1.0 - lam) + targets * lam)

    def cutmix(_):
        _, height, width, _ = images.shape
        x1, y1, x2, y2 = params["box"]
        rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
        inside = (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)
        mixed = jnp.where(inside[None, :, :, None], rolled_images, images)
        lam_adjusted = 1.0 - ((x2 - x1) * (y2 - y1)).astype(jnp.float32) / (width * height)
        return mixed, rolled_targets * (1.0 - lam_adjusted) + targets * lam_adjusted

    return lax.cond(params["cutmix"], cutmix, mixup, None)


def mix_batch(key: jax.Array, images: jax.Array, labels: jax.Array, *, num_classes: int,
              mixup_alpha: float, cutmix_alpha: float) -> tuple[jax.Array, jax.Array]:
    """One batch (a device's shard) mixed as the reference's collate function mixes it:
    ``(images, soft targets)``."""
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    params = draw(key, images.shape, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    return mix(images.astype(jnp.float32), targets, params)
