"""Defaults shared by every config. A registered model trains as ``--config=NAME`` from these
defaults alone (``get_config_for(NAME, preset)``: its family and image size come from the
registry); the files beside this one (``jaxzoo.configs.NAME``) exist only where a model's config
says more (GoogLeNet's and Inception v3's auxiliary-loss weights, the MNIST net's data). The nets
made for 32-px images get CIFAR-10's defaults (``family_of``).

Every field can be overridden on the command line: ``--config.KEY=VALUE``.
"""
import difflib

import ml_collections

PRESETS = ("shapes",)  # besides the training recipes named by their weights (recipes.py)


def family_of(model: str) -> str:
    """"cifar" for the small nets designed for 32-px images (the registry's default size), else
    "imagenet"."""
    from jaxzoo.models import get_spec

    return "cifar" if get_spec(model).default_size <= 32 else "imagenet"


def get_default_config(model: str, family: str | None = None) -> ml_collections.ConfigDict:
    """The defaults for ``model``. ``family``: "imagenet" (photos at the model's design size,
    tf_flowers) or "cifar" (32-px images, cifar10); None: the registry's (``family_of``)."""
    from jaxzoo.models import get_spec

    family = family or family_of(model)
    config = ml_collections.ConfigDict()
    config.model = model
    config.model_kwargs = ml_collections.ConfigDict()  # extra create_model arguments

    # Data (jaxzoo.data.get_datasets): a TFDS name, "folder:PATH", or "shapes" (built in, offline).
    config.dataset = "tf_flowers" if family == "imagenet" else "cifar10"
    config.data_dir = ""          # TFDS data_dir; "" = TFDS's default (~/tensorflow_datasets)
    config.image_size = get_spec(model).default_size if family == "imagenet" else 32
    config.val_fraction = 0.1     # held out when the dataset has no validation split
    config.augment = True         # RandomResizedCrop + horizontal flip; False: eval transform
    config.crop_scale = ()        # RandomResizedCrop's area range; () = the dataset's default
    config.max_image_pixels = 89_478_485  # folder: larger images are skipped (PIL's own limit)
    config.batch_size = 32 if family == "imagenet" else 128   # global, over all devices
    config.eval_batch_size = 0    # 0 = batch_size

    # Augmentation, sizes and sampling of torchvision's reference scripts (presets.py,
    # sampler.py), named after its flags; these defaults leave the data above unchanged.
    # jaxzoo/data/augment.py and pipeline.py.
    config.auto_augment = ""        # after the flip: "" | "imagenet" | "cifar10" | "svhn"
                                    # (AutoAugment) | "ra" (RandAugment) | "ta_wide" | "augmix"
    config.ra_magnitude = 9         # RandAugment's magnitude bin (of 31)
    config.augmix_severity = 3      # AugMix's severity (1-10)
    config.random_erase = 0.0       # RandomErasing's probability (after the normalization)
    config.interpolation = "bilinear"  # "bilinear" | "bicubic" | "nearest": the training crop's
                                       # resize, the policies' geometric ops, evaluation's resize
    config.val_resize_size = 0      # evaluation's Resize; 0 = int(val_crop_size / 0.875)
    config.val_crop_size = 0        # evaluation's CenterCrop; 0 = image_size (the training crop)
    config.ra_reps = 0              # N > 1: repeated augmentation as the reference's RASampler
                                    # (each example N times per epoch, on N processes); 0, 1: off

    # Optimization: Adam (AdamW when weight_decay > 0), linear warmup then cosine decay.
    config.num_epochs = 10 if family == "imagenet" else 30
    config.learning_rate = 3e-4 if family == "imagenet" else 1e-3
    config.warmup_epochs = 1.0
    config.weight_decay = 0.0     # decoupled (AdamW), on kernels only
    config.label_smoothing = 0.0
    config.grad_clip_norm = 0.0   # 0 = no clipping

    # torchvision's reference-script options (references/classification/train.py), named after
    # its flags; these defaults leave the training above unchanged. Optimizers and schedules:
    # jaxzoo/train/optim.py; batch mixing: mixing.py; the weights' average: ema.py.
    config.optimizer = "adam"       # "adam" (above) | "adamw" | "sgd" | "sgd_nesterov" | "rmsprop",
                                    # the last four as torch.optim computes them, decaying every
                                    # parameter (torch's SGD/RMSprop: L2 added to the gradient)
    config.momentum = 0.9           # sgd, sgd_nesterov, rmsprop
    config.norm_weight_decay = None  # torch optimizers: norm layers' decay; None = weight_decay
    config.bias_weight_decay = None  # torch optimizers: biases' decay; None = weight_decay
    config.lr_schedule = "cosine"   # after the warmup: "cosine" | "step" | "exponential" |
                                    # "constant"; per step, equal to the reference's per-epoch
                                    # schedulers at epoch boundaries
    config.lr_step_size = 30        # step: epochs between multiplications by lr_gamma
    config.lr_gamma = 0.1           # step and exponential (per epoch)
    config.lr_min = 0.0             # cosine: the learning rate it ends at
    config.warmup_method = "linear"  # "linear" from warmup_decay * lr to lr, or "constant" at
                                     # warmup_decay * lr, for warmup_epochs
    config.warmup_decay = 0.0       # the reference's --lr-warmup-decay (its default is 0.01)
    config.mixup_alpha = 0.0        # > 0: MixUp (transforms.v2) with Beta(alpha, alpha)
    config.cutmix_alpha = 0.0       # > 0: CutMix; both > 0: one of the two per batch and device
    config.model_ema = False        # keep an average of the weights, evaluated beside them
    config.model_ema_steps = 32     # update the average every N steps of each epoch
    config.model_ema_decay = 0.99998  # adjusted as the reference does for batch, steps, epochs
    config.aux_loss_weights = ()  # one weight per auxiliary output (GoogLeNet, Inception v3)
    config.dtype = "float32"      # compute dtype: float32 or bfloat16; parameters, optimizer state,
                                  # BatchNorm statistics and the loss stay float32 (models/layers.py)
    config.skip_nonfinite = False  # True: drop (and count) updates with a NaN/Inf loss or gradient
                                   # instead of stopping the run

    # Fine-tuning.
    config.init_from = ""         # a torchvision .pth, or a directory from `python -m jaxzoo convert`
    config.trainable = "all"      # "all", or "head": only the classifier (backbone frozen, BN in eval)

    # Checkpoints and the rest.
    config.checkpoints_to_keep = 2    # the latest K checkpoints; the best one by val accuracy too
    config.checkpoint_every_steps = 0  # also save every N steps within epochs (0: at epoch ends;
                                       # SIGTERM/SIGINT always save the current step)
    config.compilation_cache_dir = ""  # "" = $JAXZOO_COMPILATION_CACHE or ~/.cache/jaxzoo/xla; "off"
    config.remat = "none"         # "blocks": recompute each block's activations in the backward
                                  # (keeping conv outputs), "blocks_full": keep only block inputs
    config.tensorboard = True     # scalars for `tensorboard --logdir WORKDIR` (WORKDIR/tensorboard)
    config.profile_steps = 0      # N > 0: a jax.profiler trace of N steps in WORKDIR/profile
    config.lowering = "auto"      # convs and pools: "xla", "cpu" (XLA:CPU's faster formulations),
                                  # "auto" = "cpu" on CPUs, "xla" on GPU/TPU (jaxzoo.runtime)
    config.seed = 0
    return config


