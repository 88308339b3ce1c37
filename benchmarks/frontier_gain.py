"""Each verifier's tokens per call relative to the first entry's (the token walk) in a paired run on real trees.

Reads the records of ``multidraft bench paired`` (every entry's exact expected tokens on the same drafted trees
and their cuts) and writes, per temperature and depth, each entry's tokens per call and its quotient over the
first entry's, with a paired 95% interval resampling prompts:

    PYTHONPATH=src python benchmarks/frontier_gain.py benchmarks/results/frontier/paired_frontier_2x5.jsonl

Writes NAME_gain.{json,md} beside the records.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from multidraft.bench.stats import paired_ratio_quotient
from multidraft.bench.store import read_lines, replace_atomically


def gains(records: list[dict], baseline: str) -> list[dict]:
    """Rows (T, depth, entry, prompts, steps, tokens per call, quotient over ``baseline`` and its interval)."""
    rows = []
    for temperature in sorted({r["temperature"] for r in records}):
        chosen = sorted((r for r in records if r["temperature"] == temperature), key=lambda r: r["prompt"])
        for depth in sorted(int(d) for d in chosen[0]["expected"][baseline]):
            steps = [len(r["expected"][baseline][str(depth)]) for r in chosen]  # [prompts]
            base = [sum(r["expected"][baseline][str(depth)]) for r in chosen]
            for name in chosen[0]["expected"]:
                sums = [sum(r["expected"][name][str(depth)]) for r in chosen]
                quotient, interval = paired_ratio_quotient((sums, steps), (base, steps))
                rows.append(
                    {
                        "temperature": temperature,
                        "depth": depth,
                        "entry": name,
                        "prompts": len(chosen),
                        "steps": sum(steps),
                        "tokens_per_call": sum(sums) / sum(steps),
                        "over_baseline": quotient,
                        "ci95": interval,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path)
    args = parser.parse_args()
    lines, _ = read_lines(args.records)
    header, records = lines[0]["header"], lines[1:]
    baseline = header["schemes"][0]
    rows = gains(records, baseline)
    stem = args.records.with_suffix("")
    with replace_atomically(Path(f"{stem}_gain.json")) as path:
        path.write_text(json.dumps({"header": header, "baseline": baseline, "rows": rows}, indent=1) + "\n")
    table = [
        f"Tokens per call on the same drafted {header['tree']} trees and their cuts, relative to `{baseline}` "
        f"(paired over prompts; from `{args.records.name}`).",
        "",
        f"| T | depth | entry | prompts | steps | tokens per call | / {baseline} | 95% CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        interval = "n too small" if r["ci95"] is None else f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]"
        table.append(
            f"| {r['temperature']:g} | {r['depth']} | {r['entry']} | {r['prompts']} | {r['steps']} | "
            f"{r['tokens_per_call']:.4f} | {r['over_baseline']:.4f} | {interval} |"
        )
    with replace_atomically(Path(f"{stem}_gain.md")) as path:
        path.write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
