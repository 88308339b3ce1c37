"""What a GGUF file says about its model, read from the metadata alone (the ``gguf`` package; no weights).

The llama.cpp engine runs a GGUF file as it is; the decoder still needs the
vocabulary size, the special tokens and a tokenizer.  :func:`read_gguf`
answers the first two from the header (memory-mapped, so a file larger than
memory is fine); :func:`multidraft.models.load_tokenizer` builds a Hugging
Face tokenizer from the file's tokenizer metadata, reading no tensor either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gguf import GGUFReader, GGUFValueType, Keys


@dataclass(frozen=True)
class GGUFInfo:
    """The model facts of one GGUF file."""

    path: Path
    architecture: str
    name: str | None
    vocab_size: int  # tokens in the vocabulary: the logits per row llama.cpp returns
    context_length: int | None  # the trained context, in positions
    bos_token_id: int | None
    eos_token_id: int | None
    end_token_ids: tuple[int, ...]  # eos, end-of-turn and end-of-message ids that the file names
    file_type: int | None  # llama.cpp's ftype (e.g. 15 = Q4_K_M)


def _scalar(reader: GGUFReader, key: str):
    field = reader.get_field(key)
    if field is None or not field.types or field.types[0] == GGUFValueType.ARRAY:
        return None
    return field.contents()


def read_gguf(path: str | os.PathLike) -> GGUFInfo:
    """The metadata of a ``.gguf`` file; ``ValueError`` if it is not one or lacks a vocabulary."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".gguf":
        raise ValueError(f"not a .gguf file: {str(path)!r}")
    try:
        reader = GGUFReader(path, "r")
    except (ValueError, OSError) as error:
        raise ValueError(f"cannot read GGUF metadata from {str(path)!r}: {error}") from error
    architecture = _scalar(reader, Keys.General.ARCHITECTURE)
    tokens = reader.get_field(Keys.Tokenizer.LIST)
    if architecture is None or tokens is None:
        raise ValueError(f"{str(path)!r} names no architecture or no vocabulary (tokenizer.ggml.tokens)")
    context = _scalar(reader, Keys.LLM.CONTEXT_LENGTH.format(arch=architecture))
    ends = [_scalar(reader, key) for key in (Keys.Tokenizer.EOS_ID, Keys.Tokenizer.EOT_ID, Keys.Tokenizer.EOM_ID)]
    return GGUFInfo(
        path=path,
        architecture=str(architecture),
        name=_scalar(reader, Keys.General.NAME),
        vocab_size=len(tokens.data),
        context_length=None if context is None else int(context),
        bos_token_id=_scalar(reader, Keys.Tokenizer.BOS_ID),
        eos_token_id=ends[0],
        end_token_ids=tuple(dict.fromkeys(int(t) for t in ends if t is not None)),
        file_type=_scalar(reader, Keys.General.FILE_TYPE),
    )

