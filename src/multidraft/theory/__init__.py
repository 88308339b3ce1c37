"""Exact theory of multi-draft verification (docs/design.md §1).

* :func:`acceptance` -- a scheme's exact acceptance rate, in closed form;
* :func:`acceptance_mc` -- a Monte-Carlo estimate from the sampling path;
* :func:`output_law` -- the exact output law by enumeration (small V);
* :func:`optimal_acceptance` -- alpha* of a draft law, without an LP;
* :func:`optimal_acceptance_lp` -- the linear-program reference (small V).
"""

from multidraft.theory.acceptance import acceptance
from multidraft.theory.exact import acceptance_by_enumeration, acceptance_mc, output_law
from multidraft.theory.lp import optimal_acceptance_lp
from multidraft.theory.optimal import optimal_acceptance

__all__ = [
    "acceptance",
    "acceptance_by_enumeration",
    "acceptance_mc",
    "optimal_acceptance",
    "optimal_acceptance_lp",
    "output_law",
]
