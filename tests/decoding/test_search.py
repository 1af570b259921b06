"""Search methods against references written here: a plain per-utterance greedy loop and
an exhaustive sum over all alignments (nothing pruned) on a tiny vocabulary."""

import itertools
import math

import pytest
import torch

from asr_recipes.decoding import DecodingOptions, decode, search_methods
from asr_recipes.models.build import build_transducer
from tests.numerics import float32_sum_tol

BLANK, UNK = 0, 1
TINY = dict(d_model=16, num_heads=2, ff_dim=32, num_layers=1, kernel_size=3, dropout=0.0, subsampling_channels=4,
            conv_norm="layer", decoder_dim=16, context_size=2, joiner_dim=16)


def make_model(vocab_size=12, context_size=2, blank_bias=1.0, unk_bias=0.0, seed=0):
    """Random weights, sharpened so that frames get 0, 1 or several symbols."""
    torch.manual_seed(seed)
    model = build_transducer({**TINY, "context_size": context_size}, vocab_size).eval()
    with torch.no_grad():
        model.joiner.output_linear.weight.mul_(4.0)
        model.joiner.output_linear.bias[BLANK] += blank_bias
        model.joiner.output_linear.bias[UNK] += unk_bias
    return model


def encoder_batch(lens, seed=1, dim=16):
    torch.manual_seed(seed)
    lens = torch.tensor(lens)
    enc = torch.randn(len(lens), int(lens.max()), dim)  # (N, T', D)
    enc[torch.arange(enc.size(1))[None, :] >= lens[:, None]] = 1e3  # padding must not matter
    return enc, lens


#: Frames per advance() call, per stream, for encoder_batch([23, 17, 9]): chunk ends differ
#: between streams, and streams 0 and 2 run out of chunks before stream 1 (later calls leave them out).
UNEVEN_CHUNKS = ([5, 1, 7, 10], [3, 3, 3, 3, 3, 2], [9])


def advance_in_chunks(search, streams, enc, lens, chunks=UNEVEN_CHUNKS):
    """Feeds encoder frames enc (N, T', D), lens (N,), to ``search.advance`` in ``chunks``
    (chunks[n]: frames of stream n per call; a stream whose list has ended is left out of later
    calls). Yields after each call (the ids of the streams it advanced, frames fed so far per
    stream), so that the caller can look at partial results before the next call."""
    assert [sum(c) for c in chunks] == lens.tolist()  # the chunks cover each utterance exactly
    pos = [0] * len(chunks)
    for step in range(max(map(len, chunks))):
        ids = [n for n in range(len(chunks)) if step < len(chunks[n])]
        sizes = [chunks[n][step] for n in ids]
        part = torch.zeros(len(ids), max(sizes), enc.size(2))  # (streams advanced, longest chunk, D)
        for a, (n, size) in enumerate(zip(ids, sizes)):
            part[a, :size] = enc[n, pos[n] : pos[n] + size]
            pos[n] += size
        search.advance([streams[n] for n in ids], part, torch.tensor(sizes))
        yield ids, list(pos)


def token_log_probs(model, frame, tokens, blank_penalty=0.0):
    """(V,) log-softmax of the joiner at one encoder frame (D,) after `tokens`, unprojected path."""
    c = model.decoder.context_size
    ctx = ([BLANK] * c + list(tokens))[-c:]
    dec = model.decoder(torch.tensor([ctx]), need_pad=False)[:, 0]  # (1, Dd)
    logits = model.joiner(frame[None], dec)[0]  # (V,)
    logits[BLANK] -= blank_penalty
    return logits.log_softmax(-1)


@torch.no_grad()
def reference_greedy(model, enc, T, max_sym, cap, blank_penalty=0.0, frames=None):
    """One utterance, frame by frame, symbol by symbol; <unk> ends the frame like blank.
    Appends the frame of each emitted token to `frames` if given."""
    tokens, score, per_frame = [], 0.0, []
    for t in range(T):
        emitted = 0
        while emitted < max_sym:
            lp = token_log_probs(model, enc[t], tokens, blank_penalty)
            if len(tokens) >= cap:
                lp[UNK + 1:] = -math.inf
            k = int(lp.argmax())
            score += float(lp[k])
            if k in (BLANK, UNK):
                break
            tokens.append(k)
            if frames is not None:
                frames.append(t)
            emitted += 1
        per_frame.append(emitted)
    return tokens, score, per_frame


