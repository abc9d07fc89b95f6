"""Run the benchmark suite: ``eyefast bench`` (eyefast against the PyTorch references, and nerfacc on
a GPU), from a source checkout.

Usage::

    eyefast bench [--device cpu|cuda] [--quick] [--only OP[,OP]] [--json PATH] [--plot PNG]

The benchmarks live in the repository's ``benchmarks/`` folder (they are not installed with the
package); run this from the checkout, or pass --source CHECKOUT.
"""

from __future__ import annotations

import os
import sys

from .common import fail

PROG = "eyefast bench"


def _checkout(argv):
    """(the source checkout holding benchmarks/, the remaining arguments)."""
    argv = list(argv)
    src = None
    if "--source" in argv:
        i = argv.index("--source")
        if i + 1 >= len(argv):
            raise ValueError("--source needs a folder")
        src = argv[i + 1]
        del argv[i:i + 2]
    cands = [src] if src else [os.getcwd(), os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))]
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "benchmarks", "run.py")):
            return os.path.abspath(c), argv
    raise FileNotFoundError("no benchmarks/ folder found " + (f"in '{src}'" if src else
                            "in the current folder or next to the installed package") +
                            ": run eyefast bench from a source checkout of eyefast (or pass --source CHECKOUT)")


def main(argv=None, prog: str = PROG) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        root, rest = _checkout(argv)
    except (ValueError, FileNotFoundError) as e:
        if "-h" in argv or "--help" in argv:
            print(__doc__.strip())
            return 0
        return fail(prog, e)
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks import run as bench_run  # the checkout's benchmarks package

    try:
        return int(bench_run.main(rest) or 0)
    except SystemExit as e:  # argparse: --help, or a usage error
        return int(e.code or 0)
