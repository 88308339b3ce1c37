"""Two drafts at one node: recursive rejection in draft order against p/q order, and alpha*, on real laws.

On the committed recordings of the bundled pair (``benchmarks/results/recording_T*.npz``: per position
the target's and the draft's laws on the 256 tokens of largest p + q, the rest kept as one tail token),
for the ``wor`` and ``iid`` laws with k = 2, exactly: alpha* (:func:`multidraft.theory.optimal_acceptance`),
the acceptance of recursive rejection in draft order (the ``rrs-wor`` / ``rrs`` schemes, and
``traversal-seq`` at one level) and in decreasing p/q order (``traversal-ratio`` at one level,
:mod:`multidraft.verifiers.ordered`):

    A = sum_b min(q_1(b), p(b)) + sum_b (q_1(b) - p(b))^+ sum_a min(q_2(a | b), r(a)),
    r = (p - q_1)^+ / sum (p - q_1)^+

(the residual after the first draft is rejected does not depend on which it was).

    PYTHONPATH=src python benchmarks/bench_frontier_node.py

Writes benchmarks/results/frontier_node.{json,md}.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

from multidraft.bench.recording import Recording
from multidraft.bench.store import replace_atomically
from multidraft.theory.acceptance import acceptance
from multidraft.theory.optimal import optimal_acceptance
from multidraft.verifiers.ordered import first_law, ratio_rank, second_law

RESULTS = Path(__file__).parent / "results"
SCHEME = {"wor": "rrs-wor", "iid": "rrs"}


def ordered_acceptance(law: str, p: np.ndarray, q: np.ndarray) -> float:
    """Acceptance of recursive rejection of two drafts in decreasing p/q order (module docstring)."""
    p64, q64 = torch.from_numpy(p), torch.from_numpy(q)
    rank = ratio_rank(p64, q64)
    first = first_law(law, q64, rank)
    kept = torch.minimum(first, p64)
    residual = torch.clamp(p64 - first, min=0)
    residual = residual / residual.sum() if residual.sum() > 0 else residual
    total = float(kept.sum())
    for b in torch.nonzero(first > kept).flatten().tolist():
        total += float(first[b] - kept[b]) * float(torch.minimum(second_law(law, q64, rank, first, b), residual).sum())
    return total


def main() -> None:
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for path in sorted(RESULTS.glob("recording_T*.npz")):
        if "int8" in path.name:
            continue
        recording = Recording.load(path)
        p_rows = np.concatenate([recording.p, recording.p_tail[:, None]], 1)
        q_rows = np.concatenate([recording.q, recording.q_tail[:, None]], 1)
        for law in ("wor", "iid"):
            values = []
            for p, q in zip(p_rows, q_rows):
                p, q = p / p.sum(), q / q.sum()
                if law == "wor" and np.count_nonzero(q) < 2:
                    continue
                values.append(
                    (optimal_acceptance(law, p, q, 2), acceptance(SCHEME[law], p, q, 2), ordered_acceptance(law, p, q))
                )
            values = np.array(values)
            best, draft_order, ratio_order = values.mean(0)
            rows.append(
                {
                    "recording": path.name,
                    "temperature": recording.header.get("temperature"),
                    "law": law,
                    "k": 2,
                    "positions": len(values),
                    "alpha_star": best,
                    "draft_order": draft_order,
                    "ratio_order": ratio_order,
                    "draft_order_shortfall": best - draft_order,
                    "ratio_order_shortfall": best - ratio_order,
                    "ratio_order_worse_share": float((values[:, 2] < values[:, 1] - 1e-12).mean()),
                }
            )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {
        "command": "PYTHONPATH=src python benchmarks/bench_frontier_node.py",
        "commit": commit,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    lines = [
        f"`{out['command']}` at commit {commit}, {out['date']}, {out['machine']}, load average {load_before}.",
        "",
        "Mean acceptance of two drafts at one node (k = 2) on the recorded positions; shortfall = alpha* "
        "minus the rule's acceptance; worse share: positions where p/q order accepts less than draft order.",
        "",
        "| recording | T | law | positions | alpha* | draft order | p/q order | shortfall, draft order | "
        "shortfall, p/q order | worse share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recording']} | {r['temperature']} | {r['law']} | {r['positions']} | "
            f"{r['alpha_star']:.4f} | {r['draft_order']:.4f} | {r['ratio_order']:.4f} | "
            f"{r['draft_order_shortfall']:.4f} | {r['ratio_order_shortfall']:.4f} | "
            f"{r['ratio_order_worse_share']:.2f} |"
        )
    with replace_atomically(RESULTS / "frontier_node.json") as path:
        path.write_text(json.dumps(out, indent=1) + "\n")
    with replace_atomically(RESULTS / "frontier_node.md") as path:
        path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
