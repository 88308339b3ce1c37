"""The shape every scheme shares: a draft law and a verification kernel.

A multi-draft scheme (docs/design.md §1) is a pair

* a **draft law** Q: the joint law of the k draft tokens ``x = (x_1..x_k)``,
  computed from the draft distribution ``q`` only;
* a **verification kernel** pi(y | x; p, q): the law of the output token ``y``.

Every verification rule implemented here has the same form: the drafts are
checked in a fixed order and draft ``x_i`` is output with probability
``w_i`` (an *accept weight*); with the remaining probability
``w_res = 1 - sum_i w_i`` the output is drawn from a *residual* law ``r``::

    pi(y | x) = sum_i w_i [x_i == y] + w_res r(y)

so :meth:`Scheme.verification_law` returns ``(w, w_res, r)`` and the exact
kernel used by the theory and the tests is derived from it in one place.
``w_res`` is returned separately (not as ``1 - sum w``) so that it is
computed as a product of rejection probabilities, free of cancellation.

The batched sampler used by the decoder (:meth:`Scheme.verify`) draws from
that law by default.  A scheme may override ``_verify`` with a sampler of the
same kernel that does less work: the checks run in order, each decided with
its own uniform, and a pass over the vocabulary runs only on the rows that
reach it (``rrs``, ``rrs-wor``, ``kseq``, ``spechub``).  The chi-square tests
compare every sampler with the kernel of its law.

Shapes: ``p``, ``q`` are ``[..., V]``; drafts are ``[..., k]`` (int64);
``w`` is ``[..., k]``, ``w_res`` is ``[...]``, ``r`` is ``[..., V]`` and may be
unnormalised (only its direction matters; an all-zero ``r`` is allowed where
``w_res`` is 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from multidraft.validation import check_drafts, check_k, check_pair


class VerificationLaw(NamedTuple):
    """pi(y | x) = sum_i accept[..., i] [x_i = y] + reject[...] * residual(y) / sum(residual)."""

    accept: torch.Tensor  # [..., k] probability that draft i is the output via its check
    reject: torch.Tensor  # [...]    probability that every check fails
    residual: torch.Tensor  # [..., V] unnormalised law of the output after all checks fail


class Verified(NamedTuple):
    """What verification returns for a batch of positions."""

    token: torch.Tensor  # [...] int64, the output token
    accepted: torch.Tensor  # [...] bool, whether the output is one of the drafts


class Sampled(NamedTuple):
    """What :meth:`Scheme.sample` returns: the drafts and the verified output."""

    drafts: torch.Tensor  # [..., k] int64
    token: torch.Tensor  # [...] int64
    accepted: torch.Tensor  # [...] bool


def uniform(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) draws in ``like``'s dtype and device."""
    return torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)


#: Entries per block of the two-level sampler (:func:`sample_categorical`).
BLOCK = 128


