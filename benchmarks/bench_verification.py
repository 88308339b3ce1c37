"""Batched verification and drafting cost per call, relative to one softmax over the same tensor.

Targets: verifying a [256, 32000] batch with k = 4 costs at most 6x one
``torch.softmax`` over the same tensor, for every scheme but ``otm`` (issue
"Token-level core"), and drawing the drafts (``sample_drafts``) at most 3x,
for every scheme (issue "Drafting itself").  Each scheme's timings sit
between two softmax timings of the same run, and the median of
``--repeats`` timings is kept.  The load average is recorded with them: on a
loaded machine every parallel op waits for a free core, and the ratio then
mostly counts ops, so compare runs taken while the machine is quiet.

    .venv/bin/python benchmarks/bench_verification.py [--batch 256 --vocab 32000 --k 4]

Writes ``benchmarks/results/verification.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from multidraft import schemes
from multidraft.planning.profile import median_seconds

RESULTS = Path(__file__).parent / "results" / "verification.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    generator = torch.Generator().manual_seed(0)
    logits_p = torch.randn(args.batch, args.vocab, generator=generator, dtype=dtype) * 3
    logits_q = logits_p + torch.randn(args.batch, args.vocab, generator=generator, dtype=dtype)
    p, q = torch.softmax(logits_p, -1), torch.softmax(logits_q, -1)

    load_before = os.getloadavg()
    rows = []
    for name in schemes.names():
        scheme = schemes.get(name)
        k = {"sps": 1, "spechub": 2}.get(name, args.k)
        drafts = scheme.sample_drafts(q, k, generator)
        softmax_s = median_seconds(lambda: torch.softmax(logits_p, -1), args.repeats)
        draft_s = median_seconds(lambda: scheme.sample_drafts(q, k, generator, check=False), args.repeats)
        row = {"scheme": name, "k": k, "draft_ms": 1e3 * draft_s}
        if name != "otm":  # a linear program per distinct (p, q) row: a reference, not timed
            verify_s = median_seconds(lambda: scheme.verify(p, q, drafts, generator, check=False), args.repeats)
            checked_s = median_seconds(lambda: scheme.verify(p, q, drafts, generator), args.repeats)
        softmax_after = median_seconds(lambda: torch.softmax(logits_p, -1), args.repeats)
        softmax_s = (softmax_s + softmax_after) / 2
        row |= {
            "softmax_ms": 1e3 * softmax_s,
            "draft_ratio": draft_s / softmax_s,
            "draft_target_met": draft_s / softmax_s <= 3.0,
        }
        if name != "otm":
            row |= {
                "verify_ms": 1e3 * verify_s,
                "verify_checked_ms": 1e3 * checked_s,
                "ratio": verify_s / softmax_s,
                "ratio_checked": checked_s / softmax_s,
                "target_met": verify_s / softmax_s <= 6.0,
            }
        rows.append(row)

    report = {
        "benchmark": "verification",
        "batch": args.batch,
        "vocab": args.vocab,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},  # 1, 5, 15 minutes
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[{args.batch}, {args.vocab}] {args.dtype}; ratio = time / softmax (targets: verify <= 6, drafts <= 3)")
    print(f"load average (1 min) {load_before[0]:.2f} before, {report['load_average']['after'][0]:.2f} after")
    print(
        f"{'scheme':<9} {'k':>2} {'softmax ms':>11} {'verify ms':>10} {'ratio':>6} {'with checks':>12} "
        f"{'drafts ms':>10} {'ratio':>6}"
    )
    for row in rows:
        verify = (
            f"{row['verify_ms']:>10.2f} {row['ratio']:>6.2f} {row['ratio_checked']:>12.2f}"
            if "verify_ms" in row
            else f"{'-':>10} {'-':>6} {'-':>12}"
        )
        print(
            f"{row['scheme']:<9} {row['k']:>2} {row['softmax_ms']:>11.2f} {verify} "
            f"{row['draft_ms']:>10.2f} {row['draft_ratio']:>6.2f}"
        )


if __name__ == "__main__":
    main()
