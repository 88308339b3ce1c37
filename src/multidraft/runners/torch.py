"""The PyTorch engine: a Hugging Face causal LM and its ``DynamicCache`` behind the :class:`Runner` seam.

A forward passes ``visible`` as an additive 4D mask (0 where visible, the
dtype's minimum elsewhere), which transformers hands unchanged to the eager
and SDPA attention kernels, with explicit ``position_ids``.  The model runs
on the execution path of :mod:`multidraft.execution` (prepared on entry).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from multidraft.execution import prepare

#: Attention implementations that honour an arbitrary 4D float mask.
TREE_ATTENTION = ("eager", "sdpa")


def output_size(model) -> int:
    """The number of logits the model emits: its output layer's ``out_features`` or rows, else ``config.vocab_size``.

    (Prepacked, quantised and sub-vocabulary heads of :mod:`multidraft.execution` all answer one of these.)
    """
    head = model.get_output_embeddings()
    if getattr(head, "out_features", None) is not None:
        return int(head.out_features)
    weight = getattr(head, "weight", None)
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) else int(model.config.vocab_size)


class TorchRunner:
    """A Hugging Face causal LM (one that takes a 4D attention mask, ``position_ids`` and a ``DynamicCache``)."""

    engine = "torch"

    def __init__(self, model):
        self.model = prepare(model)
        self.vocab_size = output_size(model)
        self.device = model.device
        self.dtype = model.dtype
        self._min = torch.finfo(model.dtype).min
        self.cache = DynamicCache()

    def cached(self) -> int:
        return self.cache.get_seq_length()

    def reset(self) -> None:
        self.cache = DynamicCache()

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor, keep: int) -> torch.Tensor:
        device = self.device
        mask = torch.zeros(visible.shape, dtype=self.dtype, device=device)  # [Q, K]
        mask.masked_fill_(~visible.to(device), self._min)
        out = self.model(
            input_ids=tokens.to(device)[None],
            attention_mask=mask[None, None],  # [1, 1, Q, K]
            position_ids=positions.to(device)[None],
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=keep,
        )
        return out.logits[0, -keep:]

    def keep_path(self, length: int, path: Sequence[int]) -> None:
        """The path entries are copied to offsets length, length + 1, .. and every layer is cut behind them."""
        index = torch.tensor(path, dtype=torch.int64, device=self.device) if path else None
        for layer in self.cache.layers:
            if not layer.is_initialized:
                continue
            if index is not None:
                layer.keys[..., length : length + len(path), :] = layer.keys.index_select(-2, index)
                layer.values[..., length : length + len(path), :] = layer.values.index_select(-2, index)
            layer.keys = layer.keys[..., : length + len(path), :]
            layer.values = layer.values[..., : length + len(path), :]

    def check(self, role: str, total_length: int) -> None:
        """Context, attention implementation and cache layers fit tree decoding over ``total_length`` positions."""
        config = self.model.config
        limit = getattr(config, "max_position_embeddings", None)
        if limit is not None and total_length > limit:
            raise ValueError(
                f"prompt + max_new_tokens + tree depth = {total_length} exceeds the {role} model's context "
                f"of {limit} positions"
            )
        attention = getattr(config, "_attn_implementation", None)
        if attention not in TREE_ATTENTION:
            raise ValueError(
                f"the {role} model uses attention {attention!r}; tree masks need one of {', '.join(TREE_ATTENTION)} "
                "(load it with attn_implementation='sdpa')"
            )
        for layer in DynamicCache(config=config).layers:
            window = getattr(layer, "sliding_window", None)
            if type(layer) is DynamicSlidingWindowLayer and window is not None and total_length <= window:
                continue  # the window never slides: full attention is the same
            if type(layer) is not DynamicLayer:
                raise ValueError(
                    f"the {role} model has {type(layer).__name__} cache layers; tree decoding supports full "
                    f"attention (or sliding windows longer than the {total_length} positions used)"
                )
