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

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from multidraft import schemes

#: (scheme, k) pairs the planner considers.
PLANNED = {"sps": (1,), "rrs": (1, 2, 3, 4), "rrs-wor": (1, 2, 3, 4), "kseq": (2, 3, 4), "spechub": (2,),
           "greedy": (2, 3, 4), "topk": (1, 2, 3, 4)}


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

    def accept(self, name: str, k: int) -> list[float]:
        return self.rates[f"{name}:{k}"]["accept"]

    def new(self, name: str, k: int) -> list[float]:
        return self.rates[f"{name}:{k}"]["new"]

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> RankRates:
        return cls(**json.loads(Path(path).read_text()))


@torch.no_grad()
def rank_rates(p: torch.Tensor, q: torch.Tensor, *, temperature: float, top_k=None, top_p=None, draws: int = 32,
               seed: int = 0, plan: dict = PLANNED, sequence: list[int] | None = None) -> RankRates:
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
    return RankRates(temperature, top_k, top_p, int(p.shape[0]), draws, rates,
                     None if sequence is None else [int(i) for i in sequence])


def rates_from_recording(recording, draws: int = 32, seed: int = 0) -> RankRates:
    """Rank acceptance from a :class:`multidraft.bench.recording.Recording` (tail as one token)."""
    pairs = [recording.pair(i) for i in range(len(recording))]
    p = torch.from_numpy(np.stack([pair[0] for pair in pairs]))
    q = torch.from_numpy(np.stack([pair[1] for pair in pairs]))
    header = recording.header
    return rank_rates(p, q, temperature=header.get("temperature"), top_k=header.get("top_k"),
                      top_p=header.get("top_p"), draws=draws, seed=seed, sequence=recording.prompt_index.tolist())


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
