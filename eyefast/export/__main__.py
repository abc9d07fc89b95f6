"""``python -m eyefast.export`` = ``eyefast export`` (see :mod:`eyefast.cli.export`)."""

import sys

from ..cli.export import main

sys.exit(main(prog="python -m eyefast.export"))
