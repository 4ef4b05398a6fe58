"""``python -m gbm``."""

import sys

from .cli import main

sys.exit(main())
