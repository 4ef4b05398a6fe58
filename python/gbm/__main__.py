"""``python -m gbm``."""

import sys

from gbm.cli import main

sys.exit(main())
