"""``python -m fastcheckpoint``: the ``fastcheckpoint`` command."""

import sys

from fastcheckpoint.cli import main

sys.exit(main())