def block_sums(rows: torch.Tensor) -> torch.Tensor:
    """Sums of consecutive blocks of ``BLOCK`` entries: rows [n, V] -> [n, ceil(V / BLOCK)] (one reduction)."""
    n, vocab = rows.shape
    whole = vocab - vocab % BLOCK
    sums = rows[:, :whole].reshape(n, whole // BLOCK, BLOCK).sum(-1)  # [n, V // BLOCK]
    if whole == vocab:
        return sums
    return torch.cat([sums, rows[:, whole:].sum(-1, keepdim=True)], dim=-1)


def locate(cdf: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The first index with ``cdf > target``: cdf [..., m] non-decreasing, target [..., s] -> [..., s].

    ``target`` is first kept strictly below the total ``cdf[..., -1]``, so the
    index lies in ``0..m-1`` and its entry has positive weight (a zero-weight
    entry leaves the running sum unchanged and is never the first to pass).
    """
    total = cdf[..., -1:]
    target = torch.minimum(target, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True).clamp_max_(cdf.shape[-1] - 1)


def sample_categorical(
    weights: torch.Tensor, generator: torch.Generator | None, num_samples: int | None = None
) -> torch.Tensor:
    """Draws from unnormalised non-negative ``weights`` [..., V].

    Returns [...] (one draw per row) or [..., num_samples] (independent draws).
    Two-level inverse CDF: ``u * total`` is located among the running sums of
    the blocks of ``BLOCK`` entries, then, minus the mass of the earlier
    blocks, inside the chosen block.  A row is read once by a blockwise
    reduction; only the block sums and the chosen blocks are summed
    cumulatively.  A zero-weight entry is never returned; rows whose total is
    0 return index 0 (callers only use such rows with probability 0).
    """
    vocab = weights.shape[-1]
    rows = weights.reshape(-1, vocab)  # [n, V]
    draws = num_samples or 1
    cdf = torch.cumsum(block_sums(rows), dim=-1)  # [n, blocks]
    target = uniform((rows.shape[0], draws), rows, generator) * cdf[:, -1:]  # [n, draws]
    block = locate(cdf, target)  # [n, draws]
    before = torch.where(block > 0, cdf.gather(-1, (block - 1).clamp_min(0)), 0)  # mass of the earlier blocks
    entries = block.unsqueeze(-1) * BLOCK + torch.arange(BLOCK, device=rows.device)  # [n, draws, BLOCK]
    inside = rows.gather(-1, entries.clamp_max(vocab - 1).flatten(1)).view(entries.shape)
    inside = torch.where(entries < vocab, inside, 0)  # the last block may be short
    offset = locate(torch.cumsum(inside, dim=-1), (target - before).unsqueeze(-1)).squeeze(-1)
    index = torch.where(cdf[:, -1:] > 0, block * BLOCK + offset, 0).view(weights.shape[:-1] + (draws,))
    return index if num_samples is not None else index.squeeze(-1)


def ratio_test(target: torch.Tensor, proposal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept and reject probabilities of the test ``accept x w.p. min(1, target(x) / proposal(x))``.

    ``target``, ``proposal`` [...] are the two laws evaluated at the draft.
    The rejection probability is computed as ``(proposal - target)^+ / proposal``
    rather than ``1 - accept``, free of cancellation.  A draft the proposal
    gives no mass (possible only outside the draft law's support, or in a
    round with nothing left to draw) is never accepted.
    """
    valid = proposal > 0
    safe = torch.where(valid, proposal, 1)
    accept = torch.where(valid, torch.clamp(target / safe, max=1), 0)
    reject = torch.where(valid, torch.clamp(proposal - target, min=0) / safe, 1)
    return accept, reject


def normalise(weights: torch.Tensor) -> torch.Tensor:
    """Rows of non-negative ``weights`` [..., V] scaled to sum 1; all-zero rows stay 0."""
    mass = weights.sum(-1, keepdim=True)
    return weights / torch.where(mass > 0, mass, 1)


def mass_outside(q: torch.Tensor, tokens: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """sum_{y not in tokens} q(y) without cancellation: q [..., V], tokens [..., n] distinct, total [...] = sum q.

    ``total - q(tokens)`` is exact to a few ulps when the removed mass is at
    most 1/2; rows where it is larger (a near-certain token) are summed over
    the remaining entries instead -- one extra pass over those rows only.
    """
    removed = q.gather(-1, tokens).sum(-1)  # [...]
    mass = torch.clamp(total - removed, min=0)
    heavy = (removed > 0.5 * total).flatten().nonzero().squeeze(-1)  # [h] flat row indices
    if heavy.numel():
        rows = q.reshape(-1, q.shape[-1]).index_select(0, heavy)  # [h, V]
        dropped = tokens.reshape(-1, tokens.shape[-1]).index_select(0, heavy)
        mass.view(-1)[heavy] = rows.scatter_(-1, dropped, 0).sum(-1)
    return mass


def at(x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``x[..., tokens]`` for one token per row: x [..., V], tokens [...] -> [...]."""
    return x.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def sample_from_law(law: VerificationLaw, drafts: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Draw y ~ pi(. | drafts) from a :class:`VerificationLaw`; returns [...] int64.

    One uniform chooses among "draft i" (weights ``accept``) and "residual"
    (weight ``reject``); the residual token is drawn for every row (one
    blockwise reduction, see :func:`sample_categorical`) and used where the
    residual was chosen, without a device sync.
    """
    branch = torch.cat([law.accept, law.reject.unsqueeze(-1)], dim=-1)  # [..., k + 1]
    choice = sample_categorical(branch, generator)  # [...] in 0..k
    residual_token = sample_categorical(law.residual, generator)  # [...]
    k = drafts.shape[-1]
    draft_token = drafts.gather(-1, choice.clamp_max(k - 1).unsqueeze(-1)).squeeze(-1)
    return torch.where(choice == k, residual_token, draft_token)


def kernel_from_law(law: VerificationLaw, drafts: torch.Tensor) -> torch.Tensor:
    """The dense kernel pi(y | drafts) as a tensor [..., V] (sums to 1 per row)."""
    kernel = law.reject.unsqueeze(-1) * normalise(law.residual)
    return kernel.scatter_add(-1, drafts, law.accept)


@dataclass(frozen=True)
class Scheme:
    """A multi-draft scheme.  Subclasses implement the two halves.

    They may also override ``_verify`` with a faster exact sampler of the same
    kernel (module docstring).  ``name`` is the registry name; ``draft_law``
    names the law of the drafts (``iid``, ``wor``, ``hub`` or ``greedy``) as
    used by :func:`multidraft.theory.optimal_acceptance`.
    """

    name: str = ""
    draft_law: str = ""
    min_k: int = 1
    max_k: int | None = None

    # -- the two halves, implemented per scheme ---------------------------
    def _sample_drafts(self, q: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def _verification_law(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> VerificationLaw:
        raise NotImplementedError

    def _verify(
        self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """y ~ pi(. | drafts) [...]: drawn from the verification law unless a scheme has a faster exact sampler."""
        return sample_from_law(self._verification_law(p, q, drafts), drafts, generator)

    # -- public API: validated once, then shared by all schemes -------------
    # ``check=False`` skips the input checks (two reductions per tensor) on the
    # decoder's hot path, where p and q come straight from a softmax.
    def check_k(self, k: int) -> None:
        """Raise ``ValueError`` if this scheme cannot use ``k`` drafts."""
        check_k(k, self.name, self.min_k, self.max_k)

    def sample_drafts(
        self, q: torch.Tensor, k: int, generator: torch.Generator | None = None, *, check: bool = True
    ) -> torch.Tensor:
        """Draw k drafts per position from the scheme's draft law: q [..., V] -> [..., k]."""
        self.check_k(k)
        if check:
            check_pair(q, q, "q")
        return self._sample_drafts(q, k, generator)

    def verification_law(
        self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, *, check: bool = True
    ) -> VerificationLaw:
        """The verification kernel for these drafts as a :class:`VerificationLaw`."""
        self._check_inputs(p, q, drafts, check)
        return self._verification_law(p, q, drafts)

    def _check_inputs(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, check: bool) -> None:
        self.check_k(drafts.shape[-1])
        if check:
            check_pair(p, q)
            check_drafts(drafts, q)

    def kernel(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, *, check: bool = True) -> torch.Tensor:
        """The exact output law pi(. | drafts) as a dense tensor [..., V]."""
        return kernel_from_law(self.verification_law(p, q, drafts, check=check), drafts)

    def verify(
        self,
        p: torch.Tensor,
        q: torch.Tensor,
        drafts: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        check: bool = True,
    ) -> Verified:
        """Sample the output token given the drafts; p, q [..., V], drafts [..., k]."""
        self._check_inputs(p, q, drafts, check)
        token = self._verify(p, q, drafts, generator)
        accepted = (drafts == token.unsqueeze(-1)).any(-1)
        return Verified(token, accepted)

    def sample(
        self, p: torch.Tensor, q: torch.Tensor, k: int, generator: torch.Generator | None = None, *, check: bool = True
    ) -> Sampled:
        """Draw drafts from q, then verify them against p."""
        if check:
            check_pair(p, q)
        drafts = self.sample_drafts(q, k, generator, check=False)
        token, accepted = self.verify(p, q, drafts, generator, check=False)
        return Sampled(drafts, token, accepted)
