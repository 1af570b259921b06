"""CTC searches against independent references: the argmax path collapsed by hand, the
exact probability of every label sequence by enumerating all frame-level paths, torch's
CTC loss, and the offline search for chunked and streaming decoding."""

import itertools

import numpy as np
import pytest
import torch

from asr_recipes.constants import NUM_MEL_BINS
from asr_recipes.decoding import DecodingOptions, decode, make_search
from asr_recipes.models.build import build_transducer
from tests.decoding.test_streaming import assert_same_hypotheses, streamed_and_simulated
from tests.numerics import float32_sum_tol

MODEL = dict(d_model=16, num_heads=2, ff_dim=32, num_layers=1, kernel_size=5, dropout=0.0, subsampling_channels=4,
             conv_norm="batch", decoder_dim=16, context_size=2, joiner_dim=16, ctc_head=True)


def model_with_head(vocab_size=6, seed=0, **overrides):
    torch.manual_seed(seed)
    model = build_transducer({**MODEL, **overrides}, vocab_size).eval()
    with torch.no_grad():  # sharpen the head so that frames pick different symbols
        model.ctc_head.linear.weight.mul_(6.0)
    return model


def run(search, log_probs, lens, chunks=None):
    """Results of ``search`` over (N, T, V) log-probs, fed whole or in ``chunks`` (frame counts)."""
    streams = search.start(log_probs.size(0))
    if chunks is None:
        search.advance_log_probs(streams, log_probs, lens)
    else:
        begin = 0
        for size in chunks:
            part = (lens - begin).clamp(0, size)
            search.advance_log_probs(streams, log_probs[:, begin : begin + size], part)
            begin += size
    return search.results(streams)


def test_greedy_collapses_the_argmax_path_by_hand():
    # blank 0, <unk> 2: "3 3 _ 3 4 4 unk 4 5 _" reads 3 3 4 4 5, runs starting on frames 0 3 4 7 8
    path = [3, 3, 0, 3, 4, 4, 2, 4, 5, 0]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, len(path), 6, generator=g)
    logits[0, torch.arange(len(path)), path] += 6.0
    log_probs = logits.log_softmax(-1)
    search = make_search(model_with_head(), DecodingOptions("ctc_greedy_search", unk_id=2))
    (result,) = run(search, log_probs, torch.tensor([len(path)]))
    assert result.tokens == [3, 3, 4, 4, 5]
    assert result.timestamps == [0, 3, 4, 7, 8]
    want = float(log_probs[0, torch.arange(len(path)), path].sum())  # float32 sum; the search sums in float64
    assert result.score == pytest.approx(want, abs=float32_sum_tol(want, len(path)))
    # a symbol cap keeps the first tokens
    capped = make_search(model_with_head(), DecodingOptions("ctc_greedy_search", unk_id=2, max_sym_per_utt=3))
    assert run(capped, log_probs, torch.tensor([len(path)]))[0].tokens == [3, 3, 4]


def test_greedy_on_a_model_is_the_collapsed_argmax_of_its_head():
    model = model_with_head(vocab_size=8, seed=1)
    x, lens = torch.randn(3, 200, NUM_MEL_BINS), torch.tensor([200, 150, 60])
    with torch.no_grad():
        enc, enc_lens = model.encode(x, lens)
        best = model.ctc_log_probs(enc).argmax(-1)  # (N, T')
    results = decode(model, enc, enc_lens, DecodingOptions("ctc_greedy_search", unk_id=None))
    assert any(r.tokens for r in results)
    for n, r in enumerate(results):
        want = [k for k, _ in itertools.groupby(best[n, : enc_lens[n]].tolist()) if k != 0]
        assert r.tokens == want


def exact_sequence_log_probs(log_probs, silent):
    """{label sequence: log of the summed probability of every frame-level path reading as
    it}, by enumerating all V^T paths (float64)."""
    T, V = log_probs.shape
    totals = {}
    for path in itertools.product(range(V), repeat=T):
        labels = tuple(k for k, _ in itertools.groupby(path) if k not in silent)
        score = float(sum(log_probs[t, k] for t, k in enumerate(path)))
        totals[labels] = np.logaddexp(totals.get(labels, -np.inf), score)
    return totals


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_prefix_beam_gives_every_sequence_its_exact_total_probability(seed):
    """V = 4 (blank 0, <unk> 1, tokens 2 and 3), T = 5 and 3: fewer than 2^6 = 64 label
    sequences, so a beam of 64 prunes nothing and every prefix's score is its exact probability."""
    g = torch.Generator().manual_seed(seed)
    log_probs = (1.5 * torch.randn(2, 5, 4, generator=g, dtype=torch.float64)).log_softmax(-1)
    lens = torch.tensor([5, 3])
    search = make_search(model_with_head(vocab_size=4), DecodingOptions("ctc_prefix_beam_search", beam=64, nbest=64,
                                                                        unk_id=1))
    for n, result in enumerate(run(search, log_probs, lens)):
        exact = exact_sequence_log_probs(log_probs[n, : lens[n]], silent={0, 1})
        got = {h.tokens: h.score for h in result.hyps}
        assert set(got) == set(exact), (set(got) ^ set(exact))
        for y, score in exact.items():
            assert got[y] == pytest.approx(score, abs=1e-9), y
        assert result.tokens == list(max(exact, key=exact.get))  # the most probable sequence, first
        assert [h.score for h in result.hyps] == sorted(got.values(), reverse=True)
        for h in result.hyps:  # a token's frame lies within the utterance, in order
            assert list(h.timestamps) == sorted(h.timestamps) and all(0 <= f < lens[n] for f in h.timestamps)


