"""msgen.models: the multi-source generator, its discriminator and their losses (METHOD.md).

- ``Generator`` (encoder.py + decoder.py): two-stream encoder with part-warped skips
  (``msgen.ops.part_warp``) and the attention decoder (``msgen.ops.AttentionFusion``); any M,
  a ``valid`` mask for mixed M; returns ``GeneratorOutput(image, saliency)``.
- ``Discriminator``: the PatchGAN shared over sources.
- losses: ``generator_adversarial_loss``, ``discriminator_loss``, ``nearest_neighbour_loss``,
  ``NearestNeighbourLoss`` (VGG-19 relu1_2 or the "pixel"/"l1" substitutes), ``generator_loss``.
- configuration: ``ModelConfig`` = ``GeneratorConfig`` + ``DiscriminatorConfig`` + ``LossConfig``,
  presets via ``preset("market" | "deepfashion" | "synthetic-small")``; the op implementations
  are one switch, ``GeneratorConfig.ops`` or ``set_ops_impl(model, "reference" | "fast")``.
"""

from msgen.models.config import (
    PRESETS,
    DiscriminatorConfig,
    GeneratorConfig,
    LossConfig,
    ModelConfig,
    OpsConfig,
    ops_config,
    preset,
)
from msgen.models.discriminator import Discriminator
from msgen.models.generator import Generator, GeneratorOutput, set_ops_impl
from msgen.models.losses import (
    FeatureSpaceWarning,
    GeneratorLosses,
    NearestNeighbourLoss,
    VGG19Features,
    VGGWeightsNotFound,
    discriminator_loss,
    generator_adversarial_loss,
    generator_loss,
    nearest_neighbour_loss,
)

__all__ = [
    "PRESETS",
    "Discriminator",
    "DiscriminatorConfig",
    "FeatureSpaceWarning",
    "Generator",
    "GeneratorConfig",
    "GeneratorLosses",
    "GeneratorOutput",
    "LossConfig",
    "ModelConfig",
    "NearestNeighbourLoss",
    "OpsConfig",
    "VGG19Features",
    "VGGWeightsNotFound",
    "discriminator_loss",
    "generator_adversarial_loss",
    "generator_loss",
    "nearest_neighbour_loss",
    "ops_config",
    "preset",
    "set_ops_impl",
]
