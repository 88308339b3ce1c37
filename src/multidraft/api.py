"""The public entry points: :func:`generate`, where ``scheme`` and ``tree`` may be ``"auto"``, and
:func:`autoregressive`.

A concrete (scheme, tree) goes straight to :func:`multidraft.decoding.generate`.
``"auto"`` hands every step's choice to the online planner
(:class:`multidraft.planning.online.OnlinePlanner`): it starts from the
cached profile of this machine and pair (measured once, with a progress bar,
if there is none) and a representative prior of the pair's acceptance (the
one shipped for the bundled pair, else one cached on this machine, else a
pilot on the request's own prompt), and re-plans every few steps from what
the generation has seen, plain decoding included.  Every plan is fixed
before its step draws, so the output keeps the target's law.
"""

from __future__ import annotations

from collections import Counter

import torch

from multidraft import planning, verifiers
from multidraft.decoding import autoregressive, run
from multidraft.decoding import generate as generate_fixed
from multidraft.limits import DEFAULT_MAX_TREE_NODES
from multidraft.planning.acceptance import PLANNED, rank_rates, stop_rates, truncate
from multidraft.planning.online import Candidate, OnlinePlanner, PlanTable, candidates_for
from multidraft.planning.prior import Prior
from multidraft.planning.profile import Profile
from multidraft.requests import check_pair, check_request
from multidraft.runners import Runner, as_runner, causal_visibility, read_as_decoder
from multidraft.sampling_options import probabilities
from multidraft.schemes import get as get_scheme
from multidraft.shapes import check_shape, draft_counts, parse_shape, shape_depth

__all__ = ["autoregressive", "generate"]

#: Tokens the target samples from the prompt when a pair has no prior (one pilot, then online adaptation).
PILOT_TOKENS = 32
#: Tokens of largest p + q kept per pilot position (the rest merged into one tail token).
PILOT_TOP_N = 256

_tables: dict[tuple, tuple[Prior, PlanTable, PlanTable]] = {}  # per prior and candidates: built once per process


@torch.no_grad()
def pilot_prior(target, draft, prompt: torch.Tensor, temperature: float, top_k, top_p) -> Prior:
    """A one-prompt prior from a short target sample of ``prompt`` (own fixed seed), the draft read as the
    decoder reads it: the fallback for a pair without a recorded prior.  ``target`` and ``draft`` are
    Hugging Face models or runners of any engine."""
    prompt = prompt.reshape(-1).to(target.device)
    sample = autoregressive(
        target,
        prompt,
        max_new_tokens=PILOT_TOKENS,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=torch.Generator(device=target.device).manual_seed(0),
    ).tokens
    sequence = torch.cat([prompt, torch.tensor(sample, device=prompt.device)])[None]
    rows = slice(prompt.numel() - 1, sequence.shape[1] - 1)
    if isinstance(target, Runner):  # one causal forward of the whole text; the last row predicts past it
        length = sequence.shape[1]
        target.reset()
        logits = target.forward(sequence[0], torch.arange(length), causal_visibility(0, length), len(sample) + 1)[:-1]
    else:
        logits = target(sequence).logits[0, rows]
    p = probabilities(logits.double(), temperature, top_k, top_p)
    q = probabilities(
        read_as_decoder(as_runner(draft), sequence[0], prompt.numel()).double(), temperature, top_k, top_p
    )
    _, p_top, q_top, p_tail, q_tail = truncate(p, q, PILOT_TOP_N)
    p_rows = torch.cat([p_top, p_tail[:, None]], -1)  # [P, N + 1]
    q_rows = torch.cat([q_top, q_tail[:, None]], -1)
    rates = rank_rates(
        p_rows, q_rows, temperature=temperature, top_k=top_k, top_p=top_p, sequence=[0] * p_rows.shape[0]
    )
    agreement = torch.minimum(p_rows, q_rows).sum(-1).tolist()
    return Prior(rates, agreement, [""], "pilot on the first prompt", stops=stop_rates(p_rows, q_rows))


def planner_for(
    target,
    draft,
    seq: torch.Tensor,
    candidates: list[Candidate],
    *,
    temperature,
    top_k,
    top_p,
    generator,
    max_new_tokens: int,
    adapt: bool = True,
    profile: Profile | None = None,
    copying: bool = True,
) -> OnlinePlanner:
    """The online planner of a checked request over ``candidates`` (module docstring), with chains copied from
    the text among its candidates if ``copying``."""
    if profile is None:
        profile = planning.cached_profile(target, draft, progress=_profiling_bar())
    prior = planning.cached_prior(
        target, draft, temperature, top_k, top_p, lambda: pilot_prior(target, draft, seq, temperature, top_k, top_p)
    )
    key = (id(prior), tuple(candidates))
    held, table, opening = _tables.get(key, (None, None, None))
    if held is not prior:
        if len(_tables) >= 8:
            _tables.clear()
        table = PlanTable.of(prior, candidates, local=True)
        opening = PlanTable.of(prior, candidates, openings=True, local=True)
        _tables[key] = (prior, table, opening)  # holding the prior keeps its id from naming another one
    return OnlinePlanner(
        profile, prior, table, generator, max_new_tokens, adapt=adapt, opening=opening, copying=copying
    )


