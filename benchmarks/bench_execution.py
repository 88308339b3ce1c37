"""The execution path and the draft options on the bundled pair, measured in one process.

1. Target forwards over Q query tokens after a 120-token cache, as plain ``nn.Linear`` and on the
   prepacked oneDNN path (:func:`multidraft.execution.prepare`), interleaved, median of 5.
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
from pathlib import Path

import torch

from multidraft import models
from multidraft.bench.inputs import encode, pick_prompts
from multidraft.bench.recording import read_as_decoder
from multidraft.decoding import autoregressive, causal_visibility, forward, keep_path, new_cache
from multidraft.execution import prepare, prepare_draft
from multidraft.planning.profile import median_seconds
from multidraft.sampling_options import probabilities

RESULTS = Path(__file__).parent / "results" / "execution.json"
QUERIES = (1, 2, 4, 7, 15)
SPECIAL = range(151643, 151936)  # Qwen2's special and added tokens, always kept by a sub-vocabulary
OPTIONS = ({"precision": "float32"}, {"precision": "int8"}, {"precision": "int8", "vocabulary": 65536},
           {"precision": "int8", "vocabulary": 32768})


def forward_ms(model, queries: int, context: int) -> float:
    cache = new_cache()
    tokens = torch.randint(0, 1000, (context + queries,), generator=torch.Generator().manual_seed(0))
    forward(model, cache, tokens[:context], torch.arange(context), causal_visibility(0, context, tokens.device), 1)
    visible = torch.ones(queries, context + queries, dtype=torch.bool)

    def once():
        forward(model, cache, tokens[context:], torch.arange(context, context + queries), visible, queries)
        keep_path(cache, context, [])

    return 1000 * median_seconds(once, 5)


@torch.no_grad()
def main() -> None:
    pair = models.bundled_pair()
    load = [os.getloadavg()[0]]
    plain, packed = pair.target.load(), prepare(pair.target.load())
    execution = [{"queries": q, "plain_ms": forward_ms(plain, q, 120), "prepacked_ms": forward_ms(packed, q, 120)}
                 for q in QUERIES]
    del plain
    gc.collect()
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
    print("queries  plain ms  prepacked ms")
    for row in execution:
        print(f"{row['queries']:7d}  {row['plain_ms']:8.1f}  {row['prepacked_ms']:12.1f}")
    print("draft option                 acceptance  1-query ms")
    for row in drafts:
        name = row["precision"] + (f", first {row['vocabulary']} ids" if row.get("vocabulary") else "")
        print(f"{name:28s} {row['acceptance']:10.4f}  {row['forward_ms']:10.1f}")


if __name__ == "__main__":
    main()
