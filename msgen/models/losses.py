"""Losses of METHOD.md Eq. 6-8: the multi-source GAN loss and the nearest-neighbour loss.

GAN loss: the standard non-saturating form on logits (binary cross-entropy with logits). D
minimises BCE(D(real), 1) + BCE(D(fake), 0); G minimises BCE(D(fake), 1). Each source's patch map
is averaged, the valid sources are SUMMED (L_M-GAN = sum over i, Eq. 6-7), the batch averaged.

Nearest-neighbour loss: features phi of both images; for each location of phi(generated), the
minimum over the k x k neighbourhood in phi(target) of the channel-summed L1 distance; mean over
locations and batch. The features are VGG-19 relu1_2 (``VGG19Features``). msgen ships the two
layers this needs (msgen/assets/vgg19_caffe_relu1_2.safetensors, the original ImageNet weights of
Simonyan & Zisserman, CC BY 4.0, see NOTICE), so the paper's loss runs offline as is; a
torchvision VGG-19 state dict is an option. The substitutes "pixel" (the same loss on the RGB
pixels) and "l1" (channel-summed L1, no neighbourhood) are explicit choices. Any feature space
but the paper's (the shipped weights, Caffe input) warns at construction which one it is, and
random features are never used.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msgen.models.config import FEATURES, VGG_INPUTS, LossConfig
from msgen.pose.parts import body_of

WEIGHTS_ENV = "MSGEN_VGG19_WEIGHTS"
# The file name torchvision gives VGG19_Weights.IMAGENET1K_V1 in torch's hub cache.
TORCHVISION_VGG19_FILE = "vgg19-dcbb9e9d.pth"
# conv1_1 and conv1_2 of the original VGG-19, made by scripts/make_vgg19_weights.py; the sha256
# is checked at every load so that a damaged or replaced file cannot train a model unnoticed.
SHIPPED_VGG19 = Path(__file__).resolve().parents[1] / "assets" / "vgg19_caffe_relu1_2.safetensors"
SHIPPED_VGG19_SHA256 = "36f3c2091af5616148fc584c1100ea013e5117335ed202810090e5998be1c94b"
# The Caffe/Keras input of the original weights: BGR, 0-255, minus this mean (B, G, R), no std.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# ImageNet statistics that torchvision's VGG weights expect, for images in [0, 1].
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureSpaceWarning(UserWarning):
    """Says which feature space a reconstruction loss compares images in."""


# ---------------------------------------------------------------------------------------------
# GAN losses (Eq. 6-7)


def _sum_over_sources(per_patch: Tensor, valid: Tensor | None) -> Tensor:
    """(B, M, ...) patch losses -> mean over patches, sum over valid sources, mean over batch."""
    if per_patch.dim() < 2:
        raise ValueError(f"logits must be (B, M, ...), got shape {tuple(per_patch.shape)}")
    per_source = per_patch.flatten(2).mean(dim=2)  # (B, M)
    if valid is not None:
        if valid.dtype != torch.bool or valid.shape != per_source.shape:
            raise ValueError(
                f"valid must be a bool tensor of shape {tuple(per_source.shape)}, "
                f"got {valid.dtype} {tuple(valid.shape)}"
            )
        per_source = torch.where(valid, per_source, torch.zeros_like(per_source))
    return per_source.sum(dim=1).mean()


def generator_adversarial_loss(fake_logits: Tensor, valid: Tensor | None = None) -> Tensor:
    """L_M-GAN for G (non-saturating): D's logits on the generated image against each source,
    fake_logits (B, M, 1, h, w), valid (B, M) bool or None -> scalar."""
    target = torch.ones_like(fake_logits)
    per_patch = F.binary_cross_entropy_with_logits(fake_logits, target, reduction="none")
    return _sum_over_sources(per_patch, valid)


def discriminator_loss(
    real_logits: Tensor, fake_logits: Tensor, valid: Tensor | None = None
) -> Tensor:
    """L_M-GAN for D: real_logits and fake_logits (B, M, 1, h, w), valid (B, M) or None -> scalar.
    Pass D's logits on the detached generated image."""
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            f"real_logits {tuple(real_logits.shape)} and fake_logits "
            f"{tuple(fake_logits.shape)} must have one shape"
        )
    real = F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits), reduction="none"
    )
    fake = F.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits), reduction="none"
    )
    return _sum_over_sources(real + fake, valid)


