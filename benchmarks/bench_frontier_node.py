"""Two drafts at one node: recursive rejection in draft order, wanted-first and in p/q order, and alpha*.

On the committed recordings of the bundled pair (``benchmarks/results/recording_T*.npz``: per position
the target's and the draft's laws on the 256 tokens of largest p + q, the rest kept as one tail token),
for the ``wor`` and ``iid`` laws with k = 2, exactly: alpha* (:func:`multidraft.theory.optimal_acceptance`)
and the acceptance of recursive rejection of the two drafts

* in draft order (the ``rrs-wor`` / ``rrs`` schemes, and ``traversal-seq`` at one level);
* wanted-first: a draft with p >= q before one with p < q (``traversal-ratio`` at one level,
  :mod:`multidraft.verifiers.ordered`; no sort);
* in decreasing p/q (both drafts ranked by p/q, ties by token id; a sort of the vocabulary per node),
  with the draft set's law factored in that order as in ``traversal-ratio``: L_b = the tokens of lower
  rank, wor: q_1(b) = q_b sum_{a in L_b} q_a/(1 - q_a) + q_b/(1 - q_b) q(L_b), q_2(a | b) on L_b
  proportional to q_a/(1 - q_a) + q_a/(1 - q_b); iid: q_1(b) = q_b^2 + 2 q_b q(L_b), q_2(a | b) on
  L_b + {b} proportional to 2 q_a (q_b at a = b).

For a rule with first law q_1 and second laws q_2(. | b):

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
from multidraft.verifiers.ordered import first_law, second_law

RESULTS = Path(__file__).parent / "results"
SCHEME = {"wor": "rrs-wor", "iid": "rrs"}


def sequential_acceptance(p: np.ndarray, first: np.ndarray, second) -> float:
    """Acceptance of recursive rejection of two drafts with first law ``first`` and ``second(b)`` (docstring)."""
    kept = np.minimum(first, p)
    residual = np.clip(p - first, 0, None)
    residual = residual / residual.sum() if residual.sum() > 0 else residual
    return float(
        kept.sum()
        + sum((first[b] - kept[b]) * np.minimum(second(b), residual).sum() for b in np.flatnonzero(first > kept))
    )


def wanted_first(law: str, p: np.ndarray, q: np.ndarray) -> float:
    q64, wanted = torch.from_numpy(q), torch.from_numpy(p >= q)
    first = first_law(law, q64, wanted)
    return sequential_acceptance(p, first.numpy(), lambda b: second_law(law, q64, wanted, first, b).numpy())


def ratio_sorted(law: str, p: np.ndarray, q: np.ndarray) -> float:
    ratio = np.divide(p, q, out=np.full(q.size, np.inf), where=q > 0)
    rank = np.empty(q.size, dtype=np.int64)
    rank[np.argsort(ratio, kind="stable")] = np.arange(q.size)
    order = np.argsort(rank)
    inside = np.zeros(q.size)
    inside[order] = np.cumsum(q[order]) - q[order]  # q(L_b)
    lower = rank[None, :] < rank[:, None]  # [b, a]: a ranked below b
    if law == "iid":
        first = q**2 + 2 * q * inside
        weights = np.where(lower, 2 * q[None, :] * q[:, None], 0.0) + np.diag(q**2)  # [b, a]
    else:
        others = np.array([q.sum() - x if x <= 0.5 else np.delete(q, i).sum() for i, x in enumerate(q)])
        odds = np.zeros(q.size)
        odds[order] = np.cumsum(q[order] / others[order]) - q[order] / others[order]
        first = q * odds + q / others * inside
        weights = np.where(lower, q[:, None] * (q[None, :] / others[None, :] + q[None, :] / others[:, None]), 0.0)
    return sequential_acceptance(p, first, lambda b: weights[b] / first[b])


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
                    (
                        optimal_acceptance(law, p, q, 2),
                        acceptance(SCHEME[law], p, q, 2),
                        wanted_first(law, p, q),
                        ratio_sorted(law, p, q),
                    )
                )
            values = np.array(values)
            best, draft_order, wanted, ranked = values.mean(0)
            rows.append(
                {
                    "recording": path.name,
                    "temperature": recording.header.get("temperature"),
                    "law": law,
                    "k": 2,
                    "positions": len(values),
                    "alpha_star": best,
                    "draft_order": draft_order,
                    "wanted_first": wanted,
                    "ratio_sorted": ranked,
                    "wanted_first_worse_share": float((values[:, 2] < values[:, 1] - 1e-12).mean()),
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
        "Mean acceptance of two drafts at one node (k = 2) over the recorded positions, and each rule's "
        "shortfall from alpha*; worse share: positions where wanted-first accepts less than draft order.",
        "",
        "| recording | T | law | positions | alpha* | draft order | wanted-first | p/q sorted | shortfall: draft "
        "order | wanted-first | p/q sorted | worse share |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        lines.append(
            f"| {r['recording']} | {r['temperature']} | {r['law']} | {r['positions']} | "
            f"{r['alpha_star']:.4f} | {r['draft_order']:.4f} | {r['wanted_first']:.4f} | "
            f"{r['ratio_sorted']:.4f} | {r['alpha_star'] - r['draft_order']:.4f} | "
            f"{r['alpha_star'] - r['wanted_first']:.4f} | {r['alpha_star'] - r['ratio_sorted']:.4f} | "
            f"{r['wanted_first_worse_share']:.2f} |"
        )
    with replace_atomically(RESULTS / "frontier_node.json") as path:
        path.write_text(json.dumps(out, indent=1) + "\n")
    with replace_atomically(RESULTS / "frontier_node.md") as path:
        path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
