"""``python -m eyefast.prepare`` = ``eyefast prepare`` (see :mod:`eyefast.cli.prepare`)."""

if __name__ == "__main__":
    import sys

    from ..cli.prepare import main

    sys.exit(main(prog="python -m eyefast.prepare"))
