"""OnlineFbank gives, piece by piece, exactly the frames of lhotse's fbank on the whole signal."""

import numpy as np
import pytest
import torch

from asr_recipes.data.features import fbank_extractor
from asr_recipes.data.online_fbank import OnlineFbank


@pytest.mark.parametrize("length,piece", [(32037, 1), (32037, 160), (16000, 2560), (16000 * 3 + 5, 5120), (399, 100)])
def test_pieces_give_the_whole_signal_frames(length, piece):
    rng = np.random.default_rng(length + piece)
    audio = (0.1 * rng.standard_normal(length)).astype(np.float32)
    whole = torch.from_numpy(fbank_extractor().extract(audio, 16000))  # (T, 80)
    online = OnlineFbank()
    got = []
    sizes = [piece] if piece > 1 else [1, 7, 333, 160, 1601]  # piece 1: irregular pieces
    pos, k = 0, 0
    while pos < length:
        n = sizes[k % len(sizes)]
        online.accept_waveform(audio[pos : pos + n])
        pos, k = pos + n, k + 1
        new = online.frames()
        # a frame is handed out only once its 25 ms window has arrived
        assert sum(f.size(0) for f in got) + new.size(0) <= max(0, (min(pos, length) - 280) // 160 + 1)
        got.append(new)
    online.input_finished()
    got.append(online.frames())
    frames = torch.cat(got)
    assert frames.shape == whole.shape
    # equal up to float32 rounding: batched FFTs and matmuls sum in an order that depends on the batch
    torch.testing.assert_close(frames, whole, rtol=1e-5, atol=1e-5)
    assert online.frames().size(0) == 0  # nothing twice


def test_no_samples_after_input_finished():
    online = OnlineFbank()
    online.accept_waveform(np.zeros(1000, dtype=np.float32))
    online.input_finished()
    with pytest.raises(ValueError, match="input_finished"):
        online.accept_waveform(np.zeros(10, dtype=np.float32))
