"""The ``ecrstore`` command-line tool, one module per group of commands.

``main`` (the console entry point) and the parser live in :mod:`.main`; :mod:`.common` holds
what the commands share (exit codes, global options, opening a store, argument types, output);
:mod:`.store_cmds`, :mod:`.serve`, :mod:`.transfer` and :mod:`.demo` hold the commands.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
