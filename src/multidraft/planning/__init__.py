"""Cost model and planner: measured costs of this machine, acceptance by rank, the best tree.

* :mod:`~multidraft.planning.profile`: forward costs, per-step overheads and the roofline, measured;
* :mod:`~multidraft.planning.acceptance`: acceptance by rank of child from recorded (p, q);
* :mod:`~multidraft.planning.cost`: predicted tokens per step, seconds per step and tokens/s;
* :mod:`~multidraft.planning.planner`: the candidates and the choice.

This module keeps the measured pieces in a cache (``$MULTIDRAFT_CACHE/plans`` or
``~/.cache/multidraft/plans``), keyed by the machine, the torch build and
thread count, and the models (names and draft option), so that
``generate(..., scheme="auto", tree="auto")`` plans from a cached profile and
profiles first when there is none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from multidraft.planning.acceptance import PLANNED, RankRates
from multidraft.planning.cost import predict_step
from multidraft.planning.planner import Choice, plan
from multidraft.planning.profile import Profile, machine_description, measure
from multidraft.tree import TreeTemplate, parse_shape


def plans_dir() -> Path:
    from multidraft.models import cache_dir

    return cache_dir() / "plans"


def model_description(target, draft) -> dict:
    """What identifies the pair for the cache: names, dtypes, and how the draft was made cheaper."""
    from multidraft.execution import SubVocabularyHead

    head = draft.get_output_embeddings()
    quantized = sum("quantized" in type(m).__module__ for m in draft.modules())
    return {
        "target": str(getattr(target.config, "_name_or_path", "")) or target.config.model_type,
        "draft": str(getattr(draft.config, "_name_or_path", "")) or draft.config.model_type,
        "target_dtype": str(target.dtype), "draft_dtype": str(draft.dtype),
        "draft_quantized_layers": quantized,
        "draft_vocabulary": int(head.keep.numel()) if isinstance(head, SubVocabularyHead) else None,
    }


def fingerprint(description: dict) -> str:
    machine = machine_description()
    key = {**description, "cpu": machine["cpu"], "cores": machine["cores"], "threads": machine["torch_threads"],
           "torch": machine["torch"]}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def profile_path(target, draft) -> Path:
    return plans_dir() / f"profile-{fingerprint(model_description(target, draft))}.json"


#: Bumped when pilot rates are measured differently (2: the draft reads the sample as the decoder reads it).
RATES_VERSION = 2


def rates_path(target, draft, temperature: float, top_k, top_p) -> Path:
    tag = f"T{temperature:g}-k{top_k}-p{top_p}"
    return plans_dir() / f"rates{RATES_VERSION}-{fingerprint(model_description(target, draft))}-{tag}.json"


def cached_profile(target, draft, progress=None) -> Profile:
    """The cached profile of this machine and pair, measured (about a minute) and cached if missing."""
    path = profile_path(target, draft)
    if path.is_file():
        return Profile.load(path)
    profile = measure(target, draft, model_description(target, draft), progress=progress)
    profile.save(path)
    return profile


def cached_rates(target, draft, temperature: float, top_k, top_p, estimate: Callable[[], RankRates]) -> RankRates:
    """The cached rank rates of the pair and sampling options; ``estimate()`` them and cache them if missing."""
    path = rates_path(target, draft, temperature, top_k, top_p)
    if path.is_file():
        return RankRates.load(path)
    rates = estimate()
    rates.save(path)
    return rates


def auto_choice(profile: Profile, rates: RankRates, *, scheme: str, tree, context: float) -> Choice:
    """The plan's best (scheme, tree); a ``scheme`` or ``tree`` other than "auto" restricts the search to it."""
    names = tuple(PLANNED) if scheme == "auto" else (scheme,)
    if scheme != "auto" and scheme not in PLANNED:
        raise ValueError(f"the planner does not cover scheme {scheme!r}; it plans over {', '.join(PLANNED)}")
    shape = None if tree == "auto" else parse_shape(tree)
    if shape is not None:
        ks = {k for level in shape.levels for k in level if k} if isinstance(shape, TreeTemplate) else set(shape)
        names = tuple(name for name in names if ks <= set(PLANNED[name]))
        if not names:
            raise ValueError(f"no planned scheme draws the draft counts of tree {tree!r} (planned: {PLANNED})")
    if shape is None:
        return plan(profile, rates, schemes=names, context=context)[0]
    steps = {name: predict_step(profile, rates, name, shape, context) for name in names}
    best = max(names, key=lambda name: steps[name].tokens / steps[name].seconds)
    return Choice(best, shape, steps[best].tokens, steps[best].seconds)
