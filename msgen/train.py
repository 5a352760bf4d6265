"""``python -m msgen.train``: train the multi-source generator (``--help`` lists every option).

With no arguments it trains the "synthetic" preset on the built-in synthetic dataset, generated on
first use into ~/.cache/msgen, on the GPU when there is one. Multi-GPU or multi-process:
``torchrun --nproc_per_node N -m msgen.train ...``. The work is done by ``msgen.training``.
"""

import sys

from msgen.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
