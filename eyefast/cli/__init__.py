"""The ``eyefast`` command: ``eyefast COMMAND [ARGS]`` (``python -m eyefast COMMAND`` too).

Commands:
    train      train a head model on a capture (a config.yaml)
    export     export a trained run: meshes, UV textures, eyes, head.glb
    evaluate   render a run's validation views and measure them against the capture
    render     render a run from any camera under any lights: turntables, videos, strips
    view       look at a run in the browser: orbit it, move the light
    synth      generate the built-in synthetic capture (with ground truth)
    prepare    from a phone video (or photos) to a capture that trains
    tools      own-data step 1: eye masks, eye landmarks
    bench      run the benchmark suite (from a source checkout)

``eyefast COMMAND --help`` shows a command's flags. Each command's module (``eyefast.cli.train`` ...)
has ``main(argv)``; ``python -m eyefast.train`` and the other seed spellings call the same.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

#: command -> one-line summary
COMMANDS = {
    "train": "train a head model on a capture (a config.yaml)",
    "export": "export a trained run: meshes, UV textures, eyes, head.glb",
    "evaluate": "render a run's validation views and measure them against the capture",
    "render": "render a run from any camera under any lights: turntables, videos, strips",
    "view": "look at a run in the browser: orbit it, move the light",
    "synth": "generate the built-in synthetic capture (with ground truth)",
    "prepare": "from a phone video (or photos) to a capture that trains",
    "tools": "own-data step 1: eye masks and eye landmarks",
    "bench": "run the benchmark suite (from a source checkout)",
}


def _usage() -> str:
    from .. import __version__

    w = max(len(c) for c in COMMANDS)
    lines = [f"usage: eyefast COMMAND [ARGS]   (eyefast {__version__})", "",
             "Relightable face and eye capture from a phone-flashlight video.", "", "commands:"]
    lines += [f"  {c:<{w}}  {h}" for c, h in COMMANDS.items()]
    lines += ["", "eyefast COMMAND --help shows the command's options."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from .. import __version__

        print(f"eyefast {__version__}")
        return 0
    cmd = argv[0]
    if cmd not in COMMANDS:
        print(_usage(), file=sys.stderr)
        print(f"\neyefast: error: unknown command {cmd!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    mod = importlib.import_module(f"{__name__}.{cmd}")
    try:
        return int(mod.main(argv[1:], prog=f"eyefast {cmd}") or 0)
    except SystemExit as e:  # argparse's --help and usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
