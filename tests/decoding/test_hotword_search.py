"""Modified beam search with hotwords and n-best lists, against the exhaustive sum over
alignments (tests/decoding/test_search.py) plus a brute-force count of completed phrases."""

import pytest

from asr_recipes.decoding import DecodingOptions, decode, make_search
from tests.numerics import float32_sum_tol
from tests.decoding.test_search import advance_in_chunks, encoder_batch, exhaustive_sequence_scores, make_model


def completed_bonus(phrases, y):
    """B(y): pot(p) for every occurrence of every phrase p (token tuples) in y, where
    pot(p) sums, over p's prefixes, the largest score of the phrases sharing that prefix."""
    def w(prefix):
        return max(s for p, s in phrases if p[: len(prefix)] == prefix)

    def pot(p):
        return sum(w(p[: i + 1]) for i in range(len(p)))

    return sum(pot(p) for p, _ in phrases for i in range(len(y) - len(p) + 1) if y[i : i + len(p)] == p)


@pytest.mark.parametrize("max_sym", [1, 2])
def test_unpruned_search_adds_the_bonus_of_completed_phrases_only(max_sym):
    model = make_model(vocab_size=4, blank_bias=0.0, unk_bias=1.0)  # blank, unk, symbols 2 and 3
    enc, lens = encoder_batch([3, 2], seed=5)
    phrases = (((2, 3), 1.5), ((3, 3, 2), 0.7), ((3,), 0.2))  # overlapping, and a 1-token phrase
    options = DecodingOptions("modified_beam_search", beam=10_000, max_sym_per_frame=max_sym, hotwords=phrases)
    results = decode(model, enc, lens, options)
    for n, T in enumerate(lens.tolist()):
        expected = exhaustive_sequence_scores(model, enc[n, :T], max_sym, forced_advance=True)
        got = {h.tokens: h for h in results[n].hyps}
        assert got.keys() == expected.keys()
        for seq, log_prob in expected.items():
            bonus = completed_bonus(phrases, seq)
            assert got[seq].hotword_bonus == pytest.approx(bonus, abs=1e-6), seq
            assert got[seq].score == pytest.approx(log_prob + bonus, abs=1e-4), seq
            assert got[seq].log_prob == pytest.approx(log_prob, abs=1e-4), seq
        per_symbol = [h.score / (len(h.tokens) + 2) for h in results[n].hyps]  # icefall's ranking, context 2
        assert per_symbol == sorted(per_symbol, reverse=True)
    # the case is not trivial: some sequences complete phrases, some only start one (2 alone)
    assert any(h.hotword_bonus > 0 for r in results for h in r.hyps)
    assert any(h.tokens[-1:] == (2,) and h.hotword_bonus == 0 for r in results for h in r.hyps)


def test_nbest_list_is_the_best_n_of_the_exhaustive_ranking():
    """Ranked as icefall and sherpa-onnx pick their result: log-probability per symbol,
    total / (tokens + context_size)."""
    model = make_model(vocab_size=4, blank_bias=0.0, unk_bias=1.0)
    enc, lens = encoder_batch([3], seed=9)
    options = DecodingOptions("modified_beam_search", beam=10_000, max_sym_per_frame=2, nbest=5)
    expected = exhaustive_sequence_scores(model, enc[0, :3], 2, forced_advance=True)
    best = sorted(expected.items(), key=lambda kv: kv[1] / (len(kv[0]) + 2), reverse=True)[:5]
    got = decode(model, enc, lens, options)[0].hyps[: options.nbest]
    assert [h.tokens for h in got] == [seq for seq, _ in best]
    assert [h.score for h in got] == pytest.approx([s for _, s in best], abs=1e-4)


