"""Evaluation: the metrics of the field, the reference rows and the evaluator that scores them.

- ``evaluator``: ``score_methods`` (every method at every M on the same tuples), ``tuple_persons``
  (each tuple's person), ``summarise``,
  ``evaluate`` (training's periodic evaluation), ``Method``, ``MethodResult``, ``Networks``;
- ``baselines``: the warp baseline, the constant image of the mean colour, the ground truth;
- ``ssim``: SSIM_256, GFLA's SSIM, mask-SSIM, ``to_uint8``;
- ``features``: Inception-v3 loading, ``FeatureStats`` and ``frechet_distance`` (FID), the
  Inception Score (whole and streamed), ``MetricUnavailable``;
- ``lpips``: LPIPS v0.1 AlexNet and its loading;
- ``intervals``: ``bootstrap_interval`` and ``paired_difference``, resampling persons.

``python -m msgen.evaluate`` is the command line over this package.
"""

from msgen.evaluation.baselines import (
    MEAN_COLOUR_IMAGES,
    constant_method,
    ground_truth_method,
    mean_colour,
    warp_baseline,
)
from msgen.evaluation.evaluator import (
    PAIRWISE,
    Method,
    MethodResult,
    Networks,
    evaluate,
    real_statistics,
    score_methods,
    summarise,
    tuple_persons,
)
from msgen.evaluation.features import (
    INCEPTION_ENV,
    INCEPTION_SIZE,
    IS_SPLITS,
    TORCHVISION_INCEPTION_FILE,
    FeatureStats,
    InceptionModel,
    InceptionScorer,
    InceptionUnavailable,
    MetricUnavailable,
    ProbabilityModel,
    StreamingInceptionScore,
    frechet_distance,
    images_to_inception_input,
    inception_score_from_probabilities,
    inception_weights_path,
    load_inception,
    load_inception_model,
)
from msgen.evaluation.intervals import BOOTSTRAP_RESAMPLES, bootstrap_interval, count_persons, paired_difference
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
    "IS_SPLITS",
    "LPIPS",
    "LPIPS_HEADS_ENV",
    "LPIPS_SCALE",
    "LPIPS_SHIFT",
    "MEAN_COLOUR_IMAGES",
    "PAIRWISE",
    "TORCHVISION_ALEXNET_FILE",
    "TORCHVISION_INCEPTION_FILE",
    "FeatureStats",
    "InceptionModel",
    "InceptionScorer",
    "InceptionUnavailable",
    "Method",
    "MethodResult",
    "MetricUnavailable",
    "Networks",
    "ProbabilityModel",
    "StreamingInceptionScore",
    "alexnet_features",
    "apply_mask",
    "bootstrap_interval",
    "constant_method",
    "count_persons",
    "evaluate",
    "frechet_distance",
    "ground_truth_method",
    "images_to_inception_input",
    "inception_score_from_probabilities",
    "inception_weights_path",
    "load_inception",
    "load_inception_model",
    "load_lpips",
    "lpips_heads_file",
    "mask_ssim",
    "mean_colour",
    "paired_difference",
    "real_statistics",
    "score_methods",
    "ssim",
    "ssim_gfla",
    "summarise",
    "to_uint8",
    "tuple_persons",
    "warp_baseline",
]
