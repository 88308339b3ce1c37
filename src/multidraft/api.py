"""The public entry points: :func:`generate` with ``scheme="auto"`` / ``tree="auto"``, and :func:`autoregressive`.

A concrete (scheme, tree) goes straight to :func:`multidraft.decoding.generate`.
``"auto"`` asks the planner (:mod:`multidraft.planning`) for the best choice on
this machine: it plans from the cached profile of the machine and pair
(measured first if there is none) and the cached acceptance of the pair and
sampling options.  The choice depends on the request only, never on the
generation's random stream, so the output keeps the target's law.
"""

from __future__ import annotations

import torch

from multidraft import planning, schemes
from multidraft.decoding import autoregressive, check_request
from multidraft.decoding import generate as generate_fixed
from multidraft.planning.acceptance import RankRates, rank_rates, truncate
from multidraft.runners import as_runner, read_as_decoder
from multidraft.sampling_options import probabilities
from multidraft.tree import parse_shape

__all__ = ["autoregressive", "generate", "plan_request"]

#: Tokens the target samples from the prompt to measure acceptance when no rates are cached.
PILOT_TOKENS = 32
#: Tokens of largest p + q kept per pilot position (the rest merged into one tail token).
PILOT_TOP_N = 256


@torch.no_grad()
def pilot_rates(target, draft, prompt: torch.Tensor, temperature: float, top_k, top_p) -> RankRates:
    """Rank acceptance at the positions of a short target sample from ``prompt`` (own fixed seed).

    The draft reads the sample as the decoder reads it (:func:`multidraft.runners.read_as_decoder`).
    """
    prompt = prompt.reshape(-1).to(target.device)
    sample = autoregressive(target, prompt, max_new_tokens=PILOT_TOKENS, temperature=temperature, top_k=top_k,
                            top_p=top_p, generator=torch.Generator(device=target.device).manual_seed(0)).tokens
    sequence = torch.cat([prompt, torch.tensor(sample, device=prompt.device)])[None]
    rows = slice(prompt.numel() - 1, sequence.shape[1] - 1)
    p = probabilities(target(sequence).logits[0, rows].double(), temperature, top_k, top_p)
    q = probabilities(read_as_decoder(as_runner(draft), sequence[0], prompt.numel()).double(), temperature, top_k,
                      top_p)
    _, p_top, q_top, p_tail, q_tail = truncate(p, q, PILOT_TOP_N)
    p_rows = torch.cat([p_top, p_tail[:, None]], -1)
    q_rows = torch.cat([q_top, q_tail[:, None]], -1)
    return rank_rates(p_rows, q_rows, temperature=temperature, top_k=top_k, top_p=top_p,
                      sequence=[0] * p_rows.shape[0])


def plan_request(target, draft, input_ids, scheme, tree, max_new_tokens, temperature, top_k, top_p, generator,
                 eos_token_id) -> tuple[str, object]:
    """``scheme="auto"`` / ``tree="auto"``: the planner's best (scheme, shape) for this machine and pair.

    The request is checked first, so bad input never starts a profile.
    """
    if scheme != "auto":
        scheme = schemes.get(scheme).name if isinstance(scheme, str) else scheme.name
    if tree != "auto":
        parse_shape(tree)
    seq, _ = check_request(as_runner(target), input_ids, max_new_tokens, temperature, top_k, top_p, generator,
                           eos_token_id)
    profile = planning.cached_profile(target, draft)
    rates = planning.cached_rates(target, draft, temperature, top_k, top_p,
                                  lambda: pilot_rates(target, draft, seq, temperature, top_k, top_p))
    choice = planning.auto_choice(profile, rates, scheme=scheme, tree=tree, context=seq.shape[0] + max_new_tokens / 2)
    return choice.scheme, choice.shape


def generate(target, draft, input_ids, *, scheme, tree, max_new_tokens: int, temperature: float = 1.0, top_k=None,
             top_p=None, generator=None, eos_token_id=None, **options):
    """:func:`multidraft.decoding.generate`, where ``scheme`` and ``tree`` may also be ``"auto"``
    (``result.scheme`` and ``result.tree`` say what ran)."""
    if scheme == "auto" or tree == "auto":
        scheme, tree = plan_request(target, draft, input_ids, scheme, tree, max_new_tokens, temperature, top_k, top_p,
                                    generator, eos_token_id)
    return generate_fixed(target, draft, input_ids, scheme=scheme, tree=tree, max_new_tokens=max_new_tokens,
                          temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
                          eos_token_id=eos_token_id, **options)
