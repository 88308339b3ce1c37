"""Resource limits of a generation, checked before any model call.

The cost of a step grows with the tree: the target scores every node in one
forward, so its attention mask, attention scores and logits grow with the
node count N (the mask and scores as N times the context, the ancestor
matrix as N^2), and a uniform tree ``KxD`` has 1 + K + .. + K^D nodes.
``16x4`` already has 69,905; unchecked, such a tree exhausts the memory
inside PyTorch after minutes.  :func:`check_limits` refuses it up front:

* **node limit**: at most ``max_tree_nodes`` nodes (default
  :data:`DEFAULT_MAX_TREE_NODES`, a few hundred: speculative decoding gains
  nothing from trees whose scoring costs more than the tokens they save);
  a caller who wants a larger tree raises it;
* **memory**: the estimate of :func:`estimate_bytes` must fit in the memory
  available on each model's device (``MemAvailable`` of ``/proc/meminfo`` for
  the CPU, free memory for CUDA; other devices are not checked).

The node count is the most a step can draft: a node with k drafts has at
most min(k, V) distinct children (repeated drafts merge).  Nothing in a step
is allocated by this maximum; the masks follow the nodes actually drafted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from multidraft.tree import TreeShape, format_shape, level_capacity, shape_depth

#: Default bound on the nodes of one step's tree.
DEFAULT_MAX_TREE_NODES = 256

#: [N, V] tensors alive while the laws are processed (logits in the sampling dtype,
#: scaled logits, softmax, top-p's sorted values, their int64 order, cumulative sums, the law).
LAW_COPIES = 8


def max_nodes(shape: TreeShape, vocab: int) -> int:
    """The most nodes a step's tree can have, root included (uniform shapes and per-node templates)."""
    return sum(level_capacity(shape, vocab))


@dataclass(frozen=True)
class ModelSize:
    """What the estimate needs from a model's config."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int
    dtype_bytes: int

    @classmethod
    def of(cls, model, vocab: int) -> ModelSize:
        config = model.config.get_text_config()
        heads = config.num_attention_heads
        hidden = config.hidden_size
        return cls(
            layers=config.num_hidden_layers,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or hidden // heads,
            hidden=hidden,
            intermediate=getattr(config, "intermediate_size", None) or 4 * hidden,
            vocab=vocab,
            dtype_bytes=torch.finfo(model.dtype).bits // 8,
        )

    def forward_bytes(self, queries: int, keys: int, kept: int) -> int:
        """One forward of ``queries`` tokens over ``keys`` keys keeping ``kept`` logits rows.

        The bool visibility and additive float mask [Q, K], one layer's
        attention scores and softmax [heads, Q, K] (at least float32), the MLP
        activations [Q, 3 * intermediate] and the output logits [kept, V].
        """
        mask = queries * keys * (2 + self.dtype_bytes)
        scores = 2 * self.heads * queries * keys * max(self.dtype_bytes, 4)
        activations = queries * (3 * self.intermediate + 4 * self.hidden) * self.dtype_bytes
        return mask + scores + activations + kept * self.vocab * self.dtype_bytes

    def cache_bytes(self, positions: int) -> int:
        """The KV cache: layers x (keys, values) x kv_heads x head_dim x positions."""
        return self.layers * 2 * self.kv_heads * self.head_dim * positions * self.dtype_bytes


def estimate_bytes(
    target, draft, shape: TreeShape, vocab: int, prompt_length: int, max_new_tokens: int
) -> dict[torch.device, int]:
    """Peak bytes per device of one generation's largest step (model weights excluded).

    ``target`` and ``draft`` are Hugging Face models; None for a model that another
    engine runs (its memory is that engine's to manage), which is then left out.

    Bounded by a step whose target forward reads the prompt and all N nodes
    (queries P + N - 1, as in the first step) with keys up to the longest
    context; the caches hold every position plus the tree; the laws are in
    the sampling dtype (float32, or float64 for float64 models).
    """
    sampling_bytes = max([4, *(torch.finfo(m.dtype).bits // 8 for m in (target, draft) if m is not None)])
    widths = level_capacity(shape, vocab)
    nodes, internal, widest_read = sum(widths), sum(widths[:-1]), max(widths[:-1])  # the draft never reads the leaves
    positions = prompt_length + max_new_tokens + shape_depth(shape) + nodes
    parts: dict[torch.device, int] = {}
    if target is not None:
        t = ModelSize.of(target, vocab)
        parts[target.device] = (
            t.cache_bytes(positions)
            + t.forward_bytes(prompt_length + nodes - 1, positions, nodes)
            + LAW_COPIES * nodes * vocab * sampling_bytes
            + 2 * nodes * nodes  # the ancestor matrix, and its padded copy while a level is added
        )
    if draft is None:
        return parts
    d = ModelSize.of(draft, vocab)
    draft_forward = max(d.forward_bytes(prompt_length, prompt_length, 1), d.forward_bytes(widest_read, positions, widest_read))
    draft_bytes = d.cache_bytes(positions) + draft_forward + (LAW_COPIES + 1) * internal * vocab * sampling_bytes
    parts[draft.device] = parts.get(draft.device, 0) + draft_bytes
    return parts


def available_bytes(device: torch.device) -> int | None:
    """Memory that can still be allocated on ``device``; None where it cannot be known."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def human(n: int) -> str:
    """Bytes as a short text: 1.5 GiB, 312.0 MiB, 12.0 KiB."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def check_limits(
    target,
    draft,
    shape: TreeShape,
    vocab: int,
    prompt_length: int,
    max_new_tokens: int,
    max_tree_nodes: int = DEFAULT_MAX_TREE_NODES,
) -> None:
    """``ValueError`` naming the node count, the estimate and the limit if the tree is too large (module docstring)."""
    if isinstance(max_tree_nodes, bool) or not isinstance(max_tree_nodes, int) or max_tree_nodes < 2:
        raise ValueError(f"max_tree_nodes must be an integer >= 2, got {max_tree_nodes!r}")
    nodes = max_nodes(shape, vocab)
    needed = estimate_bytes(target, draft, shape, vocab, prompt_length, max_new_tokens)
    name = format_shape(shape)
    if nodes > max_tree_nodes:
        total = human(sum(needed.values()))
        raise ValueError(
            f"tree {name} has up to {nodes} nodes per step, more than max_tree_nodes = {max_tree_nodes} "
            f"(its masks, caches and logits would need about {total}); use a smaller tree, or raise "
            "max_tree_nodes if the memory is there"
        )
    for device, estimate in needed.items():
        free = available_bytes(device)
        if free is not None and estimate > free:
            raise ValueError(
                f"tree {name} ({nodes} nodes) with a {prompt_length}-token prompt and max_new_tokens = "
                f"{max_new_tokens} needs about {human(estimate)} on {device} for masks, KV caches and logits, "
                f"more than the {human(free)} available"
            )
