"""Random and adversarial (p, q) pairs on small vocabularies, shared by the exactness tests."""

from __future__ import annotations

import numpy as np


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / x.sum()


def near_certain(vocab: int, token: int, rng: np.random.Generator) -> np.ndarray:
    """q(token) = 1 - 1e-12, the rest 1e-12 spread at random."""
    rest = rng.dirichlet(np.ones(vocab - 1)) * 1e-12
    return np.insert(rest, token, 1 - 1e-12)


def one_hot(vocab: int, token: int) -> np.ndarray:
    x = np.zeros(vocab)
    x[token] = 1.0
    return x


def pairs(count: int, seed: int, max_vocab: int = 8) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``count`` labelled (kind, p, q) pairs cycling through every kind of hard case."""
    rng = np.random.default_rng(seed)
    out = []
    kinds = ["dirichlet", "sparse", "zeros", "disjoint", "tie", "near-certain", "one-hot q", "one-hot p", "equal"]
    for n in range(count):
        kind = kinds[n % len(kinds)]
        vocab = int(rng.integers(2, max_vocab + 1))
        p, q = rng.dirichlet(np.ones(vocab)), rng.dirichlet(np.ones(vocab))
        if kind == "sparse":
            p, q = rng.dirichlet(np.full(vocab, 0.1)), rng.dirichlet(np.full(vocab, 0.1))
            p, q = _normalised(np.where(p < 1e-3, 0, p) + 0), _normalised(np.where(q < 1e-3, 0, q) + 0)
        elif kind == "zeros":
            p[rng.integers(vocab)] = 0
            q[rng.integers(vocab)] = 0
            p, q = _normalised(p), _normalised(q)
        elif kind == "disjoint":
            vocab = max(vocab, 3)
            split = int(rng.integers(1, vocab))
            p = _normalised(np.concatenate([rng.random(split) + 0.1, np.zeros(vocab - split)]))
            q = _normalised(np.concatenate([np.zeros(split), rng.random(vocab - split) + 0.1]))
        elif kind == "tie":
            vocab = max(vocab, 3)
            q = rng.random(vocab)
            top = rng.choice(vocab, 2, replace=False)
            q[top] = q.max() + 0.5
            q, p = _normalised(q), rng.dirichlet(np.ones(vocab))
        elif kind == "near-certain":
            q = near_certain(vocab, int(rng.integers(vocab)), rng)
        elif kind == "one-hot q":
            q = one_hot(vocab, int(rng.integers(vocab)))
        elif kind == "one-hot p":
            p = one_hot(vocab, int(rng.integers(vocab)))
        elif kind == "equal":
            p = q.copy()
        out.append((kind, p, q))
    return out
