"""``scheme="auto"`` per prompt class, from interleaved ``multidraft bench generate`` runs (one per class).

    python benchmarks/auto_report.py benchmarks/results/auto/auto_chat.jsonl \\
        benchmarks/results/auto/auto_code.jsonl benchmarks/results/auto/auto_summarization.jsonl

Per class and temperature, over the prompts every configuration finished (paired by prompt, 95%
bootstrap intervals clustered by prompt; none below 8 prompts):

* ``auto`` against plain decoding (``autoregressive``, the same execution path), against the best
  fixed configuration in hindsight (the fixed ``scheme tree`` row of most tokens/s in that class and
  temperature), against Hugging Face assisted generation with its default settings on the same prepared
  models and against its prompt lookup there (``hf-same:lookup``), and against ``auto-static`` (the
  planner's first plan kept: what online adaptation adds);
* ``auto (profile 2.5x slower)``: the planner given a profile whose forwards are 2.5x slower, as a
  slower machine of the same kind measures them (its speedup over plain decoding here);
* the planner's predicted tokens per step against the measured ones (Rao-Blackwellised: the exact
  expected tokens of each drafted tree), as their ratio over the same steps, over the steps past
  each generation's first, and over the steps that copied from the text and those that drafted;
* how often ``auto`` chose plain decoding.

Runs of ``auto`` alone get the prediction table only: given the profile, the planner's choices and
predictions do not depend on timing, so planner variants can be compared on the same prompts and seeds
away from a quiet machine.

Writes ``auto.json`` and ``auto.md`` (``--name``: another name) beside the first results file.
``--prompts N`` reads prompts 0 to N - 1 only, ``--prompts A-B`` prompts A to B (a run extended with
``--resume --prompts`` keeps its earlier report reproducible, and its new prompts can be read apart).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from multidraft.bench.generate import AUTOREGRESSIVE, _by_config, per_prompt
from multidraft.bench.report import markdown_table, write_json, write_text
from multidraft.bench.stats import format_interval, paired_ratio_quotient, ratio_interval
from multidraft.bench.store import read_lines

AUTO, STATIC = "auto", "auto-static"
SLOW, HF_DEFAULT = "auto (profile 2.5x slower)", "hf-assisted (same models) default"
HF_LOOKUP = "hf prompt lookup (same models) γ=10"


def fixed(label: str) -> bool:
    """A fixed multidraft configuration: ``scheme tree[ verifier]``."""
    return not label.startswith(
        ("auto", "hf-assisted", "hf prompt lookup", AUTOREGRESSIVE, "llama-plain", "torch-plain")
    )


def quotient(table, a: str, b: str, prompts) -> tuple[float, list[float] | None]:
    """tokens/s of ``a`` over tokens/s of ``b`` on the same prompts, with its paired interval."""
    sa, sb = per_prompt(table[a], prompts), per_prompt(table[b], prompts)
    return paired_ratio_quotient((sa["tokens"], sa["seconds"]), (sb["tokens"], sb["seconds"]))


def prompt_range(text: str) -> range:
    """``N``: prompts 0 to N - 1; ``A-B``: prompts A to B; at least 8 (no interval from fewer)."""
    first, _, last = text.rpartition("-") if "-" in text else ("0", "", str(int(text) - 1))
    chosen = range(int(first), int(last) + 1)
    if len(chosen) < 8:
        raise argparse.ArgumentTypeError(f"--prompts must name at least 8 prompts (N or A-B), got {text!r}")
    return chosen


def class_rows(category: str, records: list[dict], chosen: range | None = None) -> list[dict]:
    table = _by_config([r for r in records if chosen is None or r["prompt"] in chosen])
    rows = []
    for temperature in sorted({t for t, _ in table}):
        runs = {label: r for (t, label), r in table.items() if t == temperature}
        prompts = sorted(set.intersection(*(set(r) for r in runs.values())))
        row = {"class": category, "temperature": temperature, "prompts": len(prompts)}
        if AUTOREGRESSIVE in runs:  # a timed comparison (a run of auto alone reports its predictions only)
            row.update(speed_columns(runs, prompts))
        chosen = [runs[AUTO][i] for i in prompts]
        predicted = [sum(r["predicted_tokens"]) for r in chosen]
        measured = [sum(r["expected_tokens"]) for r in chosen]
        row["predicted_tokens_per_step"] = sum(predicted) / sum(r["target_calls"] for r in chosen)
        row["measured_tokens_per_step"] = sum(measured) / sum(r["target_calls"] for r in chosen)
        row["measured_over_predicted"] = sum(measured) / sum(predicted)
        row["measured_over_predicted_ci95"] = ratio_interval(measured, predicted)
        later_predicted = [sum(r["predicted_tokens"][1:]) for r in chosen]  # past each generation's first step
        later_measured = [sum(r["expected_tokens"][1:]) for r in chosen]
        row["past_first_step_measured_over_predicted"] = sum(later_measured) / sum(later_predicted)
        row["past_first_step_measured_over_predicted_ci95"] = ratio_interval(later_measured, later_predicted)
        for kind, copied in (("copied", True), ("drafted", False)):
            row[f"{kind}_measured_over_predicted"], row[f"{kind}_measured_over_predicted_ci95"] = split_ratio(
                chosen, copied
            )
        plans = Counter(plan or "plain decoding" for r in chosen for plan in r["plans"])
        steps = sum(plans.values())
        row["plans"] = {plan: count / steps for plan, count in plans.most_common()}
        phases = sum(r["draft_seconds"] + r["target_seconds"] + r["verification_seconds"] for r in chosen)
        row["planning_share"] = 1.0 - phases / sum(r["seconds"] for r in chosen)  # the rest of the total
        row["seconds_per_step"] = step_seconds_by_kind(chosen)
        rows.append(row)
    return rows


def speed_columns(runs: dict, prompts: list[int]) -> dict:
    """tokens/s of plain decoding, auto, the best fixed configuration and HF's default, and auto's paired ratios
    to each peer that ran."""
    speed = {label: per_prompt(r, prompts) for label, r in runs.items()}
    rate = {label: sum(s["tokens"]) / sum(s["seconds"]) for label, s in speed.items()}
    best = max((label for label in runs if fixed(label)), key=rate.get, default=None)
    row = {
        "plain_tokens_per_second": rate[AUTOREGRESSIVE],
        "auto_tokens_per_second": rate[AUTO],
        "best_fixed": best,
        "best_fixed_tokens_per_second": rate.get(best),
        "hf_default_tokens_per_second": rate.get(HF_DEFAULT),
    }
    peers = (("vs_plain", AUTOREGRESSIVE), ("vs_best_fixed", best), ("vs_hf_default", HF_DEFAULT))
    for name, other in (*peers, ("vs_hf_lookup", HF_LOOKUP)):
        if other in runs:
            row[name], row[f"{name}_ci95"] = quotient(runs, AUTO, other, prompts)
    if STATIC in runs:
        row["adaptation_gain"], row["adaptation_gain_ci95"] = quotient(runs, AUTO, STATIC, prompts)
    if SLOW in runs:
        row["slow_profile_vs_plain"], row["slow_profile_vs_plain_ci95"] = quotient(runs, SLOW, AUTOREGRESSIVE, prompts)
    return row


def step_seconds_by_kind(chosen: list[dict]) -> dict[str, float]:
    """auto's mean seconds per step, past each generation's first (which reads the prompt), for plain decoding,
    copied and drafted steps: empty for results stored before steps were timed one by one."""
    kinds = {}
    for r in chosen:
        for plan, seconds in list(zip(r["plans"], r.get("step_seconds") or []))[1:]:
            kind = "drafted" if plan and not plan.startswith("lookup") else "copied" if plan else "plain"
            kinds.setdefault(kind, []).append(seconds)
    return {kind: sum(times) / len(times) for kind, times in sorted(kinds.items())}


def split_ratio(chosen: list[dict], copied: bool) -> tuple[float | None, list[float] | None]:
    """Measured / predicted tokens over the steps that copied from the text (``copied``) or drafted with the
    model (plain steps left out), clustered over the prompts that ran such steps (no interval below 8 of
    them); None where none did."""
    sums = []
    for r in chosen:
        steps = [
            (measured, predicted)
            for plan, measured, predicted in zip(r["plans"], r["expected_tokens"], r["predicted_tokens"])
            if plan and plan.startswith("lookup") == copied
        ]
        if steps:
            sums.append([sum(column) for column in zip(*steps)])
    if not sums:
        return None, None
    measured, predicted = zip(*sums)
    return sum(measured) / sum(predicted), ratio_interval(measured, predicted)


def cell(value, interval) -> str:
    return "—" if value is None else f"{value:.3f} {format_interval(interval)}"


def best_fixed(row: dict) -> str:
    if row["best_fixed"] is None:
        return "—"
    return f"{row['best_fixed']} ({row['best_fixed_tokens_per_second']:.2f})"


def markdown(rows: list[dict], command: str) -> str:
    table = [
        {
            "class": r["class"],
            "T": f"{r['temperature']:g}",
            "prompts": r["prompts"],
            "plain tok/s": f"{r['plain_tokens_per_second']:.2f}",
            "auto tok/s": f"{r['auto_tokens_per_second']:.2f}",
            "auto / plain": cell(r.get("vs_plain"), r.get("vs_plain_ci95")),
            "best fixed": best_fixed(r),
            "auto / best fixed": cell(r.get("vs_best_fixed"), r.get("vs_best_fixed_ci95")),
            "auto / HF default": cell(r.get("vs_hf_default"), r.get("vs_hf_default_ci95")),
            "auto / HF prompt lookup": cell(r.get("vs_hf_lookup"), r.get("vs_hf_lookup_ci95")),
            "auto / auto-static": cell(r.get("adaptation_gain"), r.get("adaptation_gain_ci95")),
            "2.5x-slower profile / plain": cell(r.get("slow_profile_vs_plain"), r.get("slow_profile_vs_plain_ci95")),
        }
        for r in rows
        if "plain_tokens_per_second" in r
    ]
    prediction = [
        {
            "class": r["class"],
            "T": f"{r['temperature']:g}",
            "predicted tokens/step": f"{r['predicted_tokens_per_step']:.3f}",
            "measured (exact expectation)": f"{r['measured_tokens_per_step']:.3f}",
            "measured / predicted": cell(r["measured_over_predicted"], r["measured_over_predicted_ci95"]),
            "past the first step": cell(
                r["past_first_step_measured_over_predicted"], r["past_first_step_measured_over_predicted_ci95"]
            ),
            "copied steps": cell(r["copied_measured_over_predicted"], r["copied_measured_over_predicted_ci95"]),
            "drafted steps": cell(r["drafted_measured_over_predicted"], r["drafted_measured_over_predicted_ci95"]),
            "auto's plans (share of steps)": ", ".join(f"{p} {s:.0%}" for p, s in list(r["plans"].items())[:4]),
            "planning share of auto's seconds": f"{r['planning_share']:.1%}",
            "auto's seconds per step (past the first)": ", ".join(
                f"{kind} {seconds:.3f}" for kind, seconds in r["seconds_per_step"].items()
            )
            or "—",
        }
        for r in rows
    ]
    columns = lambda rs: [(key, key) for key in rs[0]]  # noqa: E731
    speed = markdown_table(table, columns(table)) + "\n\n" if table else ""
    return (
        f'# scheme="auto" per prompt class\n\n`{command}`\n\n'
        + speed
        + markdown_table(prediction, columns(prediction))
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--name", default="auto", help="the report's file name, without extension")
    parser.add_argument(
        "--prompts", type=prompt_range, default=None, help="N: prompts 0 to N - 1; A-B: prompts A to B (default: all)"
    )
    args = parser.parse_args()
    rows, headers = [], []
    for path in args.results:
        lines, _ = read_lines(path)
        header = lines[0]["header"]
        headers.append(header)
        rows += class_rows(header.get("category") or "all", lines[1:], args.prompts)
    out = args.results[0].parent
    command = "python benchmarks/auto_report.py " + " ".join(str(p) for p in args.results)
    if args.name != "auto":
        command += f" --name {args.name}"
    if args.prompts is not None:
        command += f" --prompts {args.prompts.start}-{args.prompts.stop - 1}"
    write_json({"command": command, "headers": headers, "rows": rows}, out / f"{args.name}.json")
    write_text(out / f"{args.name}.md", markdown(rows, command))
    print((out / f"{args.name}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
