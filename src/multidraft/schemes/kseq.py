"""SpecTr's K-SEQ (Sun et al., NeurIPS 2023, arXiv 2310.15141, Algorithm 3 / §6).

Drafts x_1..x_k i.i.d. from q.  For rho in [1, k] let

    beta(rho)  = sum_y min(q(y), p(y)/rho),
    gamma(rho) = (1 - (1 - beta)^k) / beta = sum_{j<k} (1 - beta)^j.

Drafts are checked in order; x_i is accepted with probability
min(1, p(x_i) / (rho q(x_i))).  If all are rejected, y ~ norm(p - gamma
min(q, p/rho)).  The residual is non-negative (the scheme is lossless) iff
gamma(rho) <= rho; K-SEQ uses the smallest such rho, rho*, and then
alpha >= 1 - (1 - beta(rho*))^k, a (1 - 1/e)-approximation of the optimum.

rho* is found exactly: beta is piecewise of the form A + B/rho between the
breakpoints rho = p(y)/q(y).  Starting from rho = 1 <= rho*, each step takes
the piece at the current rho and moves to the smallest root of
gamma(A + B/rho) = rho on it; since beta(rho) <= A + B/rho beyond the
current point this never overshoots rho*, and it stops on the piece that
holds rho*.
"""

from __future__ import annotations

import torch

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme, VerificationLaw, ratio_test

#: Bisection steps of the scalar root-finding on one piece (float64 resolution on [1, 8]).
BISECTION_STEPS = 64
#: Cap on pieces visited; reached only by adversarial inputs (then rho is still valid, just larger).
MAX_PIECES = 64


def gamma(miss: torch.Tensor, k: int) -> torch.Tensor:
    """gamma = sum_{j<k} (1 - beta)^j given miss = 1 - beta: the stable form of (1 - miss^k) / beta."""
    total, power = torch.ones_like(miss), torch.ones_like(miss)
    for _ in range(k - 1):
        power = power * miss
        total = total + power
    return total


def _piece(p: torch.Tensor, q: torch.Tensor, rho: torch.Tensor, buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q_u, P_u) such that 1 - beta(r) = Q_u - P_u / r on the piece starting at rho.

    Q_u and P_u are the masses of q and p on the tokens with p < rho q, where
    min(q, p/r) = p/r.  Computed in the scratch ``buffer`` [..., V] with
    in-place passes: d = (rho q - p)^+, sum d = rho Q_u - P_u, then the
    indicator sign(d) dotted with q gives Q_u.  Returns two [...] tensors.
    """
    torch.mul(q, rho.unsqueeze(-1), out=buffer).sub_(p).clamp_(min=0)
    excess = buffer.sum(-1)  # rho Q_u - P_u
    buffer.sign_()
    q_u = torch.linalg.vecdot(buffer, q)
    return q_u, torch.clamp(rho * q_u - excess, min=0)


def _smallest_root(q_u: torch.Tensor, p_u: torch.Tensor, lo: torch.Tensor, k: int) -> torch.Tensor:
    """Smallest r in [lo, k] with gamma(Q_u - P_u / r) <= r on one piece (r = lo if it holds there)."""

    def holds(r):
        return gamma(torch.clamp(q_u - p_u / r, min=0), k) <= r

    low, high = lo, torch.full_like(lo, float(k))
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        ok = holds(mid)
        high = torch.where(ok, mid, high)
        low = torch.where(ok, low, mid)
    return torch.where(holds(lo), lo, high)


def optimal_rho(p: torch.Tensor, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rho*, 1 - beta(rho*)) per row; [..., V] -> ([...], [...]).

    rho* is the smallest rho in [1, k] with gamma(beta(rho)) <= rho; the miss
    mass 1 - beta = sum (q - p/rho)^+ is returned from the last piece, free of
    cancellation.
    """
    rho = torch.ones(p.shape[:-1], dtype=p.dtype, device=p.device)
    buffer = torch.empty_like(p)
    for _ in range(MAX_PIECES):
        q_u, p_u = _piece(p, q, rho, buffer)
        if k == 1:
            break
        moved = _smallest_root(q_u, p_u, rho, k)
        if bool((moved == rho).all()):
            break
        rho = moved
    return rho, torch.clamp(q_u - p_u / rho, min=0)


class KSequential(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.iid(q, k, generator)

    def _verification_law(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> VerificationLaw:
        k = drafts.shape[-1]
        rho, miss = optimal_rho(p, q, k)  # [...], [...]
        accept, reject = ratio_test(p.gather(-1, drafts) / rho.unsqueeze(-1), q.gather(-1, drafts))  # [..., k]
        rejected = torch.cumprod(reject, dim=-1)  # drafts 1..i all rejected
        reached = torch.cat([torch.ones_like(rejected[..., :1]), rejected[..., :-1]], dim=-1)
        # residual = (p - gamma min(q, p / rho))^+, in one buffer
        residual = torch.div(p, rho.unsqueeze(-1))
        torch.minimum(residual, q, out=residual).mul_(-gamma(miss, k).unsqueeze(-1)).add_(p).clamp_(min=0)
        return VerificationLaw(reached * accept, rejected[..., -1], residual)


SCHEME = KSequential(name="kseq", draft_law="iid")
