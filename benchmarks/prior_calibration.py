"""Leave-one-out calibration of the planner's predictions on the shipped priors.

For every recorded prompt j of a shipped prior (``src/multidraft/data/priors``) and every 4th of its
positions t from the 8th on, the prior's other prompts predict the tokens per step of a few of the
planner's frequent plans started at t, from the agreements of j's positions before t (the last
:data:`~multidraft.planning.online.WINDOW`) and j's prompt agreement, exactly as ``scheme="auto"`` mixes
its plan table:

* *linear*: the former posterior over recorded prompts, agreements compared on their own scale with
  bandwidth 0.08 (:func:`linear_posterior`);
* *prompts*: the posterior over recorded prompts alone, on the log scale (w_j of the held-out prompt set
  to 0);
* *local state*: the same weights spread over each prompt's cells by the local state of the last
  agreements (:meth:`multidraft.planning.prior.Prior.state_weights`).

The truth is j's own recorded rates started at t (the exact expectation over the drafts, along j's
recorded continuation).  No calibration multiplier and no cut at the tokens still wanted: both sides
are the whole tree.  Per temperature, kind of prompt and plan: mean truth / mean prediction.  Exact
(no timing), so load does not matter.

    PYTHONPATH=src python benchmarks/prior_calibration.py [--name prior_calibration]

Writes benchmarks/results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np

from multidraft.bench.store import replace_atomically
from multidraft.planning.cost import stop_chain_rates, tree_rates
from multidraft.planning.online import WINDOW, Candidate, PlanTable
from multidraft.planning.prior import FLOOR, PROMPT_BANDWIDTH, TEMPERING, Prior

RESULTS = Path(__file__).parent / "results"
FIRST, EVERY = 8, 4
PLANS = {
    "sps 1x28@0.6": Candidate("sps", (1,) * 28, 0.6),
    "sps 1x16@0.4": Candidate("sps", (1,) * 16, 0.4),
    "rrs-wor 1x5": Candidate("rrs-wor", (1,) * 5),
    "kseq 4x2": Candidate("kseq", (4, 4)),
    "kseq 3x3": Candidate("kseq", (3, 3, 3)),
    "rrs 3x3": Candidate("rrs", (3, 3, 3)),
}


def linear_posterior(prior: Prior, observed, prompt) -> np.ndarray:
    """[prompts] the posterior as it was before agreements were read on the log scale: kernel densities of the
    agreements themselves, bandwidth 0.08 (the baseline of this comparison)."""
    prompts, count = prior.prompts, int(prior.prompts.max()) + 1
    log_weight = -0.5 * ((prompt - np.asarray(prior.prompt_agreement)) / PROMPT_BANDWIDTH) ** 2
    kernel = np.exp(-0.5 * ((np.asarray(observed)[None] - np.asarray(prior.agreement)[:, None]) / 0.08) ** 2)
    density = np.zeros((count, len(observed)))
    np.add.at(density, prompts, kernel / (0.08 * np.sqrt(2 * np.pi)))
    density /= np.bincount(prompts, minlength=count)[:, None]
    log_weight = log_weight + TEMPERING * np.log(density + FLOOR).sum(1)
    weight = np.exp(log_weight - log_weight.max())
    return weight / weight.sum()


def per_start(prior: Prior, candidate: Candidate) -> np.ndarray:
    """[P] E tokens per step of ``candidate`` started at each recorded position (NaN where its text is too short)."""
    if candidate.stop:
        rates = stop_chain_rates(prior.stops, prior.agreement, prior.prompts, candidate.stop, len(candidate.shape))
    else:
        rates = tree_rates(prior.rates, candidate.scheme, candidate.shape)
    out = np.full(len(prior.agreement), np.nan)
    out[rates.starts] = rates.tokens
    return out


def held_out(prior: Prior) -> dict:
    """Per (kind, plan): [n, 4] rows of (truth, prediction on the linear scale, from the prompts, with the local
    state)."""
    plans = list(PLANS.values())
    by_prompt, local = PlanTable.of(prior, plans), PlanTable.of(prior, plans, local=True)
    truth = {name: per_start(prior, plan) for name, plan in PLANS.items()}
    agreement, prompts = np.asarray(prior.agreement), prior.prompts
    rows: dict = {}
    for j in range(int(prompts.max()) + 1):
        positions = np.flatnonzero(prompts == j)
        for i in range(FIRST, len(positions), EVERY):
            seen = agreement[positions[max(0, i - WINDOW) : i]]
            prompt = prior.prompt_agreement[j]
            linear, weight = linear_posterior(prior, seen, prompt), prior.posterior(seen, prompt)
            linear[j], weight[j] = 0.0, 0.0
            linear, weight = linear / linear.sum(), weight / weight.sum()
            joint = prior.cell_posterior(seen, prompt)
            joint[j] = 0.0
            columns = joint.ravel() / joint.sum()
            for c, name in enumerate(PLANS):
                value = truth[name][positions[i]]
                if not np.isnan(value):
                    row = (value, by_prompt.tokens[c] @ linear, by_prompt.tokens[c] @ weight, local.tokens[c] @ columns)
                    rows.setdefault((prior.kinds[j], name), []).append(row)
    return {key: np.array(value) for key, value in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="prior_calibration", help="results file stem under benchmarks/results")
    args = parser.parse_args()
    results = []
    for name in ("bundled-int8-T0.6.json", "bundled-int8-T1.json"):
        prior = Prior.load(Path(str(resources.files("multidraft.data.priors") / name)))
        for (kind, plan), rows in sorted(held_out(prior).items()):
            truth, linear, prompts_only, local = rows.mean(0)
            results.append(
                {
                    "prior": name,
                    "temperature": prior.rates.temperature,
                    "kind": kind,
                    "plan": plan,
                    "positions": len(rows),
                    "truth": truth,
                    "linear": linear,
                    "prompts": prompts_only,
                    "local": local,
                    "truth_over_linear": truth / linear,
                    "truth_over_prompts": truth / prompts_only,
                    "truth_over_local": truth / local,
                }
            )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {
        "command": f"PYTHONPATH=src python benchmarks/prior_calibration.py --name {args.name}",
        "commit": commit,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rows": results,
    }
    lines = [
        f"`{out['command']}` at commit {commit}, {out['date']} (exact; no timing).",
        "",
        "Held-out recorded prompts: mean E tokens per step of each plan along the prompt's own text (truth), "
        "and the planner's prediction from the other prompts: by the former posterior (agreements on a linear "
        "scale), by the posterior over prompts on the log scale, and with the local state (what `auto` uses).",
        "",
        "| T | kind | plan | positions | truth | linear | truth / linear | prompts | truth / prompts | local state "
        "| truth / local state |",
        "|" + "---|" * 11,
    ]
    for r in results:
        lines.append(
            f"| {r['temperature']:g} | {r['kind']} | {r['plan']} | {r['positions']} | {r['truth']:.3f} | "
            f"{r['linear']:.3f} | {r['truth_over_linear']:.3f} | {r['prompts']:.3f} | {r['truth_over_prompts']:.3f} | "
            f"{r['local']:.3f} | {r['truth_over_local']:.3f} |"
        )
    keys = ("linear", "prompts", "local")
    lines += [
        "",
        "| T | rows | mean abs log(truth / predicted): linear | prompts | local state "
        "| rows off by > 10%: linear | prompts | local state |",
        "|" + "---|" * 8,
    ]
    for temperature in sorted({r["temperature"] for r in results}):
        chosen = [r for r in results if r["temperature"] == temperature]
        off = {key: np.abs(np.log([r[f"truth_over_{key}"] for r in chosen])) for key in keys}
        means = " | ".join(f"{off[key].mean():.3f}" for key in keys)
        counts = " | ".join(str(int((off[key] > np.log(1.1)).sum())) for key in keys)
        lines.append(f"| {temperature:g} | {len(chosen)} | {means} | {counts} |")
    with replace_atomically(RESULTS / f"{args.name}.json") as path:
        path.write_text(json.dumps(out, indent=1) + "\n")
    with replace_atomically(RESULTS / f"{args.name}.md") as path:
        path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
