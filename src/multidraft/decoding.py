"""Multi-draft speculative decoding over two Hugging Face causal LMs (DESIGN §2).

One step, for committed tokens s_1..s_n (the root of the tree is s_n):

1. **Draft.**  The draft model reads the committed tokens its KV cache lacks
   (the whole prompt at the first step, then one or two tokens) and gives
   q at the root; the scheme's draft law draws k_1 drafts, the distinct ones
   become depth-1 nodes.  Each further level is one draft forward over all
   nodes of the previous level with the tree mask, D draft forwards in all.
2. **Target.**  One target forward over the committed tokens its cache lacks
   (always just s_n after the first step) followed by every tree node, with
   the tree mask and positions n - 1 + depth: it gives p at every node.
3. **Verify.**  The verifier (:mod:`multidraft.verifiers`; by default the token
   walk :func:`multidraft.tree.walk`) emits the accepted path plus one
   residual or bonus token, a + 1 tokens for a accepted drafts.
4. **Cut the caches back** to s_1..s_n and the accepted path: the entries of
   the path nodes are moved behind the committed prefix and the rest dropped
   (:func:`keep_path`).  Both caches then hold every committed token but the
   last (the draft's may also lack a leaf it never read), which the next step
   feeds as its root.

p and q are the processed laws of :func:`multidraft.sampling_options.probabilities`,
the same temperature / top-k / top-p for both models.  Each emitted token is
drawn from p at its position given the accepted prefix, so the output has
exactly the law of sampling the target alone (:func:`autoregressive`).

All randomness comes from ``generator``, which must live on the target's
device, where every sampling step runs.  Batch size 1 only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from multidraft import schemes, verifiers
from multidraft.execution import prepare
from multidraft.guards import check_finite
from multidraft.limits import DEFAULT_MAX_TREE_NODES, check_limits
from multidraft.sampling_options import check_options, probabilities
from multidraft.schemes.base import Scheme, sample_categorical
from multidraft.tree import Tree, TreeShape, TreeTemplate, check_shape, format_shape, parse_shape, shape_depth

#: Attention implementations that honour an arbitrary 4D float mask.
TREE_ATTENTION = ("eager", "sdpa")


@dataclass
class StepTrace:
    """What one step saw, kept when ``record=True`` (before truncation to max_new_tokens / EOS).

    Row j of ``target_logits`` are the raw target logits that predicted the
    step's j-th emitted token; the first ``len(draft_logits)`` emitted tokens
    were verified (the last token of a walk that reached a leaf is a bonus
    token with no draft), and row j of ``draft_logits`` is the draft's raw
    logits at that node, which drew ``shape[j]`` drafts.
    """

    target_logits: torch.Tensor  # [a + 1, V]
    draft_logits: torch.Tensor  # [verified, V]


@dataclass
class GenerationResult:
    """Tokens and metrics of one generation.

    ``block_efficiency`` = tokens_emitted / target_calls (the papers' tokens
    per step); ``acceptance_per_depth[d - 1]`` = P(a >= d | a >= d - 1) over
    the steps, a = accepted drafts of a step (``accepted_lengths``); NaN where
    no step reached depth d - 1.  Seconds: ``draft`` (draft forwards, drawing
    drafts, building the tree), ``target`` (target forwards and p),
    ``verification`` (the walk and cutting both caches back).
    """

    tokens: list[int]
    scheme: str
    tree: str
    target_calls: int
    draft_calls: int
    tokens_emitted: int
    block_efficiency: float
    acceptance_per_depth: list[float]
    accepted_lengths: list[int]
    draft_seconds: float
    target_seconds: float
    verification_seconds: float
    total_seconds: float
    trace: list[StepTrace] | None = field(default=None, repr=False)
    tree_sizes: list[int] = field(default_factory=list)  # nodes scored per step, root included
    expected_tokens: list[float] | None = None  # per step, exact E[tokens | drafted tree] (exact_expectation=True)

    @property
    def expected_block_efficiency(self) -> float:
        """Mean of the per-step exact expectations: Rao-Blackwellised block efficiency (NaN if not computed)."""
        return sum(self.expected_tokens) / len(self.expected_tokens) if self.expected_tokens else math.nan

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_emitted / self.total_seconds if self.total_seconds > 0 else math.inf


@dataclass(frozen=True)
class Sampling:
    """The processing applied to every logits row, and where / in which dtype the laws live."""

    temperature: float
    top_k: int | None
    top_p: float | None
    device: torch.device
    dtype: torch.dtype

    def laws(self, logits: torch.Tensor) -> torch.Tensor:
        """Processed law [..., V] of raw logits [..., V] on the sampling device."""
        return probabilities(logits.to(self.device, self.dtype), self.temperature, self.top_k, self.top_p)


# -- model calls ------------------------------------------------------------------------------------


def causal_visibility(past: int, n: int, device: torch.device) -> torch.Tensor:
    """bool [n, past + n]: n consecutive tokens after ``past`` cached ones, each seeing itself and before."""
    return torch.ones(n, past + n, dtype=torch.bool, device=device).tril(past)


def forward(
    model, cache: DynamicCache, tokens: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor, keep: int
) -> torch.Tensor:
    """Run ``model`` on ``tokens`` [Q] at ``positions`` [Q] after its cache; return the last ``keep`` logits [keep, V].

    ``visible`` [Q, cache length + Q] says which keys each query attends to;
    it is passed as an additive 4D mask (0 or the dtype's minimum), which
    transformers forwards unchanged to the eager and SDPA attention kernels.
    """
    device = model.device
    visible = visible.to(device)
    mask = torch.zeros(visible.shape, dtype=model.dtype, device=device)
    mask = mask.masked_fill(~visible, torch.finfo(model.dtype).min)[None, None]  # [1, 1, Q, K]
    out = model(
        input_ids=tokens.to(device)[None],
        attention_mask=mask,
        position_ids=positions.to(device)[None],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=keep,
    )
    return out.logits[0, -keep:]


def keep_path(cache: DynamicCache, length: int, path: Sequence[int]) -> None:
    """Keep cache entries [0, length) followed by the entries at offsets ``path`` (increasing, >= length).

    The path entries are copied to offsets length, length + 1, .. and the
    cache is cut to length + len(path), in place, on every layer.
    """
    for layer in cache.layers:
        if not layer.is_initialized:
            continue
        if path:
            index = torch.tensor(path, device=layer.keys.device)
            layer.keys[..., length : length + len(path), :] = layer.keys.index_select(-2, index)
            layer.values[..., length : length + len(path), :] = layer.values.index_select(-2, index)
        layer.keys = layer.keys[..., : length + len(path), :]
        layer.values = layer.values[..., : length + len(path), :]


def new_cache() -> DynamicCache:
    """A cache of plain full-attention layers (what :func:`keep_path` can cut); see :func:`check_model`."""
    return DynamicCache()


# -- one speculative step ---------------------------------------------------------------------------


def step_label(step: int | None) -> str:
    """How errors name a step: "step 3" inside a generation, else "a single step"."""
    return f"step {step}" if step is not None else "a single step"


def draft_tree(
    draft,
    cache: DynamicCache,
    seq: torch.Tensor,
    shape: TreeShape,
    scheme: Scheme,
    sampling: Sampling,
    generator,
    *,
    step: int | None = None,
) -> tuple[Tree, torch.Tensor, torch.Tensor]:
    """Grow the tree for committed tokens ``seq`` [n].

    Returns the tree, and the draft's raw logits and law q, both [n_internal, V],
    at its internal nodes (ids 0..n_internal - 1).

    The draft reads ``seq[cache length:]`` causally (root last), then each
    new level with the tree mask while the shape gives its nodes drafts; the
    last level is never read (no children), so ``tree.depth`` forwards.  Every forward's logits are checked
    finite (:func:`multidraft.guards.check_finite`; ``step`` labels the error).
    """
    n, past = seq.shape[0], cache.get_seq_length()
    committed = causal_visibility(past, n - past, seq.device)  # [n - past, n]
    logits = [forward(draft, cache, seq[past:], torch.arange(past, n), committed, 1)]  # [1, V] at the root
    check_finite(logits[0], "draft", [n - 1], at=step_label(step), nodes=[0])
    laws = []
    tree = Tree.from_root(seq[-1], shape=shape)
    while True:
        laws.append(sampling.laws(logits[-1]))  # [n_level, V] at the deepest level
        level = grow_level(tree, laws[-1], scheme, generator)
        if not tree.pending():
            break  # the new level are leaves: never read
        visible = tree.visibility(level, prefix=n - 1)  # keys: n - 1 committed, then nodes 0..level.stop - 1
        positions = tree.positions(level, root_position=n - 1)
        logits.append(forward(draft, cache, tree.tokens[level], positions, visible, level.stop - level.start))
        check_finite(logits[-1], "draft", positions, at=step_label(step), nodes=range(level.start, level.stop))
    return tree, torch.cat(logits), torch.cat(laws)


def grow_level(tree: Tree, law: torch.Tensor, scheme: Scheme, generator) -> slice:
    """Draw the drafts of the deepest level's nodes from their laws ``law`` [n_level, V]; returns the new level."""
    start, groups = tree.level_starts[-2], tree.pending()
    whole = len(groups) == 1 and len(groups[0][1]) == law.shape[0]
    return tree.grow_groups([
        (nodes, scheme.sample_drafts(law if whole else law[[i - start for i in nodes]], k, generator))
        for k, nodes in groups
    ])


def score_tree(target, cache: DynamicCache, seq: torch.Tensor, tree: Tree, *, step: int | None = None) -> torch.Tensor:
    """Target logits [N, V] at every tree node (row 0: the root), in one forward pass, checked finite.

    The query is ``seq[cache length:]`` (root last, causal) followed by the
    tree nodes 1..N-1 (tree mask, position n - 1 + depth).
    """
    n, past, size = seq.shape[0], cache.get_seq_length(), tree.size
    committed = causal_visibility(past, n - past, seq.device)  # [n - past, n]
    committed = torch.nn.functional.pad(committed, (0, size - 1))  # [n - past, n + size - 1]
    nodes = slice(1, size)
    visible = torch.cat([committed, tree.visibility(nodes, prefix=n - 1)])  # [n - past + size - 1, n + size - 1]
    tokens = torch.cat([seq[past:], tree.tokens[nodes]])
    positions = torch.cat([torch.arange(past, n, device=seq.device), tree.positions(nodes, root_position=n - 1)])
    logits = forward(target, cache, tokens, positions, visible, size)
    check_finite(logits, "target", positions[-size:], at=step_label(step), nodes=range(size))
    return logits


# -- input checks (all before any model call) -----------------------------------------------------


def output_size(model) -> int:
    """The number of logits the model emits: its output layer's ``out_features`` or rows, else ``config.vocab_size``.

    (Prepacked, quantised and sub-vocabulary heads of :mod:`multidraft.execution` all answer one of these.)
    """
    head = model.get_output_embeddings()
    if getattr(head, "out_features", None) is not None:
        return int(head.out_features)
    weight = getattr(head, "weight", None)
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) else int(model.config.vocab_size)


