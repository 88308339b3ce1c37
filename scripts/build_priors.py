#!/usr/bin/env python3
"""Rebuild ``src/multidraft/data/priors/*.json``: the bundled pair's acceptance priors, from committed recordings.

    python scripts/build_priors.py benchmarks/results/prior_T0.6.npz benchmarks/results/prior_T1.0.npz \
        benchmarks/results/prior_long_T0.6.npz benchmarks/results/prior_long_T1.0.npz

The recordings made at one temperature (``multidraft record`` on the bundled pair with the int8 draft,
prompts of every category past the ones the benchmarks use) are joined into one
(:meth:`multidraft.bench.recording.Recording.join`), which becomes one prior
(:meth:`multidraft.planning.prior.Prior.from_recording`), tagged with the pair it describes so that
``scheme="auto"`` uses it only for that pair and draft option.  The rank rates are Monte Carlo over
the draft laws with a fixed seed, so the output is the same for the same recordings.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from multidraft.bench.recording import Recording
from multidraft.models import bundled_pair
from multidraft.planning.prior import Prior

OUT = Path(__file__).resolve().parents[1] / "src" / "multidraft" / "data" / "priors"


def bundled_key(draft_precision: str) -> dict:
    """What :func:`multidraft.planning.prior.pair_key` gives for the bundled pair as ``load_pair`` prepares it."""
    pair = bundled_pair()
    return {
        "target": pair.target.hf_path().name,
        "draft": pair.draft.hf_path().name,
        "draft_quantized": draft_precision == "int8",
        "draft_vocabulary": None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recordings", nargs="+", type=Path)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    by_temperature: dict[float, list[Path]] = {}
    for path in args.recordings:
        by_temperature.setdefault(Recording.load(path).header["temperature"], []).append(path)
    for temperature, paths in by_temperature.items():
        recording = Recording.join([Recording.load(path) for path in paths])
        if recording.header.get("draft_option", {}).get("vocabulary") is not None:
            raise ValueError(f"{', '.join(map(str, paths))}: priors are built for the full-vocabulary draft")
        precision = recording.header.get("draft_option", {}).get("precision", "int8")
        source = " + ".join(path.name for path in paths)
        prior = Prior.from_recording(recording, source=source, pair=bundled_key(precision))
        out = OUT / f"bundled-{precision}-T{temperature:g}.json"
        out.write_text(json.dumps(asdict(prior), separators=(",", ":")) + "\n")
        kinds = sorted(set(prior.kinds))
        print(
            f"{out.name}: {prior.rates.positions} positions, {len(prior.kinds)} prompts ({', '.join(kinds)}), "
            f"{out.stat().st_size / 1e6:.1f} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
