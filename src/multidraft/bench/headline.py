"""The headline comparisons drawn from the benchmark rows."""

from __future__ import annotations

import numpy as np

from multidraft.bench.generate import BOOTSTRAP_RESAMPLES


def difference(a: dict, b: dict, seed: int = 0) -> dict:
    """Block efficiency of config ``a`` minus ``b`` with a 95% bootstrap interval (prompts resampled independently)."""
    rng = np.random.default_rng(seed)

    def resampled(row):
        tokens, calls = np.array(row["per_prompt_tokens"], float), np.array(row["per_prompt_calls"], float)
        picks = rng.integers(0, len(tokens), size=(BOOTSTRAP_RESAMPLES, len(tokens)))
        return tokens[picks].sum(1) / calls[picks].sum(1)

    deltas = resampled(a) - resampled(b)
    low, high = np.quantile(deltas, [0.025, 0.975])
    return {
        "temperature": a["temperature"],
        "tree": a["tree"],
        "comparison": f"{a['scheme']} - {b['scheme']}",
        "delta_block_efficiency": a["block_efficiency"] - b["block_efficiency"],
        "ci95": [float(low), float(high)],
    }


def spechub_gains(rows: list[dict]) -> list[dict]:
    """spechub minus rrs and minus rrs-wor on every (temperature, tree) where all were run."""
    index = {(r.get("scheme"), r.get("tree"), r["temperature"]): r for r in rows if "scheme" in r}
    gains = []
    for (scheme, tree, temperature), row in index.items():
        if scheme != "spechub":
            continue
        for other in ("rrs", "rrs-wor"):
            if (other, tree, temperature) in index:
                gains.append(difference(row, index[(other, tree, temperature)]))
    return gains
