"""``python -m worker.commands ARGS``: the console script without installing it."""

import sys

from worker.commands.main import main

sys.exit(main())
