"""``eyefast.view(run)`` serves the browser viewer of a run (see :func:`eyefast.visual.viewer.view`);
``python -m eyefast.view`` = ``eyefast view`` (see :mod:`eyefast.cli.view`).

The module is callable: ``eyefast.view(...)`` works whether or not ``eyefast.view`` was imported.
"""

import sys
import types


def view(run, port: int = 8080, host: str = "127.0.0.1", source: str = "model", size: int = 256,
         preview_size: int = 64, block: bool = True):
    """See :func:`eyefast.visual.viewer.view`."""
    from .visual.viewer import view as _view

    return _view(run, port=port, host=host, source=source, size=size, preview_size=preview_size, block=block)


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return view(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    from .cli.view import main

    sys.exit(main(prog="python -m eyefast.view"))
