"""``python -m eyefast.tools`` = ``eyefast tools`` (the seed's spelling; see :mod:`eyefast.cli.tools`)."""

if __name__ == "__main__":
    import sys

    from .cli.tools import main

    sys.exit(main(prog="python -m eyefast.tools"))
