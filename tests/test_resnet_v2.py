"""Pre-activation ResNets (resnet18_v2 ... resnet152_v2) against a PyTorch pre-activation ResNet
written here with timm's ``resnetv2_*`` layout and names (timm is not a dependency; where it is
installed, the reference is checked against timm's own resnetv2_18 and resnetv2_50)."""
import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn as tnn

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity
from jaxzoo.models import resnet_v2
from jaxzoo.models.registry import variable_shapes

from conftest import assert_parity, compiled_apply, photo_batch, torch_state_shapes

STAGES = {"resnet18_v2": ("basic", (2, 2, 2, 2)), "resnet34_v2": ("basic", (3, 4, 6, 3)),
          "resnet50_v2": ("bottleneck", (3, 4, 6, 3)),
          "resnet101_v2": ("bottleneck", (3, 4, 23, 3)),
          "resnet152_v2": ("bottleneck", (3, 8, 36, 3))}
TIMM_NAMES = {"resnet18_v2": "resnetv2_18", "resnet34_v2": "resnetv2_34",
              "resnet50_v2": "resnetv2_50", "resnet101_v2": "resnetv2_101",
              "resnet152_v2": "resnetv2_152"}


# --- the PyTorch reference -----------------------------------------------------------------------

class _Downsample(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        return self.conv(x)


class _PreActBasic(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.downsample = _Downsample(cin, cout, stride) if stride != 1 or cin != cout else None
        self.norm1 = tnn.BatchNorm2d(cin)
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm2 = tnn.BatchNorm2d(cout)
        self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)

    def forward(self, x):
        preact = torch.relu(self.norm1(x))
        shortcut = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(torch.relu(self.norm2(out)))
        return out + shortcut


class _PreActBottleneck(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        mid = cout // 4
        self.downsample = _Downsample(cin, cout, stride) if stride != 1 or cin != cout else None
        self.norm1 = tnn.BatchNorm2d(cin)
        self.conv1 = tnn.Conv2d(cin, mid, 1, bias=False)
        self.norm2 = tnn.BatchNorm2d(mid)
        self.conv2 = tnn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.norm3 = tnn.BatchNorm2d(mid)
        self.conv3 = tnn.Conv2d(mid, cout, 1, bias=False)

    def forward(self, x):
        preact = torch.relu(self.norm1(x))
        shortcut = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(torch.relu(self.norm2(out)))
        out = self.conv3(torch.relu(self.norm3(out)))
        return out + shortcut


class _Stage(tnn.Module):
    def __init__(self, block, cin, cout, depth, stride):
        super().__init__()
        self.blocks = tnn.Sequential(*[block(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                       for i in range(depth)])

    def forward(self, x):
        return self.blocks(x)


class _Head(tnn.Module):
    def __init__(self, cin, num_classes):
        super().__init__()
        self.fc = tnn.Conv2d(cin, num_classes, 1)

    def forward(self, x):
        return self.fc(x.mean((2, 3), keepdim=True)).flatten(1)


class TorchPreActResNet(tnn.Module):
    """He et al. 2016's pre-activation ResNet: a bare 7x7/2 conv and 3x3/2 max-pool stem,
    BN-ReLU before every conv, the projection shortcut from the pre-activated input, a final
    BN-ReLU before pooling; timm's attribute names and a 1x1-conv classifier ``head.fc``."""

    def __init__(self, name, num_classes=1000):
        super().__init__()
        kind, depths = STAGES[name]
        block, expansion = ((_PreActBasic, 1) if kind == "basic" else (_PreActBottleneck, 4))
        self.stem = tnn.Sequential(collections.OrderedDict(
            conv=tnn.Conv2d(3, 64, 7, 2, 3, bias=False), pool=tnn.MaxPool2d(3, 2, 1)))
        cin, stages = 64, []
        for i, depth in enumerate(depths):
            cout = 64 * 2**i * expansion
            stages.append(_Stage(block, cin, cout, depth, 1 if i == 0 else 2))
            cin = cout
        self.stages = tnn.Sequential(*stages)
        self.norm = tnn.BatchNorm2d(cin)
        self.head = _Head(cin, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.stages(self.stem(x)))))


def _reference(name, seed, **kwargs):
    torch_model = TorchPreActResNet(name, **kwargs)
    parity.randomize_(torch_model, seed=seed)
    return torch_model.eval()


# --- parity --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18_v2", "resnet50_v2"])
def test_logits_match_the_pytorch_reference_and_export_loads_strictly(name):
    torch_model = _reference(name, seed=21)
    state = torch_model.state_dict()
    variables = convert.from_torch(name, state)
    images = photo_batch(64)
    theirs = parity.torch_forward(torch_model, images)
    spread = np.abs(theirs - theirs.mean(0)).max() / np.abs(theirs).max()
    assert spread > 1e-2, f"logits hardly vary across inputs (spread {spread:.1e})"
    model = jaxzoo.create_model(name)
    print(name, assert_parity(compiled_apply(model)(variables, images), theirs, f"{name} logits"))

    exported = {k: torch.from_numpy(v) for k, v in convert.to_torch(name, variables).items()}
    fresh = TorchPreActResNet(name)
    assert str(fresh.load_state_dict(exported, strict=True)) == "<All keys matched successfully>"
    for key, value in state.items():
        np.testing.assert_array_equal(fresh.state_dict()[key].numpy(), value.numpy(), key)


def test_train_mode_matches_the_pytorch_reference():
    """resnet18_v2, one train-mode pass: the same logits (batch statistics in every BatchNorm)
    and the same running-statistic updates (momentum 0.1, unbiased variance)."""
    name = "resnet18_v2"
    torch_model = _reference(name, seed=22)
    variables = convert.from_torch(name, torch_model.state_dict())
    before = convert.to_torch(name, variables)
    images = photo_batch(64)

    torch_model.train()
    theirs = parity.torch_forward(torch_model, images)
    ours, updates = compiled_apply(jaxzoo.create_model(name), train=True)(variables, images)
    print(name, assert_parity(ours, theirs, "train-mode logits"))

    expected = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    got = convert.to_torch(name, {"params": variables["params"], **updates})
    stats_keys = [k for k in expected if k.endswith(("running_mean", "running_var"))]
    assert len(stats_keys) == 2 * 17  # 2 per block, 8 blocks, and the final norm
    for key in stats_keys:
        theirs_delta, ours_delta = expected[key] - before[key], got[key] - before[key]
        assert np.abs(theirs_delta).max() > 1e-4, f"{key} did not move"
        np.testing.assert_allclose(ours_delta, theirs_delta, rtol=1e-3,
                                   atol=1e-3 * np.abs(theirs_delta).max(), err_msg=key)


# --- structure -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(STAGES))
def test_structure_matches_the_reference_and_the_spec(name):
    """Parameter count, state-dict keys and shapes equal the reference's; feature_maps and
    features have the spec's channels and strides (eval_shape)."""
    with torch.device("meta"):
        torch_model = TorchPreActResNet(name)
    model = jaxzoo.create_model(name)
    shapes = variable_shapes(model, 32)
    assert (sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
            == sum(p.numel() for p in torch_model.parameters()))
    assert torch_state_shapes(shapes) == {k: tuple(v.shape)
                                          for k, v in torch_model.state_dict().items()}

    spec = jaxzoo.get_spec(name)
    assert spec.torchvision is None and spec.head == ("head.fc",)
    size = 64
    x = jnp.zeros((2, size, size, 3))
    maps = jax.eval_shape(lambda v: model.apply(v, x, method="feature_maps"), shapes)
    assert [m.shape for m in maps] == [(2, size // s, size // s, c) for s, c in
                                       zip(spec.feature_strides, spec.feature_channels)]
    features = jax.eval_shape(lambda v: model.apply(v, x, method="features"), shapes)
    assert features.shape == (2, spec.feature_channels[-1])


def test_bottleneck_zero_init_last_makes_the_block_its_shortcut():
    """``zero_init_last`` (timm's option) zeroes each block's last conv: a fresh block then returns
    its (projected) shortcut."""
    conv, norm = resnet_v2.layers.conv, resnet_v2.layers.BatchNorm
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 64))
    for zero in (False, True):
        block = resnet_v2.PreActBottleneck(64, conv, norm, zero_init_last=zero)
        variables = jax.jit(lambda r, b=block: b.init(r, x, train=False))(jax.random.PRNGKey(1))
        out = jax.jit(lambda v, b=block: b.apply(v, x, train=False))(variables)
        assert np.array_equal(np.asarray(out), np.asarray(x)) == zero
        assert (np.abs(np.asarray(variables["params"]["conv3"]["kernel"])).max() == 0) == zero


