"""``python -m tune_m3`` is ``python -m tune_m3.search``."""

import sys

from tune_m3.search import main

sys.exit(main())
