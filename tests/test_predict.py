"""Using trained and converted models: predict (CLI and Python), evaluate, export to torchvision.

Two workdirs are shared by the tests: inception10 trained on images drawn by the built-in shapes
dataset (it has to learn; evaluated on its held-out images and on fresh ones), and resnet18
weights from torchvision (random, randomized BatchNorm statistics) with a new four-class head,
saved as training saves them: it has a torchvision counterpart to export to and compare with.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from jaxzoo.__main__ import main
from jaxzoo.convert import parity
from jaxzoo.data import shapes
from jaxzoo.predict import Predictor, imagenet_class_names
from jaxzoo.train import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RENDER_SIZE = 32
TRAIN_PER_CLASS, VAL_PER_CLASS = 500, 15
FRESH_SEED = 999  # the training images are drawn with seeds (0, split, label, i)
RESNET_CLASSES = ["astronaut", "cat", "coffee", "rocket"]
pytestmark = pytest.mark.slow  # a training run and subprocesses shared by the module


@pytest.fixture(scope="module", autouse=True)
def _native_convolutions():
    """XLA:CPU compiles these small models several times faster with its native convolution
    than with jaxzoo's CPU lowering of convs on small maps (tested in test_conv_lowering; it
    changes speed, not results), and this module compiles many of them: the trainer and the
    predictor build their models with the "xla" lowering here."""
    previous = os.environ.get("JAXZOO_LOWERING")
    os.environ["JAXZOO_LOWERING"] = "xla"
    yield
    if previous is None:
        del os.environ["JAXZOO_LOWERING"]
    else:
        os.environ["JAXZOO_LOWERING"] = previous


def render(kind: int, seed) -> np.ndarray:
    return shapes.render(shapes.CLASS_NAMES[kind], RENDER_SIZE, np.random.default_rng(seed))


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """inception10 trained on a folder of shapes images (train/CLASS/*.png, val/CLASS/*.png)."""
    from jaxzoo.configs.default import get_default_config

    root = tmp_path_factory.mktemp("shapes")
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for label, name in enumerate(shapes.CLASS_NAMES):
            os.makedirs(root / "data" / split / name)
            for i in range(per_class):
                image = render(label, (0, split == "val", label, i))
                Image.fromarray(image).save(root / "data" / split / name / f"{i}.png",
                                            compress_level=1)
    config = get_default_config("inception10", "cifar")
    config.update(dict(dataset=f"folder:{root / 'data'}", image_size=16, augment=False,
                       batch_size=32, num_epochs=5, learning_rate=1e-2, warmup_epochs=0.3,
                       checkpoints_to_keep=1))
    train_and_evaluate(config, str(root / "run"))
    return root / "run", root / "data"


@pytest.fixture(scope="module")
def torchvision_weights(tmp_path_factory):
    """A torchvision resnet18 state dict (1000 classes) with random weights and BatchNorm
    statistics, and the torch model."""
    torch_model = parity.torchvision_model("resnet18")
    parity.randomize_(torch_model, seed=3)
    path = tmp_path_factory.mktemp("torchvision") / "resnet18.pth"
    torch.save(torch_model.state_dict(), path)
    return path, torch_model


def write_run(workdir, config, class_names, checkpoints):
    """A workdir as training leaves it: config, class names, and ``(step, val_accuracy, state)``
    checkpoints saved by the training code in one session."""
    from jaxzoo.train import checkpoint

    os.makedirs(workdir)
    with open(workdir / "config.json", "w") as f:
        f.write(config.to_json_best_effort())
    with open(workdir / "class_names.json", "w") as f:
        json.dump({str(i): name for i, name in enumerate(class_names)}, f)
    manager = checkpoint.create_manager(str(workdir), config.checkpoints_to_keep)
    for step, accuracy, state in checkpoints:
        checkpoint.save(manager, state.replace(step=step), {
            "epoch": step, "epoch_step": 1, "step": step, "val_accuracy": accuracy,
            "best_val_accuracy": accuracy})
    manager.wait_until_finished()
    manager.close()
    return workdir


@pytest.fixture(scope="module")
def resnet_state(torchvision_weights):
    """resnet18 set up to fine-tune the head of ``torchvision_weights`` for four classes, as
    training does (new head; the optimizer keeps state for the head only), and its train state."""
    import jax
    from jaxzoo.configs.default import get_default_config

    from jaxzoo import create_model
    from jaxzoo.train.state import create_train_state, initial_variables

    config = get_default_config("resnet18")
    config.update(dict(image_size=32, init_from=str(torchvision_weights[0]), trainable="head",
                       checkpoints_to_keep=1))
    model = create_model("resnet18", num_classes=len(RESNET_CLASSES))
    variables = initial_variables(config, model, len(RESNET_CLASSES), jax.random.PRNGKey(0),
                                  config.init_from, log=lambda *a: None)
    return config, create_train_state(config, model, variables, 10, jax.random.PRNGKey(1))


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory, resnet_state):
    """A resnet18 workdir with one checkpoint. (No training steps: the inception10 run covers
    training; this one needs a torchvision counterpart.)"""
    config, state = resnet_state
    return write_run(tmp_path_factory.mktemp("resnet18") / "run", config, RESNET_CLASSES,
                     [(1, 0.5, state)])


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    """Real photos of different sizes and formats (scikit-image's cat, astronaut, coffee)."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    paths = [folder / "chelsea.jpg", folder / "astronaut.png", folder / "coffee.jpg"]
    for path, photo in zip(paths, [data.chelsea(), data.astronaut(), data.coffee()]):
        Image.fromarray(photo).save(path)
    return [str(p) for p in paths]


def torch_probabilities(torch_model, images_nhwc) -> np.ndarray:
    logits = torch.from_numpy(parity.torch_forward(torch_model, images_nhwc))
    return torch.softmax(logits.double(), dim=-1).numpy()


def assert_same_predictions(predictions, expected: np.ndarray, class_names):
    """Each prediction's classes are torch's top classes, with torch's probabilities (1e-4)."""
    assert len(predictions) == len(expected)
    for prediction, probabilities in zip(predictions, expected):
        assert prediction.label == class_names[int(np.argmax(probabilities))]
        assert prediction.indices == [class_names.index(c) for c in prediction.classes]
        np.testing.assert_allclose(prediction.probabilities, probabilities[prediction.indices],
                                   atol=1e-4)


# --------------------------------------------------------------------------- export + parity


def test_export_loads_strictly_into_torchvision_and_predicts_the_same(resnet_run, photo_files,
                                                                      tmp_path, capsys):
    import torchvision

    out = tmp_path / "export" / "model.pth"
    code, stdout, _ = run_cli(capsys, "export", "--workdir", resnet_run, "--out", out)
    assert code == 0 and "torchvision.models.resnet18(num_classes=4)" in stdout
    assert "Resize(36), CenterCrop(32)" in stdout
    torch_model = torchvision.models.resnet18(num_classes=4).eval()
    torch_model.load_state_dict(torch.load(out, weights_only=True), strict=True)

    predictor = Predictor.from_workdir(resnet_run)
    class_names = RESNET_CLASSES
    assert predictor.class_names == class_names and predictor.image_size == 32
    images = np.stack([predictor.preprocess(p) for p in photo_files])
    expected = torch_probabilities(torch_model, images)
    assert len(set(expected.argmax(1))) > 1 or np.ptp(expected) > 1e-3  # inputs matter

    # Python API.
    predictions = predictor.predict(photo_files, top_k=4)
    assert [p.path for p in predictions] == photo_files
    assert_same_predictions(predictions, expected, class_names)

    # Command line, with the images given as a folder.
    code, stdout, _ = run_cli(capsys, "predict", "--workdir", resnet_run, "--json",
                              "--top-k", 4, os.path.dirname(photo_files[0]))
    assert code == 0
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["path"] for r in records] == sorted(photo_files)
    by_path = {r["path"]: r for r in records}
    for path, probabilities in zip(photo_files, expected):
        top = by_path[path]["top_k"]
        assert by_path[path]["label"] == class_names[int(np.argmax(probabilities))]
        np.testing.assert_allclose([t["probability"] for t in top],
                                   probabilities[[t["index"] for t in top]], atol=1e-4)

    # The exported file back into jaxzoo: same probabilities, class names from beside it.
    again = Predictor.from_weights("resnet18", str(out), image_size=32)
    assert again.class_names == class_names
    assert_same_predictions(again.predict(photo_files, top_k=4), expected, class_names)


def test_the_best_checkpoint_is_used_not_the_latest(resnet_state, tmp_path):
    config, state = resnet_state
    worse = state.replace(params={**state.params, "fc": {
        **state.params["fc"], "bias": state.params["fc"]["bias"] + 1.0}})
    config = config.copy_and_resolve_references()
    config.checkpoints_to_keep = 2
    workdir = write_run(tmp_path / "run", config, RESNET_CLASSES,  # 4: saved within an epoch
                        [(1, 0.25, worse), (2, 0.75, state), (3, 0.5, worse), (4, None, worse)])
    saving = workdir / "checkpoints" / "5.orbax-checkpoint-tmp-1"  # a training saving now
    os.makedirs(saving / "state")
    predictor = Predictor.from_workdir(workdir)
    assert predictor.run.step == 2 and predictor.run.progress["val_accuracy"] == 0.75
    np.testing.assert_array_equal(predictor.variables["params"]["fc"]["bias"],
                                  state.params["fc"]["bias"])
    assert Predictor.from_workdir(workdir, step=3).run.step == 3
    with pytest.raises(ValueError, match=r"no checkpoint at step 1 .* \[2, 3, 4\]"):
        Predictor.from_workdir(workdir, step=1)
    assert os.path.isdir(saving / "state")  # readers leave the checkpoints alone


def test_torchvision_weights_predict_with_imagenet_class_names(torchvision_weights, photo_files,
                                                              tmp_path, capsys):
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    names = imagenet_class_names()
    assert names == list(_IMAGENET_CATEGORIES) and len(set(names)) == 1000
    path, torch_model = torchvision_weights

    code, stdout, _ = run_cli(capsys, "predict", "--weights", path, "--model", "resnet18",
                              "--image-size", 32, *photo_files)
    assert code == 0
    lines = stdout.splitlines()
    assert len(lines) == 3
    predictor = Predictor.from_weights("resnet18", str(path), image_size=32)
    images = np.stack([predictor.preprocess(p) for p in photo_files])
    expected = torch_probabilities(torch_model, images)
    for line, path_, probabilities in zip(lines, photo_files, expected):
        top = int(np.argmax(probabilities))
        assert line.startswith(f"{path_}  {names[top]} {probabilities[top]:.4f}  ("), line
        assert line.count(", ") == 3  # the four next classes
    assert_same_predictions(predictor.predict(photo_files), expected, names)

    # Converted with `python -m jaxzoo convert`: the directory says which model it holds.
    code, _, _ = run_cli(capsys, "convert", "resnet18", path, "--out", tmp_path / "converted")
    assert code == 0
    code, stdout, _ = run_cli(capsys, "predict", "--weights", tmp_path / "converted",
                              "--image-size", 32, *photo_files)
    assert code == 0 and stdout.splitlines() == lines


def test_export_of_a_model_without_torchvision_counterpart_says_so(shapes_run, tmp_path, capsys):
    workdir, _ = shapes_run
    code, _, err = run_cli(capsys, "export", "--workdir", workdir, "--out", tmp_path / "m.pth")
    assert code == 1
    assert "inception10 has no torchvision counterpart" in err and "resnet18" in err
    assert not os.path.exists(tmp_path / "m.pth")


# --------------------------------------------------------------------------- a model that learned


def test_trained_model_is_right_on_fresh_shapes(shapes_run):
    workdir, _ = shapes_run
    predictor = Predictor.from_workdir(workdir)
    assert predictor.class_names == sorted(shapes.CLASS_NAMES)  # folder classes: sorted names
    labels = np.arange(288) % 6  # nine full batches
    images = [render(shapes.CLASS_NAMES.index(predictor.class_names[k]), (FRESH_SEED, i))
              for i, k in enumerate(labels)]
    predictions = predictor.predict(images, top_k=2)
    predicted = np.array([predictor.class_names.index(p.label) for p in predictions])
    accuracy = float((predicted == labels).mean())
    print(f"accuracy on {len(labels)} fresh images: {accuracy:.3f}")
    assert accuracy >= 0.5, f"accuracy {accuracy:.2f} on fresh images (chance 0.17)"
    assert all(p.probabilities[0] >= p.probabilities[1] for p in predictions)


def test_evaluate_agrees_with_predictions_of_the_same_images(shapes_run, capsys):
    workdir, data = shapes_run
    code, stdout, _ = run_cli(capsys, "evaluate", "--workdir", workdir)
    assert code == 0 and "top-1 accuracy" in stdout and "most confused" in stdout
    with open(workdir / "evaluation_val.json") as f:
        summary = json.load(f)
    with open(workdir / "confusion_val.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # The same images, read from their files one by one and predicted.
    predictor = Predictor.from_workdir(workdir)
    results = list(predictor.predict_files([data / "val"], top_k=5))
    truth = np.array([predictor.class_names.index(os.path.basename(os.path.dirname(r.path)))
                      for r in results])
    top = np.array([r.indices for r in results])
    assert summary["count"] == len(results) == 6 * VAL_PER_CLASS
    assert summary["top1"] == pytest.approx(float((top[:, 0] == truth).mean()), abs=1e-9)
    assert summary["top5"] == pytest.approx(float((top == truth[:, None]).any(1).mean()), abs=1e-9)
    matrix = np.array(summary["confusion_matrix"])
    assert matrix.sum() == summary["count"]
    np.testing.assert_array_equal(matrix.sum(1), [VAL_PER_CLASS] * 6)
    for i, row in enumerate(summary["per_class"]):
        mine = top[truth == i, 0]
        assert row["count"] == VAL_PER_CLASS
        assert row["accuracy"] == pytest.approx(float((mine == i).mean()))
        np.testing.assert_array_equal(matrix[i], np.bincount(mine, minlength=6))
    # Evaluation picked the best checkpoint, whose validation accuracy training recorded.
    assert summary["step"] == predictor.run.step
    assert summary["top1"] == pytest.approx(predictor.run.progress["val_accuracy"], abs=1e-9)


def test_evaluate_another_dataset_and_split(shapes_run, tmp_path, capsys):
    workdir, _ = shapes_run
    for label, name in enumerate(shapes.CLASS_NAMES):  # class folders only: 10% held out
        os.makedirs(tmp_path / "more" / name)
        for i in range(10):
            Image.fromarray(render(label, (FRESH_SEED, 2000 + 10 * label + i))).save(
                tmp_path / "more" / name / f"{i}.png")
    code, stdout, _ = run_cli(capsys, "evaluate", "--workdir", workdir, "--dataset",
                              f"folder:{tmp_path / 'more'}", "--split", "train", "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["split"] == "train" and summary["count"] == 6 * 9
    assert np.array(summary["confusion_matrix"]).sum() == 54
    assert os.path.basename(summary["json"]) == "evaluation_folder_more_train.json"
    assert os.path.isfile(summary["json"]) and os.path.isfile(summary["confusion_png"])

    os.rename(tmp_path / "more" / "ring", tmp_path / "more" / "donut")
    code, _, err = run_cli(capsys, "evaluate", "--workdir", workdir, "--dataset",
                           f"folder:{tmp_path / 'more'}")
    assert code == 1 and "was trained on" in err and "donut" in err


def test_python_m_jaxzoo_runs_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jaxzoo", "predict", "--workdir",
                             str(tmp_path / "run"), "photo.jpg"], capture_output=True, text=True,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=ROOT, timeout=300)
    assert result.returncode == 1 and result.stdout == ""
    assert f"no workdir at {tmp_path / 'run'}; train first: python train.py" in result.stderr


# --------------------------------------------------------------------------- odd input


def _odd_images(folder, upright: np.ndarray):
    """The same picture in modes and layouts PIL has to convert, and broken files."""
    os.makedirs(folder)
    gray = Image.fromarray(upright).convert("L")
    gray.save(folder / "gray.png")
    Image.fromarray(np.asarray(gray).astype(np.uint16) * 257).save(folder / "gray16.png")
    Image.fromarray(upright).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(upright).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    Image.fromarray(upright).save(folder / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(folder / "rotated.png",
                                                                       exif=exif)
    Image.fromarray(upright[:5, :3]).save(folder / "tiny.png")
    Image.fromarray(np.tile(upright, (12, 20, 1))).save(folder / "large.jpg")
    open(folder / "empty.jpg", "wb").close()
    with open(folder / "notes.png", "w") as f:
        f.write("not an image")
    buffer = open(folder / "large.jpg", "rb").read()
    with open(folder / "truncated.jpg", "wb") as f:
        f.write(buffer[: len(buffer) // 2])


def test_unreadable_files_are_skipped_by_name_and_any_image_works(shapes_run, tmp_path, capsys):
    workdir, _ = shapes_run
    upright = render(2, (FRESH_SEED, 5000))  # a triangle: turning it changes it
    _odd_images(tmp_path / "odd", upright)
    code, stdout, err = run_cli(capsys, "predict", "--workdir", workdir, "--json",
                                tmp_path / "odd", tmp_path / "missing.jpg")
    assert code == 0
    predicted = {os.path.basename(json.loads(line)["path"]) for line in stdout.splitlines()}
    assert predicted == {"gray.png", "gray16.png", "rgba.png", "cmyk.jpg", "upright.png",
                         "rotated.png", "tiny.png", "large.jpg"}
    for name, reason in [("empty.jpg", "empty file"), ("notes.png", "not an image"),
                         ("truncated.jpg", "truncated"), ("missing.jpg", "no such file")]:
        assert any(name in line and reason in line for line in err.splitlines()), (name, err)
    assert "4 file(s) could not be read and were skipped" in err

    predictor = Predictor.from_workdir(workdir)
    odd = tmp_path / "odd"
    # EXIF orientation is applied; 16-bit and RGBA convert to what the 8-bit RGB versions give.
    np.testing.assert_array_equal(predictor.preprocess(str(odd / "rotated.png")),
                                  predictor.preprocess(upright))
    assert not np.array_equal(predictor.preprocess(upright),
                              predictor.preprocess(np.rot90(upright).copy()))
    np.testing.assert_array_equal(predictor.preprocess(str(odd / "gray16.png")),
                                  predictor.preprocess(str(odd / "gray.png")))
    np.testing.assert_array_equal(predictor.preprocess(str(odd / "rgba.png")),
                                  predictor.preprocess(upright))
    assert predictor.preprocess(str(odd / "tiny.png")).shape == (16, 16, 3)

    # Nothing readable: an error exit, every file named.
    code, stdout, err = run_cli(capsys, "predict", "--workdir", workdir, odd / "empty.jpg",
                                odd / "notes.png")
    assert code == 1 and stdout == ""
    assert "empty.jpg" in err and "notes.png" in err and "no image could be predicted" in err


def test_missing_workdir_or_checkpoint_says_what_to_run_first(tmp_path, capsys):
    missing = tmp_path / "nothing"
    for argv in (["predict", "--workdir", missing, "a.jpg"], ["evaluate", "--workdir", missing],
                 ["export", "--workdir", missing, "--out", tmp_path / "m.pth"]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 1
        assert f"no workdir at {missing}" in err
        assert f"python train.py --config=NAME --workdir={missing}" in err

    untrained = tmp_path / "untrained"
    os.makedirs(untrained / "checkpoints")
    with open(untrained / "config.json", "w") as f:
        json.dump({"model": "resnet18", "image_size": 32, "dataset": "shapes"}, f)
    code, _, err = run_cli(capsys, "predict", "--workdir", untrained, "a.jpg")
    assert code == 1 and "no checkpoint in" in err
    assert f"python train.py --config=resnet18 --workdir={untrained}" in err

    code, _, err = run_cli(capsys, "predict", "--weights", tmp_path / "w.pth", "--model",
                           "resnet18", "a.jpg")
    assert code == 1 and "no weights at" in err
    torch.save({"fc.weight": torch.zeros(2, 512)}, tmp_path / "w.pth")
    code, _, err = run_cli(capsys, "predict", "--weights", tmp_path / "w.pth", "a.jpg")
    assert code == 1 and "--model" in err