@pytest.mark.parametrize("context_size,max_sym,max_utt", [(2, 1, None), (2, 3, None), (1, 2, None), (2, 3, 7)])
def test_batched_greedy_equals_per_utterance_greedy(context_size, max_sym, max_utt):
    model = make_model(context_size=context_size)
    enc, lens = encoder_batch([30, 25, 17, 9, 1])
    options = DecodingOptions("greedy_search", max_sym_per_frame=max_sym, max_sym_per_utt=max_utt)
    results = decode(model, enc, lens, options)
    per_frame_counts = []
    for n, T in enumerate(lens.tolist()):
        tokens, score, per_frame = reference_greedy(model, enc[n], T, max_sym, options.symbol_cap(T))
        assert results[n].tokens == tokens, n
        assert results[n].score == pytest.approx(score, abs=1e-3)
        per_frame_counts += per_frame
    # the case is not trivial: silent frames, and frames with several symbols when allowed
    assert 0 in per_frame_counts and 1 in per_frame_counts
    if max_sym > 1:
        assert max(per_frame_counts) > 1


@pytest.mark.parametrize("max_sym", [1, 2, 3])
def test_modified_beam_search_with_beam_1_equals_greedy(max_sym):
    model = make_model()
    enc, lens = encoder_batch([30, 25, 17, 9], seed=3)
    greedy = decode(model, enc, lens, DecodingOptions("greedy_search", max_sym_per_frame=max_sym))
    beam1 = decode(model, enc, lens, DecodingOptions("modified_beam_search", beam=1, max_sym_per_frame=max_sym))
    assert [r.tokens for r in beam1] == [r.tokens for r in greedy]
    assert [r.score for r in beam1] == pytest.approx([r.score for r in greedy], abs=1e-3)
    assert any(len(r.tokens) > 0 for r in greedy)


@torch.no_grad()
def exhaustive_sequence_scores(model, enc, max_sym, forced_advance, blank_penalty=0.0):
    """log P(sequence) summed over every alignment of the T frames of `enc` (T, D), the blank
    logit lowered by ``blank_penalty``.

    On each frame a path emits a string of 0..max_sym real symbols and then blank or <unk>
    (both end the frame silently), except (forced_advance) that a string of exactly max_sym
    symbols moves on without them."""
    V = model.joiner.output_linear.out_features
    symbols = [k for k in range(V) if k not in (BLANK, UNK)]
    paths = {(): 0.0}
    for t in range(enc.size(0)):
        nxt = {}
        for prefix, score in paths.items():
            for length in range(max_sym + 1):
                for string in itertools.product(symbols, repeat=length):
                    seq, s = prefix, score
                    for k in string:
                        s += float(token_log_probs(model, enc[t], seq, blank_penalty)[k])
                        seq = seq + (k,)
                    if not (forced_advance and length == max_sym):
                        s += float(token_log_probs(model, enc[t], seq, blank_penalty)[[BLANK, UNK]].logsumexp(0))
                    nxt[seq] = float(torch.logaddexp(torch.tensor(nxt.get(seq, -math.inf)), torch.tensor(s)))
        paths = nxt
    return paths


@pytest.mark.parametrize("method,forced_advance", [("modified_beam_search", True), ("beam_search", False)])
@pytest.mark.parametrize("max_sym", [1, 2])
def test_unpruned_beam_search_gives_every_sequence_its_total_probability(method, forced_advance, max_sym):
    model = make_model(vocab_size=4, blank_bias=0.0, unk_bias=1.0)  # blank, unk, 2 symbols
    enc, lens = encoder_batch([3, 2], seed=5)
    results = decode(model, enc, lens, DecodingOptions(method, beam=10_000, max_sym_per_frame=max_sym))
    for n, T in enumerate(lens.tolist()):
        expected = exhaustive_sequence_scores(model, enc[n, :T], max_sym, forced_advance)
        got = {h.tokens: h.score for h in results[n].hyps}
        assert got.keys() == expected.keys()
        for seq, score in expected.items():
            assert got[seq] == pytest.approx(score, abs=1e-4), seq
        total = math.log(sum(math.exp(s) for s in got.values()))
        if forced_advance:  # every path of the lattice ends in one of the sequences
            assert total == pytest.approx(0.0, abs=1e-4)
        else:  # paths that would emit more than max_sym symbols on a frame are missing
            assert total < -1e-3


