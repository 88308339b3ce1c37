"""Acceptance by rank of child, from recorded (p, q), through the exact per-node kernels.

At a tree node with k drafts ``x = (x_1..x_k)`` drawn from the scheme's draft
law, the walk moves to the child made by draft i with probability
pi(x_i | x; p, q) when x_i is the first occurrence of its token (repeated
i.i.d. drafts share one child, reached through the first).  Averaged over
the draft law and over recorded positions this gives, per scheme and k,

* ``accept[i] = E[ pi(x_i | x) 1{x_i new} ]``: the chance the walk enters the
  child of rank i (the exact kernel of :meth:`multidraft.schemes.base.Scheme.kernel`
  given the drafts, Monte Carlo over the drafts only);
* ``new[i] = E[ 1{x_i new} ]``: the chance that child exists (a node).

:mod:`multidraft.planning.cost` multiplies these along the paths of a tree,
which assumes acceptance at one depth independent of the depth above, or,
when the rates keep their recorded positions (``sequence``), follows each
tree's depths along the recorded continuations: the walk's context at depth
d is the context plus the accepted drafts, which have the target's law, as
the recorded text has, so consecutive recorded positions carry the
correlation of acceptance from one depth to the next (easy passages accept
at every depth).  Positions come from a
``multidraft record`` file (top-N tokens plus a tail mass, the tail treated
as one token) or from rows recorded on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from multidraft import schemes

#: Draft-confidence thresholds tau of the confidence-stopped chains the online planner considers.
STOP_THRESHOLDS = (0.2, 0.4, 0.6)

#: (scheme, k) pairs the planner considers.
PLANNED = {
    "sps": (1,),
    "rrs": (1, 2, 3, 4),
    "rrs-wor": (1, 2, 3, 4),
    "kseq": (2, 3, 4),
    "spechub": (2,),
    "greedy": (2, 3, 4),
    "topk": (1, 2, 3, 4),
}


@dataclass
class RankRates:
    """Rank acceptance per ``"scheme:k"`` (see module docstring), with what it was measured on."""

    temperature: float
    top_k: int | None
    top_p: float | None
    positions: int
    draws: int
    rates: dict  # "scheme:k" -> {"accept", "new", "accept_se": [k floats], "by_position": [positions][k]}
    sequence: list[int] | None = None  # [positions] which generated text each position belongs to, in order
    weights: list[float] | None = None  # [positions] how much each position counts (None: alike)

    def accept(self, name: str, k: int) -> list[float]:
        """accept[i] of the child of rank i, averaged over the positions (with their weights, if any)."""
        entry = self.rates[f"{name}:{k}"]
        if self.weights is None or entry.get("by_position") is None:
            return entry["accept"]
        return list(np.average(np.asarray(entry["by_position"]), axis=0, weights=self.weights))

    def weighted(self, weights: np.ndarray) -> RankRates:
        """The same positions weighted by ``weights`` [positions] (non-negative, not all zero)."""
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (self.positions,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be {self.positions} non-negative numbers, not all zero")
        return RankRates(
            self.temperature,
            self.top_k,
            self.top_p,
            self.positions,
            self.draws,
            self.rates,
            self.sequence,
            weights.tolist(),
        )

    def new(self, name: str, k: int) -> list[float]:
        return self.rates[f"{name}:{k}"]["new"]


@torch.no_grad()
def rank_rates(
    p: torch.Tensor,
    q: torch.Tensor,
    *,
    temperature: float,
    top_k=None,
    top_p=None,
    draws: int = 32,
    seed: int = 0,
    plan: dict = PLANNED,
    sequence: list[int] | None = None,
) -> RankRates:
    """Rank acceptance from positions ``p``, ``q`` [P, V'] (float64 rows summing to 1).

    ``sequence`` [P] names the generated text each row belongs to, rows of one
    text being consecutive positions in order; the per-position rates are then
    kept so that :mod:`multidraft.planning.cost` can follow a tree's depths
    along real continuations.
    """
    generator = torch.Generator().manual_seed(seed)
    p_rep, q_rep = p.repeat_interleave(draws, 0), q.repeat_interleave(draws, 0)  # [P * draws, V']
    rates = {}
    for name, ks in plan.items():
        scheme = schemes.get(name)
        for k in ks:
            drafts = scheme.sample_drafts(q_rep, k, generator, check=False)  # [P * draws, k]
            kernel = scheme.kernel(p_rep, q_rep, drafts, check=False)  # [P * draws, V']
            earlier = torch.tril(drafts.unsqueeze(-1) == drafts.unsqueeze(-2), diagonal=-1).any(-1)  # [.., k]
            new = (~earlier).double()
            enter = kernel.gather(-1, drafts) * new  # [P * draws, k]
            per_position = enter.reshape(p.shape[0], draws, k).mean(1)  # [P, k]
            rates[f"{name}:{k}"] = {
                "accept": per_position.mean(0).tolist(),
                "new": new.mean(0).tolist(),
                "accept_se": (per_position.std(0) / np.sqrt(max(p.shape[0] - 1, 1))).tolist(),
                "by_position": per_position.tolist() if sequence is not None else None,
            }
    return RankRates(
        temperature,
        top_k,
        top_p,
        int(p.shape[0]),
        draws,
        rates,
        None if sequence is None else [int(i) for i in sequence],
    )


def stop_rates(p: torch.Tensor, q: torch.Tensor, thresholds=STOP_THRESHOLDS) -> dict:
    """Per position and threshold tau, what a chain stopped on the draft's confidence needs
    (:mod:`multidraft.step`: the chain ends after a draft token with q(x) < tau):

    * ``accept`` beta = sum_{q(y) >= tau} min(p(y), q(y)): the draft x ~ q is accepted by the token walk
      (with probability min(1, p(x) / q(x))) and confident, so the chain goes on past it;
    * ``continue`` c = sum_{q(y) >= tau} q(y): the draft is confident (whatever the target says).

    ``p``, ``q`` [P, N + 1]: the top-N tokens and, last, the tail merged into one entry.  A tail token
    has p + q no larger than any kept token's, so q < 2 / N, below every tau once N >= 2 / tau: the
    tail never counts as confident, and the sums over the kept tokens are exact.  (A tail of zero mass,
    every token kept, needs no such bound.)
    """
    smallest = min(thresholds)
    if p.shape[-1] - 1 < 2 / smallest and bool((q[:, -1] > 0).any()):
        raise ValueError(f"stop rates need at least {2 / smallest:.0f} kept tokens per position, got {p.shape[-1] - 1}")
    p_top, q_top = p[:, :-1], q[:, :-1]  # [P, N]
    agree = torch.minimum(p_top, q_top)
    out = {"thresholds": list(thresholds), "accept": [], "continue": []}
    for tau in thresholds:
        confident = q_top >= tau
        out["accept"].append((agree * confident).sum(-1).tolist())
        out["continue"].append((q_top * confident).sum(-1).tolist())
    return out


def rates_from_recording(recording, draws: int = 32, seed: int = 0) -> RankRates:
    """Rank acceptance from a :class:`multidraft.bench.recording.Recording` (tail as one token)."""
    pairs = [recording.pair(i) for i in range(len(recording))]
    p = torch.from_numpy(np.stack([pair[0] for pair in pairs]))
    q = torch.from_numpy(np.stack([pair[1] for pair in pairs]))
    header = recording.header
    return rank_rates(
        p,
        q,
        temperature=header.get("temperature"),
        top_k=header.get("top_k"),
        top_p=header.get("top_p"),
        draws=draws,
        seed=seed,
        sequence=recording.prompt_index.tolist(),
    )


def truncate(p: torch.Tensor, q: torch.Tensor, top_n: int) -> tuple[torch.Tensor, ...]:
    """Keep the ``top_n`` tokens of largest p + q: [P, V] float64 -> ids, p, q [P, N], tails [P].

    The tails are sums of the dropped entries (not 1 - kept), free of cancellation.
    """
    n = min(top_n, p.shape[-1])
    ids = torch.topk(p + q, n, dim=-1).indices  # [P, N]
    p_top, q_top = p.gather(-1, ids), q.gather(-1, ids)
    p_tail = p.scatter(-1, ids, 0).sum(-1)
    q_tail = q.scatter(-1, ids, 0).sum(-1)
    return ids, p_top, q_top, p_tail, q_tail
