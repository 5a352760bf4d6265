"""Compatibility module: the metrics now live in the package ``msgen.evaluation``, split by concern
(``msgen.evaluation.ssim``, ``.features``, ``.lpips``, ``.intervals``). Every name users imported
from ``msgen.metrics`` keeps working from here; new code imports from ``msgen.evaluation``.
"""

from msgen.evaluation.features import (
    INCEPTION_ENV,
    INCEPTION_SIZE,
    TORCHVISION_INCEPTION_FILE,
    FeatureStats,
    InceptionModel,
    InceptionScorer,
    InceptionUnavailable,
    MetricUnavailable,
    ProbabilityModel,
    frechet_distance,
    images_to_inception_input,
    inception_score_from_probabilities,
    inception_weights_path,
    load_inception,
    load_inception_model,
)
from msgen.evaluation.intervals import BOOTSTRAP_RESAMPLES, bootstrap_interval, paired_difference
from msgen.evaluation.lpips import (
    ALEXNET_ENV,
    ALEXNET_TAPS,
    LPIPS,
    LPIPS_HEADS_ENV,
    LPIPS_SCALE,
    LPIPS_SHIFT,
    TORCHVISION_ALEXNET_FILE,
    alexnet_features,
    load_lpips,
    lpips_heads_file,
)
from msgen.evaluation.ssim import DATA_RANGES, GFLA_SSIM_WINDOW, apply_mask, mask_ssim, ssim, ssim_gfla, to_uint8

__all__ = [
    "ALEXNET_ENV",
    "ALEXNET_TAPS",
    "BOOTSTRAP_RESAMPLES",
    "DATA_RANGES",
    "GFLA_SSIM_WINDOW",
    "INCEPTION_ENV",
    "INCEPTION_SIZE",
    "LPIPS",
    "LPIPS_HEADS_ENV",
    "LPIPS_SCALE",
    "LPIPS_SHIFT",
    "TORCHVISION_ALEXNET_FILE",
    "TORCHVISION_INCEPTION_FILE",
    "FeatureStats",
    "InceptionModel",
    "InceptionScorer",
    "InceptionUnavailable",
    "MetricUnavailable",
    "ProbabilityModel",
    "alexnet_features",
    "apply_mask",
    "bootstrap_interval",
    "frechet_distance",
    "images_to_inception_input",
    "inception_score_from_probabilities",
    "inception_weights_path",
    "load_inception",
    "load_inception_model",
    "load_lpips",
    "lpips_heads_file",
    "mask_ssim",
    "paired_difference",
    "ssim",
    "ssim_gfla",
    "to_uint8",
]