@pytest.mark.parametrize("method", ["beam_search", "modified_beam_search"])
def test_beam_results_are_sorted_and_never_contain_blank_or_unk(method):
    model = make_model(unk_bias=1.0)  # <unk> often wins: it must end frames, never be emitted
    enc, lens = encoder_batch([20, 13, 6], seed=7)
    results = decode(model, enc, lens, DecodingOptions(method, beam=4, max_sym_per_frame=2))
    for r in results:
        scores = [h.score for h in r.hyps]
        per_symbol = [h.score / (len(h.tokens) + 2) for h in r.hyps]  # context_size 2: icefall's ranking
        assert 1 <= len(scores) <= 4 and per_symbol == sorted(per_symbol, reverse=True)
        assert len({h.tokens for h in r.hyps}) == len(r.hyps)
        assert all(k not in (BLANK, UNK) for h in r.hyps for k in h.tokens)
    assert any(r.tokens for r in results)


@pytest.mark.parametrize("method", ["greedy_search", "beam_search", "modified_beam_search"])
@pytest.mark.parametrize("max_sym,max_utt", [(1, None), (2, None), (2, 5)])
def test_symbol_caps_hold_for_a_model_that_never_predicts_blank(method, max_sym, max_utt):
    model = make_model(blank_bias=-1e4, unk_bias=-1e4)  # neither silent symbol ever wins
    enc, lens = encoder_batch([12, 7, 3], seed=2)
    options = DecodingOptions(method, beam=3, max_sym_per_frame=max_sym, max_sym_per_utt=max_utt)
    results = decode(model, enc, lens, options)
    for r, T in zip(results, lens.tolist()):
        cap = T * max_sym if max_utt is None else min(T * max_sym, max_utt)
        assert all(len(h.tokens) <= cap for h in r.hyps)
        if method != "beam_search":  # these leave a frame at the cap without a blank
            assert len(r.tokens) == cap


def test_projections_run_once_per_frame_and_per_new_context():
    model = make_model()
    enc, lens = encoder_batch([15, 9], seed=4)
    calls = {"enc": [], "dec": []}
    model.joiner.encoder_proj.register_forward_hook(lambda m, i, o: calls["enc"].append(i[0].shape))
    model.joiner.decoder_proj.register_forward_hook(lambda m, i, o: calls["dec"].append(i[0].reshape(-1, 16)))
    for method in ("beam_search", "modified_beam_search"):
        calls["enc"].clear(), calls["dec"].clear()
        decode(model, enc, lens, DecodingOptions(method, beam=4, max_sym_per_frame=2))
        assert calls["enc"] == [enc.shape]
        rows = torch.cat(calls["dec"])  # every decoder output projected, in order
        if method == "modified_beam_search":  # one cache for the batch: no row twice
            assert len(torch.unique(rows, dim=0)) == len(rows)
    calls["dec"].clear()
    greedy = decode(model, enc, lens, DecodingOptions("greedy_search", max_sym_per_frame=2))
    # the start context of each utterance, then one new context per emitted symbol
    assert len(torch.cat(calls["dec"])) == len(lens) + sum(len(r.tokens) for r in greedy)


def test_methods_and_options_are_validated():
    assert set(search_methods()) >= {"greedy_search", "beam_search", "modified_beam_search"}
    model = make_model()
    enc, lens = encoder_batch([4])
    with pytest.raises(ValueError, match="unknown decoding method 'beam'.*greedy_search"):
        decode(model, enc, lens, DecodingOptions("beam"))
    with pytest.raises(ValueError, match="max_sym_per_frame"):
        DecodingOptions(max_sym_per_frame=0)
    with pytest.raises(ValueError, match="beam"):
        DecodingOptions(beam=0)
    assert DecodingOptions(beam=8, max_sym_per_frame=3).settings_key(uses_beam=True) == "beam-8-max-sym-per-frame-3"


