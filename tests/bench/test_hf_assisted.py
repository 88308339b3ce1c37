"""The Hugging Face peer runs the assistant settings it is labelled with, and leaves the models as they were."""

import torch

from multidraft.bench.hf_assisted import ASSISTANT_SETTINGS, DEFAULT_ASSISTANT, HFPair, assisted_generate
from tests.support.models import tiny_llama

PROMPT = torch.tensor([3, 1, 4, 1, 5])


def draft_forwards_per_call(assistant_tokens):
    pair = HFPair(tiny_llama(0), tiny_llama(1))
    drafts = []
    hook = pair.draft.register_forward_pre_hook(lambda module, args: drafts.append(1))
    before = {name: getattr(pair.draft.generation_config, name, None) for name in ASSISTANT_SETTINGS}
    try:
        record = assisted_generate(
            pair, PROMPT, assistant_tokens=assistant_tokens, max_new_tokens=24, temperature=1.0, seed=0
        )
    finally:
        hook.remove()
    assert {name: getattr(pair.draft.generation_config, name, None) for name in ASSISTANT_SETTINGS} == before
    assert len(record["tokens"]) == 24
    return len(drafts), record["target_calls"]


def test_gamma_means_exactly_gamma_drafts_per_target_call():
    drafts, calls = draft_forwards_per_call(3)
    # every call but the last drafts 3 tokens (the last may draft fewer: only the tokens left)
    assert 3 * (calls - 1) <= drafts <= 3 * calls


def test_default_is_hugging_faces_default():
    from transformers import GenerationConfig

    defaults = GenerationConfig()._get_default_generation_params()
    assert tuple(defaults[name] for name in ASSISTANT_SETTINGS) == DEFAULT_ASSISTANT
    drafts, calls = draft_forwards_per_call(None)
    assert drafts <= 20 * calls


def test_prompt_lookup_runs_no_draft_model():
    pair = HFPair(tiny_llama(0), tiny_llama(1))
    drafts = []
    hook = pair.draft.register_forward_pre_hook(lambda module, args: drafts.append(1))
    try:
        record = assisted_generate(
            pair, PROMPT, assistant_tokens=None, lookup_tokens=4, max_new_tokens=24, temperature=1.0, seed=0
        )
    finally:
        hook.remove()
    assert drafts == [] and len(record["tokens"]) == 24 and 1 <= record["target_calls"] <= 24
