"""The main job (``make demo`` = ``multidraft bench all``): short, and only what the data supports.

1. The committed results of the long runs (``benchmarks/results/*.md`` listed
   in :data:`COMMITTED`), each with the command, commit, machine and load it
   was measured with.
2. A live generation with the planner's choice for this machine
   (``scheme="auto", tree="auto"``; the first use profiles the machine, about
   a minute), streamed with the accepted drafts marked.
3. A small interleaved run (:data:`SMALL_PROMPTS` prompts x :data:`SMALL_TOKENS`
   tokens, T = 1): autoregressive sampling against ``auto`` as users call it
   (re-planning as it goes; its plans need not be fixed configurations, e.g.
   a chain stopped where the draft doubts), with its size stated and no
   intervals (too few prompts).  Its results file
   (``$MULTIDRAFT_CACHE/demo/small.jsonl`` unless ``--out``) is written under a
   private temporary name and renamed into place when complete, so demos run at
   once, or interrupted, never leave it half-written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

COMMITTED = ("speed.md", "speed_prediction.md", "paired_schemes.md", "paired_chains.md", "paired_trees.md")
RESULTS = Path("benchmarks/results")
SMALL_PROMPTS = 2
SMALL_TOKENS = 32
#: The small run's configurations: plain sampling against the planner, as users call it.
SMALL_CONFIGS = "autoregressive auto"
LIVE_PROMPT = "Write a Python function that checks whether a string is a palindrome, with a short docstring."


class MarkedStream:
    """Streams text; the tokens that were accepted drafts are shown [in brackets] (green on a terminal)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.colour = tokenizer, sys.stdout.isatty()

    def show(self, tokens: list[int], accepted: bool) -> str:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if not accepted or not text:
            return text
        return f"\033[32m{text}\033[0m" if self.colour else f"[{text}]"

    def __call__(self, step_tokens: list[int]) -> None:
        # every token of a step but the last was a draft the target accepted
        sys.stdout.write(self.show(step_tokens[:-1], True) + self.show(step_tokens[-1:], False))
        sys.stdout.flush()


def print_committed() -> None:
    print("## Committed results (long runs; see README for how they were made)\n")
    for name in COMMITTED:
        path = RESULTS / name
        if path.is_file():
            print(f"### {name}\n")
            print(path.read_text())


def run_demo(args: argparse.Namespace) -> int:
    from multidraft.api import generate
    from multidraft.bench import generate as bench
    from multidraft.bench.inputs import encode, load_pair, pick_prompts
    from multidraft.bench.tables import generate_markdown
    from multidraft.sampling_options import check_options

    check_options(1.0, args.top_k, args.top_p)
    print_committed()
    pair = load_pair(args.target, args.draft, draft_precision=args.draft_precision, draft_vocab=args.draft_vocab)
    ids = pair.tokenizer.apply_chat_template(
        [{"role": "user", "content": LIVE_PROMPT}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    print("## Live generation with the planner's choice (accepted drafts marked)\n")
    print("(planning: the first use on this machine measures its cost model, about a minute)", flush=True)
    result = generate(
        pair.target,
        pair.draft,
        torch.tensor(ids),
        scheme="auto",
        tree="auto",
        max_new_tokens=64,
        top_k=args.top_k,
        top_p=args.top_p,
        generator=torch.Generator().manual_seed(0),
        on_tokens=MarkedStream(pair.tokenizer),
        eos_token_id=pair.tokenizer.eos_token_id,
    )
    print(
        f"\n\n[{result.scheme} {result.tree}] {result.tokens_emitted} tokens in {result.target_calls} target calls "
        f"({result.block_efficiency:.2f} per call), {result.tokens_per_second:.2f} tokens/s\n"
    )

    print(f"## A small run: {SMALL_PROMPTS} prompts x {SMALL_TOKENS} tokens, T = 1, interleaved")
    print(
        "(too few prompts for intervals: this shows the commands work, the committed tables above are the evidence)\n"
    )
    configs = bench.parse_configs(SMALL_CONFIGS)
    prompts = [encode(pair.tokenizer, p, 128) for p in pick_prompts(SMALL_PROMPTS)]
    from multidraft.models import cache_dir

    out = args.out or cache_dir() / "demo"
    records = small_run(pair, configs, prompts, out / "small.jsonl", top_k=args.top_k, top_p=args.top_p)
    print(generate_markdown(bench.summarise(records)))
    return 0


def small_run(pair, configs, prompts, path: Path, *, top_k, top_p) -> list[dict]:
    """The small interleaved run, stored in a private temporary file published as ``path`` when complete."""
    from multidraft.bench import generate as bench
    from multidraft.bench.store import ResultStore
    from multidraft.models.cache import replace_atomically

    with replace_atomically(path) as temporary:
        store = ResultStore(temporary, {"demo": True}, ("temperature", "config", "prompt"), resume=False)
        bench.warm_up(pair, configs, prompts[0])
        bench.run(
            pair, prompts, store, configs=configs, temperatures=[1.0], new_tokens=SMALL_TOKENS, top_k=top_k, top_p=top_p
        )
    return store.records()
