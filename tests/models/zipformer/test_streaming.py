"""Our own causal Zipformer: chunk-by-chunk streaming with caches equals the whole utterance
with the chunk mask, padding never reaches valid frames, and chunks see nothing after their
window. (Equality with icefall's code is in test_icefall_equivalence.py.)

Tolerance 1e-5 of the largest output: the same float32 arithmetic in a different order
(caches concatenated vs one masked product over the whole utterance; one utterance vs a padded
batch), so differences are rounding, ~1e-7 relative.
"""

import pytest
import torch

from asr_recipes.constants import NUM_MEL_BINS
from asr_recipes.models.zipformer import Zipformer

TINY = dict(feature_dim=NUM_MEL_BINS, encoder_dim=(16, 16, 24, 32, 24, 16), num_encoder_layers=(1, 2, 1, 1, 1, 1),
            encoder_unmasked_dim=12, num_heads=(2, 2, 2, 4, 2, 2), query_head_dim=8, value_head_dim=4,
            pos_head_dim=2, pos_dim=8, feedforward_dim=32, cnn_module_kernel=(7, 5, 5, 3, 5, 7),
            embed_channels=(4, 8, 16))


def tiny_zipformer(causal: bool, seed: int = 0) -> Zipformer:
    """Tiny encoder with every parameter moved off its initial value (zero chunk-edge scales
    and 0.5 bypass scales would hide terms)."""
    torch.manual_seed(seed)
    enc = Zipformer(**TINY, causal=causal)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in enc.parameters():
            p.mul_(1 + 0.3 * torch.randn(p.shape, generator=g)).add_(0.1 * torch.randn(p.shape, generator=g))
    return enc.eval()


def features(lens, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lens), max(lens), NUM_MEL_BINS, generator=g), torch.tensor(lens)


def assert_relative(ours, ref, tol=1e-5):
    assert (ours - ref).abs().max() <= tol * ref.abs().max(), (ours - ref).abs().max()


def run_streams(enc, x, lens, chunk, left, starts):
    """Chunk-by-chunk encoding of streams that join at step starts[n] and leave after their last
    output frame; active streams are stacked into one batch per step, a stream's last window is
    short. Returns one (T'_n, D) tensor per stream."""
    window, shift = enc.chunk_window(chunk)
    N = x.size(0)
    total = enc.output_lengths(lens).tolist()
    state = {n: enc.unstack_states(enc.init_states(1, left))[0] for n in range(N)}
    pos, outs, step = [0] * N, [[] for _ in range(N)], 0
    while any(sum(o.size(0) for o in outs[n]) < total[n] for n in range(N)):
        active = [n for n in range(N) if step >= starts[n] and sum(o.size(0) for o in outs[n]) < total[n]]
        step += 1
        if not active:
            continue
        windows = torch.randn(len(active), window, x.size(2)) * 30  # past a stream's end: anything
        wlens = []
        for a, n in enumerate(active):
            w = x[n, pos[n] : min(pos[n] + window, int(lens[n]))]
            windows[a, : w.size(0)] = w
            wlens.append(w.size(0))
            pos[n] += shift
        states = enc.stack_states([state[n] for n in active])
        out, out_lens, states = enc.streaming_forward(windows, torch.tensor(wlens), states)
        assert out.shape == (len(active), chunk, enc.output_dim)
        for a, (n, s) in enumerate(zip(active, enc.unstack_states(states))):
            state[n] = s
            outs[n].append(out[a, : int(out_lens[a])])
    return [torch.cat(o) for o in outs]


@pytest.mark.parametrize("chunk,left", [(4, 8), (8, 16), (4, 0), (4, 6), (8, 64)])
@torch.no_grad()
def test_chunk_by_chunk_equals_the_masked_whole_utterance(chunk, left):
    enc = tiny_zipformer(causal=True)
    x, lens = features([123, 200, 61, 9])  # 9 frames: one output frame, from a short first window
    whole, whole_lens = enc(x, lens, chunk_size=chunk, left_context=left)
    streamed = run_streams(enc, x, lens, chunk, left, starts=[0, 2, 1, 3])
    for n in range(len(lens)):
        assert streamed[n].size(0) == int(whole_lens[n]) == enc.output_lengths(int(lens[n]))
        assert_relative(streamed[n], whole[n, : int(whole_lens[n])])


