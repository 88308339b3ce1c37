"""Tree-level verifiers: one module each, all sharing :class:`~multidraft.verifiers.base.Verifier`.

``get(name)`` returns a verifier by its registry name; ``names()`` lists them.

* ``token``          the token-level walk from the root (every scheme, every tree);
* ``block``          block verification of a chain (Sun et al., ICLR 2025);
* ``traversal``      traversal verification of a tree, leaves to root (Weng et al., NeurIPS 2025),
                     for the i.i.d. draft law its proof covers;
* ``traversal-seq``  the same traversal for every sequential draft law (wor, greedy, hub, topk),
                     proved in :mod:`multidraft.verifiers.traversal`.
"""

from __future__ import annotations

from multidraft.verifiers import block, token, traversal
from multidraft.verifiers.base import Outcome, Verifier

_VERIFIERS = {
    verifier.name: verifier
    for verifier in (token.VERIFIER, block.VERIFIER, traversal.PAPER, traversal.SEQUENTIAL)
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
