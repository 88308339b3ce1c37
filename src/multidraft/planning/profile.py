"""The measured cost model of one machine and model pair (``multidraft profile``).

What a decoding step costs is measured, not assumed:

* **forwards**: seconds of a runner's forward (:mod:`multidraft.runners`) of the target
  and of the draft against the number of query tokens Q (every Q to 16, then
  to 64, plus prompt lengths for the prefill) at two context lengths, on the
  execution path the decoder uses (:mod:`multidraft.execution`), each point
  the median of a few rounds that run every Q once, in alternating order,
  after a warm-up (so that a busy spell of the machine lands on every Q
  alike); between grid points the cost is interpolated linearly in Q and in
  the context;
* **per-step overheads** on tensors of the real vocabulary: turning logits
  into laws (per row), drawing drafts (per scheme, k and row), verifying one
  node (per scheme and k), growing the tree and cutting a KV cache back;
* **the roofline**: read bandwidth (a sum over a 512 MB tensor) and matmul
  throughput (the prepacked linear on a 256-row batch) of this machine, the
  bytes of weights and KV cache a forward reads and its FLOPs, so that each
  measured forward can be set beside max(bytes / bandwidth, FLOPs / throughput).
  It is measured for PyTorch models only: for a runner of another engine
  (llama.cpp runs quantised kernels of its own) the profile records each model
  file's size and no roofline (:attr:`Profile.roofline` has no ``points``).

A :class:`Profile` is JSON (``save`` / ``load``); :mod:`multidraft.planning.cost`
turns it into seconds per step of any (scheme, tree).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.optimize
import torch

from multidraft import schemes
from multidraft.models.cache import replace_atomically
from multidraft.planning.acceptance import PLANNED
from multidraft.runners import Runner, TorchRunner, as_runner, causal_visibility
from multidraft.sampling_options import Sampling
from multidraft.tree import Tree

QUERIES = (*range(1, 17), 20, 24, 32, 48, 64)
PREFILL = (128, 256)
CONTEXTS = (64, 512)
#: (scheme, k) pairs whose drafting and verification costs are measured: those the planner considers.
SCHEME_KS = tuple((name, k) for name, ks in PLANNED.items() for k in ks)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class ForwardCosts:
    """Seconds of one forward: ``seconds[c][j]`` at context ``contexts[c]`` and ``queries[j]`` query tokens, as
    measured.

    Below a few query tokens a forward can cost *more* than with a few more (the bundled target on 2 cores:
    0.30-0.37 s for one to three tokens, 0.25 s for five or six, 0.31-0.32 s for seven to eleven, 0.49 s for
    twenty; medians of 5 interleaved rounds, and the decoding loop's own steps agree).  Past its cheapest
    point a forward of more tokens, or at a longer context, never takes less time, yet medians on a busy
    machine can say so, and a planner reading them would take a wider tree for a cheaper one.  Predictions
    therefore read :attr:`fitted`: each context's measurements up to its cheapest point as they are, from
    there the least-squares non-decreasing fit (isotonic regression, pool adjacent violators); each row then
    raised to the shorter context's where it lies below it.
    """

    queries: list[int]
    contexts: list[int]
    seconds: list[list[float]]

    @functools.cached_property
    def fitted(self) -> np.ndarray:
        """[contexts, queries] seconds non-decreasing in the queries from each row's cheapest point, and in the
        context."""
        rows = np.array(self.seconds, dtype=np.float64)  # [C, Q]
        for row in rows:
            cheapest = int(np.argmin(row))
            row[cheapest:] = scipy.optimize.isotonic_regression(row[cheapest:]).x
        return np.maximum.accumulate(rows, axis=0)

    def __call__(self, queries: float, context: float) -> float:
        """Seconds of a forward, interpolated linearly in :attr:`fitted` (beyond the grid, along the last segment)."""
        per_context = [_linear(self.queries, row, queries) for row in self.fitted]
        return max(_linear(self.contexts, per_context, context), 0.0)


def _linear(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) == 1:
        return float(ys[0])
    i = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))
    return float(ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i]))


@dataclass
class Profile:
    """Everything the cost model needs for one machine and model pair (see module docstring)."""

    machine: dict
    models: dict
    target: ForwardCosts
    draft: ForwardCosts
    # seconds: laws_row, laws_call, drafts[scheme:k] = [per call, per row], verify[scheme:k], tree_level, keep_path
    overheads: dict
    roofline: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        with replace_atomically(path) as temporary:
            temporary.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Profile:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def slowed(self, factor: float) -> Profile:
        """This profile on a machine whose forwards take ``factor`` times as long (a slower memory system:
        the same kind of machine in another state); the per-step overheads are kept."""
        if not factor > 0:
            raise ValueError(f"a slow-down factor must be positive, got {factor!r}")

        def scale(costs: ForwardCosts) -> ForwardCosts:
            return ForwardCosts(costs.queries, costs.contexts, [[factor * x for x in row] for row in costs.seconds])

        return Profile(
            {**self.machine, "slowed": factor},
            self.models,
            scale(self.target),
            scale(self.draft),
            self.overheads,
            self.roofline,
        )

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        return cls(
            data["machine"],
            data["models"],
            ForwardCosts(**data["target"]),
            ForwardCosts(**data["draft"]),
            data["overheads"],
            data.get("roofline", {}),
        )


def machine_description() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
    }


# -- forwards ---------------------------------------------------------------------------------------


@torch.no_grad()
def forward_costs(runner: Runner, queries: Sequence[int], contexts: Sequence[int], rounds: int = 5) -> ForwardCosts:
    """Median seconds of a ``queries``-token forward after ``context`` cached tokens, all logits kept: over
    ``rounds`` rounds that each run every Q <= 64 once, in alternating order, after a warm-up of each; a longer
    (prefill) forward once after its warm-up."""
    vocab = runner.vocab_size
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for context in contexts:
        runner.reset()
        tokens = torch.randint(0, min(vocab, 30000), (context + max(queries),), generator=generator)
        runner.forward(tokens[:context], torch.arange(context), causal_visibility(0, context), 1)

        def once(q: int) -> None:
            visible = causal_visibility(context, q)
            runner.forward(tokens[context : context + q], torch.arange(context, context + q), visible, q)
            runner.keep_path(context, [])

        steps = [q for q in queries if q <= 64]
        times = {q: [] for q in steps}
        for q in steps:
            once(q)  # warm-up
        for r in range(rounds):
            for q in steps if r % 2 == 0 else steps[::-1]:
                start = time.perf_counter()
                once(q)
                times[q].append(time.perf_counter() - start)
        seconds.append(
            [statistics.median(times[q]) if q in times else median_seconds(lambda: once(q), 1) for q in queries]
        )
    return ForwardCosts(list(queries), list(contexts), seconds)


# -- per-step overheads -----------------------------------------------------------------------------


def _laws(vocab: int, rows: int, generator) -> torch.Tensor:
    logits = torch.randn(rows, vocab, generator=generator) * 4
    return torch.softmax(logits, -1)


def overhead_costs(vocab: int, runner: Runner, repeats: int = 5) -> dict:
    """Seconds of the step's work outside the forwards (see module docstring), on [rows, vocab] tensors."""
    generator = torch.Generator().manual_seed(0)
    sampling = Sampling(1.0, None, None, torch.device("cpu"), torch.float32)
    logits = {n: torch.randn(n, vocab, generator=generator) * 4 for n in (1, 16)}
    laws_1 = median_seconds(lambda: sampling.laws(logits[1]), repeats)
    laws_16 = median_seconds(lambda: sampling.laws(logits[16]), repeats)
    p, q = _laws(vocab, 16, generator), _laws(vocab, 16, generator)
    drafts, verify = {}, {}
    for name, k in SCHEME_KS:
        scheme = schemes.get(name)
        one = median_seconds(lambda: scheme.sample_drafts(q[:1], k, generator), repeats)
        many = median_seconds(lambda: scheme.sample_drafts(q[:8], k, generator), repeats)
        drafts[f"{name}:{k}"] = [one - (many - one) / 7, (many - one) / 7]  # per call, per row
        x = scheme.sample_drafts(q[:1], k, generator)[0]
        verify[f"{name}:{k}"] = median_seconds(lambda: scheme.verify(p[0], q[0], x, generator), repeats)

    def level():
        tree = Tree.from_root(1, shape=(2, 2))
        tree.grow(torch.tensor([[3, 4]]))
        tree.visibility(tree.level(1), prefix=200)
        tree.positions(tree.level(1), 200)

    runner.reset()
    runner.forward(torch.arange(256) % vocab, torch.arange(256), causal_visibility(0, 256), 1)

    def cut():
        runner.keep_path(250, [250, 251])  # the same copies every time: the cache stays 252 long

    return {
        "laws_call": max(laws_1 - (laws_16 - laws_1) / 15, 0.0),
        "laws_row": (laws_16 - laws_1) / 15,
        "drafts": drafts,
        "verify": verify,
        "tree_level": median_seconds(level, repeats) / 1,
        "keep_path": median_seconds(cut, repeats),
    }


# -- roofline ---------------------------------------------------------------------------------------


def linear_parameters(model) -> tuple[int, int]:
    """(parameters in linear layers, bytes they occupy): what a forward reads besides the KV cache."""
    count = size = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if callable(weight):  # dynamically quantised linear: weight() -> quantised tensor
            weight = weight()
        if module is model.get_input_embeddings() or not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            continue
        if weight.device.type == "meta":
            continue
        count += weight.shape[0] * weight.shape[1]
        size += weight.shape[0] * weight.shape[1] * weight.element_size()
    return count, size


def kv_bytes_per_position(model) -> int:
    config = model.config.get_text_config()
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers * 2 * kv_heads * head_dim * 4


def attention_flops(model, queries: int, context: int) -> float:
    config = model.config.get_text_config()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 4.0 * config.num_hidden_layers * config.num_attention_heads * head_dim * queries * (context + queries)


def machine_roofline(repeats: int = 5) -> dict:
    """Read bandwidth (bytes/s) and float32 prepacked-matmul throughput (FLOP/s) of this machine."""
    from multidraft.execution import PackedLinear

    big = torch.ones(128 * 1024 * 1024)  # 512 MB
    seconds = median_seconds(big.sum, repeats)
    bandwidth = big.numel() * big.element_size() / seconds
    del big
    linear = PackedLinear(torch.nn.Linear(1536, 8960, bias=False))
    x = torch.randn(256, 1536)
    with torch.no_grad():
        throughput = 2 * 256 * 1536 * 8960 / median_seconds(lambda: linear(x), repeats)
    return {"read_bandwidth_bytes_per_s": bandwidth, "matmul_flops_per_s": throughput}


def roofline_seconds(model, machine: dict, queries: int, context: int) -> float:
    """max(bytes read / bandwidth, FLOPs / throughput) of one forward."""
    count, size = linear_parameters(model)
    read = size + kv_bytes_per_position(model) * context
    flops = 2.0 * count * queries + attention_flops(model, queries, context)
    return max(read / machine["read_bandwidth_bytes_per_s"], flops / machine["matmul_flops_per_s"])


def _torch_model(model):
    """The PyTorch model behind ``model`` (itself, or a :class:`TorchRunner`'s), None for another engine."""
    if isinstance(model, TorchRunner):
        return model.model
    return None if isinstance(model, Runner) else model


def _positions(model) -> int:
    """The most positions ``model`` takes: its trained context, and for a runner with a fixed KV cache its cells."""
    torch_model = _torch_model(model)
    if torch_model is not None:
        return getattr(torch_model.config, "max_position_embeddings", None) or 1 << 30
    cells = [getattr(model, name, None) for name in ("context", "trained_context")]
    return min([c for c in cells if c] or [1 << 30])


def measure(
    target,
    draft,
    names: dict,
    *,
    queries=QUERIES,
    contexts=CONTEXTS,
    prefill=PREFILL,
    progress: Callable[[str], None] | None = None,
) -> Profile:
    """Measure a :class:`Profile` of the (prepared) pair on this machine: PyTorch models, or runners of any
    engine (then without the roofline)."""
    say = progress or (lambda message: None)
    longest = max([*queries, *prefill])
    limit = min(_positions(m) for m in (target, draft))
    contexts = [c for c in contexts if c + longest <= limit] or [max(limit - longest, 0)]
    models = _torch_model(target), _torch_model(draft)
    target_runner, draft_runner = as_runner(target), as_runner(draft)
    if None in models:  # another engine: no roofline (module docstring)
        say("model files")
        roofline = {
            role: {"file_bytes": Path(runner.path).stat().st_size}
            for role, runner in (("target", target_runner), ("draft", draft_runner))
            if getattr(runner, "path", None) is not None
        }
    else:
        say("roofline")
        machine = machine_roofline()
    say("target forwards")
    target_costs = forward_costs(target_runner, [*queries, *prefill], contexts)
    say("draft forwards")
    draft_costs = forward_costs(draft_runner, [*queries, *prefill], contexts)
    say("per-step overheads")
    overheads = overhead_costs(target_runner.vocab_size, target_runner)
    if None in models:
        return Profile(machine_description(), names, target_costs, draft_costs, overheads, roofline)
    target, draft = models
    roofline = dict(machine)
    for role, model, costs in (("target", target, target_costs), ("draft", draft, draft_costs)):
        count, size = linear_parameters(model)
        roofline[role] = {
            "linear_parameters": count,
            "weight_bytes": size,
            "kv_bytes_per_position": kv_bytes_per_position(model),
            "points": [
                {
                    "queries": q,
                    "context": c,
                    "measured_s": costs.seconds[i][j],
                    "roofline_s": roofline_seconds(model, machine, q, c),
                }
                for i, c in enumerate(costs.contexts)
                for j, q in enumerate(costs.queries)
            ],
        }
    return Profile(machine_description(), names, target_costs, draft_costs, overheads, roofline)
