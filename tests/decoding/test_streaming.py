"""Streaming decoding: chunk by chunk through the recognizer == the whole utterance with the
chunk mask (simulated streaming), for every search; streams joining and leaving freely."""

import pytest
import torch

from asr_recipes.constants import NUM_MEL_BINS
from asr_recipes.decoding import DecodingOptions, decode, make_search
from asr_recipes.decoding.streaming import StreamingRecognizer, decode_streaming
from asr_recipes.models.build import build_transducer

CAUSAL = dict(d_model=16, num_heads=2, ff_dim=32, num_layers=2, kernel_size=5, dropout=0.0, subsampling_channels=4,
              conv_norm="batch", decoder_dim=16, context_size=2, joiner_dim=16, causal=True)


def causal_model(vocab_size=12, seed=0):
    torch.manual_seed(seed)
    model = build_transducer(CAUSAL, vocab_size).eval()
    with torch.no_grad():  # sharpen so that frames get 0, 1 or several symbols
        model.joiner.output_linear.weight.mul_(4.0)
        for layer in model.encoder.layers:
            layer.conv.norm.running_var.uniform_(0.5, 2.0)
    return model


def streamed_and_simulated(model, options, x, lens, chunk, left):
    """Results of decoding features x (N, T, NUM_MEL_BINS) chunk by chunk through the
    StreamingRecognizer (``chunk`` encoder frames a step, ``left`` frames of left context), and
    of decoding the whole utterances encoded with the same chunk mask (simulated streaming)."""
    with torch.no_grad():
        enc, enc_lens = model.encode(x, lens, chunk_size=chunk, left_context=left)
    simulated = decode(model, enc, enc_lens, options)
    streamed = decode_streaming(StreamingRecognizer(model, make_search(model, options), chunk, left), x, lens)
    return streamed, simulated


def assert_same_hypotheses(streamed, simulated):
    """Each result's hypotheses: the same tokens and frames, scores equal up to rounding (the
    streamed encoder runs chunk by chunk, in other batch shapes)."""
    for got, want in zip(streamed, simulated):
        assert [h.tokens for h in got.hyps] == [h.tokens for h in want.hyps]
        assert [h.timestamps for h in got.hyps] == [h.timestamps for h in want.hyps]
        assert [h.score for h in got.hyps] == pytest.approx([h.score for h in want.hyps], abs=1e-3)


def batch(lens, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lens), max(lens), NUM_MEL_BINS, generator=g), torch.tensor(lens)


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search"])
@pytest.mark.parametrize("chunk,left", [(2, 8), (4, 0), (5, 20)])
def test_streaming_equals_simulated_streaming(method, chunk, left):
    model = causal_model()
    x, lens = batch([171, 130, 67, 18])
    streamed, simulated = streamed_and_simulated(model, DecodingOptions(method, beam=3, max_sym_per_frame=2), x,
                                                 lens, chunk, left)
    assert any(r.tokens for r in simulated)
    assert_same_hypotheses(streamed, simulated)


def test_streams_join_and_finish_at_different_times():
    model = causal_model(seed=3)
    x, lens = batch([150, 90, 40], seed=4)
    options = DecodingOptions("greedy_search", max_sym_per_frame=2)
    with torch.no_grad():
        enc, enc_lens = model.encode(x, lens, chunk_size=3, left_context=12)
    want = decode(model, enc, enc_lens, options)
    recognizer = StreamingRecognizer(model, make_search(model, options), chunk_size=3, left_context=12)
    streams = [recognizer.new_stream() for _ in range(3)]
    fed = [0, 0, 0]
    start = [0, 4, 9]  # stream 1 joins at step 4, stream 2 at step 9
    pieces = [13, 29, 7]  # frames arriving per step, per stream
    step = 0
    while not all(recognizer.is_done(s) for s in streams):
        for n, s in enumerate(streams):
            if step >= start[n] and not s.finished:
                recognizer.accept_features(s, x[n, fed[n] : min(fed[n] + pieces[n], int(lens[n]))])
                fed[n] = min(fed[n] + pieces[n], int(lens[n]))
                if fed[n] == int(lens[n]):
                    recognizer.input_finished(s)
        ready = [s for s in streams if recognizer.is_ready(s)]
        recognizer.decode(ready)
        for s in ready:  # partial results only hold frames that were decoded
            assert all(t < s.encoder_frames for t in recognizer.result(s).timestamps)
        step += 1
    assert [recognizer.result(s).tokens for s in streams] == [r.tokens for r in want]
    assert [s.encoder_frames for s in streams] == enc_lens.tolist()


def test_emission_time_is_the_end_of_the_emitting_chunks_window():
    model = causal_model()
    recognizer = StreamingRecognizer(model, make_search(model, DecodingOptions()), chunk_size=8, left_context=16)
    # chunk 0 = feature frames 0..34; frame 34's 25 ms window ends at 34 * 10 ms + 17.5 ms
    assert recognizer.emission_time(0) == pytest.approx(0.3575)
    assert recognizer.emission_time(7) == pytest.approx(0.3575)
    assert recognizer.emission_time(8) == pytest.approx(0.3575 + 0.32)
    assert recognizer.emission_time(8, num_frames=50) == pytest.approx(0.49 + 0.0175)


def test_offline_models_are_refused():
    torch.manual_seed(0)
    offline = build_transducer({**CAUSAL, "causal": False}, 12).eval()
    with pytest.raises(ValueError, match="model.causal=true"):
        StreamingRecognizer(offline, make_search(offline, DecodingOptions()), 4, 8)
