"""``python -m analysis`` is ``python -m analysis.report``."""

import sys

from analysis.report import main

sys.exit(main())
