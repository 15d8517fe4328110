"""``python -m promptopt``: the same command line as the ``promptopt`` script."""

import sys

from promptopt.experiments.cli import main

sys.exit(main())