# ---------------------------------------------------------------------------------------------
# Nearest-neighbour loss (Eq. 8)


def _nearest_offsets(generated: Tensor, padded_target: Tensor, k: int) -> Tensor:
    """Index dy * k + dx of the closest target neighbour of every location: (B, h, w) int64.

    A loop over the k * k shifts keeps one (B, C, h, w) difference alive at a time, and no
    autograd graph: only the winning neighbour is differentiated afterwards.
    """
    h, w = generated.shape[-2:]
    best = best_index = None
    with torch.no_grad():
        for index in range(k * k):
            dy, dx = divmod(index, k)
            shifted = padded_target[:, :, dy : dy + h, dx : dx + w]
            distance = (generated - shifted).abs().sum(dim=1)
            if best is None:
                best, best_index = distance, torch.zeros_like(distance, dtype=torch.long)
            else:
                closer = distance < best  # strict: ties keep the first shift
                best = torch.where(closer, distance, best)
                best_index = torch.where(closer, index, best_index)
    return best_index


def nearest_neighbour_loss(
    generated: Tensor,
    target: Tensor,
    features: Callable[[Tensor], Tensor] | None = None,
    neighbourhood: int = 3,
    weight: Tensor | None = None,
) -> Tensor:
    """Mean over locations of min over a k x k target neighbourhood of the channel-summed L1.

    Args:
        generated, target: (B, 3, H, W) images.
        features: maps (B, 3, H, W) to (B, C, h, w) features (e.g. VGG19Features); None compares
            the pixels themselves.
        neighbourhood: k, odd. Neighbours outside the image do not count (the target is padded by
            replication, so an outside neighbour repeats one inside the window).
        weight: (B, 1, H, W) per-location weights at image resolution (resized to the features'
            grid by area averaging), or None: every location counts 1.

    Returns:
        A scalar; its gradient flows through the nearest neighbour of each location.
    """
    if generated.shape != target.shape or generated.dim() != 4:
        raise ValueError(
            f"generated and target must be (B, C, H, W) of one shape, got "
            f"{tuple(generated.shape)} and {tuple(target.shape)}"
        )
    if neighbourhood < 1 or neighbourhood % 2 == 0:
        raise ValueError(f"neighbourhood must be odd and >= 1, got {neighbourhood}")
    if features is not None:
        generated, target = features(generated), features(target)
    B, C, h, w = generated.shape
    pad = neighbourhood // 2
    padded = F.pad(target, (pad, pad, pad, pad), mode="replicate") if pad else target
    index = _nearest_offsets(generated, padded, neighbourhood)
    rows = torch.arange(h, device=index.device)[:, None] + index // neighbourhood
    cols = torch.arange(w, device=index.device)[None, :] + index % neighbourhood
    flat = (rows * (w + 2 * pad) + cols).flatten(1)  # (B, h * w) into the padded map
    nearest = padded.flatten(2).gather(2, flat[:, None].expand(B, C, h * w)).view(B, C, h, w)
    distance = (generated - nearest).abs().sum(dim=1)  # (B, h, w)
    if weight is None:
        return distance.mean()
    if weight.dim() != 4 or weight.shape[0] != B or weight.shape[1] != 1:
        raise ValueError(f"weight must be (B, 1, H, W) with B = {B}, got {tuple(weight.shape)}")
    if tuple(weight.shape[-2:]) != (h, w):
        weight = F.adaptive_avg_pool2d(weight, (h, w))
    return (distance * weight[:, 0].to(distance.dtype)).mean()


class VGGWeightsNotFound(FileNotFoundError):
    """No VGG-19 weights were given or found; the message lists the ways to provide them."""


def _find_vgg_weights(weights: str | os.PathLike | None) -> Path:
    """``weights`` (a path, or "torchvision": torchvision's file in torch's hub cache), else
    $MSGEN_VGG19_WEIGHTS, else the shipped file."""
    if weights is not None and str(weights) == "torchvision":
        cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_VGG19_FILE
        if not cached.is_file():
            raise VGGWeightsNotFound(
                f"weights='torchvision': torchvision's VGG-19 is not in torch's hub cache ({cached}); "
                "msgen downloads nothing: put the file there, give its path, or leave the weights "
                "unset for the shipped VGG-19 (the paper's)")
        return cached
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise VGGWeightsNotFound(f"weights={str(weights)!r}: no such file")
        return path
    if os.environ.get(WEIGHTS_ENV):
        path = Path(os.environ[WEIGHTS_ENV])
        if not path.is_file():
            raise VGGWeightsNotFound(f"{WEIGHTS_ENV}={str(path)!r}: no such file")
        return path
    return SHIPPED_VGG19


