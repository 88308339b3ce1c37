"""The optimal lossless tree verifier, as a linear program (small vocabularies and trees only).

Setting (docs/design.md, "The optimal tree verifier").  A tree shape (uniform or a per-node
template) and a draft law grow a random tree T from the root: the node at context z (the tokens
from the root to it) draws its drafts from the law at q(. | z), repeated drafts become one child,
and the subtrees of distinct children are drawn independently given their tokens.  A verifier
sees T and emits u = (z, y): the tokens of a path z of T from the root (the accepted drafts) and
one more token y.  It is **lossless** iff u, continued by the target, has the target's law.  The
best lossless verifier maximises E|u| = E[accepted + 1].

The LP's variables are the joint law of (T, u); its constraints the draft marginal of T, the
target law of the continued u, and "z is a path of T".  Three facts make it small.

1. *Lossless emitted laws.*  Let X(z) = P(the accepted path extends z) (X(()) = 1) and
   x(z) = X(z) - sum_y X(z y) the law of the accepted path.  Some choice of the last token makes
   the continued u the target's sequence iff

       X(z y) <= p(y | z) X(z)   for every path z and token y.                                (1)

   (Let M(u) be the probability of emitting u and R(z) the target's mass that passes the prefix z
   without being emitted, R(()) = 1.  The continued u is the target's sequence iff
   M(z y) + R(z y) = R(z) p(y | z) with M, R >= 0 and nothing passes length D + 1.  The mass R(z)
   is emitted later as sequences strictly extending z, whose accepted paths extend z, so
   R(z) = X(z), and M(z y) = p(y | z) X(z) - X(z y) >= 0 is (1).  Conversely, given X with (1),
   emitting y with probability M(z y) after accepting z satisfies the flow.)  So only x
   couples to T, and the objective is E|u| = sum_z (|z| + 1) x(z) = sum_z X(z).

2. *Which path laws a random tree admits.*  A coupling of T with a path Z such that Z is a path
   of T exists iff (Artstein's theorem for finite random sets; max-flow min-cut)

       x(S) <= C(S) = P(T has a path in S)   for every set S of paths,   x(all) = 1,           (2)

   the base polytope of the coverage function C, which is submodular.  Its vertices are the
   *priority rules*: order the paths z_1, z_2, .. and accept the first one present in T, so that
   x(z_i) = C({z_1..z_i}) - C({z_1..z_{i-1}}) (Edmonds' greedy algorithm), and maximising any
   linear function over (2) is the greedy order by its coefficients.

3. *C by a recursion down the template.*  T avoids S below the node at context z iff z is not in
   S and every child subtree avoids S, and the children are independent given the node's drafts:

       A_S(z) = [z not in S] sum_x Q_z(x) prod_{c in set(x)} A_S(z c),   C(S) = 1 - A_S(()).

So the optimum is  max sum_z X(z)  over X >= 0 with (1) and x in (2).  It is solved by column
generation (Dantzig-Wolfe over the vertices of (2)): the master LP holds X and weights
lambda >= 0 on the priority rules found so far, with sum_r lambda_r x_r(z) = x(z) for every path
z (these rows imply sum lambda = 1); a rule is priced by the greedy order of the duals pi of
those rows and added while pi . x_r > 0.  Any pi gives the Lagrangian upper bound

    max_X [sum_z X(z) - pi . x]  (over (1); a dynamic programme down the paths)  +  max_r pi . x_r,

which is tracked at the master's duals and at a smoothed point (Wentges' smoothing: the best point
so far mixed with the master's), and the loop stops when no rule improves the master or the bound
meets it.  All in float64 with HiGHS (``scipy.optimize.linprog``, sparse constraints).

What it bounds: every lossless verifier that sees the drafted tree, whatever else it reads (on-path
or off-path probabilities, the whole tables: the LP is *information-agnostic*, as in Thomas and
Pal, arXiv 2602.16961), including every verifier of :mod:`multidraft.verifiers`.  At depth 1 it is
1 + alpha* (Hu et al., arXiv 2502.18779; :func:`multidraft.theory.optimal_acceptance`); on chains it
is block verification's expected tokens (Sun et al., arXiv 2403.10444: optimal among verifiers
reading the on-path probabilities; by Thomas and Pal among all).  The tests check both, and that
every implemented verifier is at most the optimum.

Size: the variables and rows grow with the number of paths that can occur (at most
sum_{d <= D} V^d), not with the number of trees; a pricing is one pass of the recursion,
vectorised over the prefix sets of the order.  Chains converge slowest (hundreds of rules at
V = 4, depth 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from multidraft.schemes.draft_laws import enumerate_law

#: Refuse problems with more possible paths (sum_{d <= D} V^d) than this.
MAX_PATHS = 2_000
#: Column generation stops when no priority rule improves the master by more than this.
GAIN_TOLERANCE = 1e-12
MAX_ROUNDS = 5_000
#: Weight of the best dual point so far in the prices of the next rule (Wentges' smoothing).
SMOOTHING = 0.5

_HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


@dataclass(frozen=True)
class TreeOptimum:
    """The optimum of the tree-verifier LP.

    ``tokens``: max E[accepted + 1]; ``bound``: the Lagrangian upper bound at termination (equal up
    to the solver's tolerance); ``paths``: the optimal law of the accepted path (context -> x(z));
    ``emitted``: the optimal law of the emitted sequence (u -> M(u), positive entries only);
    ``prices``: the duals beta(z y) >= 0 of (1) (positive entries only), with which
    E_T[max over the paths w of T of sum_{z <= w} (1 - beta(z) + sum_y p(y | z) beta(z y))] is the optimum
    (docs/design.md); ``rules``: the number of priority rules generated.
    """

    tokens: float
    bound: float
    paths: dict[tuple[int, ...], float]
    emitted: dict[tuple[int, ...], float]
    prices: dict[tuple[int, ...], float]
    rules: int


class _TreeLaw:
    """The reachable (context, template node) states, their draft laws grouped by child set, and C(S)."""

    def __init__(self, pairs: Mapping, law: str, shape):
        template = _Template(shape)
        self.states: list[tuple[tuple[int, ...], int]] = [((), 0)]
        index = {((), 0): 0}
        self.groups: list[list[tuple[float, list[int]]]] = []  # per state: (probability, child states)
        position = 0
        while position < len(self.states):
            context, node = self.states[position]
            k = template.drafts(node)
            by_children: dict[tuple[int, ...], float] = {}
            if k > 0:
                tuples, probs = enumerate_law(law, _law(pairs, context, 1), k)
                for drafts, prob in zip(tuples.tolist(), probs.tolist()):
                    kids, seen = [], set()
                    for draft_index, token in enumerate(drafts):
                        if token in seen:
                            continue
                        seen.add(token)
                        state = (context + (token,), template.child(node, draft_index))
                        if state not in index:
                            index[state] = len(self.states)
                            self.states.append(state)
                        kids.append(index[state])
                    key = tuple(sorted(kids))
                    by_children[key] = by_children.get(key, 0.0) + prob
            self.groups.append([(prob, list(kids)) for kids, prob in by_children.items()])
            position += 1
        contexts = sorted({context for context, _ in self.states}, key=lambda c: (len(c), c))
        self.contexts = contexts  # every path that can occur, root first
        where = {c: i for i, c in enumerate(contexts)}
        self.context_of = np.array([where[c] for c, _ in self.states])  # [n_states]

    def rule(self, order: np.ndarray) -> np.ndarray:
        """x of the priority rule accepting the first present path of ``order`` (context indices), [n_paths].

        A[s, i] = P(the subtree at state s avoids the first i paths of the order), for i = 0..n at once.
        """
        n = len(self.contexts)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        outside = rank[self.context_of][:, None] >= np.arange(n + 1)[None, :]  # [n_states, n + 1]
        avoid = np.empty((len(self.states), n + 1))
        for state in range(len(self.states) - 1, -1, -1):  # children come after their parent
            groups = self.groups[state]
            if groups:
                total = np.zeros(n + 1)
                for prob, kids in groups:
                    total += prob * np.prod(avoid[kids], axis=0)
            else:
                total = np.ones(n + 1)
            avoid[state] = np.where(outside[state], total, 0.0)
        root = avoid[0]  # [n + 1], root[0] = 1 (up to rounding), root[n] = 0
        x = np.zeros(n)
        x[order] = np.clip(root[:-1] - root[1:], 0.0, None)
        return x


class _Template:
    """Drafts per template node and the template node of each draft, for a parsed shape: per depth (a tuple
    of ints, template node = depth) or per node (an object with ``counts``, node ids breadth first, as
    :class:`multidraft.shapes.TreeTemplate`)."""

    def __init__(self, shape):
        self.counts = getattr(shape, "counts", None)
        self.uniform = None if self.counts is not None else tuple(int(k) for k in shape)
        self.depth = len(self.uniform) if self.counts is None else len(shape.levels)

    def drafts(self, node: int) -> int:
        counts = self.uniform if self.counts is None else self.counts
        return counts[node] if node < len(counts) else 0

    def child(self, node: int, index: int) -> int:
        return node + 1 if self.counts is None else 1 + sum(self.counts[:node]) + index


def _law(pairs: Mapping, context: tuple, which: int) -> np.ndarray:
    try:
        return np.asarray(pairs[context][which], dtype=np.float64)
    except KeyError:
        raise ValueError(f"the tables have no (p, q) for context {context}") from None


def optimal_tree_tokens(pairs: Mapping, law: str, shape) -> TreeOptimum:
    """The best E[accepted + 1] of any lossless verifier of trees drafted by ``law`` on ``shape`` (module docstring).

    ``pairs``: context (tuple of token ids after the root, length 0..D) -> (p, q), each a probability
    vector [V] (the target's and the draft's next-token laws there); ``law``: a draft law of
    :mod:`multidraft.schemes.draft_laws`; ``shape``: a parsed shape (:func:`multidraft.shapes.parse_shape`:
    drafts per depth, or a per-node template).  Raises ``ValueError`` on bad input or a problem too large
    for an LP.
    """
    depth = _Template(shape).depth
    vocab = _law(pairs, (), 0).size
    paths = sum(vocab**length for length in range(depth + 1))
    if paths > MAX_PATHS:
        raise ValueError(f"tree LP too large: V = {vocab} and depth {depth} allow {paths} paths (limit {MAX_PATHS})")
    tree_law = _TreeLaw(pairs, law, shape)
    problem = _Master(pairs, tree_law, vocab)
    depths = np.array([len(c) for c in tree_law.contexts])
    rules = [tree_law.rule(np.arange(len(tree_law.contexts)))]  # the root first: accept nothing
    bound, center = np.inf, None
    for _ in range(MAX_ROUNDS):
        value, prices, solution, shadow = problem.solve(rules)
        smoothed = prices if center is None else SMOOTHING * center + (1 - SMOOTHING) * prices
        added = 0
        for point in (prices, smoothed):
            for tie in (-depths, depths):  # equal prices broken towards deep paths, then towards short ones
                candidate = tree_law.rule(np.lexsort((tie, -point)))
                lagrangian = problem.lagrangian(point) + float(point @ candidate)
                if lagrangian < bound:
                    bound, center = lagrangian, point
                if float(prices @ candidate) > GAIN_TOLERANCE:
                    rules.append(candidate)
                    added += 1
        if not added or bound - value <= GAIN_TOLERANCE:
            break
    else:
        raise RuntimeError(f"the tree LP did not converge in {MAX_ROUNDS} rounds (gap {bound - value:g})")
    return problem.optimum(value, bound, solution, shadow)


class _Master:
    """The restricted master LP over X (the law of the accepted path, summed over each subtree) and the
    weights of the priority rules found so far (module docstring, (1') and (2))."""

    def __init__(self, pairs: Mapping, tree_law: _TreeLaw, vocab: int):
        self.pairs, self.tree_law, self.vocab = pairs, tree_law, vocab
        contexts = tree_law.contexts
        n = len(contexts)  # X(z) for z = contexts[1:]; X(()) = 1
        where = {c: i for i, c in enumerate(contexts)}
        parent = np.array([where[c[:-1]] if c else -1 for c in contexts])  # [n]
        step = np.array([float(_law(pairs, c[:-1], 0)[c[-1]]) if c else 1.0 for c in contexts])  # p(y | z) for z y
        kids = np.arange(1, n)
        # (1') X(z y) - p(y | z) X(z) <= 0, one row per path z y (X(()) = 1 moves to the right-hand side).
        rows = np.concatenate([kids - 1, (kids - 1)[parent[kids] > 0]])
        cols = np.concatenate([kids - 1, parent[kids][parent[kids] > 0] - 1])
        vals = np.concatenate([np.ones(n - 1), -step[kids][parent[kids] > 0]])
        self.a_ub = coo_matrix((vals, (rows, cols)), shape=(n - 1, n - 1)).tocsr()
        self.b_ub = np.where(parent[kids] == 0, step[kids], 0.0)
        # x(z) = X(z) - sum_y X(z y) = sum_r lambda_r x_r(z), one row per path z.
        self.coupling = (
            np.concatenate([kids, parent[kids]]),
            np.concatenate([kids - 1, kids - 1]),
            np.concatenate([np.ones(n - 1), -np.ones(n - 1)]),
        )
        self.b_eq = np.zeros(n)
        self.b_eq[0] = -1.0  # x(()) = 1 - sum_y X(y)
        self.n, self.step, self.parent = n, step, parent
        self.rules = np.zeros((n, 0))

    def solve(self, rules: list[np.ndarray]) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(max E[accepted + 1], duals of the coupling rows [n_paths], the solution, duals of (1) [n_paths - 1])."""
        n, fresh = self.n, rules[self.rules.shape[1] :]
        if fresh:
            self.rules = np.concatenate([self.rules, np.stack(fresh, axis=1)], axis=1)  # [n, n_rules]
        rule_rows, rule_cols = np.nonzero(self.rules)
        rows, cols, vals = self.coupling
        a_eq = coo_matrix(
            (
                np.concatenate([vals, -self.rules[rule_rows, rule_cols]]),
                (np.concatenate([rows, rule_rows]), np.concatenate([cols, n - 1 + rule_cols])),
            ),
            shape=(n, n - 1 + self.rules.shape[1]),
        ).tocsr()
        a_ub = coo_matrix(self.a_ub).copy()
        a_ub.resize((n - 1, n - 1 + self.rules.shape[1]))
        cost = np.concatenate([-np.ones(n - 1), np.zeros(self.rules.shape[1])])
        result = linprog(
            cost,
            A_ub=a_ub.tocsr(),
            b_ub=self.b_ub,
            A_eq=a_eq,
            b_eq=self.b_eq,
            bounds=(0, None),
            method="highs",
            options=_HIGHS_OPTIONS,
        )
        if result.status != 0:
            raise RuntimeError(f"HiGHS failed on the tree LP: {result.message}")
        # A rule column has cost 0 and entries -x_r in the coupling rows: reduced cost pi . x_r (minimisation).
        return 1.0 - float(result.fun), -result.eqlin.marginals, result.x, -result.ineqlin.marginals

    def lagrangian(self, prices: np.ndarray) -> float:
        """max over X of [sum_z X(z) - prices . x_X] subject to (1'): with max over rules of prices . x_r added,
        an upper bound on the optimum for any ``prices``.  x_X(z) = X(z) - sum_y X(z y), so X(z) has weight
        w(z) = 1 - prices[z] + prices[parent z], and the best X is a dynamic programme down the paths:
        value(z) = w(z) + sum_y p(y | z) max(0, value(z y))."""
        weight = 1.0 - prices + np.where(self.parent >= 0, prices[np.maximum(self.parent, 0)], 0.0)
        value = weight.copy()
        for i in range(self.n - 1, 0, -1):  # paths sorted by length: children before parents
            value[self.parent[i]] += self.step[i] * max(0.0, value[i])
        return float(value[0])

    def optimum(self, value: float, bound: float, solution: np.ndarray, shadow: np.ndarray) -> TreeOptimum:
        contexts, n = self.tree_law.contexts, self.n
        subtree = np.concatenate([[1.0], solution[: n - 1]])  # X(z)
        x = self.rules @ solution[n - 1 :]
        paths = {c: float(x[i]) for i, c in enumerate(contexts) if x[i] > 0}
        emitted = {}
        where = {c: i for i, c in enumerate(contexts)}
        for i, z in enumerate(contexts):
            p = _law(self.pairs, z, 0)
            for y in range(self.vocab):
                below = subtree[where[z + (y,)]] if z + (y,) in where else 0.0
                mass = p[y] * subtree[i] - below
                if mass > 0:
                    emitted[z + (y,)] = float(mass)
        prices = {c: float(b) for c, b in zip(contexts[1:], shadow) if b > 0}
        return TreeOptimum(value, bound, paths, emitted, prices, self.rules.shape[1])
