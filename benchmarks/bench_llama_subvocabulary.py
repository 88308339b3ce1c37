"""The bundled draft GGUF cut to a sub-vocabulary on llama.cpp: the time it saves and the acceptance it costs.

For each K in ``--keep`` the draft GGUF is cut to its first K ids and its special tokens
(:func:`multidraft.runners.subvocabulary.write_subvocabulary`; written once next to the bundled GGUF).

1. **Forward cost.**  Median seconds of a :class:`~multidraft.runners.llama.LlamaRunner` forward over R
   tree nodes (R = 1, 2, 4, 8, 16) after a 120-token prefix, the full draft and every cut one, interleaved
   as in ``bench_llama.py`` (one warm-up round, R ascending then descending, model order rotating).
2. **Acceptance.**  On texts of ``--prompts`` prompts continued by ``--continuation`` tokens sampled from
   the llama.cpp target (T = 1), at every continuation position: the single-draft acceptance
   sum_x min(p(x), q(x)) of the target's p against each draft's q, at T = 1 and T = 0.6 (exact per
   position, no sampling), and the share of the text's tokens outside the sub-vocabulary.  Means per
   prompt, then over prompts with a 95% t interval (clustered by prompt); differences to the full draft
   are paired by position.

    nice .venv/bin/python benchmarks/bench_llama_subvocabulary.py --keep 32768 65536

Writes ``benchmarks/results/llama_subvocabulary.json`` and ``.md`` with the command, commit, date,
machine, threads and load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_llama import PREFIX, RESULTS, ROWS, clustered, provenance, save, tree_call, wait_for_memory  # noqa: E402
from multidraft import models  # noqa: E402
from multidraft.bench.inputs import encode, pick_prompts  # noqa: E402
from multidraft.decoding import autoregressive  # noqa: E402
from multidraft.runners.base import causal_visibility  # noqa: E402
from multidraft.runners.gguf_file import read_gguf  # noqa: E402
from multidraft.runners.llama import LlamaRunner  # noqa: E402
from multidraft.runners.subvocabulary import write_subvocabulary  # noqa: E402

TEMPERATURES = (1.0, 0.6)


def forward_cost(runners: dict[str, LlamaRunner], prefix: torch.Tensor, repeats: int) -> dict:
    for runner in runners.values():
        runner.reset()
        runner.forward(prefix, torch.arange(len(prefix)), causal_visibility(0, len(prefix)), 1)
        runner.keep_path(len(prefix), [])
    generator = torch.Generator().manual_seed(0)
    names, times = list(runners), {}
    for repeat in range(repeats + 1):
        for rows in ROWS if repeat % 2 == 0 else ROWS[::-1]:
            visible, positions = tree_call(rows, len(prefix))
            shift = (repeat + rows) % len(names)
            for name in names[shift:] + names[:shift]:
                tokens = torch.randint(0, 150000, (rows,), generator=generator)
                start = time.perf_counter()
                runners[name].forward(tokens, positions, visible, rows)
                elapsed = time.perf_counter() - start
                runners[name].keep_path(len(prefix), [])
                if repeat > 0:
                    times.setdefault(f"{name} {rows}", []).append(elapsed)
        print(f"forward repeat {repeat}/{repeats}", flush=True)
    return {key: {"median_seconds": float(np.median(t)), "seconds": t} for key, t in times.items()}


def whole_text_logits(runner: LlamaRunner, text: torch.Tensor, rows: int) -> torch.Tensor:
    runner.reset()
    return runner.forward(text, torch.arange(len(text)), causal_visibility(0, len(text)), rows)


def acceptance(
    target: LlamaRunner,
    drafts: dict[str, LlamaRunner],
    prompts: list[torch.Tensor],
    continuation: int,
    cut_ids: dict[str, np.ndarray],
) -> list[dict]:
    rows = []
    for number, prompt in enumerate(prompts):
        result = autoregressive(
            target,
            prompt,
            max_new_tokens=continuation,
            temperature=1.0,
            generator=torch.Generator().manual_seed(100 + number),
        )
        text = torch.cat([prompt, torch.tensor(result.tokens)])
        count = len(text) - len(prompt)  # positions predicting the continuation
        target_logits = whole_text_logits(target, text, count + 1)[:-1]
        row = {"prompt": number, "positions": count}
        for name, draft in drafts.items():
            draft_logits = whole_text_logits(draft, text, count + 1)[:-1]
            for temperature in TEMPERATURES:
                p = torch.softmax(target_logits.double() / temperature, -1)
                q = torch.softmax(draft_logits.double() / temperature, -1)
                row[f"{name} T={temperature}"] = torch.minimum(p, q).sum(-1).tolist()
            if name in cut_ids:
                outside = ~np.isin(text.numpy(), cut_ids[name])
                row[f"{name} outside"] = float(outside.mean())
        rows.append(row)
        print(
            f"acceptance prompt {number}: "
            + ", ".join(f"{k} {np.mean(v):.4f}" for k, v in row.items() if isinstance(v, list)),
            flush=True,
        )
    return rows


def markdown(report: dict) -> str:
    names = report["drafts"]
    lines = [
        "# The bundled draft cut to a sub-vocabulary, on llama.cpp",
        "",
        f"Written by `benchmarks/bench_llama_subvocabulary.py`: `{report['command']}` at {report['commit'][:10]}, "
        f"{report['date']}, {report['machine']}, llama-cpp-python {report['llama_cpp_python']}, "
        f"{report['threads']} threads, load average {report['load_average_before'][0]:.1f} before, "
        f"{report['load_average_after'][0]:.1f} after.  The machine is shared: absolute times depend on its "
        "load; the forwards are interleaved so that it hits every draft alike.",
        "",
        "## Draft forward over R tree nodes after a 120-token prefix (median)",
        "",
        "| draft | " + " | ".join(f"R = {r}" for r in ROWS) + " |",
        "|---" * (len(ROWS) + 1) + "|",
    ]
    for name in names:
        cells = [f"{report['forward'][f'{name} {r}']['median_seconds'] * 1000:.0f} ms" for r in ROWS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## Single-draft acceptance sum min(p, q) against the target, {report['prompts']} prompts x "
        f"{report['continuation']} tokens (mean over prompts, 95% interval)",
        "",
        "| draft | " + " | ".join(f"T = {t}" for t in TEMPERATURES) + " | change against the full draft, T = 1 |"
        " tokens outside |",
        "|---" * (len(TEMPERATURES) + 3) + "|",
    ]
    for name in names:
        summary = report["summary"][name]
        cells = [
            f"{summary[f'T={t}']['mean']:.4f} [{summary[f'T={t}']['ci95'][0]:.4f}, {summary[f'T={t}']['ci95'][1]:.4f}]"
            for t in TEMPERATURES
        ]
        change = summary.get("change T=1.0")
        cells.append(
            "" if change is None else f"{change['mean']:+.4f} [{change['ci95'][0]:+.4f}, {change['ci95'][1]:+.4f}]"
        )
        cells.append("" if "outside" not in summary else f"{summary['outside']['mean']:.3%}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=int, nargs="+", default=[32768, 65536])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--continuation", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pair = models.bundled_pair()
    source = pair.draft.gguf_path()
    wait_for_memory(6 << 30)  # the drafts and the target in llama.cpp: about 5 GB (the machine is shared)
    files = {"full": source}
    for keep in args.keep:
        out = source.with_name(f"{source.stem}-vocabulary{keep}.gguf")
        if not out.is_file():
            print(f"writing {out}", flush=True)
            write_subvocabulary(source, out.with_suffix(".tmp"), keep)
            os.replace(out.with_suffix(".tmp"), out)
        files[f"first {keep} ids"] = out
    report = provenance(args.threads)
    report.update(
        {
            "drafts": list(files),
            "files": {k: str(v) for k, v in files.items()},
            "prompts": args.prompts,
            "continuation": args.continuation,
        }
    )
    drafts = {name: LlamaRunner(path, threads=args.threads, context=512) for name, path in files.items()}
    tokenizer = pair.target.load_tokenizer()
    prompts = [encode(tokenizer, prompt, 96) for prompt in pick_prompts(args.prompts)]
    report["forward"] = forward_cost(drafts, torch.cat(prompts)[:PREFIX], args.repeats)
    target = LlamaRunner(pair.target.gguf_path(), threads=args.threads, context=512)
    cut_ids = {name: read_gguf(path).kept_ids for name, path in files.items() if name != "full"}
    report["positions"] = acceptance(target, drafts, prompts, args.continuation, cut_ids)
    summary = {}
    for name in files:
        per_prompt = {
            f"T={t}": [float(np.mean(row[f"{name} T={t}"])) for row in report["positions"]] for t in TEMPERATURES
        }
        summary[name] = {key: clustered(values) for key, values in per_prompt.items()}
        if name != "full":
            summary[name]["change T=1.0"] = clustered(
                [float(np.mean(np.subtract(row[f"{name} T=1.0"], row["full T=1.0"]))) for row in report["positions"]]
            )
            summary[name]["outside"] = clustered([row[f"{name} outside"] for row in report["positions"]])
    report["summary"] = summary
    save("llama_subvocabulary.json", report)
    (RESULTS / "llama_subvocabulary.md").write_text(
        markdown(json.loads((RESULTS / "llama_subvocabulary.json").read_text()))
    )
    print((RESULTS / "llama_subvocabulary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
