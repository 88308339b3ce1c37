"""``generate(scheme="auto", tree="auto")`` profiles once, caches, and runs the plan's choice."""

from __future__ import annotations

import pytest
import torch

from multidraft import planning
from multidraft.api import generate
from multidraft.planning.acceptance import PLANNED
from tests.support.models import tiny_llama

#: The planned schemes that draw two drafts at a node.
TWO_DRAFT_SCHEMES = {"rrs", "rrs-wor", "kseq", "spechub", "greedy", "topk"}


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDRAFT_CACHE", str(tmp_path))
    return tmp_path


def test_auto_profiles_once_then_plans_from_the_cache(cache):
    torch.set_num_threads(1)
    target, draft = tiny_llama(0, max_positions=1024), tiny_llama(1, max_positions=1024)
    prompt = torch.tensor([3, 1, 4])
    result = generate(
        target, draft, prompt, scheme="auto", tree="auto", max_new_tokens=12, generator=torch.Generator().manual_seed(0)
    )
    # every step runs a planned scheme, a chain copied from the text, or plain decoding (a candidate whenever no
    # tree is predicted to pay)
    assert all(not plan or plan.split()[0] in {*PLANNED, "lookup"} for plan in result.plans)
    assert len(result.tokens) == 12 and result.scheme in {*PLANNED, "lookup", "autoregressive"}
    profile = planning.profile_path(target, draft)
    rates = planning.prior_path(target, draft, 1.0, None, None)
    assert profile.is_file() and rates.is_file()
    stamps = profile.stat().st_mtime_ns, rates.stat().st_mtime_ns
    again = generate(
        target, draft, prompt, scheme="auto", tree="auto", max_new_tokens=12, generator=torch.Generator().manual_seed(0)
    )
    assert (again.scheme, again.tree) == (result.scheme, result.tree)
    assert (profile.stat().st_mtime_ns, rates.stat().st_mtime_ns) == stamps  # planned from the cache
    fixed = generate(target, draft, prompt, scheme="rrs-wor", tree="auto", max_new_tokens=4)
    assert all(not plan or plan.startswith("rrs-wor ") for plan in fixed.plans)
    tree_only = generate(target, draft, prompt, scheme="auto", tree="2x2", max_new_tokens=4)
    assert all(
        not plan
        or (plan.endswith(" 2x2") and plan.split()[0] in {"rrs", "rrs-wor", "kseq", "spechub", "greedy", "topk"})
        for plan in tree_only.plans
    )


def test_auto_refuses_bad_requests_before_profiling(cache):
    target, draft = tiny_llama(0), tiny_llama(1)
    with pytest.raises(ValueError, match="temperature"):
        generate(target, draft, torch.tensor([1]), scheme="auto", tree="auto", max_new_tokens=4, temperature=-1.0)
    with pytest.raises(ValueError, match="does not cover"):
        generate(target, draft, torch.tensor([1]), scheme="otm", tree="auto", max_new_tokens=4)
    with pytest.raises(ValueError, match="no planned scheme"):
        generate(target, draft, torch.tensor([1]), scheme="auto", tree="7x1", max_new_tokens=4)
    assert not any(cache.rglob("profile*.json"))


def test_the_confidence_stop_reaches_the_decoder_and_not_the_planner():
    target, draft = tiny_llama(0), tiny_llama(1)
    prompt = torch.tensor([3, 1, 4])
    options = dict(max_new_tokens=12, generator=torch.Generator().manual_seed(0))
    full = generate(target, draft, prompt, scheme="sps", tree="1x4", **options)
    assert set(full.tree_sizes[:-1]) == {5}  # the last tree is cut to the tokens still wanted
    # tau = 0.99: the tiny draft is never that sure, so every tree ends after its first level
    stopped = generate(target, draft, prompt, scheme="sps", tree="1x4", min_draft_probability=0.99, **options)
    assert set(stopped.tree_sizes[:-1]) == {2} and stopped.tree_sizes[-1] <= 2
    with pytest.raises(ValueError, match="fixed scheme and tree"):
        generate(target, draft, prompt, scheme="auto", tree="auto", min_draft_probability=0.4, **options)
