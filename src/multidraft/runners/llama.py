"""The llama.cpp engine: a GGUF file run as it is (no de-quantisation) behind the :class:`Runner` seam.

:class:`LlamaRunner` drives llama.cpp through llama-cpp-python's low-level
bindings (``llama_batch_init``, ``llama_decode``, ``llama_get_logits``, the
``llama_memory_seq_*`` operations), on one context whose KV cache is
*unified*: every sequence id addresses the same cells, so cells shared by
several sequences are stored once.

**Tree attention with sequence ids.**  llama.cpp lets query token i attend
to a cell iff the cell carries the query's *first* sequence id and its
position is <= the query's position.  The runner gives

* every uncommitted node a *primary* id: the primary id of its parent if it
  is the parent's first child, else a fresh one; and to every uncommitted
  cell the primary ids of its subtree (itself and every descendant; so a
  node carries the ids of the leaves below it);
* every committed cell (the prefix that :meth:`LlamaRunner.keep_path` kept)
  every id in use as a primary.  Id 0 always holds the whole committed
  prefix; another id holds the prefix as it was when it last served, and is
  brought up to date (``llama_memory_seq_cp`` from id 0, over the cells
  committed since) when it becomes a primary again, so a step touches only
  the ids it uses;
* every node the position committed length + its depth among uncommitted
  nodes (depth 0 for a child of the committed prefix).

The cells carrying a node's primary id at positions <= its own are then
exactly the committed prefix and the node's ancestors (one per position), so
the engine's mask equals ``visible``.  A fresh id given to a node whose
ancestors already sit in the cache is added to those cells with
``llama_memory_seq_cp`` restricted to the ancestors' positions; ancestors in
the same batch list it among their ids.  This keeps llama.cpp's batch rules:
each sequence continues right after its last cached position, and sequences
listed on one token share their cached cells.

**Committing.**  The kept path is a chain root..e; its cells already have
the positions committed length + 0, 1, .., so :meth:`LlamaRunner.keep_path`
only relabels: every primary id but e's is removed from the uncommitted
cells, e's id is removed from the cells below e, and the cells left (the
path) are added to id 0.  Cells no id holds any more are free.

**What "lossless" means here.**  The decoder's verification makes the output
follow exactly the law of the logits the target runner returns.  With this
runner as the target, that is the target *as llama.cpp computes it*: its
quantised kernels, its float16 KV cache and its float rounding.  The output
is exact with respect to that law; it is not the law of another engine
(e.g. multidraft's float32 PyTorch path), which differs by the divergence
the benchmarks report.  The runner refuses (``ValueError``) any ``visible``
that is not a forest over the committed prefix, so every node's logits are
the engine's logits for that node's own prefix: the tests find them equal to
the same prefix decoded alone up to rounding (K/V rows are stored as float16,
and a row computed in a batch of another size can round the other way).

**Flash attention** is off by default, as in llama-cpp-python's ``Llama``.
llama.cpp's CPU flash attention accumulates the value rows in float16 in the
order of the cache cells, and the cells freed by :meth:`LlamaRunner.keep_path`
are reused by later tokens, so with it on a prefix's logits also depend on
where its cells landed (differences up to ~0.1 in a logit on the tests'
8-bit model); off, the attention sums in float32.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from multidraft.runners.gguf_file import read_gguf

#: The package that binds llama.cpp, and how to install it.
BINDING = "llama_cpp"
INSTALL_HINT = "the llama.cpp engine needs llama-cpp-python: pip install 'multidraft[llama]'"

#: ggml's log levels (ggml.h): messages below ERROR are dropped unless the "llama-cpp-python" logger is verbose.
_LOG_ERROR, _LOG_CONTINUE = 4, 5
_log = {"ready": False, "printing": False, "callback": None}


def _print_errors(level: int, text: bytes, user_data) -> None:
    """llama.cpp's log callback: errors (and their continuation lines) to stderr, the rest when verbose."""
    if level != _LOG_CONTINUE:
        verbose = logging.getLogger("llama-cpp-python").isEnabledFor(logging.DEBUG)
        _log["printing"] = level >= _LOG_ERROR or verbose
    if _log["printing"]:
        sys.stderr.write(text.decode("utf-8", errors="replace"))


