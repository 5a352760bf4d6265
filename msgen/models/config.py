"""Configuration of the generator, the discriminator and the losses, as dataclasses with presets.

Presets (``preset(name)``):
- "market": 128x64 images, 6 encoder levels, full width (METHOD.md's Market-1501 model).
- "deepfashion": 256x256 images, 7 levels, 5x5 nearest-neighbour window.
- "synthetic-small": 128x64, 6 levels, width 0.125 (filters 8 ... 64) so a CPU trains it; its
  reconstruction loss is a pixel-space substitute (plain L1) because no VGG-19 weights ship with msgen.

The op implementations are one switch for the whole model: ``OpsConfig`` names the impl of each
op, ``ops_config("reference" | "fast")`` gives the two standard choices, and
``msgen.models.set_ops_impl`` changes a built model in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from msgen.ops.fused_attention import IMPLS as _FUSION_IMPLS
from msgen.ops.part_warp import IMPLS as _WARP_IMPLS

VARIANTS = ("avg-nod", "avg", "att2d", "full")
FC_HIDDEN = ("paper", "code")
FEATURES = ("vgg19", "pixel", "l1")
VGG_INPUTS = ("caffe", "torchvision")

# Per-stream encoder filters at full width (METHOD.md, "Generator G"); 7-level models add one 512.
_ENCODER_FILTERS = (64, 128, 256, 512, 512, 512)
_DISCRIMINATOR_FILTERS = (64, 128, 256, 512)


def scaled(filters: int, width: float) -> int:
    """A filter count times the width multiplier, rounded, never below 1."""
    return max(1, round(filters * width))


@dataclass(frozen=True)
class OpsConfig:
    """The implementation each op of the model runs on (passed as ``impl=`` to every call).

    part_warp: "reference", "extension" or "auto"; fused_attention: "reference", "triton" or "auto".
    An explicit fast impl raises where it cannot run; "auto" picks the fast path where it exists.
    """

    part_warp: str = field(default="reference", metadata={"help": (
        "implementation of the body-part warp: 'reference' (plain PyTorch), 'extension' (the C++/CUDA "
        "kernels of msgen._C) or 'auto' (the extension where it is built)")})
    fused_attention: str = field(default="reference", metadata={"help": (
        "implementation of the attention fusion: 'reference' (plain PyTorch), 'triton' (the fused "
        "Triton kernel) or 'auto' (Triton on a CUDA GPU, the reference elsewhere)")})

    def __post_init__(self) -> None:
        if self.part_warp not in _WARP_IMPLS:
            raise ValueError(f"part_warp must be one of {_WARP_IMPLS}, got {self.part_warp!r}")
        if self.fused_attention not in _FUSION_IMPLS:
            raise ValueError(
                f"fused_attention must be one of {_FUSION_IMPLS}, got {self.fused_attention!r}"
            )


OPS_PRESETS = {
    "reference": OpsConfig(part_warp="reference", fused_attention="reference"),
    "fast": OpsConfig(part_warp="auto", fused_attention="auto"),
}


def ops_config(ops: str | OpsConfig) -> OpsConfig:
    """Resolve "reference", "fast" or an OpsConfig to an OpsConfig."""
    if isinstance(ops, OpsConfig):
        return ops
    if ops not in OPS_PRESETS:
        raise ValueError(f"ops must be one of {tuple(OPS_PRESETS)} or an OpsConfig, got {ops!r}")
    return OPS_PRESETS[ops]


@dataclass(frozen=True)
class GeneratorConfig:
    """The multi-source generator G (METHOD.md, "Generator G").

    image_size: (H, W); both must be divisible by 2 ** (levels - 1).
    levels: encoder levels R + 1 (6 for 128x64, 7 for 256x256); level r has stride 2 ** r.
    width: multiplier of every filter count (encoder, decoder and attention).
    variant: "full" (Eq. 3), "att2d" (spatial attention only), "avg" (warped skips averaged over
        the valid sources), "avg-nod" (no warping, averaged).
    fc_hidden: FC1 hidden size of the channel gate: "paper" (Cd + Ce) / 4 or "code" Ce / 4.
    coarse_attention: feed each attention level the coarser level's saliency (the published code's
        variant, METHOD.md): one more skip channel per source, that source's share of the coarser
        level's attention (upsampled, times M_valid, so an even split reads 1 at every M). The
        averaging variants have no attention to feed: for them it changes nothing.
    copy_pixels: blend into the output the sources' own pixels, each warped to the target pose
        with its part affines and weighted by the finest attention, where a learned mask says so
        (not in the paper; see msgen.models.generator). No effect with "avg-nod", which warps nothing.
    warp_levels: how many of the finest source-stream levels are warped (4 in the method).
    warp_mode: sampling of the part warp, "bilinear" (default) or "nearest" (published code).
    ops: which op implementations the model calls ("reference", "fast" or an OpsConfig).
    """

    image_size: tuple[int, int] = field(default=(128, 64), metadata={"help": (
        "generated image size H,W in pixels (e.g. 128,64 or 128x64); both divisible by "
        "2 ** (levels - 1); dataset images of another size are resized to it")})
    levels: int = field(default=6, metadata={"help": (
        "encoder levels (>= 2; level r has stride 2 ** r): 6 for 128x64 images, 7 for 256x256")})
    width: float = field(default=1.0, metadata={"help": (
        "multiplier of every filter count of G (> 0; 1.0 is the paper's model, 0.125 a CPU-sized one)")})
    variant: str = field(default="full", metadata={"help": (
        "fusion variant: 'full' (channel and spatial attention, the paper's Eq. 3), 'att2d' (spatial "
        "attention only), 'avg' (warped skips averaged over the sources), 'avg-nod' (no warp, averaged)")})
    fc_hidden: str = field(default="paper", metadata={"help": (
        "hidden size of the channel gate's first layer: 'paper' ((Cd + Ce) / 4) or 'code' (Ce / 4, "
        "the published code)")})
    coarse_attention: bool = field(default=False, metadata={"help": (
        "feed each attention level the coarser level's saliency, upsampled, as one more channel of "
        "every source's skip (the published code's variant; the paper's default is off): the finest "
        "level's gates can then follow a view choice that only deep levels can see. No effect on "
        "the averaging variants")})
    copy_pixels: bool = field(default=False, metadata={"help": (
        "blend the sources' warped pixels, weighted by the finest attention, into the output where a "
        "learned mask trusts them, so fine detail (a logo) is copied rather than redrawn (not in the "
        "paper, whose output is the decoder's alone; no effect with variant 'avg-nod', which warps nothing)")})
    warp_levels: int = field(default=4, metadata={"help": (
        "how many of the finest encoder levels have their skips warped by the body parts (0 to levels)")})
    warp_mode: str = field(default="bilinear", metadata={"help": (
        "sampling of the part warp: 'bilinear' or 'nearest' (the published code)")})
    ops: str | OpsConfig = field(default="reference", metadata={"help": (
        "op implementations of the model: 'reference' (plain PyTorch everywhere) or 'fast' (the fused "
        "Triton and C++/CUDA kernels where they run, the references elsewhere)")})
    image_channels: int = field(default=3, metadata={"help": "channels of an image (3: RGB)"})
    pose_channels: int = field(default=18, metadata={"help": (
        "channels of the pose input: one heatmap per keypoint (18, the OpenPose format)")})
    parts: int = field(default=10, metadata={"help": (
        "body parts warped separately (10: torso, head, upper and lower arms and legs)")})

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.fc_hidden not in FC_HIDDEN:
            raise ValueError(f"fc_hidden must be one of {FC_HIDDEN}, got {self.fc_hidden!r}")
        if self.levels < 2:
            raise ValueError(f"levels must be >= 2, got {self.levels}")
        if not 0 <= self.warp_levels <= self.levels:
            raise ValueError(
                f"warp_levels must be in [0, levels={self.levels}], got {self.warp_levels}"
            )
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width}")
        stride = 2 ** (self.levels - 1)
        if any(size % stride for size in self.image_size):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2 ** (levels - 1) = {stride}"
            )
        ops_config(self.ops)  # validates

    @property
    def encoder_filters(self) -> tuple[int, ...]:
        """Per-stream filters of levels 0 .. levels - 1 (a skip has twice as many: two streams)."""
        full = _ENCODER_FILTERS + (512,) * max(0, self.levels - len(_ENCODER_FILTERS))
        return tuple(scaled(c, self.width) for c in full[: self.levels])

    @property
    def copies_pixels(self) -> bool:
        """Whether the output blends in warped source pixels: copy_pixels, unless nothing is warped."""
        return self.copy_pixels and self.variant != "avg-nod"

    @property
    def decoder_filters(self) -> tuple[int, ...]:
        """Channels Cd of psi_r for levels 0 .. levels - 2: the encoder's per-stream filters of
        level r, mirroring the encoder as a U-Net decoder does."""
        return self.encoder_filters[:-1]

    @property
    def skip_channels(self) -> tuple[int, ...]:
        """Channels Ce of xi_r: source stream plus pose stream of level r."""
        return tuple(2 * c for c in self.encoder_filters)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The PatchGAN D on concat(x, H(p_target), x_i, H(P(x_i))) (METHOD.md, Eq. 6-7)."""

    width: float = field(default=1.0, metadata={"help": (
        "multiplier of every filter count of D (> 0; 1.0 is the paper's PatchGAN: 64 ... 512 filters)")})
    image_channels: int = field(default=3, metadata={"help": "channels of an image (3: RGB)"})
    pose_channels: int = field(default=18, metadata={"help": "channels of a pose heatmap stack (18)"})

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width}")

    @property
    def filters(self) -> tuple[int, ...]:
        return tuple(scaled(c, self.width) for c in _DISCRIMINATOR_FILTERS)

    @property
    def in_channels(self) -> int:
        return 2 * (self.image_channels + self.pose_channels)


