"""LPIPS v0.1 (Zhang et al. 2018), AlexNet variant, as the ``lpips`` package computes it, and its
loading: the ``lpips`` package's linear heads (weights/v0.1/alex.pth, shipped in its wheel) on
torchvision's ImageNet AlexNet features (METHOD.md, "Evaluation"). Nothing is downloaded; without
a file ``load_lpips`` raises ``MetricUnavailable`` with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from msgen.evaluation.features import MetricUnavailable

LPIPS_HEADS_ENV = "MSGEN_LPIPS_HEADS"
ALEXNET_ENV = "MSGEN_ALEXNET_WEIGHTS"
TORCHVISION_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's IMAGENET1K_V1 AlexNet
LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # lpips' ScalingLayer: inputs in [-1, 1] to ImageNet's scale
LPIPS_SCALE = (0.458, 0.448, 0.450)
# The ReLU outputs LPIPS compares: after layers 1, 4, 7, 9 and 11 of AlexNet's ``features``.
ALEXNET_TAPS = (1, 4, 7, 9, 11)


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features``, layer for layer, so its state dict (keys
    ``features.N.*`` without the prefix) loads unchanged; msgen builds it itself so that LPIPS
    does not need torchvision importable."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
    )


class LPIPS(nn.Module):
    """LPIPS distance: sum over the five AlexNet ReLU taps of the spatial mean of
    w_l . (f0 / |f0| - f1 / |f1|)^2, features unit-normalised over channels (eps 1e-10).

    features: AlexNet's ``features`` (``alexnet_features()``); heads: the five (1, C_l, 1, 1)
    linear weights (lpips' ``lin{l}.model.1.weight``). forward(x0, x1): (N, 3, H, W) in [-1, 1]
    -> (N,) distances.
    """

    def __init__(self, features: nn.Sequential, heads: list[Tensor]):
        super().__init__()
        if len(heads) != len(ALEXNET_TAPS):
            raise ValueError(f"LPIPS needs {len(ALEXNET_TAPS)} heads, got {len(heads)}")
        self.features = features.eval()
        for i, weight in enumerate(heads):
            self.register_buffer(f"head{i}", weight.detach().float().reshape(1, -1, 1, 1))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))

    def _taps(self, x: Tensor) -> list[Tensor]:
        x = (x - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in ALEXNET_TAPS:
                taps.append(x)
            if index == ALEXNET_TAPS[-1]:
                break
        return taps

    @torch.no_grad()
    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        total = x0.new_zeros(x0.shape[0])
        for i, (f0, f1) in enumerate(zip(self._taps(x0), self._taps(x1))):
            f0 = f0 / (f0.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            f1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + ((f0 - f1).pow(2) * getattr(self, f"head{i}")).sum(1).mean((1, 2))
        return total


def lpips_heads_file(path: str | Path | None = None) -> Path:
    """The v0.1 AlexNet heads: ``path``, $MSGEN_LPIPS_HEADS, or the installed lpips package's file."""
    if path is not None or os.environ.get(LPIPS_HEADS_ENV):
        found = Path(path if path is not None else os.environ[LPIPS_HEADS_ENV])
        if not found.is_file():
            raise MetricUnavailable(f"no LPIPS heads: {found} does not exist")
        return found
    import importlib.util

    spec = importlib.util.find_spec("lpips")  # locates the package without importing it (it imports torchvision)
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailable(f"no LPIPS heads: the lpips package is not installed (pip install lpips) "
                                f"and {LPIPS_HEADS_ENV} is not set")
    found = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
    if not found.is_file():
        raise MetricUnavailable(f"no LPIPS heads: {found} is missing from the lpips package")
    return found


def _alexnet_file(path: str | Path | None) -> Path:
    if path is not None or os.environ.get(ALEXNET_ENV):
        found = Path(path if path is not None else os.environ[ALEXNET_ENV])
        origin = "the weights argument" if path is not None else ALEXNET_ENV
        if not found.is_file():
            raise MetricUnavailable(f"no AlexNet weights: {found} (from {origin}) does not exist")
        return found
    found = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET_FILE
    if not found.is_file():
        raise MetricUnavailable(f"no AlexNet weights for LPIPS: pass --alexnet-weights PATH or set {ALEXNET_ENV} "
                                f"(torchvision's {TORCHVISION_ALEXNET_FILE}); none in {found.parent}")
    return found


def _load_state(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_lpips(alexnet_weights: str | Path | None = None, heads: str | Path | None = None,
               device: str | torch.device = "cpu") -> LPIPS:
    """LPIPS v0.1 AlexNet with torchvision's ImageNet AlexNet weights (``alexnet_weights``,
    $MSGEN_ALEXNET_WEIGHTS or torch's hub cache) and lpips' heads. Raises MetricUnavailable."""
    heads_path, weights_path = lpips_heads_file(heads), _alexnet_file(alexnet_weights)
    head_state = _load_state(heads_path)
    try:
        head_list = [head_state[f"lin{i}.model.1.weight"] for i in range(len(ALEXNET_TAPS))]
    except KeyError as error:
        raise MetricUnavailable(f"no LPIPS heads: {heads_path} lacks {error}") from None
    state = _load_state(weights_path)
    features = alexnet_features()
    try:
        features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    except RuntimeError as error:
        raise MetricUnavailable(f"no AlexNet weights: {weights_path} is not torchvision's AlexNet: {error}") from None
    return LPIPS(features, head_list).to(device)

