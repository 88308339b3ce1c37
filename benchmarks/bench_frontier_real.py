"""Real trees: the token walk, traversal-seq, gbv and traversal-ratio against a bound on every lossless verifier.

Runs ``multidraft bench paired`` on the bundled pair (rrs-wor trees, by default 2x3 and every cut of it,
T = 0.6 and 1, 8 prompts x 64 tokens, common random numbers; on a chain ``1xD`` block verification too)
with extra entries ``rrs-wor:bound-i``:
for each drafted tree they record the per-tree dual bound of :mod:`multidraft.theory.tree_bound` for the
i-th theta of :data:`THETA_GRID` instead of a verifier's expected tokens (they drive the text with
traversal-seq, which is lossless, when their turn comes).  Averaged over the drafted trees, every
theta gives an upper bound on the expected tokens per call of *every* lossless verifier of the
rrs-wor draft law on these trees.  The theta is chosen by cross-fitting: on the even prompts for the
odd ones and on the odd prompts for the even ones, so that the reported bound is not the minimum
of noisy estimates over the grid.

    PYTHONPATH=src python benchmarks/bench_frontier_real.py [--resume] [--prompts 8] [--tree 2x3]

Writes the paired results to benchmarks/results/NAME.{jsonl,json,md} (NAME = paired_frontier_trees)
and the bound summary to benchmarks/results/NAME_bound.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from multidraft import verifiers
from multidraft.bench.stats import BOOTSTRAP_RESAMPLES, MIN_PROMPTS
from multidraft.bench.store import read_lines, replace_atomically
from multidraft.cli import main as cli
from multidraft.theory.tree_bound import BOUND_LAWS, tree_bound
from multidraft.verifiers.base import Verifier

RESULTS = Path(__file__).parent / "results"
#: theta by height (0: the prices of the deepest level), one bound entry per combination.
THETA_GRID = list(itertools.product((0.5, 0.75, 1.0), (1.5, 2.0, 2.5), (2.0, 2.5, 3.0, 3.5)))
COMPARED = ("rrs-wor", "rrs-wor:traversal-seq", "rrs-wor:gbv", "rrs-wor:traversal-ratio")
CHAIN = "rrs-wor:block"  # compared too on chains


class DualBound(Verifier):
    """Not a verifier: its ``expected_tokens`` is the per-tree dual bound for one theta; it verifies as
    traversal-seq does (so that the paired run can let it drive the text)."""

    _cache: dict = {}

    def __init__(self, index: int):
        self.index, self.name = index, f"bound-{index}"

    def refusal(self, k: int, law: str) -> str | None:
        return None if law in BOUND_LAWS else f"the bound knows the laws {', '.join(BOUND_LAWS)}"

    def verify(self, tree, scheme, p, q, generator):
        return verifiers.get("traversal-seq").verify(tree, scheme, p, q, generator)

    def expected_tokens(self, tree, scheme, p, q) -> float:
        key = (p.data_ptr(), tree.size, tree.depth, tuple(tree.tokens.tolist()))
        if key not in DualBound._cache:  # every theta at once, once per (tree, cut)
            if len(DualBound._cache) > 16:
                DualBound._cache.clear()
            DualBound._cache[key] = tree_bound(tree, scheme.draft_law, p, q, THETA_GRID)
        return float(DualBound._cache[key][self.index])


def cross_fitted(records: list[dict], depth: int, seed: int = 0) -> dict:
    """Per temperature: tokens of the compared entries and the cross-fitted bound, with bootstrap intervals
    over prompts of the bound's excess over the token walk (absolute and relative)."""
    out = {}
    for temperature in sorted({r["temperature"] for r in records}):
        chosen = sorted((r for r in records if r["temperature"] == temperature), key=lambda r: r["prompt"])
        steps = np.array([len(r["expected"][COMPARED[0]][str(depth)]) for r in chosen], float)  # [prompts]
        sums = {name: np.array([sum(r["expected"][name][str(depth)]) for r in chosen]) for name in r_names(chosen)}
        grid = np.stack([sums[f"rrs-wor:bound-{i}"] for i in range(len(THETA_GRID))])  # [thetas, prompts]
        fold = np.arange(len(chosen)) % 2
        bound, picked = np.zeros(len(chosen)), []
        for held in (0, 1):
            train = fold != held
            best = int(np.argmin(grid[:, train].sum(1) / steps[train].sum()))
            bound[fold == held] = grid[best, fold == held]
            picked.append(list(THETA_GRID[best]))
        token = sums[COMPARED[0]]
        row = {
            "prompts": len(chosen),
            "steps": int(steps.sum()),
            "theta_by_fold": picked,
            "bound": float(bound.sum() / steps.sum()),
            "bound_in_sample_min": float((grid.sum(1) / steps.sum()).min()),
        }
        for name in (*COMPARED, CHAIN):
            if name in sums:
                row[name] = float(sums[name].sum() / steps.sum())
        row["excess"], row["excess_ci95"] = _bootstrap(bound, token, steps, relative=False, seed=seed)
        row["excess_pct"], row["excess_pct_ci95"] = _bootstrap(bound, token, steps, relative=True, seed=seed)
        for key, name in (("traversal_gain_pct", COMPARED[1]), ("ratio_gain_pct", COMPARED[3])):
            row[key], row[key + "_ci95"] = _bootstrap(sums[name], token, steps, relative=True, seed=seed)
        out[str(temperature)] = row
    return out


