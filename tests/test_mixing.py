"""MixUp / CutMix (jaxzoo.train.mixing) against torchvision.transforms.v2's, fed the same draws."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from jaxzoo.train import mixing

NUM_CLASSES = 5


def _batch(seed, n=6, h=12, w=10):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, h, w, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
    return images, labels


def _torch_mixed(transform, images, labels):
    out_images, out_targets = transform(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
                                        torch.from_numpy(labels.astype(np.int64)))
    return out_images.numpy().transpose(0, 2, 3, 1), out_targets.numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixup_equals_torchvision_v2_with_the_same_lambda(seed):
    images, labels = _batch(seed)
    params = mixing.draw(jax.random.PRNGKey(seed), images.shape, mixup_alpha=0.2,
                         cutmix_alpha=0.0)
    assert not bool(params["cutmix"])
    lam = float(params["lam"])
    ours = mixing.mix(jnp.asarray(images), jax.nn.one_hot(labels, NUM_CLASSES), params)

    mixup = v2.MixUp(alpha=0.2, num_classes=NUM_CLASSES)
    mixup.make_params = lambda flat_inputs: {"lam": lam}  # the same draw
    theirs = _torch_mixed(mixup, images, labels)
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-6, rtol=0)
    assert 0.0 < lam < 1.0 and not np.allclose(ours[0], images)  # it mixed


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cutmix_equals_torchvision_v2_with_the_same_box(seed):
    images, labels = _batch(seed)
    params = mixing.draw(jax.random.PRNGKey(seed), images.shape, mixup_alpha=0.0,
                         cutmix_alpha=1.0)
    assert bool(params["cutmix"])
    box = tuple(int(v) for v in params["box"])
    area = (box[2] - box[0]) * (box[3] - box[1])
    ours = mixing.mix(jnp.asarray(images), jax.nn.one_hot(labels, NUM_CLASSES), params)

    cutmix = v2.CutMix(alpha=1.0, num_classes=NUM_CLASSES)
    cutmix.make_params = lambda flat_inputs: {
        "box": box, "lam_adjusted": float(1.0 - area / (images.shape[1] * images.shape[2]))}
    theirs = _torch_mixed(cutmix, images, labels)
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-6, rtol=0)
    assert area == 0 or not np.allclose(ours[0], images)  # a box was pasted


def test_cutmix_box_is_v2s_for_the_same_centre_and_lambda(monkeypatch):
    """v2.CutMix.make_params with torch's draws replaced by ours: the same box."""
    h, w = 12, 10
    image = torch.zeros(2, 3, h, w)

    class Fixed:  # stands in for CutMix's Beta distribution
        def __init__(self, lam):
            self.lam = lam

        def sample(self, shape):
            return torch.tensor(self.lam)

    for seed in range(20):
        rng = np.random.default_rng(seed)
        lam, r_x, r_y = float(rng.uniform()), int(rng.integers(w)), int(rng.integers(h))
        cutmix = v2.CutMix(alpha=1.0, num_classes=NUM_CLASSES)
        cutmix._dist = Fixed(lam)
        draws = iter([torch.tensor([r_x]), torch.tensor([r_y])])  # r_x, then r_y, as v2 draws
        monkeypatch.setattr(torch, "randint", lambda *a, draws=draws, **k: next(draws))
        theirs = cutmix.make_params([image])
        monkeypatch.undo()
        ours = mixing.cutmix_box(np.float32(lam), r_x, r_y, h, w)
        assert tuple(int(v) for v in ours) == tuple(theirs["box"]), (seed, lam, r_x, r_y)


def test_random_choice_uses_both_and_mixes_each_shard_on_its_own():
    """Both alphas: some batches get MixUp, some CutMix (v2.RandomChoice); the draws follow the
    key; targets stay distributions."""
    images, labels = _batch(0)
    chosen = set()
    for seed in range(16):
        params = mixing.draw(jax.random.PRNGKey(seed), images.shape, mixup_alpha=0.2,
                             cutmix_alpha=1.0)
        chosen.add(bool(params["cutmix"]))
        _, targets = mixing.mix_batch(jax.random.PRNGKey(seed), jnp.asarray(images),
                                      jnp.asarray(labels), num_classes=NUM_CLASSES,
                                      mixup_alpha=0.2, cutmix_alpha=1.0)
        np.testing.assert_allclose(np.asarray(targets).sum(1), 1.0, atol=1e-6)
    assert chosen == {True, False}


def test_a_disabled_mix_is_an_error():
    with pytest.raises(ValueError, match="mixup_alpha > 0 or cutmix_alpha > 0"):
        mixing.draw(jax.random.PRNGKey(0), (2, 4, 4, 3), mixup_alpha=0.0, cutmix_alpha=0.0)


@pytest.mark.slow
def test_two_devices_mix_their_own_shards_at_parity_with_torch():
    """``python -m jaxzoo check --train-steps`` on two devices with MixUp/CutMix: each device
    mixes its half of the batch with its own draws, and torch, mixing each half with the same
    draws (transforms.v2), trains to the same losses and weights."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", PYTHONPATH=root)
    sets = ["optimizer=sgd", "learning_rate=1e-4", "warmup_epochs=0", "mixup_alpha=0.2",
            "cutmix_alpha=1.0", "label_smoothing=0.1"]
    out = subprocess.run([sys.executable, "-m", "jaxzoo", "check", "resnet18", "--train-steps",
                          "3", "--batch", "8", "--size", "32", "--reference", "none",
                          *[arg for s in sets for arg in ("--set", s)]],
                         env=env, capture_output=True, text=True, timeout=900, cwd=root,
                         check=False)
    print(out.stdout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "on 2 cpu device(s)" in out.stdout and "per device share of 4" in out.stdout
    assert out.stdout.rstrip().splitlines()[-1].startswith("PASS")
