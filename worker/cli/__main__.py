"""``python -m worker.cli``: the ``tagger`` command."""

import sys

from worker.cli import main

sys.exit(main())
