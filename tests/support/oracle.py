"""An exact oracle for tree verification: tiny context-dependent model pairs, every drafted tree,
every verification outcome, and the law of the emitted sequence (float64 throughout).

A *table* gives p(. | context) and q(. | context) for every context (a tuple
of at most ``depth`` tokens) over a vocabulary of V <= 4.  For a scheme and
a tree shape, :func:`drafted_trees` lists every tree the scheme's draft law
can grow with its probability; a verifier's :meth:`outcomes` gives the exact
law of what it emits on each.  :func:`emitted_law` continues every emitted
sequence with the target up to ``depth + 1`` tokens, so a lossless verifier
gives exactly :func:`target_law`.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch

from multidraft.schemes.draft_laws import enumerate_law
from multidraft.tree import Tree

KINDS = ("dirichlet", "sparse", "one-hot q", "one-hot p", "disjoint", "near-one-hot q", "near-one-hot p", "equal")


def _law_pair(kind: str, vocab: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    p, q = rng.dirichlet(np.ones(vocab)), rng.dirichlet(np.ones(vocab))
    if kind == "sparse":  # exact zeros in both, at random places
        p[rng.integers(vocab)] = 0
        q[rng.integers(vocab)] = 0
    elif kind == "one-hot q":
        q = np.eye(vocab)[rng.integers(vocab)]
    elif kind == "one-hot p":
        p = np.eye(vocab)[rng.integers(vocab)]
    elif kind == "disjoint":
        split = int(rng.integers(1, vocab))
        p[split:], q[:split] = 0, 0
    elif kind in ("near-one-hot q", "near-one-hot p"):
        peaked = np.full(vocab, 1e-13)
        peaked[rng.integers(vocab)] = 1 - (vocab - 1) * 1e-13
        p, q = (p, peaked) if kind.endswith("q") else (peaked, q)
    elif kind == "equal":
        p = q.copy()
    return p / p.sum(), q / q.sum()


def table(vocab: int, depth: int, seed: int, kinds: tuple[str, ...] = KINDS) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """context -> (p, q) for every context of length <= depth; the kinds of pair cycle over contexts."""
    rng = np.random.default_rng(seed)
    contexts = [c for n in range(depth + 1) for c in itertools.product(range(vocab), repeat=n)]
    offset = int(rng.integers(len(kinds)))
    return {c: _law_pair(kinds[(i + offset) % len(kinds)], vocab, rng) for i, c in enumerate(contexts)}


def drafted_trees(pairs: dict, law: str, shape):
    """Every tree the draft law grows on ``shape`` (parse_shape output): yields (tree, node contexts, probability).

    Level by level, every node the shape gives drafts (:meth:`Tree.pending`) takes every tuple of the
    draft law at its context; the tree is grown with the decoder's own :meth:`Tree.grow_groups`.
    """

    def grow(tree: Tree, contexts: list[tuple], prob: float):
        groups = tree.pending()
        if not groups:
            yield tree, contexts, prob
            return
        nodes = [(k, node) for k, ids in groups for node in ids]
        options = [list(zip(*enumerate_law(law, pairs[contexts[node]][1], k))) for k, node in nodes]
        for choice in itertools.product(*options):
            grown = copy.deepcopy(tree)
            start = grown.size
            grown.grow_groups([
                (ids, torch.from_numpy(np.stack([t for (kk, node), (t, _) in zip(nodes, choice) if node in ids])))
                for _, ids in groups
            ])
            parents = grown.parents.tolist()
            new = [contexts[parents[v]] + (int(grown.tokens[v]),) for v in range(start, grown.size)]
            yield from grow(grown, contexts + new, prob * float(np.prod([w for _, w in choice])))

    yield from grow(Tree.from_root(0, shape=shape), [()], 1.0)


def node_laws(pairs: dict, tree: Tree, contexts: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """p [N, V] at every node, q [n_internal, V] at the nodes above the deepest level (row = node id)."""
    p = torch.from_numpy(np.stack([pairs[c][0] for c in contexts]))
    return p, torch.from_numpy(np.stack([pairs[c][1] for c in contexts[: tree.n_internal]]))


def target_law(pairs: dict, length: int, vocab: int) -> np.ndarray:
    """The target's law of its first ``length`` tokens, [V ** length]."""
    law = np.ones(1)
    for n in range(length):
        conditional = np.stack([pairs[c][0] for c in itertools.product(range(vocab), repeat=n)])  # [V^n, V]
        law = (law[:, None] * conditional).reshape(-1)
    return law


def continued(pairs: dict, prefix: tuple, mass: float, length: int, vocab: int, out: np.ndarray) -> None:
    """Add ``mass`` times the target's continuation of ``prefix`` to ``length`` tokens into ``out``."""
    if len(prefix) == length:
        out[np.ravel_multi_index(prefix, (vocab,) * length)] += mass
        return
    for y, py in enumerate(pairs[prefix][0]):
        if py > 0:
            continued(pairs, prefix + (y,), mass * py, length, vocab, out)


def emitted_law(pairs: dict, verifier, scheme, shape, depth: int, vocab: int) -> tuple[np.ndarray, float]:
    """(law of the emitted sequence continued by the target to depth + 1 tokens, E[tokens per step])."""
    length = depth + 1
    out, expected = np.zeros(vocab**length), 0.0
    for tree, contexts, prob in drafted_trees(pairs, scheme.draft_law, shape):
        p, q = node_laws(pairs, tree, contexts)
        outcomes = verifier.outcomes(tree, scheme, p, q)
        total = sum(o.probability for o in outcomes)
        assert abs(total - 1) <= 1e-12, f"outcome probabilities sum to {total}"
        for outcome in outcomes:
            weights = outcome.weights.double().numpy()
            if outcome.probability == 0:
                continue
            assert weights.sum() > 0, "an outcome of positive probability has no token to emit"
            law = weights / weights.sum()
            for y in np.flatnonzero(law):
                continued(pairs, contexts[outcome.node] + (int(y),), prob * outcome.probability * law[y], length, vocab, out)
        expected += prob * verifier.expected_tokens(tree, scheme, p, q)
    return out, expected
