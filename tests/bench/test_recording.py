"""Recording distributions: truncation keeps exact masses, files round-trip, the laws are the models'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multidraft.bench.recording import Recording, record, truncate
from multidraft.sampling_options import probabilities
from tests.support.models import tiny_llama


def test_truncate_keeps_top_tokens_and_exact_tails():
    generator = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(5, 50, generator=generator, dtype=torch.float64) * 2, -1)
    q = torch.softmax(torch.randn(5, 50, generator=generator, dtype=torch.float64) * 2, -1)
    ids, p_top, q_top, p_tail, q_tail = truncate(p, q, 10)
    assert ids.shape == (5, 10)
    np.testing.assert_allclose((p_top.sum(-1) + p_tail).numpy(), 1, atol=1e-15)
    np.testing.assert_allclose((q_top.sum(-1) + q_tail).numpy(), 1, atol=1e-15)
    dropped = torch.ones_like(p, dtype=torch.bool).scatter(-1, ids, False)
    assert bool(((p + q)[dropped].reshape(5, -1).max(-1).values <= (p_top + q_top).min(-1).values).all())


def test_record_stores_the_models_processed_laws(tmp_path):
    target, draft = tiny_llama(1, vocab=16), tiny_llama(2, vocab=16)
    prompts = [torch.tensor([1, 2, 3]), torch.tensor([4, 5])]
    recording = record(
        target,
        draft,
        prompts,
        temperature=0.7,
        top_k=None,
        top_p=0.9,
        new_tokens=4,
        top_n=16,
        seed=0,
        header={"target": "t", "draft": "d"},
    )
    assert len(recording) == 8 and recording.header["temperature"] == 0.7
    assert (recording.prompt_index == np.repeat([0, 1], 4)).all()
    # The stored rows are the laws of the models at those positions (top_n = V: nothing dropped).
    ids = recording.token_ids[0]
    with torch.no_grad():
        expected = probabilities(target(prompts[0][None]).logits[0, -1].double(), 0.7, None, 0.9).numpy()
    np.testing.assert_allclose(recording.p[0], expected[ids], atol=1e-6)  # float32 models, other lengths
    assert np.all(recording.p_tail == 0)

    # Each prompt's mean agreement on its own last tokens (all but its first: fewer than PROMPT_POSITIONS).
    with torch.no_grad():
        agreements = []
        for prompt in prompts:
            p_rows, q_rows = (
                probabilities(model(prompt[None]).logits[0, :-1].double(), 0.7, None, 0.9) for model in (target, draft)
            )
            agreements.append(float(torch.minimum(p_rows, q_rows).sum(-1).mean()))
    np.testing.assert_allclose(recording.prompt_agreement, agreements, atol=1e-6)

    path = tmp_path / "rec.npz"
    recording.save(path)
    loaded = Recording.load(path)
    assert loaded.header == recording.header
    np.testing.assert_array_equal(loaded.q, recording.q)
    np.testing.assert_array_equal(loaded.prompt_agreement, recording.prompt_agreement)
    p, q = loaded.pair(3)
    assert p.shape == (17,) and abs(p.sum() - 1) < 1e-12 and abs(q.sum() - 1) < 1e-12


def test_categories_of_positions_come_from_the_header():
    recording = Recording(
        header={"categories": ["code", "chat"]},
        token_ids=np.zeros((3, 1), np.int64),
        p=np.ones((3, 1)),
        q=np.ones((3, 1)),
        p_tail=np.zeros(3),
        q_tail=np.zeros(3),
        prompt_index=np.array([1, 0, 1]),
    )
    assert list(recording.categories()) == ["chat", "code", "chat"]
    recording.header = {"prompts": ["webtext/wikipedia-web/A", "chat/mt-bench/81"]}  # older files
    assert list(recording.categories()) == ["chat", "webtext", "chat"]
    recording.header = {}
    with pytest.raises(ValueError, match="no prompt categories"):
        recording.categories()


def _small_recording(categories, prompt_index, temperature=0.6, new_tokens=2, start=0.0):
    positions = len(prompt_index)
    return Recording(
        header={"temperature": temperature, "top_n": 1, "categories": categories, "new_tokens": new_tokens},
        token_ids=np.arange(positions, dtype=np.int64)[:, None],
        p=np.full((positions, 1), 0.5) + start,
        q=np.full((positions, 1), 0.25),
        p_tail=np.full(positions, 0.5) - start,
        q_tail=np.full(positions, 0.75),
        prompt_index=np.asarray(prompt_index, np.int64),
        prompt_agreement=np.linspace(0.1, 0.2, len(categories)) + start,
    )


def test_join_concatenates_positions_and_shifts_prompts():
    first = _small_recording(["code", "chat"], [0, 0, 1, 1])
    second = _small_recording(["summarization"], [0, 0, 0], new_tokens=3, start=0.125)
    joined = Recording.join([first, second])
    assert joined.prompt_index.tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert list(joined.categories()) == ["code", "code", "chat", "chat", *["summarization"] * 3]
    np.testing.assert_array_equal(joined.p[4:], second.p)
    np.testing.assert_array_equal(joined.q_tail[:4], first.q_tail)
    np.testing.assert_array_equal(joined.prompt_agreement, np.concatenate([first.prompt_agreement, [0.225]]))
    assert [part["new_tokens"] for part in joined.header["parts"]] == [2, 3]
    assert [part["prompts"] for part in joined.header["parts"]] == [2, 1]
    assert joined.header["temperature"] == 0.6


def test_join_refuses_recordings_made_differently():
    with pytest.raises(ValueError, match="differs from recording 0 in temperature"):
        Recording.join([_small_recording(["code"], [0]), _small_recording(["code"], [0], temperature=1.0)])
    with pytest.raises(ValueError, match="at least one"):
        Recording.join([])


def test_the_draft_is_read_as_the_decoder_reads_it():
    """Prompt in one forward, then one token per forward: the same logits as one forward for a float model."""
    from multidraft.runners import TorchRunner, read_as_decoder

    model = tiny_llama(3, vocab=16)
    sequence = torch.tensor([1, 2, 3, 4, 5, 6, 7])
    with torch.no_grad():
        rows = read_as_decoder(TorchRunner(model), sequence, 3)
        whole = model(sequence[None]).logits[0, 2:-1]
    assert rows.shape == (4, 16)
    torch.testing.assert_close(rows, whole, rtol=0, atol=1e-5)
    with torch.no_grad():
        back = read_as_decoder(TorchRunner(model), sequence, 3, back=2)  # and the prompt's last two rows before
    torch.testing.assert_close(back, model(sequence[None]).logits[0, :-1], rtol=0, atol=1e-5)


def test_bad_recording_paths_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Recording.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a multidraft recording"):
        Recording.load(tmp_path / "other.npz")
