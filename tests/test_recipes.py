"""The training recipes (jaxzoo.configs.recipes): presets named by the weights they produced."""
import re

import pytest
from jaxzoo.configs import recipes
from jaxzoo.configs.default import get_config_for, get_default_config

from jaxzoo import __main__ as cli
from jaxzoo.convert._catalog import MODELS
from jaxzoo.models import list_models


def test_every_recipe_names_registered_weights_with_their_published_accuracy():
    assert len({model for model, _ in recipes.RECIPES}) >= 6
    registered = set(list_models())
    for (model, weights), recipe in recipes.RECIPES.items():
        assert model in registered, model
        entry = MODELS[model]["weights"][weights]
        assert recipe.acc1 == entry["acc1"]
        # The weights' recipe link: the README's section, pytorch/vision#3995, or the PR that
        # added the weights (ShuffleNet V2 x1.5/x2.0, whose command the README gives).
        assert entry["recipe"].startswith("https://github.com/pytorch/vision/")
        named = re.findall(r"--model[ =](\w+)", recipe.command)
        assert named in ([model], []), (model, named)


def test_every_field_is_a_config_field():
    """No recipe field is silently ignored: each one exists in the defaults."""
    defaults = get_default_config("resnet50")
    for key, recipe in recipes.RECIPES.items():
        assert set(recipe.fields) <= set(defaults.keys()), key


def test_resnet50_v2_is_the_recipe_the_weights_were_trained_with():
    """The settings pytorch/vision#3995 gives for ResNet50_Weights.IMAGENET1K_V2 (80.858%)."""
    fields = recipes.recipe_fields("resnet50", "IMAGENET1K_V2")
    expected = {
        "optimizer": "sgd", "learning_rate": 0.5, "momentum": 0.9, "batch_size": 8 * 128,
        "num_epochs": 600, "lr_schedule": "cosine", "warmup_epochs": 5.0,
        "warmup_method": "linear", "warmup_decay": 0.01, "weight_decay": 2e-5,
        "norm_weight_decay": 0.0, "label_smoothing": 0.1, "mixup_alpha": 0.2,
        "cutmix_alpha": 1.0, "auto_augment": "ta_wide", "random_erase": 0.1,
        "model_ema": True, "model_ema_steps": 32, "model_ema_decay": 0.99998,
        "image_size": 176, "val_resize_size": 232, "val_crop_size": 224, "ra_reps": 4,
        "dataset": "imagenet2012"}
    assert {k: fields[k] for k in expected} == expected


def test_v1_recipes_use_the_reference_defaults():
    fields = recipes.recipe_fields("resnet50", "IMAGENET1K_V1")
    assert (fields["optimizer"], fields["learning_rate"], fields["weight_decay"],
            fields["lr_schedule"], fields["lr_step_size"], fields["lr_gamma"],
            fields["num_epochs"], fields["batch_size"], fields["warmup_epochs"],
            fields["model_ema"], fields["mixup_alpha"]) == (
        "sgd", 0.1, 1e-4, "step", 30, 0.1, 90, 256, 0.0, False, 0.0)
    mobilenet = recipes.recipe_fields("mobilenet_v3_large", "IMAGENET1K_V1")
    assert (mobilenet["optimizer"], mobilenet["batch_size"], mobilenet["lr_gamma"],
            mobilenet["lr_step_size"], mobilenet["auto_augment"], mobilenet["random_erase"]) \
        == ("rmsprop", 1024, 0.973, 2, "imagenet", 0.2)
    # The README: the published ResNeXt-101 32x8d used 64 GPUs at --batch-size 16, --lr 0.4.
    resnext = recipes.recipe_fields("resnext101_32x8d", "IMAGENET1K_V1")
    assert (resnext["batch_size"], resnext["learning_rate"]) == (1024, 0.4)
    assert recipes.recipe_fields("regnet_y_400mf", "IMAGENET1K_V1")["learning_rate"] == 0.4
    assert recipes.recipe_fields("regnet_x_400mf", "IMAGENET1K_V1")["learning_rate"] == 0.8


def test_an_unknown_flag_is_an_error():
    with pytest.raises(ValueError, match="--lr-multi-steps"):
        recipes.fields_from_command("torchrun --nproc_per_node=8 train.py --lr-multi-steps 3")


def test_the_preset_applies_the_recipe():
    config = get_config_for("resnet50", "IMAGENET1K_V2")
    assert (config.optimizer, config.batch_size, config.model_ema, config.image_size) == (
        "sgd", 1024, True, 176)
    with pytest.raises(ValueError, match="IMAGENET1K_V1, IMAGENET1K_V2|IMAGENET1K_V2"):
        get_config_for("resnet50", "IMAGENET1K_V3")


def test_recipe_command_prints_command_config_and_accuracy(capsys):
    assert cli.main(["recipe", "resnet50", "IMAGENET1K_V2"]) == 0
    out = capsys.readouterr().out
    assert "acc@1 80.858" in out
    assert "--train-crop-size 176 --model-ema --val-resize-size 232" in out
    assert "python train.py --config=resnet50:IMAGENET1K_V2" in out
    assert any(line.split()[:3] == ["batch_size", "1024", "--batch-size"]
               for line in out.splitlines())
    assert cli.main(["recipe", "resnet50", "imagenet1k_v1"]) == 0  # any case
    assert cli.main(["recipe", "resnet50", "IMAGENET1K_V9"]) == 1  # a user error
    assert "resnet50 has IMAGENET1K_V1, IMAGENET1K_V2" in capsys.readouterr().err
