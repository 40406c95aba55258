"""The input pipeline's options from torchvision's reference scripts: augmentation policies and
random erasing in the epoch's batches (deterministic, resumable), evaluation's sizes, and
repeated augmentation against the reference's RASampler."""
import numpy as np
import pytest
import torch
from PIL import Image
from test_data import SHAPES, load, tfds_dir  # noqa: F401  (tfds_dir: a fixture)

from jaxzoo.data import augment, pipeline


# --------------------------------------------------------------------------- policies, erasing


def test_policy_runs_after_the_flip_on_the_same_crops_drawn_per_example(tfds_dir):
    plain = next(load(data_dir=tfds_dir, image_dtype="uint8").train_batches(2))
    data = load(data_dir=tfds_dir, image_dtype="uint8", auto_augment="ta_wide")
    augmented = next(data.train_batches(2))
    np.testing.assert_array_equal(plain["label"], augmented["label"])
    # The crops and flips are those of the run without a policy; the policy draws from a
    # generator seeded by (seed, epoch, process, position), as pipeline._augment seeds it.
    seed = pipeline._seed(data.seed, 2, data.process_index, 3)
    policy = augment.TrivialAugmentWide(interpolation="bilinear")
    changed = 0
    for position, (image, got) in enumerate(zip(plain["image"], augmented["image"])):
        rng = np.random.default_rng(np.random.SeedSequence([seed, position]).spawn(2)[0])
        np.testing.assert_array_equal(got, policy(image, rng))
        changed += not np.array_equal(got, image)
    assert changed > 16  # Identity and ops that change nothing are rare


