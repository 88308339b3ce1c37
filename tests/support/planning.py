"""Synthetic acceptance rates and cost profiles for planner tests."""

from __future__ import annotations

from multidraft.planning.acceptance import PLANNED, RankRates
from multidraft.planning.profile import ForwardCosts, Profile


def flat_rates(a: float) -> RankRates:
    """Every scheme and k: the child of rank i is entered with probability a * (1 - a)^i and always exists."""
    rates = {}
    for name, ks in PLANNED.items():
        for k in ks:
            rates[f"{name}:{k}"] = {"accept": [a * (1 - a) ** i for i in range(k)], "new": [1.0] * k,
                                    "accept_se": [0.0] * k}
    return RankRates(1.0, None, None, 1, 1, rates)


def linear_profile(target_per_query: float, draft_one: float) -> Profile:
    """Target: 0.1 s plus ``target_per_query`` per query; draft: ``draft_one`` flat; no overheads."""
    queries = [1, 2, 64, 256]
    target = ForwardCosts(queries, [0, 512], [[0.1 + target_per_query * q for q in queries]] * 2)
    draft = ForwardCosts(queries, [0, 512], [[draft_one] * len(queries)] * 2)
    keys = [f"{name}:{k}" for name, ks in PLANNED.items() for k in ks]
    zero = {"laws_call": 0.0, "laws_row": 0.0, "tree_level": 0.0, "keep_path": 0.0,
            "drafts": {key: [0.0, 0.0] for key in keys}, "verify": {key: 0.0 for key in keys}}
    return Profile({}, {}, target, draft, zero)
