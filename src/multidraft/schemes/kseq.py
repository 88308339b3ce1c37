"""SpecTr's K-SEQ (Sun et al., NeurIPS 2023, arXiv 2310.15141, Algorithm 3 / §6).

Drafts x_1..x_k i.i.d. from q.  For rho in [1, k] let

    beta(rho)  = sum_y min(q(y), p(y)/rho),
    gamma(rho) = (1 - (1 - beta)^k) / beta = sum_{j<k} (1 - beta)^j.

Drafts are checked in order; x_i is accepted with probability
min(1, p(x_i) / (rho q(x_i))).  If all are rejected, y ~ norm(p - gamma
min(q, p/rho)).  The residual is non-negative (the scheme is lossless) iff
gamma(rho) <= rho; K-SEQ uses the smallest such rho, rho*, and then
alpha >= 1 - (1 - beta(rho*))^k, a (1 - 1/e)-approximation of the optimum.

**The condition is monotone.**  Write m = 1 - beta (the miss mass),
E(rho) = rho m(rho) = sum_y (rho q(y) - p(y))^+ and H(rho) = rho g^{-1}(rho)
with g(m) = sum_{j<k} m^j.  Then gamma(rho) <= rho iff E(rho) <= H(rho).
E grows with slope sum_{p < rho q} q <= sum q = 1, and H with slope
m + g(m)/g'(m) >= 1 (because g(m) - (1 - m) g'(m) = k m^{k-1} >= 0), so
once the condition holds it holds for every larger rho: it holds exactly on
[rho*, k], and gamma(rho*) = rho* (the residual is then (p - rho* q)^+).
So:

* rho* is found exactly by Newton's method from below (:func:`optimal_rho`,
  for the law).  beta is piecewise of the form A + B/rho between the
  breakpoints rho = p(y)/q(y); the piece at the current rho (the tokens with
  p < rho q) is a lower bound of 1 - beta everywhere, so the root of the
  condition on it is a lower bound of rho*.  Each step moves there; it stops
  on the piece that holds rho*.
* Sampling compares rho* with one number at a time instead: x_i is accepted
  iff u_i < p(x_i) / (rho* q(x_i)), i.e. iff rho* < tau_i = p(x_i) / (u_i q(x_i)),
  i.e. iff the condition holds at tau_i -- one pass over the vocabulary of
  the rows still undecided; the residual is drawn the same way by rejection
  (:meth:`KSequential._verify`, :func:`sample_residual`).
"""

from __future__ import annotations

import math

import torch

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme, VerificationLaw, ratio_test, sample_categorical, uniform

#: Condition evaluations per refinement step of the scalar root on one piece, over all rows.
GRID_WORK = 2**14
#: Cap on pieces visited; reached only by adversarial inputs (then rho is still valid, just larger).
MAX_PIECES = 64
#: Envelope trials per residual draw before a row solves for rho* instead (:func:`sample_residual`).
MAX_TRIALS = 8


def gamma(miss: torch.Tensor, k: int) -> torch.Tensor:
    """gamma = sum_{j<k} (1 - beta)^j given miss = 1 - beta: the stable form of (1 - miss^k) / beta (Horner)."""
    total = torch.ones_like(miss)
    for _ in range(k - 1):
        total = total.mul_(miss).add_(1)
    return total


def required_rho(excess: torch.Tensor, rho: torch.Tensor, k: int) -> torch.Tensor:
    """gamma(beta(rho)) [n] given excess = p - rho q [n, V] (consumed); the condition holds iff it is <= rho.

    1 - beta(rho) = sum (q - p/rho)^+ = sum (rho q - p)^+ / rho: two in-place
    passes.  Where it fails, gamma(beta(rho)) is a lower bound of rho*
    (gamma(beta(.)) grows with rho and equals rho* at rho*).
    """
    return gamma(excess.clamp_(max=0).sum(-1).div_(-rho), k)


