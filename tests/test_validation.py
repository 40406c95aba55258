"""Plausible mistakes end in one line saying what was wrong, never a traceback or a wrong reason
(issue 24, case 5): config fields out of range or of unknown values, a workdir that cannot be
written, and names with control characters in predict's plain output."""
import os
import re

import pytest
from train_helpers import tiny_config

from jaxzoo.train import configs


@pytest.mark.parametrize("fields, message", [
    ({"learning_rate": -1.0}, "config.learning_rate=-1.0 must be > 0"),
    ({"num_epochs": 0}, "config.num_epochs=0 must be at least 1"),
    ({"batch_size": 0}, "config.batch_size=0 must be at least 1"),
    ({"eval_batch_size": -8}, "config.eval_batch_size=-8 must be >= 0"),
    ({"warmup_epochs": -0.5}, "config.warmup_epochs=-0.5 must be >= 0"),
    ({"weight_decay": -1e-4}, "config.weight_decay=-0.0001 must be >= 0"),
    ({"label_smoothing": 1.0}, r"config.label_smoothing=1.0 must be in \[0, 1\)"),
    ({"val_fraction": 1.5}, r"config.val_fraction=1.5 must be in \[0, 1\)"),
    ({"checkpoints_to_keep": 0}, "config.checkpoints_to_keep=0 must be at least 1"),
    ({"learning_rate": float("nan")}, "config.learning_rate=nan must be > 0"),
    ({"dtype": "float16"}, "config.dtype='float16' is not one of float32, bfloat16"),
    ({"trainable": "Head"}, ("config.trainable='Head' is not one of all, head. Did you mean "
                             "--config.trainable=head")),
    ({"optimizer": "sgdd"}, "config.optimizer='sgdd' is not one of adam, adamw, sgd"),
    ({"crop_scale": (0.5, 2.0)}, r"config.crop_scale=\(0.5, 2.0\) must be \(\)"),
])
def test_train_py_names_the_field_its_value_and_the_rule_in_one_line(tmp_path, capsys, fields,
                                                                      message):
    import train as train_py

    config = tiny_config(**fields)
    with pytest.raises(ValueError, match=message):
        configs.validate(config)
    assert train_py.run(config, str(tmp_path / "run")) == 1  # checked before any data is read
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: " + message + r".*\n", err), err
    assert "divisible" not in err and not os.path.exists(tmp_path / "run")


def test_a_workdir_that_cannot_be_written_is_named(tmp_path, capsys):
    import train as train_py

    (tmp_path / "file").write_text("a file, not a folder\n")
    workdir = tmp_path / "file" / "run"
    assert train_py.run(tiny_config(), str(workdir)) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(rf"error: cannot write in the workdir {re.escape(str(workdir))} "
                        rf"\(Not a directory\); choose a writable --workdir\n", err), err


def test_predict_plain_output_escapes_control_characters_in_names(tmp_path, monkeypatch,
                                                                   capsys):
    from PIL import Image

    from jaxzoo import predict
    from jaxzoo.__main__ import main

    forged = "fish.png  goldfish 1.0000\nshark"  # a name that would print as two result lines
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    os.rename(tmp_path / "x.png", tmp_path / (forged + ".png"))

    class Stub:  # the CLI's printing is under test, not the model
        def predict_files(self, inputs, top_k):
            for path in predict.image_files(inputs):
                yield predict.Prediction(classes=["cat\x1b[2J"], probabilities=[0.5],
                                         indices=[0], path=path)

    monkeypatch.setattr(predict.Predictor, "from_workdir", classmethod(lambda *a, **k: Stub()))
    assert main(["predict", "--workdir", str(tmp_path), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "\x1b" not in out
    assert out == (f"{tmp_path}/fish.png  goldfish 1.0000\\nshark.png  cat\\x1b[2J 0.5000\n")
