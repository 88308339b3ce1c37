"""Single-draft acceptance per prompt category in ``multidraft record`` files.

At each recorded position the chance that one draft x ~ q is accepted by
speculative sampling is alpha = sum_x min(p(x), q(x)) (Leviathan et al. 2023,
arXiv 2211.17192, Sec. 3.5; Chen et al. 2023, arXiv 2302.01318): an exact,
Rao-Blackwellised per-position value, no draft is sampled.  Over the stored
top-N tokens the sum is a lower bound of the full-vocabulary alpha;
adding min(p_tail, q_tail) (the tail merged into one token) an upper bound.
Both are reported, with the mean tail masses.

Per category and recording: the mean over positions (positions pooled), and
its 95% interval from a bootstrap over prompts (positions clustered by
prompt, :mod:`multidraft.bench.stats`).  Writes
``benchmarks/results/prior_acceptance.json`` and prints a Markdown table.

    python benchmarks/prior_acceptance.py benchmarks/results/prior_T0.6.npz benchmarks/results/prior_T1.0.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from multidraft.bench.recording import Recording
from multidraft.bench.report import markdown_table
from multidraft.bench.stats import format_interval, ratio_interval

RESULTS = Path(__file__).parent / "results" / "prior_acceptance.json"
COLUMNS = [
    ("recording", "recording"),
    ("temperature", "T"),
    ("category", "category"),
    ("prompts", "prompts"),
    ("positions", "positions"),
    ("alpha", "mean sum min(p, q)"),
    ("interval", "95% interval (by prompt)"),
    ("alpha_tail_merged", "with tail merged"),
    ("p_tail", "mean p tail"),
    ("q_tail", "mean q tail"),
]


def category_rows(path: Path) -> list[dict]:
    """One row per category of the recording at ``path``, then one for all its positions."""
    recording = Recording.load(path)
    alpha = np.minimum(recording.p, recording.q).sum(-1)  # [P] over the stored top-N tokens
    merged = alpha + np.minimum(recording.p_tail, recording.q_tail)  # [P] the tail as one token
    categories = recording.categories()  # [P]
    rows = []
    for category in [*dict.fromkeys(categories), None]:
        chosen = np.ones(len(recording), bool) if category is None else categories == category
        prompts = np.unique(recording.prompt_index[chosen])
        sums = [alpha[chosen & (recording.prompt_index == i)].sum() for i in prompts]
        counts = [np.count_nonzero(chosen & (recording.prompt_index == i)) for i in prompts]
        rows.append(
            {
                "recording": path.name,
                "temperature": recording.header["temperature"],
                "category": category or "all",
                "prompts": len(prompts),
                "positions": int(chosen.sum()),
                "alpha": float(alpha[chosen].mean()),
                "interval": format_interval(ratio_interval(sums, counts)),
                "alpha_tail_merged": float(merged[chosen].mean()),
                "p_tail": float(recording.p_tail[chosen].mean()),
                "q_tail": float(recording.q_tail[chosen].mean()),
            }
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recordings", type=Path, nargs="+", help="multidraft record .npz files")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    rows = [row for path in args.recordings for row in category_rows(path)]
    report = {"command": "python benchmarks/prior_acceptance.py " + " ".join(map(str, args.recordings)), "rows": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(rows, COLUMNS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
