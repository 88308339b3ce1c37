"""The optimal acceptance rate alpha*(Q, p) of a draft law, without a linear program.

For a draft law Q (the joint law of the k drafts, DESIGN §1) the best
acceptance rate of any lossless verification rule is the value of an optimal
transport problem with membership cost, and by max-flow / min-cut duality

    alpha*(Q, p) = 1 - max_{H ⊆ V} [ Q(all drafts ∈ H) - p(H) ]
                 = min_{H ⊆ V} [ (1 - Q(all drafts ∈ H)) + p(H) ]          (1)

(Hu et al., "Towards Optimal Multi-draft Speculative Decoding", ICLR 2025,
arXiv 2502.18779).  The second form is the one computed: every 1 - Q(...) is
built from the q-mass of a complement (a suffix sum), never as a difference.

* ``iid`` and ``wor``: the maximiser of (1) is a prefix H_n of the tokens
  sorted by p(y)/q(y) ascending, q = 0 tokens last (Hu et al.), so alpha* is a
  minimum over the V + 1 prefixes.  ``iid``: Q(all ∈ H) = q(H)^k.  ``wor``:
  Q(all ∈ H) for all prefixes at once from the exponential race (a
  one-dimensional integral, see :func:`_wor_miss`), to ~1e-15; in closed
  form for k = 2.
* ``hub`` (SpecHub, arXiv 2411.05289) and ``greedy`` (Hu et al.): closed forms.
* ``topk``: Q is a point mass on the draft set T, so (1) is attained at H = T: alpha* = p(T).

The conventions of the laws (ties, padding, one-hot q) are those of
:mod:`multidraft.schemes.draft_laws`; the tests check every law against the
linear program of :mod:`multidraft.theory.lp` and against a brute-force
minimum over all 2^V sets H.

Cost: O(V log V) for the sort; ``wor`` adds O(V k) per quadrature node, with
~40-90 nodes for softmax-like q (0.4 s at V = 128,000, k = 8 on two cores).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg.lapack import dtbtrs
from scipy.special import gammaincc

from multidraft.schemes.draft_laws import LAWS, greedy_fixed_tokens, hub_token, top_k_tokens
from multidraft.validation import as_pair, check_k

#: Step of the trapezoidal rule in s = log t: h = min(0.2, 0.55 / sqrt(k)).  The
#: integrand is entire in s and decays at both ends, so the error falls like
#: exp(-2 pi d / h) times the integrand's size at distance d off the real axis,
#: which grows like sec(d)^k; balancing the two gives h ~ 1/sqrt(k).  With this
#: step the error is at the float64 rounding floor (~1e-15): checked against an
#: exact subset dynamic programme (V <= 11, k <= 12) and against h / 2 (V = 300,
#: k <= 64).  The step 0.25 would already cost 1e-11 at k = 8.
_STEP_SMALL_K = 0.2
_STEP_SCALE = 0.55

#: Neglected tails of the race integral are bounded by this (absolute).
_TAIL = 1e-17

#: Elements of one [nodes, V + 1] work array: a few MB, so V = 128,000 runs one
#: node at a time and small V stacks many nodes per LAPACK call.
_CHUNK_ELEMENTS = 1 << 17


def optimal_acceptance(law: str, p, q, k: int) -> float:
    """alpha*(Q, p) for the draft law ``law`` in {"iid", "wor", "hub", "greedy"} built from q.

    ``p``, ``q``: target and draft distributions, 1-D, same length V (zeros
    allowed); ``k``: number of drafts (``hub`` needs k = 2, ``greedy`` k <= V).
    The draft-law conventions are those of :mod:`multidraft.schemes.draft_laws`.
    Raises ``ValueError`` on bad input.
    """
    p, q = as_pair(p, q)
    if law not in _SOLVERS:
        raise ValueError(f"unknown draft law {law!r}; expected one of {', '.join(LAWS)}")
    check_k(k, law, 2 if law == "hub" else 1, 2 if law == "hub" else None)
    if law == "greedy" and k > q.size:
        raise ValueError(f"greedy drafts need k <= V, got k = {k} and V = {q.size}")
    return _SOLVERS[law](p, q, k)


# --- iid and wor: a minimum over the prefixes of the p/q order --------------------------------


def _prefix_order(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Token indices sorted by p/q ascending; q = 0 tokens (ratio +inf) last."""
    ratio = np.divide(p, q, out=np.full(q.size, np.inf), where=q > 0)
    return np.argsort(ratio, kind="stable")


