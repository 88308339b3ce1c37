"""The execution path of the models: prepacked oneDNN linear layers on the CPU, and cheaper drafts.

**Why.**  A decoding step runs the target on a handful of query tokens (the
tree).  Such a forward should cost about one read of the weights (the memory
roofline), whatever the number of queries up to a few dozen.  With plain
``torch.nn.Linear`` on the CPU it does not: the float32 GEMM re-packs the
weight matrix on every call, and a 7-query forward of the 1.5B target cost
3-4x a 1-query one.  oneDNN's linear with the weight reordered once into its
blocked layout removes that.  Two ways to call it were compared in an
exploratory run on the project's 2-core CPU (median of 20, one 1536x8960
layer, 1 / 2 / 4 / 8 rows; whole-model figures: ``benchmarks/bench_execution.py``):
``torch.utils.mkldnn.MkldnnLinear`` 1.76 / 2.34 / 2.26 / 1.94 ms, and
``torch.ops.mkldnn._linear_pointwise`` on a weight reordered for 8 rows
(``torch.ops.mkldnn._reorder_linear_weight``, what inductor's freezing
emits) 1.33 / 1.62 / 1.02 / 1.77 ms; plain ``nn.Linear`` 3.9 / 6.1 / 5.4 /
5.3 ms.  The second also skips ``MkldnnLinear``'s conversion of every
activation to and from oneDNN's tensor type.  Reordering for 2 to 32 rows
gave the same speeds; for 1 row it was slower at 2 rows and more.

:func:`prepare` swaps every ``nn.Linear`` of a float32 CPU model for
:class:`PackedLinear`, in place and once (idempotent).  The weights are the same numbers, so
the model's distributions are the same up to float rounding (about 1e-6);
:func:`multidraft.decoding.generate` and :func:`~multidraft.decoding.autoregressive`
call it on entry, so the speculative decoder and its baseline run on the same
path.  Other devices and dtypes are left as they are.

**Cheaper drafts.**  Losslessness never depends on the draft (any q gives
exactly the target's law), so the draft may be made cheaper at the cost of
acceptance only (:func:`prepare_draft`):

* ``precision="int8"``: dynamic int8 quantisation of every linear layer
  (``torch.ao.quantization.quantize_dynamic`` with per-channel weight scales;
  activations quantised per call), a quarter of the bytes per forward.
  Measured on the bundled 0.5B draft read as the decoder reads it
  (``benchmarks/bench_execution.py``: 192 positions, T = 1): single-draft
  acceptance sum min(p, q) 0.719 in float32, 0.689 in int8 per channel; a
  1-query forward 0.41x the float32 one.  Per-tensor scales and bfloat16
  (which ran at 0.77x float32 here) were tried in exploratory runs and are
  not offered;
* ``vocabulary=n``: the draft's output layer keeps only the first ``n`` token
  ids and gives q = 0 elsewhere (a frequent-token sub-vocabulary as in FR-Spec,
  arXiv 2502.14856, and EAGLE-3: byte-level BPE vocabularies such as Qwen's are
  ordered by merge rank, so low ids are the frequent tokens; the special
  tokens at the end of the vocabulary are always kept).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

#: Draft precisions offered by :func:`prepare_draft`.
DRAFT_PRECISIONS = ("float32", "int8")


def can_prepack(model) -> bool:
    """Whether :func:`prepare` applies: a float32 model on a CPU with oneDNN."""
    return model.device.type == "cpu" and model.dtype == torch.float32 and torch.backends.mkldnn.is_available()


#: The row count oneDNN is told to expect when a weight is reordered (module docstring).
PACKING_ROWS = 8


class PackedLinear(torch.nn.Module):
    """``y = x W^T + b`` by oneDNN on a weight reordered once into its blocked layout: x [..., in] -> [..., out]."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.register_buffer("weight", torch.ops.mkldnn._reorder_linear_weight(weight, PACKING_ROWS))  # [out, in]
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


def swap_linear(model, make) -> None:
    """Replace every ``nn.Linear`` child of every module by ``make(linear)``, in place."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(module, name, make(child))


def prepare(model):
    """Prepack ``model``'s linear layers for oneDNN (see module docstring); returns ``model``.

    In place and idempotent; a no-op off the CPU, for dtypes other than float32,
    and for layers already replaced (e.g. int8 ones from :func:`prepare_draft`).
    """
    if getattr(model, "_multidraft_prepared", False):
        return model
    if can_prepack(model):
        swap_linear(model, PackedLinear)
    model._multidraft_prepared = True
    return model


class SubVocabularyHead(torch.nn.Module):
    """An output layer over the token ids ``keep`` only: logits [..., V] with -inf elsewhere (q = 0 there)."""

    def __init__(self, head: torch.nn.Linear, keep: torch.Tensor):
        super().__init__()
        self.out_features = head.out_features
        self.register_buffer("keep", keep)  # [n] int64, sorted
        self.linear = torch.nn.Linear(head.in_features, keep.numel(), bias=head.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(head.weight[keep])
            if head.bias is not None:
                self.linear.bias.copy_(head.bias[keep])

    @property
    def weight(self) -> torch.Tensor:
        """Shape stand-in [V, hidden] for code that reads the vocabulary size off the output layer."""
        return torch.empty(self.out_features, self.linear.in_features, device="meta")

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        kept = self.linear(hidden)  # [..., n]
        logits = kept.new_full(kept.shape[:-1] + (self.out_features,), -torch.inf)  # [..., V]
        return logits.index_copy_(-1, self.keep, kept)


def sub_vocabulary(size: int, vocab: int, special_ids: Sequence[int] = ()) -> torch.Tensor:
    """The kept ids: 0..size-1 plus ``special_ids``, sorted, as int64 [n]."""
    if not 1 <= size <= vocab:
        raise ValueError(f"the draft vocabulary must have between 1 and {vocab} tokens, got {size}")
    ids = set(range(size)) | {int(i) for i in special_ids if 0 <= int(i) < vocab}
    return torch.tensor(sorted(ids), dtype=torch.int64)


def prepare_draft(model, *, precision: str = "float32", vocabulary: int | None = None, special_ids: Sequence[int] = ()):
    """Make ``model`` a cheaper draft in place (see module docstring); returns it, prepared for oneDNN.

    ``precision`` is one of :data:`DRAFT_PRECISIONS`; ``vocabulary`` the number
    of frequent token ids kept by the output layer (None keeps all).  Must be
    called before the model's first use by :func:`prepare`.
    """
    if precision not in DRAFT_PRECISIONS:
        raise ValueError(f"unknown draft precision {precision!r}; choose one of {', '.join(DRAFT_PRECISIONS)}")
    if getattr(model, "_multidraft_prepared", False):
        raise ValueError("prepare_draft must run before the model is first prepared (or used by generate)")
    if vocabulary is not None:
        head = model.get_output_embeddings()
        keep = sub_vocabulary(vocabulary, head.out_features, special_ids).to(head.weight.device)
        model.set_output_embeddings(SubVocabularyHead(head, keep))
        model.config.tie_word_embeddings = False
    if precision == "int8":
        if model.device.type != "cpu" or model.dtype != torch.float32:
            raise ValueError("int8 drafts need a float32 model on the CPU")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the eager-mode quantisation API's deprecation notice
            torch.ao.quantization.quantize_dynamic(
                model,
                {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
                dtype=torch.qint8,
                inplace=True,
            )
    return prepare(model)
