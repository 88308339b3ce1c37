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

import numpy as np
from gguf import GGUFValueType, Keys

#: Keys of a file cut to a sub-vocabulary (:mod:`multidraft.runners.subvocabulary`).
KEPT_IDS = "multidraft.vocabulary.kept_ids"
INPUT_IDS = "multidraft.vocabulary.input_ids"


@dataclass(frozen=True)
class GGUFInfo:
    """The model facts of one GGUF file."""

    path: Path
    architecture: str
    name: str | None
    vocab_size: int  # the logits per row the llama.cpp runner returns (the original vocabulary's, if cut)
    context_length: int | None  # the trained context, in positions
    bos_token_id: int | None
    eos_token_id: int | None
    end_token_ids: tuple[int, ...]  # eos, end-of-turn and end-of-message ids that the file names
    file_type: int | None  # llama.cpp's ftype (e.g. 15 = Q4_K_M)
    #: A file cut to a sub-vocabulary (:mod:`multidraft.runners.subvocabulary`): the original id of each of its
    #: tokens [K], and the token each original id is read as [vocab_size]; None otherwise.
    kept_ids: np.ndarray | None = None
    input_ids: np.ndarray | None = None


#: struct formats of GGUF's fixed-size value types.
_FIXED = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


class _Header:
    """The key-value section of a GGUF file (format versions 2 and 3), read in one pass over the header.

    Scalars and strings are kept, arrays of numbers as numpy arrays; arrays of strings are skipped, keeping
    only their length (a vocabulary of 150k strings takes one loop over their lengths, not the per-element
    arrays of ``gguf.GGUFReader``).
    """

    def __init__(self, data: bytes | mmap.mmap):
        self.data, self.offset = data, 0
        magic, version, _, count = struct.unpack_from("<4sIQQ", data, 0)
        if magic != b"GGUF" or version not in (2, 3):
            raise ValueError(f"not a GGUF file of version 2 or 3 (magic {magic!r}, version {version})")
        self.offset = 24
        self.values: dict[str, object] = {}
        self.lengths: dict[str, int] = {}
        self.arrays: dict[str, np.ndarray] = {}
        for _ in range(count):
            key = self._string()
            kind = GGUFValueType(self._read("<I"))
            if kind == GGUFValueType.ARRAY:
                start = self.offset
                self.lengths[key] = self._skip_array()
                self._keep_numbers(key, start)
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

    def _keep_numbers(self, key: str, start: int) -> None:
        """The array of numbers at ``start`` (type, length, values) as a numpy array, in ``arrays``."""
        kind, length = struct.unpack_from("<IQ", self.data, start)
        if GGUFValueType(kind) in _FIXED:
            dtype = np.dtype(_FIXED[GGUFValueType(kind)])
            self.arrays[key] = np.frombuffer(self.data, dtype=dtype, count=length, offset=start + 12).copy()

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
    kept, inputs = header.arrays.get(KEPT_IDS), header.arrays.get(INPUT_IDS)
    if (kept is None) != (inputs is None) or (
        kept is not None and (len(kept) != vocab_size or (inputs.max(initial=0) >= vocab_size))
    ):
        raise ValueError(f"{str(path)!r} has an inconsistent sub-vocabulary ({KEPT_IDS}, {INPUT_IDS})")
    ends = [values.get(key) for key in (Keys.Tokenizer.EOS_ID, Keys.Tokenizer.EOT_ID, Keys.Tokenizer.EOM_ID)]
    return GGUFInfo(
        path=path,
        architecture=str(architecture),
        name=values.get(Keys.General.NAME),
        vocab_size=int(vocab_size if inputs is None else len(inputs)),
        context_length=None if context is None else int(context),
        bos_token_id=values.get(Keys.Tokenizer.BOS_ID),
        eos_token_id=ends[0],
        end_token_ids=tuple(dict.fromkeys(int(t) for t in ends if t is not None)),
        file_type=values.get(Keys.General.FILE_TYPE),
        kept_ids=None if kept is None else kept.astype(np.int64),
        input_ids=None if inputs is None else inputs.astype(np.int64),
    )
