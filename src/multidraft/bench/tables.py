"""Markdown tables of the benchmarks' results (what ``multidraft bench`` writes and the demo prints)."""

from __future__ import annotations

from multidraft.bench.report import markdown_table
from multidraft.bench.stats import format_interval


def token_markdown(rows: list[dict]) -> str:
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
    shown = [{**row, "tps_ci": format_interval(row.get("tokens_per_second_ci95")),
              "speedup_ci": format_interval(row.get("speedup_ci95")),
              "be_ci": format_interval(row.get("block_efficiency_ci95")),
              "rb_ci": format_interval(row.get("expected_block_efficiency_ci95")) if "expected_block_efficiency" in row else "",
              "verification_pct": 100 * row["verification_share"]} for row in rows]
    return markdown_table(shown, [
        ("temperature", "T"), ("config", "configuration"), ("prompts", "prompts"), ("tokens_per_second", "tokens/s"),
        ("tps_ci", "95% CI"), ("speedup", "speedup"), ("speedup_ci", "95% CI"),
        ("block_efficiency", "tokens/call (realised)"), ("be_ci", "95% CI"),
        ("expected_block_efficiency", "tokens/call (exact expectation)"), ("rb_ci", "95% CI"),
        ("verification_pct", "verification %"),
    ])


def differences_markdown(rows: list[dict]) -> str:
    shown = [{**row, "e_ci": format_interval(row["delta_expected_ci95"], signed=True),
              "r_ci": format_interval(row["delta_realised_ci95"], signed=True)} for row in rows]
    return markdown_table(shown, [
        ("temperature", "T"), ("comparison", "comparison"), ("prompts", "prompts"),
        ("delta_expected", "Δ tokens/call (exact expectation)"), ("e_ci", "95% CI"),
        ("delta_realised", "Δ tokens/call (realised)"), ("r_ci", "95% CI"),
    ])


def paired_markdown(rows: list[dict], gains: list[dict]) -> str:
    table = markdown_table([{**r, "ci": format_interval(r["ci95"]), "integrated": _blank(r["integrated_tokens_per_step"]),
                             "integrated_ci": "—" if r["integrated_tokens_per_step"] is None
                             else format_interval(r["integrated_ci95"])} for r in rows], [
        ("temperature", "T"), ("scheme", "scheme"), ("depth", "depth"), ("prompts", "prompts"), ("steps", "steps"),
        ("expected_tokens_per_step", "E tokens/call given tree"), ("ci", "95% CI"),
        ("integrated", "integrated"), ("integrated_ci", "95% CI")])
    differences = markdown_table([{**g, "ci": format_interval(g["ci95"], signed=True),
                                   "given_ci": format_interval(g["given_tree_ci95"], signed=True)} for g in gains], [
        ("temperature", "T"), ("depth", "depth"), ("comparison", "comparison"), ("prompts", "prompts"),
        ("estimator", "estimator"), ("delta", "Δ E tokens/call"), ("ci", "95% CI"),
        ("given_tree_delta", "Δ given tree"), ("given_ci", "95% CI")])
    return table + "\n\n" + differences


def _blank(value):
    return "—" if value is None else value
