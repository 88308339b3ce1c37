"""Loading causal language models and tokenizers offline, from local folders or GGUF files.

Everything here works without network access: paths are always local, and every
``transformers`` call uses ``local_files_only=True`` inside :func:`offline`.
Files are checked (:mod:`multidraft.models.files`) before ``transformers``
reads them, so a damaged or cut-short file is refused in one line naming it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

from multidraft.models.files import (
    check_gguf,
    check_gguf_tokenizer,
    check_hf_folder,
    check_tokenizer_folder,
)

__all__ = ["check_model", "check_tokenizer", "load_causal_lm", "load_tokenizer", "offline", "resolve_model_path"]

_TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer_config.json")


@contextlib.contextmanager
def offline() -> Iterator[None]:
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


def check_model(path: str | os.PathLike) -> tuple[str, Path]:
    """:func:`resolve_model_path`, then check the files it names (headers against sizes, JSON parses).

    Raises :class:`~multidraft.models.files.DamagedModelFile` (a ``ValueError``) naming the file and the problem.
    """
    kind, p = resolve_model_path(path)
    if kind == "gguf":
        check_gguf(p)
    else:
        check_hf_folder(p)
    return kind, p


def _resolve_tokenizer_path(path: str | os.PathLike) -> tuple[str, Path]:
    p = Path(path).expanduser()
    if p.is_dir() and any((p / f).is_file() for f in _TOKENIZER_MARKERS):
        return "hf", p
    return resolve_model_path(p)


def check_tokenizer(path: str | os.PathLike) -> tuple[str, Path]:
    """Where :func:`load_tokenizer` reads the tokenizer of ``path``, after checking its files."""
    kind, p = _resolve_tokenizer_path(path)
    if kind == "gguf":
        check_gguf_tokenizer(p, check_gguf(p))
    else:
        check_tokenizer_folder(p)
    return kind, p


def load_causal_lm(path: str | os.PathLike, *, dtype=None, device="cpu"):
    """Load a causal LM from a local HF folder (safetensors / pytorch bin) or a ``.gguf`` file.

    ``path`` may be a folder with ``config.json``, a ``.gguf`` file, or a folder holding exactly
    one ``.gguf``.  Nothing is downloaded.  GGUF weights are de-quantised to ``dtype``.
    The files are checked first (:func:`check_model`).  Returns the model in eval mode on ``device``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if dtype is None:
        dtype = torch.float32
    kind, p = check_model(path)
    with offline():
        if kind == "hf":
            model = AutoModelForCausalLM.from_pretrained(str(p), local_files_only=True, **_dtype_kwargs(dtype))
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
    ``tokenizer_config.json``; otherwise the rules of :func:`resolve_model_path` apply.  The
    files are checked first (:func:`check_tokenizer`).
    """
    from transformers import AutoTokenizer

    kind, p = check_tokenizer(path)
    with offline():
        if kind == "hf":
            return AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        _require_gguf_deps()
        return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name, local_files_only=True)
