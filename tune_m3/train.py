"""``python -m tune_m3.train``: the command line of :mod:`tune_m3.training` (kept at this name).

The only shim of the training package: the code lives in ``tune_m3/training/`` (``cli.py`` for
this command); import from there, e.g. ``from tune_m3.training import train``.
"""

import sys

from tune_m3.training.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
