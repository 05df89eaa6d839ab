"""``python -m fastnn``: the same command line as the ``fastnn`` console script."""
import sys

from .cli import main

sys.exit(main())
