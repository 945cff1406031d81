"""`python -m cioproc`: the `cioproc` command line."""

import sys

from cioproc.cli import main

sys.exit(main())