def check_model(model, role: str, total_length: int) -> None:
    """``model`` can be run on a tree of up to ``total_length`` positions (context, attention, cache layers)."""
    config = model.config
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
                f"the {role} model has {type(layer).__name__} cache layers; tree decoding supports full attention "
                f"(or sliding windows longer than the {total_length} positions used)"
            )


def prompt_tokens(input_ids, device: torch.device) -> torch.Tensor:
    """The prompt as int64 [n] on ``device``, from [n] or [1, n]; ``ValueError`` for a batch or an empty prompt."""
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 2:
        if ids.shape[0] != 1:
            raise ValueError(f"batch size must be 1, got input_ids of shape {tuple(ids.shape)}")
        ids = ids[0]
    if ids.dim() != 1 or ids.shape[0] == 0:
        raise ValueError(f"input_ids must be a non-empty [n] or [1, n] tensor, got shape {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"input_ids must be integer token ids, got dtype {ids.dtype}")
    return ids.to(device=device, dtype=torch.int64)


def stop_tokens(eos_token_id: int | Sequence[int] | None) -> frozenset[int]:
    """The EOS ids as a set: one id, several (as some generation configs list), or none."""
    ids = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"eos_token_id must be an int, a sequence of ints or None, got {eos_token_id!r}")
    return frozenset(ids)