def test_new_num_classes_reinitializes_only_the_head():
    """The classifier is a 1x1 conv (timm's head.fc): a checkpoint with another number of classes
    loads everything else and reports the head as missing."""
    name = "resnet18_v2"
    state = TorchPreActResNet(name).state_dict()
    variables, report = convert.load_torch(name, state, num_classes=5)
    assert report.missing_keys == ["head.fc.bias", "head.fc.weight"]
    assert report.unexpected_keys == []
    assert variables["params"]["head"]["fc"]["kernel"].shape == (1, 1, 512, 5)
    np.testing.assert_array_equal(variables["params"]["stem"]["conv"]["kernel"],
                                  state["stem.conv.weight"].numpy().transpose(2, 3, 1, 0))
    assert convert.num_classes_of(name, variables) == 5


# --- timm, where installed -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18_v2", "resnet50_v2"])
def test_reference_is_timms_resnetv2(name):
    """timm's resnetv2_18 / resnetv2_50 (plain convs, BatchNorm; not the BiT variants) have the
    reference's state-dict keys and shapes and compute the same logits from the same weights."""
    timm = pytest.importorskip("timm", reason="timm is optional: only this cross-check needs it")
    with torch.device("meta"):  # shapes only: the weights come from the reference
        timm_model = timm.create_model(TIMM_NAMES[name], pretrained=False).eval()
    reference = _reference(name, seed=23)
    assert ({k: tuple(v.shape) for k, v in timm_model.state_dict().items()}
            == {k: tuple(v.shape) for k, v in reference.state_dict().items()})
    timm_model.load_state_dict(reference.state_dict(), strict=True, assign=True)
    images = photo_batch(64)
    np.testing.assert_allclose(parity.torch_forward(timm_model, images),
                               parity.torch_forward(reference, images), rtol=1e-5, atol=1e-5)