def _check_shipped(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    if digest != SHIPPED_VGG19_SHA256:
        raise VGGWeightsNotFound(
            f"the shipped VGG-19 file {path} is {'missing' if digest == 'missing' else f'damaged (sha256 {digest})'}; "
            f"expected sha256 {SHIPPED_VGG19_SHA256}: reinstall msgen, or remake it with "
            "scripts/make_vgg19_weights.py")


def _load_state_dict(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The state dict in ``path`` and its metadata (a safetensors header's, else empty)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state, {}


class VGG19Features(nn.Module):
    """VGG-19 up to relu1_2, frozen: images (B, 3, H, W) in [-1, 1] -> (B, 64, H, W).

    Weights come from, in order: ``weights`` (a local VGG-19 state dict with torchvision's keys
    ``features.0.weight`` ..., or "torchvision": torchvision's file in torch's hub cache),
    ``$MSGEN_VGG19_WEIGHTS``, else the file msgen ships (the original ImageNet VGG-19 of
    Simonyan & Zisserman that the published code used through Keras; sha256 checked).
    ``source`` names the file used; ``paper`` is True for the shipped file.

    Input: a file whose safetensors metadata says ``channel_order: BGR`` (the shipped one) holds
    the original Caffe weights and is fed as the published code fed them: BGR, 0-255, minus the
    mean ``CAFFE_MEAN_BGR``, no std. Other (torchvision) files take RGB and ``input_scale``:
    "caffe" feeds 0-255 RGB minus the ImageNet mean (255 * mean), no division by the std: the
    magnitude of the published code's input, for which the paper's lambda = 0.01 was chosen. It
    is the torchvision input times 255 * std (about 58), so relu1_2 activations and NN distances
    are about 58x those of "torchvision" ([0, 1] normalised by mean and std, what torchvision's
    weights were trained on). Raises VGGWeightsNotFound when a named file is missing.
    """

    def __init__(self, weights: str | os.PathLike | None = None, input_scale: str = "caffe") -> None:
        super().__init__()
        if input_scale not in VGG_INPUTS:
            raise ValueError(f"input_scale must be one of {VGG_INPUTS}, got {input_scale!r}")
        path = _find_vgg_weights(weights)
        self.paper = path == SHIPPED_VGG19
        if self.paper:
            _check_shipped(path)
        # Layer indices as in torchvision's vgg19().features, so its state dict keys fit as is.
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        state, metadata = _load_state_dict(path)
        self.bgr = metadata.get("channel_order") == "BGR"
        if self.bgr and input_scale != "caffe":
            raise ValueError(f"input_scale={input_scale!r}: {path} holds the original Caffe VGG-19, "
                             "which takes 'caffe' input only (BGR, 0-255, mean subtracted)")
        self.input_scale = input_scale
        wanted = self.features.state_dict().keys()
        missing = [key for key in wanted if f"features.{key}" not in state]
        if missing:
            raise ValueError(
                f"{path} is not a torchvision VGG-19 state dict: it lacks "
                + ", ".join(f"features.{key}" for key in missing)
            )
        self.features.load_state_dict({key: state[f"features.{key}"] for key in wanted})
        self.requires_grad_(False)
        self.eval()
        self.source = str(path)
        if self.bgr:
            self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))
            self.register_buffer("std", torch.ones(1, 3, 1, 1))
        else:
            self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        if self.bgr:
            return self.features(127.5 * (images.flip(1) + 1) - self.mean)
        unit = (images + 1) / 2  # [0, 1] RGB
        if self.input_scale == "caffe":
            return self.features(255 * (unit - self.mean))
        return self.features((unit - self.mean) / self.std)


class NearestNeighbourLoss(nn.Module):
    """L_NN of Eq. 8: forward(generated (B, 3, H, W), target (B, 3, H, W)) -> scalar.

    features: "vgg19" (relu1_2, the shipped weights unless others are named, see VGG19Features),
    "pixel" or "l1" (the documented substitutes). ``feature_space`` says in words which space is
    used; construction warns it (FeatureSpaceWarning) unless it is the paper's (the shipped VGG-19).
    """

    def __init__(
        self,
        features: str = "vgg19",
        neighbourhood: int = 3,
        weights: str | os.PathLike | None = None,
        vgg_input: str = "caffe",
    ) -> None:
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        if neighbourhood < 1 or neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be odd and >= 1, got {neighbourhood}")
        self.features = features
        self.vgg = VGG19Features(weights, vgg_input) if features == "vgg19" else None
        # "l1" is the same loss with a 1 x 1 neighbourhood: the channel-summed L1 per pixel.
        self.neighbourhood = 1 if features == "l1" else neighbourhood
        if self.vgg is not None and self.vgg.paper:
            self.feature_space = ("VGG-19 relu1_2 features (the paper's: original ImageNet weights, "
                                  "Caffe input BGR 0-255 minus the mean, shipped with msgen)")
        elif self.vgg is not None:
            self.feature_space = (f"VGG-19 relu1_2 features ({vgg_input}-scaled input; "
                                  f"weights: {self.vgg.source})")
        elif features == "pixel":
            self.feature_space = "pixels (a substitute for the paper's VGG-19 relu1_2)"
        else:
            self.feature_space = (
                "pixels, plain L1 (a substitute for the paper's VGG-19 relu1_2)"
            )
        if self.vgg is None or not self.vgg.paper:
            warnings.warn(
                f"nearest-neighbour loss compares {self.feature_space}, "
                f"{self.neighbourhood}x{self.neighbourhood} neighbourhood",
                FeatureSpaceWarning,
                stacklevel=2,
            )

    @classmethod
    def from_config(cls, config: LossConfig) -> NearestNeighbourLoss:
        return cls(config.features, config.neighbourhood, config.vgg_weights, config.vgg_input)

    def forward(self, generated: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return nearest_neighbour_loss(generated, target, self.vgg, self.neighbourhood, weight)

    def extra_repr(self) -> str:
        return f"feature_space={self.feature_space!r}, neighbourhood={self.neighbourhood}"


class GeneratorLosses(NamedTuple):
    """total = adversarial + lambda_nn * reconstruction (Eq. 8); all scalars."""

    total: Tensor
    adversarial: Tensor
    reconstruction: Tensor


def generator_loss(
    fake_logits: Tensor | None,
    generated: Tensor,
    target: Tensor,
    reconstruction: Callable[[Tensor, Tensor], Tensor],
    valid: Tensor | None = None,
    lambda_nn: float = 0.01,
    adversarial_weight: float = 1.0,
    weight: Tensor | None = None,
) -> GeneratorLosses:
    """G's objective: adversarial_weight times L_M-GAN on fake_logits (B, M, 1, h, w) plus lambda_nn
    times the reconstruction loss (e.g. a NearestNeighbourLoss) of generated against target
    (B, 3, H, W), its locations weighted by ``weight`` (B, 1, H, W) when given (see
    ``person_weight_map``). ``adversarial`` is reported unweighted. fake_logits None: no
    adversarial term (D was not run; ``adversarial`` is 0)."""
    rec = reconstruction(generated, target) if weight is None else reconstruction(generated, target, weight)
    if fake_logits is None:
        return GeneratorLosses(lambda_nn * rec, torch.zeros_like(rec), rec)
    adversarial = generator_adversarial_loss(fake_logits, valid)
    return GeneratorLosses(adversarial_weight * adversarial + lambda_nn * rec, adversarial, rec)


def person_weight_map(part_masks: Tensor, target_kp: Tensor, person_weight: float) -> Tensor:
    """1 + person_weight on the target's body, 1 elsewhere: part_masks (B, M, P, H, W) and
    target_kp (B, 18, 2) -> (B, 1, H, W).

    The body (``msgen.pose.body_of``) is the union of the head and limb masks over parts and
    sources, and the area inside the target's torso points. The torso's part mask is left out
    because it covers the whole image (it doubles as the background warp): with it the map would be
    a uniform 1 + w, a constant factor that Adam ignores. The pose-mask loss of Ma et al., "Pose
    Guided Person Image Generation" (NeurIPS 2017), weighs the person this way so that an
    unpredictable background does not dominate the reconstruction term.
    """
    body = body_of(part_masks, target_kp)[:, None]
    return 1 + person_weight * body.clamp(0, 1)
