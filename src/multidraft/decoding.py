"""The generation loop: speculative steps until max_new_tokens or a stop token (docs/design.md §2).

Each step (:func:`multidraft.step.speculative_step`) drafts a tree, scores it
in one target forward, verifies it and cuts both caches to the accepted
path.  Which tree a step drafts comes from a *policy* called before the
step with the tokens committed so far and the steps already taken: a fixed
(scheme, tree) for :func:`generate`, the root alone for
:func:`autoregressive`, or an adaptive plan (:mod:`multidraft.api`).  The
choice never looks at the step's own draws, so every step stays lossless
and the output has exactly the law of sampling the target alone.

Observers (the exact expectation, traces) read each finished step; the
stopwatch marks the phases.  Neither changes what the loop does.

p and q are the processed laws of :func:`multidraft.sampling_options.probabilities`,
the same temperature / top-k / top-p for both models.  All randomness comes
from ``generator``, which must live on the target's device, where every
sampling step runs.  Batch size 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from multidraft import schemes, verifiers
from multidraft.limits import DEFAULT_MAX_TREE_NODES
from multidraft.requests import check_pair, check_request
from multidraft.results import GenerationResult, StepSummary, StepTrace, Stopwatch, expectation, result_of, tracer
from multidraft.runners import Runner, as_runner
from multidraft.runners.base import host_threads
from multidraft.sampling_options import Sampling
from multidraft.schemes.base import Scheme
from multidraft.shapes import format_shape, parse_shape, shape_depth
from multidraft.step import Step, TreePlan, check_stop, speculative_step, within

__all__ = ["GenerationResult", "StepTrace", "autoregressive", "decode", "generate"]

#: Chooses the next step's plan from the committed tokens [n] and the steps taken so far.
Policy = Callable[[torch.Tensor, Sequence[StepSummary]], TreePlan]


def finish(emitted: list[int], out: list[int], max_new_tokens: int, stop: frozenset[int]) -> tuple[list[int], bool]:
    """Cut ``emitted`` at max_new_tokens and after the first stop token; returns the kept tokens and whether to stop."""
    kept = emitted[: max_new_tokens - len(out)]
    for i, token in enumerate(kept):
        if token in stop:
            return kept[: i + 1], True
    return kept, len(out) + len(kept) >= max_new_tokens


# -- the loop ---------------------------------------------------------------------------------------


def decode(
    target: Runner,
    draft: Runner | None,
    seq: torch.Tensor,
    policy: Policy,
    sampling: Sampling,
    verifier,
    generator,
    *,
    max_new_tokens: int,
    stop: frozenset[int],
    on_tokens=None,
    observers: Sequence[Callable[[Step], None]] = (),
) -> tuple[list[int], list[StepSummary], Stopwatch]:
    """Speculative steps from the prompt ``seq`` [n] until done; returns the tokens, the steps and the stopwatch.

    ``observers`` see each whole step once it is done (untimed); the loop keeps only its summary.
    """
    with host_threads(target, draft):  # PyTorch on one thread while another engine computes
        target.reset()
        if draft is not None:
            draft.reset()
        out: list[int] = []
        steps: list[StepSummary] = []
        learn = getattr(policy, "observe", None)  # a policy that learns from each step sees it first
        watch = Stopwatch(target, draft)
        done = False
        while not done:
            plan = within(policy(seq, steps), max_new_tokens - len(out) - 1)  # no drafts past the tokens wanted
            watch.lap("planning")
            step = speculative_step(
                target, draft, seq, [plan], sampling, verifier, generator, step=len(steps) + 1, lap=watch.lap
            )
            steps.append(StepSummary.of(step))
            seq = torch.cat([seq, torch.tensor(step.walk.tokens, device=seq.device)])
            emitted, done = finish(step.walk.tokens, out, max_new_tokens, stop)
            out += emitted
            if on_tokens is not None and emitted:
                on_tokens(emitted)
            watch.lap("verification")
            if learn is not None:
                learn(step)
                watch.lap("planning")
            for observe in observers:
                observe(step)
            watch.pause()
        return out, steps, watch


@torch.no_grad()
def generate(
    target,
    draft,
    input_ids,
    *,
    scheme: str | Scheme,
    tree,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    on_tokens: Callable[[list[int]], None] | None = None,
    record: bool = False,
    exact_expectation: bool = False,
    max_tree_nodes: int = DEFAULT_MAX_TREE_NODES,
    verifier: str = "token",
    min_draft_probability: float = 0.0,
) -> GenerationResult:
    """Multi-draft speculative sampling from ``target`` with drafts from ``draft`` (module docstring).

    ``target`` and ``draft`` are :class:`~multidraft.runners.Runner` objects or Hugging Face causal LMs.
    ``scheme`` is a registry name or a :class:`Scheme`; ``tree`` a shape as parsed by
    :func:`multidraft.shapes.parse_shape` ("2x4", "2,2,1,1", [3, 2], a per-node template "3/2,1,0").
    ``verifier`` names the tree-level verification (:func:`multidraft.verifiers.names`); one that is
    not lossless for this scheme and tree is refused with the other inputs.  ``on_tokens`` receives
    each step's new tokens (streaming); ``record=True`` keeps a :class:`StepTrace` per step;
    ``exact_expectation=True`` also computes, per step, the exact expected number of tokens given the
    drafted tree (the Rao-Blackwellised block efficiency), outside the timed phases.  Every input is
    checked, raising ``ValueError``, before the first model call; so is the tree's size
    (:func:`multidraft.limits.check_limits`).  ``min_draft_probability`` τ > 0 ends a step's tree after a
    level whose every token had draft probability below τ (token walk only; lossless, see
    :mod:`multidraft.step`).  ``scheme="auto"`` lives in :func:`multidraft.api.generate`.
    """
    scheme = schemes.get(scheme) if isinstance(scheme, str) else scheme
    shape = parse_shape(tree)
    verifying = verifiers.get(verifier)
    target, draft = as_runner(target), as_runner(draft)
    seq, stop = check_request(target, input_ids, max_new_tokens, temperature, top_k, top_p, generator, eos_token_id)
    check_pair(target, draft, scheme, shape, verifying, seq.shape[0], max_new_tokens, max_tree_nodes)
    check_stop(min_draft_probability, verifying.name)
    plan = TreePlan(scheme, shape, generator, min_draft_probability)
    return run(
        target,
        draft,
        seq,
        stop,
        lambda seq, steps: plan,
        verifying,
        generator,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        on_tokens=on_tokens,
        record=record,
        exact_expectation=exact_expectation,
        label=(scheme.name, format_shape(shape)),
        depth=shape_depth(shape),
    )


def run(
    target: Runner,
    draft: Runner | None,
    seq: torch.Tensor,
    stop: frozenset[int],
    policy: Policy,
    verifier,
    generator,
    *,
    temperature: float,
    top_k,
    top_p,
    max_new_tokens: int,
    on_tokens=None,
    record: bool = False,
    exact_expectation: bool = False,
    label: tuple[str, str],
    depth: int,
) -> GenerationResult:
    """The loop on checked inputs (:func:`decode`) with the requested observers, as a :class:`GenerationResult`.

    ``label`` is the (scheme, tree) the result names; ``depth`` the deepest tree, for the acceptance per depth.
    """
    trace = [] if record else None
    expected = [] if exact_expectation else None
    observers = [tracer(trace)] * record + [expectation(verifier, expected)] * exact_expectation
    sampling = Sampling.for_runners(temperature, top_k, top_p, target, draft)
    out, steps, watch = decode(
        target,
        draft,
        seq,
        policy,
        sampling,
        verifier,
        generator,
        max_new_tokens=max_new_tokens,
        stop=stop,
        on_tokens=on_tokens,
        observers=observers,
    )
    return result_of(out, steps, watch, *label, depth, trace, expected)


@torch.no_grad()
def autoregressive(
    target,
    input_ids,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    on_tokens: Callable[[list[int]], None] | None = None,
    record: bool = False,
) -> GenerationResult:
    """Plain sampling from ``target``, token by token with its KV cache: the baseline, block efficiency 1.

    The same loop as :func:`generate` with the root alone as every step's tree (no draft).
    """
    target = as_runner(target)
    seq, stop = check_request(target, input_ids, max_new_tokens, temperature, top_k, top_p, generator, eos_token_id)
    target.check("target", seq.shape[0] + max_new_tokens)
    plain = TreePlan(None, None, generator)
    return run(
        target,
        None,
        seq,
        stop,
        lambda seq, steps: plain,
        verifiers.get("token"),
        generator,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        on_tokens=on_tokens,
        record=record,
        label=("autoregressive", ""),
        depth=0,
    )
