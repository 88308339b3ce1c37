"""Checks of a generation request, all made before any model call."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from multidraft.limits import check_limits
from multidraft.runners import Runner
from multidraft.sampling_options import check_options
from multidraft.schemes.base import Scheme
from multidraft.tree import check_shape, shape_depth, widest


def prompt_tokens(input_ids, device: torch.device) -> torch.Tensor:
    """The prompt as int64 [n] on ``device``, from [n] or [1, n]; ``ValueError`` for a batch or an empty prompt."""
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 2:
        if ids.shape[0] != 1:
            raise ValueError(f"batch size must be 1, got input_ids of shape {tuple(ids.shape)}")
        ids = ids[0]
    if ids.dim() != 1 or ids.shape[0] == 0:
        raise ValueError(f"input_ids must be a non-empty [n] or [1, n] tensor, got shape {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"input_ids must be integer token ids, got dtype {ids.dtype}")
    return ids.to(device=device, dtype=torch.int64)


def stop_tokens(eos_token_id: int | Sequence[int] | None) -> frozenset[int]:
    """The EOS ids as a set: one id, several (as some generation configs list), or none."""
    ids = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"eos_token_id must be an int, a sequence of ints or None, got {eos_token_id!r}")
    return frozenset(ids)


def check_request(target: Runner, input_ids, max_new_tokens: int, temperature: float, top_k, top_p, generator,
                  eos_token_id) -> tuple[torch.Tensor, frozenset[int]]:
    """Check the arguments every generation shares; returns the prompt [n] on the target's device and the EOS ids."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    check_options(temperature, top_k, top_p)
    prompt = prompt_tokens(input_ids, target.device)
    if bool(prompt.min() < 0) or bool(prompt.max() >= target.vocab_size):
        raise ValueError(f"input_ids must lie in [0, {target.vocab_size})")
    if generator is not None and generator.device.type != target.device.type:
        raise ValueError(f"the generator lives on {generator.device} but sampling runs on {target.device}")
    return prompt, stop_tokens(eos_token_id)


def check_pair(target: Runner, draft: Runner, scheme: Scheme, shape, verifier, prompt_length: int,
               max_new_tokens: int, max_tree_nodes: int) -> None:
    """Everything a speculative generation needs of its models and tree, before any model call."""
    check_shape(shape, scheme)
    verifier.check(shape, scheme)
    if draft.vocab_size != target.vocab_size:
        raise ValueError(f"vocabularies differ: target has {target.vocab_size} logits, draft {draft.vocab_size}")
    if scheme.draft_law in ("greedy", "topk") and widest(shape) > target.vocab_size:
        raise ValueError(f"scheme {scheme.name!r} drafts {widest(shape)} distinct top tokens at a node, but the "
                         f"vocabulary has {target.vocab_size}")
    total_length = prompt_length + max_new_tokens + shape_depth(shape)
    target.check("target", total_length)
    draft.check("draft", total_length)
    check_limits(getattr(target, "model", None), getattr(draft, "model", None), shape, target.vocab_size,
                 prompt_length, max_new_tokens, max_tree_nodes)
