"""One module per ``facesr`` command.

Each module defines ``add_parser(subparsers)`` (its arguments and help) and
``run(args) -> int`` (the work).  Heavy imports stay inside ``run`` so that
``facesr --help`` and ``facesr CMD --help`` start fast.  ``facesr.cli`` only
registers the modules listed in :data:`COMMANDS` and turns
:class:`facesr.errors.FacesrError` into one line.
"""

#: Command modules under ``facesr.commands``, in the order ``facesr --help`` lists them.
COMMANDS: list[str] = ["restore", "serve"]
