"""``multidraft record``: store per-position target and draft distributions on the bundled prompts.

Finished prompts are journaled in ``OUT.partial.jsonl`` as they complete; the
``.npz`` is written atomically at the end and the journal then removed.  A
run killed in between leaves the journal: ``--resume`` continues it and
gives the same file as an uninterrupted run; without ``--resume`` the
journal is refused rather than overwritten.
"""

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
    parser.add_argument(
        "--offset",
        type=int,
        default=0,
        help="skip the first N prompts of each category (the benchmarks use the first ones)",
    )
    parser.add_argument("--new-tokens", type=int, default=32, help="target-sampled tokens per prompt")
    parser.add_argument("--max-prompt-tokens", type=int, default=256)
    parser.add_argument("--top-n", type=int, default=256, help="tokens kept per position (the rest is a tail mass)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output .npz file")
    parser.add_argument(
        "--resume", action="store_true", help="continue the interrupted run that wrote OUT.partial.jsonl"
    )
    parser.set_defaults(run=run)


def journal_path(out: Path) -> Path:
    """Where the finished prompts of a recording to ``out`` are kept until it is complete."""
    return out.with_name(out.name + ".partial.jsonl")


def record_to_file(args: argparse.Namespace, pair, prompts, temperature: float, out: Path, resume: bool = False):
    """Record ``prompts`` with the models of ``pair`` at one temperature and save to ``out``; returns the Recording.

    ``resume`` continues the journal of an interrupted run (see module docstring).
    """
    from tqdm import tqdm

    from multidraft.bench.inputs import encode
    from multidraft.bench.recording import record

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
            header={
                **pair.names,
                "prompts": [f"{p.category}/{p.id}" for p in prompts],
                "categories": [p.category for p in prompts],
                "prompt_offset": args.offset,
                "max_prompt_tokens": args.max_prompt_tokens,
                "draft_precision": args.draft_precision,
                "draft_vocab": args.draft_vocab,
            },  # all that shapes the rows: a resume must match it
            progress=lambda _: bar.update(),
            journal=journal_path(out),
            resume=resume,
        )
    recording.save(out)
    journal_path(out).unlink()
    return recording


def run(args: argparse.Namespace) -> int:
    from multidraft.bench.inputs import load_pair, pick_prompts

    check_options(args.temperature, args.top_k, args.top_p)
    if args.prompts < 1 or args.new_tokens < 1 or args.top_n < 1:
        raise ValueError("--prompts, --new-tokens and --top-n must be >= 1")
    if args.out.suffix != ".npz":
        raise ValueError(f"--out must be a .npz file, got {str(args.out)!r}")
    prompts = pick_prompts(args.prompts, args.offset)  # before the models load: a bad count or offset fails fast
    pair = load_pair(args.target, args.draft, draft_precision=args.draft_precision, draft_vocab=args.draft_vocab)
    recording = record_to_file(args, pair, prompts, args.temperature, args.out, resume=args.resume)
    print(f"recorded {len(recording)} positions to {args.out}")
    return 0
