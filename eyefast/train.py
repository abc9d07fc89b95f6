"""``python -m eyefast.train`` = ``eyefast train`` (the seed's spelling; see :mod:`eyefast.cli.train`)."""

if __name__ == "__main__":
    import sys

    from .cli.train import main

    sys.exit(main(prog="python -m eyefast.train"))
