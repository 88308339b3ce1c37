"""A tiny target/draft pair saved as local Hugging Face folders, for running the CLI offline in tests."""

from __future__ import annotations

from pathlib import Path

from tests.support.models import tiny_llama

#: The tokenizer's words; every other word of a prompt becomes [UNK] (id 0).
WORDS = ["[UNK]", *"the a of to and in is it you that he was for on are with as his they be at one have this".split()]


def save_tiny_pair(folder: Path, *, max_positions: int = 512) -> tuple[str, str]:
    """Save a 1-layer target and draft (vocabulary = :data:`WORDS`) and a word-level tokenizer; returns both paths."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    paths = []
    for name, seed in (("target", 0), ("draft", 1)):
        path = folder / name
        tiny_llama(seed, vocab=len(WORDS), max_positions=max_positions).save_pretrained(path)
        paths.append(str(path))
    tokenizer.save_pretrained(paths[0])
    return paths[0], paths[1]
