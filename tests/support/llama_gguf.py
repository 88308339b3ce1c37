"""A tiny llama-architecture GGUF with random weights, written with the ``gguf`` package (no download).

The model is a 2-layer llama (grouped-query attention, SwiGLU, RMSNorm, RoPE)
over a vocabulary of ``vocab`` tokens, a few hundred kB in float32: enough for
llama.cpp to load it and for its logits to depend on the whole context.  The
vocabulary is a SentencePiece-style list (``<unk>``, ``<s>``, ``</s>``, then
one-letter pieces); the runner tests feed token ids, never text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType
from gguf.quants import quantize

EMBEDDING = 64
HEADS = 4
KV_HEADS = 2
LAYERS = 2
FEED_FORWARD = 128
CONTEXT = 512
BOS, EOS = 1, 2


def _matrix(rng: np.random.Generator, rows: int, columns: int, gain: float) -> np.ndarray:
    """float32 [rows, columns] (GGUF stores it as [columns, rows]: ``rows`` outputs of ``columns`` inputs)."""
    return (rng.standard_normal((rows, columns)) * gain / np.sqrt(columns)).astype(np.float32)


def write_tiny_llama(
    path: str | Path,
    *,
    vocab: int = 48,
    seed: int = 0,
    quantized: bool = False,
    output_gain: float = 3.0,
    letters: bool = False,
) -> Path:
    """Write the model to ``path``; ``quantized``: the matrices as Q8_0 (64 columns = 2 blocks of 32);
    ``output_gain`` scales the output layer (logits of standard deviation ~``output_gain``); ``letters``:
    the pieces after the control tokens are ``\u2581`` and the 26 letters, then as usual, so that text of
    lower-case letters and spaces tokenizes (``vocab`` >= 30)."""
    rng = np.random.default_rng(seed)
    head = EMBEDDING // HEADS
    writer = GGUFWriter(str(path), "llama")
    writer.add_name(f"tiny-llama-v{vocab}-s{seed}")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(head)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(LlamaFileType.MOSTLY_Q8_0 if quantized else LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    pieces = ["<unk>", "<s>", "</s>"] + [f"\u2581{chr(ord('a') + i % 26)}{i // 26 or ''}" for i in range(vocab - 3)]
    if letters:
        pieces = ["<unk>", "<s>", "</s>", "\u2581"] + [chr(ord("a") + i) for i in range(26)] + pieces[3:]
        pieces = pieces[:vocab]
    writer.add_token_list(pieces)
    writer.add_token_scores([0.0] * 3 + [-float(i) for i in range(vocab - 3)])
    writer.add_token_types([TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.NORMAL] * (vocab - 3))
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_add_bos_token(False)

    def matrix(name: str, rows: int, columns: int, gain: float = 1.0) -> None:
        data = _matrix(rng, rows, columns, gain)
        if quantized:
            writer.add_tensor(name, quantize(data, GGMLQuantizationType.Q8_0), raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, data)

    def norm(name: str) -> None:
        writer.add_tensor(name, (1 + 0.1 * rng.standard_normal(EMBEDDING)).astype(np.float32))

    writer.add_tensor("token_embd.weight", rng.standard_normal((vocab, EMBEDDING)).astype(np.float32))
    for layer in range(LAYERS):
        block = f"blk.{layer}"
        norm(f"{block}.attn_norm.weight")
        matrix(f"{block}.attn_q.weight", EMBEDDING, EMBEDDING, 2.0)
        matrix(f"{block}.attn_k.weight", KV_HEADS * head, EMBEDDING, 2.0)
        matrix(f"{block}.attn_v.weight", KV_HEADS * head, EMBEDDING)
        matrix(f"{block}.attn_output.weight", EMBEDDING, EMBEDDING)
        norm(f"{block}.ffn_norm.weight")
        matrix(f"{block}.ffn_gate.weight", FEED_FORWARD, EMBEDDING)
        matrix(f"{block}.ffn_up.weight", FEED_FORWARD, EMBEDDING)
        matrix(f"{block}.ffn_down.weight", EMBEDDING, FEED_FORWARD)
    norm("output_norm.weight")
    matrix("output.weight", vocab, EMBEDDING, output_gain)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
