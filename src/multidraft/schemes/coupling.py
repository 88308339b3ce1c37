"""The optimal coupling of a draft law and a target by linear program (HiGHS): what ``otm`` verifies with.

The mathematics (the max-flow between draft sets and tokens, and how the
coupling is completed) is stated in :mod:`multidraft.theory.lp`, which
computes alpha* with it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from multidraft.validation import as_distribution

#: Refuse couplings with more than this many entries (N tuples x V tokens).
MAX_ENTRIES = 2_000_000

_HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def optimal_coupling(tuples: np.ndarray, probs: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray]:
    """The optimal coupling of a draft law and p: ``(alpha*, pi [N, V])``.

    ``tuples`` [N, k] int token ids in [0, V), ``probs`` [N] their probabilities
    (summing to 1), ``p`` [V] the target.  ``pi[x, y]`` is the probability of
    drafts x and output y: rows sum to ``probs``, columns to ``p``, and
    alpha* = sum_x sum_{y ∈ set(x)} pi[x, y] is the largest possible.
    """
    p = as_distribution(p, "p")
    probs = as_distribution(probs, "probs")
    tuples = np.asarray(tuples)
    if tuples.ndim != 2 or tuples.shape[0] != probs.size or not np.issubdtype(tuples.dtype, np.integer):
        raise ValueError(f"tuples must be an integer array [N, k] with N = {probs.size}, got {tuples.shape} {tuples.dtype}")
    if tuples.size and (tuples.min() < 0 or tuples.max() >= p.size):
        raise ValueError(f"tuple entries must be token ids in [0, {p.size})")
    check_size(probs.size, p.size)
    sets, set_of = _draft_sets(tuples)  # [n_sets, k] (-1 padded), [N]
    set_mass = np.bincount(set_of, weights=probs, minlength=sets.shape[0])  # Q(S)
    flow = _max_flow(sets, set_mass, p)  # [n_sets, k], flow[S, i] = f(S, sets[S, i])
    return _coupling(probs, p, sets, set_of, set_mass, flow)


def check_size(n_tuples: int, vocab: int) -> None:
    if n_tuples * vocab > MAX_ENTRIES:
        raise ValueError(
            f"LP reference too large: {n_tuples} support tuples x V = {vocab} exceeds {MAX_ENTRIES}; use optimal_acceptance"
        )


def _draft_sets(tuples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct draft sets as sorted rows padded with -1 ([n_sets, k]) and each tuple's set index ([N])."""
    rows = np.sort(tuples.astype(np.int64), axis=1)
    repeated = np.zeros_like(rows, dtype=bool)
    repeated[:, 1:] = rows[:, 1:] == rows[:, :-1]
    rows[repeated] = -1
    rows = np.sort(rows, axis=1)  # a canonical form of the set
    sets, set_of = np.unique(rows, axis=0, return_inverse=True)
    return sets, set_of.reshape(-1)


def _max_flow(sets: np.ndarray, set_mass: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The set-to-token max-flow by HiGHS, repaired to be exactly feasible; shape of ``sets``."""
    n_sets, vocab = sets.shape[0], p.size
    set_index, slot = np.nonzero(sets >= 0)  # one variable per (set, member token)
    token = sets[set_index, slot]
    n_vars = set_index.size
    rows = np.concatenate([set_index, n_sets + token])
    cols = np.concatenate([np.arange(n_vars), np.arange(n_vars)])
    a_ub = coo_matrix((np.ones(2 * n_vars), (rows, cols)), shape=(n_sets + vocab, n_vars)).tocsr()
    b_ub = np.concatenate([set_mass, p])
    result = linprog(-np.ones(n_vars), A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs", options=_HIGHS_OPTIONS)
    if result.status != 0:
        raise RuntimeError(f"HiGHS failed on the alpha* LP: {result.message}")
    values = np.clip(result.x, 0.0, None)
    values *= _shrink(np.bincount(set_index, weights=values, minlength=n_sets), set_mass)[set_index]
    values *= _shrink(np.bincount(token, weights=values, minlength=vocab), p)[token]
    flow = np.zeros(sets.shape)
    flow[set_index, slot] = values
    return flow


def _shrink(total: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Factors <= 1 that bring each ``total`` down to its ``cap``."""
    return np.where(total > cap, cap / np.where(total > 0, total, 1.0), 1.0)


def _coupling(
    probs: np.ndarray, p: np.ndarray, sets: np.ndarray, set_of: np.ndarray, set_mass: np.ndarray, flow: np.ndarray
) -> tuple[float, np.ndarray]:
    """Split each set's flow over its tuples in proportion to Q(x); fill the rest with a product law.

    Returns (the acceptance of the coupling, the coupling [N, V]).
    """
    n_tuples, vocab = probs.size, p.size
    share = np.divide(probs, set_mass[set_of], out=np.zeros(n_tuples), where=set_mass[set_of] > 0)  # Q(x)/Q(S)
    accepted = np.zeros((n_tuples, vocab))
    member = sets[set_of]  # [N, k], -1 padded
    rows, slots = np.nonzero(member >= 0)
    accepted[rows, member[rows, slots]] = share[rows] * flow[set_of[rows], slots]
    row_rest = np.clip(probs - accepted.sum(axis=1), 0.0, None)
    col_rest = np.clip(p - accepted.sum(axis=0), 0.0, None)
    col_total = col_rest.sum()
    coupling = accepted
    if col_total > 0:
        coupling = accepted + np.outer(row_rest, col_rest / col_total)
    in_set = np.zeros((n_tuples, vocab), dtype=bool)
    in_set[rows, member[rows, slots]] = True
    return float(coupling[in_set].sum()), coupling
