"""Checks that local model files are whole, run before anything slow reads them.

Each check reads headers only -- the GGUF metadata, the safetensors header, the
JSON files of a Hugging Face folder -- and compares what they promise with the
files on disk.  A problem raises :class:`DamagedModelFile` (a ``ValueError``)
whose text names the file and what is wrong with it, in one line.

What the checks cannot see: GGUF and safetensors carry no checksum, so a
changed byte inside the tensor data reads as valid weights.  The bundled pair is
checked by SHA-256 instead (:mod:`multidraft.models.bundled`).

GGUF layout (versions 2 and 3, little-endian; ggml's ``docs/gguf.md``)::

    "GGUF" u32 version, u64 tensor count, u64 metadata count
    metadata:  string key, u32 value type, value          (string = u64 length + bytes)
    tensors:   string name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset
    padding to ``general.alignment`` (default 32), then the tensor data

A tensor of ``n`` elements of a type with blocks of ``b`` elements stored in
``s`` bytes takes ``n / b * s`` bytes from ``data start + offset``; the file must
hold all of them.
"""

from __future__ import annotations

import functools
import json
import math
import mmap
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "DamagedModelFile",
    "check_gguf",
    "check_gguf_tokenizer",
    "check_hf_folder",
    "check_safetensors",
    "check_tokenizer_folder",
    "check_torch_bin",
    "read_json",
]

#: Weight files of a Hugging Face folder, in the order ``transformers`` prefers them.
HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
#: Files that hold a tokenizer's vocabulary (``*.tiktoken`` files count too).
VOCABULARY_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
_JSON_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json", "special_tokens_map.json")
_BINARY_TOKENIZER_FILES = ("tokenizer.model", "spiece.model", "vocab.txt", "merges.txt")

_GGUF_MAGIC = b"GGUF"
_GGUF_VERSIONS = (2, 3)
_GGUF_MAX_DIMS = 4
_GGUF_MAX_NESTING = 4  # arrays of arrays: deeper than any writer goes, shallow enough to bound the recursion
_GGUF_DEFAULT_ALIGNMENT = 32
# metadata value types (gguf.GGUFValueType): bytes of the fixed-size ones; 8 is a string, 9 an array
_GGUF_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY, _GGUF_UINT32 = 8, 9, 4
_CUT_SHORT = "a damaged or cut-short copy?"


