"""Token-level benchmark on recorded distributions (``multidraft bench tokens``).

The analogue of Hu et al. (ICLR 2025) Table 1: for every recorded position
and every k, each scheme's exact acceptance rate beside alpha* of its own
draft law and beside the best alpha* over the draft laws implemented here
(iid, wor, greedy, topk, and hub at k = 2), averaged over positions with a
standard error.  ``rrs-wor`` with k > 2 has no affordable exact form at
this vocabulary size; its rate is a Monte-Carlo estimate from the sampling
path (``mc`` draws per position), marked as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from multidraft import schemes
from multidraft.bench.recording import Recording
from multidraft.theory import acceptance, optimal_acceptance

DEFAULT_SCHEMES = ("sps", "rrs", "rrs-wor", "kseq", "spechub", "greedy", "topk")


def laws_for(k: int) -> list[str]:
    """The draft laws compared at k drafts."""
    return ["iid", "wor", "greedy", "topk"] + (["hub"] if k == 2 else [])


def applies(name: str, k: int) -> bool:
    """Whether the scheme is tabulated at k: sps at k = 1 (where every scheme drawing from q is sps),
    topk at every k (at k = 1 it is the deterministic top-1 draft), spechub at k = 2, the others at
    k >= 2, otm never (its LP does not scale to a real vocabulary)."""
    return {"sps": k == 1, "topk": True, "spechub": k == 2, "otm": False}.get(name, k >= 2)


def mean_and_error(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def monte_carlo(name: str, recording: Recording, k: int, draws: int, seed: int) -> np.ndarray:
    """Per-position acceptance estimated from ``draws`` runs of the sampling path: [P]."""
    p = np.stack([recording.pair(i)[0] for i in range(len(recording))])
    q = np.stack([recording.pair(i)[1] for i in range(len(recording))])
    p_t = torch.from_numpy(p).repeat_interleave(draws, 0)
    q_t = torch.from_numpy(q).repeat_interleave(draws, 0)
    generator = torch.Generator().manual_seed(seed)
    accepted = schemes.get(name).sample(p_t, q_t, k, generator).accepted.double()
    return accepted.reshape(len(recording), draws).mean(1).numpy()


def token_table(
    recording: Recording,
    ks: Sequence[int],
    names: Sequence[str] = DEFAULT_SCHEMES,
    mc_draws: int = 64,
    seed: int = 0,
    progress: Callable[[], None] | None = None,
) -> list[dict]:
    """Rows (scheme, k): mean acceptance +- s.e., mean alpha* of its law, mean best alpha*, and the gaps."""
    for name in names:
        schemes.get(name)
    positions = range(len(recording))
    rows = []
    ks = sorted(set([1, *ks])) if "sps" in names else sorted(set(ks))
    for k in ks:
        optimum = {
            law: np.array([optimal_acceptance(law, *recording.pair(i), k) for i in positions]) for law in laws_for(k)
        }
        best = np.max(np.stack(list(optimum.values())), axis=0)
        for name in names:
            if not applies(name, k):
                continue
            law = schemes.get(name).draft_law
            exact = not (name == "rrs-wor" and k > 2)
            if exact:
                rates = np.array([acceptance(name, *recording.pair(i), k) for i in positions])
            else:
                rates = monte_carlo(name, recording, k, mc_draws, seed)
            mean, error = mean_and_error(rates)
            rows.append(
                {
                    "scheme": name,
                    "k": k,
                    "draft_law": law,
                    "acceptance": mean,
                    "acceptance_se": error,
                    "method": "exact" if exact else f"monte-carlo ({mc_draws} draws/position)",
                    "optimal_own_law": float(optimum[law].mean()),
                    "gap_to_own_optimum": float((optimum[law] - rates).mean()),
                    "best_optimal": float(best.mean()),
                    "gap_to_best": float((best - rates).mean()),
                    "positions": len(recording),
                }
            )
            if progress is not None:
                progress()
    return rows


def paired_gains(
    recording: Recording, k: int = 2, base: str = "spechub", others=("rrs", "rrs-wor", "kseq")
) -> list[dict]:
    """Per-position differences alpha(base) - alpha(other) at k, averaged with a paired standard error."""
    positions = range(len(recording))
    reference = np.array([acceptance(base, *recording.pair(i), k) for i in positions])
    gains = []
    for other in others:
        delta = reference - np.array([acceptance(other, *recording.pair(i), k) for i in positions])
        mean, error = mean_and_error(delta)
        gains.append({"k": k, "comparison": f"{base} - {other}", "delta_acceptance": mean, "se": error})
    return gains
