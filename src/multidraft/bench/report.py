"""Tables (Markdown, CSV, JSON) and plots for the benchmark results; every file is replaced atomically."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from multidraft.models.cache import replace_atomically


def _cell(key: str, value) -> str:
    if key == "temperature":
        return f"{value:g}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows`` with (key, heading) ``columns``; floats to 4 decimals."""
    lines = ["| " + " | ".join(heading for _, heading in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(key, row.get(key)) for key, _ in columns) + " |")
    return "\n".join(lines)


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: an interrupted write leaves the previous file whole."""
    with replace_atomically(path) as temporary:
        temporary.write_text(text)


def write_csv(rows: Sequence[dict], path: Path) -> None:
    keys = list(dict.fromkeys(key for row in rows for key in row))
    with replace_atomically(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def write_json(report: dict, path: Path) -> None:
    write_text(path, json.dumps(report, indent=2) + "\n")


def plot_lines(
    series: dict[str, tuple[list, list]],
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    dashed: dict[str, tuple[list, list]] | None = None,
) -> None:
    """One line per series (x, y); ``dashed`` series (bounds) drawn dashed.  Saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, (x, y) in series.items():
        axes.plot(x, y, marker="o", label=label)
    for label, (x, y) in (dashed or {}).items():
        axes.plot(x, y, linestyle="--", label=label)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with replace_atomically(path) as temporary:
        figure.savefig(temporary, dpi=120, format="png")
    plt.close(figure)