def _prefix_masses(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q sorted [V], P [V+1], C [V+1]): P[n] = p(H_n), C[n] = q(V minus H_n) as a suffix sum."""
    order = _prefix_order(p, q)
    q_sorted = q[order]
    complement_q = _prefix_sums(q_sorted[::-1])[::-1]
    return q_sorted, _prefix_sums(p[order]), complement_q


def _prefix_sums(x: np.ndarray) -> np.ndarray:
    """[0, x_0, x_0 + x_1, ...], shape [V+1]."""
    return np.concatenate([[0.0], np.cumsum(x)])


def _min_over_prefixes(miss: np.ndarray, prefix_p: np.ndarray) -> float:
    """min_n [ (1 - Q(all ∈ H_n)) + p(H_n) ], capped at 1 (the value of H = ∅)."""
    return float(min(1.0, np.min(np.clip(miss, 0.0, 1.0) + prefix_p)))


def _iid(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """Q(all ∈ H) = q(H)^k, so 1 - Q = -expm1(k log q(H)), log q(H) = log1p(-C) when C <= 1/2."""
    q_sorted, prefix_p, complement_q = _prefix_masses(p, q)
    with np.errstate(divide="ignore"):  # log 0 = -inf for the empty prefix: 1 - 0^k = 1
        log_inside = np.where(
            complement_q <= 0.5, np.log1p(-np.minimum(complement_q, 0.5)), np.log(_prefix_sums(q_sorted))
        )
    return _min_over_prefixes(-np.expm1(k * log_inside), prefix_p)


def _wor(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """Draws without replacement; padding when q has fewer than k support tokens."""
    if k == 1:
        return _iid(p, q, 1)
    support = q > 0
    if np.count_nonzero(support) < k:  # the drafts are the whole support: Q(all ∈ H) = [H ⊇ supp q]
        return float(min(1.0, p[support].sum()))
    q_sorted, prefix_p, complement_q = _prefix_masses(p, q)
    miss = _wor_pair_miss(q_sorted, complement_q) if k == 2 else _wor_miss(q_sorted, complement_q, k)
    return _min_over_prefixes(miss, prefix_p)


def _wor_pair_miss(q_sorted: np.ndarray, complement_q: np.ndarray) -> np.ndarray:
    """1 - Q_wor(both draws ∈ H_n) for k = 2 in closed form, shape [V+1].

    The first draw leaves H_n with probability C_n / S (S = sum q), or it is
    some i ∈ H_n and the second leaves with probability C_n / (S - q_i):

        1 - Q_wor(H_n) = (C_n / S) (1 + sum_{i ∈ H_n} q_i / (S - q_i)),

    S - q_i taken as the sum of the other entries for the one token (if any)
    with q_i > S/2, where the subtraction would cancel.
    """
    total = complement_q[0]
    others = total - q_sorted  # [V]
    big = int(np.argmax(q_sorted))
    if q_sorted[big] > total / 2:
        others[big] = np.delete(q_sorted, big).sum()
    return complement_q / total * (1.0 + _prefix_sums(q_sorted / others))


# --- wor: the exponential race ------------------------------------------------------------------


def _wor_miss(q_sorted: np.ndarray, complement_q: np.ndarray, k: int) -> np.ndarray:
    """1 - Q_wor(first k draws ∈ H_n) for every prefix n = 0..V, shape [V+1].

    Exponential race: drawing without replacement from q is ordering the
    tokens by independent arrival times T_y ~ Exp(q_y).  With C_n = q(V minus H_n)
    and N_n(t) the number of tokens of H_n arrived by time t,

        1 - Q_wor(H_n) = P(fewer than k tokens of H_n arrive before the first of
                           its complement) = ∫_0^∞ C_n e^{-C_n t} F_n(t) dt,
        F_n(t) = P(N_n(t) <= k-1).

    To make the integrand vanish at both ends of s = log t we subtract the same
    race against a Poisson clock of rate lam (psi(t) = P(Poisson(lam t) <= k-1)),
    whose value is known: ∫ C e^{-Ct} psi dt = 1 - (lam / (lam + C))^k, so

        1 - Q_wor(H_n) = 1 - (lam/(lam+C_n))^k + ∫ C_n t e^{-C_n t} (F_n - psi) ds.

    lam = q-mass outside the top k-1 tokens: F_V(t) (fewer than k arrivals in
    all of V) decays like e^{-lam t}, so psi dies out where the F_n do.
    The integral is a trapezoidal rule in s, spectrally accurate because the
    integrand is entire in s.  Its small-t end is cut where |F - psi| <= t^k/k!
    makes the rest below ``_TAIL``; its large-t end adaptively, where
    F_V(t) + psi(t) <= ``_TAIL`` (the tail beyond t is at most
    max(e^{-C_n t} F_n(t), psi(t)) <= F_V(t) + psi(t), F_n decreasing in t).
    That point is reached by s = 800 at the latest: there every positive
    float64 mass has q t > e^56, so F_V = psi = 0 exactly (q has >= k support tokens).
    """
    lam = np.sort(q_sorted)[: q_sorted.size - (k - 1)].sum()
    with np.errstate(divide="ignore"):  # lam << C rounds the ratio to 1: log1p(-1) = -inf, miss = 1
        miss = -np.expm1(k * np.log1p(-complement_q / (lam + complement_q)))  # 1 - (lam / (lam + C))^k
    step = min(_STEP_SMALL_K, _STEP_SCALE / math.sqrt(k))
    s_first = (math.lgamma(k + 1) + math.log(_TAIL)) / (k + 1)
    nodes = max(1, _CHUNK_ELEMENTS // complement_q.size)
    start, integral = 0, np.zeros_like(miss)
    while True:
        s = s_first + step * np.arange(start, start + nodes)  # [m]
        exponent, scale = _split_time(s)
        below = _race_cdf(q_sorted, k, exponent, scale)  # [m, V+1]
        psi = gammaincc(k, _times(lam, exponent, scale))  # [m]
        rate_time = np.minimum(_times(complement_q[None, :], exponent[:, None], scale[:, None]), 1e300)
        integral += step * np.sum(rate_time * np.exp(-rate_time) * (below - psi[:, None]), axis=0)
        if below[-1, -1] + psi[-1] <= _TAIL:
            return miss + integral
        start += nodes


def _split_time(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """t = e^s as (E, tau) with t = 2^E tau, tau in [1, 2): x t never overflows on the way."""
    exponent = np.floor(s / math.log(2.0))
    return exponent.astype(np.int64), np.exp(s - exponent * math.log(2.0))


def _times(x, exponent, scale):
    """x * t computed as ldexp(x, E) * tau (exact scaling; overflow -> inf is harmless here)."""
    with np.errstate(over="ignore"):
        return np.ldexp(x, exponent) * scale


def _race_cdf(q_sorted: np.ndarray, k: int, exponent: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """F[i, n] = P(N_n(t_i) <= k-1) for the prefixes n = 0..V, shape [m, V+1].

    Phi_j[n] = P(N_n <= j) obeys, with a_n = e^{-q_n t} and b_n = 1 - a_n,

        Phi_j[n] = a_n Phi_j[n-1] + b_n Phi_{j-1}[n-1],   Phi_j[0] = 1,  Phi_{-1} = 0,

    a recursion with non-negative terms only (each step is a convex
    combination, so errors stay at n ulps relative).  For each j it is a unit
    lower-bidiagonal solve, done by LAPACK ``dtbtrs`` for all nodes at once
    (the nodes are decoupled blocks of one banded system).
    """
    m, width = scale.size, q_sorted.size + 1
    rate_time = _times(q_sorted[None, :], exponent[:, None], scale[:, None])  # [m, V]
    stay = np.exp(-rate_time)  # a: not yet arrived
    arrive = -np.expm1(-rate_time)  # b: arrived, without cancellation
    sub_diagonal = np.zeros((m, width))  # -a couples prefix n to n-1; 0 couples one node to the next
    sub_diagonal[:, :-1] = -stay
    band = np.zeros((2, m * width), order="F")  # LAPACK band storage; row 0 (the unit diagonal) is not read
    band[1] = sub_diagonal.ravel()
    below = np.empty((m, width))
    below[:, 0] = 1.0
    np.cumprod(stay, axis=1, out=below[:, 1:])  # Phi_0 = P(nothing arrived)
    spare = np.empty_like(below)
    for _ in range(1, k):
        spare[:, 0] = 1.0
        np.multiply(arrive, below[:, :-1], out=spare[:, 1:])
        solved, _ = dtbtrs(band, spare.reshape(-1, 1), uplo="L", diag="U", overwrite_b=1)  # unit: cannot fail
        below, spare = solved.reshape(m, width), below
    return below


# --- hub and greedy: closed forms -----------------------------------------------------------


def _fixed_plus_one(p: np.ndarray, q: np.ndarray, fixed: np.ndarray) -> float:
    """alpha* when the drafts are the tokens ``fixed`` plus one x ~ q' = q restricted to V minus fixed.

    Q(all ∈ H) = [fixed ⊆ H] q'(H), so the best H is fixed ∪ {x : q'(x) > p(x)} and
    alpha* = p(fixed) + sum_{x not fixed} min(p(x), q'(x)), capped at 1.  If
    q(V minus fixed) = 0 the drafts are exactly ``fixed`` and alpha* = p(fixed).
    """
    free = np.ones(q.size, dtype=bool)
    free[fixed] = False
    rest = q[free].sum()
    accepted = p[fixed].sum()
    if rest > 0:
        accepted += np.minimum(p[free], q[free] / rest).sum()
    return float(min(1.0, accepted))


def _hub(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """SpecHub (k = 2): the draft *set* is {a, x}, x ~ q restricted to V minus {a}, a = argmax q.

    Q(i, a) + Q(a, i) = q_i + q_a q_i / (1 - q_a) = q_i / (1 - q_a), hence
    alpha* = 1 - max(0, sum_{i != a} (q_i/(1-q_a) - p_i)^+ - p_a) = min(1, p_a + sum min(p_i, q_i/(1-q_a))).
    One-hot q gives the pair (a, a) and alpha* = p_a.
    """
    return _fixed_plus_one(p, q, np.array([hub_token(q)]))


def _greedy(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """Hu et al.: the top k-1 tokens T of q are fixed drafts, x_k ~ q restricted to V minus T."""
    return _fixed_plus_one(p, q, greedy_fixed_tokens(q, k))


def _topk(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """Deterministic drafts T (the top k of q): alpha* = p(T)."""
    return float(p[np.unique(top_k_tokens(q, k))].sum())


_SOLVERS = {"iid": _iid, "wor": _wor, "hub": _hub, "greedy": _greedy, "topk": _topk}
