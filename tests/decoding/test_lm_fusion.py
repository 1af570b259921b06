"""Modified beam search with an RNN-LM and LODR against exhaustive enumeration: every token
sequence's score must be its transducer log-probability summed over all alignments, plus
lm_scale * log P_LM(y, end) - lodr_scale * log P_bigram(y, end), both computed here by
independent code (the LSTM equations in float64, the bigram formula from counts)."""

import math
import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from asr_recipes.decoding import DecodingOptions, decode, make_search
from asr_recipes.decoding.lm_fusion import check_vocabulary
from asr_recipes.lm.bigram import TokenBigram
from asr_recipes.checkpoint.lm import save_lm_checkpoint
from asr_recipes.lm.model import LmConfig, RnnLm
from tests.decoding.test_hotword_search import completed_bonus
from tests.decoding.test_search import advance_in_chunks, encoder_batch, exhaustive_sequence_scores, make_model
from tests.lm.test_model import lstm_reference
from tests.numerics import float32_sum_tol

BIGRAM_TEXT = [[2, 3], [3, 3, 2], [2], [3, 2, 3, 3], [2, 2]]  # some pairs seen once, some twice: Ney's D = 1/11


def write_lm(path, vocab_size, seed=0, scale=3.0):
    torch.manual_seed(seed)
    lm = RnnLm(vocab_size, LmConfig(embedding_dim=8, hidden_dim=8, num_layers=2, tie_weights=True)).eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(scale)  # a peaked LM, so that it matters
    save_lm_checkpoint(path, {"lm_config": lm.config.to_dict(), "vocab_size": vocab_size, "tokenizer": None,
                              "model": lm.state_dict()})
    return lm


def reference_bigram(sentences, V, seq):
    """log P(seq, end) under absolute discounting (D = n1 / (n1 + 2 n2)) interpolated with an
    add-one unigram, from the counts, written out here."""
    pairs = Counter(p for s in sentences for p in zip([0, *s], [*s, 0]))
    n1, n2 = sum(1 for n in pairs.values() if n == 1), sum(1 for n in pairs.values() if n == 2)
    D = n1 / (n1 + 2 * n2)
    unigram = Counter()
    for (_, k), n in pairs.items():
        unigram[k] += n
    N = sum(unigram.values())

    def p(k, c):
        n_c = sum(n for (a, _), n in pairs.items() if a == c)
        uni = (unigram[k] + 1) / (N + V)
        if n_c == 0:
            return uni
        types = sum(1 for (a, _) in pairs if a == c)
        return max(pairs[(c, k)] - D, 0) / n_c + D * types / n_c * uni

    return sum(math.log(p(k, c)) for c, k in zip([0, *seq], [*seq, 0]))


@pytest.fixture
def lm_files(tmp_path):
    lm = write_lm(tmp_path / "lm.pt", vocab_size=4)
    bigram = TokenBigram.estimate(BIGRAM_TEXT, vocab_size=4)
    bigram.save(tmp_path / "bigram.json")
    return lm, str(tmp_path / "lm.pt"), str(tmp_path / "bigram.json")


@pytest.mark.parametrize("max_sym", [1, 2])
@pytest.mark.parametrize("rescore", [False, True])
def test_unpruned_search_adds_the_scaled_lm_minus_the_scaled_bigram(lm_files, max_sym, rescore):
    lm, lm_path, bigram_path = lm_files
    model = make_model(vocab_size=4, blank_bias=0.0, unk_bias=1.0)  # blank, unk, symbols 2 and 3
    enc, lens = encoder_batch([3, 2], seed=5)
    phrases = (((2, 3), 1.5),)
    options = DecodingOptions("modified_beam_search", beam=10_000, max_sym_per_frame=max_sym, hotwords=phrases,
                              lm=lm_path, lm_scale=0.7, lodr_bigram=bigram_path, lodr_scale=0.4, lm_rescore=rescore)
    results = decode(model, enc, lens, options)
    for n, T in enumerate(lens.tolist()):
        expected = exhaustive_sequence_scores(model, enc[n, :T], max_sym, forced_advance=True)
        got = {h.tokens: h for h in results[n].hyps}
        assert got.keys() == expected.keys()
        for seq, log_prob in expected.items():
            fused = 0.7 * lstm_reference(lm, list(seq)) - 0.4 * reference_bigram(BIGRAM_TEXT, 4, seq)
            bonus = completed_bonus(phrases, seq)
            # the LM in float32 against the float64 equations: each term a sum over ~16 products
            lm_tol = float32_sum_tol(fused, 16 * (len(seq) + 1))
            assert got[seq].lm_score == pytest.approx(fused, abs=lm_tol), seq
            assert got[seq].hotword_bonus == pytest.approx(bonus, abs=1e-6), seq
            assert got[seq].log_prob == pytest.approx(log_prob, abs=1e-4), seq
            assert got[seq].score == pytest.approx(log_prob + fused + bonus, abs=1e-4 + lm_tol), seq
        per_symbol = [h.score / (len(h.tokens) + 2) for h in results[n].hyps]
        assert per_symbol == sorted(per_symbol, reverse=True)


