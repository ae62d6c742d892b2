"""``python -m SAMFewShotLib`` = the ``samfewshot`` command."""

import sys

from .cli import main

sys.exit(main())
