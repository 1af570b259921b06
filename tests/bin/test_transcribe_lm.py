"""bin.transcribe with a language model (--lm, --lm-scale, --lodr-bigram, --lodr-scale,
--lm-rescore): the transcripts of decoding lhotse's own features of the same audio with the same
options, offline and, for a streaming model, chunk by chunk (the LM state carried across chunks)
against the whole file through the chunk mask; the LM changes what is recognized."""

import pytest
import torch
from lhotse import Recording, load_manifest

from asr_recipes.bin.transcribe import main
from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.checkpoint.lm import save_lm_checkpoint
from asr_recipes.data.features import fbank_extractor
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.decoding import DecodingOptions, decode
from asr_recipes.lm.model import LmConfig, RnnLm
from asr_recipes.training.lm_text import estimate_bigram
from tests.decoding.trained_exp import lower_blank_logit, trained_exp

MBS = "modified_beam_search"
FILES = ["3001-300101-0000", "3005-300501-0001", "3003-300301-0000", "3002-300201-0001"]


def write_lm(path, tokenizer, seed=0):
    """A random LM with sharp predictions over the model's tokenizer (so that it changes results)."""
    torch.manual_seed(seed)
    lm = RnnLm(tokenizer.vocab_size, LmConfig(embedding_dim=16, hidden_dim=16, num_layers=1)).eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(4.0)
    save_lm_checkpoint(path, {"lm_config": lm.config.to_dict(), "vocab_size": tokenizer.vocab_size,
                              "tokenizer": tokenizer.to_dict(), "model": lm.state_dict()})
    return str(path)


@pytest.fixture
def lm_files(tiny_corpus, tmp_path):
    tokenizer = load_tokenizer(tiny_corpus.lang)
    bigram = tmp_path / "bigram.json"
    estimate_bigram([str(tiny_corpus.manifests / "librispeech_supervisions_train-clean-100.jsonl.gz")],
                    tokenizer).save(bigram, tokenizer.tokens)
    return write_lm(tmp_path / "lm.pt", tokenizer), str(bigram)


def audio(tiny_corpus):
    recordings = load_manifest(tiny_corpus.manifests / "librispeech_recordings_test-clean.jsonl.gz")
    return [recordings[r].sources[0].source for r in FILES]


def reference(ckpt, path, options, chunk=()) -> str:
    """decode() on lhotse's features of the file (as the fbank stage computes them)."""
    model, tokenizer = model_from_checkpoint(ckpt)
    feats = torch.from_numpy(Recording.from_file(path).to_cut().compute_features(fbank_extractor()))  # (T, 80)
    with torch.no_grad():
        enc, lens = model.encode(feats[None], torch.tensor([feats.size(0)]), *chunk)
    return tokenizer.decode([decode(model, enc, lens, options)[0].tokens])[0]


def transcripts(capsys) -> list[str]:
    return [line.split("\t", 1)[1] for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("rescore", [False, True])
def test_transcribe_with_an_lm_equals_decoding_with_the_same_options(tiny_corpus, tmp_path_factory, tmp_path,
                                                                     capsys, lm_files, rescore):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    lower_blank_logit(exp)
    checkpoint, files = str(exp / "epoch-3.pt"), audio(tiny_corpus)
    lm, bigram = lm_files
    options = DecodingOptions(MBS, beam=4, lm=lm, lm_scale=1.0, lodr_bigram=bigram, lodr_scale=0.3,
                              lm_rescore=rescore)
    flags = ["--method", MBS, "--beam", "4", "--lm", lm, "--lm-scale", "1.0", "--lodr-bigram", bigram,
             "--lodr-scale", "0.3", *(["--lm-rescore"] if rescore else []), "--device", "cpu", "--batch-size", "2"]
    assert main([checkpoint, *files, *flags]) == 0
    ckpt = load_checkpoint(checkpoint)
    want = [reference(ckpt, f, options) for f in files]
    assert transcripts(capsys) == want
    without = [reference(ckpt, f, DecodingOptions(MBS, beam=4)) for f in files]
    assert want != without  # the LM decides something


def test_streaming_transcribe_carries_the_lm_across_chunks(tiny_corpus, tmp_path_factory, tmp_path, capsys,
                                                           lm_files):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp", causal=True,
                      decoding={"chunk_size": 4, "left_context": 16, "max_sym_per_frame": 2})
    lower_blank_logit(exp, 3.0)
    checkpoint, files = str(exp / "epoch-3.pt"), audio(tiny_corpus)
    lm, bigram = lm_files
    options = DecodingOptions(MBS, beam=4, max_sym_per_frame=2, lm=lm, lm_scale=1.0, lodr_bigram=bigram,
                              lodr_scale=0.3)
    assert main([checkpoint, *files, "--streaming", "--method", MBS, "--beam", "4", "--lm", lm, "--lm-scale", "1.0",
                 "--lodr-bigram", bigram, "--lodr-scale", "0.3", "--device", "cpu"]) == 0
    ckpt = load_checkpoint(checkpoint)
    want = [reference(ckpt, f, options, chunk=(4, 16)) for f in files]
    assert transcripts(capsys) == want
    assert want != [reference(ckpt, f, DecodingOptions(MBS, beam=4, max_sym_per_frame=2), (4, 16)) for f in files]


def test_lm_flags_that_do_not_fit_exit_2(tiny_corpus, tmp_path_factory, tmp_path, capsys, lm_files):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    checkpoint, [flac, *_] = str(exp / "epoch-3.pt"), audio(tiny_corpus)
    lm, bigram = lm_files
    with pytest.raises(SystemExit) as e:
        main([checkpoint, flac, "--lm", lm])
    assert e.value.code == 2 and "--lm and --lm-scale go together" in capsys.readouterr().err
    assert main([checkpoint, flac, "--method", "greedy_search", "--lm", lm, "--lm-scale", "0.3"]) == 2
    assert "greedy_search does not use a language model" in capsys.readouterr().err
    other = load_tokenizer(tiny_corpus.lang).__class__.train(["XYZ"])  # another vocabulary
    foreign = write_lm(tmp_path / "foreign.pt", other)
    assert main([checkpoint, flac, "--method", MBS, "--lm", foreign, "--lm-scale", "0.3"]) == 2
    assert "foreign.pt was trained over another tokenizer" in capsys.readouterr().err
