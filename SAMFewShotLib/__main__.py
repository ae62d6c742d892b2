"""``python -m SAMFewShotLib`` = the ``samfewshot`` command."""

import sys

from .cli.main import main

sys.exit(main())
