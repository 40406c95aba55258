"""Logits parity between a jaxzoo model and its torchvision counterpart.

Default weights hide mapping mistakes (BatchNorm at weight 1, bias 0, mean 0, var 1 is the
identity), so the check randomizes every BatchNorm parameter and running statistic and every bias
before converting. Parity is measured in float32 with the highest matmul precision.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxzoo import imagenet
from jaxzoo.convert import hub
from jaxzoo.convert.catalog import rewrite_keys, weights_entry
from jaxzoo.convert.loader import load
from jaxzoo.convert.torchvision import from_torch, load_state_dict, num_classes_of
from jaxzoo.models.registry import create_model, get_spec


def torchvision_model(name: str, num_classes: int = 1000, **torch_kwargs: Any):
    """The torchvision counterpart of ``name`` with random weights, in eval mode."""
    import torchvision

    spec = get_spec(name)
    if spec.torchvision is None:
        raise ValueError(f"{name} has no torchvision counterpart to compare with")
    kwargs = {**spec.torch_kwargs, **torch_kwargs}
    return getattr(torchvision.models, spec.torchvision)(
        weights=None, num_classes=num_classes, **kwargs).eval()


def randomize_(torch_model, seed: int = 0) -> None:
    """Randomize a torch model in place so that a parity check sees every layer.

    Conv and Linear weights are redrawn from N(0, 2 / fan_in) (variance-preserving through ReLUs;
    torchvision's own small inits leave GoogLeNet's and the MobileNets' logits nearly constant
    across inputs), biases from U(-0.1, 0.1), and every BatchNorm gets random affine parameters
    and running statistics (the defaults are the identity and would hide mapping mistakes)."""
    import torch

    gen = torch.Generator().manual_seed(seed)

    def uniform(t, low, high):
        return torch.rand(t.shape, generator=gen) * (high - low) + low

    with torch.no_grad():
        for module in torch_model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(uniform(module.weight, 0.5, 1.5))
                module.bias.copy_(uniform(module.bias, -0.2, 0.2))
                module.running_mean.copy_(uniform(module.running_mean, -0.2, 0.2))
                module.running_var.copy_(uniform(module.running_var, 0.5, 2.0))
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(uniform(module.bias, -0.1, 0.1))


@dataclasses.dataclass
class ParityResult:
    max_abs_diff: float
    logit_scale: float
    top1_agreement: float

    @property
    def relative_diff(self) -> float:
        return self.max_abs_diff / max(self.logit_scale, 1e-12)

    def ok(self, tolerance: float = 1e-4) -> bool:
        return self.relative_diff <= tolerance and self.top1_agreement == 1.0

    def __str__(self) -> str:
        return (f"max |logits diff| {self.max_abs_diff:.3e}  logit scale {self.logit_scale:.3e}  "
                f"relative {self.relative_diff:.3e}  top-1 agreement {self.top1_agreement:.0%}")


def compare_outputs(ours, theirs) -> ParityResult:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        raise ValueError(f"output shapes differ: jaxzoo {ours.shape}, torch {theirs.shape}")
    agree = float(np.mean(ours.argmax(-1) == theirs.argmax(-1))) if ours.ndim == 2 else 1.0
    return ParityResult(float(np.abs(ours - theirs).max()), float(np.abs(theirs).max()), agree)


def torch_forward(torch_model, images_nhwc: np.ndarray, method: str | None = None):
    """Run torch on NHWC numpy images; returns numpy (or a tuple of numpy arrays)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        out = torch_model(x) if method is None else getattr(torch_model, method)(x)
    if isinstance(out, tuple):
        return tuple(o.numpy() for o in out)
    return out.numpy()


def check(name: str, weights: Any = None, *, size: int | None = None, batch: int = 4,
          seed: int = 0, images: np.ndarray | None = None, **model_kwargs: Any) -> ParityResult:
    """Build the torchvision model (given weights, or random weights with randomized BatchNorm
    statistics), convert it, run both on the same inputs and compare the logits."""
    import torch

    spec = get_spec(name)
    if weights is None:
        torch_model = torchvision_model(name)
        randomize_(torch_model, seed)
    else:
        state = {k: torch.from_numpy(v) for k, v in load_state_dict(weights).items()}
        num_classes = int(state[f"{spec.head[0]}.weight"].shape[0])
        torch_model = torchvision_model(name, num_classes=num_classes)
        torch_model.load_state_dict(state)
    variables = from_torch(name, torch_model.state_dict(), **model_kwargs)
    model = create_model(name, num_classes=num_classes_of(name, variables), **model_kwargs)

    if images is None:
        size = size or spec.default_size
        rng = np.random.default_rng(seed)
        images = rng.standard_normal((batch, size, size, 3)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        ours = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    return compare_outputs(ours, torch_forward(torch_model, images))


def torchvision_pretrained_model(name: str, weights: str = "DEFAULT", path: str | None = None,
                                 aux_logits: bool | None = None):
    """torchvision's model for its pretrained ``weights`` of ``name``, built as its builder builds
    it (``get_model(name, weights=None, **torch_kwargs)``, the file loaded, the auxiliary heads
    deleted unless kept) from the local file ``path`` (default: torch's cache, fetched if
    missing), in eval mode."""
    import torch
    import torchvision

    entry = weights_entry(name, weights)
    path = path or hub.fetch(entry.url, entry.file_name)
    model = torchvision.models.get_model(name, weights=None, num_classes=entry.num_classes,
                                         **entry.torch_kwargs)
    state = rewrite_keys(torch.load(path, map_location="cpu", weights_only=True),
                         entry.key_rewrites)
    model.load_state_dict(state)
    keep = entry.keeps_aux if aux_logits is None else aux_logits
    if entry.aux_modules and not keep:
        model.aux_logits = False
        for module in entry.aux_modules:
            setattr(model, module, None)
    return model.eval()


def check_pretrained(name: str, weights: str = "DEFAULT", *, size: int | None = None,
                     batch: int = 4, seed: int = 0, images: np.ndarray | None = None,
                     **model_kwargs: Any) -> ParityResult:
    """``jaxzoo.pretrained(name, weights)`` against torchvision loading the same file with its
    builder for those weights, on the same inputs (default: ``batch`` random images at the
    weights' crop size, or ``size``)."""
    entry = weights_entry(name, weights)
    loaded = load(name, entry, **model_kwargs)
    torch_model = torchvision_pretrained_model(name, weights, aux_logits=loaded.model_kwargs.get(
        "aux_logits"))
    if images is None:
        size = size or entry.transform.crop_size
        images = np.random.default_rng(seed).standard_normal(
            (batch, size, size, 3)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        ours = jax.jit(lambda v, x: loaded.model.apply(v, x, train=False))(loaded.variables,
                                                                           images)
    return compare_outputs(ours, torch_forward(torch_model, images))


def normalize(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 NHWC RGB -> float32, normalized with ImageNet's mean and std (torchvision's
    ToTensor + Normalize, transposed)."""
    mean, std = np.asarray(imagenet.MEAN, np.float32), np.asarray(imagenet.STD, np.float32)
    return ((images_uint8.astype(np.float32) / 255.0) - mean) / std