def test_a_hotword_wins_the_pruned_beam_and_a_zero_score_changes_nothing():
    model = make_model()
    enc, lens = encoder_batch([12, 9], seed=3)
    plain = decode(model, enc, lens, DecodingOptions("modified_beam_search", beam=4, max_sym_per_frame=2))
    # a phrase the plain search does not output: the first pair of tokens no hypothesis has
    target = next((a, b) for a in range(2, 12) for b in range(2, 12) if a != b and not any(
        (a, b) == h.tokens[i : i + 2] for r in plain for h in r.hyps for i in range(len(h.tokens))))
    assert not any(target == r.tokens[i : i + 2] for r in plain for i in range(len(r.tokens)))
    zero = decode(model, enc, lens, DecodingOptions("modified_beam_search", beam=4, max_sym_per_frame=2,
                                                    hotwords=((target, 0.0),)))
    assert [[(h.tokens, h.timestamps) for h in r.hyps] for r in zero] == [
        [(h.tokens, h.timestamps) for h in r.hyps] for r in plain]
    assert [h.score for r in zero for h in r.hyps] == pytest.approx([h.score for r in plain for h in r.hyps])
    biased = decode(model, enc, lens, DecodingOptions("modified_beam_search", beam=4, max_sym_per_frame=2,
                                                      hotwords=((target, 8.0),)))
    for r in biased:
        best = tuple(r.tokens)
        assert any(best[i : i + 2] == target for i in range(len(best)))
        assert r.hyps[0].hotword_bonus == pytest.approx(16.0 * sum(
            best[i : i + 2] == target for i in range(len(best))))


@pytest.mark.parametrize("hotwords", [((5, 7), (7,), (3, 4, 5))])
def test_hotwords_over_chunks_equal_hotwords_over_whole_utterances(hotwords):
    model = make_model()
    enc, lens = encoder_batch([23, 17, 9], seed=8)
    options = DecodingOptions("modified_beam_search", beam=3, max_sym_per_frame=2,
                              hotwords=tuple((p, 2.0) for p in hotwords), nbest=3)
    whole = decode(model, enc, lens, options)
    search = make_search(model, options)
    streams = search.start(3)
    for ids, _ in advance_in_chunks(search, streams, enc, lens):
        search.results([streams[n] for n in ids])  # partial results must not disturb the states
    assert any(h.hotword_bonus > 0 for r in whole for h in r.hyps)
    for got, want, T in zip(search.results(streams), whole, lens.tolist()):
        # tokens and times exact; scores are float32 sums over T frames x (max_sym + 1) steps whose
        # joiner batches differ between chunked and whole runs, so they agree to rounding only
        assert [(h.tokens, h.timestamps) for h in got.hyps] == [(h.tokens, h.timestamps) for h in want.hyps]
        for g, w in zip(got.hyps, want.hyps):
            assert g.score == pytest.approx(w.score, abs=float32_sum_tol(w.score, T * 3))
        assert [h.hotword_bonus for h in got.hyps] == pytest.approx([h.hotword_bonus for h in want.hyps])


def test_hotwords_and_nbest_are_refused_where_they_cannot_apply():
    model = make_model()
    with pytest.raises(ValueError, match="greedy_search does not use hotwords.*modified_beam_search"):
        make_search(model, DecodingOptions("greedy_search", hotwords=(((2, 3), 1.0),)))
    with pytest.raises(ValueError, match="beam_search does not use hotwords"):
        make_search(model, DecodingOptions("beam_search", hotwords=(((2, 3), 1.0),)))
    with pytest.raises(ValueError, match="no n-best list"):
        make_search(model, DecodingOptions("greedy_search", nbest=2))
    with pytest.raises(ValueError, match="raise beam"):
        DecodingOptions("modified_beam_search", beam=2, nbest=3)
    a = DecodingOptions("modified_beam_search", hotwords=[([2, 3], 1.0)])
    b = DecodingOptions("modified_beam_search", hotwords=(((2, 3), 1.5),))
    assert a.hotwords == (((2, 3), 1.0),)  # lists become tuples: hashable, one canonical form
    assert a.settings_key(True).startswith("beam-4-max-sym-per-frame-1-hotwords-")
    assert a.settings_key(True) != b.settings_key(True)  # another score is another result
    assert DecodingOptions("modified_beam_search", nbest=4).settings_key(True) == "beam-4-max-sym-per-frame-1-nbest-4"
