"""A cheaper draft for llama.cpp: the same GGUF with its output layer cut to a sub-vocabulary.

The output layer of a small draft is a large share of its forward: for the
bundled Qwen2.5-Coder-0.5B it is a 151936 x 896 matrix, about a quarter of
the multiply-adds of a row.  :func:`write_subvocabulary` writes a new GGUF
whose vocabulary is K tokens of the original one: the first ``keep`` ids
(for a byte-pair-encoding vocabulary such as Qwen2's, ids are in merge order,
so these are the most frequent pieces) and every control or user-defined
token.  The token embedding and output rows of those tokens are copied as
they are stored (quantised rows are cut along whole rows, nothing is
re-quantised), and the tokenizer metadata is cut to match.  The file records
the original id of each kept token (``multidraft.vocabulary.kept_ids``) and,
for every original id, the kept token it is read as
(``multidraft.vocabulary.input_ids``): itself if kept, else the kept token
that is its longest prefix (every single byte is kept, so one exists), so
the draft reads an approximation of the text.

:class:`~multidraft.runners.llama.LlamaRunner` reads these keys and keeps
the original numbering: it feeds each token as the token it is read as and
returns logits over the full vocabulary, with the float32 minimum outside
the sub-vocabulary (q = 0 there after the softmax).  Verification never requires q > 0, so a target verifying such a
draft stays exactly lossless; what the cut costs is acceptance, which the
benchmark reports beside the time it saves.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter, Keys, TokenType

from multidraft.runners.gguf_file import INPUT_IDS, KEPT_IDS

#: Tensors with one row per token.
PER_TOKEN = ("token_embd.weight", "output.weight")
#: Tokenizer arrays with one entry per token.
PER_TOKEN_ARRAYS = (Keys.Tokenizer.LIST, Keys.Tokenizer.TOKEN_TYPE, Keys.Tokenizer.SCORES)
#: Token-id scalars renumbered into the sub-vocabulary.
TOKEN_ID_SUFFIX = "_token_id"


def kept_tokens(token_types: np.ndarray, keep: int) -> np.ndarray:
    """The original ids kept, increasing: ids below ``keep`` and every control or user-defined token."""
    special = np.flatnonzero(np.isin(token_types, [TokenType.CONTROL, TokenType.USER_DEFINED]))
    return np.union1d(np.arange(min(keep, len(token_types))), special)


def read_as(tokens: list[str], ids: np.ndarray) -> np.ndarray:
    """For every token, the kept token it is read as: itself, else its longest prefix among the kept tokens."""
    position = {tokens[i]: n for n, i in enumerate(ids.tolist())}
    out = np.zeros(len(tokens), dtype=np.int64)
    for token, text in enumerate(tokens):
        length = len(text)
        while length > 0 and text[:length] not in position:
            length -= 1
        out[token] = position[text[:length]] if length else 0
    return out


def write_subvocabulary(source: str | os.PathLike, out: str | os.PathLike, keep: int) -> Path:
    """Write ``source`` with its vocabulary cut to :func:`kept_tokens` (module docstring); returns ``out``."""
    reader = GGUFReader(source)
    fields = reader.fields
    types = np.asarray(fields[Keys.Tokenizer.TOKEN_TYPE].contents())
    ids = kept_tokens(types, keep)
    new_id = np.full(len(types), -1, dtype=np.int64)
    new_id[ids] = np.arange(len(ids))
    tokens = fields[Keys.Tokenizer.LIST].contents()
    architecture = fields[Keys.General.ARCHITECTURE].contents()
    writer = GGUFWriter(str(out), architecture)
    for key, field in fields.items():
        if key.startswith("GGUF.") or key == Keys.General.ARCHITECTURE:
            continue
        kind = field.types[0]
        value = field.contents()
        if key in PER_TOKEN_ARRAYS:
            value = [value[i] for i in ids]
        elif key == Keys.Tokenizer.MERGES:
            kept = {tokens[i] for i in ids}
            value = [
                m for m in value if (pair := m.split(" ", 1)) and all(p in kept for p in pair) and "".join(pair) in kept
            ]
        elif key.startswith("tokenizer.ggml.") and key.endswith(TOKEN_ID_SUFFIX):
            if new_id[value] < 0:
                continue  # a special id outside the sub-vocabulary: dropped
            value = int(new_id[value])
        elif key == Keys.LLM.VOCAB_SIZE.format(arch=architecture):
            value = len(ids)
        sub_type = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, kind, sub_type=sub_type)
    writer.add_key_value(KEPT_IDS, ids.astype(np.uint32).tolist(), GGUFValueType.ARRAY, GGUFValueType.UINT32)
    writer.add_key_value(
        INPUT_IDS, read_as(tokens, ids).astype(np.uint32).tolist(), GGUFValueType.ARRAY, GGUFValueType.UINT32
    )
    for tensor in reader.tensors:
        data = tensor.data
        if tensor.name in PER_TOKEN:
            data = np.ascontiguousarray(data[ids])  # whole rows, as stored
        writer.add_tensor(tensor.name, data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)
