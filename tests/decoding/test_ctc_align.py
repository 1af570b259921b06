"""CTC forced alignment of hypotheses: token spans against the best alignment found by
enumerating every alignment, word times from spans by hand, and where spans are attached
(the timestamps option, offline and streaming)."""

import itertools

import pytest
import torch

from asr_recipes.constants import NUM_MEL_BINS
from asr_recipes.data.tokenizer import CharTokenizer
from asr_recipes.decoding import DecodingOptions, decode, make_search
from asr_recipes.decoding.ctc_align import frames_needed, token_spans
from asr_recipes.decoding.word_times import word_times
from asr_recipes.models.build import build_transducer
from tests.decoding.test_ctc_search import MODEL, model_with_head
from tests.decoding.test_streaming import streamed_and_simulated


def runs(path, blank=0):
    """(first, last) frame of each non-blank run of a frame-level path."""
    spans, t = [], 0
    for symbol, group in itertools.groupby(path):
        n = len(list(group))
        if symbol != blank:
            spans.append((t, t + n - 1))
        t += n
    return spans


def best_alignment_spans(log_probs, tokens, blank=0):
    """Runs of the most probable frame-level path that reads as ``tokens``, by enumeration."""
    T, V = log_probs.shape
    best, best_path = -float("inf"), None
    for path in itertools.product([blank, *sorted(set(tokens))], repeat=T):
        if [k for k, _ in itertools.groupby(path) if k != blank] != list(tokens):
            continue
        score = float(sum(log_probs[t, k] for t, k in enumerate(path)))
        if score > best:
            best, best_path = score, path
    return runs(best_path, blank)


@pytest.mark.parametrize("seed,tokens", [(0, [2, 3]), (1, [3, 3]), (2, [1, 2, 1]), (3, [4])])
def test_spans_are_the_runs_of_the_most_probable_alignment(seed, tokens):
    g = torch.Generator().manual_seed(seed)
    log_probs = (2.0 * torch.randn(7, 5, generator=g)).log_softmax(-1)
    assert token_spans(log_probs, tokens) == best_alignment_spans(log_probs, tokens)


def test_a_hypothesis_that_needs_more_frames_than_there_are_gets_no_spans():
    log_probs = torch.zeros(4, 5).log_softmax(-1)
    assert frames_needed([2, 2, 3, 3]) == 6
    assert token_spans(log_probs, [2, 2, 3, 3]) is None
    assert token_spans(log_probs, [2, 3, 4, 1]) is not None
    assert token_spans(log_probs, []) == []


def test_word_times_from_spans_by_hand():
    tok = CharTokenizer.train(["go no"], word_boundary=True)
    ids = tok.encode(["go no"])[0]
    assert [tok.id_to_token(k) for k in ids] == ["g", "o", "▁", "n", "o"]
    frames = [0, 2, 3, 9, 10]  # emission frames (not used for times once spans are given)
    spans = [(3, 4), (6, 8), (12, 12), (14, 15), (17, 17)]
    words = word_times(tok, ids, frames, spans, lookahead_frames=3)
    # "go": first frame of g's run (3) to the end of o's last frame (8): 0.12 s .. 0.32 + 0.07 s
    assert [(w.word, w.start, w.end) for w in words] == [("go", pytest.approx(0.12), pytest.approx(0.39)),
                                                         ("no", pytest.approx(0.56), pytest.approx(0.75))]
    plain = word_times(tok, ids, frames, lookahead_frames=3)
    assert [(w.start, w.end) for w in plain] == [pytest.approx((0.0, 0.15)), pytest.approx((0.36, 0.47))]
    with pytest.raises(ValueError, match="token spans"):
        word_times(tok, ids, frames, spans[:3], lookahead_frames=3)


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search", "ctc_prefix_beam_search"])
def test_searches_attach_ctc_spans_unless_told_not_to(method):
    model = model_with_head(vocab_size=8, seed=1)
    x, lens = torch.randn(2, 160, NUM_MEL_BINS), torch.tensor([160, 100])
    with torch.no_grad():
        enc, enc_lens = model.encode(x, lens)
        log_probs = model.ctc_log_probs(enc)
    # capped: the untrained joiner would emit more tokens than a CTC alignment of 39 frames holds
    aligned = decode(model, enc, enc_lens, DecodingOptions(method, beam=3, unk_id=None, max_sym_per_utt=12))
    plain = decode(model, enc, enc_lens, DecodingOptions(method, beam=3, unk_id=None, max_sym_per_utt=12,
                                                          timestamps="search"))
    assert any(r.token_spans for r in aligned)
    for n, (a, p) in enumerate(zip(aligned, plain)):
        assert [h.tokens for h in a.hyps] == [h.tokens for h in p.hyps]
        assert [h.timestamps for h in a.hyps] == [h.timestamps for h in p.hyps]  # emission frames stay
        assert all(h.token_spans == () for h in p.hyps)
        want = token_spans(log_probs[n, : enc_lens[n]], a.tokens)  # the best hypothesis is aligned
        assert a.token_spans == (want if want is not None else [])
        assert all(h.token_spans == () for h in a.hyps[1:])


def test_timestamps_ctc_needs_a_head_and_the_key_names_the_choice():
    torch.manual_seed(0)
    plain = build_transducer({**MODEL, "ctc_head": False}, 6)
    with pytest.raises(ValueError, match="timestamps=ctc"):
        make_search(plain, DecodingOptions("greedy_search", timestamps="ctc"))
    assert make_search(plain, DecodingOptions("greedy_search")).aligns_with_ctc is False
    with pytest.raises(ValueError, match="timestamps must be"):
        DecodingOptions(timestamps="transducer")
    assert DecodingOptions().settings_key(False) == "max-sym-per-frame-1"
    assert DecodingOptions(timestamps="ctc").settings_key(False) == "max-sym-per-frame-1-timestamps-ctc"


def test_streaming_results_carry_the_same_spans_as_the_chunk_masked_whole_utterance():
    model = model_with_head(vocab_size=10, seed=5, causal=True, num_layers=2)
    g = torch.Generator().manual_seed(6)
    x, lens = torch.randn(3, 171, NUM_MEL_BINS, generator=g), torch.tensor([171, 130, 40])
    # the untrained joiner emits on almost every frame: capped, its hypotheses fit a CTC alignment
    streamed, simulated = streamed_and_simulated(model, DecodingOptions("greedy_search", max_sym_per_utt=5), x, lens,
                                                 chunk=4, left=8)
    assert any(r.token_spans for r in simulated)
    for got, want in zip(streamed, simulated):
        assert got.tokens == want.tokens and got.token_spans == want.token_spans
