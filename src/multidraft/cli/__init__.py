"""The ``multidraft`` command.

Each sub-command lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``run`` (a function of the parsed
arguments returning an exit code).  Bad input (``ValueError``,
``FileNotFoundError``) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from multidraft.cli import bench, generate, plan, record, theory

COMMANDS = [theory, generate, record, plan, bench]


class OneLineErrors(argparse.ArgumentParser):
    """argparse with usage errors as one line on stderr (``--help`` still shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="multidraft", description="Lossless multi-draft speculative decoding.")
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