def test_fusion_ranks_candidates_with_their_lm_term_and_changes_the_result(tmp_path):
    """With a pruned beam the LM decides which hypotheses survive: a strong LM that prefers
    one token makes it win where the transducer alone picks others."""
    model = make_model()  # vocab 12
    enc, lens = encoder_batch([12, 9], seed=3)
    plain = decode(model, enc, lens, DecodingOptions("modified_beam_search", beam=4))
    counts = Counter(k for r in plain for k in r.tokens)
    favourite = next(k for k in range(2, 12) if counts[k] == 0)  # a token the plain search never outputs
    lm = RnnLm(12, LmConfig(embedding_dim=4, hidden_dim=4, num_layers=1, tie_weights=False)).eval()
    with torch.no_grad():  # zero LSTM weights: a unigram LM that strongly prefers `favourite`
        for p in lm.parameters():
            p.zero_()
        lm.output.bias[favourite] = 8.0
    save_lm_checkpoint(tmp_path / "lm.pt", {"lm_config": lm.config.to_dict(), "vocab_size": 12, "tokenizer": None,
                                            "model": lm.state_dict()})
    zero = decode(model, enc, lens, DecodingOptions("modified_beam_search", beam=4, lm=str(tmp_path / "lm.pt")))
    assert [r.tokens for r in zero] == [r.tokens for r in plain]  # lm_scale 0 changes nothing
    fused = decode(model, enc, lens, DecodingOptions("modified_beam_search", beam=4, lm=str(tmp_path / "lm.pt"),
                                                     lm_scale=1.0))
    assert all(favourite in r.tokens for r in fused)


def test_lm_state_over_chunks_equals_the_whole_utterance_search(tmp_path):
    write_lm(tmp_path / "lm.pt", vocab_size=12, seed=3, scale=2.0)
    TokenBigram.estimate([[2, 5, 7], [7, 7, 3], [4, 5]], vocab_size=12).save(tmp_path / "bigram.json")
    model = make_model()
    enc, lens = encoder_batch([23, 17, 9], seed=8)
    options = DecodingOptions("modified_beam_search", beam=3, max_sym_per_frame=2, nbest=3,
                              lm=str(tmp_path / "lm.pt"), lm_scale=0.5, lodr_bigram=str(tmp_path / "bigram.json"),
                              lodr_scale=0.3, hotwords=(((5, 7), 2.0),))
    whole = decode(model, enc, lens, options)
    search = make_search(model, options)
    streams = search.start(3)
    for ids, _ in advance_in_chunks(search, streams, enc, lens):
        search.results([streams[n] for n in ids])  # partial results must not disturb the states
    assert any(h.lm_score != 0 for r in whole for h in r.hyps)
    for got, want, T in zip(search.results(streams), whole, lens.tolist()):
        assert [(h.tokens, h.timestamps) for h in got.hyps] == [(h.tokens, h.timestamps) for h in want.hyps]
        # joiner and LSTM ran on other batch compositions: float32 sums over T x 3 joiner steps
        # and, per token, an LSTM step of ~16 products agree to rounding only
        for g, w in zip(got.hyps, want.hyps):
            lm_terms = 16 * (len(w.tokens) + 1)
            assert g.lm_score == pytest.approx(w.lm_score, abs=float32_sum_tol(w.lm_score, lm_terms))
            assert g.score == pytest.approx(w.score, abs=float32_sum_tol(w.score, T * 3 + lm_terms))


def test_lm_options_are_validated_and_refused_where_they_cannot_apply(lm_files, tmp_path):
    _, lm_path, bigram_path = lm_files
    model = make_model(vocab_size=4)
    with pytest.raises(ValueError, match="greedy_search does not use a language model.*modified_beam_search"):
        make_search(model, DecodingOptions("greedy_search", lm=lm_path, lm_scale=0.3))
    with pytest.raises(ValueError, match="lm_scale=0.3 needs an LM"):
        DecodingOptions("modified_beam_search", lm_scale=0.3)
    with pytest.raises(ValueError, match="lodr_scale=0.2 needs lodr_bigram"):
        DecodingOptions("modified_beam_search", lm=lm_path, lodr_scale=0.2)
    with pytest.raises(ValueError, match="the LM has 4 tokens but the transducer 12"):
        make_search(make_model(vocab_size=12), DecodingOptions("modified_beam_search", lm=lm_path, lm_scale=0.3))
    with pytest.raises(ValueError, match="is not an LM checkpoint"):
        torch.save({"format": "asr-recipes/1"}, tmp_path / "asr.pt")
        make_search(model, DecodingOptions("modified_beam_search", lm=str(tmp_path / "asr.pt")))
    a = DecodingOptions("modified_beam_search", lm=lm_path, lm_scale=0.3, lodr_bigram=bigram_path, lodr_scale=0.2)
    b = DecodingOptions("modified_beam_search", lm=lm_path, lm_scale=0.3, lm_rescore=True)
    key_a, key_b = a.settings_key(True), b.settings_key(True)
    assert "-lm-" in key_a and "-scale-0.3-lodr-" in key_a and key_a.endswith("-scale-0.2")
    assert key_b.endswith("-scale-0.3-rescore")


def test_the_lm_file_is_read_once_for_the_check_and_the_searches(lm_files, monkeypatch):
    """decode checks the LM's vocabulary, then builds its searches: one read of the file (a
    100M-parameter LM is 400 MB); a changed file is read again."""
    _, lm_path, _ = lm_files
    reads = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    options = DecodingOptions("modified_beam_search", beam=2, lm=lm_path, lm_scale=0.3)
    model = make_model(vocab_size=4)
    check_vocabulary(options, ["<blk>", "<unk>", "a", "b"])
    searches = [make_search(model, options) for _ in range(2)]
    assert reads == [lm_path]
    assert searches[0].fusion.lm is searches[1].fusion.lm
    write_lm(Path(lm_path), vocab_size=4, seed=1)  # new weights: a new file version
    os.utime(lm_path, ns=(10**18, 10**18))
    make_search(model, options)
    assert reads == [lm_path, lm_path]