def shapes_preset(config: ml_collections.ConfigDict, family: str) -> ml_collections.ConfigDict:
    """``--config=NAME:shapes``: the built-in offline dataset, at a resolution and length meant
    for a small CPU: 32 px, or the model's smallest input where that is larger (measured run
    times and accuracies: README, "Training").

    ``shapes/large`` (12,000 training images) rather than the 3,000 of ``shapes``: ResNet-34
    learns it from scratch to about 0.87 validation accuracy in 38k images whether they repeat or
    not, but on 3,000 it overfits (train 0.87, validation 0.56 after 19k images). Mild crops: the
    shapes are small at 32 px and a tight crop cuts them.
    """
    del family
    from jaxzoo.models import get_spec

    config.dataset = "shapes/large"
    config.image_size = max(32, get_spec(config.model).min_size)  # the smallest the model takes
    config.crop_scale = (0.8, 1.0)
    config.batch_size = 32
    config.num_epochs = 5
    config.learning_rate = 1e-3
    config.warmup_epochs = 0.1
    return config


def _recipe_fields(model: str, preset: str) -> dict | None:
    """The config fields of the training recipe ``preset`` (torchvision's weights name) for
    ``model``, or None when there is none."""
    try:
        from jaxzoo.configs import recipes
    except ImportError:  # no recipes yet
        return None
    return recipes.recipe_fields(model, preset) if (model, preset) in recipes.RECIPES else None


def presets_for(model: str) -> list[str]:
    """The presets ``--config=MODEL:PRESET`` takes for ``model``."""
    try:
        from jaxzoo.configs import recipes
    except ImportError:
        return list(PRESETS)
    return [*PRESETS, *sorted(w for m, w in recipes.RECIPES if m == model)]


def check_preset(model: str, preset: str) -> None:
    """A one-line error for a preset ``model`` does not have, suggesting the closest names (the
    match is exact: ``SHAPES`` is suggested ``shapes``, not taken for it)."""
    known = presets_for(model)
    if preset in known:
        return
    lower = {p.lower(): p for p in known}
    close = ([lower[preset.lower()]] if preset.lower() in lower
             else difflib.get_close_matches(preset, known, n=3))
    hint = f" Did you mean {', '.join(f'{model}:{c}' for c in close)}?" if close else ""
    raise ValueError(f"unknown preset {preset!r} for config {model}.{hint} Presets of {model}: "
                     f"{', '.join(known)}")


def get_config_for(model: str, preset: str | None, family: str | None = None, **fields):
    """The config of ``model``: the defaults, the model's own ``fields``, then the preset named
    after the colon in ``--config=NAME:PRESET`` ("shapes", or a training recipe named by the
    weights it produced, e.g. ``resnet50:IMAGENET1K_V2``)."""
    config = get_default_config(model, family)
    config.update(fields)
    if preset:
        check_preset(model, preset)
        if preset == "shapes":
            shapes_preset(config, family)
        else:
            with config.unlocked():
                config.update(_recipe_fields(model, preset))
    return config


def get_config(model_and_preset: str):
    """``MODEL[:PRESET]``: the config of a registered model that has no file of its own."""
    model, _, preset = model_and_preset.partition(":")
    return get_config_for(model, preset or None)
