"""Tree-level verifiers: one module each, all sharing :class:`~multidraft.verifiers.base.Verifier`.

``get(name)`` returns a verifier by its registry name; ``names()`` lists them.
"""

from __future__ import annotations

from multidraft.verifiers import token
from multidraft.verifiers.base import Verifier

_VERIFIERS = {module.VERIFIER.name: module.VERIFIER for module in (token,)}


def names() -> list[str]:
    """The registry names of all verifiers."""
    return list(_VERIFIERS)


def get(name: str) -> Verifier:
    """The verifier called ``name``; ``ValueError`` naming the valid ones otherwise."""
    try:
        return _VERIFIERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown verifier {name!r}; choose one of {', '.join(_VERIFIERS)}") from None


__all__ = ["Verifier", "get", "names"]
