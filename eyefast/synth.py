"""``python -m eyefast.synth`` = ``eyefast synth`` (the seed's spelling; see :mod:`eyefast.cli.synth`)."""

if __name__ == "__main__":
    import sys

    from .cli.synth import main

    sys.exit(main(prog="python -m eyefast.synth"))
