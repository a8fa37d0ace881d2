"""ESPNetv2 semantic segmentation (Mehta et al., CVPR 2019), the EdgeNets variant.

Rebuilt from ``shared/weights/SOURCE.md`` so that the EdgeNets Cityscapes weights (MIT licence,
"Copyright (c) 2021 Sachin Mehta", github.com/sacmehta/EdgeNets) load with ``strict=True``: module names
and nesting follow the original state-dict keys exactly (``base_net.*``, ``bu_dec_l*``, ...).

The shipped head has 20 channels; channel 19 is an untrained "background" (its loss weight was 0). A
19-class model built from those weights drops it. Any other class count gets a fresh classifier and
keeps everything else, which is how students start from the teacher's encoder and decoder.

The network needs H and W divisible by 32 (skip connections); :class:`ESPNetv2Seg` pads its input to the
next multiple of 32 and crops the logits back, so any input size works.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segunify.errors import SegunifyError
from segunify.models import register_model
from segunify.models.base import IMAGENET_MEAN, IMAGENET_STD, SegmentationModel

WIDTHS = {1.0: (32, 64, 128, 256), 2.0: (32, 128, 256, 512)}
SHIPPED_CHANNELS = 20  # EdgeNets' Cityscapes head: 19 classes + an untrained background channel
MULTIPLE = 32


def _conv(
    nin: int, nout: int, k: int, stride: int = 1, groups: int = 1, dilation: int = 1, bias: bool = False
):
    return nn.Conv2d(
        nin, nout, k, stride, padding=(k - 1) // 2 * dilation, dilation=dilation, groups=groups, bias=bias
    )


def _adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d``, but written as two small matrix products while exporting to ONNX,
    where output sizes that do not divide the input are not supported. Same bins, same average."""
    if not torch.onnx.is_in_onnx_export():
        return F.adaptive_avg_pool2d(x, size)
    h, w = int(x.shape[-2]), int(x.shape[-1])  # plain ints: the export has a fixed input size
    return _pool_matrix(int(size[0]), h, x) @ x @ _pool_matrix(int(size[1]), w, x).transpose(0, 1)


def _pool_matrix(out: int, inp: int, like: torch.Tensor) -> torch.Tensor:
    """Rows average the adaptive-pooling bins; built from Python numbers so tracing sees a constant."""
    rows = []
    for i in range(out):  # out is a handful of bins, not pixels
        start, end = (i * inp) // out, -((-(i + 1) * inp) // out)
        rows.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(inp)])
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


class CBRa(nn.Module):
    """Conv + BN + PReLU with attributes ``conv``/``bn``/``act`` (backbone naming)."""

    def __init__(self, nin, nout, k, stride=1, groups=1):
        super().__init__()
        self.conv = _conv(nin, nout, k, stride, groups)
        self.bn = nn.BatchNorm2d(nout)
        self.act = nn.PReLU(nout)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class CBa(nn.Module):
    def __init__(self, nin, nout, k, stride=1, groups=1):
        super().__init__()
        self.conv = _conv(nin, nout, k, stride, groups)
        self.bn = nn.BatchNorm2d(nout)

    def forward(self, x):
        return self.bn(self.conv(x))


