"""Every verifier against the optimal lossless tree verifier, exactly, on tiny context-dependent tables.

For each table x draft law (scheme) x tree shape x verifier: the verifier's exact expected tokens per
step, averaged over every tree the scheme's draft law grows (the whole-tree oracle's enumeration,
tests/support/oracle.py); the optimum of the tree LP (:mod:`multidraft.theory.tree_lp`) for that
draft law; the best per-tree dual bound of :mod:`multidraft.theory.tree_bound` over a grid of theta
(the bound that is computable on real trees; laws iid, wor, topk); and the fraction of the headroom
over the token walk (same scheme) that the verifier captures: (E_v - E_token) / (optimum - E_token), summed
over the tables.

Tables: the oracle's tables (V = 3; every context cycles through degenerate pairs: zeros, one-hot,
disjoint supports, near-one-hot, p = q) and random ones (p ~ Dirichlet(1), q = (p + an independent
Dirichlet(1) draw) / 2, V = 3 and 4).  Everything is exact (float64); no sampling.

    PYTHONPATH=src python benchmarks/bench_frontier.py [--resume]

Appends one record per (table, scheme, shape) to benchmarks/results/frontier_gaps.jsonl as it goes
(resumable), then writes frontier_gaps.json (all records and the summary) and frontier_gaps.md.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.support

from multidraft import schemes, verifiers  # noqa: E402
from multidraft.bench.store import ResultStore, replace_atomically  # noqa: E402
from multidraft.shapes import check_shape, format_shape, parse_shape, shape_depth  # noqa: E402
from multidraft.theory.tree_bound import BOUND_LAWS, tree_bound  # noqa: E402
from multidraft.theory.tree_lp import optimal_tree_tokens  # noqa: E402
from tests.support.oracle import drafted_trees, node_laws, table  # noqa: E402  (the whole-tree oracle's enumeration)

RESULTS = Path(__file__).parent / "results"
SCHEMES = ("rrs", "rrs-wor", "kseq", "spechub", "greedy", "topk")  # otm: a per-node LP, too slow to enumerate
SHAPES = {3: ("2", "3", "1,1", "2,1", "1,2", "2,2", "1,1,1", "2/1,1/1,1"), 4: ("2", "3", "1,1", "2,1", "1,2", "2,2")}
TABLES = [
    ("oracle", 3, 0),
    ("oracle", 3, 1),
    ("dirichlet", 3, 0),
    ("dirichlet", 3, 1),
    ("dirichlet", 4, 0),
    ("dirichlet", 4, 1),
]
#: theta grid of the dual bound, by height (0 = the deepest level's prices).
THETA_GRID = {0: (0.5, 0.75, 1.0, 1.25, 1.5), 1: (1.0, 1.5, 2.0, 2.5, 3.0), 2: (1.0, 2.0, 3.0, 4.0)}
HEADROOM_FLOOR = 1e-3  # tokens per step: below this headroom (per table) no captured fraction is given


def dirichlet_table(vocab: int, depth: int, seed: int) -> dict:
    """p ~ Dirichlet(1), q = (p + an independent Dirichlet(1) draw) / 2 at every context of length <= depth."""
    rng = np.random.default_rng(seed)
    out = {}
    for context in (c for n in range(depth + 1) for c in itertools.product(range(vocab), repeat=n)):
        p = rng.dirichlet(np.ones(vocab))
        out[context] = (p, (p + rng.dirichlet(np.ones(vocab))) / 2)
    return out


def tables(kind: str, vocab: int, seed: int, depth: int) -> dict:
    return table(vocab, depth, seed) if kind == "oracle" else dirichlet_table(vocab, depth, seed)


def applies(verifier: str, scheme: str, shape) -> bool:
    try:
        check_shape(shape, schemes.get(scheme))
        verifiers.get(verifier).check(shape, schemes.get(scheme))
    except ValueError:
        return False
    return True


def measure(pairs: dict, scheme: str, shape) -> dict:
    """Exact expected tokens of every applicable verifier, the LP optimum and the best grid bound."""
    law = schemes.get(scheme)
    names = [v for v in verifiers.names() if applies(v, scheme, shape)]
    depth = shape_depth(shape)
    grid = np.array(list(itertools.product(*(THETA_GRID[h] for h in range(depth)))))  # [m, depth]
    tokens, bounds = dict.fromkeys(names, 0.0), np.zeros(len(grid))
    for tree, contexts, prob in drafted_trees(pairs, law.draft_law, shape):
        p, q = node_laws(pairs, tree, contexts)
        for name in names:
            tokens[name] += prob * verifiers.get(name).expected_tokens(tree, law, p, q)
        if law.draft_law in BOUND_LAWS and isinstance(shape, tuple):
            bounds += prob * tree_bound(tree, law.draft_law, p, q, grid)
    started = time.perf_counter()
    optimum = optimal_tree_tokens(pairs, law.draft_law, shape)
    best = int(np.argmin(bounds)) if bounds.any() else None
    return {
        "tokens": tokens,
        "optimum": optimum.tokens,
        "lp_gap": optimum.bound - optimum.tokens,
        "lp_rules": optimum.rules,
        "lp_seconds": time.perf_counter() - started,
        "bound": None if best is None else float(bounds[best]),
        "bound_theta": None if best is None else grid[best].tolist(),
    }


def summarise(records: list[dict]) -> list[dict]:
    """Per (vocab, scheme, shape, verifier), over the tables: mean tokens, mean optimum, headroom and the
    captured fraction of the summed headroom (sum of gains over sum of headrooms)."""
    rows = []
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault((record["vocab"], record["scheme"], record["shape"]), []).append(record)

    def order(item):
        vocab, scheme, shape = item[0]
        return vocab, SCHEMES.index(scheme), [format_shape(parse_shape(spec)) for spec in SHAPES[vocab]].index(shape)

    for (vocab, scheme, shape), chosen in sorted(groups.items(), key=order):
        token = np.array([r["tokens"]["token"] for r in chosen])
        optimum = np.array([r["optimum"] for r in chosen])
        bound = [r["bound"] for r in chosen]
        for verifier in chosen[0]["tokens"]:
            values = np.array([r["tokens"][verifier] for r in chosen])
            headroom = float((optimum - token).sum())
            rows.append(
                {
                    "vocab": vocab,
                    "scheme": scheme,
                    "shape": shape,
                    "verifier": verifier,
                    "tables": len(chosen),
                    "tokens": float(values.mean()),
                    "token_walk": float(token.mean()),
                    "optimum": float(optimum.mean()),
                    "bound": None if None in bound else float(np.mean(bound)),
                    "headroom_pct": 100 * float((optimum / token - 1).mean()),
                    "gain_pct": 100 * float((values / token - 1).mean()),
                    "captured": (
                        None if headroom <= HEADROOM_FLOOR * len(chosen) else float((values - token).sum()) / headroom
                    ),
                }
            )
    return rows


def markdown(rows: list[dict], header: dict) -> str:
    lines = [
        "# Every verifier against the optimal lossless tree verifier (exact, tiny tables)",
        "",
        f"`{header['command']}` at commit {header['commit']}, {header['date']}, {header['machine']}, "
        f"load average {header['load_before']} before and {header['load_after']} after.",
        "",
        "E: exact expected tokens per step, averaged over the tables (and over every drafted tree). optimum: the "
        "tree LP. bound: the best per-tree dual bound on a theta grid (computable on real trees; iid, wor and topk "
        "laws). headroom: optimum over the token walk of the same scheme. gain: the verifier over the token walk. "
        "captured: the verifier's summed gain over the summed headroom (— where the headroom is under "
        f"{HEADROOM_FLOOR} tokens per step per table).",
        "",
        "| V | scheme | tree | verifier | tables | E | optimum | bound | headroom % | gain % | captured |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bound = "—" if r["bound"] is None else f"{r['bound']:.4f}"
        captured = "—" if r["captured"] is None else f"{r['captured']:.3f}"
        lines.append(
            f"| {r['vocab']} | {r['scheme']} | {r['shape']} | {r['verifier']} | {r['tables']} | "
            f"{r['tokens']:.4f} | {r['optimum']:.4f} | {bound} | {r['headroom_pct']:.2f} | "
            f"{r['gain_pct']:.2f} | {captured} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true", help="continue the journal of an interrupted run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = {
        "tables": TABLES,
        "schemes": SCHEMES,
        "shapes": {str(k): v for k, v in SHAPES.items()},
        "theta_grid": {str(k): v for k, v in THETA_GRID.items()},
    }
    store = ResultStore(
        args.out / "frontier_gaps.jsonl", header, ["table", "vocab", "seed", "scheme", "shape"], resume=args.resume
    )
    load_before = [round(x, 2) for x in os.getloadavg()]
    for kind, vocab, seed in TABLES:
        for spec in SHAPES[vocab]:
            shape = parse_shape(spec)
            pairs = tables(kind, vocab, seed, shape_depth(shape))
            for scheme in SCHEMES:
                if store.done([kind, vocab, seed, scheme, format_shape(shape)]) or not applies("token", scheme, shape):
                    continue
                record = {"table": kind, "vocab": vocab, "seed": seed, "scheme": scheme, "shape": format_shape(shape)}
                record.update(measure(pairs, scheme, shape))
                store.append(record)
                print(
                    json.dumps({k: record[k] for k in ("table", "vocab", "seed", "scheme", "shape", "optimum")}),
                    flush=True,
                )
    rows = summarise(store.records())
    out = {
        "command": "PYTHONPATH=src python benchmarks/bench_frontier.py" + (" --resume" if args.resume else ""),
        "commit": commit,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    with replace_atomically(args.out / "frontier_gaps.json") as path:
        path.write_text(json.dumps({**out, "summary": rows, "records": store.records()}, indent=1) + "\n")
    with replace_atomically(args.out / "frontier_gaps.md") as path:
        path.write_text(markdown(rows, out))


if __name__ == "__main__":
    main()
