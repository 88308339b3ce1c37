"""The peer baseline: Hugging Face assisted generation with the same model pair (single-draft speculative sampling).

The models are loaded the way a Hugging Face user would load them
(``AutoModelForCausalLM.from_pretrained`` on the converted float32 folders,
default attention, no prepacking), separately from the models multidraft
runs on.  Generation uses ``target.generate(assistant_model=draft,
do_sample=True, num_assistant_tokens=γ, num_assistant_tokens_schedule="constant")``
with the benchmark's temperature, no top-k (``top_k=0``) unless asked, and
EOS disabled (``eos_token_id=-1``) so every run has exactly ``max_new_tokens``
tokens.  Target calls are counted with a forward hook, which gives the
peer's tokens per target call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


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
    max_new_tokens: int,
    temperature: float,
    top_k=None,
    top_p=None,
    seed: int,
) -> dict:
    """One assisted generation; a benchmark record (tokens, target calls, seconds).

    ``assistant_tokens=None`` keeps Hugging Face's default assistant settings (up to 20 drafts per call,
    cut where the draft's own confidence falls below ``assistant_confidence_threshold``)."""
    calls = []
    hook = pair.target.register_forward_pre_hook(lambda module, args: calls.append(1))
    torch.manual_seed(seed)  # generate() samples from the global generator
    sampling = (
        dict(do_sample=True, temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0)
        if temperature > 0
        else dict(do_sample=False)
    )
    assistant = (
        {}
        if assistant_tokens is None
        else dict(num_assistant_tokens=assistant_tokens, num_assistant_tokens_schedule="constant")
    )
    ids = prompt.reshape(1, -1)
    try:
        start = time.perf_counter()
        with torch.no_grad():
            out = pair.target.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                assistant_model=pair.draft,
                max_new_tokens=max_new_tokens,
                eos_token_id=-1,
                pad_token_id=0,
                **assistant,
                **sampling,
            )
        seconds = time.perf_counter() - start
    finally:
        hook.remove()
    tokens = out[0, ids.shape[1] :].tolist()
    return {
        "tokens": tokens,
        "accepted_lengths": [],
        "expected_tokens": None,
        "tree_sizes": [],
        "target_calls": len(calls),
        "draft_calls": 0,
        "seconds": seconds,
        "draft_seconds": 0.0,
        "target_seconds": 0.0,
        "verification_seconds": 0.0,
        "plans": [],
        "predicted_tokens": None,
    }