@dataclass(frozen=True)
class LossConfig:
    """The generator's reconstruction term and its weight (Eq. 8).

    features: "vgg19" (relu1_2, shipped weights: see msgen.models.losses.VGG19Features), or the
        documented substitutes "pixel" (nearest-neighbour loss on the RGB pixels) and "l1"
        (channel-summed L1, no neighbourhood).
    neighbourhood: k of the k x k search window (3 for 128x64, 5 for 256x256).
    vgg_weights: a local VGG-19 state dict or "torchvision" (torch's hub cache); None reads
        MSGEN_VGG19_WEIGHTS, then the shipped original VGG-19 (the paper's).
    vgg_input: how images are scaled for the VGG (see the field's help).
    """

    features: str = field(default="vgg19", metadata={"help": (
        "what the nearest-neighbour reconstruction loss compares: 'vgg19' (relu1_2 features, the "
        "paper's; the weights ship with msgen), 'pixel' (the NN loss on RGB pixels, a substitute) "
        "or 'l1' (plain L1 on the pixels, no neighbourhood)")})
    neighbourhood: int = field(default=3, metadata={"help": (
        "k of the k x k window the NN loss searches, odd (3 for 128x64 images, 5 for 256x256)")})
    lambda_nn: float = field(default=0.01, metadata={"help": (
        "weight of the reconstruction term in G's loss (the paper's 0.01 is for VGG features; with "
        "'pixel' features use about 100)")})
    vgg_weights: str | None = field(default=None, metadata={"help": (
        "path of a local torchvision VGG-19 state dict, or 'torchvision' for torchvision's file in "
        "torch's hub cache; none reads MSGEN_VGG19_WEIGHTS, then the original VGG-19 msgen ships "
        "(the paper's; nothing is downloaded)")})
    adversarial_weight: float = field(default=1.0, metadata={"help": (
        "weight of the adversarial term in G's loss, total = w * L_GAN + lambda_nn * L_NN "
        "(1: the paper's Eq. 8; 0 trains G on the reconstruction term alone)")})
    person_weight: float = field(default=0.0, metadata={"help": (
        "extra weight of the reconstruction loss on the target's body parts: each location counts "
        "1 + w * (union of the target's part masks), the pose-mask loss of Ma et al. 2017 "
        "(0: the paper's unweighted loss)")})
    vgg_input: str = field(default="caffe", metadata={"help": (
        "input scale of the VGG-19: 'caffe' (0-255 minus the ImageNet mean, no std division, the "
        "published code's input, for which lambda 0.01 was chosen; BGR for the shipped weights, RGB "
        "for torchvision's; relu1_2 distances ~58x those of 'torchvision') or 'torchvision' ([0, 1] "
        "RGB normalised by mean/std, for torchvision's weights only)")})

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.vgg_input not in VGG_INPUTS:
            raise ValueError(f"vgg_input must be one of {VGG_INPUTS}, got {self.vgg_input!r}")
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be odd and >= 1, got {self.neighbourhood}")
        if not self.adversarial_weight >= 0:
            raise ValueError(f"adversarial_weight must be >= 0, got {self.adversarial_weight}")
        if not self.person_weight >= 0:
            raise ValueError(f"person_weight must be >= 0, got {self.person_weight}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything ``msgen.models`` builds: G, D and the losses."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def with_ops(self, ops: str | OpsConfig) -> ModelConfig:
        """The same configuration running on other op implementations."""
        return replace(self, generator=replace(self.generator, ops=ops))


PRESETS: dict[str, ModelConfig] = {
    "market": ModelConfig(
        generator=GeneratorConfig(image_size=(128, 64), levels=6, width=1.0),
        discriminator=DiscriminatorConfig(width=1.0),
        loss=LossConfig(features="vgg19", neighbourhood=3),
    ),
    "deepfashion": ModelConfig(
        generator=GeneratorConfig(image_size=(256, 256), levels=7, width=1.0),
        discriminator=DiscriminatorConfig(width=1.0),
        loss=LossConfig(features="vgg19", neighbourhood=5),
    ),
    # Where the synthetic preset leaves the paper, and why (the measurements: docs/RESULTS.md):
    # - lambda_nn 100: the paper's 0.01 weighs VGG relu1_2 distances; pixel distances are ~100x
    #   smaller, and at 0.01 the adversarial term alone drives training.
    # - no adversarial term: at this preset's CPU budget the GAN draws colour blobs where the
    #   reconstruction term alone draws the person; D is kept, so --model.loss.adversarial-weight 1
    #   restores the paper's objective.
    # - coarse_attention (the published code's variant): the finest level's inputs are local, so
    #   alone it cannot tell which source shows the target's view; its coarser level can.
    # - plain L1, not the 3x3 pixel NN loss: the nearest neighbour forgives any detail under 3
    #   pixels wide, and at 64x32 the logos, eyes and limb edges are that small. Nor the paper's
    #   VGG-19 relu1_2 NN loss (lambda 0.02 here): paired, it loses mask-SSIM, SSIM_256 and the
    #   logo at M = 1 and wins only LPIPS.
    # - copy_pixels (not in the paper): the decoder alone redraws the logos from blurred features.
    # - person_weight 4 (the pose-mask loss of Ma et al. 2017, not in the paper): the body counts 5x
    #   the background; paired, it raises mask-SSIM and the logo drawn at M = 5 and lowers LPIPS.
    "synthetic-small": ModelConfig(
        generator=GeneratorConfig(image_size=(128, 64), levels=6, width=0.125, coarse_attention=True,
                                  copy_pixels=True),
        discriminator=DiscriminatorConfig(width=0.125),
        loss=LossConfig(features="l1", lambda_nn=100.0, adversarial_weight=0.0, person_weight=4.0),
    ),
}


def preset(name: str, **generator_overrides: object) -> ModelConfig:
    """A named configuration; keyword arguments replace fields of its GeneratorConfig."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
    config = PRESETS[name]
    if generator_overrides:
        config = replace(config, generator=replace(config.generator, **generator_overrides))
    return config
