"""``python -m qstar_native``: the ``qstar`` command line (see :mod:`qstar_native.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
