"""``python -m eyefast.render`` = ``eyefast render`` (see :mod:`eyefast.cli.render`)."""

if __name__ == "__main__":
    import sys

    from .cli.render import main

    sys.exit(main(prog="python -m eyefast.render"))
