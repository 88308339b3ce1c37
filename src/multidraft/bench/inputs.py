"""Models and prompts for the benchmarks: the bundled pair or local folders, and encoded prompts."""

from __future__ import annotations

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
