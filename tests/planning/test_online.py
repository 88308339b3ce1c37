"""The prior, its posterior, and the online planner: plain decoding as a candidate, and the target's law kept."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from multidraft import schemes, verifiers
from multidraft.decoding import run
from multidraft.lookup import continuation
from multidraft.planning.acceptance import rank_rates, stop_rates
from multidraft.planning.copying import (
    FIRST_PRIOR,
    HAZARD_RANGE,
    LONGEST_HAZARD,
    ONWARD_PRIOR,
    PRIOR_WEIGHT,
    SHARED_FAILURES,
    CopyEvidence,
)
from multidraft.planning.cost import expected_level_nodes, expected_tree, step_seconds, stop_chain_rates
from multidraft.planning.online import (
    CALIBRATION_EVENTS,
    CALIBRATION_RANGE,
    DOUBT_LEVEL,
    REPEAT_GRID,
    REPEAT_PRIOR,
    Candidate,
    OnlinePlanner,
    PlanTable,
    candidates_for,
    hazards,
    lower_quantile,
)
from multidraft.planning.prior import (
    BANDWIDTH,
    FLOOR,
    PROMPT_BANDWIDTH,
    PROMPT_POSITIONS,
    SCALE_FLOOR,
    STATE_BINS,
    STATE_CELLS,
    STATE_POSITIONS,
    TEMPERING,
    Prior,
    agreement_scale,
    state_bin,
)
from multidraft.runners import TorchRunner
from multidraft.shapes import shape_depth
from multidraft.step import TreePlan
from tests.support.exact_law import assert_law, sequence_law
from tests.support.planning import linear_profile

V = 8
POSITIONS = 12  # per recorded prompt


def laws(agreeing: bool, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """[POSITIONS, V] target and draft rows: the draft close to the target, or on other tokens."""
    p = torch.softmax(torch.randn(POSITIONS, V, generator=generator, dtype=torch.float64) * 2, -1)
    if agreeing:
        q = 0.9 * p + 0.1 / V
    else:
        q = torch.softmax(torch.randn(POSITIONS, V, generator=generator, dtype=torch.float64), -1)
        q = torch.where(p > 1 / V, 0.0, q)  # the draft's mass on tokens the target finds unlikely
        q = q / q.sum(-1, keepdim=True)
    return p, q


@pytest.fixture(scope="module")
def prior() -> Prior:
    """Two recorded prompts: one where the draft agrees with the target (prompt 0), one where it does not."""
    generator = torch.Generator().manual_seed(0)
    (p0, q0), (p1, q1) = laws(True, generator), laws(False, generator)
    p, q = torch.cat([p0, p1]), torch.cat([q0, q1])
    rates = rank_rates(p, q, temperature=1.0, draws=8, sequence=[0] * POSITIONS + [1] * POSITIONS)
    agreement = torch.minimum(p, q).sum(-1).tolist()
    return Prior(rates, agreement, ["easy", "hard"], "synthetic")


def test_the_posterior_follows_the_evidence(prior):
    agreement = np.asarray(prior.agreement)
    assert np.allclose(prior.posterior([]), [0.5, 0.5])
    easy = prior.posterior(agreement[:4])
    hard = prior.posterior(agreement[POSITIONS : POSITIONS + 4])
    assert easy[0] > 0.95 and hard[1] > 0.95
    assert prior.kind_weights(agreement[:4])["easy"] == pytest.approx(easy[0])


def test_agreements_are_compared_on_the_log_scale(prior):
    """x = log(1 - a + eps): 0.98 and 0.999 lie apart; rounding above 1 reads as 1; the posterior is the closed
    form of the kernel densities on that scale."""
    assert agreement_scale([1.0, 1.0 + 1e-12, 0.99]).tolist() == pytest.approx(
        [np.log(SCALE_FLOOR), np.log(SCALE_FLOOR), np.log(0.02)], rel=1e-12
    )
    assert agreement_scale([0.98])[0] - agreement_scale([0.999])[0] > 2 * BANDWIDTH
    observed = [0.93, 0.2, 0.95]
    x, y = agreement_scale(prior.agreement), agreement_scale(observed)
    log_weight = []
    for j in range(2):
        mine = x[prior.prompts == j]
        density = np.exp(-0.5 * ((y[:, None] - mine[None]) / BANDWIDTH) ** 2).mean(1) / (BANDWIDTH * np.sqrt(2 * np.pi))
        log_weight.append(TEMPERING * np.log(density + FLOOR).sum())
    expected = np.exp(np.array(log_weight) - max(log_weight))
    assert prior.posterior(observed) == pytest.approx(expected / expected.sum(), rel=1e-12)


def test_each_position_has_the_state_of_the_agreements_before_it(prior):
    x = agreement_scale(prior.agreement)
    for t in range(2 * POSITIONS):
        begins = (t // POSITIONS) * POSITIONS
        if t == begins:
            assert np.isnan(prior.states[t]) and prior.cells[t] == (t // POSITIONS) * STATE_CELLS + STATE_BINS
        else:
            assert prior.states[t] == pytest.approx(x[max(begins, t - STATE_POSITIONS) : t].mean(), rel=1e-12)
            assert prior.cells[t] == (t // POSITIONS) * STATE_CELLS + state_bin(prior.states[t : t + 1])[0]
    low, high = np.log(SCALE_FLOOR), np.log1p(SCALE_FLOOR)
    assert state_bin(np.array([low, high, 0.5 * (low + high), np.nan])).tolist() == [
        0,
        STATE_BINS - 1,
        STATE_BINS // 2,
        STATE_BINS,
    ]


def test_the_joint_posterior_of_prompt_and_local_state(prior):
    """P(j, t) ∝ w_j / T_j phi((s_t - s*) / h) summed into cells, against a loop over positions; with no evidence
    the prompts' weights over their cells' shares; the local state moves weight to the prompt whose positions
    are in it."""
    shares = np.bincount(prior.cells, minlength=2 * STATE_CELLS).reshape(2, STATE_CELLS) / POSITIONS
    assert prior.cell_posterior([]) == pytest.approx(0.5 * shares, rel=1e-12)
    agreement = list(prior.agreement)
    observed = agreement[POSITIONS : POSITIONS + 8] + agreement[:6]  # hard so far, easy at last
    weight = prior.posterior(observed)
    here = agreement_scale(observed[-STATE_POSITIONS:]).mean()
    expected = np.zeros(2 * STATE_CELLS)
    for t in range(2 * POSITIONS):
        if not np.isnan(prior.states[t]):
            j = t // POSITIONS
            near = np.exp(-0.5 * ((prior.states[t] - here) / BANDWIDTH) ** 2)
            expected[prior.cells[t]] += weight[j] / POSITIONS * near
    joint = prior.cell_posterior(observed)
    assert joint.ravel() == pytest.approx(expected / expected.sum(), rel=1e-9)
    assert joint.sum(1)[0] > 0.95 and weight[0] < 0.05  # the last agreements look like the easy prompt's


def test_the_local_table_holds_each_cells_mean(prior):
    """A cell's entry is the mean over its starts, its prompt's mean where it has none; the openings' local
    table repeats each prompt's opening in all its cells."""
    chain = [Candidate("sps", (1, 1))]
    by_prompt = PlanTable.of(prior, chain)
    local, opening = PlanTable.of(prior, chain, local=True), PlanTable.of(prior, chain, openings=True, local=True)
    assert local.cells == opening.cells == STATE_CELLS and local.tokens.shape == (1, 2 * STATE_CELLS)
    per_start = stop_free_tokens(prior)  # [P] E tokens of the chain of two at each start (NaN: no start)
    for cell in range(2 * STATE_CELLS):
        starts = np.flatnonzero((prior.cells == cell) & ~np.isnan(per_start))
        expected = per_start[starts].mean() if len(starts) else by_prompt.tokens[0, cell // STATE_CELLS]
        assert local.tokens[0, cell] == pytest.approx(expected, rel=1e-12)
        opened = PlanTable.of(prior, chain, openings=True).tokens[0, cell // STATE_CELLS]
        assert opening.tokens[0, cell] == pytest.approx(opened, rel=1e-12)


def stop_free_tokens(prior) -> np.ndarray:
    """[P] E tokens of an ``sps`` chain of two started at each recorded position (NaN at a text's last)."""
    accept = np.asarray(prior.rates.rates["sps:1"]["by_position"])[:, 0]  # [P]
    out = np.full(2 * POSITIONS, np.nan)
    for t in range(2 * POSITIONS):
        if t % POSITIONS < POSITIONS - 1:
            out[t] = 1 + accept[t] + accept[t] * accept[t + 1]
    return out


def test_the_planner_mixes_its_cells_by_the_joint_posterior(prior):
    online = planner(prior, linear_profile(0.001, 0.001))
    online.observed = list(prior.agreement[POSITIONS : POSITIONS + 6]) + list(prior.agreement[2:6])
    chosen = online.choose(10, 64)
    columns = prior.cell_posterior(online.observed).ravel()
    predicted = online.table.tokens_given(online.calibration(columns), 63) @ columns
    assert chosen.candidate.scheme is not None
    assert chosen.tokens_per_step == pytest.approx(predicted[chosen.index], rel=1e-12)


def test_weighted_rates_are_the_mixture_of_the_prompts(prior):
    """One-hot weights give the prompt's own rates; the posterior mixes the two."""
    both = expected_tree(prior.rates, "rrs", (2, 2))[0]
    alone = [
        expected_tree(prior.rates.weighted(np.repeat(np.eye(2)[j], POSITIONS)), "rrs", (2, 2))[0] for j in range(2)
    ]
    assert alone[0] > both > alone[1]
    table = PlanTable.of(prior, [Candidate("rrs", (2, 2))])
    assert table.tokens[0].tolist() == pytest.approx(alone, rel=1e-9)


def planner(prior, profile, *, every=4, max_new_tokens=64, adapt=True, min_evidence=8, copying=False) -> OnlinePlanner:
    """The planner with its table per (prompt, local state) cell, as ``scheme="auto"`` builds it (one table
    for every step: no openings' table); chains copied from the text are candidates with ``copying``."""
    table = PlanTable.of(prior, candidates_for("auto", None, max_nodes=8), local=True)
    return OnlinePlanner(
        profile,
        prior,
        table,
        None,
        max_new_tokens,
        every=every,
        adapt=adapt,
        min_evidence=min_evidence,
        copying=copying,
    )


def test_plain_decoding_wins_where_no_tree_can_pay(prior):
    """Draft forwards as dear as the target's: every tree loses, and the planner decodes plainly."""
    choice = planner(prior, linear_profile(0.0, 0.1)).choose(10, 64)
    assert choice.candidate == Candidate(None, None) and choice.tokens_per_step == 1.0


def test_a_cheap_agreeing_draft_is_used_and_evidence_of_disagreement_turns_it_off(prior):
    online = planner(prior, linear_profile(0.001, 0.001))
    online.observed = list(prior.agreement[:6])  # the prompt looks like the easy one
    assert online.choose(10, 64).candidate.scheme is not None
    online.observed = list(prior.agreement[POSITIONS : POSITIONS + 6])  # like the hard one
    choice = online.choose(10, 64)
    assert choice.candidate.scheme is None or choice.tokens_per_step < 1.3


def three_tokens(runners, prompt: torch.Tensor, online: OnlinePlanner, generator):
    """Four tokens of ``prompt`` from the decoder's loop with ``online`` planning every step (the laws read the
    first three; the fourth lets a first step draft a whole 3-deep tree)."""
    return run(
        *runners,
        prompt,
        frozenset(),
        online,
        verifiers.get("token"),
        generator,
        temperature=1.0,
        top_k=None,
        top_p=None,
        max_new_tokens=4,
        label=("auto", "auto"),
        depth=3,
    )


class Watched:
    """An online planner whose plans' look_back are counted."""

    def __init__(self, online: OnlinePlanner):
        self.online, self.looked_back = online, 0

    def __call__(self, seq, steps):
        plan = self.online(seq, steps)
        self.looked_back += plan.look_back
        return plan

    def observe(self, step):
        self.online.observe(step)


@pytest.mark.parametrize("prompted", [False, True], ids=["", "prompt-conditioned"])
def test_the_first_tokens_keep_the_target_law_with_adaptation_on(pair, one_thread, prior, monkeypatch, prompted):
    """Re-planning at every step, between plain decoding and trees, from what earlier steps saw, including the
    draft's laws at plain tokens (read back after every plain token here) and, with a prior that keeps its
    prompts' agreements, the models' laws at the prompt's last tokens."""
    from multidraft.planning import online as online_module

    monkeypatch.setattr(online_module, "LOOK_BACK_AFTER", 1)
    if prompted:
        prior = dataclasses.replace(prior, prompt_agreement=[0.9, 0.3])
    target, draft = pair
    prompt = torch.tensor([3, 1, 4])
    law = sequence_law(target, prompt, 3, temperature=1.0)
    runners = TorchRunner(target), TorchRunner(draft)
    generator = torch.Generator().manual_seed(5)
    profile = linear_profile(0.02, 0.005)  # near the boundary: the evidence decides
    samples, kinds, looked_back = [], set(), 0
    for _ in range(800):
        # planned as if 8 tokens were wanted, so that the last steps still expect to speculate later and watch
        online = Watched(planner(prior, profile, every=1, max_new_tokens=8, min_evidence=1))
        online.online.generator = generator
        result = three_tokens(runners, prompt, online, generator)
        samples.append(result.tokens)
        kinds |= {bool(name) for name in result.plans}
        looked_back += online.looked_back
    assert kinds == {True, False}, "the test should see both plain and speculative steps"
    assert looked_back > (2 * 800 if prompted else 0), "the test should see the draft read tokens back"
    assert_law(samples, law)


def stop_enumeration(p: torch.Tensor, q: torch.Tensor, tau: float) -> tuple[float, float, float, list[float]]:
    """(E tokens, E nodes verified, P(leaf end), P(length L)) of a chain of len(p) drafts stopped at tau,
    by enumerating every draft sequence: draft d ~ q[d], accepted with min(1, p / q) (the token walk)."""
    depth = p.shape[0]
    totals = {"tokens": 0.0, "verified": 0.0, "leaf": 0.0, "lengths": [0.0] * depth}

    def walk(d: int, chance: float, accepted: bool, tokens: int, verified: int) -> None:
        for x in range(p.shape[1]):
            draw = float(q[d, x])
            if draw == 0:
                continue
            ok = min(1.0, float(p[d, x]) / draw)
            for accept, weight in ((True, ok), (False, 1 - ok)):
                if weight == 0:
                    continue
                keep = accepted and accept
                share = chance * draw * weight
                goes_on = draw >= tau and d + 1 < depth
                reached = keep and goes_on  # the walk enters node d + 1 and verifies there
                if goes_on:
                    walk(d + 1, share, keep, tokens + keep, verified + reached)
                else:
                    totals["tokens"] += share * (tokens + keep)
                    totals["verified"] += share * verified
                    totals["leaf"] += share * keep
                    totals["lengths"][d] += share

    walk(0, 1.0, True, 1, 1)
    return totals["tokens"], totals["verified"], totals["leaf"], totals["lengths"]


def test_stopped_chain_rates_are_those_of_every_draft_sequence():
    """The closed forms of stop_chain_rates against an enumeration of a 3-deep chain over 6 tokens (+ tail)."""
    generator = torch.Generator().manual_seed(3)
    depth, tau = 3, 0.3
    p = torch.softmax(torch.randn(depth, 6, generator=generator, dtype=torch.float64) * 2, -1)
    q = torch.softmax(torch.randn(depth, 6, generator=generator, dtype=torch.float64) * 2, -1)
    tail = torch.zeros(depth, 1, dtype=torch.float64)
    stops = stop_rates(torch.cat([p, tail], 1), torch.cat([q, tail], 1), thresholds=(tau,))
    agreement = torch.minimum(p, q).sum(-1).tolist()
    rates = stop_chain_rates(stops, agreement, [0] * depth, tau, depth)
    tokens, verified, leaf, lengths = stop_enumeration(p, q, tau)
    assert rates.starts.tolist() == [0]
    assert rates.tokens[0] == pytest.approx(tokens, abs=1e-12)
    assert rates.verified[0] == pytest.approx(verified, abs=1e-12)
    assert rates.leaf_end[0] == pytest.approx(leaf, abs=1e-12)
    assert rates.lengths[0].tolist() == pytest.approx(lengths, abs=1e-12)


def test_stop_rates_refuse_too_few_kept_tokens():
    """With fewer than 2 / tau kept tokens a tail token could be confident: refused, not guessed."""
    rows = torch.full((2, 5), 0.2, dtype=torch.float64)  # 4 kept tokens and a tail of 0.2
    with pytest.raises(ValueError, match="at least 10 kept tokens"):
        stop_rates(rows, rows, thresholds=(0.2,))


def patchy_prior() -> Prior:
    """Easy runs (the draft confident and right) broken by hard positions (the draft unsure and wrong)."""
    easy_p = torch.tensor([0.97, 0.01, 0.01, 0.01, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    hard_p = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    hard_q = torch.tensor([0.25, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    rows_p, rows_q = [], []
    for t in range(4 * POSITIONS):
        hard = t % 4 == 3
        rows_p.append(hard_p if hard else easy_p)
        rows_q.append(hard_q if hard else easy_p)
    p, q = torch.stack(rows_p), torch.stack(rows_q)
    tail = torch.zeros(p.shape[0], 1, dtype=torch.float64)
    sequence = [t // (2 * POSITIONS) for t in range(4 * POSITIONS)]
    rates = rank_rates(p, q, temperature=1.0, draws=8, sequence=sequence)
    agreement = torch.minimum(p, q).sum(-1).tolist()
    stops = stop_rates(torch.cat([p, tail], 1), torch.cat([q, tail], 1), thresholds=(0.4, 0.6))
    return Prior(rates, agreement, ["patchy", "patchy"], "synthetic", stops=stops)


def test_a_chain_that_stops_where_the_draft_doubts_wins_on_patchy_text():
    """Fixed chains draft on past the hard positions; the stopped chain ends there, so it is chosen."""
    prior = patchy_prior()
    table = PlanTable.of(prior, candidates_for("auto", None, max_nodes=16))
    assert {c.stop for c in table.candidates} == {0.0, 0.4, 0.6}  # no stop rates at 0.2: not rated
    online = OnlinePlanner(linear_profile(0.002, 0.03), prior, table, None, 64)
    choice = online.choose(10, 64)
    assert choice.candidate.scheme == "sps" and choice.candidate.stop in (0.4, 0.6)


def test_the_first_tokens_keep_the_target_law_with_stopped_chains(pair, one_thread):
    """Re-planning at every step between plain decoding and chains that stop on the draft's confidence."""
    target, draft = pair
    prompt = torch.tensor([3, 1, 4])
    law = sequence_law(target, prompt, 3, temperature=1.0)
    runners = TorchRunner(target), TorchRunner(draft)
    generator = torch.Generator().manual_seed(6)
    prior = patchy_prior()
    candidates = [Candidate("sps", (1, 1, 1), 0.4), Candidate("sps", (1, 1), 0.6)]
    samples, plans = [], set()
    for _ in range(800):
        table = PlanTable.of(prior, candidates)
        online = OnlinePlanner(linear_profile(0.02, 0.001), prior, table, generator, 4, every=1, min_evidence=1)
        result = three_tokens(runners, prompt, online, generator)
        samples.append(result.tokens)
        plans |= set(result.plans)
    assert any(name.endswith("@0.4") or name.endswith("@0.6") for name in plans), plans
    assert_law(samples, law)


def test_the_tables_seconds_are_the_cost_models_at_any_context():
    """seconds_at (linear in nodes verified, P(leaf end) and the context between breakpoints) against
    step_seconds evaluated directly, for trees and for stopped chains (a mixture over their lengths)."""
    prior = patchy_prior()
    table = PlanTable.of(prior, candidates_for("auto", None, max_nodes=16))
    profile = fake_profile_with_slopes()
    weight = np.array([0.3, 0.7])
    for context, repeats in itertools.product((5.0, 300.0, 900.0), (1.0, 0.5, 3.0)):
        fixed, per_verified, per_leaf_end = table.seconds_at(profile, context, repeats)
        verified, leaf_end = table.verified @ weight, table.leaf_end @ weight
        for c, candidate in enumerate(table.candidates):
            if candidate.stop:
                lengths = weight @ table.lengths[c]
                direct = sum(
                    share
                    * step_seconds(
                        profile, "sps", (1,) * n, [1.0] * (n + 1), verified[c], leaf_end[c], [True] * n, context
                    )
                    for n, share in enumerate(lengths, start=1)
                )
            else:
                new = functools.partial(table._new, candidate.scheme)
                direct = step_seconds(
                    profile,
                    candidate.scheme,
                    candidate.shape,
                    expected_level_nodes(candidate.shape, new, repeats),
                    verified[c],
                    leaf_end[c],
                    table.read[c],
                    context,
                )
            laws = np.einsum("jd,j->d", table.lengths[c], weight)
            mine = (fixed[c] * laws).sum() + per_verified[c] * verified[c] + per_leaf_end[c] * leaf_end[c]
            assert mine == pytest.approx(direct, rel=1e-12), (candidate, context, repeats)


def test_drafts_repeated_less_often_than_recorded_make_wide_trees_dearer(prior):
    """Each drafted node's repeats are counted against sum_i 1 - new_k[i]; s = (m + seen) / (m + expected), on
    the grid; with s < 1 a kseq tree has more nodes and costs more, a chain costs the same."""
    candidates = [Candidate("kseq", (4, 4)), Candidate("sps", (1, 1, 1))]
    table = PlanTable.of(prior, candidates)
    online = OnlinePlanner(fake_profile_with_slopes(), prior, table, None, 64)
    assert online.repeats() == 1.0
    expected = table.expected_repeats("kseq", 4)
    assert expected == pytest.approx(sum(1 - n for n in prior.rates.new("kseq", 4)))
    all_new = {node: torch.tensor([1, 2, 3, 4]) + 4 * node for node in range(5)}  # five nodes, no repeat
    online.learn_repeats("kseq", all_new.values())
    ratio = REPEAT_PRIOR / (REPEAT_PRIOR + 5 * expected)
    assert online.repeats() == pytest.approx(REPEAT_GRID ** round(np.log(ratio) / np.log(REPEAT_GRID)))
    assert online.repeats() < 1.0
    online.learn_repeats("sps", [torch.tensor([3])])  # a chain's nodes draw one draft: nothing to count
    assert online._repeats == (0.0, pytest.approx(5 * expected))
    base, fewer = (table.seconds_at(online.profile, 100.0, s)[0] for s in (1.0, online.repeats()))
    assert fewer[0, 0] > base[0, 0] and fewer[1, 0] == base[1, 0]
    nodes = expected_level_nodes((4, 4), functools.partial(table._new, "kseq"), 0.0)
    assert nodes == [1.0, 4.0, 16.0]  # no repeat at all: the whole shape
    online.learn_repeats("kseq", [torch.tensor([5, 5, 5, 5])] * 40)  # far more repeats than recorded
    assert online.repeats() > 1.0


def fake_profile_with_slopes():
    """Forward costs that change slope with the context and the queries, and every overhead non-zero."""
    profile = linear_profile(0.002, 0.01)
    queries = profile.target.queries
    profile.target.contexts = [0, 256, 512]
    profile.target.seconds = [[0.1 + 0.002 * q + 0.0001 * c * (1 + (q > 2)) for q in queries] for c in (0, 256, 512)]
    profile.draft.contexts = [0, 128]
    profile.draft.seconds = [[0.01 + 0.001 * q for q in queries], [0.02 + 0.003 * q for q in queries]]
    over = profile.overheads
    over.update(laws_call=1e-4, laws_row=2e-5, tree_level=3e-4, keep_path=5e-4)
    over["drafts"] = {key: [1e-4, 3e-5] for key in over["drafts"]}
    over["verify"] = {key: 7e-5 for key in over["verify"]}
    return profile


def whole_tree_step(plan) -> SimpleNamespace:
    """What the planner reads of a speculative step whose walk took every level of ``plan``'s tree."""
    depth = shape_depth(plan.shape)
    walk = SimpleNamespace(tokens=list(range(depth + 1)), visited=[], path=list(range(1, depth + 1)))
    uniform = [torch.full((depth + 1, V), 1.0 / V)]  # p at the root and along the path
    chain = SimpleNamespace(node_drafts={node: torch.tensor([node + 1]) for node in range(depth)})  # k = 1
    return SimpleNamespace(
        driver=0,
        plans=[plan],
        trees=[chain],
        walk=walk,
        p=uniform,
        looked_back=torch.zeros(0, V),
        target_looked_back=None,
    )


def test_steps_that_take_their_whole_tree_lower_the_hazards_and_raise_every_prediction(prior):
    """Four steps that took their whole tree: exposure, no event, so s = k / (k + exposure) < 1 and every
    candidate is predicted more; four that ended at the root: four events, s > 1."""
    online = planner(prior, linear_profile(0.001, 0.001))
    before = online.choose(10, 64)
    weight = online.mixture()[2]  # no agreements seen: the prior's weights of the table's columns
    assert online.calibration(weight) == 1.0
    assert online.table.tokens[before.index] @ weight == pytest.approx(before.tokens_per_step)
    plan = online(torch.zeros(10, dtype=torch.long), [])  # the step's prediction is ``before``'s
    assert plan.scheme is not None and online.predictions[-1] == before
    for _ in range(4):
        online.observe(whole_tree_step(plan))
    depth = shape_depth(plan.shape)
    reach = np.einsum("jd,j->d", online.table.depth_reach[before.index], weight)  # [D]
    exposure = 4 * hazards(reach)[:depth].sum()
    scale = online.calibration(weight)
    assert scale == pytest.approx(CALIBRATION_EVENTS / (CALIBRATION_EVENTS + exposure)) and scale < 1
    after = online.choose(10, 64)
    assert after.tokens_per_second > before.tokens_per_second
    assert (online.table.tokens_given(scale, 63) >= online.table.tokens - 1e-12).all()
    online._ran = [(before.index, 1, True, False)] * 4  # four steps whose walk ended at the root
    assert online.calibration(weight) == pytest.approx(
        (CALIBRATION_EVENTS + 4) / (CALIBRATION_EVENTS + 4 * hazards(reach)[0])
    )


def test_scaled_hazards_give_the_closed_form_of_a_chain(prior):
    """A chain of two with per-depth reach R(1), R(2): with hazards scaled by s, E tokens =
    1 + (1 - s h1) + (1 - s h1)(1 - s h2), h1 = 1 - R(1), h2 = 1 - R(2) / R(1), per recorded prompt."""
    table = PlanTable.of(prior, [Candidate("sps", (1, 1))])
    reach = table.depth_reach[0]  # [J, 2]
    h1, h2 = 1 - reach[:, 0], 1 - reach[:, 1] / reach[:, 0]
    for s in (0.5, 1.0, 1.7):
        first = 1 - np.minimum(1, s * h1)
        expected = 1 + first + first * (1 - np.minimum(1, s * h2))
        assert table.tokens_given(s, 2)[0] == pytest.approx(expected, rel=1e-12)
    assert table.tokens_given(1.0, 2)[0] == pytest.approx(table.tokens[0], rel=1e-12)
    assert table.tokens_given(0.5, 1)[0] == pytest.approx(1 + 1 - np.minimum(1, 0.5 * h1), rel=1e-12)


def test_a_shallow_tree_taken_whole_teaches_that_a_deeper_one_pays(prior):
    """Censoring: a chain of one that always takes its draft emits at most 2 tokens, so a ratio of realised
    to predicted tokens could not exceed 2 / predicted; the hazards learn that the text goes on, and a deeper
    chain's prediction rises above what the shallow chain's ratio would give it."""
    table = PlanTable.of(prior, [Candidate("sps", (1,)), Candidate("sps", (1, 1, 1, 1))])
    online = OnlinePlanner(linear_profile(0.001, 0.001), prior, table, None, 64)
    weight = prior.posterior([])
    online._ran = [(0, 1, False, False)] * 12  # twelve steps of the chain of one, each taking its draft
    scale = online.calibration(weight)
    mixed = table.tokens @ weight  # [2]
    ratio = 2.0 / mixed[0]  # realised over predicted tokens of the shallow chain, its largest possible value
    assert table.tokens_given(scale, 63)[1] @ weight > 1 + ratio * (mixed[1] - 1)


def plain_step(plan, p_row: torch.Tensor, looked_back: torch.Tensor | None = None) -> SimpleNamespace:
    """What the planner reads of a plain step that drew its token from ``p_row`` [V]."""
    walk = SimpleNamespace(tokens=[7], visited=[], path=[])
    return SimpleNamespace(
        driver=0, plans=[plan], walk=walk, p=[p_row[None]], looked_back=looked_back, target_looked_back=None
    )


def test_plain_tokens_are_watched_and_speculation_resumes_where_the_draft_agrees(prior, monkeypatch):
    """After LOOK_BACK_AFTER plain tokens the plan asks the draft for its laws there; their agreements join
    the evidence, and the next step, planned afresh, speculates once the text looks like the easy prompt."""
    from multidraft.planning import online as online_module

    monkeypatch.setattr(online_module, "LOOK_BACK_AFTER", 8)
    generator = torch.Generator().manual_seed(0)
    (easy_p, easy_q), _ = laws(True, generator), laws(False, generator)  # the prior's own prompts
    online = planner(prior, linear_profile(0.002, 0.02))
    online.observed = list(prior.agreement[POSITIONS : POSITIONS + 8])  # so far the text looks like the hard prompt
    seq = torch.zeros(10, dtype=torch.long)
    for t in range(8):
        plan = online(seq, list(range(t)))
        assert plan.scheme is None and plan.look_back == 0
        online.observe(plain_step(plan, easy_p[t].float()))
    plan = online(seq, list(range(8)))
    assert plan.scheme is None and plan.look_back == 8  # the plain step reads the 8 tokens with the draft
    before = len(online.observed)
    online.observe(plain_step(plan, easy_p[8].float(), looked_back=easy_q[:8].float()))
    agreements = torch.minimum(easy_p[:8], easy_q[:8]).sum(-1)
    assert online.observed[before:] == pytest.approx(agreements.tolist(), abs=1e-6)
    assert online._draft_behind == 1 and len(online._unread) == 1  # the draft lacks the newest token only
    resumed = online(seq, list(range(9)))  # step 9: not a re-planning step by the count, but fresh evidence
    assert resumed.scheme is not None and resumed.look_back == 1


def test_copied_stretches_are_not_watched(prior, monkeypatch):
    """A copy step's tokens are not watched: they do not count towards a look-back, and when the draft reads
    the stretch the agreements are those of the plain tokens only, each with the draft's row at its position."""
    from multidraft.planning import online as online_module

    monkeypatch.setattr(online_module, "LOOK_BACK_AFTER", 4)
    generator = torch.Generator().manual_seed(0)
    (easy_p, easy_q), _ = laws(True, generator), laws(False, generator)
    online = planner(prior, linear_profile(0.002, 0.02))
    online.observed = list(prior.agreement[POSITIONS : POSITIONS + 8])  # the text looks like the hard prompt
    seq = torch.zeros(10, dtype=torch.long)
    copy = TreePlan(schemes.get("sps"), (1,) * 3, None, lookup=True)
    copied = SimpleNamespace(
        driver=0, plans=[copy], walk=SimpleNamespace(tokens=[1, 2, 3], visited=[], path=[1, 2]), p=[easy_p[:4]],
        looked_back=None, target_looked_back=None,
    )  # fmt: skip
    for t in (0, 1):
        online.observe(plain_step(online(seq, list(range(t))), easy_p[t].float()))
    online.observe(copied)
    for t in (5, 6):
        plan = online(seq, list(range(t)))
        assert plan.scheme is None and plan.look_back == 0  # 2 and then 3 watched tokens: not due yet
        online.observe(plain_step(plan, easy_p[t].float()))
    plan = online(seq, list(range(7)))
    assert plan.look_back == 7  # 4 watched tokens: the draft reads all 7 it lacks
    before = len(online.observed)
    online.observe(plain_step(plan, easy_p[7].float(), looked_back=easy_q[:7].float()))
    watched = [0, 1, 5, 6]
    agreements = torch.minimum(easy_p[watched], easy_q[watched]).sum(-1)
    assert online.observed[before:] == pytest.approx(agreements.tolist(), abs=1e-6)


def test_plain_tokens_are_not_watched_where_no_candidate_could_pay(prior, monkeypatch):
    """Draft forwards as dear as the target's (a llama.cpp-like engine): even the easy prompt's predictions lose
    to plain decoding, so the draft reads nothing: plain steps keep no laws and never look back."""
    from multidraft.planning import online as online_module

    monkeypatch.setattr(online_module, "LOOK_BACK_AFTER", 4)
    online = planner(prior, linear_profile(0.0, 0.1))
    seq, row = torch.zeros(10, dtype=torch.long), torch.full((V,), 1 / V)
    for t in range(12):
        plan = online(seq, list(range(t)))
        assert plan.scheme is None and plan.look_back == 0
        online.observe(plain_step(plan, row))
    assert not online._unread and not online.predictions[-1].watch
    hopeful = planner(prior, linear_profile(0.002, 0.02))  # cheap drafts: the easy prompt would pay, so watch
    hopeful.observed = list(prior.agreement[POSITIONS : POSITIONS + 8])
    choice = hopeful.choose(10, 64)
    assert choice.candidate.scheme is None and choice.watch


def test_predictions_by_depth_group_are_those_of_every_level():
    """Scaled hazards computed per group of equally deep candidates, to their depth only, give the tokens of
    the product over every level of the table (1e-12), and the laws of lengths those of the whole table."""
    candidates = [Candidate("sps", (1,)), Candidate("kseq", (2, 2)), Candidate("sps", (1,) * 4)]
    table = PlanTable.of(patchy_prior(), candidates + [Candidate("sps", (1,) * 6, 0.4)])
    assert (sum(rows for rows, _ in table.depth_groups) == 1).all() and table.stopped_rows.tolist() == [3]
    for scale, depth in itertools.product((0.1, 0.7, 1.0, 1.6, 10.0), (0, 1, 3, 63)):
        hazard = table.hazard[..., :depth]
        surviving = np.cumprod(1.0 - np.where(hazard < 1.0, np.minimum(1.0, scale * hazard), 1.0), -1)
        assert table.tokens_given(scale, depth) == pytest.approx(1.0 + surviving.sum(-1), rel=1e-12, abs=1e-12)
    weight = np.random.default_rng(0).random(table.lengths.shape[1])
    assert table.length_laws(weight) == pytest.approx(np.einsum("cjd,j->cd", table.lengths, weight), abs=1e-12)


def test_calibrated_predictions_never_exceed_what_a_step_can_emit(prior):
    """However easy the text has been, a tree of depth D is never predicted more than D + 1 tokens a step, nor
    more than the tokens still wanted; a shallower tree's end is no hazard that a multiplier can lower."""
    table = PlanTable.of(prior, [Candidate("sps", (1, 1)), Candidate("sps", (1,) * 4)])
    online = OnlinePlanner(linear_profile(0.001, 0.001), prior, table, None, 64)
    uncalibrated = online.choose(10, 64).tokens_per_step
    online._ran = [(1, 4, False, False)] * 1000  # the hazards' multiplier at its lower bound
    scale = online.calibration(prior.posterior([]))
    assert scale == CALIBRATION_RANGE[0]
    assert uncalibrated < online.choose(10, 64).tokens_per_step <= 5.0
    assert (table.tokens_given(scale, 63) <= np.array([[3.0], [5.0]]) + 1e-12).all()
    assert online.choose(10, 2).tokens_per_step <= 2.0


def test_a_candidate_that_beats_plain_decoding_with_the_margins_runs_when_the_fastest_does_not(prior):
    """The fastest by its mean prediction is skewed (one recorded prompt predicts 20 tokens, the other 1.05)
    and fails the lower-quantile margin; a steadier candidate passes it, so the step speculates with that one."""
    table = PlanTable.of(prior, [Candidate("sps", (1, 1)), Candidate("sps", (1,))])
    table.depth_reach = np.zeros((2, 2, 19))  # [C, J, D]: E tokens [[20, 1.05], [1.9, 1.9]]
    table.depth_reach[0, 0], table.depth_reach[0, 1, 0], table.depth_reach[1, :, 0] = 1.0, 0.05, 0.9
    online = OnlinePlanner(linear_profile(0.001, 0.001), prior, table, None, 64)
    online.observed = list(prior.agreement[:4]) + list(prior.agreement[POSITIONS : POSITIONS + 4])
    weight = prior.posterior(online.observed)
    assert weight.min() > 0.2  # both prompts plausible: the skewed candidate's quantile is 1.05
    choice = online.choose(10, 64)
    assert choice.candidate == Candidate("sps", (1,)) and choice.tokens_per_step == pytest.approx(1.9)
    hopeless = table.depth_reach.copy()
    hopeless[1, :, 0] = 0.05  # no candidate passes: plain decoding
    hopeless_table = dataclasses.replace(table, depth_reach=hopeless)
    online = OnlinePlanner(linear_profile(0.001, 0.001), prior, hopeless_table, None, 64)
    online.observed = list(prior.agreement[:4]) + list(prior.agreement[POSITIONS : POSITIONS + 4])
    assert online.choose(10, 64).candidate == Candidate(None, None)


def test_a_plain_stretch_read_back_starts_the_calibration_again(prior):
    """Steps before a plain stretch ended earlier than predicted; once the draft has read the
    stretch back, the calibration counts only the steps after it."""
    online = planner(prior, linear_profile(0.001, 0.001))
    online._ran = [(0, 1, True, False)] * 4  # four walks that ended at the root
    assert online.calibration(online.mixture()[2]) > 1
    online(torch.zeros(10, dtype=torch.long), [])
    plan = TreePlan(None, None, None)
    online._unread = [torch.full((V,), 1 / V)] * 2
    online.observe(plain_step(plan, torch.full((V,), 1 / V), looked_back=torch.full((2, V), 1 / V)))
    assert online.calibration(online.mixture()[2]) == 1.0


def test_the_lower_quantile_of_the_posterior():
    values, weight = np.array([20.0, 2.0, 3.0, 2.5]), np.array([0.25, 0.25, 0.25, 0.25])
    assert lower_quantile(values, weight, 0.1587) == 2.0
    assert lower_quantile(values, weight, 0.25) == 2.0  # the weight reaching the level exactly
    assert lower_quantile(values, weight, 0.5) == 2.5
    assert lower_quantile(values, np.array([0.1, 0.0, 0.0, 0.9]), 0.1587) == 2.5
    # skewed: the mean less one standard deviation lies below every value; the quantile does not
    mean = float(values @ weight)
    assert mean - np.sqrt(((values - mean) ** 2) @ weight) < 0 < values.min() == lower_quantile(values, weight, 0.1587)
    rows = np.stack([values, values[::-1] + 1, np.full(4, 3.0)])  # [3, 4]: one quantile per row
    expected = [float(lower_quantile(row, weight, 0.3)) for row in rows]
    assert lower_quantile(rows, weight, 0.3).tolist() == expected == [2.5, 3.5, 3.0]


def test_speculative_steps_re_plan_every_step_and_plain_ones_every_few(prior):
    """A speculative step brings evidence, so the next step is planned afresh; a plain step without new
    agreements changes only the context, so plain stretches re-plan every ``every`` steps."""
    seq = torch.zeros(10, dtype=torch.long)
    for profile, speculative in ((linear_profile(0.001, 0.001), True), (linear_profile(0.0, 0.1), False)):
        online = planner(prior, profile, every=4)
        calls = []
        choose = online.choose
        online.choose = lambda *args: calls.append(args) or choose(*args)
        for t in range(8):
            plan = online(seq, list(range(t)))
            assert (plan.scheme is not None) == speculative
            step = whole_tree_step(plan) if speculative else plain_step(plan, torch.full((V,), 1 / V))
            online.observe(step)
        assert len(calls) == (8 if speculative else 2)


def test_the_openings_table_holds_each_prompts_rates_where_its_text_begins(prior):
    """A chain of one reaches depth 1 with the acceptance at its start: at the text's first position for the
    openings' table, the mean over the prompt's starts for the other; a chain of two reads positions 0 and 1."""
    by_position = np.asarray(prior.rates.rates["sps:1"]["by_position"])[:, 0]  # [P]
    chains = [Candidate("sps", (1,)), Candidate("sps", (1, 1))]
    mean, opening = PlanTable.of(prior, chains), PlanTable.of(prior, chains, openings=True)
    assert mean.candidates == opening.candidates
    for j in range(2):
        first = j * POSITIONS
        assert opening.depth_reach[0, j, 0] == pytest.approx(by_position[first], rel=1e-12)
        assert mean.depth_reach[0, j, 0] == pytest.approx(by_position[first : first + POSITIONS].mean(), rel=1e-12)
        assert opening.depth_reach[1, j, 1] == pytest.approx(by_position[first] * by_position[first + 1], rel=1e-12)


def test_the_first_step_is_planned_and_calibrated_from_the_openings(prior):
    """The first step's prediction is the openings' table's and the next step's the table of all starts; the
    calibration judges the first step by the openings' hazards."""
    candidates = candidates_for("auto", None, max_nodes=8)
    table, opening = PlanTable.of(prior, candidates), PlanTable.of(prior, candidates, openings=True)
    online = OnlinePlanner(linear_profile(0.001, 0.001), prior, table, None, 64, opening=opening)
    plan = online(torch.zeros(10, dtype=torch.long), [])
    first, weight = online.predictions[-1], prior.posterior([])
    assert plan.scheme is not None and first.opening
    assert first.tokens_per_step == pytest.approx(opening.tokens[first.index] @ weight, rel=1e-12)
    online.observe(whole_tree_step(plan))
    depth = shape_depth(plan.shape)
    exposure = hazards(opening.depth_reach[first.index].T @ weight)[:depth].sum()
    assert online.calibration(weight) == pytest.approx(CALIBRATION_EVENTS / (CALIBRATION_EVENTS + exposure))
    second = online.choose(12, 64 - depth - 1)
    assert not second.opening
    expected = table.tokens_given(online.calibration(weight), 62 - depth)[second.index] @ weight
    assert second.tokens_per_step == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="same candidates"):
        OnlinePlanner(linear_profile(0.001, 0.001), prior, table, None, 64, opening=PlanTable.of(prior, candidates[:2]))


def test_the_prompts_agreement_weights_the_recorded_prompts(prior):
    """With no other evidence, w_j is proportional to phi((g - g_j) / H); without g, or without the g_j, the
    prior's weights; g_j of another length than the recorded prompts is refused."""
    prompted = dataclasses.replace(prior, prompt_agreement=[0.8, 0.4])
    for g in (0.75, 0.5, 0.2):
        kernel = np.exp(-0.5 * ((g - np.array([0.8, 0.4])) / PROMPT_BANDWIDTH) ** 2)
        assert prompted.posterior([], g) == pytest.approx(kernel / kernel.sum(), rel=1e-12)
    assert prompted.posterior([], None).tolist() == prompted.posterior([], float("nan")).tolist() == [0.5, 0.5]
    assert prior.posterior([], 0.75).tolist() == [0.5, 0.5]
    evidence = prior.agreement[POSITIONS : POSITIONS + 2]  # like the hard prompt; the prompt like the easy one
    both = prompted.posterior(evidence, 0.8)
    expected = prior.posterior(evidence) * np.array([1.0, np.exp(-0.5 * (0.4 / PROMPT_BANDWIDTH) ** 2)])
    assert both == pytest.approx(expected / expected.sum(), rel=1e-9)
    with pytest.raises(ValueError, match="one value per recorded prompt"):
        dataclasses.replace(prior, prompt_agreement=[0.5])


def prompt_step(plan, p_rows: torch.Tensor, q_rows: torch.Tensor) -> SimpleNamespace:
    """What the planner reads of a first step that looked back at the prompt's last tokens and emitted one."""
    walk = SimpleNamespace(tokens=[7], visited=[], path=[])
    return SimpleNamespace(
        driver=0,
        plans=[plan],
        trees=[SimpleNamespace(node_drafts={})],
        walk=walk,
        p=[p_rows[-1:]],
        looked_back=q_rows,
        target_looked_back=p_rows,
    )


def test_the_first_step_reads_the_prompt_and_later_steps_plan_from_it(prior):
    """Where the draft reads the prompt anyway, the first plan asks for both models' laws at its last
    PROMPT_POSITIONS tokens; their mean agreement conditions every later prediction (an easy-looking prompt
    predicts more tokens per step), and adds nothing to the evidence of generated text."""
    generator = torch.Generator().manual_seed(0)
    (easy_p, easy_q), (hard_p, hard_q) = laws(True, generator), laws(False, generator)
    predicted = {}
    for name, (p_rows, q_rows) in {"easy": (easy_p, easy_q), "hard": (hard_p, hard_q)}.items():
        easy, hard = (float(torch.minimum(p, q).sum(-1).mean()) for p, q in ((easy_p, easy_q), (hard_p, hard_q)))
        online = planner(dataclasses.replace(prior, prompt_agreement=[easy, hard]), linear_profile(0.002, 0.02))
        seq = torch.zeros(40, dtype=torch.long)
        plan = online(seq, [])
        assert plan.look_back == PROMPT_POSITIONS and online.predictions[0].watch
        online.observe(prompt_step(plan, p_rows.float(), q_rows.float()))
        assert online.prompt_agreement == pytest.approx(float(torch.minimum(p_rows, q_rows).sum(-1).mean()), abs=1e-6)
        assert online.observed == [] and online._fresh
        assert online(seq, [0]).look_back == 0  # the draft has read every committed token but the newest
        chosen = online.choose(41, 63)
        weight = online.prior.cell_posterior([], online.prompt_agreement).ravel()  # [J * cells]
        predicted[name] = online.table.tokens_given(online.calibration(weight), 62) @ weight
        assert chosen.candidate.scheme is None or chosen.tokens_per_step == pytest.approx(
            predicted[name][chosen.index], rel=1e-9
        )
    assert (predicted["easy"] > predicted["hard"]).all()


def test_the_prompt_is_not_read_without_its_recorded_agreements_or_where_the_draft_reads_nothing(prior):
    seq = torch.zeros(40, dtype=torch.long)
    assert planner(prior, linear_profile(0.002, 0.02))(seq, []).look_back == 0
    prompted = dataclasses.replace(prior, prompt_agreement=[0.8, 0.4])
    assert planner(prompted, linear_profile(0.0, 0.1))(seq, []).look_back == 0  # plain decoding, no watching
    assert planner(prompted, linear_profile(0.002, 0.02), adapt=False)(seq, []).look_back == 0


def test_copy_evidence_is_the_closed_form_of_its_priors_and_chances():
    evidence = CopyEvidence()
    assert evidence.rate(2) == pytest.approx(FIRST_PRIOR)
    assert [evidence.rate(2, length) for length in (1, 2, 3, 4, 8, 15, 16, 99)] == pytest.approx(
        [ONWARD_PRIOR[b] for b in (0, 1, 1, 2, 3, 3, 4, 4)]
    )
    evidence.add(2, 0.9, 0)
    evidence.add(2, 1.0, 0)
    alpha = (FIRST_PRIOR * PRIOR_WEIGHT + 1.9) / (PRIOR_WEIGHT + 2)
    assert evidence.rate(2) == pytest.approx(alpha) and evidence.rate(1) == pytest.approx(FIRST_PRIOR)
    assert evidence.rate(2, level=DOUBT_LEVEL) < alpha
    evidence.add(1, 0.5, 2)
    evidence.add(3, 1.0, 3)  # a copy going on counts for every n-gram length; runs 2 and 3 share a state
    beta = (ONWARD_PRIOR[1] * PRIOR_WEIGHT + 1.5) / (PRIOR_WEIGHT + 2)
    assert evidence.rate(1, 2) == pytest.approx(beta) and evidence.rate(3, 3) == pytest.approx(beta)
    shared = (SHARED_FAILURES + 0.5) / (SHARED_FAILURES + 2 * (1 - ONWARD_PRIOR[1]))  # state 2-3's chances
    assert evidence.rate(1, 1) == pytest.approx(1 - shared * (1 - ONWARD_PRIOR[0]))

    def expected(first: float, run: int, depth: int) -> float:  # 1 + sum_k prod_{i<=k} a_i, the state moving on
        chances = [first] + [evidence.rate(2, r) for r in range(run + 1, run + depth)]
        return 1 + sum(np.prod(chances[:k]) for k in range(1, depth + 1))

    depths = np.array([1, 3, 8, 20])
    assert evidence.tokens(2, depths) == pytest.approx([expected(alpha, 0, d) for d in depths])
    assert evidence.tokens(2, depths, run=2) == pytest.approx([expected(beta, 2, d) for d in depths])
    low = evidence.rate(2, 2, DOUBT_LEVEL)
    assert evidence.tokens(2, depths, DOUBT_LEVEL, run=2) == pytest.approx([expected(low, 2, d) for d in depths])


def test_the_going_on_states_share_the_text_s_copy_fidelity():
    """Copies that held at runs 1-3 make every longer state's copy likelier before it has a chance of its own;
    copies that failed there make it less likely; a state's own chances are not counted in its multiplier."""
    faithful, drifting = CopyEvidence(), CopyEvidence()
    for length in (1, 2, 3) * 4:
        faithful.add(2, 1.0, length)
        drifting.add(2, 0.2, length)
    for length in (4, 8, 16):
        assert drifting.rate(2, length) < ONWARD_PRIOR[length.bit_length() - 1] < faithful.rate(2, length)
    expected = 4 * (1 - ONWARD_PRIOR[0]) + 8 * (1 - ONWARD_PRIOR[1])
    assert faithful.hazard_scale(4) == pytest.approx(SHARED_FAILURES / (SHARED_FAILURES + expected))
    assert faithful.hazard_scale(1) == pytest.approx(SHARED_FAILURES / (SHARED_FAILURES + 8 * (1 - ONWARD_PRIOR[1])))
    assert drifting.hazard_scale(4) == pytest.approx((SHARED_FAILURES + 12 * 0.8) / (SHARED_FAILURES + expected))
    broken = CopyEvidence()
    for _ in range(48):
        broken.add(2, 0.0, 16)  # every copy failed after 16 held: s would be 50 / 2.96, kept at the bound
    assert broken.hazard_scale(1) == HAZARD_RANGE[1] and broken.rate(2, 1) == pytest.approx(
        1 - min(LONGEST_HAZARD, HAZARD_RANGE[1] * (1 - ONWARD_PRIOR[0]))
    )
    assert CopyEvidence().hazard_scale(3) == 1.0 and faithful.rate(2) == pytest.approx(FIRST_PRIOR)
    depths = np.array([8, 28])
    assert (faithful.tokens(2, depths, run=4) > CopyEvidence().tokens(2, depths, run=4)).all()


def test_a_copy_that_has_held_is_predicted_to_go_on_longer():
    evidence = CopyEvidence()
    for length, chance in ((1, 0.5), (2, 0.7), (4, 0.9), (8, 0.97), (16, 0.99)):
        for _ in range(40):
            evidence.add(3, chance, length)
    depths = np.array([4, 16])
    young, old = evidence.tokens(3, depths, run=1), evidence.tokens(3, depths, run=16)
    assert (old > young).all() and old[1] > 10 > young[1]


def test_every_emitted_token_tells_the_chance_of_the_copy_proposed_there(prior):
    """Text ...5 1: the copy proposes 2 (found by "5 1"); the step emits 2 (the copy: it goes on), 3 (proposed
    after "1 2": going on, run 1) and 7 (after "2 3" the copy proposed 5, run 2: no longer copying)."""
    online = planner(prior, linear_profile(0.0, 0.05), copying=True)
    seq = torch.tensor([5, 1, 2, 3, 5, 1])
    online._seq, online._copy = seq, continuation(seq, 28)
    laws = torch.full((3, V), 0.01, dtype=torch.float64)
    laws[0, 2], laws[1, 3], laws[2, 5] = 0.8, 0.6, 0.1
    online.learn_copies([2, 3, 7], laws)
    assert online.copies.first[2] == [0.8]
    assert online.copies.onward[1] == pytest.approx([0.6]) and online.copies.onward[2] == pytest.approx([0.1])
    assert online._run == 0


def copying_planner(prior, chances: float) -> OnlinePlanner:
    """A planner whose target reads any number of rows at the price of one, that has seen ``chances`` as the
    acceptance of 20 copies found by 3-token n-grams and of 20 copies going on in every state."""
    online = planner(prior, linear_profile(0.0, 0.05), copying=True)
    for _ in range(20):
        online.copies.add(3, chances, 0)
        for length in (1, 2, 4, 8, 16):
            online.copies.add(3, chances, length)
    return online


def test_a_text_that_copies_is_continued_from_itself(prior):
    seq = torch.tensor([5, 1, 2, 3, 4, 6, 7, 0, 5, 1, 2, 3, 4, 6, 7, 0, 5, 1, 2])
    online = copying_planner(prior, 0.95)
    plan = online(seq, [])
    assert plan.lookup and online.predictions[-1].candidate.lookup and plan.shape == (1,) * 8  # all it can copy
    assert online.predictions[-1].tokens_per_step > 5
    assert not copying_planner(prior, 0.0)(seq, []).lookup  # copies that are never accepted are not tried
    assert not copying_planner(prior, 0.95)(torch.tensor([1, 2, 3, 4]), []).lookup  # nothing to copy


def test_the_first_tokens_keep_the_target_law_when_copying(pair, one_thread, prior):
    """The planner chooses between copying, drafting and plain decoding at every step on a text that repeats
    itself; the first three tokens keep the target's law."""
    target, draft = pair
    prompt = torch.tensor([3, 1, 4, 1, 5, 3, 1, 4, 1, 5, 3, 1])
    law = sequence_law(target, prompt, 3, temperature=1.0)
    runners = TorchRunner(target), TorchRunner(draft)
    generator = torch.Generator().manual_seed(7)
    samples, plans = [], Counter()
    for _ in range(800):
        online = copying_planner(prior, 0.6)
        online.generator, online.every = generator, 1
        result = three_tokens(runners, prompt, online, generator)
        samples.append(result.tokens)
        plans.update(name.split()[0] if name else "plain" for name in result.plans)
    assert plans["lookup"] > 400 and len(plans) > 1, plans
    assert_law(samples, law)
