"""The linear-program reference for alpha* (small V only).

For a draft law Q over k-tuples x and a target p, the optimal acceptance rate
is the optimal transport problem with membership cost (SpecTr, DESIGN §1):

    alpha*(Q, p) = max_pi  sum_x sum_{y ∈ set(x)} pi(x, y)
                   s.t.    sum_y pi(x, y) = Q(x),  sum_x pi(x, y) = p(y),  pi >= 0.

Only the accepted part matters, and it depends on x only through its set
S = set(x), so we solve the equivalent bipartite max-flow between the draft
*sets* and the tokens,

    max sum_{S, y ∈ S} f(S, y)  s.t.  sum_{y ∈ S} f(S, y) <= Q(S),  sum_{S ∋ y} f(S, y) <= p(y),  f >= 0,

with ``scipy.optimize.linprog`` (HiGHS, sparse constraints:
:func:`multidraft.schemes.coupling.optimal_coupling`, which the ``otm`` scheme
verifies with), then split each
set's flow over its tuples in proportion to Q(x) and complete the rejected
mass with the product of the row and column residuals.  (An optimal flow
leaves no set with residual mass next to a member token with residual mass,
so the completion adds no acceptance.)

Accuracy: HiGHS returns a vertex to its tolerances (1e-10 here); the flow is
then clipped at 0 and scaled down where a constraint is exceeded, so it is
exactly feasible in exact arithmetic and alpha* is within about 1e-10 of the
optimum.  The coupling's rows sum to ``probs`` and its columns to ``p`` to
within a few ulps plus |sum(probs) - sum(p)|.
"""

from __future__ import annotations

from multidraft.schemes.coupling import MAX_ENTRIES, check_size, optimal_coupling
from multidraft.schemes.draft_laws import LAWS, enumerate_law, support_size
from multidraft.validation import as_pair

__all__ = ["MAX_ENTRIES", "optimal_acceptance_lp", "optimal_coupling"]


def optimal_acceptance_lp(law: str, p, q, k: int) -> float:
    """alpha* of the draft law ``law`` built from q (see :mod:`multidraft.schemes.draft_laws`), by LP.

    Raises ``ValueError`` on bad input or when (support tuples) x V exceeds ``MAX_ENTRIES``.
    """
    p, q = as_pair(p, q)
    if law in LAWS:  # refuse a huge law before enumerating it; enumerate_law validates law and k
        check_size(support_size(law, q, k), q.size)
    tuples, probs = enumerate_law(law, q, k)
    return optimal_coupling(tuples, probs, p)[0]