def _profiling_bar():
    """A progress bar on stderr while the machine is profiled (only the first ``auto`` on a machine)."""
    from tqdm import tqdm

    bar = None

    def say(phase: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=4, desc="profiling this machine (once)", unit="part", leave=False)
        bar.set_postfix_str(phase)
        bar.update(1)

    return say


def generate(
    target,
    draft,
    input_ids,
    *,
    scheme,
    tree,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k=None,
    top_p=None,
    generator=None,
    eos_token_id=None,
    on_tokens=None,
    record: bool = False,
    exact_expectation: bool = False,
    max_tree_nodes: int = DEFAULT_MAX_TREE_NODES,
    verifier: str = "token",
    adapt: bool = True,
    profile: Profile | None = None,
    min_draft_probability: float = 0.0,
):
    """:func:`multidraft.decoding.generate`, where ``scheme`` and ``tree`` may also be ``"auto"``.

    With ``"auto"`` each step's (scheme, tree), or plain decoding, is the online planner's
    (module docstring; ``adapt=False`` keeps its first choice for the whole generation; ``profile``
    replaces this machine's cached cost profile, e.g. :meth:`~multidraft.planning.profile.Profile.slowed`).
    ``result.plans`` names every step's choice ("" for plain decoding, "lookup 1xd" for a chain copied from the
    text: :mod:`multidraft.lookup`, planned with ``scheme`` and ``tree`` both "auto" and the token walk only),
    ``result.scheme`` and ``result.tree`` the most frequent one ("autoregressive" when plain decoding ran most), and
    ``result.predicted_tokens`` the planner's expected tokens per step for each choice.
    ``min_draft_probability`` (the confidence stop of :mod:`multidraft.step`) is an option of a fixed
    scheme and tree only.
    """
    if scheme != "auto" and tree != "auto":
        return generate_fixed(
            target,
            draft,
            input_ids,
            scheme=scheme,
            tree=tree,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
            eos_token_id=eos_token_id,
            on_tokens=on_tokens,
            record=record,
            exact_expectation=exact_expectation,
            max_tree_nodes=max_tree_nodes,
            verifier=verifier,
            min_draft_probability=min_draft_probability,
        )
    if min_draft_probability:
        raise ValueError("min_draft_probability is an option of a fixed scheme and tree; the planner does not use it")
    usable = planned_candidates(scheme, tree, verifier)
    runners = as_runner(target), as_runner(draft)
    verifying = verifiers.get(verifier)
    seq, stop = check_request(runners[0], input_ids, max_new_tokens, temperature, top_k, top_p, generator, eos_token_id)
    for candidate in usable:
        check_pair(
            *runners,
            get_scheme(candidate.scheme),
            candidate.shape,
            verifying,
            seq.shape[0],
            max_new_tokens,
            max_tree_nodes,
        )
    planner = planner_for(
        target,
        draft,
        seq,
        usable,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
        max_new_tokens=max_new_tokens,
        adapt=adapt,
        profile=profile,
        copying=scheme == "auto" and tree == "auto" and verifier == "token",
    )
    result = run(
        *runners,
        seq,
        stop,
        planner,
        verifying,
        generator,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        on_tokens=on_tokens,
        record=record,
        exact_expectation=exact_expectation,
        label=("auto", "auto"),
        depth=max(shape_depth(c.shape) for c in usable),
    )
    most, _ = Counter(result.plans).most_common(1)[0]
    result.scheme, result.tree = most.split(" ") if most else ("autoregressive", "")  # tree: "1x16@0.4" if stopped
    result.predicted_tokens = [p.tokens_per_step for p in planner.predictions]
    return result


def planned_candidates(scheme, tree, verifier: str = "token") -> list[Candidate]:
    """The choices the online planner has when ``scheme`` or ``tree`` (or both) is ``"auto"``; ``ValueError`` if
    there is none (a scheme the planner does not cover, a tree no planned scheme draws).  Chains stopped on the
    draft's confidence are among them for the token walk only (:func:`multidraft.step.check_stop`).
    Needs no model."""
    if scheme != "auto":
        scheme = get_scheme(scheme).name if isinstance(scheme, str) else scheme.name
        if scheme not in PLANNED:
            raise ValueError(f"the planner does not cover scheme {scheme!r}; it plans over {', '.join(PLANNED)}")
    shape = None if tree == "auto" else parse_shape(tree)
    usable = [c for c in candidates_for(scheme, shape, stops=verifier == "token") if _fits(c)]
    if not usable:
        raise ValueError(f"no planned scheme draws the draft counts of tree {tree!r} (planned: {PLANNED})")
    return usable


def _fits(candidate: Candidate) -> bool:
    """Whether the candidate's scheme takes every node's draft count of its shape, as planned."""
    scheme = get_scheme(candidate.scheme)
    try:
        check_shape(candidate.shape, scheme)
    except ValueError:
        return False
    return draft_counts(candidate.shape) <= set(PLANNED[scheme.name])
