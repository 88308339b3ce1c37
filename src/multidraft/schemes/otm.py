"""Optimal transport with membership cost (SpecTr, Sun et al. 2023, §4): the exact optimum.

For a draft law Q (here k i.i.d. draws from q, as in SpecTr) the best
verification is an optimal coupling pi(x, y) of Q and p maximising the mass
on {y in x}; its value is alpha*(Q, p).  It is found by a linear program
(``multidraft.theory.lp``, HiGHS), so this scheme is a reference for small
vocabularies only: the LP has |supp Q| * V variables, and the batch is
processed row by row (one LP per distinct (p, q) row).

The LP solution is made exactly lossless before use: its accepted part
alpha(x, y), y in x, is clipped to be non-negative and scaled so that no row
exceeds Q(x) and no column exceeds p(y); the remainders m(x) and c(y) are
then coupled independently, pi(y | x) = alpha(x, y)/Q(x) + m(x)/Q(x) c(y)/sum c,
whose marginal is p up to rounding, whatever the solver's tolerance.
"""

from __future__ import annotations

import numpy as np
import torch

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme, VerificationLaw
from multidraft.schemes.draft_laws import enumerate_law


def accepted_part(tuples: np.ndarray, probs: np.ndarray, p: np.ndarray) -> np.ndarray:
    """alpha(x, y) [N, V]: the LP coupling restricted to y in x, made feasible exactly."""
    from multidraft.schemes.coupling import optimal_coupling  # scipy is loaded only when otm is used

    _, coupling = optimal_coupling(tuples, probs, p)
    member = np.zeros_like(coupling, dtype=bool)
    np.put_along_axis(member, tuples, True, axis=1)
    accepted = np.where(member, np.clip(coupling, 0, None), 0)
    rows = accepted.sum(1)
    accepted *= np.minimum(1, probs / np.where(rows > 0, rows, 1))[:, None]
    cols = accepted.sum(0)
    accepted *= np.minimum(1, p / np.where(cols > 0, cols, 1))[None, :]
    return accepted


def _row_law(p: np.ndarray, q: np.ndarray, drafts: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(accept [n, k], reject [n], residual [V]) for one (p, q) pair and n draft tuples [n, k]."""
    k = drafts.shape[1]
    tuples, probs = enumerate_law("iid", q, k)
    accepted = accepted_part(tuples, probs, p)
    index = {tuple(t): n for n, t in enumerate(tuples.tolist())}
    rows = np.array([index.get(tuple(d), -1) for d in drafts.tolist()])
    if (rows < 0).any():
        raise ValueError("otm: a draft tuple has probability 0 under the i.i.d. draft law")
    accept = np.take_along_axis(accepted[rows], drafts, axis=1) / probs[rows, None]  # [n, k]
    first = np.array([[d.index(x) == i for i, x in enumerate(d)] for d in drafts.tolist()])
    accept = np.where(first, accept, 0)  # a repeated draft is one outcome
    reject = (probs[rows] - accepted[rows].sum(1)) / probs[rows]
    residual = np.clip(p - accepted.sum(0), 0, None)
    return accept, np.clip(reject, 0, None), residual


class OptimalTransport(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.iid(q, k, generator)

    def _verification_law(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> VerificationLaw:
        batch, vocab, k = p.shape[:-1], p.shape[-1], drafts.shape[-1]
        p64 = p.reshape(-1, vocab).double().cpu().numpy()
        q64 = q.reshape(-1, vocab).double().cpu().numpy()
        tuples = drafts.reshape(-1, k).cpu().numpy()
        pairs, which = np.unique(np.concatenate([p64, q64], 1), axis=0, return_inverse=True)
        which = which.reshape(-1)
        accept = np.zeros(tuples.shape)
        reject = np.zeros(len(tuples))
        residual = np.zeros((len(tuples), vocab))
        for n in range(len(pairs)):  # one LP per distinct (p, q) row: a reference, not a fast path
            rows = np.flatnonzero(which == n)
            accept[rows], reject[rows], residual[rows] = _row_law(pairs[n, :vocab], pairs[n, vocab:], tuples[rows])

        def back(x: np.ndarray, shape) -> torch.Tensor:
            return torch.from_numpy(x).to(dtype=p.dtype, device=p.device).reshape(shape)

        return VerificationLaw(back(accept, batch + (k,)), back(reject, batch), back(residual, batch + (vocab,)))


SCHEME = OptimalTransport(name="otm", draft_law="iid")
