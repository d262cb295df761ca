import sys

from tune_m3.tracking.resync import main

sys.exit(main())
