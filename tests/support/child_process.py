"""The environment of a test's child Python process: the multidraft source the test itself imported, the test
helpers, and any further folders."""

from __future__ import annotations

import os
from pathlib import Path

import multidraft

SOURCE = Path(multidraft.__file__).resolve().parents[1]
ROOT = Path(__file__).resolve().parents[2]  # where ``tests`` is a package


def child_env(*folders: Path, **variables: str) -> dict[str, str]:
    """``os.environ`` with ``variables`` set and ``PYTHONPATH`` = ``folders``, the source, the test helpers."""
    path = [*map(str, folders), str(SOURCE), str(ROOT)]
    return {**os.environ, **variables, "PYTHONPATH": os.pathsep.join(path)}
