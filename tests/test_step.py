"""A forest of trees read together gets exactly the laws each tree gets alone, and the caches keep one tree's path."""

from __future__ import annotations

import pytest
import torch

from multidraft import schemes, verifiers
from multidraft.runners import TorchRunner
from multidraft.runners.base import causal_visibility
from multidraft.sampling_options import Sampling
from multidraft.shapes import TreeTemplate, parse_shape
from multidraft.step import TreePlan, draft_trees, score_trees, speculative_step, within

LAWS = ["spechub", "rrs", "rrs-wor"]


def alone(target, draft, seq, shape, sampling, seed):
    """Each scheme's tree, q and target logits, drafted and scored alone on fresh caches."""
    out = []
    for name in LAWS:
        generator = torch.Generator().manual_seed(seed)
        [tree], [q], _, _, _ = draft_trees(
            TorchRunner(draft), seq, [TreePlan(schemes.get(name), shape, generator)], sampling
        )
        [logits], _, _ = score_trees(TorchRunner(target), seq, [tree])
        out.append((tree, q, logits))
    return out


def plans(shape, seeds):
    """One plan per law on ``shape``, each with its own generator seeded as given."""
    return [TreePlan(schemes.get(name), shape, torch.Generator().manual_seed(seed)) for name, seed in zip(LAWS, seeds)]


@pytest.mark.parametrize("tree", ["2x3", "2x1", "2/2,0"])
@torch.no_grad()
def test_forest_matches_trees_read_alone(pair, one_thread, tree):
    target, draft = pair
    shape = parse_shape(tree)
    sampling = Sampling(1.0, None, None, torch.device("cpu"), torch.float32)
    seq = torch.tensor([1, 5, 2, 7, 3])
    for seed in range(4):
        trees, q_laws, _, _, _ = draft_trees(TorchRunner(draft), seq, plans(shape, [seed] * len(LAWS)), sampling)
        logits, _, _ = score_trees(TorchRunner(target), seq, trees)
        for (tree_alone, q_alone, logits_alone), forest_tree, q, rows in zip(
            alone(target, draft, seq, shape, sampling, seed), trees, q_laws, logits
        ):
            assert torch.equal(forest_tree.tokens, tree_alone.tokens)
            assert torch.equal(forest_tree.parents, tree_alone.parents)
            torch.testing.assert_close(q, q_alone, rtol=0, atol=1e-6)
            torch.testing.assert_close(rows, logits_alone, rtol=0, atol=1e-5)


@torch.no_grad()
def test_forest_caches_keep_one_trees_path(pair, one_thread):
    """After keeping tree s's path, the next step reads what a fresh cache over the extended text reads."""
    target, draft = pair
    shape = parse_shape("2x2")
    sampling = Sampling(1.0, None, None, torch.device("cpu"), torch.float32)
    seq = torch.tensor([1, 5, 2, 7, 3])
    n = seq.shape[0]
    target_runner, draft_runner = TorchRunner(target), TorchRunner(draft)
    trees, _, _, draft_keys, _ = draft_trees(draft_runner, seq, plans(shape, [3] * len(LAWS)), sampling)
    _, target_keys, _ = score_trees(target_runner, seq, trees)
    s = 2
    leaf = trees[s].level(2).start  # the path root -> depth 1 -> depth 2
    path = [int(trees[s].parents[leaf]), leaf]
    target_runner.keep_path(n, [n - 1 + target_keys[s][v] for v in path])
    draft_runner.keep_path(n, [n - 1 + draft_keys[s][v] for v in path if v < len(draft_keys[s])])
    longer = torch.cat([seq, trees[s].tokens[path], torch.tensor([6])])  # the walk's last token is never cached
    next_trees, next_q, _, _, _ = draft_trees(draft_runner, longer, plans(shape, [4] * len(LAWS)), sampling)
    next_logits, _, _ = score_trees(target_runner, longer, next_trees)
    for (_, q_alone, logits_alone), q, rows in zip(
        alone(target, draft, longer, shape, sampling, 4), next_q, next_logits
    ):
        torch.testing.assert_close(q, q_alone, rtol=0, atol=1e-6)
        torch.testing.assert_close(rows, logits_alone, rtol=0, atol=1e-5)


def test_within_cuts_a_plan_to_the_tokens_still_wanted():
    generator = torch.Generator()
    chain = TreePlan(schemes.get("sps"), (1,) * 8, generator, 0.4)
    assert within(chain, 8) is chain and within(chain, 20) is chain
    assert within(chain, 3) == TreePlan(chain.scheme, (1, 1, 1), generator, 0.4)
    template = TreePlan(schemes.get("rrs"), parse_shape("3/2,0,1/1,1,0"), generator)
    assert within(template, 2).shape == TreeTemplate(((3,), (2, 0, 1)))
    assert within(template, 1).shape == TreeTemplate(((3,),))
    plain = within(template, 0)
    assert (plain.scheme, plain.shape, plain.generator) == (None, None, generator)
    assert within(plain, 0) is plain


