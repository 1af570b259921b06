"""The LM stages end to end on the tiny corpus: synthesize_text, train_lm, token_bigram,
export_lm, and decode with shallow fusion + LODR and with rescoring (results-file keys name the
LM and its scales); the LM's training text never holds a dev or test sentence."""

import math

import pytest

from asr_recipes.data.tokenizer import load_tokenizer, read_manifest_texts
from asr_recipes.checkpoint.lm import load_lm_checkpoint
from asr_recipes.decoding.options import file_digest
from asr_recipes.training.lm_trainer import prepare_text
from tests.bin.test_decode import decode_args
from tests.bin.test_decode_extras import read_nbest
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import lower_blank_logit, trained_exp

MBS = "modified_beam_search"
TINY_LM = ("lm_model.embedding_dim=16", "lm_model.hidden_dim=16", "lm_model.num_layers=1", "lm_model.dropout=0.0")


def supervisions(corpus, part):
    return str(corpus.manifests / f"librispeech_supervisions_{part}.jsonl.gz")


def generated_text(tmp_path, count=300):
    """The tiny corpus' generator text (commands, seed 0: the corpus' own seed), as egs/mini's stage 0 writes it."""
    path = tmp_path / "lm-text.txt"
    run_entry("asr_recipes.bin.synthesize_text", f"out={path}", "task=commands", f"count={count}", "seed=0")
    return path


def test_training_text_excludes_dev_and_test_sentences(tiny_corpus, tmp_path):
    tokenizer = load_tokenizer(tiny_corpus.lang)
    test = supervisions(tiny_corpus, "test-clean")
    text = generated_text(tmp_path, 200)
    assert len(text.read_text().splitlines()) == 200
    cfg = {"text": {"manifests": [supervisions(tiny_corpus, "train-clean-100"), test],  # test given on purpose
                    "files": [str(text)]},
           "dev": {"manifests": [supervisions(tiny_corpus, "dev-clean")]}, "exclude_manifests": [test],
           "max_sentence_tokens": 200, "token_cache": str(tmp_path / "cache")}
    train, dev = prepare_text(cfg, tokenizer)
    trained = set(tokenizer.decode([list(s) for s in train]))
    held_out = {tokenizer.normalize(t) for t in read_manifest_texts(test)}
    held_out |= set(tokenizer.decode([list(s) for s in dev]))
    assert len(train) > 200 and len(dev) > 0
    assert not trained & held_out
    # the generator text alone holds none of the corpus' dev or test sentences: nothing to exclude
    for part in ("dev-clean", "test-clean"):
        assert not normalized(text.read_text().splitlines(), tokenizer) & normalized(
            read_manifest_texts(supervisions(tiny_corpus, part)), tokenizer)


def normalized(texts, tokenizer):
    return {tokenizer.normalize(t) for t in texts}


def test_lm_stages_and_decoding_with_the_lm(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    lm_dir = tmp_path / "exp_lm"
    run_entry("asr_recipes.bin.train_lm", f"lm_dir={lm_dir}", f"tokenizer_dir={tiny_corpus.lang}",
              f"text.manifests=[{supervisions(tiny_corpus, 'train-clean-100')}]",
              f"text.files=[{generated_text(tmp_path)}]",
              f"dev.manifests=[{supervisions(tiny_corpus, 'dev-clean')}]",
              f"exclude_manifests=[{supervisions(tiny_corpus, 'test-clean')}]", *TINY_LM, "trainer.num_epochs=1")
    ckpt = load_lm_checkpoint(lm_dir / "epoch-1.pt")
    assert math.isfinite(ckpt["valid"]["perplexity"]) and ckpt["valid"]["perplexity"] > 1.0
    bigram = tmp_path / "bigram.json"
    run_entry("asr_recipes.bin.token_bigram", f"tokenizer_dir={tiny_corpus.lang}",
              f"manifests=[{supervisions(tiny_corpus, 'train-clean-100')}]", f"out={bigram}")
    run_entry("asr_recipes.bin.export_lm", f"lm={lm_dir / 'epoch-1.pt'}", f"out_dir={tmp_path / 'lm_onnx'}",
              f"bigram={bigram}")
    assert sorted(p.name for p in (tmp_path / "lm_onnx").iterdir()) == [
        "lm-export.json", "lm-no-state.onnx", "lm-with-state.onnx", "lodr-2gram.fst"]

    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    lower_blank_logit(exp)
    lm = f"lm={lm_dir / 'epoch-1.pt'}"
    fusion = (lm, "lm_scale=0.3", f"lodr_bigram={bigram}", "lodr_scale=0.1")
    capsys.readouterr()
    for extra in ((), ("lm_rescore=true",)):
        run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", f"methods=[{MBS}]", "beam=4",
                                                         "nbest=2", *fusion, *extra))
    out = capsys.readouterr().out
    key = (f"epoch-3-avg-1-use-averaged-model-beam-4-max-sym-per-frame-1-nbest-2"
           f"-lm-{file_digest(str(lm_dir / 'epoch-1.pt'))}-scale-0.3-lodr-{file_digest(str(bigram))}-scale-0.1")
    for suffix in ("", "-rescore"):
        assert (exp / MBS / f"recogs-test-clean-{key}{suffix}.txt").is_file()
        # the n-best file's lm_score: the LM's share of each score (no hotwords: the rest is log_prob)
        rows = read_nbest(exp / MBS / f"nbest-test-clean-{key}{suffix}.txt")
        assert all(r[6] != 0 and r[1] == pytest.approx(r[2] + r[6], abs=2e-4) for v in rows.values() for r in v)
    assert out.count(f"%WER test-clean {MBS}") == 2
    with pytest.raises(AssertionError, match="greedy_search does not use a language model"):
        run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", "methods=[greedy_search]", lm,
                                                         "lm_scale=0.3"))
