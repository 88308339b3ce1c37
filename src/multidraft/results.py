"""What a generation returns and measures: tokens, per-step metrics, phase timings and traces."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from multidraft.runners import Runner
from multidraft.shapes import format_shape
from multidraft.step import Step, TreePlan, judge


@dataclass(frozen=True)
class StepSummary:
    """What the loop keeps of a step (the tensors of a :class:`~multidraft.step.Step` are dropped)."""

    plan: TreePlan
    tree_size: int  # nodes scored, root included
    tree_depth: int  # draft forwards over the tree's levels
    accepted: int  # drafts accepted

    @classmethod
    def of(cls, step: Step) -> StepSummary:
        tree = step.trees[step.driver]
        return cls(step.plans[step.driver], tree.size, tree.depth, step.walk.accepted)

    @property
    def name(self) -> str:
        """ "scheme tree" of the plan ("scheme tree@tau" when it stops on the draft's confidence; "lookup tree"
        when it copies its drafts from the text), "" for plain decoding."""
        plan = self.plan
        if plan.scheme is None:
            return ""
        if plan.lookup:
            return f"lookup {format_shape(plan.shape)}"
        stop = f"@{plan.min_probability:g}" if plan.min_probability else ""
        return f"{plan.scheme.name} {format_shape(plan.shape)}{stop}"


@dataclass
class StepTrace:
    """What one step saw, kept when ``record=True`` (before truncation to max_new_tokens / EOS).

    Row j of ``target_logits`` are the raw target logits that predicted the step's j-th emitted token;
    the first ``len(draft_logits)`` emitted tokens were verified, and row j of ``draft_logits`` is the
    draft's raw logits at that node.
    """

    target_logits: torch.Tensor  # [a + 1, V]
    draft_logits: torch.Tensor  # [verified, V]


@dataclass
class GenerationResult:
    """Tokens and metrics of one generation.

    ``block_efficiency`` = tokens_emitted / target_calls (the papers' tokens per step);
    ``acceptance_per_depth[d - 1]`` = P(a >= d | a >= d - 1) over the steps (a = accepted drafts,
    ``accepted_lengths``), NaN where no step reached depth d - 1.  Seconds: ``draft`` (draft forwards,
    drawing drafts, building the tree), ``target`` (target forwards and p), ``verification`` (the walk
    and cutting both caches back).  ``plans`` names what each step drafted ("" for plain decoding).
    """

    tokens: list[int]
    scheme: str
    tree: str
    target_calls: int
    draft_calls: int
    tokens_emitted: int
    block_efficiency: float
    acceptance_per_depth: list[float]
    accepted_lengths: list[int]
    draft_seconds: float
    target_seconds: float
    verification_seconds: float
    total_seconds: float
    trace: list[StepTrace] | None = field(default=None, repr=False)
    tree_sizes: list[int] = field(default_factory=list)  # nodes scored per step, root included
    expected_tokens: list[float] | None = None  # per step, exact E[tokens | drafted tree] (exact_expectation=True)
    plans: list[str] = field(default_factory=list, repr=False)  # "scheme tree" per step, "" for plain decoding
    planning_seconds: float = 0.0  # choosing each step's plan and learning from it (scheme="auto")
    predicted_tokens: list[float] | None = None  # per step, the planner's E[tokens] for its choice (scheme="auto")
    step_seconds: list[float] = field(default_factory=list, repr=False)  # per step, its planning included

    @property
    def expected_block_efficiency(self) -> float:
        """Mean of the per-step exact expectations: Rao-Blackwellised block efficiency (NaN if not computed)."""
        return sum(self.expected_tokens) / len(self.expected_tokens) if self.expected_tokens else math.nan

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_emitted / self.total_seconds if self.total_seconds > 0 else math.inf


def acceptance_per_depth(accepted_lengths: Sequence[int], depth: int) -> list[float]:
    """P(a >= d | a >= d - 1) for d = 1..depth, NaN where no step reached depth d - 1."""
    rates = []
    for d in range(1, depth + 1):
        reached = sum(a >= d - 1 for a in accepted_lengths)
        rates.append(sum(a >= d for a in accepted_lengths) / reached if reached else math.nan)
    return rates


class Stopwatch:
    """Wall-clock seconds per phase; pending CUDA work is awaited at every reading (no sync on the CPU)."""

    def __init__(self, *runners: Runner):
        self.cuda = [r.device for r in runners if r is not None and r.device.type == "cuda"]
        self.seconds = {"planning": 0.0, "draft": 0.0, "target": 0.0, "verification": 0.0}
        self.ends: list[float] = []  # the total at the end of each step
        self.start = self.tick = self.now()

    def now(self) -> float:
        for device in self.cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def lap(self, phase: str) -> None:
        """Charge the time since the last lap to ``phase``."""
        now = self.now()
        self.seconds[phase] += now - self.tick
        self.tick = now

    def pause(self) -> None:
        """End a step: leave the time since the last lap out of every phase and of the total (observers' work)."""
        now = self.now()
        self.start += now - self.tick
        self.tick = now
        self.ends.append(self.total)

    @property
    def step_seconds(self) -> list[float]:
        """Seconds of each step, its planning included."""
        return [end - before for before, end in zip([0.0, *self.ends], self.ends)]

    @property
    def total(self) -> float:
        return self.tick - self.start


def result_of(
    out: list[int],
    steps: Sequence[StepSummary],
    watch: Stopwatch,
    scheme: str,
    tree: str,
    depth: int,
    trace: list[StepTrace] | None,
    expected: list[float] | None,
) -> GenerationResult:
    accepted = [step.accepted for step in steps]
    return GenerationResult(
        tokens=out,
        scheme=scheme,
        tree=tree,
        target_calls=len(steps),
        draft_calls=sum(step.tree_depth for step in steps),
        tokens_emitted=len(out),
        block_efficiency=len(out) / len(steps),
        acceptance_per_depth=acceptance_per_depth(accepted, depth),
        accepted_lengths=accepted,
        draft_seconds=watch.seconds["draft"],
        target_seconds=watch.seconds["target"],
        verification_seconds=watch.seconds["verification"],
        total_seconds=watch.total,
        trace=trace,
        tree_sizes=[step.tree_size for step in steps],
        expected_tokens=expected,
        plans=[step.name for step in steps],
        planning_seconds=watch.seconds["planning"],
        step_seconds=watch.step_seconds,
    )


def tracer(trace: list[StepTrace]) -> Callable[[Step], None]:
    def observe(step: Step) -> None:
        s, walk = step.driver, step.walk
        trace.append(StepTrace(step.target_logits[s][[0, *walk.path]], step.draft_logits[s][walk.visited]))

    return observe


def expectation(verifier, expected: list[float]) -> Callable[[Step], None]:
    def observe(step: Step) -> None:
        s = step.driver
        plan = step.plans[s]
        expected.append(
            judge(plan, verifier, step.trees[s]).expected_tokens(step.trees[s], plan.scheme, step.p[s], step.q[s])
        )

    return observe
