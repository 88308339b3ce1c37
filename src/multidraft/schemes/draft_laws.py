"""Exact draft laws Q(x_1..x_k) by enumeration of their support (small V only).

The laws and their conventions (DESIGN §1):

* ``iid``    k independent draws from q: Q(x) = prod_i q(x_i).
* ``wor``    k draws without replacement: Q(x) = prod_i q(x_i) / Z_i with
  Z_i = sum_{y not in x_<i} q(y) (a sum of the remaining entries, never
  ``1 - sum q(x_<i)``).  If q has s < k support tokens, the drafts after the
  s-th repeat x_1.
* ``hub``    (k = 2, SpecHub, arXiv 2411.05289): a = argmax q (first among
  ties); Q(i, a) = q(i), Q(a, i) = q(a) q(i) / (1 - q(a)) for i != a, with
  1 - q(a) = sum_{i != a} q(i).  One-hot q gives (a, a) with probability 1.
* ``greedy`` (Hu et al., ICLR 2025): the top k-1 tokens T of q (q descending,
  ties by lower index) are fixed drafts x_1..x_{k-1}; x_k ~ q restricted to
  V \\ T; if q(V \\ T) = 0 then x_k = x_1.
* ``topk``   (the engines' baseline): the k most likely tokens of q (q
  descending, ties by lower index), with probability 1; if k > V the drafts
  after the V-th repeat x_1.

``enumerate_law`` returns the support as ``(tuples [N, k] int64, probs [N])``.
The samplers in :mod:`multidraft.schemes` draw from these same laws; the
tests check that with chi-square tests.
"""

from __future__ import annotations

import itertools

import numpy as np

from multidraft.validation import as_distribution, check_k

LAWS = ("iid", "wor", "hub", "greedy", "topk")

#: Enumeration refuses laws with more support tuples than this.
MAX_TUPLES = 2_000_000


def hub_token(q: np.ndarray) -> int:
    """a = argmax q, the first index among ties."""
    return int(np.argmax(q))


def greedy_fixed_tokens(q: np.ndarray, k: int) -> np.ndarray:
    """The top k-1 tokens of q, q descending, ties broken by lower index first."""
    order = np.lexsort((np.arange(q.size), -q))  # primary key -q, then index
    return order[: k - 1]


def top_k_tokens(q: np.ndarray, k: int) -> np.ndarray:
    """The ``topk`` draft tuple [k]: q descending, ties by lower index, x_1 repeated beyond V."""
    order = np.lexsort((np.arange(q.size), -q))[:k]
    return np.concatenate([order, np.full(k - order.size, order[0])])


def _check_law(law: str, q: np.ndarray, k: int) -> None:
    if law not in LAWS:
        raise ValueError(f"unknown draft law {law!r}; expected one of {', '.join(LAWS)}")
    check_k(k, f"law {law}", 2 if law == "hub" else 1, 2 if law == "hub" else None)
    if law == "greedy" and k > q.size:
        raise ValueError(f"greedy drafts need k <= V, got k = {k} and V = {q.size}")


def _iid(q: np.ndarray, k: int):
    support = np.flatnonzero(q > 0)
    tuples = np.array(list(itertools.product(support, repeat=k)), dtype=np.int64).reshape(-1, k)
    probs = np.prod(q[tuples], axis=1)
    return tuples, probs


def _wor(q: np.ndarray, k: int):
    support = np.flatnonzero(q > 0)
    drawn = min(k, support.size)
    rows, probs = [], []
    for prefix in itertools.permutations(support, drawn):
        prob, removed = 1.0, np.zeros(q.size, dtype=bool)
        for token in prefix:
            prob *= q[token] / q[~removed].sum()
            removed[token] = True
        rows.append(list(prefix) + [prefix[0]] * (k - drawn))
        probs.append(prob)
    return np.array(rows, dtype=np.int64).reshape(-1, k), np.array(probs)


def _hub(q: np.ndarray, k: int):
    a = hub_token(q)
    others = np.flatnonzero((q > 0) & (np.arange(q.size) != a))
    if others.size == 0:  # one-hot q: the second draft repeats the hub
        return np.array([[a, a]], dtype=np.int64), np.array([1.0])
    rest = q[others].sum()  # 1 - q(a), without cancellation
    tuples = np.concatenate([np.stack([others, np.full_like(others, a)], 1), np.stack([np.full_like(others, a), others], 1)])
    probs = np.concatenate([q[others], q[a] * q[others] / rest])
    return tuples, probs


def _greedy(q: np.ndarray, k: int):
    fixed = greedy_fixed_tokens(q, k)
    free = np.ones(q.size, dtype=bool)
    free[fixed] = False
    last = np.flatnonzero(free & (q > 0))
    if last.size == 0:
        return np.array([list(fixed) + [fixed[0]]], dtype=np.int64), np.array([1.0])
    tuples = np.concatenate([np.tile(fixed, (last.size, 1)), last[:, None]], axis=1).astype(np.int64)
    return tuples, q[last] / q[last].sum()


def _topk(q: np.ndarray, k: int):
    return top_k_tokens(q, k).reshape(1, k).astype(np.int64), np.array([1.0])


def support_size(law: str, q: np.ndarray, k: int) -> int:
    """Number of tuples ``enumerate_law`` would return (an upper bound for wor)."""
    s = int(np.count_nonzero(q > 0))
    if law == "iid":
        return s**k
    if law == "wor":
        return int(np.prod(np.arange(s, s - min(k, s), -1, dtype=np.float64)))
    return {"hub": 2 * s, "greedy": s, "topk": 1}[law]


def enumerate_law(law: str, q, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The support of a draft law: ``(tuples [N, k] int64, probs [N] float64)``.

    Only tuples of positive probability are listed; ``probs`` sums to 1.
    Raises ``ValueError`` for bad input or a support larger than ``MAX_TUPLES``.
    """
    q = as_distribution(q, "q")
    _check_law(law, q, k)
    if support_size(law, q, k) > MAX_TUPLES:
        raise ValueError(f"the {law} law with k = {k} over this q has more than {MAX_TUPLES} tuples; too large to enumerate")
    return {"iid": _iid, "wor": _wor, "hub": _hub, "greedy": _greedy, "topk": _topk}[law](q, k)
