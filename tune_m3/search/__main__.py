"""``python -m tune_m3.search``: see :mod:`tune_m3.search`."""

import sys

from tune_m3.search.cli import main

sys.exit(main())
