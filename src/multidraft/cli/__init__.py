"""The ``multidraft`` command.

Each sub-command lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``run`` (a function of the parsed
arguments returning an exit code).  Bad input (``ValueError``,
``FileNotFoundError``) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from multidraft.cli import theory

COMMANDS = [theory]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multidraft", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"multidraft {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
