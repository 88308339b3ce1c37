"""The multi-draft schemes: one module each, all sharing :class:`~multidraft.schemes.base.Scheme`.

``get(name)`` returns a scheme by its registry name; ``names()`` lists them.
"""

from __future__ import annotations

from multidraft.schemes import greedy, kseq, otm, rrs, rrs_wor, spechub, sps, topk
from multidraft.schemes.base import Sampled, Scheme, VerificationLaw, Verified

_SCHEMES = {module.SCHEME.name: module.SCHEME for module in (sps, rrs, rrs_wor, kseq, spechub, greedy, topk, otm)}


def names() -> list[str]:
    """The registry names of all schemes."""
    return list(_SCHEMES)


def get(name: str) -> Scheme:
    """The scheme called ``name``; ``ValueError`` naming the valid ones otherwise."""
    try:
        return _SCHEMES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scheme {name!r}; choose one of {', '.join(_SCHEMES)}") from None


__all__ = ["Sampled", "Scheme", "VerificationLaw", "Verified", "get", "names"]
