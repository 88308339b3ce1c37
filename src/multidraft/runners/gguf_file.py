"""What a GGUF file says about its model, read from the metadata alone (the ``gguf`` package; no weights).

The llama.cpp engine runs a GGUF file as it is; the decoder still needs the
vocabulary size, the special tokens and a tokenizer.  :func:`read_gguf`
answers the first two from the header alone (memory-mapped: no tensor data
is read, and a file larger than memory is fine); :func:`multidraft.models.load_tokenizer` builds a Hugging
Face tokenizer from the file's tokenizer metadata, reading no tensor either.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from gguf import GGUFValueType, Keys


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


#: struct formats of GGUF's fixed-size value types.
_FIXED = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}


class _Header:
    """The key-value section of a GGUF file (format versions 2 and 3), read in one pass over the header.

    Scalars and strings are kept; arrays are skipped, keeping only their length (a vocabulary of 150k strings
    takes one loop over their lengths, not the per-element arrays of ``gguf.GGUFReader``).
    """

    def __init__(self, data: bytes | mmap.mmap):
        self.data, self.offset = data, 0
        magic, version, _, count = struct.unpack_from("<4sIQQ", data, 0)
        if magic != b"GGUF" or version not in (2, 3):
            raise ValueError(f"not a GGUF file of version 2 or 3 (magic {magic!r}, version {version})")
        self.offset = 24
        self.values: dict[str, object] = {}
        self.lengths: dict[str, int] = {}
        for _ in range(count):
            key = self._string()
            kind = GGUFValueType(self._read("<I"))
            if kind == GGUFValueType.ARRAY:
                self.lengths[key] = self._skip_array()
            else:
                self.values[key] = self._value(kind)

    def _read(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        length = self._read("<Q")
        text = bytes(self.data[self.offset : self.offset + length]).decode("utf-8", errors="replace")
        self.offset += length
        return text

    def _value(self, kind: GGUFValueType):
        return self._string() if kind == GGUFValueType.STRING else self._read(_FIXED[kind])

    def _skip_array(self) -> int:
        kind, length = GGUFValueType(self._read("<I")), self._read("<Q")
        if kind in _FIXED:
            self.offset += length * struct.calcsize(_FIXED[kind])
        elif kind == GGUFValueType.STRING:
            data, offset = self.data, self.offset
            for _ in range(length):
                offset += 8 + struct.unpack_from("<Q", data, offset)[0]
            self.offset = offset
        else:
            for _ in range(length):
                self._skip_array()
        return length


def read_gguf(path: str | os.PathLike) -> GGUFInfo:
    """The metadata of a ``.gguf`` file; ``ValueError`` if it is not one or lacks a vocabulary."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".gguf":
        raise ValueError(f"not a .gguf file: {str(path)!r}")
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            header = _Header(data)
    except (ValueError, OSError, struct.error) as error:
        raise ValueError(f"cannot read GGUF metadata from {str(path)!r}: {error}") from error
    values = header.values
    architecture = values.get(Keys.General.ARCHITECTURE)
    vocab_size = header.lengths.get(Keys.Tokenizer.LIST)
    if architecture is None or vocab_size is None:
        raise ValueError(f"{str(path)!r} names no architecture or no vocabulary (tokenizer.ggml.tokens)")
    context = values.get(Keys.LLM.CONTEXT_LENGTH.format(arch=architecture))
    ends = [values.get(key) for key in (Keys.Tokenizer.EOS_ID, Keys.Tokenizer.EOT_ID, Keys.Tokenizer.EOM_ID)]
    return GGUFInfo(
        path=path,
        architecture=str(architecture),
        name=values.get(Keys.General.NAME),
        vocab_size=int(vocab_size),
        context_length=None if context is None else int(context),
        bos_token_id=values.get(Keys.Tokenizer.BOS_ID),
        eos_token_id=ends[0],
        end_token_ids=tuple(dict.fromkeys(int(t) for t in ends if t is not None)),
        file_type=values.get(Keys.General.FILE_TYPE),
    )