def test_narrow_beam_scores_are_at_most_the_exact_probability_from_ctc_loss():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 30, 6, generator=g, dtype=torch.float64) * 2
    logits[..., 0] += 1.5  # mostly blank, as trained models are
    log_probs = logits.log_softmax(-1)
    lens = torch.tensor([30, 22])
    search = make_search(model_with_head(), DecodingOptions("ctc_prefix_beam_search", beam=4, nbest=4, unk_id=None))
    results = run(search, log_probs, lens)
    for n, result in enumerate(results):
        assert 1 <= len(result.hyps) <= 4
        for h in result.hyps:
            exact = -torch.nn.functional.ctc_loss(log_probs[n : n + 1, : lens[n]].transpose(0, 1),
                                                  torch.tensor([h.tokens]), lens[n : n + 1],
                                                  torch.tensor([len(h.tokens)]), reduction="sum")
            assert h.score <= float(exact) + 1e-9
            assert 0 not in h.tokens


@pytest.mark.parametrize("method", ["ctc_greedy_search", "ctc_prefix_beam_search"])
def test_search_over_chunks_equals_search_over_whole_utterances(method):
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 40, 6, generator=g) * 3
    logits[..., 0] += 1.0
    log_probs, lens = logits.log_softmax(-1), torch.tensor([40, 33, 7])
    search = make_search(model_with_head(), DecodingOptions(method, beam=3, unk_id=2))
    whole = run(search, log_probs, lens)
    chunked = run(search, log_probs, lens, chunks=[1, 5, 2, 9, 3, 20])
    assert any(r.tokens for r in whole)
    for a, b in zip(chunked, whole):
        assert [h.tokens for h in a.hyps] == [h.tokens for h in b.hyps]
        assert [h.timestamps for h in a.hyps] == [h.timestamps for h in b.hyps]
        # float64 sums of the same terms, grouped differently
        assert [h.score for h in a.hyps] == pytest.approx([h.score for h in b.hyps], rel=1e-12)


@pytest.mark.parametrize("method", ["ctc_greedy_search", "ctc_prefix_beam_search"])
def test_streaming_ctc_equals_the_chunk_masked_whole_utterance(method):
    model = model_with_head(vocab_size=10, seed=5, causal=True, num_layers=2)
    with torch.no_grad():
        for layer in model.encoder.layers:
            layer.conv.norm.running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(6)
    x, lens = torch.randn(3, 171, NUM_MEL_BINS, generator=g), torch.tensor([171, 130, 40])
    streamed, simulated = streamed_and_simulated(model, DecodingOptions(method, beam=3), x, lens, chunk=4, left=8)
    assert any(r.tokens for r in simulated)
    assert_same_hypotheses(streamed, simulated)


def test_blank_penalty_lowers_blank_before_renormalising():
    model = model_with_head(vocab_size=8, seed=7)
    x, lens = torch.randn(2, 120, NUM_MEL_BINS), torch.tensor([120, 90])
    with torch.no_grad():
        enc, enc_lens = model.encode(x, lens)
        shifted = model.ctc_log_probs(enc)
    shifted[..., 0] -= 2.0
    shifted = shifted.log_softmax(-1)
    results = decode(model, enc, enc_lens, DecodingOptions("ctc_greedy_search", blank_penalty=2.0, unk_id=None))
    for n, r in enumerate(results):
        path = shifted[n, : enc_lens[n]].max(-1)
        assert r.tokens == [k for k, _ in itertools.groupby(path.indices.tolist()) if k != 0]
        want = float(path.values.sum())
        assert r.score == pytest.approx(want, abs=float32_sum_tol(want, int(enc_lens[n])))


def test_ctc_searches_need_a_ctc_head_and_refuse_what_they_cannot_do():
    torch.manual_seed(0)
    plain = build_transducer({**MODEL, "ctc_head": False}, 6)
    with pytest.raises(ValueError, match="CTC head"):
        make_search(plain, DecodingOptions("ctc_prefix_beam_search"))
    with pytest.raises(ValueError, match="n-best"):
        make_search(model_with_head(), DecodingOptions("ctc_greedy_search", beam=4, nbest=2))
    with pytest.raises(ValueError, match="hotwords"):
        make_search(model_with_head(), DecodingOptions("ctc_prefix_beam_search", hotwords=(((3, 4), 1.0),)))
