"""Models and prompts for the benchmarks and the CLI: the bundled pair or local models on an engine, and
encoded prompts.

Two engines run a pair (:func:`choose_engine`):

* ``torch``: multidraft's PyTorch path; a ``.gguf`` file is de-quantised to float32 first
  (:func:`load_pair`);
* ``llama``: each GGUF file as it is, in llama.cpp (:class:`~multidraft.runners.llama.LlamaRunner`,
  :func:`load_llama_pair`): nothing is de-quantised and no PyTorch model is loaded.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch

from multidraft.prompts import CATEGORIES, Prompt, load_prompts


@dataclass
class ModelPair:
    target: object
    draft: object
    tokenizer: object
    names: dict  # {"target": ..., "draft": ..., "licences": ...}
    paths: tuple  # (target, draft) local folders or files, for loading them again elsewhere


#: The engines a pair can run on; ``auto`` picks one (:func:`choose_engine`).
ENGINES = ("auto", "torch", "llama")


def llama_available() -> bool:
    """Whether llama-cpp-python can be imported (without importing it)."""
    from multidraft.runners.llama import BINDING

    return importlib.util.find_spec(BINDING) is not None


def choose_engine(engine: str, target_path: str | None, draft_path: str | None) -> str:
    """``"torch"`` or ``"llama"`` for the pair (the bundled one when both paths are None), checked before any
    model is loaded; ``ValueError`` naming the problem.

    ``auto`` is ``llama`` when both models are GGUF files (the bundled pair is) and llama-cpp-python is
    installed, else ``torch``.  ``llama`` needs both to be GGUF files and llama-cpp-python.
    """
    from multidraft.models import resolve_model_path

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if (target_path is None) != (draft_path is None):
        raise ValueError("give both --target and --draft, or neither (then the bundled pair is used)")
    if target_path is None:
        kinds = {"target": ("gguf", "the bundled target"), "draft": ("gguf", "the bundled draft")}
    else:
        kinds = {
            role: (resolve_model_path(path)[0], repr(str(path)))
            for role, path in (("target", target_path), ("draft", draft_path))
        }
    gguf = all(kind == "gguf" for kind, _ in kinds.values())
    if engine == "auto":
        return "llama" if gguf and llama_available() else "torch"
    if engine == "llama":
        for role, (kind, where) in kinds.items():
            if kind != "gguf":
                raise ValueError(
                    f"--engine llama runs .gguf files as they are, but the {role} {where} is a Hugging Face "
                    f"folder (use --engine torch, or a .gguf {role})"
                )
        if not llama_available():
            from multidraft.runners.llama import INSTALL_HINT

            raise ValueError(INSTALL_HINT)
    return engine


def gguf_paths(target_path: str | None, draft_path: str | None) -> tuple:
    """The (target, draft) GGUF files of the pair: the bundled pair's (assembled once) or the given ones, checked."""
    from multidraft import models

    if target_path is None:
        pair = models.bundled_pair()
        return pair.target.gguf_path(), pair.draft.gguf_path()
    return tuple(models.check_model(path)[1] for path in (target_path, draft_path))


def load_llama_pair(
    target_path: str | None,
    draft_path: str | None,
    *,
    threads: int | None = None,
    context: int = 4096,
    sequences: int = 256,
) -> ModelPair:
    """Both GGUF files on llama.cpp as they are (no PyTorch model is loaded; nothing is de-quantised), with the
    tokenizer read from the target's GGUF metadata.  ``threads``: llama.cpp's threads per forward (default
    ``os.cpu_count()``); ``context``: KV cells of each model; ``sequences``: the most leaves of a tree."""
    from multidraft import models
    from multidraft.runners.llama import LlamaRunner

    threads = threads or os.cpu_count() or 1
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    paths = gguf_paths(target_path, draft_path)
    models.check_tokenizer(paths[0])
    if target_path is None:
        pair = models.bundled_pair()
        names = {"target": pair.target.name, "draft": pair.draft.name, "licences": list(pair.licenses)}
    else:
        names = {"target": str(target_path), "draft": str(draft_path), "licences": "see the model files"}
    tokenizer = models.load_tokenizer(paths[0])
    target = LlamaRunner(paths[0], threads=threads, context=context, sequences=sequences)
    draft = LlamaRunner(paths[1], threads=threads, context=context, sequences=sequences)
    names["engine"] = {"name": "llama.cpp", "threads": threads}
    return ModelPair(target, draft, tokenizer, names, paths)


