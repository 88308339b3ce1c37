"""Exact acceptance rates alpha = P(output in {x_1..x_k}) in closed form (DESIGN §1).

None of these enumerates the |V|^k draft tuples; each is derived from the
scheme's verification rule and checked against enumeration in the tests.
Float64 numpy throughout; every "1 - mass" is computed as the sum of the
complementary entries.
"""

from __future__ import annotations

import numpy as np
import torch

from multidraft import schemes
from multidraft.schemes import kseq
from multidraft.schemes.draft_laws import greedy_fixed_tokens, hub_token, top_k_tokens
from multidraft.theory.exact import acceptance_by_enumeration
from multidraft.validation import as_pair

#: rrs-wor with k > 2 sums over ordered rejected prefixes: at most this many.
MAX_PREFIXES = 1_000_000


def _normalise(x: np.ndarray) -> np.ndarray:
    total = x.sum()
    return x / total if total > 0 else x


def sps(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """alpha = sum min(p, q) = 1 - TV(p, q) (Leviathan et al. 2023, Thm 3.5)."""
    return float(np.minimum(p, q).sum())


def rrs(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """alpha = 1 - prod_{i=1..k} sum_y (q(y) - r_{i-1}(y))^+.

    The residuals r_0 = p, r_i = norm((r_{i-1} - q)^+) do not depend on the
    drafts, each i.i.d. draft is rejected with probability
    sum_y (q - r_{i-1})^+ given that the earlier ones were, and a rejected
    draft has r(x) = 0 afterwards, so the final residual never outputs a draft.
    """
    residual, all_rejected = p, 1.0
    for _ in range(k):
        all_rejected *= np.clip(q - residual, 0, None).sum()
        residual = _normalise(np.clip(residual - q, 0, None))
    return float(1 - all_rejected)


def _wor_two(p: np.ndarray, q: np.ndarray) -> float:
    """rrs-wor with k = 2 in O(V log V).

    alpha = sum min(p, q) + sum_{x1} (q(x1) - p(x1))^+ S(c(x1)), with
    c(x1) = sum_{y != x1} q(y), r_1 = norm((p - q)^+) and
    S(c) = sum_y min(q(y)/c, r_1(y)) (r_1(x1) = 0 for any rejectable x1).
    S is evaluated for all c at once from the tokens sorted by q / r_1.
    """
    first = np.minimum(p, q).sum()
    rejected = np.clip(q - p, 0, None)  # [V]
    residual = _normalise(np.clip(p - q, 0, None))
    c = q.sum() - q
    top = int(np.argmax(q))
    c[top] = np.delete(q, top).sum()  # the only entry that can exceed 1/2: no cancellation
    live = residual > 0
    ratio = q[live] / residual[live]
    order = np.argsort(ratio)
    ratio, q_sorted, r_sorted = ratio[order], q[live][order], residual[live][order]
    q_below = np.concatenate([[0.0], np.cumsum(q_sorted)])  # q mass with ratio < c
    r_above = np.concatenate([np.cumsum(r_sorted[::-1])[::-1], [0.0]])  # r mass with ratio >= c
    split = np.searchsorted(ratio, c, side="left")
    safe_c = np.where(c > 0, c, 1)
    second = np.where(c > 0, q_below[split] / safe_c + r_above[split], 0)
    return float(first + rejected @ second)


def rrs_wor(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """alpha for recursive rejection over drafts drawn without replacement.

    Round i's residual depends on which tokens were drawn before, so alpha is
    a sum over ordered rejected prefixes (x_1..x_{i-1}): with reach
    probability w and residual r, round i contributes
    w sum_x min(q_i(x), r(x)) and each x branches with w (q_i(x) - r(x))^+.
    k = 2 has an O(V log V) form; k > 2 is exact but costs O(V^(k-1)).
    """
    if k == 1:
        return sps(p, q, 1)
    if k == 2:
        return _wor_two(p, q)
    if float(q.size) ** (k - 2) * q.size > MAX_PREFIXES:
        raise ValueError(
            f"exact rrs-wor acceptance with k = {k} over V = {q.size} needs ~V^(k-1) prefixes; "
            "use k <= 2, a smaller vocabulary, or acceptance_mc"
        )

    def accepted_from(removed: np.ndarray, reach: float, residual: np.ndarray, rounds_left: int) -> float:
        remaining = np.where(removed, 0, q)
        proposal = _normalise(remaining)
        total = reach * np.minimum(proposal, residual).sum()
        if rounds_left == 1 or not proposal.any():
            return total
        next_residual = _normalise(np.clip(residual - proposal, 0, None))
        for x in np.flatnonzero(proposal > residual):
            mask = removed.copy()
            mask[x] = True
            total += accepted_from(mask, reach * (proposal[x] - residual[x]), next_residual, rounds_left - 1)
        return total

    return float(accepted_from(np.zeros(q.size, dtype=bool), 1.0, p, k))


def k_sequential(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """SpecTr K-SEQ: alpha = 1 - m^k + m^k sum_y r(y) (1 - (1 - s(y))^k).

    m = 1 - beta(rho*) = sum (q - p/rho*)^+; given that all k i.i.d. drafts
    were rejected they are i.i.d. from s = (q - p/rho*)^+ / m, and the
    residual r = norm(p - gamma min(q, p/rho*)) may output one of them (it
    vanishes there when gamma(rho*) = rho*, so the last term is ~0).  rho*
    comes from the same exact search the scheme uses.
    """
    p_t, q_t = torch.from_numpy(p), torch.from_numpy(q)
    rho, miss_t = kseq.optimal_rho(p_t, q_t, k)
    miss = float(miss_t)
    if miss == 0:
        return 1.0
    rho_f = float(rho)
    rejected_law = np.clip(q - p / rho_f, 0, None) / miss
    g = float(kseq.gamma(torch.tensor(miss, dtype=torch.float64), k))
    residual = _normalise(np.clip(p - g * np.minimum(q, p / rho_f), 0, None))
    hit = residual @ (1 - (1 - rejected_law) ** k)
    return float(1 - miss**k + miss**k * hit)


def spechub(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """SpecHub: alpha = sum_{i!=a} [min(p, q) + min(p', Q(a, .))](i) + min(p(a), S2) + min(p'(a), S1).

    (Notation of DESIGN §1.1; the final residual p'' is zero on every draft
    that can be rejected, so these four accept terms are all of alpha.)
    One-hot q: alpha = p(a).
    """
    a = hub_token(q)
    q_off, p_off = np.delete(q, a), np.delete(p, a)
    rest = q_off.sum()
    if rest == 0:
        return float(p[a])
    hub_pair = q[a] * q_off / rest
    p1 = np.clip(p_off - q_off, 0, None)
    s1 = np.clip(q_off - p_off, 0, None).sum()
    s2 = np.clip(hub_pair - p1, 0, None).sum()
    p1_a = max(p[a] - s2, 0.0)
    accepted = np.minimum(p_off, q_off).sum() + np.minimum(p1, hub_pair).sum() + min(p[a], s2) + min(p1_a, s1)
    return float(accepted)


def greedy(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """Hu et al. greedy drafts: alpha = p(T) + sum_{x not in T} min(p(x), q'(x))."""
    if k > q.size:
        raise ValueError(f"greedy drafts need k <= V, got k = {k} and V = {q.size}")
    fixed = greedy_fixed_tokens(q, k)
    free = np.ones(q.size, dtype=bool)
    free[fixed] = False
    q_free = _normalise(np.where(free, q, 0))
    return float(p[fixed].sum() + np.minimum(p, q_free)[free].sum())


def topk(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """The engines' baseline: deterministic drafts T = the top k of q, pi = p, so alpha = p(T) = alpha*."""
    return float(p[np.unique(top_k_tokens(q, k))].sum())


def otm(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """The optimal-transport scheme attains alpha*(iid); computed exactly from its own kernel (small V)."""
    return acceptance_by_enumeration("otm", p, q, k)


_FORMULAS = {
    "sps": sps,
    "rrs": rrs,
    "rrs-wor": rrs_wor,
    "kseq": k_sequential,
    "spechub": spechub,
    "greedy": greedy,
    "topk": topk,
    "otm": otm,
}


def acceptance(scheme_name: str, p, q, k: int) -> float:
    """The exact acceptance rate of ``scheme_name`` with k drafts at target p and draft q (1-D arrays)."""
    scheme = schemes.get(scheme_name)
    p, q = as_pair(p, q)
    scheme.check_k(k)
    return _FORMULAS[scheme.name](p, q, k)
