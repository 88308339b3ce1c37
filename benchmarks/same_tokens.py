"""Same seeds, same tokens: the tokens a fixed set of generations emits on the bundled pair, for a before/after check.

    python benchmarks/same_tokens.py --out benchmarks/results/same_tokens_after.json
    python benchmarks/same_tokens.py --compare benchmarks/results/same_tokens_before.json \
        benchmarks/results/same_tokens_after.json

Each configuration (scheme, tree, verifier, temperature) generates ``--tokens`` tokens from
``--prompts`` bundled prompts with a generator seeded per (configuration, prompt).  A change that
leaves behaviour unchanged reproduces every token list exactly.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

#: (scheme, tree, verifier, temperature); "autoregressive" is plain sampling.
CONFIGS = (
    ("autoregressive", "", "", 1.0),
    ("sps", "1x4", "token", 1.0),
    ("sps", "1x4", "block", 0.6),
    ("rrs", "2x3", "token", 1.0),
    ("rrs-wor", "2x2", "traversal-seq", 0.6),
    ("kseq", "2x3", "token", 0.6),
    ("spechub", "2x2", "token", 1.0),
    ("greedy", "3,1", "token", 1.0),
    ("topk", "2x2", "token", 0.6),
    ("rrs", "2x2", "traversal", 1.0),
)


def run(prompts: int, tokens: int) -> dict:
    from multidraft.bench.inputs import encode, load_pair, pick_prompts
    from multidraft.decoding import autoregressive, generate

    pair = load_pair(None, None)
    encoded = [encode(pair.tokenizer, prompt, 96) for prompt in pick_prompts(prompts)]
    rows = []
    for index, (scheme, tree, verifier, temperature) in enumerate(CONFIGS):
        for number, prompt in enumerate(encoded):
            generator = torch.Generator().manual_seed(1000 * index + number)
            if scheme == "autoregressive":
                result = autoregressive(pair.target, prompt, max_new_tokens=tokens, temperature=temperature,
                                        generator=generator)
            else:
                result = generate(pair.target, pair.draft, prompt, scheme=scheme, tree=tree, verifier=verifier,
                                  max_new_tokens=tokens, temperature=temperature, generator=generator)
            rows.append({"scheme": scheme, "tree": tree, "verifier": verifier, "temperature": temperature,
                         "prompt": number, "tokens": result.tokens})
            print(scheme, tree, verifier, temperature, number, result.tokens[:8], flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"commit": commit, "machine": platform.processor() or platform.machine(), "rows": rows}


def compare(before: Path, after: Path) -> int:
    old, new = (json.loads(path.read_text()) for path in (before, after))
    key = ("scheme", "tree", "verifier", "temperature", "prompt")
    old_rows = {tuple(row[k] for k in key): row["tokens"] for row in old["rows"]}
    differ = [row for row in new["rows"] if old_rows.get(tuple(row[k] for k in key)) != row["tokens"]]
    print(f"{len(new['rows']) - len(differ)} of {len(new['rows'])} generations identical "
          f"({old['commit'][:7]} -> {new['commit'][:7]})")
    for row in differ:
        print("differs:", {k: row[k] for k in key})
    return 1 if differ or len(old_rows) != len(new["rows"]) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=24)
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("give --out or --compare")
    torch.set_num_threads(2)
    result = run(args.prompts, args.tokens)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
