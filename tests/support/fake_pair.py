"""A bundled pair in miniature: a tiny GGUF split into installed "packages" under a temporary folder.

:func:`install_fake_spec` writes the packages and returns a
:class:`~multidraft.models.bundled.ModelSpec` for them; the folder it returns
must be on ``sys.path`` (``monkeypatch.syspath_prepend``, or ``PYTHONPATH`` for a
child process).  Every call uses new package names, so import caches never mix
two calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from pathlib import Path

from multidraft.models.bundled import ModelSpec
from tests.support.tiny_gguf import write_tiny_gguf

PARTS = 3


def install_fake_spec(folder: Path) -> tuple[ModelSpec, Path]:
    """Split a tiny GGUF into :data:`PARTS` packages under ``folder/site``; returns the spec and that folder."""
    folder.mkdir(parents=True, exist_ok=True)
    gguf = folder / "tiny.gguf"
    write_tiny_gguf(gguf)
    data = gguf.read_bytes()
    prefix = f"multidraft_fake_{uuid.uuid4().hex[:10]}_part"
    cuts = [len(data) * i // PARTS for i in range(PARTS + 1)]
    site = folder / "site"
    for i in range(PARTS):
        package = site / f"{prefix}{i + 1}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i + 1:02d}.bin").write_bytes(data[cuts[i] : cuts[i + 1]])
    spec = ModelSpec(
        key="tiny-test-model",
        name="Tiny test model",
        upstream="none",
        license="MIT",
        quantization="F32",
        distributions=tuple(f"{prefix.replace('_', '-')}{i + 1}==0.0.0" for i in range(PARTS)),
        import_names=tuple(f"{prefix}{i + 1}" for i in range(PARTS)),
        part_files=tuple(f"data/part{i + 1:02d}.bin" for i in range(PARTS)),
        gguf_size=len(data),
        gguf_sha256=hashlib.sha256(data).hexdigest(),
        n_params=2 * 32 * 16 + 16 + 2 * (2 * 16 * 16 + 2 * 8 * 16 + 3 * 32 * 16 + 2 * 16),
        n_layers=2,
    )
    return spec, site


def spec_json(spec: ModelSpec) -> str:
    """``spec`` as JSON, for a child process (:func:`spec_from_json`)."""
    return json.dumps(dataclasses.asdict(spec))


def spec_from_json(text: str) -> ModelSpec:
    return ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()})


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
