"""``python -m eyefast COMMAND`` = ``eyefast COMMAND`` (see :mod:`eyefast.cli`)."""

import sys

from .cli import main

sys.exit(main())
