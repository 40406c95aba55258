"""torchvision's augmentation ops, policies and random erasing (jaxzoo.data.augment) against
torchvision's own on real photos as PIL images (the reference scripts' backend), the policies
fed torch's random draws; and the pipeline options named after the reference's flags."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, RandomErasing, autoaugment
from torchvision.transforms import functional as F

from jaxzoo import imagenet
from jaxzoo.data import augment

GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
MAGNITUDES = {  # several per op, both signs and the ends of the policies' ranges
    "ShearX": [-0.3, 0.1, 0.99], "ShearY": [-0.99, 0.2],
    "TranslateX": [-16.7, 5.0, 32.0], "TranslateY": [-32.0, 9.9],
    "Rotate": [-15.0, 30.0, 135.0],
    "Brightness": [-0.6, 0.3, 0.99], "Color": [-0.99, 0.5], "Contrast": [-0.7, 0.99],
    "Sharpness": [-0.9, 0.5, 0.99],
    "Posterize": [1, 4, 8], "Solarize": [0.0, 100.0, 238.0, 255.0],
    "AutoContrast": [0.0], "Equalize": [0.0], "Invert": [0.0], "Identity": [0.0],
}


def _photos():
    from skimage import data as photos

    # A landscape and a portrait crop of two photos, and a gray one, at sizes a crop gets.
    return [photos.chelsea()[::2, ::2].copy(), photos.coffee()[:200, 100:260].copy(),
            photos.camera()[::4, ::4, None].copy()]


def _pil(image):
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _array(pil, channels):
    array = np.asarray(pil).astype(int)
    return array[..., None] if channels == 1 else array


def assert_close(ours, theirs, op):
    """Colour ops within 1 grey level; geometric ops equal on at least 99% of the pixels."""
    assert ours.shape == theirs.shape
    difference = np.abs(ours.astype(int) - theirs.astype(int))
    if op in GEOMETRIC:
        assert (difference == 0).mean() >= 0.99, (op, (difference == 0).mean())
    else:
        assert difference.max() <= 1, (op, difference.max())


class TorchDraws:
    """The calls the policies make on a numpy Generator, answered from torch's global generator
    with the torch call torchvision makes at that point: seeded as torchvision's was, the
    policies then choose what torchvision chose."""

    def integers(self, low, high=None, size=None):
        low, high = (0, low) if high is None else (low, high)
        value = torch.randint(low, high, (1 if size is None else size,))
        return int(value.item()) if size is None else value.numpy()

    def random(self, size=None):
        value = torch.rand((1 if size is None else size,))
        return float(value.item()) if size is None else value.numpy()

    def uniform(self, low, high):
        return torch.empty(1).uniform_(low, high).item()

    def dirichlet(self, alpha):
        return torch._sample_dirichlet(torch.tensor(alpha).expand(1, -1))[0].numpy()


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("op", list(MAGNITUDES))
def test_every_op_is_torchvisions_on_photos(op, interpolation):
    for image in _photos():
        for magnitude in MAGNITUDES[op]:
            theirs = autoaugment._apply_op(_pil(image), op, magnitude,
                                           interpolation=InterpolationMode(interpolation),
                                           fill=None)
            ours = augment.apply_op(image, op, magnitude, interpolation=interpolation)
            assert ours.dtype == np.uint8
            assert_close(ours, _array(theirs, image.shape[-1]), op)


def test_geometric_ops_fill_as_torchvision():
    image = _photos()[0]
    for op, magnitude in [("Rotate", 40.0), ("TranslateX", 30.0), ("ShearY", 0.5)]:
        theirs = autoaugment._apply_op(_pil(image), op, magnitude,
                                       interpolation=InterpolationMode.BILINEAR,
                                       fill=[255, 128, 0])
        ours = augment.apply_op(image, op, magnitude, interpolation="bilinear",
                                fill=(255, 128, 0))
        assert_close(ours, _array(theirs, 3), op)
        assert (ours.reshape(-1, 3) == (255, 128, 0)).all(-1).mean() > 0.02  # filled somewhere


def test_op_errors_name_the_choices():
    image = _photos()[0]
    with pytest.raises(ValueError, match="unknown augmentation op 'Blur'.*ShearX"):
        augment.apply_op(image, "Blur", 1.0)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        augment.apply_op(image, "Rotate", 1.0, interpolation="lanczos")
    with pytest.raises(ValueError, match="uint8"):
        augment.apply_op(image.astype(np.float32), "Rotate", 1.0)
    with pytest.raises(ValueError, match="unknown auto_augment 'trivial'.*'ta_wide'"):
        augment.make_policy("trivial")


@pytest.mark.parametrize("size", [(32, 32), (176, 176), (224, 224), (299, 250), (518, 518)])
def test_magnitude_tables_are_torchvisions_bit_for_bit(size):
    # int(TranslateX) and Solarize's threshold need the float32 values torch.linspace makes.
    height, width = size
    tables = [
        ("aa", 10, autoaugment.AutoAugment()._augmentation_space(10, size)),
        ("ra", 31, autoaugment.RandAugment()._augmentation_space(31, size)),
        ("ta_wide", 31, autoaugment.TrivialAugmentWide()._augmentation_space(31)),
        ("augmix", 10, autoaugment.AugMix()._augmentation_space(10, size)),
    ]
    for policy, bins, theirs in tables:
        ours = augment.augmentation_space(policy, bins, height, width)
        assert list(ours) == list(theirs), policy  # the op drawn is an index: same order
        for op, (magnitudes, signed) in theirs.items():
            assert ours[op][1] == signed
            if magnitudes.ndim == 0:
                assert ours[op][0] is None
            else:
                np.testing.assert_array_equal(ours[op][0], magnitudes.numpy(),
                                              err_msg=f"{policy} {op}")


def _policies():
    bilinear = InterpolationMode.BILINEAR
    pairs = [(autoaugment.AutoAugment(autoaugment.AutoAugmentPolicy(name), bilinear),
              augment.AutoAugment(name, "bilinear")) for name in augment.AUTO_AUGMENT_POLICIES]
    pairs += [(autoaugment.RandAugment(magnitude=m, interpolation=bilinear),
               augment.RandAugment(magnitude=m, interpolation="bilinear")) for m in (9, 15)]
    pairs.append((autoaugment.TrivialAugmentWide(interpolation=bilinear),
                  augment.TrivialAugmentWide(interpolation="bilinear")))
    return pairs


@pytest.mark.parametrize("index", range(len(_policies())),
                         ids=["aa_imagenet", "aa_cifar10", "aa_svhn", "ra9", "ra15", "ta_wide"])
def test_policies_with_torchs_draws_are_torchvisions(index):
    theirs, ours = _policies()[index]
    image = _photos()[0]
    chosen = set()
    for seed in range(30):
        torch.manual_seed(seed)
        expected = _array(theirs(_pil(image)), 3)
        after_theirs = torch.rand(1).item()
        torch.manual_seed(seed)
        got = ours(image, TorchDraws())
        assert torch.rand(1).item() == after_theirs  # the same number of draws, none extra
        difference = np.abs(got.astype(int) - expected)
        # Geometric ops are PIL's own calls here: the whole image agrees within a grey level.
        assert (difference <= 1).all(), (seed, difference.max())
        chosen.add(got.tobytes())
    assert len(chosen) > 10  # the draws do change the images


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_geometric_ops_of_the_tensor_backend_are_torchvisions_on_tensors(interpolation):
    # What torchvision's AugMix runs: its ops on tensors (affine_grid + grid_sample).
    for image in _photos()[:2]:
        tensor = F.pil_to_tensor(_pil(image))
        for op in sorted(GEOMETRIC):
            for magnitude in MAGNITUDES[op]:
                for fill in (None, [255.0, 128.0, 0.0]):
                    theirs = autoaugment._apply_op(
                        tensor, op, magnitude, interpolation=InterpolationMode(interpolation),
                        fill=fill).permute(1, 2, 0).numpy()
                    ours = augment.apply_op(image, op, magnitude, interpolation=interpolation,
                                            fill=fill, backend="tensor")
                    assert_close(ours, theirs, op)
                    assert np.abs(ours.astype(int) - theirs).max() <= 1


def test_augmix_with_torchs_draws_is_torchvisions():
    # torchvision's AugMix runs its ops on the tensor backend: the geometric ones are that
    # backend's here too; its colour ops truncate where PIL's round (a grey level), which a
    # later Solarize or Equalize can turn into more on a few pixels (measured: >= 99.3% of
    # the pixels within a grey level over 40 draws).
    theirs = autoaugment.AugMix(severity=3, interpolation=InterpolationMode.BILINEAR)
    ours = augment.AugMix(severity=3, interpolation="bilinear")
    image = _photos()[0]
    for seed in range(12):
        torch.manual_seed(seed)
        expected = _array(theirs(_pil(image)), 3)
        after_theirs = torch.rand(1).item()
        torch.manual_seed(seed)
        got = ours(image, TorchDraws())
        assert torch.rand(1).item() == after_theirs
        difference = np.abs(got.astype(int) - expected)
        assert (difference <= 1).mean() >= 0.99, (seed, (difference <= 1).mean())


def test_trivial_augment_draws_ops_and_bins_uniformly_from_a_numpy_generator(monkeypatch):
    calls = []
    monkeypatch.setattr(augment, "apply_op", lambda image, op, magnitude, **_: (
        calls.append((op, magnitude)) or image))
    policy, rng = augment.TrivialAugmentWide(), np.random.default_rng(0)
    image = np.zeros((8, 8, 3), np.uint8)
    for _ in range(2800):
        policy(image, rng)
    ops = [op for op, _ in calls]
    counts = np.array([ops.count(op) for op in augment.augmentation_space("ta_wide", 31)])
    expected = len(calls) / len(counts)
    assert ((counts - expected) ** 2 / expected).sum() < 35  # chi-square, 13 dof: p < 0.001
    rotations = np.array([m for op, m in calls if op == "Rotate"])
    assert 0.35 < (rotations < 0).mean() < 0.65  # a random sign
    assert len(set(np.abs(rotations))) > 25  # of the 31 bins


def _normalized_tensor(image):
    return F.normalize(F.to_tensor(image), imagenet.MEAN, imagenet.STD)


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_random_erasing_with_torchs_draws_erases_torchvisions_box(p):
    from jaxzoo.data import pipeline

    image = _photos()[1]
    reference = RandomErasing(p=p, value=0)  # the reference's, on the normalized tensor
    ours = augment.RandomErasing(p)
    erased = 0
    for seed in range(20):
        torch.manual_seed(seed)
        expected = reference(_normalized_tensor(image)).permute(1, 2, 0).numpy()
        torch.manual_seed(seed)
        box = ours.box(*image.shape[:2], TorchDraws())
        box = box or (0, 0, 0, 0)
        erased += box[2] > 0
        # float32 batches: erased after the normalization, to exactly 0.
        normalized = pipeline.normalize(pipeline.tf.constant(image))
        got = pipeline.erase(normalized, box, pipeline.erase_value("float32", 3)).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert ((got == 0).all(-1)).sum() == box[2] * box[3]
        # uint8 batches: erased with the rounded mean pixel, normalized later on the device.
        pixels = pipeline.erase(pipeline.tf.constant(image), box,
                                pipeline.erase_value("uint8", 3))
        np.testing.assert_allclose(pipeline.normalize(pixels).numpy(), expected, atol=0.01)
    assert (erased == 20) if p == 1.0 else (3 < erased < 17)


def test_random_erasing_gives_up_as_torchvision_when_no_box_fits():
    # A 1-pixel-high image: every box is as high as the image, so the 10 tries fail and
    # torchvision "erases" the image with itself; the image stays as it is here too.
    image = torch.rand(3, 1, 50)
    torch.manual_seed(0)
    np.testing.assert_array_equal(RandomErasing(p=1.0, value=0)(image.clone()), image)
    torch.manual_seed(0)
    assert augment.RandomErasing(1.0).box(1, 50, TorchDraws()) is None
