"""Triton kernels of msgen, installed as ``msgen.kernels`` (never imported as top-level ``kernels``).

Each module holds the ``@triton.jit`` kernels of one op and the launchers that allocate outputs and
pick block sizes and launches; the Python op around them (reference, dispatch, autograd) is in
``msgen.ops``, and the bytes the kernels move are modelled in ``msgen.ops.byte_model``.
Importing a module here needs triton; ``msgen.ops`` imports them only when the Triton path runs.
"""
