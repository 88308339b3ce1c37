"""Paired ratios of a ``multidraft bench generate --engine llama`` run: ``auto`` and plain decoding against
llama.cpp's own plain decoding and the float32 PyTorch path, and our chain verifiers' exact tokens per call
against the ``match`` rule (95% intervals over prompts).

    python benchmarks/llama_report.py benchmarks/results/llama/llama_engine.jsonl \\
        > benchmarks/results/llama/llama_engine_pairs.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

from multidraft.bench.generate import _by_config, per_prompt
from multidraft.bench.stats import paired_ratio_difference, paired_ratio_quotient
from multidraft.bench.store import read_lines

SPEED = [
    ("auto", "llama-plain"),
    ("autoregressive", "llama-plain"),
    ("auto", "torch-plain"),
    ("llama-plain", "torch-plain"),
]
TOKENS = [("sps 1x3", "topk 1x3 match"), ("sps 1x3 block", "topk 1x3 match")]


def main() -> int:
    lines, _ = read_lines(Path(sys.argv[1]))
    table = _by_config(lines[1:])
    for temperature in sorted({t for t, _ in table}, reverse=True):
        runs = {label: r for (t, label), r in table.items() if t == temperature}
        prompts = sorted(set.intersection(*(set(r) for r in runs.values())))
        sums = {label: per_prompt(r, prompts) for label, r in runs.items()}
        print(f"T = {temperature:g}, {len(prompts)} prompts")
        for a, b in [(a, b) for a, b in SPEED if a in sums and b in sums]:
            value, interval = paired_ratio_quotient(
                (sums[a]["tokens"], sums[a]["seconds"]), (sums[b]["tokens"], sums[b]["seconds"])
            )
            print(f"  tokens/s {a} / {b}: {value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]")
        for a, b in [(a, b) for a, b in TOKENS if a in sums and b in sums]:  # the pairs this run has
            value, interval = paired_ratio_difference(
                (sums[a]["expected"], sums[a]["steps"]), (sums[b]["expected"], sums[b]["steps"])
            )
            print(f"  tokens/call (exact expectation) {a} - {b}: {value:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
