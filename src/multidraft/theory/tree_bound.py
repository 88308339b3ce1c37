"""An upper bound on every lossless verifier, computable on one drafted tree at the real vocabulary.

The optimal tree verifier (:mod:`multidraft.theory.tree_lp`, docs/design.md) maximises sum_z X(z) over the
laws X of the accepted path that a drafted tree admits, subject to X(z y) <= p(y | z) X(z).  Pricing those
constraints with any beta >= 0 (Lagrangian duality) gives

    optimum <= E_T[ max over the paths w of T of G(w) ],   G(w) = sum_{z <= w} c(z),
    c(z) = 1 - beta(z) + sum_y p(y | z) beta(z y)                                              (B)

(beta(()) = 0; z <= w: the prefixes of w, the root included), with equality at the LP's own duals.  The
right-hand side is an expectation over the drafted tree of a quantity of that tree alone, so averaging it
over the trees a decoder drafts estimates a bound on the expected tokens per step of *every* lossless
verifier of the same draft law, as the verifiers' own exact expectations are averaged.

It needs beta(z y) for every token y at every node z of the tree, known at the tree: here

    beta(z y) = theta_h [y in H_z],

H_z the set attaining alpha* at the node (the first n tokens by p/q ascending, q = 0 last, minimising
1 - Q_z(all drafts in H) + p_z(H): Hu et al., arXiv 2502.18779) and theta_h >= 0 one number per height
h = D - |z y| (the levels below the child's level in a tree of depth D): beta is then a function of the
context alone, as (B) requires.  Any theta gives a valid bound; at depth 1 with theta = 1
it is 1 + alpha*.  The per-tree value is a recursion from the leaves:

    Phi(z) = 1 + theta_h p_z(H_z) + max(0, max over the children c of z of [Phi(c) - theta_h [token(c) in H_z]])

bound = Phi(root).  Laws: ``iid`` and ``wor`` (H_z from the prefix order, as
:func:`multidraft.theory.optimal_acceptance` computes alpha*) and ``topk`` (H_z the drafts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from multidraft.theory.optimal import _prefix_masses, _wor_miss, _wor_pair_miss

#: Draft laws whose alpha*-attaining set is computed here.
BOUND_LAWS = ("iid", "wor", "topk")


def alpha_star_set(law: str, p: np.ndarray, q: np.ndarray, drafts: np.ndarray) -> np.ndarray:
    """H_z as a bool mask [V]: the prefix of the p/q order attaining alpha* (module docstring).

    ``drafts`` [k] are the node's drafts (their number k; for ``topk``, H is their set).
    """
    k = int(drafts.size)
    if law == "topk":
        mask = np.zeros(p.size, dtype=bool)
        mask[drafts] = True
        return mask
    if law not in ("iid", "wor"):
        raise ValueError(f"the tree bound knows the alpha* set of the draft laws {', '.join(BOUND_LAWS)}, not {law!r}")
    ratio = np.divide(p, q, out=np.full(q.size, np.inf), where=q > 0)
    order = np.argsort(ratio, kind="stable")
    q_sorted, prefix_p, complement_q = _prefix_masses(p, q)
    if law == "iid" or k == 1:
        inside = np.concatenate([[0.0], np.cumsum(q_sorted)])  # q(H_n)
        miss = np.where(complement_q <= 0.5, -np.expm1(k * np.log1p(-np.minimum(complement_q, 0.5))), 1 - inside**k)
    elif np.count_nonzero(q > 0) < k:  # the drafts are the whole support: all in H iff H covers it
        miss = (complement_q > 0).astype(float)
    else:
        miss = _wor_pair_miss(q_sorted, complement_q) if k == 2 else _wor_miss(q_sorted, complement_q, k)
    n = int(np.argmin(np.clip(miss, 0.0, 1.0) + prefix_p))
    mask = np.zeros(p.size, dtype=bool)
    mask[order[:n]] = True
    return mask


def tree_bound(tree, law: str, p: torch.Tensor, q: torch.Tensor, values: Sequence[Sequence[float]]) -> np.ndarray:
    """Phi(root) of (B) for every theta in ``values`` (each theta = [theta_0, theta_1, ..] by height), [len(values)].

    ``tree``: a drafted :class:`multidraft.tree.Tree`; ``p`` [N, V] at every node, ``q`` [n_internal, V] at
    the nodes with drafts (as for a verifier); the tree's depth is D (a uniform shape, or a cut of one).  A
    node without drafts has Phi = 1.
    """
    thetas = np.asarray(values, dtype=np.float64)  # [m, heights]
    if thetas.ndim != 2 or (thetas < 0).any():
        raise ValueError("values must be a list of theta vectors with entries >= 0")
    depth = tree.depth
    if depth > thetas.shape[1]:
        raise ValueError(f"the tree has {depth} levels; give theta for heights 0..{depth - 1}")
    p_rows = p.double().cpu().numpy()
    q_rows = q.double().cpu().numpy()
    depths = tree.depths.tolist()
    phi = np.ones((tree.size, thetas.shape[0]))  # [N, m]: a node without drafts has Phi = 1 + 0
    for node in range(tree.size - 1, -1, -1):  # breadth-first ids: children after parents
        if not tree.has_drafts(node):
            continue
        theta = thetas[:, depth - depths[node] - 1]  # [m], the height of the children's level
        drafts = tree.drafts_of(node).cpu().numpy()
        row_p, row_q = p_rows[node] / p_rows[node].sum(), q_rows[node] / q_rows[node].sum()
        inside = alpha_star_set(law, row_p, row_q, drafts)  # [V]
        kids = sorted(set(tree.children_of(node).tolist()))
        priced = theta[:, None] * inside[tree.tokens[kids].cpu().numpy()][None, :]  # beta(z c) [m, children]
        best = np.maximum(0.0, (phi[kids].T - priced).max(axis=1))  # [m]
        phi[node] = 1.0 + theta * float(row_p[inside].sum()) + best
    return phi[0]
