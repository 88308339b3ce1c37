"""``multidraft bench``: token-level and end-to-end benchmarks on real models and prompts.

* ``bench tokens``   -- exact acceptance vs alpha* on recorded distributions;
* ``bench generate`` -- block efficiency, tokens/s and speedup of real generation;
* ``bench all``      -- record, then both, then the headline table (the main job).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from multidraft.cli.options import add_model_arguments, add_sampling_arguments, check_sampling, number_list

DEFAULT_OUT = Path("benchmarks/results")


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="token-level and end-to-end benchmarks")
    commands = parser.add_subparsers(dest="bench_command", required=True)

    tokens = commands.add_parser("tokens", help="acceptance vs alpha* on recorded distributions")
    tokens.add_argument("recordings", nargs="+", type=Path, help=".npz files from `multidraft record`")
    tokens.add_argument("--k", default="2-8", help="draft counts, e.g. 2-8 or 2,4,8")
    tokens.add_argument("--mc-draws", type=int, default=64, help="Monte-Carlo draws per position where no exact form is affordable")
    tokens.add_argument("--out", type=Path, default=DEFAULT_OUT)
    tokens.set_defaults(run=run_tokens)

    generate = commands.add_parser("generate", help="end-to-end generation benchmark")
    add_model_arguments(generate)
    _add_generate_arguments(generate)
    generate.set_defaults(run=run_generate)

    everything = commands.add_parser("all", help="record, token-level and end-to-end benchmarks, headline table")
    add_model_arguments(everything)
    _add_generate_arguments(everything)
    everything.add_argument("--k", default="2-8", help="draft counts for the token-level table")
    everything.add_argument("--record-prompts", type=int, help="prompts to record (quick 4, full 60)")
    everything.add_argument("--record-tokens", type=int, help="tokens recorded per prompt (quick 16, full 64)")
    everything.add_argument("--top-n", type=int, default=256)
    everything.add_argument("--mc-draws", type=int, default=64)
    everything.set_defaults(run=run_all)


def _add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true", help="the full grid of schemes and trees (hours on a CPU)")
    parser.add_argument("--configs", help="scheme:tree list, e.g. spechub:2x3,rrs:2x3 (overrides the grid)")
    parser.add_argument("--temperatures", default="0.6,1.0")
    add_sampling_arguments(parser, temperature=False)
    parser.add_argument("--prompts", type=int, help="prompts, round-robin over the categories (quick 2, full 30)")
    parser.add_argument("--new-tokens", type=int, help="tokens generated per prompt (quick 16, full 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-prompt-tokens", type=int, help="prompt tokens kept (quick 128, full 512)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)


#: Sizes of the quick run (the main job, minutes on a 2-core CPU) and of ``--full`` (hours).
SIZES = {
    "prompts": (2, 30),
    "new_tokens": (16, 128),
    "max_prompt_tokens": (128, 512),
    "record_prompts": (4, 60),
    "record_tokens": (16, 64),
}


def _fill_sizes(args: argparse.Namespace) -> None:
    """Unset size arguments take the quick or the full default."""
    for name, (quick, full) in SIZES.items():
        if getattr(args, name, "absent") is None:
            setattr(args, name, full if args.full else quick)


def _generate_plan(args: argparse.Namespace):
    """Checked configurations and temperatures (before any model is loaded)."""
    from multidraft.bench.generate import default_configs, parse_configs

    _fill_sizes(args)
    configs = parse_configs(args.configs) if args.configs else default_configs(args.full)
    temperatures = number_list(args.temperatures)
    check_sampling(temperatures, args.top_k, args.top_p)
    if args.prompts < 1 or args.new_tokens < 1:
        raise ValueError("--prompts and --new-tokens must be >= 1")
    return configs, temperatures


def _token_outputs(recordings, ks, mc_draws, out: Path) -> list[dict]:
    from tqdm import tqdm

    from multidraft.bench import report
    from multidraft.bench.tokens import DEFAULT_SCHEMES, applies, paired_gains, token_table

    rows = []
    for recording in recordings:
        temperature = recording.header.get("temperature")
        total = sum(1 for k in sorted({1, *ks}) for name in DEFAULT_SCHEMES if applies(name, k))
        with tqdm(total=total, desc=f"tokens T={temperature}", unit="row") as bar:
            table = token_table(recording, ks, mc_draws=mc_draws, progress=bar.update)
        tails = {"mean_p_tail": float(recording.p_tail.mean()), "mean_q_tail": float(recording.q_tail.mean())}
        rows += [{"temperature": temperature, **row, **tails} for row in table]
    gains = [{"temperature": r.header.get("temperature"), **gain} for r in recordings for gain in paired_gains(r)]
    report.write_json({"benchmark": "tokens", "rows": rows, "spechub_gains_k2": gains}, out / "tokens.json")
    report.write_csv(rows, out / "tokens.csv")
    gain_table = report.markdown_table(
        gains, [("temperature", "T"), ("comparison", "k = 2"), ("delta_acceptance", "Δ acceptance"), ("se", "paired s.e.")]
    )
    (out / "tokens.md").write_text(token_markdown(rows) + "\n\n" + gain_table + "\n")
    for temperature in sorted({row["temperature"] for row in rows}):
        chosen = [row for row in rows if row["temperature"] == temperature]
        series, bounds = {}, {}
        for row in chosen:
            series.setdefault(row["scheme"], ([], []))
            series[row["scheme"]][0].append(row["k"])
            series[row["scheme"]][1].append(row["acceptance"])
        for row in chosen:
            if row["scheme"] == "rrs":
                bounds.setdefault("alpha* iid", ([], []))
                bounds["alpha* iid"][0].append(row["k"])
                bounds["alpha* iid"][1].append(row["optimal_own_law"])
                bounds.setdefault("best alpha*", ([], []))
                bounds["best alpha*"][0].append(row["k"])
                bounds["best alpha*"][1].append(row["best_optimal"])
        report.plot_lines(series, out / f"tokens_T{temperature}.png", title=f"Acceptance vs k (T = {temperature})",
                          xlabel="drafts k", ylabel="acceptance rate", dashed=bounds)
    return rows


def token_markdown(rows: list[dict]) -> str:
    from multidraft.bench.report import markdown_table

    return markdown_table(
        rows,
        [
            ("temperature", "T"),
            ("scheme", "scheme"),
            ("k", "k"),
            ("draft_law", "draft law"),
            ("acceptance", "acceptance"),
            ("acceptance_se", "± s.e."),
            ("optimal_own_law", "α* own law"),
            ("gap_to_own_optimum", "gap"),
            ("best_optimal", "best α*"),
            ("method", "method"),
        ],
    )


def generate_markdown(rows: list[dict]) -> str:
    from multidraft.bench.report import markdown_table

    shown = [
        {
            **row,
            "ci": "[{:.3f}, {:.3f}]".format(*row["block_efficiency_ci95"]),
            "verification_pct": 100 * row["verification_share"],
        }
        for row in rows
    ]
    return markdown_table(
        shown,
        [
            ("temperature", "T"),
            ("config", "configuration"),
            ("block_efficiency", "tokens/step"),
            ("ci", "95% CI"),
            ("tokens_per_second", "tokens/s"),
            ("speedup", "speedup"),
            ("verification_pct", "verification %"),
            ("tokens", "tokens"),
        ],
    )


def _generate_outputs(pair, args, configs, temperatures) -> list[dict]:
    from tqdm import tqdm

    from multidraft.bench import generate, report
    from multidraft.bench.headline import spechub_gains
    from multidraft.bench.inputs import encode, pick_prompts

    prompts = [encode(pair.tokenizer, p, args.max_prompt_tokens) for p in pick_prompts(args.prompts)]
    generate.warm_up(pair.target, pair.draft, prompts[0])
    total = len(temperatures) * (len(configs) + 1) * len(prompts)
    with tqdm(total=total, desc="generate", unit="run") as bar:
        rows = generate.run(
            pair.target, pair.draft, prompts, configs=configs, temperatures=temperatures, new_tokens=args.new_tokens,
            top_k=args.top_k, top_p=args.top_p, eos_token_id=None, seed=args.seed,
            progress=lambda label: (bar.set_postfix_str(label), bar.update()),
        )
    gains = spechub_gains(rows)
    report.write_json({"benchmark": "generate", "models": pair.names, "new_tokens": args.new_tokens,
                       "prompts": args.prompts, "rows": rows, "spechub_gains": gains}, args.out / "generate.json")
    report.write_csv([{k: v for k, v in r.items() if not k.startswith("per_prompt")} for r in rows], args.out / "generate.csv")
    (args.out / "generate.md").write_text(generate_markdown(rows) + "\n\n" + gains_markdown(gains) + "\n")
    for temperature in temperatures:
        series = {}  # one line per scheme and branching, block efficiency against depth
        for row in rows:
            if row["temperature"] == temperature and "scheme" in row and "x" in row["tree"]:
                branching, depth = row["tree"].split("x")
                x, y = series.setdefault(f"{row['scheme']} {branching}x", ([], []))
                x.append(int(depth))
                y.append(row["block_efficiency"])
        report.plot_lines(series, args.out / f"generate_T{temperature}.png", title=f"Tokens per step (T = {temperature})",
                          xlabel="tree depth", ylabel="tokens per target call")
    return rows


def gains_markdown(gains: list[dict]) -> str:
    from multidraft.bench.report import markdown_table

    shown = [{**g, "ci": "[{:+.3f}, {:+.3f}]".format(*g["ci95"])} for g in gains]
    return markdown_table(
        shown, [("temperature", "T"), ("tree", "tree"), ("comparison", "comparison"),
                ("delta_block_efficiency", "Δ tokens/step"), ("ci", "95% CI")]
    )


def run_tokens(args: argparse.Namespace) -> int:
    from multidraft.bench.recording import Recording

    ks = number_list(args.k, int)
    if not ks or min(ks) < 1:
        raise ValueError(f"--k must list draft counts >= 1, got {args.k!r}")
    recordings = [Recording.load(path) for path in args.recordings]
    _token_outputs(recordings, ks, args.mc_draws, args.out)
    print((args.out / "tokens.md").read_text())
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from multidraft.bench.inputs import load_pair

    configs, temperatures = _generate_plan(args)
    pair = load_pair(args.target, args.draft)
    rows = _generate_outputs(pair, args, configs, temperatures)
    print(generate_markdown(rows))
    return 0


def run_all(args: argparse.Namespace) -> int:
    from multidraft.bench.inputs import load_pair
    from multidraft.cli.record import record_to_file

    configs, temperatures = _generate_plan(args)
    ks = number_list(args.k, int)
    pair = load_pair(args.target, args.draft)
    record_args = argparse.Namespace(
        prompts=args.record_prompts, new_tokens=args.record_tokens, top_n=args.top_n,
        top_k=args.top_k, top_p=args.top_p, seed=args.seed, max_prompt_tokens=args.max_prompt_tokens,
    )
    recordings = [record_to_file(record_args, pair, t, args.out / f"recording_T{t}.npz") for t in temperatures]
    _token_outputs(recordings, ks, args.mc_draws, args.out)
    _generate_outputs(pair, args, configs, temperatures)
    print("\n## Token level: acceptance vs alpha*\n")
    print((args.out / "tokens.md").read_text())
    print("\n## End to end\n")
    print((args.out / "generate.md").read_text())
    return 0
