"""``python -m cioproc.sandbox``."""

import sys

from cioproc.sandbox.cli import main

sys.exit(main())
