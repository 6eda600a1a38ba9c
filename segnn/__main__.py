"""``python -m segnn``: the command line (what ``torchrun -m segnn train ...`` starts)."""

import sys

from segnn.cli import main

sys.exit(main())
