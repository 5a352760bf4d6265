"""Triton kernels of msgen, installed as ``msgen.kernels`` (never imported as top-level ``kernels``).

Each module holds the ``@triton.jit`` kernels of one op and the launchers that allocate outputs and
pick block sizes; the Python op around them (reference, dispatch, autograd) is in ``msgen.ops``.
Importing a module here needs triton; ``msgen.ops`` imports them only when the Triton path runs.
"""