class DamagedModelFile(ValueError):
    """A model, config or tokenizer file that is cut short, malformed or lacks a required part."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


#: Checks passed so far, by the check and the version of the file (path, inode, size, modification time).
_PASSED: dict[tuple, object] = {}


def _once_per_version(check: Callable[[Path], object]) -> Callable[[Path], object]:
    """Run ``check(path)`` once per version of the file; a pass (and its result) is remembered, a failure is not.

    Loading a pair checks the same files several times (model, tokenizer, the bundled pair's cache
    entries), and parsing a large ``tokenizer.json`` or GGUF header is not free.
    """

    @functools.wraps(check)
    def once(path: Path):
        status = os.stat(path)
        key = (check.__name__, os.path.realpath(path), status.st_ino, status.st_size, status.st_mtime_ns)
        if key not in _PASSED:
            _PASSED[key] = check(path)
        return _PASSED[key]

    return once


def read_json(path: Path):
    """The parsed JSON of ``path``; :class:`DamagedModelFile` when it does not parse."""
    try:
        return json.loads(Path(path).read_bytes())
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise DamagedModelFile(path, f"not valid JSON ({error}); {_CUT_SHORT}") from None


@_once_per_version
def _check_json(path: Path) -> None:
    read_json(path)


# -- GGUF ------------------------------------------------------------------------------------


class _CutShort(Exception):
    """Raised inside the GGUF walk when a read would pass the end of the file; holds the field being read."""


class _Cursor:
    """Bounds-checked little-endian reads from a buffer; ``what`` says which field, for the message."""

    def __init__(self, data):
        self.data, self.at, self.what = data, 0, ""

    def take(self, size: int) -> int:
        if size > len(self.data) - self.at:
            raise _CutShort(self.what)
        start, self.at = self.at, self.at + size
        return start

    def u32(self) -> int:
        return struct.unpack_from("<I", self.data, self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack_from("<Q", self.data, self.take(8))[0]

    def string(self) -> bytes:
        size = self.u64()
        start = self.take(size)
        return bytes(self.data[start : start + size])

    def room_for(self, count: int, each: int) -> None:
        """``_CutShort`` unless ``count`` items of at least ``each`` bytes fit (bounds a garbage count)."""
        if count * each > len(self.data) - self.at:
            raise _CutShort(self.what)


def _skip_value(cursor: _Cursor, kind: int, depth: int = 0) -> None:
    """Step over one metadata value of type ``kind`` (arrays may nest, :data:`_GGUF_MAX_NESTING` deep)."""
    if kind in _GGUF_FIXED:
        cursor.take(_GGUF_FIXED[kind])
    elif kind == _GGUF_STRING:
        cursor.take(cursor.u64())
    elif kind == _GGUF_ARRAY and depth < _GGUF_MAX_NESTING:
        item, count = cursor.u32(), cursor.u64()
        if item in _GGUF_FIXED:
            cursor.take(count * _GGUF_FIXED[item])
        elif item == _GGUF_STRING:  # token lists and merges: 150,000 strings in the bundled pair
            cursor.room_for(count, 8)
            for _ in range(count):
                cursor.take(cursor.u64())
        else:
            cursor.room_for(count, 4 + 8)
            for _ in range(count):
                _skip_value(cursor, item, depth + 1)
    else:
        raise ValueError(f"{cursor.what} has unknown value type {kind}")


def _ggml_sizes() -> dict[int, tuple[int, int]]:
    """``{ggml type: (elements per block, bytes per block)}`` from the ``gguf`` package."""
    from gguf import GGML_QUANT_SIZES

    return {int(kind): sizes for kind, sizes in GGML_QUANT_SIZES.items()}


def _walk_gguf(data, file_size: int) -> frozenset[str]:
    """The metadata keys of a GGUF held in ``data``; ``_CutShort`` or ``ValueError`` (the problem) otherwise."""
    cursor = _Cursor(data)
    cursor.what = "the magic"
    magic = bytes(data[cursor.take(4) : 4])
    if magic != _GGUF_MAGIC:
        raise ValueError(f"not a GGUF file (it starts with {magic!r}, not {_GGUF_MAGIC!r})")
    cursor.what = "the version"
    version = cursor.u32()
    if version not in _GGUF_VERSIONS:
        raise ValueError(f"unsupported GGUF version {version} (versions {_GGUF_VERSIONS} are read)")
    cursor.what = "the tensor count"
    n_tensors = cursor.u64()
    cursor.what = "the metadata count"
    n_values = cursor.u64()
    cursor.room_for(n_values, 8 + 4)
    keys, alignment = set(), _GGUF_DEFAULT_ALIGNMENT
    for index in range(n_values):
        cursor.what = f"metadata entry {index}"
        key = cursor.string().decode("utf-8", "replace")
        cursor.what = f"metadata {key!r}"
        kind = cursor.u32()
        if key == "general.alignment" and kind == _GGUF_UINT32:
            alignment = cursor.u32()
            if alignment == 0 or alignment & (alignment - 1):
                raise ValueError(f"general.alignment is {alignment}, not a power of two")
        else:
            _skip_value(cursor, kind)
        keys.add(key)
    cursor.room_for(n_tensors, 8 + 4 + 8 + 4 + 8)
    sizes, tensors = _ggml_sizes(), []
    for index in range(n_tensors):
        cursor.what = f"tensor entry {index}"
        name = cursor.string().decode("utf-8", "replace")
        cursor.what = f"tensor {name!r}"
        n_dims = cursor.u32()
        if not 1 <= n_dims <= _GGUF_MAX_DIMS:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions (1 to {_GGUF_MAX_DIMS} are possible)")
        dims = [cursor.u64() for _ in range(n_dims)]
        kind, offset = cursor.u32(), cursor.u64()
        if kind not in sizes:
            raise ValueError(f"tensor {name!r} has unknown ggml type {kind}")
        block, block_bytes = sizes[kind]
        elements = math.prod(dims)
        if elements % block:
            raise ValueError(f"tensor {name!r} has {elements} elements, not a whole number of {block}-element blocks")
        if offset % alignment:
            raise ValueError(f"tensor {name!r} starts at data offset {offset}, not a multiple of {alignment}")
        tensors.append((name, offset, elements // block * block_bytes))
    data_start = -(-cursor.at // alignment) * alignment
    for name, offset, size in tensors:
        end = data_start + offset + size
        if end > file_size:
            raise ValueError(f"tensor {name!r} ends at byte {end:,} but the file has {file_size:,} bytes; {_CUT_SHORT}")
    return frozenset(keys)


@_once_per_version
def check_gguf(path: Path) -> frozenset[str]:
    """Check a GGUF file's header against its size; returns its metadata keys.

    Raises :class:`DamagedModelFile` when the file is empty, is not GGUF, ends
    inside its header, or is shorter than its tensors need.
    """
    path = Path(path)
    file_size = path.stat().st_size
    if file_size == 0:
        raise DamagedModelFile(path, f"damaged GGUF file: the file is empty; {_CUT_SHORT}")
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        with memoryview(data) as view:  # released before the map closes
            try:
                return _walk_gguf(view, file_size)
            except _CutShort as short:
                problem = f"the file ends at byte {file_size:,}, inside its header (in {short}); {_CUT_SHORT}"
            except ValueError as error:
                problem = str(error)
    raise DamagedModelFile(path, f"damaged GGUF file: {problem}")


# -- safetensors and PyTorch weights -----------------------------------------------------------


@_once_per_version
def check_safetensors(path: Path) -> None:
    """Let the ``safetensors`` library read and validate the header; its errors become :class:`DamagedModelFile`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except SafetensorError as error:
        reason = str(error).removeprefix("Error while deserializing header: ")
        raise DamagedModelFile(path, f"damaged safetensors file: {reason}; {_CUT_SHORT}") from None


