"""What every ``eyefast`` subcommand shares: logging to stderr, the ``--set``/``--device`` flags,
``--print-config``, and errors printed as one line with exit status 2."""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["setup_logging", "parser", "add_set", "add_device", "add_print_config", "fail", "print_config",
           "check_device_flag", "check_out_folder"]


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler on whatever ``sys.stderr`` is when a message is written (not when it was made)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(quiet: bool = False) -> None:
    """eyefast's library messages (``logging.getLogger("eyefast...")``) on stderr, as ``[eyefast] ...``."""
    root = logging.getLogger("eyefast")
    if not any(getattr(h, "_eyefast_cli", False) for h in root.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
        h._eyefast_cli = True
        root.addHandler(h)
    root.setLevel(logging.WARNING if quiet else logging.INFO)


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose description is the first paragraph of ``doc`` and whose epilog is the rest."""
    parts = (doc or "").strip().split("\n\n", 1)
    return argparse.ArgumentParser(prog=prog, description=parts[0], epilog=parts[1] if len(parts) > 1 else None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_set(ap) -> None:
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config key (repeatable), e.g. --set train.max_steps=500")


def add_device(ap, default_help: str = "the config's device") -> None:
    ap.add_argument("--device", help=f"cpu, cuda, cuda:N, N or auto (default: {default_help})")


def add_print_config(ap) -> None:
    ap.add_argument("--print-config", action="store_true",
                    help="print the config with every default filled in (and the --set overrides) and exit")


def print_config(path: str, overrides) -> int:
    """Prints the config at ``path`` with ``overrides`` applied and the defaults filled in, as YAML."""
    import yaml

    from ..data import config as config_mod

    cfg = config_mod.load(path, overrides)
    print(f"# {path}" + (f" with {' '.join('--set ' + o for o in overrides)}" if overrides else ""))
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None), end="")
    return 0


def check_device_flag(value: str, flag: str = "--device") -> str | None:
    """None when ``value`` is a device name eyefast takes (auto, cpu, cuda, cuda:N, N), else the error."""
    import re

    if re.match(r"^(auto|cpu|cuda|cuda:[0-9]+|[0-9]+)$", str(value).strip()):
        return None
    return f"{flag}: expected cpu, cuda, cuda:N, N or auto, got {value!r}"


def check_out_folder(path: str, flag: str) -> str | None:
    """None when ``path`` can be an output folder (it is one, or does not exist yet), else the error."""
    import os

    if os.path.exists(path) and not os.path.isdir(path):
        return f"{flag} '{path}' is a file, not a folder: give a folder (it is created when missing)"
    return None


def _message(err: BaseException | str) -> str:
    """One line for an exception: OSErrors name their file (``[Errno 2] No such file...: 'x'`` -> ``'x': No
    such file or directory``), others their message (or their type, when they have none)."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        return f"'{err.filename}': {err.strerror}"
    text = str(err).strip() or (type(err).__name__ if isinstance(err, BaseException) else "")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def fail(prog: str, err: BaseException | str) -> int:
    """Prints ``prog: error: ...`` (one line) to stderr; returns the exit status 2."""
    print(f"{prog}: error: {_message(err)}", file=sys.stderr)
    return 2
