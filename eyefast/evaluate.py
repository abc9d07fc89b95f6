"""``python -m eyefast.evaluate`` = ``eyefast evaluate`` (the seed's spelling; see :mod:`eyefast.cli.evaluate`)."""

if __name__ == "__main__":
    import sys

    from .cli.evaluate import main

    sys.exit(main(prog="python -m eyefast.evaluate"))
