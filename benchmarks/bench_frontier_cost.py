"""Verification cost as a fraction of a decoding step, at the planner's tree sizes and the real vocabulary.

For each tree (2x2, 2x3, 3x2, 1x3, 1x4, 1x5) and verifier (token, traversal-seq, gbv, traversal-ratio; block
on chains),
trees are drafted by ``rrs-wor`` (``sample_drafts``) from synthetic laws at V = 151,936 in float32, as the
decoder holds them: p = softmax(3 z), q = softmax(3 z + e) with z, e standard normal (single-draft
acceptance about 0.7, as on the bundled pair), fresh at every node.  ``verify`` is timed on each of
``--trees`` drafted trees (median) on ``--threads`` torch threads (1 by default: on a machine shared with
other jobs every parallel op of a vector this size waits for a free core, which a quiet machine does not
make it do), and divided by the step time the planner predicts for that tree
from the committed profile (``benchmarks/results/plan_T*.json``: the smallest predicted step over the
schemes with that tree, so the largest fraction).

    PYTHONPATH=src python benchmarks/bench_frontier_cost.py [--trees 30] [--threads 1]

Writes benchmarks/results/frontier_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from multidraft import schemes, verifiers
from multidraft.bench.store import replace_atomically
from multidraft.shapes import parse_shape
from multidraft.tree import Tree

RESULTS = Path(__file__).parent / "results"
VOCAB = 151_936
TREES = ("2x2", "2x3", "3x2", "1x3", "1x4", "1x5")


def laws(rows: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """p, q [rows, V] float32: softmax(3 z) and softmax(3 z + e)."""
    z = 3 * torch.randn(rows, VOCAB, generator=generator)
    return torch.softmax(z, -1), torch.softmax(z + torch.randn(rows, VOCAB, generator=generator), -1)


def drafted(spec: str, generator: torch.Generator) -> tuple[Tree, torch.Tensor, torch.Tensor]:
    """A tree drafted by rrs-wor on ``spec`` with fresh laws at every node: (tree, p [N, V], q [n_internal, V])."""
    shape, scheme = parse_shape(spec), schemes.get("rrs-wor")
    tree = Tree.from_root(0, shape=shape)
    q_rows = []
    for k in shape:
        level = tree.level(tree.depth)
        _, q = laws(level.stop - level.start, generator)
        q_rows.append(q)
        tree.grow(scheme.sample_drafts(q, k, generator))
    p, _ = laws(tree.size, generator)
    return tree, p, torch.cat(q_rows)


def step_seconds() -> dict[str, float]:
    """The smallest step time the committed plans predict for each tree."""
    best: dict[str, float] = {}
    for path in sorted(RESULTS.glob("plan_T*.json")):
        for row in json.loads(path.read_text())["rows"]:
            if row.get("tree"):
                best[row["tree"]] = min(best.get(row["tree"], float("inf")), row["step_seconds"])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=30, help="drafted trees timed per (tree, verifier)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    steps = step_seconds()
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for spec in TREES:
        names = ["token", "traversal-seq", "gbv", "traversal-ratio"] + (["block"] if spec.startswith("1x") else [])
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.trees):
            tree, p, q = drafted(spec, generator)
            for name in names:
                rule = verifiers.get(name)
                started = time.perf_counter()
                rule.verify(tree, schemes.get("rrs-wor"), p, q, generator)
                seconds[name].append(time.perf_counter() - started)
        for name in names:
            median = statistics.median(seconds[name])
            step = steps.get(spec)
            rows.append(
                {
                    "tree": spec,
                    "verifier": name,
                    "verify_ms": 1e3 * median,
                    "step_ms": None if step is None else 1e3 * step,
                    "fraction_pct": None if step is None else 100 * median / step,
                }
            )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    command = f"PYTHONPATH=src python benchmarks/bench_frontier_cost.py --trees {args.trees} --threads {args.threads}"
    out = {
        "command": command,
        "commit": commit,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    lines = [
        f"`{out['command']}` at commit {out['commit']}, {out['date']}, {out['machine']}, "
        f"{out['torch_threads']} torch threads, load average {load_before} before and {out['load_after']} after.",
        "",
        "| tree | verifier | verify ms (median) | predicted step ms | verification / step |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        step = "—" if r["step_ms"] is None else f"{r['step_ms']:.1f}"
        fraction = "—" if r["fraction_pct"] is None else f"{r['fraction_pct']:.2f}%"
        lines.append(f"| {r['tree']} | {r['verifier']} | {r['verify_ms']:.2f} | {step} | {fraction} |")
    with replace_atomically(RESULTS / "frontier_cost.json") as path:
        path.write_text(json.dumps(out, indent=1) + "\n")
    with replace_atomically(RESULTS / "frontier_cost.md") as path:
        path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
