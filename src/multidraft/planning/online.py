"""Online planning: each step's tree, or plain decoding, chosen from the prior and the steps so far.

**Candidates.**  Plain decoding, for every planned scheme the chains and
uniform trees of at most ``max_nodes`` nodes
(:func:`multidraft.planning.planner.uniform_shapes`), and ``sps`` chains that
stop after a draft token the draft itself doubts (q < tau; SpecDec++,
arXiv 2405.19715, and Hugging Face's ``assistant_confidence_threshold``),
rated by :func:`multidraft.planning.cost.stop_chain_rates`.  For each candidate c
and each recorded prompt j of the prior, :class:`PlanTable` holds the
expected tokens per step, nodes verified and chance of ending at a leaf,
averaged over j's recorded starts (:func:`multidraft.planning.cost.tree_rates`).
The table depends on the prior only and is built once.

**Re-planning** after every speculative step (it brings evidence, and a code
prompt may take only four steps of long chains for 64 tokens), at once when
a plain stretch's agreements arrive, and otherwise every ``every`` plain
steps (only the context has changed; on an engine where plain decoding wins
a re-plan at every token would cost a few percent of it): the posterior weights w of the
recorded prompts given the agreements seen so far
and the local state of the last agreements
(:meth:`multidraft.planning.prior.Prior.cell_posterior`) mix the table per
cell (prompt j, state s), E[tokens | c] = sum_{j,s} P(j, s) tokens[c, j, s],
and the profile turns each
candidate into seconds per step at the current context
(:func:`multidraft.planning.cost.step_seconds`).  A draft that lags behind
(at the first step, or after plain steps) first reads what it lacks; that
cost is spread over the tokens still to generate.  A step speculates only
if some candidate is predicted faster than plain decoding with margins for
the prediction's uncertainty, and then runs the fastest (by its mean
prediction) of those that are.  The margins: its seconds :data:`COST_MARGIN`
high (the cost model's error), and, once :data:`MIN_EVIDENCE` agreements
have been seen, its tokens per step at the posterior's lower quantile
:data:`DOUBT_LEVEL` (the recorded prompts' predictions, weighted by the
posterior: :func:`lower_quantile`).  For a normal law that is the mean less
one standard deviation; the tokens of a long stopped chain are skewed (a few
recorded prompts copy, and predict 20 tokens or more), and there the mean
less one deviation falls below nearly every recorded prompt's prediction.
The posterior reads the last :data:`WINDOW` agreements only, since a text's
difficulty drifts.  Before :data:`MIN_EVIDENCE` agreements the posterior's
mean decides: the prior mixes prompts of every kind, and its spread alone
would keep speculation from ever starting, so from ever gathering the
evidence that tells the kinds apart.  Otherwise the step decodes plainly.

**The prompt.**  The first step, if it drafts or if plain stretches are
watched (the draft then reads the prompt anyway), also asks both models for
their laws at the prompt's last :data:`~multidraft.planning.prior.PROMPT_POSITIONS`
tokens (``TreePlan.look_back``: the rows of forwards that read the prompt
anyway).  Their mean agreement conditions the posterior from the second
step on (:mod:`multidraft.planning.prior`, "The prompt"); it is not mixed
into the evidence of generated text, whose agreements run higher.

**Openings.**  A generation's first token is the opening of an answer, which
the draft finds much harder than what follows: in the bundled pair's
recording the agreement there averages 0.51 (T = 0.6), against 0.82 over
all positions, and a 28-deep stopped chain expects 2.9 tokens from it
against 8.1 on average.  So the first step is planned from a second table,
each recorded prompt's rates at the start where its text begins
(``PlanTable.of(..., openings=True)``), mixed by the same prior weights; the
calibration judges that step against the openings' hazards too.

**Copies.**  With ``copying`` (``scheme`` and ``tree`` both "auto", the
token walk) the candidates also include the chain that continues an earlier
occurrence of the text's last tokens (:mod:`multidraft.lookup`), cut to each
of :data:`COPY_DEPTHS` and to the tokens still wanted less one.  Its tokens
per step come from :class:`~multidraft.planning.copying.CopyEvidence`, fed by
every emitted token (the chance the copy proposed at its position had) and
read in the copy's current state (afresh, or going on for r tokens), its
seconds from :func:`~multidraft.planning.cost.copy_step_seconds`.  The margin
against plain decoding reads the copy's first acceptance at the lower
quantile :data:`DOUBT_LEVEL` of its Beta posterior.  Copied stretches are not
watched: the draft falls behind over them and reads them in one forward when
it next drafts (a cost charged to the drafted candidates as any lag is), so a
run of copies costs the target's forwards only.

**Repeated drafts.**  Drafts drawn independently from q can repeat, and a
repeat merges into the child already drawn, so a tree of k drafts per node
has fewer nodes than its shape, and costs less, where q is peaked.  The
table's nodes per level come from the recorded chance that draft i of k is
new, averaged over every recorded prompt (:func:`multidraft.planning.cost.expected_level_nodes`);
a text whose q is flatter than that average (chat, against code) repeats
less and its wide trees cost more than the table says (4 drafts per node at
T = 1: 1.8 distinct on average over the recording, about 2.8 on chat).  So
the planner counts, at every node a step drafted, the repeats among its k
drafts against the sum of 1 - new_k[i] that the table expected there, and
takes every chance of a repeat s = (m + repeats) / (m + expected) times,
m = :data:`REPEAT_PRIOR` (a Gamma prior of mean 1; within
:data:`CALIBRATION_RANGE`, on a grid of ratios :data:`REPEAT_GRID` apart so
that the seconds of a few values of s are computed and kept).  Like the
posterior it reads only steps already taken.

**Lossless.**  The plan of step s is a function of the tokens committed and
the laws seen at steps before s only; it is fixed before step s draws its
drafts.  Given the committed text, step s is then a lossless step of a fixed
(scheme, tree) or a plain draw from p, so its emitted tokens have the
target's law given that text, and by the chain rule so does the whole output.

**Evidence.**  After a speculative step, the agreement sum_y min(p, q) at the
nodes the walk visited (the root and the accepted drafts with children):
positions of text with the target's law, as recorded positions are.  Plain
steps keep p, the law their token was drawn from; the draft has not read
those tokens.  After :data:`LOOK_BACK_AFTER` of them, or at the next
speculative step (which reads them anyway), the step asks the draft for its
law q at each of them (``TreePlan.look_back``: one batched draft forward,
which also brings the draft's cache up to date), their agreements join the
evidence, and the next step is planned afresh.  So a plain stretch is
watched, at the price of the draft reading each of its tokens once, and
speculation resumes where the text becomes easy for the draft (a summary
that starts to copy), not only where a blind probe happens to land.
Watching is worth its price only where speculation could pay on some
plausible text: a plain stretch is watched only if some candidate, at the
prior's upper quantile 1 - :data:`DOUBT_LEVEL` of tokens per step (before
any evidence: a text can change kind), beats plain decoding without the
watching.  Where none does (an engine whose forwards cost in proportion to
their rows, e.g. llama.cpp's quantised CPU kernels, where the draft reading
a token costs a third of the target decoding it), the step decodes plainly and
the draft reads nothing.

**Calibration.**  The posterior can only mix recorded prompts, and the table
assumes that a tree's depths follow recorded text; a prompt easier or harder
than every recorded one is then predicted too low or too high.  The planner
therefore also fits one multiplier s of the per-depth *hazards*, over the
speculative steps since the last plain stretch (a text whose difficulty
changed is judged afresh).  With R_c(d) the current mixture's chance that
candidate c's walk reaches depth d (:attr:`PlanTable.depth_reach`),
h_c(d) = 1 - R_c(d) / R_c(d - 1) is the chance that it ends at depth d - 1
once there (a rejection, or a stopped chain's stop).  A step of c whose walk
reached depth L of a tree cut to depth D was exposed to h_c(1), ..,
h_c(min(L + 1, D)), and ended early (an *event*) if L < D.  Under hazards
s h the events are about Poisson with mean s times the exposure (a
proportional-hazards model), so with a Gamma(k, k) prior on s the estimate is
s = (k + events) / (k + exposure), k = :data:`CALIBRATION_EVENTS`, kept
within :data:`CALIBRATION_RANGE`.  The current mixture is used so that
evidence the posterior has already taken in is not counted twice.  A step
that takes its whole tree adds exposure and no event, so the evidence that a
deeper tree would have gone on is kept: a ratio of realised to predicted
tokens is censored at the depth of the trees that ran, and can never learn
that a deeper one pays.  Every candidate is then predicted, per recorded
prompt j, with hazards min(1, s h_{c,j}(d)) (a hazard of 1, where the tree
ends, stays 1) at depths up to the tokens still wanted less one (the decoder
cuts every tree there: :func:`multidraft.step.within`).  Like the posterior it reads only steps
already taken.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from multidraft import schemes
from multidraft.lookup import continuation
from multidraft.planning.acceptance import PLANNED, STOP_THRESHOLDS
from multidraft.planning.copying import CopyEvidence
from multidraft.planning.cost import (
    autoregressive_step,
    context_breakpoints,
    copy_step_seconds,
    expected_level_nodes,
    linear_step_seconds,
    stop_chain_rates,
    tree_rates,
)
from multidraft.planning.planner import uniform_shapes
from multidraft.planning.prior import PROMPT_POSITIONS, STATE_CELLS, Prior, mean_agreement
from multidraft.planning.profile import Profile
from multidraft.shapes import TreeShape, shape_depth, template_of
from multidraft.step import Step, TreePlan

#: Relative error allowed for the cost model's seconds per step before speculation is chosen.
COST_MARGIN = 0.12
#: Plain steps between re-plans while decoding plainly with no new evidence.
EVERY = 4
#: Agreements observed before the posterior's spread counts against speculation (until then: its mean).
MIN_EVIDENCE = 8
#: The posterior's lower quantile of tokens per step that must still beat plain decoding (Phi(-1)).
DOUBT_LEVEL = 0.1587
#: Largest tree considered online.
MAX_NODES = 64
#: Agreements the posterior reads: the most recent ones (a text's difficulty drifts).
WINDOW = 48
#: Plain tokens after which the draft reads them (one batched forward) and their agreements join the evidence.
LOOK_BACK_AFTER = 16
#: Weight, in events (steps that ended early), of the calibration's prior multiplier of 1.
CALIBRATION_EVENTS = 2.0
#: Bounds of the calibration's hazard multiplier.
CALIBRATION_RANGE = (0.1, 10.0)
#: Longest confidence-stopped chains considered online.
STOP_DEPTHS = (6, 10, 16, 20, 28)
#: Longest chains copied from the text considered online.
COPY_DEPTHS = (4, 8, 16, 28)
#: Weight, in expected repeated drafts, of the prior repeat multiplier of 1 (module docstring: repeated drafts).
REPEAT_PRIOR = 2.0
#: Ratio between neighbouring repeat multipliers the planner prices (it rounds s to a power of this).
REPEAT_GRID = 2.0**0.125


@dataclass(frozen=True)
class Candidate:
    """A speculative configuration, or plain decoding (``scheme=None``); ``stop`` tau > 0: a chain that ends
    after a draft token with q < tau (:mod:`multidraft.step`), ``shape`` its longest form; ``lookup``: a chain
    copied from the text (:mod:`multidraft.lookup`), at most as deep as ``shape``."""

    scheme: str | None
    shape: TreeShape | None
    stop: float = 0.0
    lookup: bool = False


@dataclass
class PlanTable:
    """Per candidate c and recorded prompt j: P(the walk reaches depth d), E nodes verified, P(leaf end) (module
    docstring)."""

    candidates: list[Candidate]
    depth_reach: np.ndarray  # [C, J, D] P(the walk reaches depth d = 1..D); 0 deeper than the candidate
    verified: np.ndarray  # [C, J]
    leaf_end: np.ndarray  # [C, J]
    level_nodes: list[list[float]]  # [C] E nodes per level (the rates' means)
    read: list[list[bool]]  # [C]
    lengths: np.ndarray  # [C, J, D] P(a stopped chain has L = 1..D drafts) per recorded prompt; others: L = "1"
    new: dict[str, list[float]]  # "scheme:k" -> the recorded chance that draft i of k is new [k]
    cells: int = 1  # columns per recorded prompt: 1, or one per local state (J above is prompts * cells)
    _seconds: dict = field(default_factory=dict, repr=False)  # (id(profile), context, s) -> (profile, 3 arrays)

    @functools.cached_property
    def tokens(self) -> np.ndarray:
        """[C, J] E tokens per step: the root's token and one per depth reached."""
        return 1.0 + self.depth_reach.sum(-1)

    @functools.cached_property
    def hazard(self) -> np.ndarray:
        """[C, J, D] per candidate and recorded prompt (:func:`hazards`)."""
        return hazards(self.depth_reach)

    @functools.cached_property
    def depth_groups(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The candidates grouped by the levels L their walks can reach in some column: each group's rows (a mask
        [C]) and hazards [L, G, J], a hazard of 1 (the tree's end) as infinity so that no multiplier lowers it.
        Every level deeper has hazard 1 in every column, so it adds no tokens."""
        levels = (self.depth_reach > 0).any(1)  # [C, D]
        counts = np.where(levels.any(1), levels.shape[1] - np.argmax(levels[:, ::-1], 1), 0)  # [C]
        ends = np.where(self.hazard < 1.0, self.hazard, np.inf)  # a tree's end: 1 under every multiplier s > 0
        by_level = np.ascontiguousarray(ends.transpose(2, 0, 1))  # [D, C, J]: the cumulative product runs over rows
        groups = []
        for count in np.unique(counts[counts > 0]):
            rows = counts == count
            groups.append((rows, by_level[:count, rows]))
        return groups

    def tokens_given(self, scale: float, depth: int) -> np.ndarray:
        """[C, J] E tokens per step with every hazard scaled by ``scale`` (capped at 1) and trees cut to ``depth``
        (module docstring: calibration).  A hazard of 1, where a tree ends, stays 1: no multiplier lets a walk
        go past its tree's last level.  Computed per group of equally deep candidates, to their depth only
        (:attr:`depth_groups`), since every speculative step re-plans with it."""
        if scale == 1.0:  # the recorded reach itself
            return self.tokens if depth >= self.depth_reach.shape[2] else 1.0 + self.depth_reach[..., :depth].sum(-1)
        tokens = np.ones(self.depth_reach.shape[:2])  # [C, J]
        for rows, hazard in self.depth_groups:
            surviving = scale * hazard[:depth]  # [L, G, J]
            np.minimum(surviving, 1.0, out=surviving)
            np.subtract(1.0, surviving, out=surviving)
            tokens[rows] += np.cumprod(surviving, 0, out=surviving).sum(0)
        return tokens

    def length_laws(self, weight: np.ndarray) -> np.ndarray:
        """[C, D] P(a step of candidate c drafts L = 1..D levels) under the columns' ``weight`` [J]: a stopped
        chain's law of lengths, every other candidate's fixed shape (L = "1", the row's first entry)."""
        laws = np.zeros((self.lengths.shape[0], self.lengths.shape[2]))
        laws[:, 0] = weight.sum()
        stopped = self.stopped_rows
        laws[stopped] = np.einsum("cjd,j->cd", self.lengths[stopped], weight)
        return laws

    @functools.cached_property
    def stopped_rows(self) -> np.ndarray:
        """[S] the rows of the candidates that are stopped chains."""
        return np.array([c for c, candidate in enumerate(self.candidates) if candidate.stop], dtype=int)

    @classmethod
    def of(
        cls, prior: Prior, candidates: Sequence[Candidate], *, openings: bool = False, local: bool = False
    ) -> PlanTable:
        """The table of the ``candidates`` the prior can rate (stopped chains need its stop rates at their tau,
        and recorded texts at least as long as they are deep); with ``openings``, each recorded prompt's rates
        where its text begins rather than their mean over its starts (module docstring: openings); with
        ``local``, one column per cell (prompt j, local state s) at j * STATE_CELLS + s, each the mean over
        the cell's starts (its prompt's mean where it has none; with ``openings`` too, the prompt's opening
        in every cell: :mod:`multidraft.planning.prior`, the local state)."""
        prompts = prior.prompts
        count = int(prompts.max()) + 1
        cells = STATE_CELLS if local else 1
        per_prompt = at_openings if openings else mean_over_starts

        def by_column(values, starts) -> np.ndarray:  # [count * cells]
            mean = per_prompt(values, starts, prompts, count)
            if cells == 1:
                return mean
            if openings:
                return np.repeat(mean, cells)
            return mean_over_starts(values, starts, prior.cells, count * cells, fallback=np.repeat(mean, cells))

        columns = count * cells
        rows = {"verified": [], "leaf_end": []}
        kept, level_nodes, read, lengths, reach = [], [], [], [], []
        longest = max([shape_depth(c.shape) for c in candidates if c.stop] + [1])
        deepest = max(shape_depth(c.shape) for c in candidates)
        for candidate in candidates:
            if candidate.stop:
                if candidate.stop not in prior.stops.get("thresholds", ()):
                    continue
                depth = shape_depth(candidate.shape)
                tree = stop_chain_rates(prior.stops, prior.agreement, prior.prompts, candidate.stop, depth)
                if len(tree.starts) == 0:
                    continue  # no recorded text is this long
                by_length = [by_column(column, tree.starts) for column in tree.lengths.T]
                by_length += [np.zeros(columns)] * (longest - depth)
                lengths.append(np.stack(by_length, 1))  # [columns, D]
                level_nodes.append([1.0] * (depth + 1))
                read.append([True] * depth)
            else:
                tree = tree_rates(prior.rates, candidate.scheme, candidate.shape)
                lengths.append(np.eye(longest)[np.zeros(columns, dtype=int)])  # [columns, D]: the fixed shape
                level_nodes.append(tree.level_nodes)
                read.append(tree.read)
            for name in rows:
                rows[name].append(by_column(getattr(tree, name), tree.starts))
            depth_reach = tree.depth_reach.T if candidate.stop else tree.depth_reach  # [D] rows [T] (or numbers)
            by_depth = [by_column(row, tree.starts) for row in depth_reach]
            reach.append(np.stack(by_depth + [np.zeros(columns)] * (deepest - len(by_depth)), 1))  # [columns, deepest]
            kept.append(candidate)
        if not kept:
            raise ValueError("the prior rates none of the candidates (stopped chains need its stop rates)")
        rates = (np.array(rows[name]) for name in rows)
        new = {key: list(entry["new"]) for key, entry in prior.rates.rates.items()}
        return cls(kept, np.stack(reach), *rates, level_nodes, read, np.stack(lengths), new, cells)

    def seconds_at(
        self, profile: Profile, context: float, repeats: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per candidate, seconds per step = (fixed [C, D] * P(length)).sum(-1) + per_verified [C] * E verified
        + per_leaf_end [C] * P(leaf end) (:func:`multidraft.planning.cost.linear_step_seconds`), with every
        chance of a repeated draft taken ``repeats`` times (module docstring: repeated drafts).  Linear in the
        context between the profile's breakpoints, so computed at those only (once per profile and value of
        ``repeats``) and interpolated."""
        points = context_breakpoints(profile)
        if len(points) == 1:
            return self._seconds_exactly(profile, float(points[0]), repeats)
        i = int(np.clip(np.searchsorted(points, context) - 1, 0, len(points) - 2))
        low, high = (self._seconds_exactly(profile, points[j], repeats) for j in (i, i + 1))
        share = (context - points[i]) / (points[i + 1] - points[i])
        return tuple(a + share * (b - a) for a, b in zip(low, high))

    def _seconds_exactly(
        self, profile: Profile, context: float, repeats: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = (id(profile), float(context), float(repeats))
        if key in self._seconds:  # the profile is kept with its arrays, so its id names no other one
            return self._seconds[key][1]
        if repeats == 1.0:
            fixed = np.zeros((self.lengths.shape[0], self.lengths.shape[2]))  # [C, D]
            per_verified, per_leaf_end = np.zeros(len(self.candidates)), np.zeros(len(self.candidates))
            rows = range(len(self.candidates))
        else:  # only trees whose drafts can repeat change
            fixed, per_verified, per_leaf_end = (a.copy() for a in self._seconds_exactly(profile, context, 1.0))
            rows = [
                c for c, candidate in enumerate(self.candidates) if not candidate.stop and self.can_repeat(candidate)
            ]
        for c in rows:
            candidate = self.candidates[c]
            if candidate.stop:  # one row of fixed seconds per length the chain may stop at
                for length in range(1, shape_depth(candidate.shape) + 1):
                    fixed[c, length - 1], per_verified[c], per_leaf_end[c] = linear_step_seconds(
                        profile, candidate.scheme, (1,) * length, [1.0] * (length + 1), [True] * length, context
                    )
                continue
            level_nodes = (
                self.level_nodes[c]
                if repeats == 1.0
                else expected_level_nodes(candidate.shape, functools.partial(self._new, candidate.scheme), repeats)
            )
            fixed[c, 0], per_verified[c], per_leaf_end[c] = linear_step_seconds(
                profile, candidate.scheme, candidate.shape, level_nodes, self.read[c], context
            )
        self._seconds[key] = profile, (fixed, per_verified, per_leaf_end)
        return self._seconds[key][1]

    def _new(self, scheme: str, k: int) -> list[float]:
        return self.new[f"{scheme}:{k}"]

    def can_repeat(self, candidate: Candidate) -> bool:
        """Whether some draft of the candidate's tree is recorded to repeat an earlier one of its node."""
        ks = {k for level in template_of(candidate.shape).levels for k in level if k > 1}
        return any(min(self._new(candidate.scheme, k)) < 1.0 for k in ks)

    def expected_repeats(self, scheme: str, k: int) -> float:
        """E repeated drafts among the k drafts of one node, as recorded: sum_i 1 - new_k[i]."""
        return float(sum(1.0 - n for n in self._new(scheme, k)))


def hazards(reach: np.ndarray) -> np.ndarray:
    """h(d) = 1 - R(d) / R(d - 1), R(0) = 1, from ``reach`` [..., D] = R(1..D): the chance the walk ends at
    depth d - 1 once there (1 where it cannot go on) [..., D]."""
    before = np.concatenate([np.ones_like(reach[..., :1]), reach[..., :-1]], -1)
    return np.where(before > 0, 1.0 - reach / np.where(before > 0, before, 1.0), 1.0)


def mean_over_starts(
    values, starts: np.ndarray | None, prompts: np.ndarray, count: int, fallback: np.ndarray | None = None
) -> np.ndarray:
    """Mean per recorded prompt [J] (or any grouping of the positions into ``count`` groups) of a per-start
    array (a plain number: the same for every group); a group with no start takes ``fallback`` [count], by
    default the mean over all starts."""
    if starts is None or np.ndim(values) == 0:
        return np.full(count, float(np.mean(values)))
    sums = np.bincount(prompts[starts], weights=values, minlength=count)
    counts = np.bincount(prompts[starts], minlength=count)
    empty = float(np.mean(values)) if fallback is None else fallback
    return np.where(counts > 0, sums / np.maximum(counts, 1), empty)


def at_openings(values, starts: np.ndarray | None, prompts: np.ndarray, count: int) -> np.ndarray:
    """Per recorded prompt [J], a per-start array's value at the start where the prompt's text begins (its
    first recorded position); its mean over starts where that is no start (a text shorter than the tree)."""
    out = mean_over_starts(values, starts, prompts, count)
    if starts is None or np.ndim(values) == 0:
        return out
    present, first = np.unique(prompts, return_index=True)  # each recorded prompt's first position
    begins = np.full(count, -1)
    begins[present] = first
    opening = starts == begins[prompts[starts]]  # [T]
    out[prompts[starts[opening]]] = np.asarray(values)[opening]
    return out


def by_prompt(values: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """[C, J] per recorded prompt, the mean of ``values`` [C, J * cells] over its cells weighted by ``cells``
    [J, cells] (rows summing to 1)."""
    return np.einsum("cjs,js->cj", values.reshape(values.shape[0], *cells.shape), cells)


def lower_quantile(values: np.ndarray, weight: np.ndarray, level: float) -> np.ndarray:
    """Per row of ``values`` [..., J], the smallest value whose weight [J] together with that of every smaller
    one reaches ``level`` (the lower ``level`` quantile of the weighted values) [...]."""
    order = np.argsort(values, axis=-1, kind="stable")  # [..., J]
    reached = np.cumsum(weight[order], axis=-1) >= level * float(np.sum(weight)) - 1e-12
    first = np.argmax(reached, axis=-1)[..., None]  # [..., 1]
    return np.take_along_axis(np.take_along_axis(values, order, -1), first, -1)[..., 0]


def candidates_for(
    scheme: str = "auto", shape: TreeShape | None = None, max_nodes: int = MAX_NODES, stops: bool = True
) -> list[Candidate]:
    """The speculative candidates: every planned scheme's chains and uniform trees, or those of one scheme/shape;
    with ``stops`` and no shape given, also ``sps`` chains of :data:`STOP_DEPTHS` stopped at each of
    :data:`multidraft.planning.acceptance.STOP_THRESHOLDS` (the token walk only)."""
    names = list(PLANNED) if scheme == "auto" else [scheme]
    out = []
    for name in names:
        shapes = [shape] if shape is not None else uniform_shapes(PLANNED[name], max_nodes)
        out += [Candidate(name, s) for s in shapes]
        if stops and shape is None and name == "sps":
            out += [Candidate(name, (1,) * depth, tau) for tau in STOP_THRESHOLDS for depth in STOP_DEPTHS]
    return out


@dataclass
class Prediction:
    """What the planner predicted for the plan it chose (tokens per step; 1 for plain decoding)."""

    candidate: Candidate
    tokens_per_step: float
    tokens_per_second: float
    plain_tokens_per_second: float
    index: int = -1  # the candidate's row in the plan table (-1: plain decoding or a copied chain)
    opening: bool = False  # predicted from the openings' table (the generation's first step)
    watch: bool = True  # plain steps keep their laws for the draft to read (module docstring)


@dataclass
class OnlinePlanner:
    """The per-step policy of ``scheme="auto"`` (module docstring): call it for a plan, show it each step."""

    profile: Profile
    prior: Prior
    table: PlanTable
    generator: torch.Generator | None
    max_new_tokens: int
    every: int = EVERY
    adapt: bool = True
    min_evidence: int = MIN_EVIDENCE
    opening: PlanTable | None = None  # the table at the recorded texts' openings, for the first step (None: table)
    copying: bool = True  # chains copied from the text are candidates too (module docstring: copies)
    observed: list[float] = field(default_factory=list)
    prompt_agreement: float | None = None  # the prompt's mean agreement on its last tokens, once read
    predictions: list[Prediction] = field(default_factory=list)  # one per step
    _current: Prediction | None = None
    _plans: dict = field(default_factory=dict)
    _hopes: dict = field(default_factory=dict)  # (the openings' table?, depth) -> :meth:`hopeful`
    _draft_behind: int | None = None  # committed tokens the draft has not read (None: the whole prompt)
    _emitted: int = 0
    _ran: list = field(default_factory=list)  # per speculative step: (row, depths exposed, ended early, opening)
    _unread: list[torch.Tensor | None] = field(default_factory=list)  # per token the draft lags: p [V] if watched
    _fresh: bool = False  # the last step brought agreements of plain tokens: plan the next one afresh
    copies: CopyEvidence = field(default_factory=CopyEvidence)
    _copy: tuple[torch.Tensor, int] = (torch.zeros(0, dtype=torch.int64), 0)  # the text's continuation, its n-gram
    _run: int = 0  # the last committed tokens that were each the copy proposed at their position
    _seq: torch.Tensor | None = None  # the committed tokens the current step started from
    _repeats: tuple[float, float] = (0.0, 0.0)  # repeated drafts seen at drafted nodes, and those expected there

    def __post_init__(self):
        if self.opening is None:
            self.opening = self.table
        elif self.opening.candidates != self.table.candidates or self.opening.cells != self.table.cells:
            raise ValueError("the openings' table must rate the same candidates in the same cells as the plan table")

    @functools.cached_property
    def prior_weight(self) -> np.ndarray:
        """[J] the recorded prompts' weights before any evidence."""
        return self.prior.posterior([])

    @functools.cached_property
    def prior_cells(self) -> np.ndarray:
        """[J, cells] each recorded prompt's cells weighted before any evidence (their shares of its positions)."""
        return self._split(self.prior.cell_posterior([]) if self.table.cells > 1 else self.prior_weight[:, None])[1]

    def mixture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The posterior w [J] of the recorded prompts, each one's cells' weights u [J, cells] given it (rows
        summing to 1), and the table's columns' weights w_j u_js [J * cells] (module docstring; with one cell
        per prompt, u = 1)."""
        seen = self.observed[-WINDOW:]
        if self.table.cells == 1:
            joint = self.prior.posterior(seen, self.prompt_agreement)[:, None]
        else:
            joint = self.prior.cell_posterior(seen, self.prompt_agreement)
        weight, cells = self._split(joint)
        return weight, cells, joint.ravel()

    @staticmethod
    def _split(joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A joint [J, cells] as its marginal [J] and its rows given the prompt (0 where the prompt has none)."""
        weight = joint.sum(1)
        return weight, joint / np.where(weight > 0, weight, 1.0)[:, None]

    def calibration(self, weight: np.ndarray) -> float:
        """s = (k + events) / (k + exposure) under the mixture of the table's columns ``weight`` [J * cells],
        k = :data:`CALIBRATION_EVENTS`, within :data:`CALIBRATION_RANGE` (module docstring)."""
        if not self._ran:
            return 1.0
        rows, exposed, early, opening = (np.array(column) for column in zip(*self._ran))
        reach = np.where(opening[:, None, None], self.opening.depth_reach[rows], self.table.depth_reach[rows])
        hazard = hazards(np.einsum("cjd,j->cd", reach, weight))  # [steps, D]
        exposure = float(np.cumsum(hazard, 1)[np.arange(len(rows)), exposed - 1].sum())
        low, high = CALIBRATION_RANGE
        return min(high, max(low, (CALIBRATION_EVENTS + early.sum()) / (CALIBRATION_EVENTS + exposure)))

    def repeats(self) -> float:
        """s = (m + repeats seen) / (m + repeats expected), m = :data:`REPEAT_PRIOR`, within
        :data:`CALIBRATION_RANGE`, rounded to a power of :data:`REPEAT_GRID` (module docstring)."""
        seen, expected = self._repeats
        low, high = CALIBRATION_RANGE
        ratio = min(high, max(low, (REPEAT_PRIOR + seen) / (REPEAT_PRIOR + expected)))
        return float(REPEAT_GRID ** round(np.log(ratio) / np.log(REPEAT_GRID)))

    def __call__(self, seq: torch.Tensor, steps: Sequence) -> TreePlan:
        first = self._draft_behind is None
        if first:
            self._draft_behind = seq.shape[0]
        copying = self.adapt and self.copying
        self._seq, self._copy = seq, continuation(seq, max(COPY_DEPTHS)) if copying else (seq[:0], 0)
        speculating = self._current is not None and self._current.candidate.scheme is not None
        if self._current is None or (self.adapt and (speculating or self._fresh or len(steps) % self.every == 0)):
            self._current, self._fresh = self.choose(seq.shape[0], self.max_new_tokens - self._emitted), False
        self.predictions.append(self._current)
        candidate = self._current.candidate
        if candidate not in self._plans:
            scheme = None if candidate.scheme is None else schemes.get(candidate.scheme)
            self._plans[candidate] = TreePlan(
                scheme, candidate.shape, self.generator, candidate.stop, 0, candidate.lookup
            )
        drafting = candidate.scheme is not None and not candidate.lookup
        reading = drafting or self._current.watch  # the draft reads the prompt now or later
        if first and self.adapt and self.prior.prompt_agreement and reading:
            return replace(self._plans[candidate], look_back=PROMPT_POSITIONS)
        watched = sum(law is not None for law in self._unread)
        due = drafting or (self._current.watch and watched >= LOOK_BACK_AFTER)
        if watched and due:
            return replace(self._plans[candidate], look_back=len(self._unread))
        return self._plans[candidate]

    def observe(self, step: Step) -> None:
        """Keep the agreements at the nodes the walk visited, at the plain tokens the draft has just read, and the
        chances of the text's continuation (module docstring)."""
        self._emitted += len(step.walk.tokens)
        s = step.driver
        path = [0, *step.walk.path]  # the nodes whose laws p the step's tokens were drawn from
        if self.adapt and self.copying and self._seq is not None:
            self.learn_copies(step.walk.tokens, step.p[s][path])
        if step.target_looked_back is not None and len(step.target_looked_back):  # the prompt's last tokens
            both = step.target_looked_back.shape[0]
            self.prompt_agreement = mean_agreement(step.target_looked_back, step.looked_back[-both:])
            self._fresh = True
        if step.looked_back is not None:  # the draft read every committed token
            read = list(zip(self._unread[-len(step.looked_back) :], step.looked_back[-len(self._unread) :]))
            pairs = [(p, q) for p, q in read if p is not None]
            if pairs:
                p, q = (torch.stack(laws) for laws in zip(*pairs))  # [k, V] each
                self.observed += torch.minimum(p, q).sum(-1).tolist()
                self._fresh = True
                self._ran = []  # the calibration starts again after a plain stretch
            self._unread.clear()
            self._draft_behind = 0
        if step.plans[s].scheme is None or step.plans[s].lookup:
            self._draft_behind += len(step.walk.tokens)
            if step.plans[s].lookup:  # a copy stretch is not watched: its laws are not kept
                self._unread += [None] * len(step.walk.tokens)
            elif self.adapt and self.predictions[-1].watch:
                self._unread += list(step.p[s][path])  # [V] each
            return
        self._draft_behind = 1
        depth, reached = shape_depth(step.plans[s].shape), len(step.walk.tokens) - 1
        chosen = self.predictions[-1]
        self.learn_repeats(chosen.candidate.scheme, step.trees[s].node_drafts.values())
        self._ran.append((chosen.index, min(reached + 1, depth), reached < depth, chosen.opening))
        if not step.walk.visited:
            return
        nodes = step.walk.visited
        self.observed += torch.minimum(step.p[s][nodes], step.q[s][nodes]).sum(-1).tolist()

    def learn_repeats(self, scheme: str, drafts: Sequence[torch.Tensor]) -> None:
        """Count the repeats among each drafted node's k drafts [k] beside those the table expected there."""
        seen, expected = self._repeats
        for row in drafts:
            k = row.shape[0]
            if k > 1:
                seen += k - len(set(row.tolist()))
                expected += self.table.expected_repeats(scheme, k)
        self._repeats = seen, expected

    def learn_copies(self, tokens: Sequence[int], laws: torch.Tensor) -> None:
        """The chance a(j) = p_j(c(j)) of the copy proposed at each emitted position j, from the laws [k, V] its
        ``tokens`` were drawn from (:mod:`multidraft.planning.copying`)."""
        text = torch.cat([self._seq, torch.tensor(tokens, dtype=self._seq.dtype, device=self._seq.device)])
        n = self._seq.shape[0]
        for i, (token, law) in enumerate(zip(tokens, laws)):
            proposed, matched = self._copy if i == 0 else continuation(text[: n + i], 1)
            if matched:
                self.copies.add(matched, float(law[proposed[0]]), self._run)
            self._run = self._run + 1 if matched and int(proposed[0]) == token else 0

    def choose(self, length: int, remaining: int) -> Prediction:
        context = length + remaining / 2
        table = self.opening if self._emitted == 0 else self.table
        weight, cells, columns = self.mixture()  # [J], [J, cells], [J * cells]
        per_column = table.tokens_given(self.calibration(columns), max(remaining - 1, 0))  # [C, J * cells]
        tokens = per_column @ columns  # [C]
        verified, leaf_end = table.verified @ columns, table.leaf_end @ columns
        plain_step = autoregressive_step(self.profile, context)
        behind = self._draft_behind or 1
        catch_up = self.profile.draft(behind, context) - self.profile.draft(1, context)  # beyond a step's own read
        fixed, per_verified, per_leaf_end = table.seconds_at(self.profile, context, self.repeats())
        laws = table.length_laws(columns)  # [C, D] P(length) of stopped chains
        seconds = (fixed * laws).sum(1) + per_verified * verified + per_leaf_end * leaf_end  # [C]
        rates = remaining / (remaining / tokens * seconds + catch_up)  # [C]
        high = self.hopeful(table, max(remaining - 1, 0))
        watch = self.adapt and bool((high / seconds > 1.0 / plain_step).any())  # speculation could pay here
        watching = self.profile.draft(LOOK_BACK_AFTER + 1, context) / LOOK_BACK_AFTER if watch else 0.0
        plain = 1.0 / (plain_step + watching)
        low = tokens
        if len(self.observed) >= self.min_evidence:
            low = np.minimum(low, lower_quantile(by_prompt(per_column, cells), weight, DOUBT_LEVEL))
        copied = self.copy_options(context, remaining)
        candidates = table.candidates + copied[0]
        tokens, low, seconds = (
            np.concatenate([ours, theirs]) for ours, theirs in zip((tokens, low, seconds), copied[1:4])
        )
        rates = np.concatenate([rates, copied[4]])
        safe = low / (seconds * (1 + COST_MARGIN)) > plain  # [C] beats plain decoding with the margins
        if not safe.any():
            return Prediction(Candidate(None, None), 1.0, plain, plain, watch=watch)
        best_c = int(np.argmax(np.where(safe, rates, -np.inf)))
        row = best_c if best_c < len(table.candidates) else -1
        chosen = candidates[best_c]
        return Prediction(
            chosen, float(tokens[best_c]), float(rates[best_c]), plain, row, table is not self.table, watch
        )

    def hopeful(self, table: PlanTable, depth: int) -> np.ndarray:
        """[C] each candidate's tokens per step, trees cut to ``depth``, at the prior's upper quantile
        1 - :data:`DOUBT_LEVEL` before any evidence (module docstring: evidence); kept per table and depth."""
        key = (table is self.opening, min(depth, table.depth_reach.shape[2]))
        if key not in self._hopes:
            uncalibrated = by_prompt(table.tokens_given(1.0, depth), self.prior_cells)  # [C, J]
            self._hopes[key] = lower_quantile(uncalibrated, self.prior_weight, 1.0 - DOUBT_LEVEL)
        return self._hopes[key]

    def copy_options(self, context: float, remaining: int) -> tuple:
        """The chains copied from the text's continuation, cut to each of :data:`COPY_DEPTHS` and to the tokens
        still wanted, less one: their candidates, E tokens per step, those at the lower quantile
        :data:`DOUBT_LEVEL` of the first copy's acceptance, seconds per step, and tokens/s (module docstring:
        copies)."""
        copied, matched = self._copy
        depths = sorted({min(d, copied.shape[0], remaining - 1) for d in COPY_DEPTHS} - {0})
        if not self.copying or not matched or not depths:
            return [], *(np.zeros(0) for _ in range(4))
        depths = np.array(depths)
        tokens = self.copies.tokens(matched, depths, run=self._run)  # [K]
        low = self.copies.tokens(matched, depths, DOUBT_LEVEL, self._run)
        verified = np.minimum(tokens, depths)  # about the nodes the walk verifies at: 1 + E accepted, at most d
        seconds = np.array([copy_step_seconds(self.profile, int(d), v, context) for d, v in zip(depths, verified)])
        candidates = [Candidate("sps", (1,) * int(d), lookup=True) for d in depths]
        return candidates, tokens, low, seconds, tokens / seconds
