"""Cost model and planner: measured costs of this machine, acceptance by rank, the best tree.

* :mod:`~multidraft.planning.profile`: forward costs, per-step overheads and the roofline, measured;
* :mod:`~multidraft.planning.acceptance`: acceptance by rank of child from recorded (p, q);
* :mod:`~multidraft.planning.cost`: predicted tokens per step, seconds per step and tokens/s;
* :mod:`~multidraft.planning.planner`: the candidates and the choice (``multidraft plan``);
* :mod:`~multidraft.planning.prior`: a representative prior of acceptance and its posterior;
* :mod:`~multidraft.planning.online`: the per-step choice of ``scheme="auto"``, plain decoding included.

This module keeps the measured pieces in a cache (``$MULTIDRAFT_CACHE/plans`` or
``~/.cache/multidraft/plans``), keyed by the machine, the torch build and
thread count, and the models (names and draft option; for models on another
engine, such as llama.cpp, the engine, its threads and each model file's path,
size and modification time), so that
``generate(..., scheme="auto", tree="auto")`` (:mod:`multidraft.api`) plans from a
cached profile and profiles first when there is none.  The acceptance it plans
from is a prior (:mod:`~multidraft.planning.prior`): the one shipped for the
pair, else one cached here, and :mod:`~multidraft.planning.online` updates it
as a generation goes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from multidraft.models.cache import cached_entry
from multidraft.planning.prior import Prior, pair_key
from multidraft.planning.profile import Profile, machine_description, measure


def plans_dir() -> Path:
    from multidraft.models import cache_dir

    return cache_dir() / "plans"


def model_description(target, draft) -> dict:
    """What identifies the pair for the cache: names, dtypes, and how the draft was made cheaper; for runners of
    another engine than torch, :func:`runner_description`."""
    from multidraft.execution import SubVocabularyHead
    from multidraft.runners import Runner, TorchRunner

    if isinstance(target, TorchRunner) and isinstance(draft, TorchRunner):
        target, draft = target.model, draft.model
    elif isinstance(target, Runner) or isinstance(draft, Runner):
        return runner_description(target, draft)

    head = draft.get_output_embeddings()
    quantized = sum("quantized" in type(m).__module__ for m in draft.modules())
    return {
        "target": str(getattr(target.config, "_name_or_path", "")) or target.config.model_type,
        "draft": str(getattr(draft.config, "_name_or_path", "")) or draft.config.model_type,
        "target_dtype": str(target.dtype),
        "draft_dtype": str(draft.dtype),
        "draft_quantized_layers": quantized,
        "draft_vocabulary": int(head.keep.numel()) if isinstance(head, SubVocabularyHead) else None,
    }


def runner_description(target, draft) -> dict:
    """What identifies a pair of runners that are not PyTorch models: the engine (and its version and threads,
    where the runner has them) and each model file's path, size and modification time."""
    from multidraft.runners import as_runner

    target, draft = as_runner(target), as_runner(draft)
    engines = {target.engine, draft.engine}
    description = {"engine": target.engine if len(engines) == 1 else f"{target.engine}/{draft.engine}"}
    for role, runner in (("target", target), ("draft", draft)):
        path = getattr(runner, "path", None)
        if path is None:  # e.g. a PyTorch model beside a llama.cpp one: its name and dtype
            model = getattr(runner, "model", None)
            config = getattr(model, "config", None)
            name = str(getattr(config, "_name_or_path", "")) or getattr(config, "model_type", "")
            description[role] = f"{type(runner).__name__}:{name}:{getattr(model, 'dtype', '')}"
            continue
        stat = Path(path).stat()
        description[role] = str(Path(path).resolve())
        description[f"{role}_file"] = {"bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}
        description[f"{role}_vocabulary"] = runner.vocab_size
        if getattr(runner, "threads", None) is not None:
            description[f"{role}_threads"] = runner.threads
    if "llama.cpp" in engines:
        from importlib.metadata import PackageNotFoundError, version

        try:
            description["llama_cpp_python"] = version("llama_cpp_python")
        except PackageNotFoundError:
            pass
    return description


def fingerprint(description: dict) -> str:
    machine = machine_description()
    key = {
        **description,
        "cpu": machine["cpu"],
        "cores": machine["cores"],
        "threads": machine["torch_threads"],
        "torch": machine["torch"],
    }
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


#: Bumped when cached profiles are measured differently.
PROFILE_VERSION = 2


def profile_path(target, draft) -> Path:
    return plans_dir() / f"profile{PROFILE_VERSION}-{fingerprint(model_description(target, draft))}.json"


#: Bumped when cached priors are measured differently.
PRIOR_VERSION = 4


def prior_path(target, draft, temperature: float, top_k, top_p) -> Path:
    """Where the prior of this pair and these sampling options is cached on this machine."""
    tag = f"T{temperature:g}-k{top_k}-p{top_p}"
    return plans_dir() / f"prior{PRIOR_VERSION}-{fingerprint(model_description(target, draft))}-{tag}.json"


#: Shipped priors may stand in for a temperature this close to theirs (online adaptation does the rest).
PRIOR_TEMPERATURE_TOLERANCE = 0.25


def shipped_prior(target, draft, temperature: float, top_k, top_p) -> Prior | None:
    """The prior shipped with the package for this pair (``multidraft/data/priors``), at the nearest
    temperature within :data:`PRIOR_TEMPERATURE_TOLERANCE`; None if there is none or top-k / top-p are set."""
    if top_k is not None or top_p is not None:
        return None
    key = pair_key(model_description(target, draft))
    best = None
    folder = importlib.resources.files("multidraft").joinpath("data", "priors")
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.name.endswith(".json"):
            continue
        prior = _load_prior(str(path))
        gap = abs(prior.rates.temperature - temperature)
        if prior.pair == key and gap <= PRIOR_TEMPERATURE_TOLERANCE and (best is None or gap < best[0]):
            best = gap, prior
    return None if best is None else best[1]


@functools.lru_cache(maxsize=8)
def _load_prior(path: str) -> Prior:
    return Prior.load(Path(path))


def cached_prior(target, draft, temperature: float, top_k, top_p, estimate: Callable[[], Prior]) -> Prior:
    """The shipped prior of the pair, else the one cached for it on this machine, else ``estimate()``'s, cached.
    Within a process the same content gives the same object, so the planner's table of it (and the table's
    seconds per profile) is built once, not at every generation."""
    shipped = shipped_prior(target, draft, temperature, top_k, top_p)
    if shipped is not None:
        return shipped
    path = prior_path(target, draft, temperature, top_k, top_p)
    data = cached_entry(path, "measuring acceptance", lambda: asdict(estimate()))
    return _prior(json.dumps(data, sort_keys=True))


@functools.lru_cache(maxsize=8)
def _prior(text: str) -> Prior:
    """One :class:`Prior` object per prior's content."""
    return Prior.from_dict(json.loads(text))


def cached_profile(target, draft, progress=None) -> Profile:
    """The cached profile of this machine and pair, measured (a few minutes on 2 cores) and cached if missing or
    damaged (:func:`multidraft.models.cache.cached_entry`: one process measures, concurrent ones wait for it).
    Within a process the same file gives the same object, so what the planner derives from it is computed once."""
    data = cached_entry(
        profile_path(target, draft),
        "profiling this machine",
        lambda: asdict(measure(target, draft, model_description(target, draft), progress=progress)),
    )
    return _profile(json.dumps(data, sort_keys=True))


@functools.lru_cache(maxsize=8)
def _profile(text: str) -> Profile:
    """One :class:`Profile` object per profile's content."""
    return Profile.from_dict(json.loads(text))