class BRa(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.bn = nn.BatchNorm2d(n)
        self.act = nn.PReLU(n)

    def forward(self, x):
        return self.act(self.bn(x))


class CDilated(nn.Module):
    def __init__(self, n, stride, dilation):
        super().__init__()
        self.conv = _conv(n, n, 3, stride, groups=n, dilation=dilation)

    def forward(self, x):
        return self.conv(x)


class CBRb(nn.Module):
    """Conv + BN + PReLU as ``cbr = Sequential(...)`` (decoder naming)."""

    def __init__(self, nin, nout, k, groups=1):
        super().__init__()
        self.cbr = nn.Sequential(_conv(nin, nout, k, 1, groups), nn.BatchNorm2d(nout), nn.PReLU(nout))

    def forward(self, x):
        return self.cbr(x)


class BRb(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.br = nn.Sequential(nn.BatchNorm2d(n), nn.PReLU(n))

    def forward(self, x):
        return self.br(x)


class EESP(nn.Module):
    """Extremely Efficient Spatial Pyramid of depth-wise dilated convolutions with hierarchical fusion."""

    def __init__(self, nin, nout, stride=1, r_lim=7, k=4):
        super().__init__()
        self.stride = stride
        n = nout // k
        self.proj_1x1 = CBRa(nin, n, 1, groups=k)
        ksizes = sorted(s if s <= r_lim else 3 for s in (3 + 2 * i for i in range(k)))
        self.spp_dw = nn.ModuleList(CDilated(n, stride, (s - 1) // 2) for s in ksizes)
        self.conv_1x1_exp = CBa(nout, nout, 1, groups=k)
        self.br_after_cat = BRa(nout)
        self.module_act = nn.PReLU(nout)

    def forward(self, x):
        y = self.proj_1x1(x)
        outs = [self.spp_dw[0](y)]
        for layer in self.spp_dw[1:]:
            outs.append(layer(y) + outs[-1])
        e = self.conv_1x1_exp(self.br_after_cat(torch.cat(outs, 1)))
        if self.stride == 2:
            return e
        if e.shape == x.shape:
            e = e + x
        return self.module_act(e)


class DownSampler(nn.Module):
    def __init__(self, nin, nout, r_lim):
        super().__init__()
        self.eesp = EESP(nin, nout - nin, stride=2, r_lim=r_lim)
        self.inp_reinf = nn.Sequential(CBRa(3, 3, 3), CBa(3, nout, 1))
        self.act = nn.PReLU(nout)

    def forward(self, x, img):
        a = F.avg_pool2d(x, 3, stride=2, padding=1)
        out = torch.cat([a, self.eesp(x)], 1)
        while img.shape[2] != a.shape[2]:
            img = F.avg_pool2d(img, 3, stride=2, padding=1)
        return self.act(out + self.inp_reinf(img))


class EESPNetBase(nn.Module):
    def __init__(self, widths):
        super().__init__()
        c0, c1, c2, c3 = widths
        self.level1 = CBRa(3, c0, 3, stride=2)
        self.level2_0 = DownSampler(c0, c1, r_lim=13)
        self.level3_0 = DownSampler(c1, c2, r_lim=11)
        self.level3 = nn.ModuleList(EESP(c2, c2, 1, r_lim=9) for _ in range(3))
        self.level4_0 = DownSampler(c2, c3, r_lim=9)
        self.level4 = nn.ModuleList(EESP(c3, c3, 1, r_lim=7) for _ in range(7))


class ChannelShuffle(nn.Module):
    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class EfficientPyrPool(nn.Module):
    SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)

    def __init__(self, nin, p, nout, last=False):
        super().__init__()
        self.last = last
        n = len(self.SCALES)
        self.projection_layer = CBRb(nin, p, 1)
        self.stages = nn.ModuleList(nn.Conv2d(p, p, 3, 1, 1, groups=p, bias=False) for _ in range(n))
        self.merge_layer = nn.Sequential(
            BRb(n * p), ChannelShuffle(n), CBRb(n * p, p, 3, groups=p), nn.Conv2d(p, nout, 1, bias=last)
        )
        if not last:
            self.br = BRb(nout)

    def forward(self, x):
        x = self.projection_layer(x)
        h, w = int(x.shape[2]), int(x.shape[3])
        outs = []
        for scale, stage in zip(self.SCALES, self.stages, strict=True):
            hs, ws = max(math.ceil(h * scale), 5), max(math.ceil(w * scale), 5)
            if scale < 1.0:
                y = stage(_adaptive_avg_pool(x, (hs, ws)))
                y = F.interpolate(y, (h, w), mode="bilinear", align_corners=True)
            elif scale > 1.0:
                y = stage(F.interpolate(x, (hs, ws), mode="bilinear", align_corners=True))
                y = _adaptive_avg_pool(y, (h, w))
            else:
                y = stage(x)
            outs.append(y)
        out = self.merge_layer(torch.cat(outs, 1))
        return out if self.last else self.br(out)


class EfficientPWConv(nn.Module):
    def __init__(self, nin, nout):
        super().__init__()
        self.wt_layer = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(nin, nout, 1, bias=False), nn.Sigmoid()
        )
        self.expansion_layer = CBRb(nin, nout, 3, groups=math.gcd(nin, nout))

    def forward(self, x):
        return self.expansion_layer(x) * self.wt_layer(x)


def _up(x):
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def _br(n):
    return nn.Sequential(nn.BatchNorm2d(n), nn.PReLU(n))


class ESPNetv2Seg(SegmentationModel):
    """ESPNetv2 encoder + EdgeNets pyramid-pooling decoder; logits ``[B, num_classes, H, W]`` at input size.

    ``proj`` is the decoder's projection width; it is 10 in the shipped model (``min(20 // 2, 16)``) and
    stays 10 for any class count so that decoder weights transfer to students.

    ``find_unused_parameters``: the DownSampler's EESP keeps a ``module_act`` it never calls (the
    published weights hold it, so it stays for a strict load).

    ``cpu_channels_last``: faster than the default layout on the CPU (its depthwise convolutions), labels
    identical (``benchmarks/teacher_backends.py`` measures both).
    """

    classifier_keys = ("bu_dec_l4.merge_layer.3.weight", "bu_dec_l4.merge_layer.3.bias")
    input_mean, input_std = IMAGENET_MEAN, IMAGENET_STD  # EdgeNets' training normalisation
    find_unused_parameters = True
    cpu_channels_last = True

    def __init__(self, num_classes: int, s: float = 2.0, proj: int = 10):
        super().__init__()
        if float(s) not in WIDTHS:
            raise SegunifyError(f"espnetv2: unsupported width s={s}; available: {sorted(WIDTHS)}")
        if num_classes < 1:
            raise SegunifyError(f"espnetv2: num_classes must be >= 1, got {num_classes}")
        widths = WIDTHS[float(s)]
        c0, c1, c2, c3 = widths
        self.num_classes = num_classes
        self.base_net = EESPNetBase(widths)
        self.bu_dec_l1 = EfficientPyrPool(c3, proj, 64)
        self.bu_dec_l2 = EfficientPyrPool(64, proj, 48)
        self.bu_dec_l3 = EfficientPyrPool(48, proj, 32)
        self.bu_dec_l4 = EfficientPyrPool(32, proj, num_classes, last=True)
        self.merge_enc_dec_l2 = EfficientPWConv(c2, 64)
        self.merge_enc_dec_l3 = EfficientPWConv(c1, 48)
        self.merge_enc_dec_l4 = EfficientPWConv(c0, 32)
        self.bu_br_l2 = _br(64)
        self.bu_br_l3 = _br(48)
        self.bu_br_l4 = _br(32)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The original network: H and W must be multiples of 32 (16 works for most sizes)."""
        b = self.base_net
        e1 = b.level1(x)
        e2 = b.level2_0(e1, x)
        e3 = b.level3_0(e2, x)
        for layer in b.level3:
            e3 = layer(e3)
        e4 = b.level4_0(e3, x)
        for layer in b.level4:
            e4 = layer(e4)
        y = self.bu_dec_l1(e4)
        y = self.bu_dec_l2(self.bu_br_l2(_up(y) + self.merge_enc_dec_l2(e3)))
        y = self.bu_dec_l3(self.bu_br_l3(_up(y) + self.merge_enc_dec_l3(e2)))
        y = self.bu_dec_l4(self.bu_br_l4(_up(y) + self.merge_enc_dec_l4(e1)))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
        if not (ph or pw):
            return self.forward_padded(x)
        mode = "reflect" if ph < h and pw < w else "constant"
        y = self.forward_padded(F.pad(x, (0, pw, 0, ph), mode=mode))
        return y[:, :, :h, :w]


def read_state_dict(weights: str | Path) -> dict[str, torch.Tensor]:
    """Weights from an EdgeNets ``.pth`` (plain tensors only, never arbitrary pickles) or a segunify
    checkpoint folder / ``.safetensors`` file."""
    path = Path(weights)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise SegunifyError("weights file not found", path)
    from segunify.models.checkpoint import load_tensor_pickle, read_safetensors

    if path.suffix == ".safetensors":
        return read_safetensors(path)
    sd = load_tensor_pickle(path)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise SegunifyError("not a state dict of tensors", path)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_weights(model: ESPNetv2Seg, sd: dict[str, torch.Tensor], source: str | Path = "<weights>") -> str:
    """Load ``sd`` into ``model``; returns what was done: ``"full"``, ``"sliced"`` (the shipped 20-channel
    head cut to 19 classes) or ``"encoder-decoder"`` (new classifier for another class count)."""
    from segunify.models.checkpoint import load_state

    head_w, head_b = model.classifier_keys
    if head_w not in sd:
        raise SegunifyError(f"not ESPNetv2 segmentation weights (no key {head_w!r})", source)
    n_src, n = sd[head_w].shape[0], model.num_classes
    if n_src == n:
        kind = "full"
    elif n_src == SHIPPED_CHANNELS and n == SHIPPED_CHANNELS - 1:
        sd = {**sd, head_w: sd[head_w][:n], head_b: sd[head_b][:n]}
        kind = "sliced"
    else:
        kind = "encoder-decoder"
    new_head = model.is_classifier if kind == "encoder-decoder" else (lambda key: False)
    load_state(model, sd, source, "espnetv2 (wrong width s?)", head=new_head)
    return kind


@register_model("espnetv2", description="ESPNetv2 (EdgeNets decoder), s=1.0 or 2.0; loads EdgeNets .pth")
def espnetv2(
    num_classes: int, weights: str | Path | None = None, s: float = 2.0, proj: int = 10
) -> ESPNetv2Seg:
    model = ESPNetv2Seg(num_classes, s=s, proj=proj)
    if weights is not None:
        model.weights_loaded = load_weights(model, read_state_dict(weights), weights)
    model.segunify_spec = {
        "name": "espnetv2",
        "num_classes": num_classes,
        "kwargs": {"s": float(s), "proj": proj},
    }
    return model