@torch.no_grad()
def test_a_plain_step_that_looks_back_reads_the_drafts_laws_of_the_last_tokens(pair, one_thread):
    """The draft lacks three tokens (a step's last and two plain ones); a plain step with look_back gets its laws
    of the last two, exactly those of the draft reading the text alone, and leaves the draft's cache at every
    committed token."""
    target, draft = pair
    sampling = Sampling(1.0, None, None, torch.device("cpu"), torch.float32)
    seq = torch.tensor([1, 5, 2, 7, 3, 4, 6])
    n = seq.shape[0]
    target_runner, draft_runner = TorchRunner(target), TorchRunner(draft)
    draft_runner.forward(seq[:4], torch.arange(4), causal_visibility(0, 4), 1)  # read before the plain steps
    generator = torch.Generator().manual_seed(0)
    look = TreePlan(None, None, generator, look_back=5)  # more than it can give: cut to 2
    step = speculative_step(target_runner, draft_runner, seq, [look], sampling, verifiers.get("token"), generator)
    fresh = TorchRunner(draft)
    alone = sampling.laws(fresh.forward(seq, torch.arange(n), causal_visibility(0, n), 3)[:-1])  # [2, V]
    assert step.looked_back.shape == (2, alone.shape[1]) and len(step.walk.tokens) == 1
    torch.testing.assert_close(step.looked_back, alone, rtol=0, atol=1e-6)
    assert draft_runner.cached() == n
    plain = TreePlan(None, None, generator)
    quiet = speculative_step(
        TorchRunner(target), draft_runner, seq, [plain], sampling, verifiers.get("token"), generator
    )
    assert quiet.looked_back is None


@torch.no_grad()
def test_the_first_step_looks_back_at_the_prompt_with_both_models(pair, one_thread):
    """A first step with look_back k gets both models' laws at the prompt's last k tokens, exactly those of
    each model reading the prompt alone; a later step's target, whose cache holds them, gives none."""
    target, draft = pair
    sampling = Sampling(1.0, None, None, torch.device("cpu"), torch.float32)
    seq = torch.tensor([1, 5, 2, 7, 3, 4])
    n = seq.shape[0]
    generator = torch.Generator().manual_seed(0)
    plan = TreePlan(schemes.get("rrs"), parse_shape("2x2"), generator, look_back=3)
    target_runner, draft_runner = TorchRunner(target), TorchRunner(draft)
    step = speculative_step(target_runner, draft_runner, seq, [plan], sampling, verifiers.get("token"), generator)
    whole = {model: sampling.laws(model(seq[None]).logits[0, n - 4 : n - 1]) for model in (target, draft)}
    torch.testing.assert_close(step.target_looked_back, whole[target], rtol=0, atol=1e-6)
    torch.testing.assert_close(step.looked_back, whole[draft], rtol=0, atol=1e-6)
    longer = torch.cat([seq, torch.tensor(step.walk.tokens)])
    later = speculative_step(target_runner, draft_runner, longer, [plan], sampling, verifiers.get("token"), generator)
    assert later.target_looked_back.shape[0] == 0


@torch.no_grad()
def test_a_copying_plan_verifies_the_texts_continuation_without_calling_the_draft(pair, one_thread):
    """The tree is the chain after the latest earlier "2 3", cut to the plan's depth; q is the point mass on each
    copied token; the draft's cache is untouched and the target's keeps the accepted path."""
    target, draft = pair
    sampling = Sampling(1.0, None, None, torch.device("cpu"), torch.float32)
    seq = torch.tensor([1, 2, 3, 6, 5, 4, 2, 3])
    draft_runner = TorchRunner(draft)
    generator = torch.Generator().manual_seed(0)
    plan = TreePlan(schemes.get("sps"), (1, 1, 1), generator, lookup=True)
    step = speculative_step(TorchRunner(target), draft_runner, seq, [plan], sampling, verifiers.get("token"), generator)
    assert step.trees[0].tokens.tolist() == [3, 6, 5, 4]
    assert step.q[0].shape == (3, step.p[0].shape[1]) and step.q[0].sum(-1).tolist() == [1.0, 1.0, 1.0]
    assert step.q[0][torch.arange(3), torch.tensor([6, 5, 4])].tolist() == [1.0, 1.0, 1.0]
    assert draft_runner.cached() == 0 and step.looked_back is None
    accepted = len(step.walk.tokens) - 1
    assert step.walk.tokens[:accepted] == [6, 5, 4][:accepted]
    nothing = TreePlan(schemes.get("sps"), (1, 1), generator, lookup=True)
    alone = speculative_step(
        TorchRunner(target),
        draft_runner,
        torch.tensor([1, 2, 3]),
        [nothing],
        sampling,
        verifiers.get("block"),
        generator,
    )
    assert alone.trees[0].size == 1 and len(alone.walk.tokens) == 1  # nothing to copy: one token drawn from p
