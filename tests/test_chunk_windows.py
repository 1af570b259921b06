"""The chunk-window loop against hand-counted windows, and the encoder's numbers it is built from."""

import pytest

from asr_recipes.chunk_windows import FULL, PAD, ChunkWindows

# chunks of 4 encoder frames of the x4 Conformer front end: 19-frame windows every 16 frames,
# 7 frames give one encoder frame
W, S, MIN = 19, 16, 7


@pytest.mark.parametrize("frames,pad,full", [
    (50, [(0, 19), (16, 19), (32, 18)], [(0, 19), (16, 19)]),  # 50 - 32 = 18 left: padded / dropped
    (35, [(0, 19), (16, 19)], [(0, 19)]),  # exactly two windows: sherpa wants one frame more
    (38, [(0, 19), (16, 19)], [(0, 19), (16, 19)]),  # 38 - 32 = 6 < 7 frames: nothing left to decode
    (39, [(0, 19), (16, 19), (32, 7)], [(0, 19), (16, 19)]),
    (7, [(0, 7)], []),
    (6, [], []),
])
def test_windows_of_a_finished_stream(frames, pad, full):
    assert ChunkWindows(W, S, MIN, PAD).windows(frames) == pad
    assert ChunkWindows(W, S, MIN, FULL).windows(frames) == full


def test_a_live_stream_waits_for_a_whole_window():
    pad, full = ChunkWindows(W, S, MIN, PAD), ChunkWindows(W, S, MIN, FULL)
    assert not pad.ready(18, finished=False) and pad.ready(19, finished=False) and pad.ready(7, finished=True)
    assert not full.ready(19, finished=False) and full.ready(20, finished=False)
    assert not full.ready(19, finished=True)  # input_finished() does not make sherpa decode a short window


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="last must be 'pad'"):
        ChunkWindows(W, S, MIN, "drop")
    with pytest.raises(ValueError, match="shift <= window"):
        ChunkWindows(10, 11)


def test_the_conformer_gives_the_windows_it_can_encode():
    from asr_recipes.models.conformer import Conformer

    enc = Conformer(feature_dim=80, d_model=8, num_heads=2, ff_dim=8, num_layers=1, kernel_size=3,
                    subsampling_channels=2, causal=True)
    windows = enc.chunk_windows(4, FULL)
    assert (windows.window, windows.shift, windows.min_frames, windows.last) == (W, S, MIN, FULL)
    assert enc.output_lengths(MIN) == 1 and enc.output_lengths(MIN - 1) == 0
    with pytest.raises(ValueError, match="causal"):
        Conformer(feature_dim=80, d_model=8, num_heads=2, ff_dim=8, num_layers=1, kernel_size=3,
                  subsampling_channels=2).chunk_window(4)
