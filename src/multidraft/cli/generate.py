"""``multidraft generate``: stream multi-draft speculative sampling from a local model pair.

``--engine`` picks what runs the models: ``llama`` runs each GGUF file as it is
on llama.cpp, ``torch`` runs PyTorch (a GGUF file de-quantised to float32), and
``auto`` (the default) is ``llama`` when both models are GGUF files (the bundled
pair is) and llama-cpp-python is installed.  ``--scheme auto`` and ``--tree
auto`` hand the choice to the online planner (:mod:`multidraft.api`).

Ctrl-C stops the generation: the text streamed so far stays on stdout, the
metrics of the steps completed go to stderr, and the exit status is 130.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from multidraft import schemes, verifiers
from multidraft.cli.options import (
    add_engine_arguments,
    add_model_arguments,
    add_sampling_arguments,
    check_engine_options,
)
from multidraft.limits import DEFAULT_MAX_TREE_NODES
from multidraft.sampling_options import check_options
from multidraft.shapes import check_shape, parse_shape
from multidraft.step import check_stop


def register(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="generate text with multi-draft speculative decoding")
    add_model_arguments(parser)
    add_engine_arguments(parser, ("auto", "torch", "llama"), "auto")
    parser.add_argument(
        "--scheme", default="spechub", help=f"one of {', '.join(schemes.names())}, or auto (the online planner)"
    )
    parser.add_argument(
        "--tree", default="2x4", help="branching per depth: 2x4, or a list like 2,2,1,1, or auto (the online planner)"
    )
    parser.add_argument(
        "--verifier",
        default="token",
        help=f"tree-level verification, one of {', '.join(verifiers.names())} "
        "(block: chains; traversal: i.i.d. drafts)",
    )
    parser.add_argument(
        "--min-draft-probability",
        type=float,
        default=0.0,
        help="end a step's tree after a level whose every token had draft probability below this "
        "(a fixed scheme and tree, token verifier; 0: never)",
    )
    add_sampling_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--max-tree-nodes",
        type=int,
        default=DEFAULT_MAX_TREE_NODES,
        help="refuse trees that can have more nodes per step (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    parser.add_argument("prompt", help="the prompt text")
    parser.set_defaults(run=run)


class Streamer:
    """Prints the text of the tokens accepted so far, as it grows (decoding the whole list each time
    keeps multi-token characters intact).

    It is called once per step with that step's tokens, so it also knows the
    metrics of the completed steps when a run is interrupted.
    """

    def __init__(self, tokenizer):
        self.tokenizer, self.tokens, self.printed, self.steps = tokenizer, [], "", 0
        self.start = time.perf_counter()

    def __call__(self, new_tokens: list[int]) -> None:
        self.steps += 1
        self.tokens += new_tokens
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.startswith(self.printed):
            sys.stdout.write(text[len(self.printed) :])
            sys.stdout.flush()
            self.printed = text

    def summary(self) -> str:
        """Tokens, target calls (one per step), block efficiency and tokens/s of the steps so far."""
        seconds = time.perf_counter() - self.start
        efficiency = f"{len(self.tokens) / self.steps:.2f}" if self.steps else "n/a"
        return (
            f"{len(self.tokens)} tokens in {self.steps} target calls: block efficiency {efficiency}, "
            f"{len(self.tokens) / seconds:.1f} tokens/s"
        )


def run(args: argparse.Namespace) -> int:
    from multidraft.api import generate, planned_candidates
    from multidraft.bench.inputs import choose_engine, load_llama_pair, load_pair

    # Every argument is checked before a model is loaded.
    if "auto" in (args.scheme, args.tree):
        scheme = args.scheme if args.scheme == "auto" else schemes.get(args.scheme)
        verifying = verifiers.get(args.verifier)
        for candidate in planned_candidates(scheme, args.tree, args.verifier):
            verifying.check(candidate.shape, schemes.get(candidate.scheme))
    else:
        scheme = schemes.get(args.scheme)
        shape = parse_shape(args.tree)
        check_shape(shape, scheme)
        verifiers.get(args.verifier).check(shape, scheme)
    check_stop(args.min_draft_probability, args.verifier)
    if args.min_draft_probability and "auto" in (args.scheme, args.tree):
        raise ValueError("--min-draft-probability needs a fixed --scheme and --tree; the planner does not use it")
    check_options(args.temperature, args.top_k, args.top_p)
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    # --draft-vocab is an option of the torch engine: asking for it makes auto choose torch
    asked = "torch" if args.engine == "auto" and args.draft_vocab is not None else args.engine
    engine = choose_engine(asked, args.target, args.draft)
    check_engine_options(engine, args)
    if engine == "llama":
        torch.set_num_threads(1)  # torch only samples: llama.cpp's threads get the cores
        # KV cells for the prompt (up to 4096 tokens), the new tokens and a tree's depth
        pair = load_llama_pair(args.target, args.draft, threads=args.threads, context=4096 + args.max_new_tokens)
    else:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        pair = load_pair(args.target, args.draft, draft_precision=args.draft_precision, draft_vocab=args.draft_vocab)
    tokenizer = pair.tokenizer
    if args.chat:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": args.prompt}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
    else:
        ids = tokenizer(args.prompt)["input_ids"]
    streamer = Streamer(tokenizer)
    try:
        result = generate(
            pair.target,
            pair.draft,
            torch.tensor(ids),
            scheme=scheme,
            tree=args.tree,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            generator=torch.Generator(device=pair.target.device).manual_seed(args.seed),
            eos_token_id=tokenizer.eos_token_id,
            on_tokens=streamer,
            max_tree_nodes=args.max_tree_nodes,
            verifier=args.verifier,
            min_draft_probability=args.min_draft_probability,
        )
    except KeyboardInterrupt:
        print()
        print(f"[{args.scheme} {args.tree} {args.verifier}] interrupted after {streamer.summary()}", file=sys.stderr)
        return 130
    print()
    chosen = f", mostly {result.scheme} {result.tree}".rstrip() if "auto" in (args.scheme, args.tree) else ""
    print(
        f"[{args.scheme} {args.tree} {args.verifier}{chosen}, {engine}] {result.tokens_emitted} tokens in "
        f"{result.target_calls} target calls: "
        f"block efficiency {result.block_efficiency:.2f}, {result.tokens_per_second:.1f} tokens/s, "
        f"verification {100 * result.verification_seconds / result.total_seconds:.1f}% of the time",
        file=sys.stderr,
    )
    return 0