@pytest.mark.parametrize("causal,chunk,left", [(False, 0, -1), (True, 0, -1), (True, 4, 8), (True, 8, -1)])
@torch.no_grad()
def test_padding_does_not_reach_valid_frames(causal, chunk, left):
    enc = tiny_zipformer(causal)
    x, lens = features([150, 91, 40, 203])
    x = x.clone()
    for n, T in enumerate(lens.tolist()):
        x[n, T:] = 40 * torch.randn(x.size(1) - T, x.size(2))  # loud garbage after each utterance
    batch, batch_lens = enc(x, lens, chunk_size=chunk, left_context=left)
    for n, T in enumerate(lens.tolist()):
        alone, alone_lens = enc(x[n : n + 1, :T], lens[n : n + 1], chunk_size=chunk, left_context=left)
        assert int(batch_lens[n]) == int(alone_lens[0]) == enc.output_lengths(T)
        assert_relative(batch[n, : int(batch_lens[n])], alone[0])


@pytest.mark.parametrize("chunk,left", [(4, 8), (8, 0)])
@torch.no_grad()
def test_chunks_see_nothing_after_their_window(chunk, left):
    enc = tiny_zipformer(causal=True)
    x, lens = features([260])
    out, _ = enc(x, lens, chunk_size=chunk, left_context=left)
    window, shift = enc.chunk_window(chunk)
    for k in (0, 2, 5):
        end = (k + 1) * chunk  # first output frame after chunk k
        cut = k * shift + window  # chunk k's window ends here
        y = x.clone()
        y[:, cut:] = 5 * torch.randn_like(y[:, cut:])
        out2, _ = enc(y, lens, chunk_size=chunk, left_context=left)
        torch.testing.assert_close(out2[:, :end], out[:, :end], rtol=0, atol=0)
        assert not torch.allclose(out2[:, end:], out[:, end:])  # later frames do see it


def test_lengths_windows_and_states():
    enc = tiny_zipformer(causal=True)
    assert [enc.output_lengths(T) for T in (5, 8, 9, 12, 13, 100)] == [0, 0, 1, 1, 2, 23]  # ((T-7)//2+1)//2
    torch.testing.assert_close(enc.output_lengths(torch.tensor([9, 100])), torch.tensor([1, 23]))
    assert enc.chunk_window(8) == (45, 32)  # icefall: chunk 16 at 50 Hz, 2 * 16 + 13 features
    states = enc.init_states(3, left_context=16)
    assert len(states) == 6 * 7 + 2 and states[-1].dtype == torch.int64
    again = enc.stack_states(enc.unstack_states(states))
    assert all(torch.equal(a, b) for a, b in zip(states, again))
    assert states[0].shape == (32, 3, 16)  # cached_key of stack 0: 2 * 16 frames at 50 Hz, 2 heads x 8


def test_bad_use_is_refused():
    offline, causal = tiny_zipformer(False), tiny_zipformer(True)
    x, lens = features([50])
    with pytest.raises(ValueError, match="causal=false"):
        offline(x, lens, chunk_size=4)
    with pytest.raises(ValueError, match="does not split evenly"):
        causal(x, lens, chunk_size=3)
    with pytest.raises(ValueError, match="shorter than 9 frames"):
        causal(x[:, :8], torch.tensor([8]))
    with pytest.raises(ValueError, match="causal model"):
        offline.init_states(1, 8)
    with pytest.raises(ValueError, match="4 \\* chunk_size \\+ 13"):
        causal.streaming_forward(x[:, :40], torch.tensor([40]), causal.init_states(1, 8))
