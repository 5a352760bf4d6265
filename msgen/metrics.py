"""Compatibility module: the metrics now live in the package ``msgen.evaluation``, split by concern
(``msgen.evaluation.ssim``, ``.features``, ``.lpips``, ``.intervals``). Every name users imported
from ``msgen.metrics`` keeps working from here (the same objects); new code imports from
``msgen.evaluation``. The names are the package's own list, so the two cannot drift apart.
"""

from msgen.evaluation import *  # noqa: F403
from msgen.evaluation import __all__  # noqa: F401
