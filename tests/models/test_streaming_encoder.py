"""Streaming Conformer: chunk masks, causality, and chunk-by-chunk == whole-utterance masked."""

import pytest
import torch

from asr_recipes.constants import NUM_MEL_BINS, frames_after_subsampling
from asr_recipes.models.conformer import Conformer, chunk_attention_mask


def causal_conformer(conv_norm="batch", kernel_size=5, seed=0):
    torch.manual_seed(seed)
    enc = Conformer(feature_dim=NUM_MEL_BINS, d_model=16, num_heads=2, ff_dim=32, num_layers=2,
                    kernel_size=kernel_size, dropout=0.0, subsampling_channels=4, conv_norm=conv_norm, causal=True)
    with torch.no_grad():  # batch norm with non-trivial running statistics, as after training
        for layer in enc.layers:
            norm = layer.conv.norm
            if hasattr(norm, "running_mean"):
                norm.running_mean.uniform_(-1, 1)
                norm.running_var.uniform_(0.5, 2)
    return enc.eval()


def features(lens, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lens), max(lens), NUM_MEL_BINS, generator=g), torch.tensor(lens)


@pytest.mark.parametrize("chunk,left", [(1, 0), (2, 3), (4, 8), (3, -1)])
def test_chunk_mask_matches_its_definition(chunk, left):
    T = 11
    mask = chunk_attention_mask(T, chunk, left, torch.device("cpu"))
    for i in range(T):
        start = i // chunk * chunk
        for j in range(T):
            visible = j < start + chunk and (left < 0 or j >= start - left)
            assert bool(mask[i, j]) == (not visible), (i, j)


def test_window_gives_exactly_chunk_frames():
    enc = causal_conformer()
    for chunk in (1, 2, 5, 16):
        window, shift = enc.chunk_window(chunk)
        assert frames_after_subsampling(window) == chunk and shift == 4 * chunk
        assert enc.output_lengths(window) == chunk and enc.output_lengths(window - 1) == chunk - 1
    assert enc.min_input_frames() == 7


@pytest.mark.parametrize("chunk,left", [(2, 4), (4, 0)])
def test_outputs_do_not_depend_on_features_after_the_chunk_and_look_ahead(chunk, left):
    enc = causal_conformer()
    x, lens = features([200])
    out, _ = enc(x, lens, chunk_size=chunk, left_context=left)
    for last_chunk in (0, 3, 7):
        end = (last_chunk + 1) * chunk  # first encoder frame after the chunk
        cut = 4 * end + 3  # the feature frames this chunk may read: 0 .. 4*end + 2
        y = x.clone()
        y[:, cut:] = 50 * torch.randn_like(y[:, cut:])
        out2, _ = enc(y, lens, chunk_size=chunk, left_context=left)
        torch.testing.assert_close(out2[:, :end], out[:, :end], rtol=0, atol=0)
        assert not torch.allclose(out2[:, end:], out[:, end:])  # later frames do see it


def run_streams(enc, x, lens, chunk, left, starts):
    """Chunk-by-chunk encoding of several streams that join at step starts[n] and leave after
    their last window; active streams are stacked into one batch per step. Returns one
    (T'_n, D) tensor per stream."""
    window, shift = enc.chunk_window(chunk)
    N = x.size(0)
    state = {n: enc.unstack_states(enc.init_states(1, left))[0] for n in range(N)}
    pos = [0] * N  # next window start (feature frames)
    outs = [[] for _ in range(N)]
    step = 0
    while any(pos[n] < lens[n] - 6 for n in range(N)):
        active = [n for n in range(N) if step >= starts[n] and pos[n] + 7 <= lens[n]]
        step += 1
        if not active:
            continue
        wins = torch.zeros(len(active), window, x.size(2))
        wlens = []
        for a, n in enumerate(active):
            w = x[n, pos[n] : min(pos[n] + window, int(lens[n]))]
            wins[a, : w.size(0)] = w
            wlens.append(w.size(0))
        out, out_lens, new = enc.streaming_forward(wins, torch.tensor(wlens),
                                                   enc.stack_states([state[n] for n in active]))
        for a, (n, s) in enumerate(zip(active, enc.unstack_states(new))):
            outs[n].append(out[a, : out_lens[a]])
            state[n] = s
            pos[n] += shift
    return [torch.cat(o) for o in outs]


@pytest.mark.parametrize("conv_norm", ["batch", "layer"])
@pytest.mark.parametrize("chunk,left", [(1, 3), (3, 6), (4, 16), (5, 0)])
def test_chunk_by_chunk_equals_whole_utterance_with_chunk_mask(conv_norm, chunk, left):
    enc = causal_conformer(conv_norm)
    x, lens = features([157, 96, 61, 23])  # lengths that are not multiples of any chunk window
    with torch.no_grad():
        masked, masked_lens = enc(x, lens, chunk_size=chunk, left_context=left)
        streamed = run_streams(enc, x, lens, chunk, left, starts=[0, 2, 0, 5])
    for n in range(len(lens)):
        T = int(masked_lens[n])
        assert streamed[n].shape == (T, 16)
        torch.testing.assert_close(streamed[n], masked[n, :T], rtol=1e-5, atol=1e-5)


def test_causal_model_with_full_context_sees_the_whole_utterance():
    enc = causal_conformer()
    x, lens = features([120])
    out, _ = enc(x, lens)  # chunk_size 0: full attention, causal convolutions
    y = x.clone()
    y[:, 100:] += 5.0
    out2, _ = enc(y, lens)
    assert not torch.allclose(out[:, :5], out2[:, :5])  # frame 0 attends to the end


def test_streaming_needs_a_causal_model_and_finite_left_context():
    torch.manual_seed(0)
    offline = Conformer(NUM_MEL_BINS, 16, 2, 32, 1, 5, 0.0, 4, "batch", causal=False)
    x, lens = features([60])
    with pytest.raises(ValueError, match="causal=false"):
        offline(x, lens, chunk_size=4)
    with pytest.raises(ValueError, match="causal"):
        offline.init_states(1, 8)
    with pytest.raises(ValueError, match="finite left_context"):
        causal_conformer().init_states(1, -1)