def r_names(chosen: list[dict]) -> list[str]:
    return list(chosen[0]["expected"])


def _bootstrap(a: np.ndarray, b: np.ndarray, steps: np.ndarray, *, relative: bool, seed: int):
    """sum(a)/sum(steps) - sum(b)/sum(steps) (or the ratio - 1, in %) with a 95% interval resampling prompts."""

    def statistic(x, y):
        return 100 * (x / y - 1) if relative else (x - y)

    estimate = float(statistic(a.sum() / steps.sum(), b.sum() / steps.sum()))
    if len(a) < MIN_PROMPTS:
        return estimate, None
    picks = np.random.default_rng(seed).integers(0, len(a), size=(BOOTSTRAP_RESAMPLES, len(a)))
    values = statistic(a[picks].sum(1) / steps[picks].sum(1), b[picks].sum(1) / steps[picks].sum(1))
    return estimate, [float(v) for v in np.quantile(values, [0.025, 0.975])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--temperatures", default="0.6,1.0")
    parser.add_argument("--tree", default="2x3")
    parser.add_argument("--name", default="paired_frontier_trees")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    for index in range(len(THETA_GRID)):
        bound = DualBound(index)
        verifiers._VERIFIERS[bound.name] = bound  # the paired run looks verifiers up by name
    chain = args.tree.strip().startswith("1x")
    names = [*COMPARED, *([CHAIN] if chain else []), *(f"rrs-wor:bound-{i}" for i in range(len(THETA_GRID)))]
    load_before = [round(x, 2) for x in os.getloadavg()]
    argv = [
        "bench",
        "paired",
        "--schemes",
        ",".join(names),
        "--tree",
        args.tree,
        "--prompts",
        str(args.prompts),
        "--new-tokens",
        str(args.new_tokens),
        "--temperatures",
        args.temperatures,
        "--name",
        args.name,
        "--out",
        str(args.out),
    ] + (["--resume"] if args.resume else [])
    if cli(argv) != 0:
        raise SystemExit(2)
    records = read_lines(args.out / f"{args.name}.jsonl")[0][1:]
    depths = sorted(int(d) for d in records[0]["expected"][COMPARED[0]])
    summary = {
        "command": "PYTHONPATH=src python benchmarks/bench_frontier_real.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "resume")),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "theta_grid": THETA_GRID,
        "by_depth": {str(d): cross_fitted(records, d) for d in depths},
    }
    with replace_atomically(args.out / f"{args.name}_bound.json") as path:
        path.write_text(json.dumps(summary, indent=1) + "\n")
    lines = [
        f"`{summary['command']}` at commit {summary['commit']}, {summary['date']}, {summary['machine']}, "
        f"load average {load_before} before and {summary['load_after']} after.",
        "",
        "| T | depth | prompts | steps | rrs-wor (token) | traversal-seq | gbv | traversal-ratio | block | "
        "bound (cross-fitted) | bound − token | 95% CI | bound / token − 1 | 95% CI | "
        "traversal-seq / token − 1 | 95% CI | traversal-ratio / token − 1 | 95% CI |",
        "|" + "---|" * 19,
    ]
    for depth, by_t in summary["by_depth"].items():
        for temperature, r in by_t.items():

            def ci(interval, digits=3):
                return "n too small" if interval is None else f"[{interval[0]:+.{digits}f}, {interval[1]:+.{digits}f}]"

            block = f"{r[CHAIN]:.4f}" if CHAIN in r else "—"
            lines.append(
                f"| {temperature} | {depth} | {r['prompts']} | {r['steps']} | {r['rrs-wor']:.4f} | "
                f"{r['rrs-wor:traversal-seq']:.4f} | {r['rrs-wor:gbv']:.4f} | {r['rrs-wor:traversal-ratio']:.4f} | "
                f"{block} | "
                f"{r['bound']:.4f} | {r['excess']:+.4f} | "
                f"{ci(r['excess_ci95'])} | {r['excess_pct']:+.2f}% | {ci(r['excess_pct_ci95'], 2)} | "
                f"{r['traversal_gain_pct']:+.2f}% | {ci(r['traversal_gain_pct_ci95'], 2)} | "
                f"{r['ratio_gain_pct']:+.2f}% | {ci(r['ratio_gain_pct_ci95'], 2)} |"
            )
    with replace_atomically(args.out / f"{args.name}_bound.md") as path:
        path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