def _piece(p: torch.Tensor, q: torch.Tensor, rho: torch.Tensor, buffer: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(Q_u, P_u, n_u) such that 1 - beta(r) = Q_u - P_u / r on the piece starting at rho.

    Q_u and P_u are the masses of q and p on the n_u tokens with p < rho q,
    where min(q, p/r) = p/r.  Computed in the scratch ``buffer`` [..., V]
    with in-place passes: d = min(p - rho q, 0), sum d = P_u - rho Q_u, then
    the indicator -sign(d), its sum and its dot with q.  Returns [...] tensors.
    """
    torch.addcmul(p, q, rho.unsqueeze(-1), value=-1, out=buffer).clamp_(max=0)
    excess = buffer.sum(-1).neg_()  # rho Q_u - P_u
    count = buffer.sign_().sum(-1).neg_()
    q_u = buffer.mul_(q).sum(-1).neg_()
    return q_u, torch.clamp(rho * q_u - excess, min=0), count


def _smallest_root(q_u: torch.Tensor, p_u: torch.Tensor, lo: torch.Tensor, k: int) -> torch.Tensor:
    """Smallest r in [lo, k] with gamma(Q_u - P_u / r) <= r on one piece (r = lo if it holds there).

    The condition is monotone in r (module docstring), so a bracket
    [failing, holding] is refined by testing ``points`` inner points at a
    time, down to the resolution of the dtype: a bisection for a large batch,
    up to 1023 points (10 bits a step, fewer steps) for a small one.
    """
    q_u, p_u = q_u.unsqueeze(-1), p_u.unsqueeze(-1)  # [..., 1]

    def holds(r):
        return gamma(torch.clamp(q_u - p_u / r, min=0), k) <= r

    points = 2 ** min(10, max(1, int(math.log2(max(1.0, GRID_WORK / max(1, lo.numel())))))) - 1
    fractions = torch.arange(1, points + 1, dtype=lo.dtype, device=lo.device) / (points + 1)  # inner points of (0, 1)
    low, high = lo.unsqueeze(-1), torch.full_like(lo, float(k)).unsqueeze(-1)  # [..., 1]
    bits = 3 - math.log2(torch.finfo(lo.dtype).eps)  # an interval of length < 8 down to one ulp
    for _ in range(math.ceil(bits / math.log2(points + 1))):
        grid = torch.cat([low, torch.addcmul(low, high - low, fractions), high], dim=-1)  # [..., points + 2]
        failing = holds(grid[..., 1:-1]).logical_not_().sum(-1, keepdim=True)  # fails at grid[failing], holds after
        low, high = grid.gather(-1, failing), grid.gather(-1, failing + 1)
    return torch.where(holds(lo.unsqueeze(-1)), lo.unsqueeze(-1), high).squeeze(-1)


def optimal_rho(
    p: torch.Tensor, q: torch.Tensor, k: int, start: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rho*, 1 - beta(rho*)) per row; [..., V] -> ([...], [...]).

    rho* is the smallest rho in [1, k] with gamma(beta(rho)) <= rho; Newton's
    method on the pieces of beta (module docstring) from ``start``, a lower
    bound of rho* (default 1).  A row is done when the root of its piece is
    the current rho, or when the next piece has the same tokens (then the
    piece was exact up to its root, which is rho*).  The miss mass
    1 - beta = sum (q - p/rho)^+ is returned from the last piece, free of
    cancellation.
    """
    rho = torch.ones(p.shape[:-1], dtype=p.dtype, device=p.device) if start is None else start
    buffer = torch.empty_like(p)
    q_u, p_u, count = _piece(p, q, rho, buffer)
    done = torch.full_like(rho, k == 1, dtype=torch.bool)  # k = 1: gamma = 1 <= rho = 1
    for _ in range(MAX_PIECES):
        if bool(done.all()):
            break
        moved = _smallest_root(q_u, p_u, rho, k)
        done |= moved == rho
        rho = torch.where(done, rho, moved)
        if bool(done.all()):
            break
        piece = _piece(p, q, rho, buffer)
        done |= piece[2] == count  # the same tokens: rho is the root of an exact piece
        q_u, p_u, count = (torch.where(done, old, new) for old, new in zip((q_u, p_u, count), piece))
    return rho, torch.clamp(q_u - p_u / rho, min=0)


def residual(p: torch.Tensor, q: torch.Tensor, rho: torch.Tensor, miss: torch.Tensor, k: int) -> torch.Tensor:
    """The residual law (p - gamma min(q, p/rho))^+ up to a factor: [..., V], one allocation.

    With c = rho/gamma - 1 >= 0 it equals (gamma/rho) ((p - rho q)^+ + c p),
    since p - gamma min(q, p/rho) = max(p - gamma q, (1 - gamma/rho) p).  If
    rounding leaves gamma > rho, the clamped law is (p - gamma q)^+, which is
    the same expression with rho replaced by gamma and c = 0.
    """
    g = gamma(miss, k)
    scale = torch.maximum(rho, g).unsqueeze(-1)
    law = torch.addcmul(p, q, scale, value=-1).clamp_(min=0)  # (p - max(rho, gamma) q)^+
    return law.addcmul_(p, torch.clamp(rho / g - 1, min=0).unsqueeze(-1))


def sample_residual(
    p: torch.Tensor, q: torch.Tensor, lower: torch.Tensor, k: int, generator: torch.Generator | None
) -> torch.Tensor:
    """y ~ (p - rho* q)^+ per row [n], given ``lower`` <= rho* [n], by rejection from an envelope.

    At rho*, gamma = rho* (gamma(beta(.)) is continuous and the condition
    first holds there), so the residual law is (p - rho* q)^+.  For L <= rho*
    the envelope e = (p - L q)^+ dominates it: draw y ~ e and accept with
    probability (p(y) - rho* q(y))^+ / e(y), i.e. iff rho* < sigma =
    (p(y) - v e(y)) / q(y) -- a test of the condition at sigma, as for the
    drafts, without solving for rho*.  A rejected sigma raises L to
    gamma(beta(sigma)).  Each trial accepts with probability
    sum (p - rho* q)^+ / sum e; rows still waiting after ``MAX_TRIALS``
    trials draw from the residual at rho* (:func:`optimal_rho`).
    """
    token = torch.zeros_like(lower, dtype=torch.int64)  # [n]
    rows = torch.arange(lower.shape[0], device=lower.device)
    buffer = torch.empty_like(p)
    for _ in range(MAX_TRIALS):
        torch.addcmul(p, q, lower.unsqueeze(-1), value=-1, out=buffer).clamp_(min=0)  # the envelope  [m, V]
        y = sample_categorical(buffer, generator).unsqueeze(-1)  # [m, 1]
        p_y, q_y, e_y = (x.gather(-1, y)[:, 0] for x in (p, q, buffer))  # [m]
        below = p_y - uniform(p_y.shape, p, generator) * e_y
        sigma = torch.where(q_y > 0, below / torch.where(q_y > 0, q_y, 1), math.inf)  # q(y) = 0: e(y) is the target
        test = torch.clamp(sigma, min=lower).clamp_(max=k)  # sigma <= L: rejected; sigma > k: accepted
        required = required_rho(torch.addcmul(p, q, test.unsqueeze(-1), value=-1, out=buffer), test, k)
        accept = (sigma > k) | ((sigma > lower) & (required <= test))
        token[rows[accept]] = y[accept, 0]
        keep = (~accept).nonzero().squeeze(-1)
        raised = torch.where(sigma > lower, required.clamp(max=k), lower)
        rows, lower = rows[keep], torch.maximum(lower, raised)[keep]
        if not rows.numel():
            return token
        p, q, buffer = p.index_select(0, keep), q.index_select(0, keep), buffer[: keep.numel()]
    rho, miss = optimal_rho(p, q, k, start=lower)
    token[rows] = sample_categorical(residual(p, q, rho, miss, k), generator)
    return token


def thresholds(p_x: torch.Tensor, q_x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """tau = p(x) / (u q(x)) [..., k]: draft x is accepted iff rho* < tau; 0 (never) where p(x) q(x) = 0."""
    valid = (p_x > 0) & (q_x > 0)
    return torch.where(valid, p_x / torch.where(valid, u * q_x, 1), 0)


class KSequential(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.iid(q, k, generator)

    def _verification_law(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> VerificationLaw:
        k = drafts.shape[-1]
        rho, miss = optimal_rho(p, q, k)  # [...], [...]
        accept, reject = ratio_test(p.gather(-1, drafts) / rho.unsqueeze(-1), q.gather(-1, drafts))  # [..., k]
        rejected = torch.cumprod(reject, dim=-1)  # drafts 1..i all rejected
        reached = torch.cat([torch.ones_like(rejected[..., :1]), rejected[..., :-1]], dim=-1)
        return VerificationLaw(reached * accept, rejected[..., -1], residual(p, q, rho, miss, k))

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, generator) -> torch.Tensor:
        """y ~ pi(. | drafts) without solving for rho*.

        Draft x_i is accepted iff rho* < tau_i = p(x_i) / (u_i q(x_i)): surely
        if tau_i > k, never if tau_i <= L for a lower bound L of rho* (at
        first 1), and otherwise iff the condition holds at tau_i (it holds
        exactly on [rho*, k]).  Round i evaluates it on the rows that rejected
        x_1..x_{i-1} and have tau_i in (L, k], one pass over each of their
        vocabularies; a rejection there raises L to gamma(beta(tau_i)).  The
        rows that reject all k drafts -- a fraction (1 - beta(rho*))^k -- draw
        the residual from the envelope L gives (:func:`sample_residual`).
        """
        shape, vocab, k = drafts.shape[:-1], p.shape[-1], drafts.shape[-1]
        p, q, drafts = p.reshape(-1, vocab), q.reshape(-1, vocab), drafts.reshape(-1, k)  # [n, V], [n, k]
        tau = thresholds(p.gather(-1, drafts), q.gather(-1, drafts), uniform(drafts.shape, p, generator))  # [n, k]
        token = drafts[:, 0].clone()  # [n]
        pending = torch.arange(drafts.shape[0], device=p.device)  # rows whose drafts so far were all rejected
        lower = torch.ones_like(tau[:, 0])  # a lower bound of rho* on the pending rows
        for i in range(k):
            at_i = tau[pending, i]  # [m]
            accept, bound = at_i > k, at_i.clone()  # bound: a lower bound of rho* where x_i is rejected
            open_ = (at_i > lower) & ~accept  # at_i <= lower <= rho*: rejected
            if bool(open_.any()):
                rows, rho = pending[open_], at_i[open_]
                excess = p.index_select(0, rows).addcmul_(q.index_select(0, rows), rho.unsqueeze(-1), value=-1)
                required = required_rho(excess, rho, k)
                accept[open_], bound[open_] = required <= rho, required.clamp(max=k)
            token[pending[accept]] = drafts[pending[accept], i]
            pending, lower = pending[~accept], torch.maximum(lower, bound)[~accept]
        if pending.numel():
            rest = p.index_select(0, pending), q.index_select(0, pending)
            token[pending] = sample_residual(*rest, lower, k, generator)
        return token.view(shape)


SCHEME = KSequential(name="kseq", draft_law="iid")
