"""The ``multidraft`` command.

Each sub-command lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``run`` (a function of the parsed
arguments returning an exit code).  Bad input (``ValueError``,
``FileNotFoundError``) becomes one line on stderr and exit code 2; a full disk
one line and exit code 1; Ctrl-C, at any stage from importing the command to
its last write, one line and exit code 130.  Every file a command writes is
replaced atomically, so an interrupted command leaves the previous results
whole (see ``docs/faults.md``).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

#: The sub-command modules, imported when the parser is built, inside the Ctrl-C handler (torch takes seconds).
COMMANDS = ("theory", "generate", "record", "plan", "bench", "models")
#: Exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


class OneLineErrors(argparse.ArgumentParser):
    """argparse with usage errors as one line on stderr (``--help`` still shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="multidraft", description="Lossless multi-draft speculative decoding.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"multidraft.cli.{name}").register(subparsers)
    return parser


def _command_name(args: argparse.Namespace | None) -> str:
    if args is None:
        return "multidraft"
    sub = getattr(args, f"{args.command}_command", None)
    return " ".join(["multidraft", args.command] + ([sub] if sub else []))


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"{_command_name(args)}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = "" if error.filename is None else f": {error.filename}"
        print(f"{_command_name(args)}: error: {error.strerror}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{_command_name(args)}: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
