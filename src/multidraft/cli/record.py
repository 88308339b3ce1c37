"""``multidraft record``: store per-position target and draft distributions on the bundled prompts."""

from __future__ import annotations

import argparse
from pathlib import Path

from multidraft.cli.options import add_model_arguments, add_sampling_arguments
from multidraft.sampling_options import check_options


def register(subparsers) -> None:
    parser = subparsers.add_parser("record", help="record target and draft next-token distributions on real prompts")
    add_model_arguments(parser)
    add_sampling_arguments(parser)
    parser.add_argument("--prompts", type=int, default=24, help="number of prompts (round-robin over categories)")
    parser.add_argument("--new-tokens", type=int, default=32, help="target-sampled tokens per prompt")
    parser.add_argument("--max-prompt-tokens", type=int, default=256)
    parser.add_argument("--top-n", type=int, default=256, help="tokens kept per position (the rest is a tail mass)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output .npz file")
    parser.set_defaults(run=run)


def record_to_file(args: argparse.Namespace, pair, temperature: float, out: Path):
    """Record with the models of ``pair`` at one temperature and save to ``out``; returns the Recording."""
    from tqdm import tqdm

    from multidraft.bench.inputs import encode, pick_prompts
    from multidraft.bench.recording import record

    prompts = pick_prompts(args.prompts)
    encoded = [encode(pair.tokenizer, prompt, args.max_prompt_tokens) for prompt in prompts]
    with tqdm(total=len(encoded), desc=f"record T={temperature}", unit="prompt") as bar:
        recording = record(
            pair.target,
            pair.draft,
            encoded,
            temperature=temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            new_tokens=args.new_tokens,
            top_n=args.top_n,
            seed=args.seed,
            header={**pair.names, "prompts": [f"{p.category}/{p.id}" for p in prompts]},
            progress=lambda _: bar.update(),
        )
    recording.save(out)
    return recording


def run(args: argparse.Namespace) -> int:
    from multidraft.bench.inputs import load_pair

    check_options(args.temperature, args.top_k, args.top_p)
    if args.prompts < 1 or args.new_tokens < 1 or args.top_n < 1:
        raise ValueError("--prompts, --new-tokens and --top-n must be >= 1")
    pair = load_pair(args.target, args.draft)
    recording = record_to_file(args, pair, args.temperature, args.out)
    print(f"recorded {len(recording)} positions to {args.out}")
    return 0
