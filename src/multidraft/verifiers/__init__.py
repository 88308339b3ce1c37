"""Tree-level verifiers: one module each, all sharing :class:`~multidraft.verifiers.base.Verifier`.

``get(name)`` returns a verifier by its registry name; ``names()`` lists them.

* ``token``          the token-level walk from the root (every scheme, every tree);
* ``block``          block verification of a chain (Sun et al., ICLR 2025);
* ``traversal``      traversal verification of a tree, leaves to root (Weng et al., NeurIPS 2025),
                     for the i.i.d. draft law its proof covers;
* ``traversal-seq``  the same traversal for every sequential draft law (wor, greedy, hub, topk),
                     proved in :mod:`multidraft.verifiers.traversal`;
* ``gbv``            greedy multi-path block verification (after Thomas and Pal, arXiv 2602.16961), derived
                     and proved in :mod:`multidraft.verifiers.gbv`: on these trees it has the law of
                     ``traversal-seq``;
* ``traversal-ratio`` traversal with a node's two iid / wor drafts verified wanted-first (p >= q before
                     p < q), proved in :mod:`multidraft.verifiers.ordered` (draft order elsewhere);
* ``match``          llama.cpp's own rule, a labelled baseline: the draft's top-1 chain, the target
                     sampled at every node, drafts accepted while they match (:mod:`multidraft.verifiers.match`).

Supported combinations (``check`` refuses the others with a ``ValueError`` before any model call):

=============== ===================================================== =================================
verifier        nodes with several drafts                             nodes with one draft
=============== ===================================================== =================================
token           every scheme                                          every scheme
block           refused (chains only)                                 sps, rrs, rrs-wor, kseq, greedy,
                                                                      otm (x ~ q), topk (x = argmax q)
traversal       rrs, kseq, otm (i.i.d. drafts, the paper's law)       as block, except topk
traversal-seq   every scheme (iid, wor, greedy, hub, topk laws)       every scheme
gbv             as traversal-seq                                      as traversal-seq
traversal-ratio as traversal-seq                                      as traversal-seq
match           refused (chains only)                                 topk (the top-1 chain)
=============== ===================================================== =================================

Only the draft law of the scheme matters to block and traversal verification; the
scheme's own token-level kernel is used by ``token`` alone.
"""

from __future__ import annotations

from multidraft.verifiers import block, gbv, match, ordered, token, traversal
from multidraft.verifiers.base import Outcome, Verifier

_VERIFIERS = {
    verifier.name: verifier
    for verifier in (
        token.VERIFIER,
        block.VERIFIER,
        traversal.PAPER,
        traversal.SEQUENTIAL,
        gbv.VERIFIER,
        ordered.VERIFIER,
        match.VERIFIER,
    )
}


def names() -> list[str]:
    """The registry names of all verifiers."""
    return list(_VERIFIERS)


def get(name: str) -> Verifier:
    """The verifier called ``name``; ``ValueError`` naming the valid ones otherwise."""
    try:
        return _VERIFIERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown verifier {name!r}; choose one of {', '.join(_VERIFIERS)}") from None


__all__ = ["Outcome", "Verifier", "get", "names"]
