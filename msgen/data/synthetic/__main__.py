"""``python -m msgen.data.synthetic``: the writer's command line (``msgen.data.synthetic.write``)."""

import sys

from msgen.data.synthetic.write import main

sys.exit(main())