def check_request(
    target, input_ids, max_new_tokens: int, temperature: float, top_k, top_p, generator, eos_token_id
) -> tuple[torch.Tensor, frozenset[int]]:
    """Check the arguments both generators share; returns the prompt [n] on the target's device and the EOS ids."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    check_options(temperature, top_k, top_p)
    prompt = prompt_tokens(input_ids, target.device)
    vocab = output_size(target)
    if bool(prompt.min() < 0) or bool(prompt.max() >= vocab):
        raise ValueError(f"input_ids must lie in [0, {vocab})")
    if generator is not None and generator.device.type != target.device.type:
        raise ValueError(f"the generator lives on {generator.device} but sampling runs on {target.device}")
    return prompt, stop_tokens(eos_token_id)


def plan_request(target, draft, input_ids, scheme, tree, max_new_tokens, temperature, top_k, top_p, generator,
                 eos_token_id) -> tuple[str, TreeShape]:
    """``scheme="auto"`` / ``tree="auto"``: the planner's best choice for this machine and pair.

    The request is checked first; then :func:`multidraft.planning.auto_choice`
    plans from the cached profile of this machine (measured first if there is
    none) and acceptance measured on a short target sample from the prompt
    (cached per pair and sampling options).  The choice depends on the prompt
    only, never on the generation's random stream, so the output keeps the
    target's law.
    """
    from multidraft import planning

    if scheme != "auto":
        scheme = schemes.get(scheme).name if isinstance(scheme, str) else scheme.name
    if tree != "auto":
        parse_shape(tree)
    seq, _ = check_request(target, input_ids, max_new_tokens, temperature, top_k, top_p, generator, eos_token_id)
    prepare(target)
    prepare(draft)
    choice = planning.auto_choice(target, draft, seq, scheme=scheme, tree=tree, temperature=temperature, top_k=top_k,
                                  top_p=top_p, context=seq.shape[0] + max_new_tokens / 2)
    return choice.scheme, choice.shape


# -- metrics --------------------------------------------------------------------------------------


def acceptance_per_depth(accepted_lengths: Sequence[int], depth: int) -> list[float]:
    """P(a >= d | a >= d - 1) for d = 1..depth, NaN where no step reached depth d - 1."""
    rates = []
    for d in range(1, depth + 1):
        reached = sum(a >= d - 1 for a in accepted_lengths)
        rates.append(sum(a >= d for a in accepted_lengths) / reached if reached else math.nan)
    return rates


class Stopwatch:
    """Wall-clock seconds per phase; pending CUDA work of the models is awaited at every reading."""

    def __init__(self, *models):
        self.models = models
        self.seconds = {"draft": 0.0, "target": 0.0, "verification": 0.0, "analysis": 0.0}
        self.start = self.tick = self.now()

    def now(self) -> float:
        for model in self.models:
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
        return time.perf_counter()

    def lap(self, phase: str) -> None:
        """Charge the time since the last lap to ``phase``."""
        now = self.now()
        self.seconds[phase] += now - self.tick
        self.tick = now

    @property
    def total(self) -> float:
        """Seconds since the start, less the untimed ``analysis`` phase."""
        return self.tick - self.start - self.seconds["analysis"]


def finish(emitted: list[int], out: list[int], max_new_tokens: int, stop: frozenset[int]) -> tuple[list[int], bool]:
    """Cut ``emitted`` at max_new_tokens and after the first stop token; returns the kept tokens and whether to stop."""
    kept = emitted[: max_new_tokens - len(out)]
    for i, token in enumerate(kept):
        if token in stop:
            return kept[: i + 1], True
    return kept, len(out) + len(kept) >= max_new_tokens


# -- the two generators ---------------------------------------------------------------------------


@torch.no_grad()
def generate(
    target,
    draft,
    input_ids,
    *,
    scheme: str | Scheme,
    tree: str | Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    on_tokens: Callable[[list[int]], None] | None = None,
    record: bool = False,
    exact_expectation: bool = False,
    max_tree_nodes: int = DEFAULT_MAX_TREE_NODES,
    verifier: str = "token",
) -> GenerationResult:
    """Multi-draft speculative sampling from ``target`` with drafts from ``draft`` (see module docstring).

    ``scheme`` is a registry name or a :class:`Scheme`; ``tree`` a shape as
    parsed by :func:`multidraft.tree.parse_shape` ("2x4", "2,2,1,1", [3, 2],
    a per-node template "3/2,1,0"); either may be ``"auto"``: the planner's
    best for this machine (:func:`plan_request`; ``result.scheme`` and
    ``result.tree`` say what ran).
    ``verifier`` names the tree-level verification (:func:`multidraft.verifiers.names`:
    "token", "block", "traversal", "traversal-seq"); a verifier that is not
    lossless for this scheme and tree is refused with the other inputs.
    ``on_tokens`` receives each step's new tokens as they are accepted (for
    streaming); ``record=True`` keeps a :class:`StepTrace` per step;
    ``exact_expectation=True`` also computes, per step, the exact expected
    number of tokens given the drafted tree and p, q at its nodes (the
    Rao-Blackwellised block efficiency), outside the timed phases.  Every
    input is checked, raising ``ValueError``, before the first model call;
    so is the tree's size: at most ``max_tree_nodes`` nodes and an estimated
    memory that fits (:func:`multidraft.limits.check_limits`).
    """
    if scheme == "auto" or tree == "auto":
        scheme, tree = plan_request(target, draft, input_ids, scheme, tree, max_new_tokens, temperature, top_k, top_p,
                                    generator, eos_token_id)
    scheme = schemes.get(scheme) if isinstance(scheme, str) else scheme
    shape = parse_shape(tree)
    check_shape(shape, scheme)
    verifying = verifiers.get(verifier)
    verifying.check(shape, scheme)
    seq, stop = check_request(target, input_ids, max_new_tokens, temperature, top_k, top_p, generator, eos_token_id)
    if output_size(draft) != output_size(target):
        raise ValueError(f"vocabularies differ: target has {output_size(target)} logits, draft {output_size(draft)}")
    widest = max(shape.counts) if isinstance(shape, TreeTemplate) else max(shape)
    if scheme.draft_law in ("greedy", "topk") and widest > output_size(target):
        raise ValueError(f"scheme {scheme.name!r} drafts {widest} distinct top tokens at a node, but the vocabulary "
                         f"has {output_size(target)}")
    total_length = seq.shape[0] + max_new_tokens + shape_depth(shape)
    check_model(target, "target", total_length)
    check_model(draft, "draft", total_length)
    check_limits(target, draft, shape, output_size(target), seq.shape[0], max_new_tokens, max_tree_nodes)
    prepare(target)
    prepare(draft)

    device = target.device
    dtype = torch.promote_types(torch.promote_types(target.dtype, draft.dtype), torch.float32)
    sampling = Sampling(temperature, top_k, top_p, device, dtype)
    target_cache, draft_cache = new_cache(), new_cache()
    out: list[int] = []
    accepted_lengths: list[int] = []
    tree_sizes: list[int] = []
    draft_calls = 0
    expected: list[float] | None = [] if exact_expectation else None
    trace: list[StepTrace] | None = [] if record else None
    watch = Stopwatch(target, draft)
    done = False
    while not done:
        step = len(accepted_lengths) + 1
        token_tree, draft_logits, q = draft_tree(draft, draft_cache, seq, shape, scheme, sampling, generator, step=step)
        watch.lap("draft")
        target_logits = score_tree(target, target_cache, seq, token_tree, step=step)  # [N, V]
        p = sampling.laws(target_logits)  # [N, V]
        watch.lap("target")
        if expected is not None:
            expected.append(verifying.expected_tokens(token_tree, scheme, p, q))
            watch.lap("analysis")
        tree_sizes.append(token_tree.size)
        draft_calls += token_tree.depth

        result = verifying.verify(token_tree, scheme, p, q, generator)
        n = seq.shape[0]
        keep_path(target_cache, n, [n - 1 + node for node in result.path])
        keep_path(draft_cache, n, [n - 1 + node for node in result.path if node < token_tree.n_internal])
        seq = torch.cat([seq, torch.tensor(result.tokens, device=device)])
        accepted_lengths.append(result.accepted)
        if trace is not None:
            trace.append(StepTrace(target_logits[[0, *result.path]], draft_logits[result.visited]))
        emitted, done = finish(result.tokens, out, max_new_tokens, stop)
        out += emitted
        if on_tokens is not None and emitted:
            on_tokens(emitted)
        watch.lap("verification")

    steps = len(accepted_lengths)
    return GenerationResult(
        tokens=out,
        scheme=scheme.name,
        tree=format_shape(shape),
        target_calls=steps,
        draft_calls=draft_calls,
        tokens_emitted=len(out),
        block_efficiency=len(out) / steps,
        acceptance_per_depth=acceptance_per_depth(accepted_lengths, shape_depth(shape)),
        accepted_lengths=accepted_lengths,
        draft_seconds=watch.seconds["draft"],
        target_seconds=watch.seconds["target"],
        verification_seconds=watch.seconds["verification"],
        total_seconds=watch.total,
        trace=trace,
        tree_sizes=tree_sizes,
        expected_tokens=expected,
    )


@torch.no_grad()
def autoregressive(
    target,
    input_ids,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    on_tokens: Callable[[list[int]], None] | None = None,
    record: bool = False,
) -> GenerationResult:
    """Plain sampling from ``target``, token by token with its KV cache: the baseline, block efficiency 1.

    Uses the same forward, masks and :func:`probabilities` as :func:`generate`.
    """
    seq, stop = check_request(target, input_ids, max_new_tokens, temperature, top_k, top_p, generator, eos_token_id)
    check_model(target, "target", seq.shape[0] + max_new_tokens)
    prepare(target)
    device = target.device

    sampling = Sampling(temperature, top_k, top_p, device, torch.promote_types(target.dtype, torch.float32))
    cache = new_cache()
    out: list[int] = []
    trace: list[StepTrace] | None = [] if record else None
    watch = Stopwatch(target)
    done = False
    while not done:
        n, past = seq.shape[0], cache.get_seq_length()
        logits = forward(target, cache, seq[past:], torch.arange(past, n), causal_visibility(past, n - past, device), 1)
        check_finite(logits, "target", [n - 1], at=f"step {len(out) + 1}")
        token = int(sample_categorical(sampling.laws(logits[0]), generator))
        seq = torch.cat([seq, torch.tensor([token], device=device)])
        if trace is not None:
            trace.append(StepTrace(logits, logits[:0]))
        emitted, done = finish([token], out, max_new_tokens, stop)
        out += emitted
        if on_tokens is not None:
            on_tokens(emitted)
        watch.lap("target")

    return GenerationResult(
        tokens=out,
        scheme="autoregressive",
        tree="",
        target_calls=len(out),
        draft_calls=0,
        tokens_emitted=len(out),
        block_efficiency=1.0,
        acceptance_per_depth=[],
        accepted_lengths=[0] * len(out),
        draft_seconds=0.0,
        target_seconds=watch.seconds["target"],
        verification_seconds=0.0,
        total_seconds=watch.total,
        trace=trace,
    )
