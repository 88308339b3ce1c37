"""The peer baseline: Hugging Face assisted generation with the same model pair (single-draft speculative sampling).

The models are loaded the way a Hugging Face user would load them
(``AutoModelForCausalLM.from_pretrained`` on the converted float32 folders,
default attention, no prepacking), separately from the models multidraft
runs on.  Generation uses ``target.generate(assistant_model=draft,
do_sample=True)`` with the benchmark's temperature, no top-k (``top_k=0``)
unless asked, and EOS disabled (``eos_token_id=-1``) so every run has exactly
``max_new_tokens`` tokens.  Target calls are counted with a forward hook,
which gives the peer's tokens per target call.

Hugging Face reads the assistant's settings from the *assistant's*
``generation_config`` (arguments given to ``generate`` do not reach them),
and carries the adapted confidence threshold over from one call to the next.
So every run sets them there first (:data:`ASSISTANT_SETTINGS`): γ drafts per
call is ``num_assistant_tokens=γ``, a constant schedule and no confidence
cut (exactly γ drafts, the same chain as ``sps 1xγ``); ``default`` is
Hugging Face's defaults as a fresh model has them (up to 20 drafts, cut where
the draft's confidence falls below 0.4, the threshold adapted during the
call).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

#: The assistant settings a run starts from, Hugging Face's defaults and a constant chain of γ drafts.
ASSISTANT_SETTINGS = ("num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold")
DEFAULT_ASSISTANT = (20, "constant", 0.4)


def assistant_settings(assistant_tokens: int | None) -> dict:
    """What the assistant's ``generation_config`` holds for a run: γ constant drafts, or ``None``: the defaults."""
    if assistant_tokens is None:
        return dict(zip(ASSISTANT_SETTINGS, DEFAULT_ASSISTANT, strict=True))
    return dict(zip(ASSISTANT_SETTINGS, (assistant_tokens, "constant", 0.0), strict=True))


@dataclass
class HFPair:
    target: object
    draft: object


def load_hf_pair(target_path, draft_path) -> HFPair:
    """Both models from local folders, as plain Hugging Face models in float32 (offline)."""
    from transformers import AutoModelForCausalLM

    from multidraft.models import offline

    with offline():
        target = AutoModelForCausalLM.from_pretrained(str(target_path), local_files_only=True, dtype=torch.float32)
        draft = AutoModelForCausalLM.from_pretrained(str(draft_path), local_files_only=True, dtype=torch.float32)
    return HFPair(target.eval(), draft.eval())


def assisted_generate(
    pair: HFPair,
    prompt: torch.Tensor,
    *,
    assistant_tokens: int | None,
    lookup_tokens: int | None = None,
    max_new_tokens: int,
    temperature: float,
    top_k=None,
    top_p=None,
    seed: int,
) -> dict:
    """One assisted generation; a benchmark record (tokens, target calls, seconds).

    ``assistant_tokens=None`` keeps Hugging Face's default assistant settings (up to 20 drafts per call,
    cut where the draft's own confidence falls below ``assistant_confidence_threshold``).  ``lookup_tokens``
    runs Hugging Face's prompt lookup instead (``prompt_lookup_num_tokens``: drafts copied from the text, no
    draft model)."""
    calls = []
    hook = pair.target.register_forward_pre_hook(lambda module, args: calls.append(1))
    torch.manual_seed(seed)  # generate() samples from the global generator
    sampling = (
        dict(do_sample=True, temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0)
        if temperature > 0
        else dict(do_sample=False)
    )
    config = pair.draft.generation_config
    saved = {name: getattr(config, name, None) for name in ASSISTANT_SETTINGS}
    for name, value in assistant_settings(assistant_tokens).items():
        setattr(config, name, value)
    ids = prompt.reshape(1, -1)
    try:
        start = time.perf_counter()
        with torch.no_grad():
            out = pair.target.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                **(dict(prompt_lookup_num_tokens=lookup_tokens) if lookup_tokens else dict(assistant_model=pair.draft)),
                max_new_tokens=max_new_tokens,
                eos_token_id=-1,
                pad_token_id=0,
                **sampling,
            )
        seconds = time.perf_counter() - start
    finally:
        hook.remove()
        for name, value in saved.items():
            setattr(config, name, value)
    tokens = out[0, ids.shape[1] :].tolist()
    return peer_record(tokens, len(calls), seconds)


def peer_record(tokens: list[int], target_calls: int, seconds: float) -> dict:
    """A benchmark record of a peer whose steps are not seen: its tokens, target calls and seconds only."""
    return {
        "tokens": tokens,
        "accepted_lengths": [],
        "expected_tokens": None,
        "tree_sizes": [],
        "target_calls": target_calls,
        "draft_calls": 0,
        "seconds": seconds,
        "draft_seconds": 0.0,
        "target_seconds": 0.0,
        "verification_seconds": 0.0,
        "plans": [],
        "predicted_tokens": None,
    }
