"""The cost model and the planner on synthetic profiles and exact rates."""

from __future__ import annotations

import math

import pytest
import torch

from multidraft.planning.acceptance import rank_rates
from multidraft.planning.cost import expected_level_nodes, expected_tree, predict_generation, predict_step
from multidraft.planning.planner import best_per_scheme, candidates, grown_templates, plan
from multidraft.planning.profile import ForwardCosts
from multidraft.shapes import TreeTemplate, parse_shape, template_of
from tests.support.planning import flat_rates, linear_profile


def test_forward_costs_interpolate_linearly():
    costs = ForwardCosts([1, 3], [0, 100], [[1.0, 3.0], [2.0, 6.0]])
    assert costs(2, 0) == pytest.approx(2.0)
    assert costs(1, 50) == pytest.approx(1.5)
    assert costs(5, 0) == pytest.approx(5.0)  # beyond the grid: the last segment extended


def test_forward_costs_never_fall_past_the_cheapest_forward_nor_with_more_context():
    measured = [[0.32, 0.36, 0.29, 0.25, 0.28, 0.34, 0.33, 0.40], [0.34, 0.41, 0.31, 0.27, 0.26, 0.35, 0.36, 0.42]]
    costs = ForwardCosts([1, 2, 3, 4, 5, 6, 8, 12], [64, 512], measured)
    # up to each row's cheapest point as measured (small-row kernels are slower), from there violators pooled
    # to their mean (the least-squares fit); the longer context's points raised to the shorter's (0.26 at Q = 5)
    assert costs.fitted[0] == pytest.approx([0.32, 0.36, 0.29, 0.25, 0.28, 0.335, 0.335, 0.40])
    assert costs.fitted[1] == pytest.approx([0.34, 0.41, 0.31, 0.27, 0.28, 0.35, 0.36, 0.42])
    cheapest = 4  # from 4 query tokens on, at both contexts
    points = [(q, c) for q in (4, 4.5, 5, 6, 7, 8, 10, 12) for c in (64, 300, 512)]
    for q, c in points:
        for q2, c2 in points:
            if q2 >= q and c2 >= c and q >= cheapest:
                assert costs(q2, c2) >= costs(q, c) - 1e-12
    for q in (1, 2, 3, 4, 4.5, 8, 12):
        assert costs(q, 512) >= costs(q, 64) - 1e-12
    assert costs(4, 64) < costs(1, 64)  # a real dip below the cheapest point is kept
    assert costs.seconds == measured  # the measurements are kept as they were
    rising = ForwardCosts([1, 3], [0, 100], [[1.0, 3.0], [2.0, 6.0]])
    assert rising.fitted.tolist() == [[1.0, 3.0], [2.0, 6.0]]  # nothing to fit


def test_level_nodes_of_a_tree_whose_drafts_can_repeat():
    """Two drafts per node, the second new with chance 1/2: E nodes 1, 1.5, 2.25; repeats taken s times."""
    new = {1: [1.0], 2: [1.0, 0.5]}.__getitem__
    assert expected_level_nodes((2, 2), new) == [1.0, 1.5, 2.25]
    assert expected_level_nodes((2, 2), new, 0.5) == pytest.approx([1.0, 1.75, 1.75**2])
    assert expected_level_nodes((2, 2), new, 2.0) == [1.0, 1.0, 1.0]  # a repeat for sure: a chain
    assert expected_level_nodes((1, 1, 1), new, 3.0) == [1.0, 1.0, 1.0, 1.0]  # one draft never repeats


def test_expected_tokens_of_a_chain_and_of_a_binary_tree():
    rates = flat_rates(0.6)
    tokens, level_nodes, verified, leaf_end, read = expected_tree(rates, "sps", (1, 1, 1))
    assert tokens == pytest.approx(1 + 0.6 + 0.36 + 0.216)
    assert level_nodes == [1.0, 1.0, 1.0, 1.0] and read == [True, True, True]
    assert verified == pytest.approx(1 + 0.6 + 0.36) and leaf_end == pytest.approx(0.216)
    both = 0.6 + 0.6 * 0.4
    tokens, level_nodes, *_ = expected_tree(rates, "rrs", (2, 2))
    assert tokens == pytest.approx(1 + both + both**2)
    assert level_nodes == [1.0, 2.0, 4.0]


