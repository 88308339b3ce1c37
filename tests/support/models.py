"""Tiny randomly initialised causal LMs for the tree and decoding tests (no downloads)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 8


def tiny_llama(
    seed: int,
    *,
    layers: int = 1,
    scale: float = 10.0,
    attention: str = "sdpa",
    max_positions: int = 256,
    vocab: int = VOCAB,
) -> LlamaForCausalLM:
    """A Llama with ``vocab`` tokens, hidden size 16; ``scale`` multiplies the output layer.

    Random initialisation gives near-uniform next-token laws; scaling the
    output layer by ~10 makes them uneven (largest probability ~0.3) while
    keeping every token likely enough to be drawn.
    """
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        max_position_embeddings=max_positions,
        attn_implementation=attention,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model
