"""``python3 -m physgrad``: see :mod:`physgrad.cli`."""
import sys

from .cli import main

sys.exit(main())
