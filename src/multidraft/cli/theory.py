"""``multidraft theory``: exact acceptance of every scheme beside alpha* of its draft law."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from multidraft import schemes
from multidraft.theory import acceptance, optimal_acceptance
from multidraft.validation import as_pair

#: The built-in example shown by ``multidraft theory`` with no distributions.
EXAMPLE_P = "0.5,0.2,0.15,0.1,0.05"
EXAMPLE_Q = "0.6,0.1,0.1,0.15,0.05"
#: The draft laws, defined at every k, whose best alpha* is printed last.
BEST_LAWS = ("iid", "wor", "greedy", "topk")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "theory",
        help="exact acceptance rates of every scheme for one (p, q)",
        description="For each scheme: its exact acceptance rate and alpha* of its draft law "
        f"(default example p = {EXAMPLE_P}, q = {EXAMPLE_Q}).",
    )
    parser.add_argument("--k", type=int, default=2, help="number of drafts (sps always uses 1, spechub needs 2)")
    parser.add_argument("--p", help="target distribution, comma-separated")
    parser.add_argument("--q", help="draft distribution, comma-separated")
    parser.add_argument("--p-file", type=Path, help="target distribution as a 1-D .npy file")
    parser.add_argument("--q-file", type=Path, help="draft distribution as a 1-D .npy file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def _parse_vector(text: str | None, path: Path | None, name: str, default: str) -> np.ndarray:
    if text is not None and path is not None:
        raise ValueError(f"give --{name} or --{name}-file, not both")
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"--{name}-file {path} does not exist")
        return np.load(path, allow_pickle=False)
    try:
        return np.array([float(x) for x in (text if text is not None else default).split(",")])
    except ValueError:
        raise ValueError(f"--{name} must be comma-separated numbers, got {text!r}") from None


def rows(p: np.ndarray, q: np.ndarray, k: int) -> list[dict]:
    """One row per scheme: k used, draft law, exact acceptance, alpha* of the law (or why not)."""
    out = []
    for name in schemes.names():
        scheme = schemes.get(name)
        k_used = {"sps": 1, "spechub": 2}.get(name, k)
        row = {
            "scheme": name,
            "k": k_used,
            "draft_law": scheme.draft_law,
            "acceptance": None,
            "optimal": None,
            "note": "",
        }
        if name == "spechub" and k != 2:
            row["note"] = "defined for k = 2 only"
        else:
            try:
                row["acceptance"] = acceptance(name, p, q, k_used)
                row["optimal"] = optimal_acceptance(scheme.draft_law, p, q, k_used)
            except ValueError as error:  # size limits of the exact computations
                row["note"] = str(error)
        out.append(row)
    return out


def run(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise ValueError(f"--k must be at least 1, got {args.k}")
    given = [args.p, args.q, args.p_file, args.q_file]
    use_example = all(x is None for x in given)
    p = _parse_vector(args.p, args.p_file, "p", EXAMPLE_P if use_example else "")
    q = _parse_vector(args.q, args.q_file, "q", EXAMPLE_Q if use_example else "")
    p, q = as_pair(p, q)
    table = rows(p, q, args.k)
    best = max(optimal_acceptance(law, p, q, args.k) for law in BEST_LAWS)
    if args.json:
        print(
            json.dumps(
                {"k": args.k, "p": p.tolist(), "q": q.tolist(), "best_optimal": best, "schemes": table}, indent=2
            )
        )
        return 0
    print(
        f"V = {p.size}, k = {args.k}; acceptance = P(output is a draft), "
        "alpha* = best of any verifier for that draft law"
    )
    print(f"{'scheme':<9} {'k':>2} {'draft law':<9} {'acceptance':>11} {'alpha*':>9} {'gap':>9}")
    for row in table:
        if row["acceptance"] is None:
            print(f"{row['scheme']:<9} {row['k']:>2} {row['draft_law']:<9} {'n/a':>11} {'':>9} {'':>9}  {row['note']}")
        else:
            gap = row["optimal"] - row["acceptance"]
            print(
                f"{row['scheme']:<9} {row['k']:>2} {row['draft_law']:<9} {row['acceptance']:>11.6f} "
                f"{row['optimal']:>9.6f} {gap:>9.2e}"
            )
    print(f"best alpha* over the {', '.join(BEST_LAWS)} draft laws at k = {args.k}: {best:.6f}")
    return 0
