"""The bundled pair's cache entries (assembled GGUF, converted folder) under races, damage, kills and full disks.

A miniature pair stands in for the real one (:mod:`fake_pair`): a tiny GGUF
split into three installed packages, assembled and converted exactly as the
real parts are.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from multidraft.cli import main
from multidraft.models import CacheWriteError, bundled, cache
from multidraft.models.bundled import STAMP, BundledPair, ModelSpec
from tests.support.child_process import child_env
from tests.support.fake_pair import folder_bytes, install_fake_spec, spec_json


@pytest.fixture()
def fake(tmp_path, monkeypatch) -> ModelSpec:
    spec, site = install_fake_spec(tmp_path / "fake")
    monkeypatch.syspath_prepend(str(site))
    return spec


@pytest.fixture()
def conversions(monkeypatch) -> list[Path]:
    """Every conversion run in this process, by output folder."""
    runs, convert = [], ModelSpec._convert

    def counted(self, gguf, out):
        runs.append(out)
        convert(self, gguf, out)

    monkeypatch.setattr(ModelSpec, "_convert", counted)
    return runs


def _models(cache_root: Path) -> list[str]:
    return sorted(p.name for p in (cache_root / "models").iterdir())


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_first_use_assembles_and_converts_then_reuses(fake, tmp_path, conversions):
    out = fake.hf_path(tmp_path / "cache")
    assert out == tmp_path / "cache" / "models" / "tiny-test-model-hf-float32"
    stamp = json.loads((out / STAMP).read_text())
    assert stamp["gguf_sha256"] == fake.gguf_sha256 and len(stamp["sha256"]) == 64
    assert stamp["files"]["model.safetensors"]["bytes"] == (out / "model.safetensors").stat().st_size
    assert fake.hf_path(tmp_path / "cache") == out and len(conversions) == 1
    assert _models(tmp_path / "cache") == [
        "tiny-test-model-hf-float32",
        "tiny-test-model-hf-float32.lock",
        "tiny-test-model.gguf",
        "tiny-test-model.gguf.lock",
    ]


def test_a_changed_byte_in_the_assembled_gguf_is_discarded_and_assembled_again(fake, tmp_path, caplog):
    gguf = fake.gguf_path(tmp_path)
    data = bytearray(gguf.read_bytes())
    data[len(data) // 2] ^= 1  # same size: the size alone would pass
    gguf.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert fake.gguf_path(tmp_path) == gguf
    assert hashlib.sha256(gguf.read_bytes()).hexdigest() == fake.gguf_sha256
    (warning,) = _warnings(caplog)
    assert (
        f"discarding the cached file {gguf} (its SHA-256 does not match); assembling Tiny test model again" == warning
    )


def test_a_truncated_converted_folder_is_discarded_and_converted_again(fake, tmp_path, caplog, conversions):
    out = fake.hf_path(tmp_path)
    weights = out / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING):
        assert fake.hf_path(tmp_path) == out
    assert weights.read_bytes() == good and len(conversions) == 2
    (warning,) = _warnings(caplog)
    assert warning.startswith(f"discarding the converted folder {out} (model.safetensors has {len(good) // 2:,} bytes")


def test_a_converted_folder_with_a_damaged_stamp_is_converted_again(fake, tmp_path, caplog, conversions):
    out = fake.hf_path(tmp_path)
    (out / STAMP).write_text((out / STAMP).read_text().replace('"bytes": ', '"bytes": 1'))
    with caplog.at_level(logging.WARNING):
        fake.hf_path(tmp_path)
    assert len(conversions) == 2 and "does not match its checksum" in _warnings(caplog)[0]


def test_verify_rehashes_the_files_and_catches_a_changed_weight(fake, tmp_path, conversions):
    out = fake.hf_path(tmp_path)
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # inside the tensor data: sizes and header still check out
    weights.write_bytes(bytes(data))
    assert fake.hf_path(tmp_path) == out and len(conversions) == 1  # every use: sizes and headers only
    fake.hf_path(tmp_path, verify=True)
    assert len(conversions) == 2 and weights.read_bytes() != bytes(data)


def test_a_folder_stamped_by_the_earlier_version_gets_the_new_stamp_without_converting(fake, tmp_path, conversions):
    out = fake.hf_path(tmp_path)
    files = folder_bytes(out)
    (out / STAMP).write_text(json.dumps({"gguf_sha256": fake.gguf_sha256, "name": fake.name}, indent=1))
    assert fake.hf_path(tmp_path) == out and len(conversions) == 1
    assert folder_bytes(out) == files  # the same stamp as a conversion writes


def test_what_a_killed_conversion_left_is_removed(fake, tmp_path, conversions):
    models = tmp_path / "models"
    models.mkdir()
    for stale in (".tiny-test-model-hf-float32.x1y2.tmp", "tiny-test-model-hf-float32.tmp999"):
        (models / stale).mkdir()
        (models / stale / "model.safetensors").write_bytes(b"\0" * 4096)
    fake.hf_path(tmp_path)
    assert _models(tmp_path) == [
        "tiny-test-model-hf-float32",
        "tiny-test-model-hf-float32.lock",
        "tiny-test-model.gguf",
        "tiny-test-model.gguf.lock",
    ]


def test_too_little_free_space_is_refused_before_loading_the_gguf(fake, tmp_path, monkeypatch, conversions):
    monkeypatch.setattr(cache, "_free_bytes", lambda folder: 1000)
    with pytest.raises(CacheWriteError, match=r"converting Tiny test model needs about 0.07 GB free in .*0.00 GB"):
        fake.hf_path(tmp_path)
    assert conversions == [] and not (tmp_path / "models" / "tiny-test-model.gguf").exists()


def test_a_full_disk_during_the_conversion_leaves_no_partial_folder(fake, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    def save_then_fill_the_disk(self, folder, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"\0" * 1000)  # part of the weights
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(PreTrainedModel, "save_pretrained", save_then_fill_the_disk)
        with pytest.raises(CacheWriteError, match=r"cannot write .*tiny-test-model-hf-float32: no space left"):
            fake.hf_path(tmp_path)
    assert _models(tmp_path) == ["tiny-test-model-hf-float32.lock", "tiny-test-model.gguf", "tiny-test-model.gguf.lock"]
    out = fake.hf_path(tmp_path)  # space again: converted in full
    assert (out / STAMP).is_file()


# -- the command line ------------------------------------------------------------------------------


def test_models_prepare_prints_the_converted_folders(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bundled, "PAIR", BundledPair(fake, fake, "tiny", 32))
    assert main(["models", "prepare", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"Tiny test model: {tmp_path / 'models' / 'tiny-test-model-hf-float32'}"] * 2


def test_models_prepare_on_a_full_disk_prints_one_line_and_exits_1(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bundled, "PAIR", BundledPair(fake, fake, "tiny", 32))
    monkeypatch.setattr(cache, "_free_bytes", lambda folder: 1000)
    assert main(["models", "prepare", "--cache", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("multidraft models prepare: error: converting Tiny test model needs about")
    assert err.count("\n") == 1


def test_models_requirements_prints_the_pinned_lines(capsys):
    assert main(["models", "requirements"]) == 0
    assert capsys.readouterr().out.splitlines() == list(bundled.MODEL_REQUIREMENTS)


# -- two first runs at once ------------------------------------------------------------------------

_RACER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from tests.support.fake_pair import spec_from_json
    from multidraft.models.bundled import ModelSpec

    spec = spec_from_json(Path(sys.argv[1]).read_text())
    cache, barrier, log = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    convert = ModelSpec._convert

    def counted(self, gguf, out):
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\\n")
        time.sleep(2.0)  # long enough for the other process to arrive while this one converts
        convert(self, gguf, out)

    ModelSpec._convert = counted
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 2:
        time.sleep(0.01)
    print(spec.hf_path(cache))
    """
)


def test_two_first_runs_at_once_both_finish_with_one_conversion_and_the_bytes_of_a_single_run(fake, tmp_path):
    spec_file, barrier, log = tmp_path / "spec.json", tmp_path / "barrier", tmp_path / "conversions.log"
    spec_file.write_text(spec_json(fake))
    barrier.mkdir()
    site = tmp_path / "fake" / "site"
    env = child_env(site)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(spec_file), str(tmp_path / "shared"), str(barrier), str(log)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=300) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err[-2000:] for _, err in outputs]
    assert len(log.read_text().split()) == 1  # one conversion
    shared = tmp_path / "shared" / "models" / "tiny-test-model-hf-float32"
    assert [out.strip() for out, _ in outputs] == [str(shared)] * 2
    assert (
        sum("waiting for another multidraft process to finish converting Tiny test model" in err for _, err in outputs)
        == 1
    )
    single = fake.hf_path(tmp_path / "single")
    assert folder_bytes(shared) == folder_bytes(single)
    assert (tmp_path / "shared/models/tiny-test-model.gguf").read_bytes() == fake.gguf_path(
        tmp_path / "single"
    ).read_bytes()
    assert _models(tmp_path / "shared") == _models(tmp_path / "single")  # no temporaries left