def load_torch_target(target_path: str | None):
    """The target alone on the PyTorch path in float32 (a GGUF file de-quantised; the bundled target from its
    converted folder), prepared for the fast path: the float32 reference beside a llama.cpp run."""
    import torch

    from multidraft import models
    from multidraft.execution import prepare

    if target_path is None:
        target = models.bundled_pair().target.load(dtype=torch.float32)
    else:
        target = models.load_causal_lm(target_path, dtype=torch.float32)
    target.config._attn_implementation = "sdpa"
    return prepare(target)


def load_llama_plain(path, threads: int, context: int):
    """llama-cpp-python's high-level ``Llama`` of the GGUF file ``path``, loaded as its users load it (CPU only)."""
    from multidraft.runners.llama import _bindings

    _bindings()  # the install hint if missing; llama.cpp's log quieted to errors
    from llama_cpp import Llama

    return Llama(
        model_path=str(path),
        n_ctx=context,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=0,
        seed=0,
        verbose=False,
    )


def load_pair(
    target_path: str | None, draft_path: str | None, *, draft_precision: str = "int8", draft_vocab: int | None = None
) -> ModelPair:
    """Local folders when both are given, else the pair installed by set-up (a clear error if missing).

    Both models are put on the fast path (:func:`multidraft.execution.prepare`);
    the draft is made cheaper as asked (:func:`multidraft.execution.prepare_draft`).
    """
    from multidraft import models
    from multidraft.execution import DRAFT_PRECISIONS, prepare, prepare_draft

    if draft_precision not in DRAFT_PRECISIONS:
        raise ValueError(f"unknown draft precision {draft_precision!r}; choose one of {', '.join(DRAFT_PRECISIONS)}")

    if (target_path is None) != (draft_path is None):
        raise ValueError("give both --target and --draft, or neither (then the bundled pair is used)")
    if target_path is not None:
        # Every file is checked before anything is loaded, so a typo or a damaged file fails fast.
        models.check_model(target_path)
        models.check_model(draft_path)
        models.check_tokenizer(target_path)
        target = models.load_causal_lm(target_path)
        draft = models.load_causal_lm(draft_path)
        tokenizer = models.load_tokenizer(target_path)
        names = {"target": str(target_path), "draft": str(draft_path), "licences": "see the model folders"}
        paths = (target_path, draft_path)
    else:
        pair = models.bundled_pair()
        target, draft, tokenizer = models.load_bundled_pair()
        names = {"target": pair.target.name, "draft": pair.draft.name, "licences": list(pair.licenses)}
        paths = (pair.target.hf_path(), pair.draft.hf_path())
    for model in (target, draft):
        model.config._attn_implementation = "sdpa"  # tree masks need an attention that takes a 4D mask
    special = [i for i in tokenizer.all_special_ids] + list(getattr(tokenizer, "added_tokens_decoder", {}))
    prepare_draft(draft, precision=draft_precision, vocabulary=draft_vocab, special_ids=special)
    prepare(target)
    names["draft_option"] = {"precision": draft_precision, "vocabulary": draft_vocab}
    return ModelPair(target, draft, tokenizer, names, paths)


def pick_prompts(count: int, offset: int = 0, category: str | None = None) -> list[Prompt]:
    """``count`` prompts, round-robin over the categories (fixed order), so every setting is covered;
    or of one ``category`` only.

    ``offset`` skips the first ``offset`` prompts of each category (the benchmarks use the first
    ones, so a recording made for planning can take prompts they never see).
    """
    if count < 1:
        raise ValueError(f"the number of prompts must be >= 1, got {count}")
    if offset < 0:
        raise ValueError(f"the prompt offset must be >= 0, got {offset}")
    per_category = [load_prompts(name)[offset:] for name in ([category] if category else CATEGORIES)]
    available = sum(map(len, per_category))
    if count > available:
        raise ValueError(
            f"{count} prompts asked for, but only {available} are left after skipping the first "
            f"{offset} of each category"
        )
    picked = []
    for index in range(max(map(len, per_category))):
        for rows in per_category:
            if index < len(rows) and len(picked) < count:
                picked.append(rows[index])
    return picked


def encode(tokenizer, prompt: Prompt, max_prompt_tokens: int) -> torch.Tensor:
    """Token ids [n] of a prompt: chat and summarisation requests through the chat template,
    web text raw (a continuation task).  The user text is cut to ``max_prompt_tokens`` tokens first."""
    ids = tokenizer(prompt.text, add_special_tokens=False)["input_ids"][:max_prompt_tokens]
    if prompt.category == "webtext" or getattr(tokenizer, "chat_template", None) is None:
        return torch.tensor(ids)
    text = tokenizer.decode(ids)
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return torch.tensor(templated)