def check_torch_bin(path: Path) -> None:
    """A ``torch.save`` zip archive must have its central directory (it is written last)."""
    with open(path, "rb") as file:
        head = file.read(4)
    if not head:
        raise DamagedModelFile(path, f"damaged PyTorch weights file: the file is empty; {_CUT_SHORT}")
    if head.startswith(b"PK"):
        try:
            zipfile.ZipFile(path).close()
        except zipfile.BadZipFile as error:
            raise DamagedModelFile(path, f"damaged PyTorch weights file: {error}; {_CUT_SHORT}") from None


def _check_weights(path: Path) -> None:
    if path.name.endswith(".index.json"):
        index = read_json(path)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise DamagedModelFile(path, "the index has no weight_map")
        for shard in sorted(set(weight_map.values())):
            shard_path = path.parent / str(shard)
            if not shard_path.is_file():
                raise DamagedModelFile(path, f"lists the shard {shard!r}, which is missing")
            _check_weights(shard_path)
    elif path.suffix == ".safetensors":
        check_safetensors(path)
    else:
        check_torch_bin(path)


def check_hf_folder(folder: Path) -> None:
    """A Hugging Face model folder: ``config.json`` parses and names a model type, and the weights are whole."""
    folder = Path(folder)
    config = read_json(folder / "config.json")
    if not isinstance(config, dict) or "model_type" not in config:
        raise DamagedModelFile(folder / "config.json", "names no model_type; it is not a model config")
    weights = next((folder / name for name in HF_WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise DamagedModelFile(folder, f"holds config.json but no weights (none of {', '.join(HF_WEIGHT_FILES)})")
    _check_weights(weights)


# -- tokenizers ---------------------------------------------------------------------------------


def check_tokenizer_folder(folder: Path) -> None:
    """A tokenizer folder holds a vocabulary file, its JSON files parse and its other files are not empty."""
    folder = Path(folder)
    present = [name for name in VOCABULARY_FILES if (folder / name).is_file()] + sorted(
        p.name for p in folder.glob("*.tiktoken")
    )
    if not present:
        raise DamagedModelFile(folder, f"holds no tokenizer (none of {', '.join(VOCABULARY_FILES)})")
    for name in _JSON_TOKENIZER_FILES:
        if (folder / name).is_file():
            _check_json(folder / name)
    for name in _BINARY_TOKENIZER_FILES:
        if (folder / name).is_file() and (folder / name).stat().st_size == 0:
            raise DamagedModelFile(folder / name, f"the file is empty; {_CUT_SHORT}")


def check_gguf_tokenizer(path: Path, keys: frozenset[str]) -> None:
    """A GGUF file used as a tokenizer must carry the token list in its metadata."""
    if "tokenizer.ggml.tokens" not in keys:
        raise DamagedModelFile(path, "holds no tokenizer (no tokenizer.ggml.tokens in its metadata)")