@pytest.mark.parametrize("image_dtype", ["float32", "uint8"])
def test_augmented_epochs_are_deterministic_and_resume_exactly(tfds_dir, image_dtype):
    options = {"data_dir": tfds_dir, "image_dtype": image_dtype, "auto_augment": "augmix",
               "random_erase": 1.0, "seed": 5}
    epoch = list(load(**options).train_batches(1))
    again = list(load(**options).train_batches(1))
    resumed = list(load(**options).train_batches(1, start_step=4))
    for a, b in zip(epoch, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(epoch[4:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    # Every image has its erased box: the value the reference's normalized 0 is here.
    fill = pipeline.erase_value(image_dtype, 3)
    for image in epoch[0]["image"]:
        erased = (image == fill).all(-1)
        rows, cols = np.nonzero(erased)
        assert erased.sum() >= 0.02 * 32 * 32 * 0.5  # scale 0.02 of the area, rounded sides
        box = erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.mean() > 0.95  # one rectangle
    assert not np.array_equal(epoch[0]["image"],
                              next(load(**{**options, "seed": 6}).train_batches(1))["image"])


def test_options_have_clear_errors(tfds_dir):
    with pytest.raises(ValueError, match="unknown auto_augment 'autoaugment'"):
        load(data_dir=tfds_dir, auto_augment="autoaugment")
    with pytest.raises(ValueError, match="RandAugment's magnitude=31"):
        load(data_dir=tfds_dir, auto_augment="ra", ra_magnitude=31)
    with pytest.raises(ValueError, match="AugMix's severity"):
        load(data_dir=tfds_dir, auto_augment="augmix", augmix_severity=11)
    with pytest.raises(ValueError, match="probability must be in"):
        load(data_dir=tfds_dir, random_erase=1.5)
    with pytest.raises(ValueError, match="ra_reps=3.*floor\\(240 // 256.*use ra_reps=0"):
        load(data_dir=tfds_dir, ra_reps=3)
    with pytest.raises(ValueError, match="eval_resize_size=20 is smaller than the crop, 24"):
        load(data_dir=tfds_dir, eval_crop_size=24, eval_resize_size=20)


# --------------------------------------------------------------------------- sizes


def test_evaluation_crop_and_resize_and_training_interpolation(tfds_dir):
    data = load(data_dir=tfds_dir, image_dtype="uint8", eval_crop_size=24, eval_resize_size=28)
    assert data.eval_transform == "Resize(28, bilinear) + CenterCrop(24)"
    val = list(data.val_batches())
    assert {b["image"].shape[1:] for b in val} == {(24, 24, 3)}
    assert sum(int(b["mask"].sum()) for b in val) == data.num_val
    assert next(data.train_batches(0))["image"].shape[1:] == (32, 32, 3)  # the training crop
    # Without augmentation, training batches take the training size (default resize).
    plain = load(data_dir=tfds_dir, augment=False, eval_crop_size=24, eval_resize_size=28)
    assert next(plain.train_batches(0))["image"].shape[1:] == (32, 32, 3)

    bilinear = next(load(data_dir=tfds_dir, image_dtype="uint8").train_batches(0))["image"]
    bicubic = next(load(data_dir=tfds_dir, image_dtype="uint8",
                        interpolation="bicubic").train_batches(0))["image"]
    difference = np.abs(bilinear.astype(int) - bicubic)
    assert 0 < difference.mean() < 8  # the same crops, resampled otherwise


def test_config_fields_reach_the_pipeline(tfds_dir):
    from jaxzoo.configs import default

    from jaxzoo.train import loop

    config = default.get_default_config("resnet18_cifar")
    defaults = {k: config[k] for k in ("auto_augment", "ra_magnitude", "augmix_severity",
                                       "random_erase", "interpolation", "val_resize_size",
                                       "val_crop_size", "ra_reps")}
    assert defaults == {"auto_augment": "", "ra_magnitude": 9, "augmix_severity": 3,
                        "random_erase": 0.0, "interpolation": "bilinear", "val_resize_size": 0,
                        "val_crop_size": 0, "ra_reps": 0}
    config.update(dataset=SHAPES, data_dir=tfds_dir, auto_augment="ra", ra_magnitude=12,
                  random_erase=0.25, interpolation="bicubic", val_crop_size=28,
                  val_resize_size=30)
    data = loop._load_data(config)
    assert isinstance(data.policy, augment.RandAugment) and data.policy.magnitude == 12
    assert data.policy.interpolation == "bicubic" and data.erasing.p == 0.25
    assert data.eval_transform == "Resize(30, bicubic) + CenterCrop(28)"
    assert data.ra_reps == 0 and data.steps_per_epoch == 240 // config.batch_size


# --------------------------------------------------------------------------- repeated augmentation


def reference_ra_sampler(num_examples, num_replicas, rank, seed, epoch, repetitions):
    """The reference's RASampler (references/classification/sampler.py) in torch ops: its
    randperm seeded with seed + epoch, each index repeated, padded by wrapping, strided by
    process, cut to a multiple of 256 over the processes."""
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    indices = torch.randperm(num_examples, generator=generator).repeat_interleave(repetitions)
    total = -(-num_examples * repetitions // num_replicas) * num_replicas
    indices = torch.cat([indices, indices[:total - len(indices)]])
    selected = num_examples // 256 * 256 // num_replicas
    return indices[rank:total:num_replicas][:selected].tolist()


@pytest.mark.parametrize("num_examples", [256, 300, 1000])
@pytest.mark.parametrize("process_count,repetitions", [(1, 3), (2, 2), (2, 3), (4, 3), (3, 4)])
def test_ra_positions_are_the_reference_samplers_lists(num_examples, process_count, repetitions):
    for epoch in (0, 1):
        generator = torch.Generator()
        generator.manual_seed(7 + epoch)
        order = torch.randperm(num_examples, generator=generator).numpy()
        lists = []
        for rank in range(process_count):
            positions = pipeline.ra_positions(num_examples, repetitions, rank, process_count)
            assert [int(order[p]) for p in positions] == reference_ra_sampler(
                num_examples, process_count, rank, 7, epoch, repetitions)
            assert np.all(np.diff(positions) >= 0)  # what the pipeline's counts rely on
            lists.append(positions)
        assert np.bincount(np.concatenate(lists)).max() <= repetitions
        if process_count >= repetitions:  # an example's copies go to different processes
            assert all(len(set(positions)) == len(positions) for positions in lists)


def _id_folder(root, count):
    """train/{a,b}/NNN.png: uniform 8x8 images whose pixels spell their number (R + 256 G)."""
    for i in range(count):
        folder = root / "train" / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i % 256, i // 256, 7)).save(folder / f"{i:03d}.png")
    for name in "ab":
        (root / "val" / name).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (0, 0, 0)).save(root / "val" / name / "0.png")


def _ids(batches):
    return [int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])
            for batch in batches for image in batch["image"]]


def test_repeated_augmentation_reads_the_samplers_lists_and_resumes(tmp_path):
    _id_folder(tmp_path, 300)
    options = {"dataset": f"folder:{tmp_path}", "image_size": 8, "global_batch_size": 16,
               "image_dtype": "uint8", "augment": False, "ra_reps": 3, "seed": 1}
    # One process checks the folder first: two simulated in this one process would each wait
    # for the other's half of the check (data/manifest.py); then both find every verdict.
    load(**options)
    shares = [load(**options, process_index=rank, process_count=2) for rank in range(2)]
    # 300 // 256 * 256 / 2 = 128 examples per process and epoch: 16 steps of 8.
    assert [s.steps_per_epoch for s in shares] == [16, 16]
    epoch = 3
    # The shuffled order of all examples, the same in every process (pipeline seed 4).
    order = _ids([{"image": np.stack([
        np.asarray(Image.open(e["path"].decode())) for e in
        shares[0]._source.train_all(pipeline._seed(1, epoch, 4)).as_numpy_iterator()])}])
    assert order == _ids([{"image": np.stack([
        np.asarray(Image.open(e["path"].decode())) for e in
        shares[1]._source.train_all(pipeline._seed(1, epoch, 4)).as_numpy_iterator()])}])
    assert sorted(order) == list(range(300))
    for rank, data in enumerate(shares):
        got = _ids(data.train_batches(epoch))
        assert got == [order[p] for p in pipeline.ra_positions(300, 3, rank, 2)]
        assert _ids(data.train_batches(epoch, start_step=5)) == got[5 * 8:]
    # Each example comes three times in a row over the two processes: 0 1 | 0 1 | ...
    first, second = (_ids(s.train_batches(epoch))[:3] for s in shares)
    assert first[0] == second[0] == first[1] and second[1] == first[2] == second[2]


def test_repeated_augmentation_augments_each_copy_anew_and_resumes_bitwise(tmp_path):
    from skimage import data as photos

    for i in range(260):  # photo crops, so that two augmentations differ visibly
        folder = tmp_path / "train" / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        y, x = divmod(i, 20)
        Image.fromarray(photos.chelsea()[y * 10:y * 10 + 64, x * 10:x * 10 + 64]).save(
            folder / f"{i:03d}.png")
    for name in "ab":
        (tmp_path / "val" / name).mkdir(parents=True)
        Image.fromarray(photos.coffee()[:64, :64]).save(tmp_path / "val" / name / "0.png")
    options = {"dataset": f"folder:{tmp_path}", "image_size": 32, "global_batch_size": 16,
               "image_dtype": "uint8", "auto_augment": "ta_wide", "ra_reps": 4}
    data = load(**options)  # one process: the four copies come one after another
    epoch = list(data.train_batches(0))
    assert len(epoch) == 256 // 16
    first = epoch[0]["image"][:4]
    assert len({image.tobytes() for image in first}) == 4  # four crops and policies
    assert len(set(epoch[0]["label"][:4].tolist())) == 1
    for a, b in zip(epoch[3:], load(**options).train_batches(0, start_step=3), strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
