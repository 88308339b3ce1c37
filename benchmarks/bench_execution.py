"""The execution path and the draft options on the bundled pair, measured in one process.

1. Target forwards over Q query tokens after a 120-token cache, median of 7, interleaved: plain
   ``nn.Linear`` against the prepacked oneDNN path (:func:`multidraft.execution.prepare`), then the
   previous path (``torch.utils.mkldnn.MkldnnLinear``) against it (two models in memory at a time).
2. Each draft option of :func:`multidraft.execution.prepare_draft`: single-draft acceptance
   sum min(p, q) on target-sampled positions (8 prompts x 24 tokens, T = 1) and the median
   1-query forward time after a 150-token cache.  The draft reads each text as the decoder
   reads it (the prompt in one forward, then one token per forward:
   :func:`multidraft.bench.recording.read_as_decoder`); the int8 draft's q depends on it.

    .venv/bin/python benchmarks/bench_execution.py

Writes ``benchmarks/results/execution.json`` and prints both tables (needs the bundled pair).
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils import mkldnn

from multidraft import models
from multidraft.bench.inputs import encode, pick_prompts
from multidraft.bench.recording import read_as_decoder
from multidraft.decoding import autoregressive
from multidraft.execution import prepare, prepare_draft, swap_linear
from multidraft.runners import TorchRunner, causal_visibility
from multidraft.sampling_options import probabilities

RESULTS = Path(__file__).parent / "results" / "execution.json"
QUERIES = (1, 2, 4, 7, 15)
SPECIAL = range(151643, 151936)  # Qwen2's special and added tokens, always kept by a sub-vocabulary
OPTIONS = ({"precision": "float32"}, {"precision": "int8"}, {"precision": "int8", "vocabulary": 65536},
           {"precision": "int8", "vocabulary": 32768})


def forward_ms(model, queries: int, context: int) -> float:
    return interleaved_ms({"model": model}, (queries,), context)[("model", queries)]


def interleaved_ms(named: dict, queries: tuple[int, ...], context: int, repeats: int = 7) -> dict:
    """Median ms of a forward over each query count after a ``context``-token cache, per (name, queries).

    Every repetition times every (query count, model) once, the model order alternating, after one
    warm-up round, so that load changes hit all models alike.
    """
    tokens = torch.randint(0, 1000, (context + max(queries),), generator=torch.Generator().manual_seed(0))
    runners = {name: TorchRunner(model) for name, model in named.items()}
    for runner in runners.values():
        runner.forward(tokens[:context], torch.arange(context), causal_visibility(0, context), 1)
    times: dict = {}
    for repeat in range(repeats + 1):
        for count in queries:
            visible = torch.ones(count, context + count, dtype=torch.bool)
            order = list(runners.items()) if repeat % 2 else list(runners.items())[::-1]
            for name, runner in order:
                start = time.perf_counter()
                runner.forward(tokens[context : context + count], torch.arange(context, context + count), visible, count)
                if repeat:  # the first round warms up
                    times.setdefault((name, count), []).append(time.perf_counter() - start)
                runner.keep_path(context, [])
    return {key: 1000 * float(np.median(values)) for key, values in times.items()}


def with_mkldnn_linear(model):
    """The previous execution path: every ``nn.Linear`` as ``torch.utils.mkldnn.MkldnnLinear`` (for comparison)."""
    swap_linear(model, lambda linear: mkldnn.MkldnnLinear(linear, torch.float32))
    model._multidraft_prepared = True  # keep prepare() from swapping again
    return model


@torch.no_grad()
def main() -> None:
    pair = models.bundled_pair()
    load = [os.getloadavg()[0]]
    packed, plain = prepare(pair.target.load()), pair.target.load()
    first = interleaved_ms({"plain": plain, "packed": packed}, QUERIES, 120)
    del plain
    gc.collect()
    second = interleaved_ms({"mkldnn": with_mkldnn_linear(pair.target.load()), "packed": packed}, QUERIES, 120)
    gc.collect()
    execution = [{"queries": q, "plain_ms": first[("plain", q)], "prepacked_ms": first[("packed", q)],
                  "mkldnn_linear_ms": second[("mkldnn", q)], "prepacked_beside_mkldnn_ms": second[("packed", q)]}
                 for q in QUERIES]
    tokenizer = pair.target.load_tokenizer()
    sequences = []
    for index, prompt in enumerate(pick_prompts(8)):
        ids = encode(tokenizer, prompt, 128)
        out = autoregressive(packed, ids, max_new_tokens=24, generator=torch.Generator().manual_seed(index)).tokens
        sequences.append((ids.numel(), torch.cat([ids, torch.tensor(out)])[None]))
    p = torch.cat([probabilities(packed(s).logits[0, n - 1 : -1], 1.0) for n, s in sequences])
    del packed
    gc.collect()
    drafts = []
    for option in OPTIONS:
        draft = prepare_draft(pair.draft.load(), special_ids=SPECIAL, **option)
        q = torch.cat([probabilities(read_as_decoder(draft, s[0], n), 1.0) for n, s in sequences])
        drafts.append({**option, "acceptance": float(torch.minimum(p, q).sum(-1).mean()),
                       "positions": int(p.shape[0]), "forward_ms": forward_ms(draft, 1, 150)})
        del draft
        gc.collect()
    load.append(os.getloadavg()[0])
    RESULTS.write_text(json.dumps({"benchmark": "execution", "load_average": load, "target_forwards": execution,
                                   "draft_options": drafts}, indent=1) + "\n")
    print(f"load average {load[0]:.2f} before, {load[1]:.2f} after")
    print("queries  plain ms  prepacked ms | MkldnnLinear ms  prepacked ms")
    for row in execution:
        print(f"{row['queries']:7d}  {row['plain_ms']:8.1f}  {row['prepacked_ms']:12.1f} | "
              f"{row['mkldnn_linear_ms']:15.1f}  {row['prepacked_beside_mkldnn_ms']:12.1f}")
    print("draft option                 acceptance  1-query ms")
    for row in drafts:
        name = row["precision"] + (f", first {row['vocabulary']} ids" if row.get("vocabulary") else "")
        print(f"{name:28s} {row['acceptance']:10.4f}  {row['forward_ms']:10.1f}")


if __name__ == "__main__":
    main()
