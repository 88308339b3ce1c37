"""The priors of the copy evidence, fit on prompts that neither the benchmarks nor the planning prior use.

For each prompt of code, summarisation and chat from index OFFSET on (the benchmarks take prompts 0-15,
the shipped planning prior 40-51), the bundled pair's target samples NEW_TOKENS tokens plainly at
T = 0.6 and 1 (seed = prompt index); one target forward over the whole text then gives p_j at every
generated position j.  Where the text before j occurred earlier (:func:`multidraft.lookup.continuation`),
the copy it proposes, c(j), would have been accepted with chance a(j) = p_j(c(j)): exact, not the sampled
outcome.  Each chance is filed by the copy's state at j (:mod:`multidraft.planning.copying`): a fresh
start, or a copy going on for r tokens, bucketed by r's bit length (r = 1, 2-3, 4-7, 8-15, >= 16).

The prior means are the chances' means per state, pooled over kinds and temperatures (the planner does
not know the kind).  Texts are written as they come (``--resume`` goes on from them); exact given the
texts, so load does not matter.

    PYTHONPATH=src python benchmarks/copy_priors.py [--prompts 8] [--resume]

Writes benchmarks/results/copy_priors.{jsonl,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from multidraft.bench.inputs import encode, load_pair, pick_prompts
from multidraft.bench.store import replace_atomically
from multidraft.decoding import autoregressive
from multidraft.lookup import continuation
from multidraft.planning.copying import run_state
from multidraft.sampling_options import probabilities

RESULTS = Path(__file__).parent / "results"
OFFSET, NEW_TOKENS, MAX_PROMPT_TOKENS = 16, 64, 128
KINDS = ("code", "summarization", "chat")
TEMPERATURES = (0.6, 1.0)
STATES = ["fresh", "r=1", "r=2-3", "r=4-7", "r=8-15", "r>=16"]


def chances(text: torch.Tensor, start: int, laws: torch.Tensor) -> list[tuple[int, float]]:
    """(state, a(j)) for every generated position j >= ``start`` of ``text`` [n] where a copy is proposed;
    ``laws`` [n - start, V] is p_j at each of them."""
    out, run = [], 0
    for j in range(start, text.shape[0]):
        proposed, matched = continuation(text[:j], 1)
        if not matched:
            run = 0
            continue
        out.append((run_state(run), float(laws[j - start, proposed[0]])))
        run = run + 1 if int(proposed[0]) == int(text[j]) else 0
    return out


@torch.no_grad()
def sample(pair, prompt: torch.Tensor, index: int, temperature: float) -> dict:
    generator = torch.Generator().manual_seed(index)
    tokens = autoregressive(
        pair.target, prompt, max_new_tokens=NEW_TOKENS, temperature=temperature, generator=generator
    ).tokens
    text = torch.cat([prompt, torch.tensor(tokens, dtype=prompt.dtype)])
    logits = pair.target(text[None]).logits[0, prompt.shape[0] - 1 : -1].double()  # [new, V]
    laws = probabilities(logits, temperature, None, None)
    return {"tokens": tokens, "chances": chances(text, prompt.shape[0], laws)}


def summary(rows: list[dict]) -> str:
    lines = [
        "# Copy chances by state, held-out prompts",
        "",
        "Mean exact chance a(j) = p_j(c(j)) that the copy proposed at a generated position is accepted, by the",
        f"copy's state there (prompts {OFFSET}-{OFFSET + len({r['prompt'] for r in rows}) - 1} of each kind, "
        f"{NEW_TOKENS} tokens, plain sampling; `benchmarks/copy_priors.py`).",
        "",
        "| kind | T | " + " | ".join(STATES) + " |",
        "|---|---|" + "---|" * len(STATES),
    ]
    groups = [(k, t) for k in KINDS for t in TEMPERATURES] + [("all", None)]
    for kind, temperature in groups:
        chosen = [r for r in rows if kind in ("all", r["kind"]) and temperature in (None, r["temperature"])]
        cells = []
        for state in range(len(STATES)):
            values = [a for r in chosen for s, a in r["chances"] if s == state]
            cells.append(f"{np.mean(values):.3f} ({len(values)})" if values else "-")
        lines.append(f"| {kind} | {temperature or 'both'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8, help="prompts per kind")
    parser.add_argument("--resume", action="store_true", help="keep the texts already written")
    args = parser.parse_args()
    out = RESULTS / "copy_priors.jsonl"
    rows = [json.loads(line) for line in out.read_text().splitlines()] if args.resume and out.exists() else []
    done = {(r["kind"], r["prompt"], r["temperature"]) for r in rows}
    torch.set_num_threads(2)
    pair = load_pair(None, None)
    with out.open("a" if args.resume else "w") as sink:
        for kind in KINDS:
            for index, prompt in enumerate(pick_prompts(args.prompts, offset=OFFSET, category=kind)):
                ids = encode(pair.tokenizer, prompt, MAX_PROMPT_TOKENS)
                for temperature in TEMPERATURES:
                    if (kind, OFFSET + index, temperature) in done:
                        continue
                    row = {"kind": kind, "prompt": OFFSET + index, "temperature": temperature}
                    row |= sample(pair, ids, OFFSET + index, temperature)
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    rows.append(row)
    with replace_atomically(RESULTS / "copy_priors.md") as path:
        path.write_text(summary(rows))


if __name__ == "__main__":
    main()