@pytest.mark.parametrize("blank_penalty", [0.0, 1.5])
def test_greedy_timestamps_and_blank_penalty_match_the_reference(blank_penalty):
    model = make_model()
    enc, lens = encoder_batch([30, 19], seed=6)
    options = DecodingOptions("greedy_search", max_sym_per_frame=2, blank_penalty=blank_penalty)
    results = decode(model, enc, lens, options)
    for n, T in enumerate(lens.tolist()):
        frames = []
        tokens, score, _ = reference_greedy(model, enc[n], T, 2, options.symbol_cap(T), blank_penalty, frames)
        assert results[n].tokens == tokens and results[n].timestamps == frames
        assert results[n].score == pytest.approx(score, abs=1e-3)
    if blank_penalty:  # a penalty on blank means more symbols than without it
        plain = decode(model, enc, lens, DecodingOptions("greedy_search", max_sym_per_frame=2))
        assert sum(len(r.tokens) for r in results) > sum(len(r.tokens) for r in plain)


def test_beam_1_timestamps_equal_greedy_timestamps():
    model = make_model()
    enc, lens = encoder_batch([30, 25, 17], seed=3)
    greedy = decode(model, enc, lens, DecodingOptions("greedy_search", max_sym_per_frame=2))
    beam1 = decode(model, enc, lens, DecodingOptions("modified_beam_search", beam=1, max_sym_per_frame=2))
    assert [r.timestamps for r in beam1] == [r.timestamps for r in greedy]
    assert any(len(set(r.timestamps)) < len(r.timestamps) for r in greedy)  # some frame has 2 symbols


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search", "beam_search"])
def test_search_over_chunks_equals_search_over_whole_utterances(method):
    """Streaming: advance() over consecutive chunks, with streams that skip some calls (not
    ready yet) and chunk ends that differ per stream, gives exactly the offline result."""
    from asr_recipes.decoding import make_search

    model = make_model()
    enc, lens = encoder_batch([23, 17, 9], seed=8)
    options = DecodingOptions(method, beam=3, max_sym_per_frame=2)
    whole = decode(model, enc, lens, options)
    search = make_search(model, options)
    streams = search.start(3)
    for ids, fed in advance_in_chunks(search, streams, enc, lens):
        partial = search.results([streams[n] for n in ids])
        assert all(all(t < fed[n] for t in r.timestamps) for n, r in zip(ids, partial))
    for got, want, T in zip(search.results(streams), whole, lens.tolist()):
        assert [h.tokens for h in got.hyps] == [h.tokens for h in want.hyps]
        assert [h.timestamps for h in got.hyps] == [h.timestamps for h in want.hyps]
        # float32 sums over T frames x (max_sym + 1) steps, with joiner batches that differ
        # between chunked and whole runs: equal up to rounding
        for g, w in zip(got.hyps, want.hyps):
            assert g.score == pytest.approx(w.score, abs=float32_sum_tol(w.score, T * 3))


@pytest.mark.parametrize("method,forced_advance", [("modified_beam_search", True), ("beam_search", False)])
def test_blank_penalty_in_the_beam_searches_matches_the_exhaustive_sum(method, forced_advance):
    model = make_model(vocab_size=4, blank_bias=0.0, unk_bias=1.0)
    enc, lens = encoder_batch([3], seed=5)
    results = decode(model, enc, lens, DecodingOptions(method, beam=10_000, max_sym_per_frame=2, blank_penalty=1.5))
    expected = exhaustive_sequence_scores(model, enc[0, :3], 2, forced_advance, blank_penalty=1.5)
    got = {h.tokens: h.score for h in results[0].hyps}
    assert got.keys() == expected.keys()
    for seq, score in expected.items():
        assert got[seq] == pytest.approx(score, abs=1e-4), seq
    plain = exhaustive_sequence_scores(model, enc[0, :3], 2, forced_advance)
    assert any(abs(plain[seq] - score) > 0.1 for seq, score in expected.items())  # the penalty changes scores
