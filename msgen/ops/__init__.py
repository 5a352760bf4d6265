"""msgen.ops: the two hot operations of the generator, each a reference plus fast kernels.

- ``fused_attention`` / ``AttentionFusion``: the multi-source attention fusion (METHOD.md Eq. 2-5);
  reference in plain PyTorch, forward and backward Triton kernels in ``msgen.kernels``.
- ``part_warp``: the body-part affine warp with a max over parts; reference in plain PyTorch,
  CPU and CUDA kernels in the compiled extension ``msgen._C`` (sources in ``csrc/``).

Every op takes ``impl=``: "reference", its fast path, or "auto" (the fast path where it can run).
An explicit fast impl never falls back silently.
"""

from msgen.ops._backends import backend_report, backends
from msgen.ops.fused_attention import AttentionFusion, FusionWeights, fused_attention, fused_attention_reference
from msgen.ops.part_warp import part_warp, part_warp_reference

__all__ = [
    "AttentionFusion",
    "FusionWeights",
    "backend_report",
    "backends",
    "fused_attention",
    "fused_attention_reference",
    "part_warp",
    "part_warp_reference",
]