def _bindings():
    """The ``llama_cpp`` module, with llama.cpp's backend initialised and its log quieted to errors once;
    ImportError with the install hint."""
    try:
        llama_cpp = importlib.import_module(BINDING)
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from error
    if not _log["ready"]:
        _log["callback"] = llama_cpp.llama_log_callback(_print_errors)  # kept alive: llama.cpp holds the pointer
        llama_cpp.llama_log_set(_log["callback"], ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _log["ready"] = True
    return llama_cpp


class LlamaRunner:
    """One GGUF model in llama.cpp with its KV cache (see the module docstring).

    A GGUF cut to a sub-vocabulary (:mod:`multidraft.runners.subvocabulary`) keeps the original numbering:
    tokens are fed as the kept token they are read as, logits cover the original vocabulary.
    ``context``: KV cells (committed prefix plus every uncommitted tree node); ``sequences``: sequence ids,
    the most leaves the uncommitted forest may have at once (llama.cpp allows up to 256); ``threads``:
    llama.cpp's threads for every forward (default ``os.cpu_count()``); ``flash_attention``: llama.cpp's
    fused attention, off by default as in llama-cpp-python's ``Llama`` (module docstring).
    """

    engine = "llama.cpp"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        context: int = 4096,
        sequences: int = 64,
        flash_attention: bool = False,
    ):
        path = Path(path)
        if not path.is_file() or path.suffix.lower() != ".gguf":
            raise ValueError(f"the llama.cpp engine loads one .gguf file; {str(path)!r} is not one")
        if threads is None:
            threads = os.cpu_count() or 1
        if threads < 1 or context < 1 or not 1 <= sequences <= 256:
            raise ValueError(
                f"threads and context must be >= 1 and sequences in 1..256, got threads = {threads}, "
                f"context = {context}, sequences = {sequences}"
            )
        self._lib = lib = _bindings()
        self._model = self._context = self._batch = None
        model_params = lib.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self._model = lib.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise ValueError(f"llama.cpp could not load {str(path)!r} (not a model it supports, or corrupt)")
        params = lib.llama_context_default_params()
        params.n_ctx = params.n_batch = context
        params.n_ubatch = min(512, context)
        params.n_seq_max = sequences
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        params.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attention else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        self._context = lib.llama_init_from_model(self._model, params)
        if not self._context:
            raise ValueError(f"llama.cpp could not create a context of {context} cells for {str(path)!r}")
        self._memory = lib.llama_get_memory(self._context)
        self._batch = lib.llama_batch_init(context, 0, sequences)
        self.path, self.threads, self.sequences = path, threads, sequences
        self.context = min(int(lib.llama_n_ctx(self._context)), context)  # the batch holds ``context`` tokens
        self.trained_context = int(lib.llama_model_n_ctx_train(self._model))
        tokens = int(lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(self._model)))
        info = read_gguf(path)
        self._kept = None if info.kept_ids is None else torch.from_numpy(info.kept_ids)  # [K] original ids
        self._read_as = info.input_ids  # [V] the token each original id is fed as; None: as it is
        self.vocab_size = tokens if info.input_ids is None else info.vocab_size
        self.device = torch.device("cpu")
        capacity = (context,)
        self._tokens = np.ctypeslib.as_array(self._batch.token, shape=capacity)  # [context] int32 views of the
        self._positions = np.ctypeslib.as_array(self._batch.pos, shape=capacity)  # batch's C arrays
        self._id_counts = np.ctypeslib.as_array(self._batch.n_seq_id, shape=capacity)
        self._outputs = np.ctypeslib.as_array(self._batch.logits, shape=capacity)
        self._committed = 0  # committed entries: offsets = positions 0 .. committed - 1
        self._synced = [0] * sequences  # per id: the committed entries it holds (id 0: all of them)
        self._forget()

    # -- bookkeeping ---------------------------------------------------------------------------
    def _forget(self) -> None:
        """No uncommitted node; every sequence id free (each holds exactly the committed prefix)."""
        self._parent: list[int] = []  # per uncommitted node: its parent's offset (committed - 1: the prefix)
        self._depth: list[int] = []  # its depth past the prefix (position - committed)
        self._primary: list[int] = []  # its primary sequence id
        self._has_child: list[bool] = []
        self._free = list(range(self.sequences - 1, -1, -1))  # ids no node uses: a stack, id 0 on top

    def cached(self) -> int:
        return self._committed + len(self._parent)

    def reset(self) -> None:
        self._lib.llama_memory_clear(self._memory, True)
        self._committed = 0
        self._synced = [0] * self.sequences
        self._forget()

    def check(self, role: str, total_length: int) -> None:
        """``total_length`` positions fit the context's cells and the model's trained context."""
        if total_length > self.context:
            raise ValueError(
                f"prompt + max_new_tokens + tree depth = {total_length} exceeds the {role} model's "
                f"llama.cpp context of {self.context} cells (load it with a larger context)"
            )
        if total_length > self.trained_context:
            raise ValueError(
                f"prompt + max_new_tokens + tree depth = {total_length} exceeds the {role} model's "
                f"trained context of {self.trained_context} positions"
            )

    # -- forward -------------------------------------------------------------------------------
    def _read(self, tokens, positions, visible, keep) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
        """Validate one call (in numpy: a few microseconds per check); returns the tokens and positions [Q],
        each query's parent offset and its depth.  ``ValueError`` on any misfit."""
        queries = int(tokens.shape[0]) if tokens.dim() == 1 else -1
        cached, committed = self.cached(), self._committed
        if queries < 1 or tuple(positions.shape) != (queries,):
            raise ValueError(
                f"tokens and positions must be [Q] with Q >= 1, got {tuple(tokens.shape)} and {tuple(positions.shape)}"
            )
        if tokens.is_floating_point() or positions.is_floating_point() or tokens.dtype == torch.bool:
            raise ValueError(f"tokens and positions must be integers, got {tokens.dtype} and {positions.dtype}")
        if tuple(visible.shape) != (queries, cached + queries) or visible.dtype != torch.bool:
            raise ValueError(
                f"visible must be bool [Q, cached + Q] = [{queries}, {cached + queries}], "
                f"got {visible.dtype} {tuple(visible.shape)}"
            )
        if not 1 <= keep <= queries:
            raise ValueError(f"keep must be in 1..{queries}, got {keep}")
        if cached + queries > self.context:
            raise ValueError(
                f"{cached} cached entries + {queries} queries exceed the llama.cpp context of {self.context} cells"
            )
        ids, at = tokens.detach().cpu().numpy(), positions.detach().cpu().numpy()
        if ((ids < 0) | (ids >= self.vocab_size)).any():
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1}")
        if self._read_as is not None:
            ids = self._read_as[ids]
        visible = visible.detach().cpu().numpy()
        if not visible[:, :committed].all():
            raise ValueError(
                "visible is not a forest over the committed prefix: a query does not see all "
                f"{committed} committed entries"
            )
        rest = visible[:, committed:]  # [Q, U + Q], U uncommitted entries, then the queries
        uncommitted = cached - committed
        own = rest[:, uncommitted:]  # [Q, Q]
        if not own.diagonal().all() or np.triu(own, 1).any():
            raise ValueError(
                "visible is not a forest over the committed prefix: each query must see itself and no later query"
            )
        seen = rest.copy()  # what each query sees besides itself and the committed prefix
        seen[np.arange(queries), uncommitted + np.arange(queries)] = False
        latest = np.maximum.accumulate(np.where(seen, np.arange(seen.shape[1]), -1), axis=1)  # last seen column <= c
        before = np.concatenate([np.full((queries, 1), -1), latest[:, :-1]], axis=1)  # last seen column < c
        query_parents = latest[:, -1]  # [Q] the deepest seen entry, -1 for a child of the committed prefix
        parents = np.concatenate([np.asarray(self._parent, dtype=np.int64) - committed, query_parents])
        parents[parents < 0] = -1  # [U + Q] relative to the first uncommitted entry
        if not (np.broadcast_to(parents, seen.shape)[seen] == before[seen]).all():
            raise ValueError(
                "visible is not a forest over the committed prefix: what a query sees past the "
                "prefix must be one chain of ancestors (each entry's parent, up to the prefix)"
            )
        depths = seen.sum(1)  # [Q]
        if not np.array_equal(at, committed + depths):
            raise ValueError(
                f"positions must be the committed length ({committed}) plus each query's depth "
                f"past it {(committed + depths).tolist()}, got {at.tolist()}"
            )
        offsets = np.where(query_parents < 0, committed - 1, query_parents + committed)
        return ids, at, offsets.tolist(), depths.tolist()

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor, keep: int) -> torch.Tensor:
        lib, committed = self._lib, self._committed
        tokens, positions, parent_offsets, depths = self._read(tokens, positions, visible, keep)
        queries, cached = len(depths), self.cached()
        # sequence ids: primaries and each cell's id list, computed before llama.cpp sees anything
        parent, depth = self._parent + parent_offsets, self._depth + depths
        primary, has_child = list(self._primary), list(self._has_child)
        has_child += [False] * queries
        free, ids, copies = list(self._free), [], []  # ids[i]: query i's id list; copies: (source, id, start, end)
        for above in parent_offsets:
            if above >= committed and not has_child[above - committed]:
                primary.append(primary[above - committed])
            else:
                if not free:
                    raise ValueError(
                        f"the uncommitted forest needs more than the {self.sequences} sequence ids "
                        "of this llama.cpp context (one per leaf; load it with more sequences)"
                    )
                fresh = free.pop()
                primary.append(fresh)
                if self._synced[fresh] < committed:  # the committed entries it lacks, from id 0
                    copies.append((0, fresh, self._synced[fresh], committed))
                walk = above  # list the fresh id on every ancestor of the batch, then copy it onto the cached ones
                while walk >= cached:
                    ids[walk - cached].append(fresh)
                    walk = parent[walk - committed]
                if walk >= committed:  # the cached ancestors: positions committed .. that of ``walk``
                    end = committed + depth[walk - committed] + 1
                    copies.append((primary[walk - committed], fresh, committed, end))
            if above >= committed:
                has_child[above - committed] = True
            ids.append([primary[-1]])
        for source, fresh, start, end in copies:
            lib.llama_memory_seq_cp(self._memory, source, fresh, start, end)
        self._fill(tokens, positions, ids, keep)
        status = lib.llama_decode(self._context, self._batch)
        if status != 0:
            self.reset()
            raise RuntimeError(
                f"llama_decode failed with status {status} on {queries} queries after {cached} "
                "cached entries; the cache was emptied"
            )
        self._parent, self._depth, self._primary, self._has_child, self._free = parent, depth, primary, has_child, free
        for seq in set(primary):
            self._synced[seq] = committed
        rows = lib.llama_get_logits(self._context)  # [keep, V or K] float32, the output rows in batch order
        if self._kept is None:
            return torch.from_numpy(np.ctypeslib.as_array(rows, shape=(keep, self.vocab_size)).copy())
        logits = torch.full((keep, self.vocab_size), torch.finfo(torch.float32).min)  # [keep, V]
        logits[:, self._kept] = torch.from_numpy(np.ctypeslib.as_array(rows, shape=(keep, len(self._kept))))
        return logits

    def _fill(self, tokens: np.ndarray, positions: np.ndarray, ids: list[list[int]], keep: int) -> None:
        queries = len(ids)
        batch = self._batch
        batch.n_tokens = queries
        self._tokens[:queries] = tokens
        self._positions[:queries] = positions
        self._id_counts[:queries] = [len(row) for row in ids]
        self._outputs[:queries] = 0
        self._outputs[queries - keep : queries] = 1
        for i, row in enumerate(ids):
            slots = batch.seq_id[i]
            for j, seq in enumerate(row):
                slots[j] = seq

    # -- commit --------------------------------------------------------------------------------
    def keep_path(self, length: int, path: Sequence[int]) -> None:
        lib, committed, cached = self._lib, self._committed, self.cached()
        path = [int(offset) for offset in path]
        if not 0 <= length <= cached or any(not length <= o < cached for o in path) or path != sorted(set(path)):
            raise ValueError(
                f"keep_path needs 0 <= length <= {cached} and increasing path offsets in "
                f"[length, {cached}), got length = {length}, path = {path}"
            )
        kept = length + len(path)
        low = [o for o in path if o < committed]  # committed entries kept past ``length``: the next ones in order
        chain = list(range(committed, length)) + path[len(low) :]  # the kept uncommitted entries
        if low != list(range(length, length + len(low))) or (chain and length + len(low) < committed):
            raise ValueError(
                f"keep_path: the kept entries must form one path from the start of the cache; "
                f"offsets {path} after {length} skip committed entries"
            )
        previous = committed - 1 if chain else length + len(low) - 1
        for offset in chain:
            if self._parent[offset - committed] != previous:
                raise ValueError(
                    f"keep_path: entry {offset} does not continue the kept entries (its parent is "
                    f"{self._parent[offset - committed]}, not {previous})"
                )
            previous = offset
        last = previous
        if last < committed:  # nothing uncommitted kept: cut at ``kept``
            lib.llama_memory_seq_rm(self._memory, -1, kept, -1)
            self._synced = [min(length, kept) for length in self._synced]
        else:
            keeper = self._primary[last - committed]
            for seq in set(self._primary) - {keeper}:  # back to the committed entries they held
                lib.llama_memory_seq_rm(self._memory, seq, committed, -1)
            lib.llama_memory_seq_rm(self._memory, keeper, kept, -1)  # the cells below the last kept entry
            if keeper != 0:
                lib.llama_memory_seq_cp(self._memory, keeper, 0, committed, kept)
            self._synced[keeper] = self._synced[0] = kept
        self._committed = kept
        self._forget()

    def end_tokens(self) -> tuple[int, ...]:
        """The token ids llama.cpp treats as the end of generation (eos, end of turn and the like)."""
        vocab = self._lib.llama_model_get_vocab(self._model)
        ends = [t for t in range(int(self._lib.llama_vocab_n_tokens(vocab))) if self._lib.llama_vocab_is_eog(vocab, t)]
        return tuple(ends if self._kept is None else self._kept[ends].tolist())

    # -- resources -----------------------------------------------------------------------------
    def close(self) -> None:
        """Free the batch, the context and the model (the runner is unusable afterwards)."""
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if self._batch is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if self._context:
            lib.llama_free(self._context)
            self._context = None
        if self._model:
            lib.llama_model_free(self._model)
            self._model = None

    def __del__(self):
        self.close()

    def __enter__(self) -> LlamaRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