def test_templates_expand_uniform_shapes_and_score_per_node_counts():
    assert template_of((2, 3)).levels == ((2,), (3, 3))
    rates = flat_rates(0.5)
    tokens, level_nodes, *_ = expected_tree(rates, "rrs", parse_shape("2/1,0"))
    assert tokens == pytest.approx(1 + 0.5 + 0.25 + 0.5 * 0.5)
    assert level_nodes == [1.0, 2.0, 1.0]


def test_duplicate_drafts_shrink_the_expected_tree():
    rates = flat_rates(0.5)
    rates.rates["rrs:2"]["new"] = [1.0, 0.25]
    _, level_nodes, *_ = expected_tree(rates, "rrs", (2, 2))
    assert level_nodes == [1.0, 1.25, 1.25 * 1.25]


def test_step_seconds_count_the_draft_levels_and_the_target_nodes():
    profile = linear_profile(0.01, 0.05)
    step = predict_step(profile, flat_rates(0.6), "sps", (1, 1, 1), context=100)
    assert step.seconds == pytest.approx(3 * 0.05 + 0.1 + 0.01 * 4)
    whole = predict_generation(profile, None, None, None, prompt_tokens=10, new_tokens=5)
    assert whole["seconds"] == pytest.approx((0.1 + 0.01 * 10) + 4 * 0.11)


def test_grown_templates_are_valid_and_grow_node_by_node():
    rates = flat_rates(0.7)
    grown = grown_templates(rates, "rrs-wor", max_nodes=20)
    assert all(isinstance(t, TreeTemplate) for t in grown)
    assert [t.size for t in grown] == list(range(2, 21))
    assert grown[0].spelling == "1"
    # The most likely branch is extended first: with a = 0.7 the second node deepens the chain.
    assert grown[1].spelling == "1/1"
    hub = grown_templates(rates, "spechub", max_nodes=20)
    assert all(k in (0, 2) for t in hub for k in t.counts)


def test_the_planner_deepens_when_drafting_is_free_and_stops_when_it_is_dear():
    rates = flat_rates(0.8)
    cheap = plan(linear_profile(0.001, 0.0), rates, schemes=("sps", "rrs-wor"))
    dear = plan(linear_profile(0.001, 0.2), rates, schemes=("sps", "rrs-wor"))
    assert cheap[0].tokens_per_step > dear[0].tokens_per_step
    assert any(c.tree.startswith("1x") for c in cheap)  # chains are candidates
    assert [c.scheme for c in best_per_scheme(cheap)] == sorted(
        {c.scheme for c in cheap}, key=lambda s: -max(c.tokens_per_second for c in cheap if c.scheme == s)
    )
    assert math.isclose(cheap[0].tokens_per_second, cheap[0].tokens_per_step / cheap[0].step_seconds)
    assert all(len(candidates(rates, name, 16)) > 3 for name in ("sps", "rrs", "spechub", "greedy"))


def test_rank_rates_of_the_deterministic_top_k_law_are_exact():
    p = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    q = torch.tensor([[0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.4, 0.1]], dtype=torch.float64)
    rates = rank_rates(p, q, temperature=1.0, draws=4, plan={"topk": (2,), "sps": (1,)})
    # topk drafts q's top two; each is entered with its target probability
    assert rates.accept("topk", 2) == pytest.approx([(0.3 + 0.3) / 2, (0.2 + 0.1) / 2], abs=1e-12)
    assert rates.new("topk", 2) == [1.0, 1.0]
    assert 0 < rates.accept("sps", 1)[0] <= 1


def test_candidates_do_not_repeat_a_uniform_tree_as_a_template():
    rates = flat_rates(0.9)  # the growth first builds the chain 1/1/1/..
    levels = [template_of(shape).levels for shape in candidates(rates, "rrs-wor", 12)]
    assert len(levels) == len(set(levels))


def test_per_position_rates_follow_the_tree_along_the_recorded_text():
    """Text 0 accepts everything, text 1 nothing: the mean rate is 1/2, but a chain accepts all or nothing."""
    rates = flat_rates(0.5)
    rates.rates["sps:1"]["by_position"] = [[1.0]] * 4 + [[0.0]] * 4
    rates.sequence = [0] * 4 + [1] * 4
    tokens, *_ = expected_tree(rates, "sps", (1, 1))
    # starts 0..2 in text 0 give 3 tokens, starts 4..6 in text 1 give 1 (a start must fit 2 levels in one text)
    assert tokens == pytest.approx(2.0)
    rates.sequence = None
    assert expected_tree(rates, "sps", (1, 1))[0] == pytest.approx(1 + 0.5 + 0.25)
