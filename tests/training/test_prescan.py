"""OOM pre-scan: which batches it builds, that it runs a real step, and the advice it gives."""

import logging

import pytest
import torch
from lhotse import load_manifest

from asr_recipes.data.filters import cut_text
from asr_recipes.training.prescan import oom_prescan, pessimistic_batches
from tests.training.test_trainer import make_trainer


def test_pessimistic_batches_take_the_longest_and_the_most_tokens(tiny_corpus):
    from asr_recipes.data.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_corpus.lang)
    cuts = load_manifest(tiny_corpus.fbank / "librispeech_cuts_train-clean-100.jsonl.gz")
    batches = pessimistic_batches(cuts, max_duration=8.0, tokenizer=tok)
    by_duration = sorted(cuts, key=lambda c: c.duration, reverse=True)
    longest = batches["longest utterances"]
    assert longest[0].id == by_duration[0].id
    assert sum(c.duration for c in longest) <= 8.0 or len(longest) == 1
    n_tokens = {c.id: len(tok.encode([cut_text(c)])[0]) for c in cuts}
    assert n_tokens[batches["most tokens"][0].id] == max(n_tokens.values())


def test_prescan_runs_a_real_step_and_leaves_training_unchanged(tiny_corpus, tmp_path, caplog):
    trainer = make_trainer(tiny_corpus, tmp_path / "a", oom_prescan="on", max_steps=2)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with caplog.at_level(logging.INFO):
        trainer.prescan()
    assert "batch of the longest utterances fits" in caplog.text
    for k, v in before.items():  # weights and BatchNorm statistics alike
        assert torch.equal(trainer.model.state_dict()[k], v), k
    assert all(p.grad is None for p in trainer.model.parameters())
    trainer.fit()
    reference = make_trainer(tiny_corpus, tmp_path / "b", oom_prescan="off", max_steps=2)
    reference.fit()
    for (k, a), b in zip(trainer.model.state_dict().items(), reference.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_out_of_memory_becomes_advice(tiny_corpus):
    from asr_recipes.data.tokenizer import load_tokenizer

    # CUDA is not available here; the error translation is exercised with the exception type
    # torch raises on a real CUDA OOM.
    def step(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    cuts = load_manifest(tiny_corpus.fbank / "librispeech_cuts_train-clean-100.jsonl.gz")
    with pytest.raises(RuntimeError, match=r"Lower data.max_duration \(now 8; try 6\)"):
        oom_prescan(step, cuts, 8.0, load_tokenizer(tiny_corpus.lang), torch.device("cpu"))
